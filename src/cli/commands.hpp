// The `realm` subcommands. Each returns the process exit code; errors go to stderr.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace realm::cli {

int info(const std::string& path, bool json);

int quantize(const std::string& in, const std::string& out, const std::string& type);

struct SynthOptions {
    std::string vocab_from;  // GGUF whose tokenizer.* metadata (vocabulary) the model takes
    std::string out;
    std::string type = "f32";  // any `realm quantize` type
    uint32_t n_embd = 768, n_ff = 2048, n_layer = 12, n_head = 12, n_head_kv = 12, n_ctx = 2048;
    float rope_freq_base = 10000.0F, rms_eps = 1e-5F;
    uint64_t seed = 42;
    bool tied_embeddings = false;
};
int synth(const SynthOptions& opts);

}  // namespace realm::cli
