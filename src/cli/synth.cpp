// `realm synth`: a random-weight llama-architecture model of a chosen shape and type, with a
// real vocabulary copied from another GGUF. Real shapes make honest benchmark inputs without
// shipping multi-GB checkpoints.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/convert.hpp"
#include "gguf/writer.hpp"

namespace realm::cli {
namespace {

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Uniform values with standard deviation `stddev`, a pure function of (seed, tensor, row) so
// that the output does not depend on how rows are spread over threads.
void fill_row(uint64_t seed, uint64_t tensor, uint64_t row, float stddev, std::span<float> out) {
    uint64_t state = seed ^ (tensor * 0xD1B54A32D192ED03ULL) ^ (row * 0x8CB92BA72F3D8DD7ULL);
    const float scale = stddev * std::sqrt(3.0F) / static_cast<float>(1ULL << 23);
    for (auto& v : out) {
        const auto u = static_cast<int64_t>(splitmix64(state) >> 40) - (int64_t{1} << 23);  // [-2^23, 2^23)
        v = static_cast<float>(u) * scale;
    }
}

Status run(const SynthOptions& o) {
    auto target = parse_quant_target(o.type);
    if (!target) return target.error();
    target->tied_embeddings = o.tied_embeddings;
    if (o.n_head == 0 || o.n_head_kv == 0 || o.n_embd % o.n_head != 0 || o.n_head % o.n_head_kv != 0) {
        return make_error("shape: n_embd must be a multiple of n_head, and n_head a multiple of n_head_kv");
    }
    if (o.n_embd == 0 || o.n_ff == 0 || o.n_layer == 0) return make_error("shape: sizes must be positive");

    auto vocab_file = gguf::File::open(o.vocab_from);
    if (!vocab_file) return vocab_file.error();
    auto tokens = vocab_file->metadata().get_array("tokenizer.ggml.tokens");
    if (!tokens) return make_error(o.vocab_from + ": no vocabulary: " + tokens.error().message);
    const uint64_t n_vocab = (*tokens)->size();
    if (n_vocab == 0) return make_error(o.vocab_from + ": empty vocabulary");

    const uint32_t head_dim = o.n_embd / o.n_head;
    const uint64_t n_embd_kv = uint64_t{head_dim} * o.n_head_kv;

    gguf::Writer w;
    w.set("general.architecture", "llama");
    w.set("general.name", "realm-synth " + std::to_string(o.n_embd) + "x" + std::to_string(o.n_layer));
    w.set("llama.context_length", o.n_ctx);
    w.set("llama.embedding_length", o.n_embd);
    w.set("llama.block_count", o.n_layer);
    w.set("llama.feed_forward_length", o.n_ff);
    w.set("llama.attention.head_count", o.n_head);
    w.set("llama.attention.head_count_kv", o.n_head_kv);
    w.set("llama.rope.freq_base", o.rope_freq_base);
    w.set("llama.rope.dimension_count", head_dim);
    w.set("llama.attention.layer_norm_rms_epsilon", o.rms_eps);
    w.set("llama.vocab_size", static_cast<uint32_t>(n_vocab));
    if (auto ft = llama_file_type(*target)) w.set("general.file_type", *ft);
    w.set("general.quantization_version", uint32_t{2});
    for (const auto& kv : vocab_file->metadata()) {
        if (kv.key.starts_with("tokenizer.")) w.set(kv.key, kv.value);
    }

    struct Spec {
        std::string name;
        std::vector<uint64_t> ne;
        float stddev;  // 0: a norm weight, all ones
    };
    std::vector<Spec> specs;
    const float w_std = 0.02F;
    specs.push_back({"token_embd.weight", {o.n_embd, n_vocab}, w_std});
    for (uint32_t i = 0; i < o.n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        specs.push_back({p + "attn_norm.weight", {o.n_embd}, 0});
        specs.push_back({p + "attn_q.weight", {o.n_embd, o.n_embd}, w_std});
        specs.push_back({p + "attn_k.weight", {o.n_embd, n_embd_kv}, w_std});
        specs.push_back({p + "attn_v.weight", {o.n_embd, n_embd_kv}, w_std});
        specs.push_back({p + "attn_output.weight", {o.n_embd, o.n_embd}, w_std});
        specs.push_back({p + "ffn_norm.weight", {o.n_embd}, 0});
        specs.push_back({p + "ffn_gate.weight", {o.n_embd, o.n_ff}, w_std});
        specs.push_back({p + "ffn_up.weight", {o.n_embd, o.n_ff}, w_std});
        specs.push_back({p + "ffn_down.weight", {o.n_ff, o.n_embd}, w_std});
    }
    specs.push_back({"output_norm.weight", {o.n_embd}, 0});
    if (!o.tied_embeddings) specs.push_back({"output.weight", {o.n_embd, n_vocab}, w_std});

    for (uint64_t ti = 0; ti < specs.size(); ++ti) {
        const Spec& sp = specs[ti];
        const TensorType dst = choose_type(*target, sp.name, sp.ne, TensorType::F32, o.n_layer);
        const uint64_t row_len = sp.ne[0];
        const uint64_t rows = sp.ne.size() > 1 ? sp.ne[1] : 1;
        const float stddev = sp.stddev;
        const uint64_t seed = o.seed;
        Status s = w.add_tensor(sp.name, sp.ne, dst, [=](std::span<std::byte> out) -> Status {
            return convert_rows(dst, rows, row_len, out, [&](uint64_t r, std::span<float> v) -> Status {
                if (stddev == 0) {
                    std::fill(v.begin(), v.end(), 1.0F);
                } else {
                    fill_row(seed, ti, r, stddev, v);
                }
                return {};
            });
        });
        if (!s) return make_error("tensor '" + sp.name + "': " + s.error().message);
    }
    if (auto s = w.write(o.out); !s) return s.error();
    std::fprintf(stderr, "realm synth: wrote %s (%u layers, n_embd %u, n_ff %u, vocab %llu, %s)\n", o.out.c_str(),
                 o.n_layer, o.n_embd, o.n_ff, static_cast<unsigned long long>(n_vocab), o.type.c_str());
    return {};
}

}  // namespace

int synth(const SynthOptions& opts) {
    if (auto s = run(opts); !s) {
        std::fprintf(stderr, "realm synth: %s\n", s.error().message.c_str());
        return 1;
    }
    return 0;
}

}  // namespace realm::cli
