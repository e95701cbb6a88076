// realm-membw: memory read bandwidth with T threads, the ceiling for token generation, which
// reads every weight once per token. Each thread sums its own slice of one shared buffer, as S
// sequential streams in lock-step (S contiguous parts of the slice), each with a software prefetch
// some bytes ahead. One plain stream per thread is limited by how far ahead the hardware prefetcher
// runs: on the reference VM (2 threads, 2026-12-05) 1 stream read 15.9 GB/s, 8 streams 21.9, 8
// streams with a prefetch 1 KB ahead into L1 26.7; on 2026-12-06, alternating, the same into L2
// (prefetcht1) read 31-34 GB/s where into L1 read 25-27 (the defaults: 8 streams, 1 KB ahead,
// into L2, the fastest pattern measured); a pass
// lasts from the earliest thread's start to the latest thread's end (each thread reads the clock
// itself, so a descheduled coordinator cannot shrink the interval), and the median of the passes
// is reported.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <thread>
#include <vector>

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
    unsigned streams = 8;
    unsigned prefetch = 1024;
    std::string hint = "l2";
    bool json = false;
    app.add_option("-t,--threads", threads, "Reading threads")->check(CLI::Range(1U, 1024U))->capture_default_str();
    app.add_option("-s,--size-mib", size_mib, "Buffer size in MiB (make it much larger than the last-level cache)")
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20))
        ->capture_default_str();
    app.add_option("-p,--passes", passes, "Timed passes (one untimed warm-up pass first)")
        ->check(CLI::Range(1U, 10000U))
        ->capture_default_str();
    app.add_option("-S,--streams", streams, "Sequential streams per thread (contiguous parts of its slice, read in lock-step)")
        ->check(CLI::Range(1U, 1024U))
        ->capture_default_str();
    app.add_option("--prefetch", prefetch, "Software prefetch distance in bytes ahead in each stream (0: none)")
        ->check(CLI::Range(0U, 1U << 20))
        ->capture_default_str();
    app.add_option("--hint", hint, "Where the software prefetch fetches to: l1, l2 or nta")
        ->check(CLI::IsMember({"l1", "l2", "nta"}))
        ->capture_default_str();
    app.add_flag("--json", json, "Print one JSON object instead of text");
    CLI11_PARSE(app, argc, argv);

    const uint64_t words = size_mib * 1024 * 1024 / sizeof(uint64_t);
    std::vector<uint64_t> buf;
    try {
        buf.resize(words);
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "realm-membw: cannot allocate %llu MiB\n", static_cast<unsigned long long>(size_mib));
        return 1;
    }
    // Non-zero contents, written once, so every page is really backed before timing.
    for (uint64_t i = 0; i < words; ++i) buf[i] = i * 0x9E3779B97F4A7C15ULL;

    const std::span<const uint64_t> all(buf);
    std::vector<uint64_t> sums(threads, 0);
    std::vector<Clock::time_point> t_start(threads), t_end(threads);
    std::barrier sync(static_cast<std::ptrdiff_t>(threads) + 1);
    std::vector<std::jthread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            const uint64_t begin = words * t / threads, end = words * (t + 1) / threads;
            const auto slice = all.subspan(begin, end - begin);
            for (unsigned p = 0; p <= passes; ++p) {
                sync.arrive_and_wait();
                t_start[t] = Clock::now();
                sums[t] += hint == "l1"   ? sum_slice<3>(slice, streams, prefetch)
                           : hint == "l2" ? sum_slice<2>(slice, streams, prefetch)
                                          : sum_slice<0>(slice, streams, prefetch);
                t_end[t] = Clock::now();
                sync.arrive_and_wait();
            }
        });
    }
    std::vector<double> gbps;
    for (unsigned p = 0; p <= passes; ++p) {
        sync.arrive_and_wait();
        sync.arrive_and_wait();
        const auto first = *std::min_element(t_start.begin(), t_start.end());
        const auto last = *std::max_element(t_end.begin(), t_end.end());
        const double s = std::chrono::duration<double>(last - first).count();
        if (p > 0) gbps.push_back(static_cast<double>(words * sizeof(uint64_t)) / s / 1e9);
    }
    pool.clear();

    // The checksum keeps the reads observable, so they cannot be optimized away.
    uint64_t check = 0;
    for (uint64_t s : sums) check ^= s;
    const double med = median(gbps);
    const auto [lo, hi] = std::minmax_element(gbps.begin(), gbps.end());
    if (json) {
        std::printf(
            "{\"threads\": %u, \"streams\": %u, \"prefetch\": %u, \"hint\": \"%s\", \"size_bytes\": %llu, \"passes\": %u, \"median_gbps\": %.3f, \"min_gbps\": %.3f, "
            "\"max_gbps\": %.3f, \"checksum\": %llu}\n",
            threads, streams, prefetch, hint.c_str(), static_cast<unsigned long long>(words * sizeof(uint64_t)), passes, med, *lo, *hi,
            static_cast<unsigned long long>(check));
    } else {
        std::printf("read bandwidth: %.2f GB/s median (%.2f – %.2f) over %u passes, %u threads x %u streams (prefetch %u B into %s), %llu MiB buffer "
                    "(checksum %llx)\n",
                    med, *lo, *hi, passes, threads, streams, prefetch, hint.c_str(), static_cast<unsigned long long>(size_mib),
                    static_cast<unsigned long long>(check));
    }
    return 0;
}
