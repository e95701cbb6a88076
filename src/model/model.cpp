#include "model/model.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "kernels/fp16.hpp"
#include "kernels/isa.hpp"
#include "kernels/matmul.hpp"
#include "kernels/ops.hpp"

namespace realm::model {

namespace {

using kernels::fp16_to_fp32;
using kernels::fp32_to_fp16;

std::string shape_str(std::span<const uint64_t> dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(dims[i]);
    }
    return s + "]";
}

// ggml_compute_forward_rms_norm_f32 followed by ggml_mul with the weight.
void rms_norm(const float* x, const float* w, float* y, size_t n, float eps) {
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (size_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

// ggml's rope (no YaRN extrapolation, attn_factor 1), split in two: the cos/sin of each
// dimension pair at one position (the same for every head, so computed once per token), then
// their application to one head of `head_dim` values.
void rope_angles(uint32_t n_rot, int32_t pos, float freq_base, float freq_scale, const float* freq_factors,
                 float* cs) {
    const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
    float theta = static_cast<float>(pos);
    for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
        const float ff = freq_factors ? freq_factors[i0 / 2] : 1.0f;
        const float t = freq_scale * (theta / ff);
        cs[i0] = std::cos(t);
        cs[i0 + 1] = std::sin(t);
        theta *= theta_scale;
    }
}

void rope_apply(float* x, uint32_t n_rot, RopeType type, const float* cs) {
    for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
        const float c = cs[i0];
        const float s = cs[i0 + 1];
        const uint32_t a = type == RopeType::Normal ? i0 : i0 / 2;
        const uint32_t b = type == RopeType::Normal ? i0 + 1 : i0 / 2 + n_rot / 2;
        const float x0 = x[a];
        const float x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
    // dimensions past n_rot stay as they are
}

// GELU (tanh approximation) as ggml's CPU backend evaluates it: through a table indexed by the
// fp16 value of x and holding fp16 results. The table (65536 floats, built once) makes the
// lookup exactly the formula below, which it caches.
float gelu_formula(float xh) {
    constexpr float kCoefA = 0.044715f;
    constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
    const float g = 0.5f * xh * (1.0f + std::tanh(kSqrt2OverPi * xh * (1.0f + kCoefA * xh * xh)));
    return fp16_to_fp32(fp32_to_fp16(g));
}

const float* gelu_table() {
    static const std::vector<float> table = [] {
        std::vector<float> t(65536);
        for (uint32_t h = 0; h < 65536; ++h) t[h] = gelu_formula(fp16_to_fp32(static_cast<uint16_t>(h)));
        return t;
    }();
    return table.data();
}

inline float gelu_ggml(const float* table, float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return table[fp32_to_fp16(x)];
}

float bits_to_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

uint32_t float_to_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

// ggml_v_expf as ggml's baseline x86-64 CPU variant (SSE2, no FMA) evaluates it, lane by lane:
// a polynomial approximation of expf (max error ~1.5 ulp), not libm's expf. Every a*b+c is two
// roundings there (MADD128 without __FMA__), as here (this file is built with -ffp-contract=off).
float expf_ggml(float x) {
    const float r = 0x1.8p23f;
    const float z = x * 0x1.715476p+0f + r;
    const float n = z - r;
    const float b = (x - n * 0x1.62e4p-1f) - n * 0x1.7f7d1cp-20f;
    const uint32_t e = float_to_bits(z) << 23;
    const float k = bits_to_float(e + float_to_bits(1.0f));
    const float u = b * b;
    const float j = ((0x1.0e4020p-7f * b + 0x1.573e2ep-5f) * u + (0x1.555e66p-3f * b + 0x1.fffdb6p-2f)) * u +
                    0x1.ffffecp-1f * b;
    if (!(std::fabs(n) > 126.0f)) return j * k + k;
    const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
    const float s1 = bits_to_float(g + 0x7f000000u);
    const float s2 = bits_to_float(e - g);
    if (std::fabs(n) > 192.0f) return s1 * s1;
    return (s2 * j + s2) * s1;
}

// ggml_vec_swiglu_f32 on the baseline x86-64 variant: ggml_v_silu on groups of 4 from the start
// of the row, libm's expf on the remainder.
void swiglu_row(float* gate, const float* up, size_t n) {
    size_t i = 0;
    for (; i < n / 4 * 4; ++i) gate[i] = (gate[i] / (1.0f + expf_ggml(0.0f - gate[i]))) * up[i];
    for (; i < n; ++i) gate[i] = (gate[i] / (1.0f + std::exp(-gate[i]))) * up[i];
}

class Loader {
public:
    Loader(const gguf::File& f, const HParams& hp) : f_(f), hp_(hp) {}

    const gguf::TensorInfo* find(const std::string& name) const { return f_.find_tensor(name); }

    Status check_shape(const gguf::TensorInfo& t, std::initializer_list<uint64_t> want) const {
        std::vector<uint64_t> w(want);
        bool ok = true;
        for (size_t i = 0; ok && i < gguf::kMaxDims; ++i) ok = t.ne[i] == (i < w.size() ? w[i] : 1);
        if (!ok) {
            return make_error("tensor '" + t.name + "' has shape " + shape_str(t.dims()) + ", expected " +
                              shape_str(w));
        }
        return {};
    }

    Error missing(const std::string& name) const {
        return make_error("missing tensor '" + name + "' (required by architecture " + hp_.arch_name + ")");
    }

    // A matrix of `rows` rows of `cols` elements, multiplied in place from the mapping.
    Result<Weight> matrix(const std::string& name, uint64_t cols, uint64_t rows, bool required = true) const {
        const gguf::TensorInfo* t = find(name);
        if (!t) {
            if (!required) return Weight{};
            return missing(name);
        }
        if (auto s = check_shape(*t, {cols, rows}); !s) return s.error();
        return wrap(*t);
    }

    Result<Weight> wrap(const gguf::TensorInfo& t) const {
        Weight w;
        w.tensor = &t;
        w.traits = kernels::kernel_traits(t.type);
        if (!w.traits || !w.traits->vec_dot) {
            return make_error("tensor '" + t.name + "' has type " + std::string(type_name(t.type)) +
                              ", which has no matrix-multiplication kernel");
        }
        w.cols = static_cast<int64_t>(t.ne[0]);
        w.rows = static_cast<int64_t>(t.ne[1]);
        auto rb = kernels::row_size(t.type, w.cols);
        if (!rb) return make_error("tensor '" + t.name + "': " + rb.error().message);
        w.row_bytes = *rb;
        if (auto ab = kernels::row_size(w.traits->vec_dot_type, w.cols); !ab) {
            return make_error("tensor '" + t.name + "': row length " + std::to_string(w.cols) +
                              " does not fit its activation format " +
                              std::string(type_name(w.traits->vec_dot_type)));
        }
        if (t.data.size() != w.row_bytes * static_cast<size_t>(w.rows)) {
            return make_error("tensor '" + t.name + "' has " + std::to_string(t.data.size()) +
                              " bytes of data, expected " + std::to_string(w.row_bytes * static_cast<size_t>(w.rows)));
        }
        w.data = t.data.data();
        if (reinterpret_cast<uintptr_t>(w.data) % w.traits->block_align != 0 ||
            (w.rows > 1 && w.row_bytes % w.traits->block_align != 0)) {
            return make_error("tensor '" + t.name + "' data is not aligned for its type");
        }
        return w;
    }

    // A 1-D tensor of n values, converted to floats (norm weights, biases: small).
    Result<std::vector<float>> vec(const std::string& name, uint64_t n, bool required = true) const {
        const gguf::TensorInfo* t = find(name);
        if (!t) {
            if (!required) return std::vector<float>{};
            return missing(name);
        }
        if (auto s = check_shape(*t, {n}); !s) return s.error();
        std::vector<float> out(n);
        if (auto s = kernels::dequantize(t->type, t->data, out); !s) {
            return make_error("tensor '" + t->name + "': " + s.error().message);
        }
        return out;
    }

private:
    const gguf::File& f_;
    const HParams& hp_;
};

}  // namespace

int32_t argmax(std::span<const float> logits) {
    if (logits.empty()) return -1;
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::load(const gguf::File& file, const LoadOptions& opts) {
    return load_impl(nullptr, file, opts);
}

Result<std::unique_ptr<Model>> Model::load(gguf::File&& file, const LoadOptions& opts) {
    auto owned = std::make_unique<gguf::File>(std::move(file));
    const gguf::File& ref = *owned;
    return load_impl(std::move(owned), ref, opts);
}

Result<std::unique_ptr<Model>> Model::open(const std::string& path, const LoadOptions& opts) {
    auto f = gguf::File::open(path);
    if (!f) return f.error();
    return load(std::move(f.value()), opts);
}

Result<std::unique_ptr<Model>> Model::load_impl(std::unique_ptr<gguf::File> owned, const gguf::File& file,
                                                const LoadOptions& opts) {
    std::unique_ptr<Model> m(new Model());
    m->owned_file_ = std::move(owned);
    m->file_ = &file;
    if (auto s = m->load_hparams(); !s) return s.error();
    if (auto s = m->load_tensors(); !s) return s.error();
    m->pool_ = std::make_unique<kernels::ThreadPool>(opts.n_threads);
    if (opts.weights != Weights::File) m->make_copies(opts.weights);
    return m;
}

void Model::make_copies(Weights weights) {
    constexpr size_t kHugePage = size_t{2} << 20;
    // token_embd keeps its rows (the embedding lookup reads them), and so does a tied output.
    std::vector<Weight*> todo;
    const kernels::Isa isa = kernels::active_isa();
    const auto rows16 = [&](const Weight& w) {
        return kernels::rows16_copy_pays(w.tensor->type, isa) && kernels::rows16_bytes(w.tensor->type, w.rows, w.cols) > 0;
    };
    auto consider = [&](Weight& w) {
        if (w && w.data != tok_embd_.data && (weights == Weights::Copy || rows16(w))) todo.push_back(&w);
    };
    for (Layer& L : layers_) {
        for (Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) consider(*w);
    }
    consider(output_);
    if (todo.empty()) return;
    // One arena for all the copies (64-byte aligned each), on transparent huge pages where the
    // system allows them (decode streams it: fewer TLB misses); one rounding to 2 MiB in all.
    std::vector<size_t> offset(todo.size() + 1, 0);
    for (size_t i = 0; i < todo.size(); ++i) {
        const Weight& w = *todo[i];
        const size_t size = weights == Weights::Copy ? w.row_bytes * static_cast<size_t>(w.rows)
                                                     : kernels::rows16_bytes(w.tensor->type, w.rows, w.cols);
        offset[i + 1] = offset[i] + (size + 63) / 64 * 64;
    }
    const size_t align = offset.back() >= kHugePage ? kHugePage : 64;
    const size_t bytes = (offset.back() + align - 1) / align * align;
    copies_.reset(static_cast<std::byte*>(std::aligned_alloc(align, bytes)));
    if (!copies_) return;  // out of memory: every matrix keeps reading its rows from the file
    copied_bytes_ = offset.back();
    if (align == kHugePage) (void)::madvise(copies_.get(), bytes, MADV_HUGEPAGE);  // advice only
    pool_->parallel_for(todo.size(), 1, [&](size_t begin, size_t end, size_t) {
        for (size_t i = begin; i < end; ++i) {
            Weight& w = *todo[i];
            std::byte* dst = copies_.get() + offset[i];
            const std::span<const std::byte> from = w.tensor->data;
            if (weights == Weights::Copy) {
                std::memcpy(dst, w.data, w.row_bytes * static_cast<size_t>(w.rows));
                w.data = dst;
            } else {
                kernels::repack_rows16(w.tensor->type, w.data, w.rows, w.cols, w.row_bytes, dst);
                w.rows16 = dst;
            }
            file_->release_pages(from);
        }
    });
}

Status Model::load_hparams() {
    const gguf::Metadata& md = file_->metadata();
    auto arch = md.get_string("general.architecture");
    if (!arch) return make_error("not a model: " + arch.error().message);
    hp_.arch_name = std::string(*arch);
    if (hp_.arch_name == "llama") {
        hp_.arch = Arch::Llama;
        hp_.rope_type = RopeType::Normal;
    } else if (hp_.arch_name == "qwen2") {
        hp_.arch = Arch::Qwen2;
        hp_.rope_type = RopeType::NeoX;
    } else if (hp_.arch_name == "gemma3") {
        hp_.arch = Arch::Gemma3;
        hp_.rope_type = RopeType::NeoX;
    } else {
        return make_error("unsupported model architecture '" + hp_.arch_name +
                          "' (supported: llama, qwen2, gemma3)");
    }
    const std::string p = hp_.arch_name + ".";
    auto fail = [&](const Error& e) { return make_error("model metadata: " + e.message); };

    auto u32 = [&](const std::string& key, uint32_t& out) -> Status {
        auto v = md.get_u32(p + key);
        if (!v) return fail(v.error());
        out = *v;
        return {};
    };
    auto u32_or = [&](const std::string& key, uint32_t& out, uint32_t fallback) -> Status {
        auto v = md.get_u32(p + key, fallback);
        if (!v) return fail(v.error());
        out = *v;
        return {};
    };
    auto f32_or = [&](const std::string& key, float& out, float fallback) -> Status {
        auto v = md.get_f32(p + key, fallback);
        if (!v) return fail(v.error());
        out = *v;
        return {};
    };
    Status s;
    if (!(s = u32("embedding_length", hp_.n_embd))) return s;
    if (!(s = u32("block_count", hp_.n_layer))) return s;
    if (!(s = u32("feed_forward_length", hp_.n_ff))) return s;
    if (!(s = u32("attention.head_count", hp_.n_head))) return s;
    if (!(s = u32_or("attention.head_count_kv", hp_.n_head_kv, hp_.n_head))) return s;
    if (!(s = u32_or("context_length", hp_.n_ctx_train, 2048))) return s;
    if (hp_.n_embd == 0 || hp_.n_layer == 0 || hp_.n_ff == 0 || hp_.n_head == 0 || hp_.n_head_kv == 0) {
        return make_error("model metadata: zero embedding_length, block_count, feed_forward_length or head count");
    }
    if (hp_.n_layer > 4096 || hp_.n_embd > (1u << 20) || hp_.n_ff > (1u << 22) || hp_.n_head > 4096) {
        return make_error("model metadata: implausibly large dimensions");
    }
    if (hp_.n_head % hp_.n_head_kv != 0) {
        return make_error("model metadata: head_count " + std::to_string(hp_.n_head) +
                          " is not a multiple of head_count_kv " + std::to_string(hp_.n_head_kv));
    }
    if (!(s = u32_or("attention.key_length", hp_.head_dim_k, hp_.n_embd / hp_.n_head))) return s;
    if (!(s = u32_or("attention.value_length", hp_.head_dim_v, hp_.head_dim_k))) return s;
    if (!(s = u32_or("rope.dimension_count", hp_.n_rot, hp_.head_dim_k))) return s;
    if (hp_.head_dim_k == 0 || hp_.head_dim_v == 0 || hp_.head_dim_k > 4096 || hp_.head_dim_v > 4096) {
        return make_error("model metadata: bad attention head size");
    }
    if (hp_.n_rot > hp_.head_dim_k || hp_.n_rot % 2 != 0) {
        return make_error("model metadata: rope.dimension_count " + std::to_string(hp_.n_rot) +
                          " must be even and at most the head size " + std::to_string(hp_.head_dim_k));
    }
    const float eps_default = hp_.arch == Arch::Gemma3 ? 1e-6f : 1e-5f;
    if (!(s = f32_or("attention.layer_norm_rms_epsilon", hp_.rms_eps, eps_default))) return s;
    if (!(s = f32_or("rope.freq_base", hp_.rope_freq_base, 10000.0f))) return s;
    float factor = 0.0f;
    if (!(s = f32_or("rope.scale_linear", factor, 0.0f))) return s;
    if (auto type = md.get_string(p + "rope.scaling.type", "none"); !type) {
        return fail(type.error());
    } else if (*type == "linear") {
        if (!(s = f32_or("rope.scaling.factor", factor, 0.0f))) return s;
    } else if (*type != "none") {
        return make_error("model metadata: unsupported rope scaling type '" + std::string(*type) + "'");
    }
    hp_.rope_freq_scale = factor > 0.0f ? 1.0f / factor : 1.0f;
    if (!(hp_.rope_freq_base > 0.0f) || !std::isfinite(hp_.rope_freq_base)) {
        return make_error("model metadata: bad rope.freq_base");
    }
    if (auto experts = md.get_u32(p + "expert_count", 0); !experts || *experts > 0) {
        return make_error("model metadata: mixture-of-experts models are not supported");
    }

    hp_.swa_layers.assign(hp_.n_layer, false);
    hp_.attn_scale = 1.0f / std::sqrt(static_cast<float>(hp_.head_dim_k));
    if (hp_.arch == Arch::Gemma3) {
        hp_.embd_scale = std::sqrt(static_cast<float>(hp_.n_embd));
        if (!(s = u32_or("attention.sliding_window", hp_.n_swa, 0))) return s;
        if (hp_.n_swa > 0) {
            uint32_t period = 6;
            if (!(s = u32_or("attention.sliding_window_pattern", period, 6))) return s;
            // Every period-th layer is global, the others use the sliding window.
            for (uint32_t il = 0; il < hp_.n_layer; ++il) {
                hp_.swa_layers[il] = period == 0 || (il % period < period - 1);
            }
            if (!(s = f32_or("rope.freq_base_swa", hp_.rope_freq_base_swa, 10000.0f))) return s;
        }
        if (!(s = f32_or("final_logit_softcapping", hp_.final_logit_softcap, 0.0f))) return s;
        if (hp_.n_layer == 62) {  // Gemma 3 27B scales by the model width per head
            hp_.attn_scale = 1.0f / std::sqrt(static_cast<float>(hp_.n_embd / hp_.n_head));
        }
    }
    return {};
}

Status Model::load_tensors() {
    Loader ld(*file_, hp_);
    const gguf::TensorInfo* te = ld.find("token_embd.weight");
    if (!te) return ld.missing("token_embd.weight");
    if (te->n_dims != 2 || te->ne[0] != hp_.n_embd || te->ne[1] == 0 || te->ne[1] > (1u << 24)) {
        return make_error("tensor 'token_embd.weight' has shape " + shape_str(te->dims()) + ", expected [" +
                          std::to_string(hp_.n_embd) + ", n_vocab]");
    }
    hp_.n_vocab = static_cast<uint32_t>(te->ne[1]);
    {
        auto w = ld.wrap(*te);
        if (!w) return w.error();
        tok_embd_ = *w;
    }
    const uint64_t E = hp_.n_embd, V = hp_.n_vocab, F = hp_.n_ff;
    const uint64_t QD = uint64_t{hp_.n_head} * hp_.head_dim_k;
    const uint64_t KD = uint64_t{hp_.n_head_kv} * hp_.head_dim_k;
    const uint64_t VD = uint64_t{hp_.n_head_kv} * hp_.head_dim_v;
    const uint64_t OD = uint64_t{hp_.n_head} * hp_.head_dim_v;

    auto on = ld.vec("output_norm.weight", E);
    if (!on) return on.error();
    output_norm_ = std::move(*on);
    {
        auto out = ld.matrix("output.weight", E, V, false);
        if (!out) return out.error();
        if (*out) {
            output_ = *out;
        } else {
            output_ = tok_embd_;
            hp_.tied_output = true;
        }
    }
    const bool gemma = hp_.arch == Arch::Gemma3;
    const bool qwen = hp_.arch == Arch::Qwen2;
    layers_.resize(hp_.n_layer);
    for (uint32_t il = 0; il < hp_.n_layer; ++il) {
        Layer& L = layers_[il];
        const std::string b = "blk." + std::to_string(il) + ".";
        auto take_vec = [&](std::vector<float>& dst, const std::string& n, uint64_t len, bool req) -> Status {
            auto r = ld.vec(b + n, len, req);
            if (!r) return r.error();
            dst = std::move(*r);
            return {};
        };
        auto take_mat = [&](Weight& dst, const std::string& n, uint64_t cols, uint64_t rows) -> Status {
            auto r = ld.matrix(b + n, cols, rows);
            if (!r) return r.error();
            dst = *r;
            return {};
        };
        Status s;
        if (!(s = take_vec(L.attn_norm, "attn_norm.weight", E, true))) return s;
        if (!(s = take_mat(L.wq, "attn_q.weight", E, QD))) return s;
        if (!(s = take_mat(L.wk, "attn_k.weight", E, KD))) return s;
        if (!(s = take_mat(L.wv, "attn_v.weight", E, VD))) return s;
        if (!(s = take_mat(L.wo, "attn_output.weight", OD, E))) return s;
        if (!(s = take_vec(L.bq, "attn_q.bias", QD, qwen))) return s;
        if (!(s = take_vec(L.bk, "attn_k.bias", KD, qwen))) return s;
        if (!(s = take_vec(L.bv, "attn_v.bias", VD, qwen))) return s;
        if (!(s = take_vec(L.bo, "attn_output.bias", E, false))) return s;
        if (!(s = take_vec(L.ffn_norm, "ffn_norm.weight", E, true))) return s;
        if (!(s = take_mat(L.ffn_gate, "ffn_gate.weight", E, F))) return s;
        if (!(s = take_mat(L.ffn_up, "ffn_up.weight", E, F))) return s;
        if (!(s = take_mat(L.ffn_down, "ffn_down.weight", F, E))) return s;
        if (gemma) {
            if (!(s = take_vec(L.attn_q_norm, "attn_q_norm.weight", hp_.head_dim_k, true))) return s;
            if (!(s = take_vec(L.attn_k_norm, "attn_k_norm.weight", hp_.head_dim_k, true))) return s;
            if (!(s = take_vec(L.attn_post_norm, "post_attention_norm.weight", E, true))) return s;
            if (!(s = take_vec(L.ffn_post_norm, "post_ffw_norm.weight", E, true))) return s;
        }
    }
    if (hp_.arch == Arch::Llama) {
        auto rf = ld.vec("rope_freqs.weight", hp_.n_rot / 2, false);
        if (!rf) return rf.error();
        rope_freqs_ = std::move(*rf);
    }
    return {};
}

Result<Sequence> Model::new_sequence(uint32_t n_ctx) const {
    if (n_ctx == 0) n_ctx = std::min<uint32_t>(hp_.n_ctx_train, 4096);
    if (n_ctx == 0) return make_error("new_sequence: context size 0");
    if (n_ctx > (1u << 20)) return make_error("new_sequence: context size " + std::to_string(n_ctx) + " too large");
    Sequence s;
    s.model_ = this;
    s.n_ctx_ = n_ctx;
    const size_t kd = size_t{hp_.n_head_kv} * hp_.head_dim_k;
    const size_t vd = size_t{hp_.n_head_kv} * hp_.head_dim_v;
    s.k_.resize(hp_.n_layer);
    s.v_.resize(hp_.n_layer);
    for (uint32_t il = 0; il < hp_.n_layer; ++il) {
        s.k_[il].assign(kd * n_ctx, 0);
        s.v_[il].assign(vd * n_ctx, 0);
    }
    s.kv_bytes_ = size_t{hp_.n_layer} * (kd + vd) * n_ctx * sizeof(uint16_t);
    s.logits_.assign(hp_.n_vocab, 0.0f);
    return s;
}

void Model::matmul(Workspace& ws, const Weight& w, const float* x, size_t n_tokens, float* y) const {
    matmul_many(ws, {&w}, x, n_tokens, {y});
}

void Model::matmul_many(Workspace& ws, std::initializer_list<const Weight*> w, const float* x, size_t n_tokens,
                        std::initializer_list<float*> y) const {
    // With the scalar ISA this is ggml's scalar vec_dot per (row, token): the bit-exact path.
    std::array<kernels::MatmulWeight, 3> mw{};
    size_t i = 0;
    for (const Weight* p : w) mw[i++] = {p->tensor->type, p->data, p->rows, p->cols, p->row_bytes, p->rows16};
    kernels::matmul_many(std::span(mw.data(), i), x, n_tokens, std::span(y.begin(), y.size()), *pool_, ws.mm,
                         kernels::active_isa());
}

Model::AttnShape Model::attn_shape(std::span<const BatchItem> items, uint32_t il) const {
    AttnShape a;
    a.hk = hp_.head_dim_k;
    a.hv = hp_.head_dim_v;
    a.group = hp_.n_head / hp_.n_head_kv;
    a.kd = size_t{hp_.n_head_kv} * a.hk;
    a.qd = size_t{hp_.n_head} * a.hk;
    a.od = size_t{hp_.n_head} * a.hv;
    for (const BatchItem& it : items) a.max_ctx = std::max(a.max_ctx, it.seq->n_ctx_);
    a.swa = hp_.swa_layers[il] && hp_.n_swa > 0 ? hp_.n_swa : 0;
    // Gemma 3 scales Q before the product; the others scale the product.
    a.kq_scale = hp_.arch == Arch::Gemma3 ? 1.0f : hp_.attn_scale;
    return a;
}

void Model::attention(Workspace& ws, std::span<const BatchItem> items, uint32_t il, size_t n_tokens) const {
    const AttnShape a = attn_shape(items, il);
    const kernels::SimdOps* ops = kernels::simd_ops(kernels::active_isa());
    if (ops != nullptr) return attention_tiled(ws, items, il, a, *ops);
    const uint32_t hk = a.hk, hv = a.hv, n_head = hp_.n_head, group = a.group, max_ctx = a.max_ctx;
    const size_t kd = a.kd, qd = a.qd, od = a.od;
    const float kq_scale = a.kq_scale;

    // Scalar (ggml-exact) path, one (token, head) at a time.
    // Per thread: scores (f32, max_ctx); softmax weights (f16, max_ctx) and q (f16, hk).
    const size_t per_thread16 = size_t{max_ctx} + hk;
    if (ws.thread_buf.size() < size_t{max_ctx} * pool_->size()) ws.thread_buf.resize(size_t{max_ctx} * pool_->size());
    if (ws.thread_buf16.size() < per_thread16 * pool_->size()) ws.thread_buf16.resize(per_thread16 * pool_->size());
    pool_->parallel_for(n_tokens * n_head, 1, [&](size_t begin, size_t end, size_t thread) {
        float* scores = ws.thread_buf.data() + thread * max_ctx;
        uint16_t* w16 = ws.thread_buf16.data() + thread * per_thread16;
        uint16_t* q16 = w16 + max_ctx;
        for (size_t task = begin; task < end; ++task) {
            const size_t t = task / n_head;
            const uint32_t h = static_cast<uint32_t>(task % n_head);
            const uint32_t g = h / group;
            const Sequence& s = *items[ws.tok_item[t]].seq;
            const uint16_t* K = s.k_[il].data();
            const uint16_t* Vt = s.v_[il].data();
            const uint32_t pos = ws.tok_pos[t];
            const float* q = ws.q.data() + t * qd + size_t{h} * hk;
            for (uint32_t i = 0; i < hk; ++i) q16[i] = fp32_to_fp16(q[i]);
            const uint32_t n_kv = pos + 1;
            const uint32_t j0 = a.first_key(pos);
            float mx = -std::numeric_limits<float>::infinity();
            for (uint32_t j = j0; j < n_kv; ++j) {
                const float d = kernels::vec_dot_f16(hk, K + size_t{j} * kd + size_t{g} * hk, q16);
                scores[j] = d * kq_scale;
                mx = std::max(mx, scores[j]);
            }
            // ggml_soft_max (ggml_vec_soft_max_f32, baseline x86-64 variant): ggml_v_expf, each
            // group of 4 cells from cell 0 summed in float as (e0+e1)+(e2+e3), the group sums
            // added in double; then multiply by the float of 1/sum. Cells outside the window or
            // past the last position (masked, -inf) contribute exact zeros; llama.cpp's row length
            // (the KV cells in view) is a multiple of 256, so it never has a scalar remainder.
            for (uint32_t j = j0; j < n_kv; ++j) scores[j] = expf_ggml(scores[j] - mx);
            double sum = 0.0;
            for (uint32_t j4 = j0 / 4 * 4; j4 < n_kv; j4 += 4) {
                float e[4];
                for (uint32_t l = 0; l < 4; ++l) {
                    const uint32_t j = j4 + l;
                    e[l] = j >= j0 && j < n_kv ? scores[j] : 0.0f;
                }
                sum += static_cast<double>((e[0] + e[1]) + (e[2] + e[3]));
            }
            const auto inv = static_cast<float>(1.0 / sum);
            for (uint32_t j = j0; j < n_kv; ++j) w16[j] = fp32_to_fp16(scores[j] * inv);
            float* out = ws.attn.data() + t * od + size_t{h} * hv;
            for (uint32_t d = 0; d < hv; ++d) {
                const uint16_t* vrow = Vt + (size_t{g} * hv + d) * s.n_ctx_;
                out[d] = kernels::vec_dot_f16(n_kv - j0, vrow + j0, w16 + j0);
            }
        }
    });
}

void Model::attention_tiled(Workspace& ws, std::span<const BatchItem> items, uint32_t il, const AttnShape& a,
                            const kernels::SimdOps& ops) const {
    const uint32_t hk = a.hk, hv = a.hv, group = a.group;

    // A tile: up to kTileQ queries that share one K/V head -- gs heads of a KV group times tt
    // consecutive tokens of one sequence -- so each key and value row is converted and read once
    // for all of them. Fewer queries per tile when that leaves too few tiles for the threads.
    constexpr uint32_t kTileQ = 8;
    const auto largest_divisor_below = [](uint32_t n, uint32_t limit) {
        for (uint32_t d = std::min(n, limit); d > 1; --d)
            if (n % d == 0) return d;
        return 1u;
    };
    uint32_t gs = largest_divisor_below(group, kTileQ);
    uint32_t tt = std::max(1u, kTileQ / gs);
    const auto count_tiles = [&] {
        size_t n = 0;
        for (const BatchItem& it : items) n += (it.tokens.size() + tt - 1) / tt;
        return n * hp_.n_head_kv * (group / gs);
    };
    const size_t want = 2 * pool_->size();
    while (tt > 1 && count_tiles() < want) tt = std::max(1u, tt / 2);
    while (gs > 1 && count_tiles() < want) gs = largest_divisor_below(group, gs - 1);
    ws.tiles.clear();
    {
        uint32_t t_begin = 0;
        for (const BatchItem& it : items) {
            const auto nt_item = static_cast<uint32_t>(it.tokens.size());
            for (uint32_t t0 = 0; t0 < nt_item; t0 += tt) {
                const uint32_t nt = std::min(tt, nt_item - t0);
                for (uint32_t g = 0; g < hp_.n_head_kv; ++g)
                    for (uint32_t h0 = g * group; h0 < (g + 1) * group; h0 += gs)
                        ws.tiles.push_back({t_begin + t0, nt, g, h0});
            }
            t_begin += nt_item;
        }
    }

    // Per thread: scores and f32 weights (kTileQ rows of max_ctx), F16 weights (kTileQ rows),
    // f32 queries (kTileQ x hk), converted keys (64 x hk), one F16 query (hk).
    const size_t ld = a.max_ctx;
    const size_t per_f = 2 * kTileQ * ld + kTileQ * size_t{hk} + 64 * size_t{hk};
    const size_t per_16 = kTileQ * ld + hk;
    if (ws.thread_buf.size() < per_f * pool_->size()) ws.thread_buf.resize(per_f * pool_->size());
    if (ws.thread_buf16.size() < per_16 * pool_->size()) ws.thread_buf16.resize(per_16 * pool_->size());

    pool_->parallel_for(ws.tiles.size(), 1, [&](size_t begin, size_t end, size_t thread) {
        float* scores = ws.thread_buf.data() + thread * per_f;
        float* wf = scores + kTileQ * ld;
        float* qf = wf + kTileQ * ld;
        float* kf = qf + kTileQ * size_t{hk};
        uint16_t* w16 = ws.thread_buf16.data() + thread * per_16;
        uint16_t* q16 = w16 + kTileQ * ld;
        for (size_t ti = begin; ti < end; ++ti) {
            const AttnTile tile = ws.tiles[ti];
            const uint32_t heads = std::min(gs, (tile.g + 1) * group - tile.h0);
            const Sequence& s = *items[ws.tok_item[tile.t0]].seq;
            const uint16_t* K = s.k_[il].data() + size_t{tile.g} * hk;
            const uint16_t* Vt = s.v_[il].data() + size_t{tile.g} * hv * s.n_ctx_;
            float* outs[kTileQ];
            uint32_t lo[kTileQ], hi[kTileQ];
            size_t nq = 0;
            for (uint32_t i = 0; i < tile.nt; ++i) {
                const size_t t = tile.t0 + i;
                const uint32_t pos = ws.tok_pos[t];
                for (uint32_t hh = 0; hh < heads; ++hh, ++nq) {
                    const uint32_t h = tile.h0 + hh;
                    const float* q = ws.q.data() + t * a.qd + size_t{h} * hk;
                    // Q is rounded to F16 as ggml does before its F16 dot products.
                    ops.f32_to_f16(q, q16, hk);
                    ops.f16_to_f32(q16, qf + nq * hk, hk);
                    outs[nq] = ws.attn.data() + t * a.od + size_t{h} * hv;
                    lo[nq] = a.first_key(pos);
                    hi[nq] = pos + 1;
                }
            }
            // Tokens are in position order: the first query sees the earliest keys, the last the latest.
            const uint32_t j_lo = lo[0], j_hi = hi[nq - 1];
            ops.attn_scores(qf, nq, hk, K, a.kd, j_lo, j_hi, a.kq_scale, scores, ld, kf);
            const uint32_t ja = j_lo / 8 * 8;
            for (size_t iq = 0; iq < nq; ++iq) {
                float* w = wf + iq * ld;
                ops.softmax_f16(scores + iq * ld + lo[iq], hi[iq] - lo[iq], w16 + iq * ld + lo[iq]);
                ops.f16_to_f32(w16 + iq * ld + lo[iq], w + lo[iq], hi[iq] - lo[iq]);
                std::fill(w + ja, w + lo[iq], 0.0f);
                std::fill(w + hi[iq], w + j_hi, 0.0f);
            }
            ops.attn_values(wf, nq, ld, Vt, s.n_ctx_, hv, ja, j_hi, outs);
        }
    });
}

Result<std::span<const float>> Model::forward(Sequence& s, std::span<const int32_t> tokens) const {
    const BatchItem item{&s, tokens, true};
    if (auto st = forward_batch(std::span(&item, 1)); !st) return st.error();
    return std::span<const float>(s.logits_);
}

Status Model::forward_batch(std::span<const BatchItem> items) const {
    if (items.empty()) return make_error("forward: empty batch");
    size_t T = 0;
    for (size_t i = 0; i < items.size(); ++i) {
        const BatchItem& it = items[i];
        if (it.seq == nullptr) return make_error("forward: no sequence");
        const Sequence& s = *it.seq;
        if (s.model_ != this) return make_error("forward: the sequence belongs to another model");
        for (size_t j = 0; j < i; ++j)
            if (items[j].seq == it.seq) return make_error("forward: a sequence appears twice in one batch");
        if (it.tokens.empty()) return make_error("forward: no tokens");
        if (it.tokens.size() > s.n_ctx_ - s.n_past_) {
            return make_error("forward: " + std::to_string(it.tokens.size()) + " tokens do not fit the context (" +
                              std::to_string(s.n_past_) + " of " + std::to_string(s.n_ctx_) + " used)");
        }
        for (int32_t id : it.tokens) {
            if (id < 0 || static_cast<uint32_t>(id) >= hp_.n_vocab) {
                return make_error("forward: token id " + std::to_string(id) + " out of range (vocabulary of " +
                                  std::to_string(hp_.n_vocab) + ")");
            }
        }
        T += it.tokens.size();
    }
    std::lock_guard lock(forward_mu_);
    Workspace& ws = ws_;
    const size_t E = hp_.n_embd, F = hp_.n_ff;
    const uint32_t hk = hp_.head_dim_k, hv = hp_.head_dim_v;
    const size_t qd = size_t{hp_.n_head} * hk;
    const size_t kd = size_t{hp_.n_head_kv} * hk;
    const size_t vd = size_t{hp_.n_head_kv} * hv;
    const size_t od = size_t{hp_.n_head} * hv;
    auto grow = [](auto& v, size_t n) {
        if (v.size() < n) v.resize(n);
    };
    grow(ws.x, T * E);
    grow(ws.xn, T * E);
    grow(ws.q, T * qd);
    grow(ws.k_cur, T * kd);
    grow(ws.v_cur, T * vd);
    grow(ws.attn, T * od);
    grow(ws.tmp, T * E);
    grow(ws.gate, T * F);
    grow(ws.up, T * F);
    grow(ws.tok_item, T);
    grow(ws.tok_pos, T);
    grow(ws.tok_id, T);
    {
        size_t t = 0;
        for (size_t i = 0; i < items.size(); ++i) {
            for (size_t j = 0; j < items[i].tokens.size(); ++j, ++t) {
                ws.tok_item[t] = static_cast<uint32_t>(i);
                ws.tok_pos[t] = items[i].seq->n_past_ + static_cast<uint32_t>(j);
                ws.tok_id[t] = items[i].tokens[j];
            }
        }
    }

    float* x = ws.x.data();
    float* xn = ws.xn.data();
    // Embeddings.
    for (size_t t = 0; t < T; ++t) {
        const std::byte* row = tok_embd_.data + static_cast<size_t>(ws.tok_id[t]) * tok_embd_.row_bytes;
        tok_embd_.traits->dequantize(row, x + t * E, static_cast<int64_t>(E));
        if (hp_.embd_scale != 1.0f) {
            for (size_t i = 0; i < E; ++i) x[t * E + i] *= hp_.embd_scale;
        }
    }
    const float* freq_factors = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
    // SIMD element-wise kernels unless the scalar (ggml-exact) ISA is selected.
    const kernels::SimdOps* ops = kernels::simd_ops(kernels::active_isa());
    auto norm = [&](const float* in, const float* w, float* out, size_t n) {
        if (ops != nullptr) {
            ops->rms_norm(in, w, out, n, hp_.rms_eps);
        } else {
            rms_norm(in, w, out, n, hp_.rms_eps);
        }
    };

    // x += y over one token's embedding.
    auto residual = [&](float* xr, const float* yr) {
        if (ops != nullptr) {
            ops->add(xr, yr, E);
        } else {
            for (size_t i = 0; i < E; ++i) xr[i] = yr[i] + xr[i];
        }
    };
    // Runs body(t) for every token of the batch, spread over the threads.
    auto for_tokens = [&](auto&& body) {
        pool_->parallel_for(T, 1, [&](size_t t0, size_t t1, size_t) {
            for (size_t t = t0; t < t1; ++t) body(t);
        });
    };
    // RoPE angles per token, once per forward pass for each (base, scale) the layers use.
    const size_t R = hp_.n_rot;
    auto angles = [&](std::vector<float>& out, float base, float scale) {
        grow(out, T * R);
        for_tokens([&](size_t t) {
            rope_angles(hp_.n_rot, static_cast<int32_t>(ws.tok_pos[t]), base, scale, freq_factors, out.data() + t * R);
        });
        return out.data();
    };
    const float* rope_full = angles(ws.rope_full, hp_.rope_freq_base, hp_.rope_freq_scale);
    const float* rope_swa = rope_full;
    const bool has_swa = std::find(hp_.swa_layers.begin(), hp_.swa_layers.end(), true) != hp_.swa_layers.end();
    if (has_swa && (hp_.rope_freq_base_swa != hp_.rope_freq_base || hp_.rope_freq_scale_swa != hp_.rope_freq_scale)) {
        rope_swa = angles(ws.rope_swa, hp_.rope_freq_base_swa, hp_.rope_freq_scale_swa);
    }
    const float* gelu = hp_.arch == Arch::Gemma3 ? gelu_table() : nullptr;

    for (uint32_t il = 0; il < hp_.n_layer; ++il) {
        const Layer& L = layers_[il];
        for_tokens([&](size_t t) { norm(x + t * E, L.attn_norm.data(), xn + t * E, E); });
        matmul_many(ws, {&L.wq, &L.wk, &L.wv}, xn, T, {ws.q.data(), ws.k_cur.data(), ws.v_cur.data()});
        auto add_bias = [T](float* y, const std::vector<float>& b) {
            if (b.empty()) return;
            for (size_t t = 0; t < T; ++t)
                for (size_t i = 0; i < b.size(); ++i) y[t * b.size() + i] += b[i];
        };
        add_bias(ws.q.data(), L.bq);
        add_bias(ws.k_cur.data(), L.bk);
        add_bias(ws.v_cur.data(), L.bv);

        const float* cs = hp_.swa_layers[il] ? rope_swa : rope_full;
        const auto rotate = [&](float* v, const float* cst) {
            if (ops != nullptr) {
                ops->rope(v, hp_.n_rot, hp_.rope_type != RopeType::Normal, cst);
            } else {
                rope_apply(v, hp_.n_rot, hp_.rope_type, cst);
            }
        };
        for_tokens([&](size_t t) {
            Sequence& s = *items[ws.tok_item[t]].seq;
            const auto pos = static_cast<size_t>(ws.tok_pos[t]);
            const float* cst = cs + t * R;
            for (uint32_t h = 0; h < hp_.n_head; ++h) {
                float* q = ws.q.data() + t * qd + size_t{h} * hk;
                if (!L.attn_q_norm.empty()) norm(q, L.attn_q_norm.data(), q, hk);
                rotate(q, cst);
                if (hp_.arch == Arch::Gemma3) {
                    for (uint32_t i = 0; i < hk; ++i) q[i] *= hp_.attn_scale;
                }
            }
            for (uint32_t h = 0; h < hp_.n_head_kv; ++h) {
                float* k = ws.k_cur.data() + t * kd + size_t{h} * hk;
                if (!L.attn_k_norm.empty()) norm(k, L.attn_k_norm.data(), k, hk);
                rotate(k, cst);
            }
            // Store K in the cache; every token has its own cells.
            uint16_t* kc = s.k_[il].data() + pos * kd;
            const float* kt = ws.k_cur.data() + t * kd;
            if (ops != nullptr) {
                ops->f32_to_f16(kt, kc, kd);
            } else {
                for (size_t i = 0; i < kd; ++i) kc[i] = fp32_to_fp16(kt[i]);
            }
        });
        // V is stored transposed (one row per dimension, one column per position): split by
        // dimension, so that two threads never write neighbouring positions of one cache line.
        pool_->parallel_for(vd, 8, [&](size_t i0, size_t i1, size_t) {
            float vf[64];
            uint16_t v16[64];
            for (size_t i = i0; i < i1; ++i) {
                for (size_t t0 = 0; t0 < T; t0 += 64) {
                    const size_t n = std::min<size_t>(64, T - t0);
                    for (size_t k = 0; k < n; ++k) vf[k] = ws.v_cur[(t0 + k) * vd + i];
                    if (ops != nullptr) {
                        ops->f32_to_f16(vf, v16, n);
                    } else {
                        for (size_t k = 0; k < n; ++k) v16[k] = fp32_to_fp16(vf[k]);
                    }
                    for (size_t k = 0; k < n; ++k) {
                        Sequence& s = *items[ws.tok_item[t0 + k]].seq;
                        s.v_[il][i * s.n_ctx_ + ws.tok_pos[t0 + k]] = v16[k];
                    }
                }
            }
        });
        attention(ws, items, il, T);
        float* tmp = ws.tmp.data();
        matmul(ws, L.wo, ws.attn.data(), T, tmp);
        add_bias(tmp, L.bo);
        // Residual, then the feed-forward's input norm.
        for_tokens([&](size_t t) {
            if (!L.attn_post_norm.empty()) norm(tmp + t * E, L.attn_post_norm.data(), tmp + t * E, E);
            residual(x + t * E, tmp + t * E);
            norm(x + t * E, L.ffn_norm.data(), xn + t * E, E);
        });
        float* gate = ws.gate.data();
        float* up = ws.up.data();
        matmul_many(ws, {&L.ffn_gate, &L.ffn_up}, xn, T, {gate, up});
        for_tokens([&](size_t t) {
            float* g = gate + t * F;
            const float* u = up + t * F;
            if (gelu != nullptr && ops != nullptr) {
                ops->gelu_mul(g, u, F, gelu);
            } else if (gelu != nullptr) {
                for (size_t i = 0; i < F; ++i) g[i] = gelu_ggml(gelu, g[i]) * u[i];
            } else if (ops != nullptr) {
                ops->silu_mul(g, u, F);
            } else {
                swiglu_row(g, u, F);
            }
        });
        matmul(ws, L.ffn_down, gate, T, tmp);
        for_tokens([&](size_t t) {
            if (!L.ffn_post_norm.empty()) norm(tmp + t * E, L.ffn_post_norm.data(), tmp + t * E, E);
            residual(x + t * E, tmp + t * E);
        });
    }
    // Output head: the last position of each item that wants logits.
    size_t n_out = 0;
    {
        size_t t_end = 0;
        for (const BatchItem& it : items) {
            t_end += it.tokens.size();
            if (it.logits) {
                norm(x + (t_end - 1) * E, output_norm_.data(), xn + n_out * E, E);
                ++n_out;
            }
        }
    }
    if (n_out > 0) {
        const size_t V = hp_.n_vocab;
        grow(ws.logits, n_out * V);
        matmul(ws, output_, xn, n_out, ws.logits.data());
        size_t o = 0;
        for (const BatchItem& it : items) {
            if (!it.logits) continue;
            float* dst = it.seq->logits_.data();
            std::memcpy(dst, ws.logits.data() + o * V, V * sizeof(float));
            if (hp_.final_logit_softcap > 0.0f) {
                const float c = hp_.final_logit_softcap;
                for (size_t i = 0; i < V; ++i) dst[i] = std::tanh(dst[i] * (1.0f / c)) * c;
            }
            ++o;
        }
    }
    for (const BatchItem& it : items) it.seq->n_past_ += static_cast<uint32_t>(it.tokens.size());
    return {};
}

}  // namespace realm::model
