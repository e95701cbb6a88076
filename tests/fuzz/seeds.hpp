// Small valid GGUF files used as the fuzzer's seed corpus.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace realm::gguf::fuzz {

// (file name, bytes) pairs; every file is a few KiB at most and parses cleanly.
std::vector<std::pair<std::string, std::vector<std::byte>>> make_seeds();

// Writes the seeds into `dir` (created if missing). Returns the number written, or -1 on error.
int write_seeds(const std::string& dir);

}  // namespace realm::gguf::fuzz
