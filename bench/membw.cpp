// realm-membw: memory read bandwidth with T threads, the ceiling for token generation, which
// reads every weight once per token. Each thread sums its own slice of one shared buffer, as S
// sequential streams in lock-step (S contiguous parts of the slice), each with a software prefetch
// some bytes ahead. Which pattern reads fastest depends on the machine (measured, 2 threads: on
// the AMD reference VM, 2026-12-06, 4 KiB pages, 8 streams 1 KB ahead into L2 read 31-34 GB/s, one
// plain stream 15.9; on the 480 MiB-L3 Intel VM, 2026-12-07, 2 MiB pages, 2 streams 2 KB ahead
// 35-37, 8 streams 1 KB ahead 33), so by default every pass reads with each of a few candidate
// patterns in turn (drift hits them alike) and the fastest pattern's median is the result; -S
// with --prefetch measures one pattern. A pass lasts from the earliest thread's start to the
// latest thread's end (each thread reads the clock itself, so a descheduled coordinator cannot
// shrink the interval). The buffer asks for 2 MiB pages (MADV_HUGEPAGE), as the arena of the
// weight copies that decode reads does: on the Intel VM 4 KiB pages read 12-14% less (TLB misses).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>

namespace {

using Clock = std::chrono::steady_clock;

// Independent accumulators so the adds do not serialize on one register; the compiler
// vectorizes the loop, leaving the loads as the bottleneck.
// Loc: __builtin_prefetch's locality (3: into L1, 2: L2, 0: non-temporal).
template <int Loc>
uint64_t sum_slice(std::span<const uint64_t> s, size_t streams, size_t prefetch) {
    constexpr size_t kLanes = 8;
    const size_t len = s.size() / streams;  // words per stream
    uint64_t acc[kLanes] = {};
    size_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
        for (size_t k = 0; k < streams; ++k) {
            // A hint, never a fault, even past the end of the buffer.
            if (prefetch != 0) __builtin_prefetch(reinterpret_cast<const char*>(s.data() + k * len + i) + prefetch, 0, Loc);
            for (size_t l = 0; l < kLanes; ++l) acc[l] += s[k * len + i + l];
        }
    }
    for (size_t k = 0; k < streams; ++k) {
        for (size_t j = i; j < len; ++j) acc[0] += s[k * len + j];
    }
    for (size_t j = streams * len; j < s.size(); ++j) acc[0] += s[j];
    uint64_t total = 0;
    for (uint64_t a : acc) total += a;
    return total;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Memory read bandwidth (GB/s, 1 GB = 1e9 bytes) with T threads over a large buffer"};
    unsigned threads = std::max(1U, std::thread::hardware_concurrency());
    uint64_t size_mib = 2048;
    unsigned passes = 10;
    unsigned streams = 0;
    unsigned prefetch = 0;
    std::string hint = "l2";
    std::string pages = "2m";
    bool json = false;
    app.add_option("-t,--threads", threads, "Reading threads")->check(CLI::Range(1U, 1024U))->capture_default_str();
    app.add_option("-s,--size-mib", size_mib, "Buffer size in MiB (make it much larger than the last-level cache)")
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20))
        ->capture_default_str();
    app.add_option("-p,--passes", passes, "Timed passes (one untimed warm-up pass first)")
        ->check(CLI::Range(1U, 10000U))
        ->capture_default_str();
    auto* streams_opt = app.add_option("-S,--streams", streams,
                                       "Sequential streams per thread (contiguous parts of its slice, read in lock-step); "
                                       "with --prefetch: only this pattern (default: the fastest of 2/4/8 streams, 1/2 KB ahead)")
                            ->check(CLI::Range(1U, 1024U));
    app.add_option("--prefetch", prefetch, "Software prefetch distance in bytes ahead in each stream (0: none)")
        ->check(CLI::Range(0U, 1U << 20))
        ->needs(streams_opt);
    app.add_option("--hint", hint, "Where the software prefetch fetches to: l1, l2 or nta")
        ->check(CLI::IsMember({"l1", "l2", "nta"}))
        ->capture_default_str();
    app.add_option("--pages", pages, "Page size the buffer asks for: 2m (MADV_HUGEPAGE) or 4k")
        ->check(CLI::IsMember({"2m", "4k"}))
        ->capture_default_str();
    app.add_flag("--json", json, "Print one JSON object instead of text");
    CLI11_PARSE(app, argc, argv);

    const uint64_t words = size_mib * 1024 * 1024 / sizeof(uint64_t);
    const size_t bytes = words * sizeof(uint64_t);
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        std::fprintf(stderr, "realm-membw: cannot allocate %llu MiB\n", static_cast<unsigned long long>(size_mib));
        return 1;
    }
    // A hint: with transparent huge pages off the kernel refuses it; the report says what was got.
    if (pages == "2m") madvise(mem, bytes, MADV_HUGEPAGE);
    const std::span<uint64_t> buf(static_cast<uint64_t*>(mem), words);
    // Non-zero contents, written once, so every page is really backed before timing.
    for (uint64_t i = 0; i < words; ++i) buf[i] = i * 0x9E3779B97F4A7C15ULL;

    // The share of the buffer the kernel backed with huge pages (this process has no other large
    // anonymous memory).
    double huge_share = 0.0;
    {
        std::ifstream smaps("/proc/self/smaps_rollup");
        for (std::string key; smaps >> key;) {
            if (key == "AnonHugePages:") {
                double kib = 0.0;
                smaps >> kib;
                huge_share = std::min(1.0, kib * 1024.0 / static_cast<double>(bytes));
                break;
            }
        }
    }

    struct Pattern {
        unsigned streams;
        unsigned prefetch;
        std::vector<double> gbps;
    };
    std::vector<Pattern> patterns;
    if (*streams_opt) {
        patterns.push_back({streams, prefetch, {}});
    } else {
        for (unsigned s : {2U, 4U, 8U}) {
            for (unsigned pf : {1024U, 2048U}) patterns.push_back({s, pf, {}});
        }
    }

    const std::span<const uint64_t> all(buf);
    std::vector<uint64_t> sums(threads, 0);
    std::vector<Clock::time_point> t_start(threads), t_end(threads);
    const Pattern* current = nullptr;  // set by the coordinator before each pass's first barrier
    std::barrier sync(static_cast<std::ptrdiff_t>(threads) + 1);
    std::vector<std::jthread> pool;
    pool.reserve(threads);
    const size_t rounds = size_t{passes + 1} * patterns.size();  // one untimed warm-up pass per pattern
    for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            const uint64_t begin = words * t / threads, end = words * (t + 1) / threads;
            const auto slice = all.subspan(begin, end - begin);
            for (size_t r = 0; r < rounds; ++r) {
                sync.arrive_and_wait();
                const unsigned st = current->streams, pf = current->prefetch;
                t_start[t] = Clock::now();
                sums[t] += hint == "l1"   ? sum_slice<3>(slice, st, pf)
                           : hint == "l2" ? sum_slice<2>(slice, st, pf)
                                          : sum_slice<0>(slice, st, pf);
                t_end[t] = Clock::now();
                sync.arrive_and_wait();
            }
        });
    }
    for (size_t r = 0; r < rounds; ++r) {
        Pattern& pat = patterns[r % patterns.size()];
        current = &pat;
        sync.arrive_and_wait();
        sync.arrive_and_wait();
        const auto first = *std::min_element(t_start.begin(), t_start.end());
        const auto last = *std::max_element(t_end.begin(), t_end.end());
        const double s = std::chrono::duration<double>(last - first).count();
        if (r >= patterns.size()) pat.gbps.push_back(static_cast<double>(bytes) / s / 1e9);
    }
    pool.clear();
    munmap(mem, bytes);

    // The checksum keeps the reads observable, so they cannot be optimized away.
    uint64_t check = 0;
    for (uint64_t s : sums) check ^= s;
    const Pattern& best = *std::max_element(patterns.begin(), patterns.end(),
                                            [](const Pattern& a, const Pattern& b) { return median(a.gbps) < median(b.gbps); });
    const double med = median(best.gbps);
    const auto [lo, hi] = std::minmax_element(best.gbps.begin(), best.gbps.end());
    if (json) {
        std::string others;
        for (const Pattern& p : patterns) {
            if (!others.empty()) others += ", ";
            others += "{\"streams\": " + std::to_string(p.streams) + ", \"prefetch\": " + std::to_string(p.prefetch) +
                      ", \"median_gbps\": " + std::to_string(median(p.gbps)) + "}";
        }
        std::printf(
            "{\"threads\": %u, \"streams\": %u, \"prefetch\": %u, \"hint\": \"%s\", \"pages\": \"%s\", \"huge_share\": %.3f, "
            "\"size_bytes\": %llu, \"passes\": %u, \"median_gbps\": %.3f, \"min_gbps\": %.3f, \"max_gbps\": %.3f, "
            "\"patterns\": [%s], \"checksum\": %llu}\n",
            threads, best.streams, best.prefetch, hint.c_str(), pages.c_str(), huge_share, static_cast<unsigned long long>(bytes),
            passes, med, *lo, *hi, others.c_str(), static_cast<unsigned long long>(check));
    } else {
        for (const Pattern& p : patterns) {
            if (patterns.size() > 1) std::printf("  %u streams, prefetch %u B: %.2f GB/s median\n", p.streams, p.prefetch, median(p.gbps));
        }
        std::printf("read bandwidth: %.2f GB/s median (%.2f – %.2f) over %u passes, %u threads x %u streams (prefetch %u B into %s), %llu MiB buffer, "
                    "%.0f%% in 2 MiB pages (checksum %llx)\n",
                    med, *lo, *hi, passes, threads, best.streams, best.prefetch, hint.c_str(), static_cast<unsigned long long>(size_mib),
                    100.0 * huge_share, static_cast<unsigned long long>(check));
    }
    return 0;
}
