// `realm bench`: prompt-processing and generation speed, reported the way llama-bench reports it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model.hpp"

namespace realm::cli {

struct BenchOptions {
    std::vector<std::string> models;
    std::vector<uint32_t> n_prompt{512};  // pp tests: tokens processed in one forward call
    std::vector<uint32_t> n_gen{128};     // tg tests: tokens generated one at a time
    uint32_t repetitions = 5;
    uint32_t n_threads = 0;               // 0: all cores
    std::string output = "md";            // md | json
    model::Weights weights = model::Weights::Rows16;
};

int bench(const BenchOptions& opts);

}  // namespace realm::cli
