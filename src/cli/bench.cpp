#include "cli/bench.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/model.hpp"

namespace realm::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Row {
    std::string model, test;
    uint64_t size_bytes = 0, params = 0;
    size_t threads = 0;
    std::vector<double> tps;  // tokens/s per repetition
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Token ids spread over the vocabulary, fixed so that runs are comparable (as llama-bench, the
// content does not matter for speed).
std::vector<int32_t> tokens(uint32_t n, uint32_t n_vocab) {
    std::vector<int32_t> t(n);
    for (uint32_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((1 + 7919ULL * i) % n_vocab);
    return t;
}

Result<double> time_pp(const model::Model& m, uint32_t n) {
    auto seq = m.new_sequence(n + 1);
    if (!seq) return seq.error();
    const auto t = tokens(n, m.hparams().n_vocab);
    const auto t0 = Clock::now();
    if (auto l = m.forward(*seq, t); !l) return l.error();
    return n / std::chrono::duration<double>(Clock::now() - t0).count();
}

Result<double> time_tg(const model::Model& m, uint32_t n) {
    auto seq = m.new_sequence(n + 1);
    if (!seq) return seq.error();
    const auto t = tokens(n, m.hparams().n_vocab);
    const auto t0 = Clock::now();
    for (uint32_t i = 0; i < n; ++i) {
        if (auto l = m.forward(*seq, std::span(&t[i], 1)); !l) return l.error();
    }
    return n / std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int bench(const BenchOptions& o) {
    std::vector<Row> rows;
    for (const auto& path : o.models) {
        auto m = model::Model::open(path, model::LoadOptions{.n_threads = o.n_threads, .weights = o.weights});
        if (!m) {
            std::fprintf(stderr, "realm bench: %s\n", m.error().message.c_str());
            return 1;
        }
        Row base;
        base.model = std::filesystem::path(path).filename().string();
        base.threads = (*m)->n_threads();
        for (const auto& t : (*m)->file().tensors()) {
            base.size_bytes += t.n_bytes;
            base.params += t.n_elements;
        }
        auto run = [&](const std::string& name, uint32_t n, auto fn) -> bool {
            Row r = base;
            r.test = name + std::to_string(n);
            if (auto warm = fn(**m, n); !warm) {  // one warm-up run, as llama-bench does
                std::fprintf(stderr, "realm bench: %s: %s\n", r.test.c_str(), warm.error().message.c_str());
                return false;
            }
            for (uint32_t i = 0; i < std::max(1U, o.repetitions); ++i) {
                auto tps = fn(**m, n);
                if (!tps) {
                    std::fprintf(stderr, "realm bench: %s: %s\n", r.test.c_str(), tps.error().message.c_str());
                    return false;
                }
                r.tps.push_back(*tps);
            }
            rows.push_back(std::move(r));
            return true;
        };
        for (uint32_t n : o.n_prompt)
            if (n > 0 && !run("pp", n, time_pp)) return 1;
        for (uint32_t n : o.n_gen)
            if (n > 0 && !run("tg", n, time_tg)) return 1;
    }

    if (o.output == "json") {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& r : rows) {
            out.push_back({{"model", r.model}, {"size_bytes", r.size_bytes}, {"params", r.params},
                           {"threads", r.threads}, {"test", r.test}, {"tokens_per_second", r.tps},
                           {"median", median(r.tps)},
                           {"min", *std::min_element(r.tps.begin(), r.tps.end())},
                           {"max", *std::max_element(r.tps.begin(), r.tps.end())}});
        }
        std::printf("%s\n", out.dump(2).c_str());
    } else {
        std::printf("| model | size | params | threads | test | t/s (median) | range |\n");
        std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
        for (const auto& r : rows) {
            std::printf("| %s | %.2f MiB | %.2f M | %zu | %s | %.2f | %.2f – %.2f |\n", r.model.c_str(),
                        r.size_bytes / 1048576.0, r.params / 1e6, r.threads, r.test.c_str(), median(r.tps),
                        *std::min_element(r.tps.begin(), r.tps.end()), *std::max_element(r.tps.begin(), r.tps.end()));
        }
    }
    return 0;
}

}  // namespace realm::cli
