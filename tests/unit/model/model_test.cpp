// Model layer: small hand-made GGUFs for errors and internal consistency, and the real models
// (stories260K, SmolLM2-135M Q4_1, Gemma 3 270M Q4_K_M) against llama.cpp reference data in
// tests/data/model_refs/*.json (see tests/py/ref/gen_model_refs.mjs).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gguf/writer.hpp"
#include "kernels/isa.hpp"
#include "kernels/threadpool.hpp"
#include "model/model.hpp"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REALM_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define REALM_ASAN 1
#endif

namespace realm::model {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Thread pool.

TEST(ThreadPool, CoversEveryIndexOnce) {
    kernels::ThreadPool pool(4);
    EXPECT_EQ(pool.size(), 4u);
    for (size_t n : {0u, 1u, 7u, 1000u}) {
        std::vector<int> hits(n, 0);
        pool.parallel_for(n, 3, [&](size_t b, size_t e, size_t thread) {
            EXPECT_LT(thread, 4u);
            for (size_t i = b; i < e; ++i) hits[i] += 1;
        });
        EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
    }
}

TEST(ThreadPool, SingleThread) {
    kernels::ThreadPool pool(1);
    size_t sum = 0;
    pool.parallel_for(100, 8, [&](size_t b, size_t e, size_t) {
        for (size_t i = b; i < e; ++i) sum += i;
    });
    EXPECT_EQ(sum, 4950u);
}

// ---------------------------------------------------------------------------------------------
// A tiny random llama-style model built with gguf::Writer.

struct TinySpec {
    std::string arch = "llama";
    uint32_t n_embd = 32, n_ff = 64, n_head = 4, n_head_kv = 2, n_layer = 2, n_vocab = 40;
    bool tied = false;
    bool gemma_extras = false;  // q/k norms and post norms
    bool biases = false;        // q/k/v biases
    std::string drop;           // tensor name to leave out
    std::string reshape;        // tensor name to give a wrong shape
    TensorType wtype = TensorType::F32;  // type of the 2-D weights
    uint32_t n_swa = 3;                  // gemma3 sliding window
    std::optional<uint32_t> swa_pattern;  // gemma3 sliding_window_pattern (default 6)
};

// A tiny Gemma 3: q/k norms, post norms, tied embeddings.
TinySpec gemma3_spec() {
    TinySpec sp;
    sp.arch = "gemma3";
    sp.gemma_extras = true;
    sp.tied = true;
    return sp;
}

struct TinyModel {
    std::vector<std::vector<float>> storage;
    std::vector<std::vector<std::byte>> qstorage;
    std::vector<std::byte> bytes;
};

TinyModel make_tiny(const TinySpec& sp) {
    TinyModel tm;
    gguf::Writer w;
    const std::string a = sp.arch;
    w.set("general.architecture", a);
    w.set(a + ".context_length", uint32_t{64});
    w.set(a + ".embedding_length", sp.n_embd);
    w.set(a + ".feed_forward_length", sp.n_ff);
    w.set(a + ".block_count", sp.n_layer);
    w.set(a + ".attention.head_count", sp.n_head);
    w.set(a + ".attention.head_count_kv", sp.n_head_kv);
    w.set(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
    if (sp.arch == "gemma3") {
        w.set(a + ".attention.sliding_window", sp.n_swa);
        if (sp.swa_pattern) w.set(a + ".attention.sliding_window_pattern", *sp.swa_pattern);
        w.set(a + ".attention.key_length", sp.n_embd / sp.n_head);
        w.set(a + ".attention.value_length", sp.n_embd / sp.n_head);
    }
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.0f, 0.3f);
    tm.storage.reserve(128);
    tm.qstorage.reserve(128);
    auto add = [&](const std::string& name, std::vector<uint64_t> dims, float base) {
        if (name == sp.drop) return;
        if (name == sp.reshape) dims[0] += 1;
        uint64_t n = 1;
        for (auto d : dims) n *= d;
        auto& v = tm.storage.emplace_back(n);
        for (auto& x : v) x = base + nd(rng);
        if (dims.size() == 2 && sp.wtype != TensorType::F32) {
            auto rs = kernels::row_size(sp.wtype, static_cast<int64_t>(dims[0]));
            ASSERT_TRUE(rs.ok()) << rs.error().message;
            auto& q = tm.qstorage.emplace_back(*rs * dims[1]);
            ASSERT_TRUE(kernels::quantize(sp.wtype, v, q).ok());
            auto s = w.add_tensor(name, dims, sp.wtype, q);
            EXPECT_TRUE(s.ok()) << s.error().message;
            return;
        }
        auto s = w.add_tensor(name, dims, TensorType::F32, std::as_bytes(std::span<const float>(v)));
        EXPECT_TRUE(s.ok()) << s.error().message;
    };
    const uint64_t E = sp.n_embd, F = sp.n_ff, hd = sp.n_embd / sp.n_head, KV = hd * sp.n_head_kv;
    add("token_embd.weight", {E, sp.n_vocab}, 0.0f);
    add("output_norm.weight", {E}, 1.0f);
    if (!sp.tied) add("output.weight", {E, sp.n_vocab}, 0.0f);
    for (uint32_t il = 0; il < sp.n_layer; ++il) {
        const std::string b = "blk." + std::to_string(il) + ".";
        add(b + "attn_norm.weight", {E}, 1.0f);
        add(b + "attn_q.weight", {E, E}, 0.0f);
        add(b + "attn_k.weight", {E, KV}, 0.0f);
        add(b + "attn_v.weight", {E, KV}, 0.0f);
        add(b + "attn_output.weight", {E, E}, 0.0f);
        if (sp.biases) {
            add(b + "attn_q.bias", {E}, 0.0f);
            add(b + "attn_k.bias", {KV}, 0.0f);
            add(b + "attn_v.bias", {KV}, 0.0f);
        }
        add(b + "ffn_norm.weight", {E}, 1.0f);
        add(b + "ffn_gate.weight", {E, F}, 0.0f);
        add(b + "ffn_up.weight", {E, F}, 0.0f);
        add(b + "ffn_down.weight", {F, E}, 0.0f);
        if (sp.gemma_extras) {
            add(b + "attn_q_norm.weight", {hd}, 1.0f);
            add(b + "attn_k_norm.weight", {hd}, 1.0f);
            add(b + "post_attention_norm.weight", {E}, 1.0f);
            add(b + "post_ffw_norm.weight", {E}, 1.0f);
        }
    }
    auto bytes = w.write_to_memory();
    EXPECT_TRUE(bytes.ok()) << bytes.error().message;
    if (bytes.ok()) tm.bytes = std::move(bytes.value());
    return tm;
}

// The model of `tm` (whose bytes must outlive it), or null after a test failure.
std::unique_ptr<Model> load_tiny(const TinyModel& tm, size_t threads = 2, Weights weights = Weights::Rows16) {
    auto f = gguf::File::open_memory(tm.bytes);
    EXPECT_TRUE(f.ok());
    if (!f) return nullptr;
    auto m = Model::load(std::move(*f), {.n_threads = threads, .weights = weights});
    EXPECT_TRUE(m.ok()) << m.error().message;
    if (!m) return nullptr;
    return std::move(*m);
}

// Selects a kernel ISA for the scope's lifetime.
struct IsaScope {
    explicit IsaScope(kernels::Isa isa) { EXPECT_TRUE(kernels::set_active_isa(isa)); }
    ~IsaScope() { kernels::set_active_isa(prev); }
    IsaScope(const IsaScope&) = delete;
    IsaScope& operator=(const IsaScope&) = delete;
    kernels::Isa prev = kernels::active_isa();
};

std::string load_error(const TinySpec& sp) {
    TinyModel tm = make_tiny(sp);
    auto f = gguf::File::open_memory(tm.bytes);
    if (!f) return "gguf: " + f.error().message;
    auto m = Model::load(*f, {.n_threads = 2});
    if (m) return "";
    return m.error().message;
}

TEST(ModelErrors, UnknownArchitecture) {
    TinySpec sp;
    sp.arch = "mamba9";
    const std::string e = load_error(sp);
    EXPECT_NE(e.find("unsupported model architecture 'mamba9'"), std::string::npos) << e;
}

TEST(ModelErrors, MissingTensor) {
    TinySpec sp;
    sp.drop = "blk.1.ffn_up.weight";
    const std::string e = load_error(sp);
    EXPECT_NE(e.find("missing tensor 'blk.1.ffn_up.weight'"), std::string::npos) << e;
    sp.drop = "token_embd.weight";
    EXPECT_NE(load_error(sp).find("missing tensor 'token_embd.weight'"), std::string::npos);
    sp.drop = "";
    sp.arch = "qwen2";  // qwen2 requires the q/k/v biases
    EXPECT_NE(load_error(sp).find("missing tensor 'blk.0.attn_q.bias'"), std::string::npos) << load_error(sp);
    sp.arch = "gemma3";
    EXPECT_NE(load_error(sp).find("missing tensor 'blk.0.attn_q_norm.weight'"), std::string::npos)
        << load_error(sp);
}

TEST(ModelErrors, WrongShape) {
    TinySpec sp;
    sp.reshape = "blk.0.attn_k.weight";
    const std::string e = load_error(sp);
    EXPECT_NE(e.find("tensor 'blk.0.attn_k.weight' has shape [33, 16], expected [32, 16]"), std::string::npos) << e;
    sp.reshape = "output_norm.weight";
    EXPECT_NE(load_error(sp).find("tensor 'output_norm.weight' has shape [33]"), std::string::npos);
}

TEST(ModelErrors, BadMetadata) {
    TinySpec sp;
    sp.n_head_kv = 3;  // 4 heads are not a multiple of 3 kv heads
    EXPECT_NE(load_error(sp).find("head_count_kv"), std::string::npos) << load_error(sp);
}

// Runs `tokens` one call per token and all at once; the last logits must agree.
void check_prefill_consistency(const TinySpec& sp) {
    TinyModel tm = make_tiny(sp);
    auto f = gguf::File::open_memory(tm.bytes);
    ASSERT_TRUE(f.ok()) << f.error().message;
    auto m = Model::load(*f, {.n_threads = 3});
    ASSERT_TRUE(m.ok()) << m.error().message;
    const std::vector<int32_t> toks = {1, 5, 9, 2, 33, 7};
    auto a = (*m)->new_sequence(16);
    auto b = (*m)->new_sequence(16);
    ASSERT_TRUE(a.ok() && b.ok());
    auto la = (*m)->forward(*a, toks);
    ASSERT_TRUE(la.ok()) << la.error().message;
    std::vector<float> all(la->begin(), la->end());
    std::vector<float> step;
    for (int32_t t : toks) {
        auto lb = (*m)->forward(*b, std::span(&t, 1));
        ASSERT_TRUE(lb.ok()) << lb.error().message;
        step.assign(lb->begin(), lb->end());
    }
    ASSERT_EQ(all.size(), sp.n_vocab);
    float maxdiff = 0.0f;
    for (size_t i = 0; i < all.size(); ++i) maxdiff = std::max(maxdiff, std::abs(all[i] - step[i]));
    // Same arithmetic per position; only the batch split differs.
    EXPECT_EQ(maxdiff, 0.0f);
    EXPECT_EQ(a->n_past(), toks.size());
    EXPECT_TRUE(std::all_of(all.begin(), all.end(), [](float x) { return std::isfinite(x); }));
}

TEST(ModelTiny, PrefillEqualsStepwiseLlama) { check_prefill_consistency(TinySpec{}); }
TEST(ModelTiny, PrefillEqualsStepwiseLlamaTied) {
    TinySpec sp;
    sp.tied = true;
    check_prefill_consistency(sp);
}
TEST(ModelTiny, PrefillEqualsStepwiseQwen2) {
    TinySpec sp;
    sp.arch = "qwen2";
    sp.biases = true;
    check_prefill_consistency(sp);
}
TEST(ModelTiny, PrefillEqualsStepwiseGemma3) {
    TinySpec sp = gemma3_spec();
    sp.n_layer = 7;  // layer 5 is global, the others use the 3-token sliding window
    check_prefill_consistency(sp);
}

TEST(ModelTiny, PrefillEqualsStepwiseQuantized) {
    TinySpec sp;
    sp.n_embd = 256;  // K-quants need rows of 256
    sp.n_ff = 512;
    sp.n_vocab = 64;
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_1, TensorType::Q4_K, TensorType::Q6_K,
                         TensorType::F16}) {
        SCOPED_TRACE(std::string(type_name(t)));
        sp.wtype = t;
        check_prefill_consistency(sp);
    }
}

// Continuous batching: several sequences in one forward_batch (with chunked prompts, and some
// items not asking for logits) give each sequence exactly what it gets alone.
void check_batch_independence(const TinySpec& sp) {
    TinyModel tm = make_tiny(sp);
    auto f = gguf::File::open_memory(tm.bytes);
    ASSERT_TRUE(f.ok()) << f.error().message;
    auto m = Model::load(*f, {.n_threads = 2});
    ASSERT_TRUE(m.ok()) << m.error().message;
    const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9, 2, 33, 7}, {3}, {8, 8, 8, 1, 2}};
    const std::vector<int32_t> next = {4, 6, 10};
    // Alone: prompt, then one decode step.
    std::vector<std::vector<float>> alone;
    for (size_t i = 0; i < prompts.size(); ++i) {
        auto s = (*m)->new_sequence(16);
        ASSERT_TRUE(s.ok());
        ASSERT_TRUE((*m)->forward(*s, prompts[i]).ok());
        auto l = (*m)->forward(*s, std::span(&next[i], 1));
        ASSERT_TRUE(l.ok());
        alone.emplace_back(l->begin(), l->end());
    }
    // Together: prompt 0 in two chunks (the first without logits) beside the others.
    std::vector<Sequence> seqs;
    for (size_t i = 0; i < prompts.size(); ++i) {
        auto s = (*m)->new_sequence(16);
        ASSERT_TRUE(s.ok());
        seqs.push_back(std::move(s.value()));
    }
    const std::span<const int32_t> p0(prompts[0]);
    std::vector<BatchItem> b1 = {{&seqs[0], p0.first(4), false}, {&seqs[1], prompts[1], true}};
    ASSERT_TRUE((*m)->forward_batch(b1).ok());
    std::vector<BatchItem> b2 = {{&seqs[2], prompts[2], true}, {&seqs[0], p0.subspan(4), true},
                                 {&seqs[1], std::span(&next[1], 1), true}};
    ASSERT_TRUE((*m)->forward_batch(b2).ok());
    EXPECT_EQ(std::vector<float>(seqs[1].logits().begin(), seqs[1].logits().end()), alone[1]);
    std::vector<BatchItem> b3 = {{&seqs[0], std::span(&next[0], 1), true}, {&seqs[2], std::span(&next[2], 1), true}};
    ASSERT_TRUE((*m)->forward_batch(b3).ok());
    for (size_t i = 0; i < prompts.size(); ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(std::vector<float>(seqs[i].logits().begin(), seqs[i].logits().end()), alone[i]);
        EXPECT_EQ(seqs[i].n_past(), prompts[i].size() + 1);
    }
    // A bad item rejects the whole batch and changes nothing.
    const int32_t bad = 1000;
    std::vector<BatchItem> b4 = {{&seqs[0], std::span(&next[0], 1), true}, {&seqs[1], std::span(&bad, 1), true}};
    auto st = (*m)->forward_batch(b4);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("token id 1000 out of range"), std::string::npos) << st.error().message;
    EXPECT_EQ(seqs[0].n_past(), prompts[0].size() + 1);
    std::vector<BatchItem> b5 = {{&seqs[0], std::span(&next[0], 1), true}, {&seqs[0], std::span(&next[0], 1), true}};
    EXPECT_FALSE((*m)->forward_batch(b5).ok());
    EXPECT_FALSE((*m)->forward_batch({}).ok());
}

TEST(ModelTiny, BatchEqualsAloneLlama) { check_batch_independence(TinySpec{}); }
TEST(ModelTiny, BatchEqualsAloneGemma3) {
    TinySpec sp = gemma3_spec();
    sp.n_layer = 7;
    check_batch_independence(sp);
}
TEST(ModelTiny, BatchEqualsAloneQuantized) {
    TinySpec sp;
    sp.n_embd = 256;
    sp.n_ff = 512;
    sp.n_vocab = 64;
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_1, TensorType::Q4_K}) {
        SCOPED_TRACE(std::string(type_name(t)));
        sp.wtype = t;
        check_batch_independence(sp);
    }
}

// Logits of a prompt and three single-token steps under the best ISA, for a model loaded while
// `load_isa` was active (which decides whether it made Rows16 copies) with `weights`.
std::vector<float> prompt_and_steps(const TinyModel& tm, kernels::Isa load_isa, Weights weights = Weights::Rows16) {
    std::unique_ptr<Model> m;
    {
        const IsaScope scope(load_isa);
        m = load_tiny(tm, 2, weights);
    }
    const IsaScope scope(kernels::best_isa());
    std::vector<float> out;
    if (!m) return out;
    auto s = m->new_sequence(32);
    EXPECT_TRUE(s.ok());
    if (!s) return out;
    const std::vector<int32_t> prompt = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2};
    auto l = m->forward(*s, prompt);
    EXPECT_TRUE(l.ok());
    if (!l) return out;
    out.assign(l->begin(), l->end());
    for (int32_t tok : {7, 11, 13}) {
        auto step = m->forward(*s, std::span(&tok, 1));
        EXPECT_TRUE(step.ok());
        if (!step) return out;
        out.insert(out.end(), step->begin(), step->end());
    }
    return out;
}

// Every place the matrices can be read from gives the same bits: the file's mapping, the plain
// copies, the Rows16 copies (made where kernels::rows16_copy_pays: Q4_0, Q4_K, and Q6_K except on
// AMD, under the best ISA; none under the scalar one; the other formats: mapping or plain copy),
// for a prompt and for single-token steps.
TEST(ModelTiny, WeightCopiesDoNotChangeResults) {
    TinySpec sp;
    sp.n_embd = 256;
    sp.n_ff = 512;
    sp.n_vocab = 64;
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K}) {
        SCOPED_TRACE(std::string(type_name(t)));
        sp.wtype = t;
        const TinyModel tm = make_tiny(sp);
        const kernels::Isa isa = kernels::best_isa();
        const std::vector<float> file = prompt_and_steps(tm, isa, Weights::File);
        ASSERT_EQ(file.size(), 4u * sp.n_vocab);
        EXPECT_EQ(prompt_and_steps(tm, isa, Weights::Copy), file);
        EXPECT_EQ(prompt_and_steps(tm, isa, Weights::Rows16), file);
        EXPECT_EQ(prompt_and_steps(tm, kernels::Isa::Scalar, Weights::Rows16), file);
    }
}

// One gemma3 layer, all sliding-window with window W: the last position sees only the last W
// tokens, so prompts that differ only before them give identical logits.
std::vector<float> last_logits(const TinySpec& sp, const std::vector<int32_t>& toks) {
    TinyModel tm = make_tiny(sp);
    auto m = load_tiny(tm);
    if (!m) return {};
    auto s = m->new_sequence(16);
    auto l = m->forward(*s, toks);
    EXPECT_TRUE(l.ok());
    if (!l) return {};
    return {l->begin(), l->end()};
}

TEST(ModelTiny, Gemma3SlidingWindow) {
    TinySpec sp = gemma3_spec();
    sp.n_layer = 1;
    sp.swa_pattern = 0;  // every layer uses the window
    const std::vector<int32_t> a = {1, 2, 3, 4, 10, 11, 12};
    const std::vector<int32_t> b = {5, 6, 7, 8, 10, 11, 12};
    EXPECT_EQ(last_logits(sp, a), last_logits(sp, b));
    sp.n_swa = 4;  // now token 3 (a: 4, b: 8) is inside the window
    EXPECT_NE(last_logits(sp, a), last_logits(sp, b));
    sp.n_swa = 3;
    sp.swa_pattern = 1;  // period 1: every layer global
    EXPECT_NE(last_logits(sp, a), last_logits(sp, b));
}

TEST(ModelTiny, ThreadCountDoesNotChangeResults) {
    TinySpec sp;
    sp.wtype = TensorType::Q8_0;
    TinyModel tm = make_tiny(sp);
    auto f = gguf::File::open_memory(tm.bytes);
    ASSERT_TRUE(f.ok());
    const std::vector<int32_t> toks = {3, 1, 4, 1, 5, 9, 2, 6};
    std::vector<std::vector<float>> out;
    for (size_t threads : {1u, 2u, 5u}) {
        auto m = Model::load(*f, {.n_threads = threads});
        ASSERT_TRUE(m.ok()) << m.error().message;
        EXPECT_EQ((*m)->n_threads(), threads);
        auto s = (*m)->new_sequence(16);
        ASSERT_TRUE(s.ok());
        auto l = (*m)->forward(*s, toks);
        ASSERT_TRUE(l.ok()) << l.error().message;
        out.emplace_back(l->begin(), l->end());
    }
    EXPECT_EQ(out[0], out[1]);
    EXPECT_EQ(out[0], out[2]);
}

// A 4096-token context: prefill in chunks of 512, then one decode step at the last position. The
// SIMD attention (F16 dots and fused softmax over up to 4096 keys, sliding window for Gemma 3)
// must agree with the scalar reference.
std::vector<std::vector<float>> long_context_logits(const TinySpec& sp, kernels::Isa isa) {
    const IsaScope scope(isa);
    TinyModel tm = make_tiny(sp);
    auto m = load_tiny(tm);
    if (!m) return {};
    constexpr uint32_t kCtx = 4096;
    auto s = m->new_sequence(kCtx);
    EXPECT_TRUE(s.ok());
    if (!s) return {};
    std::vector<int32_t> toks(kCtx);
    for (uint32_t i = 0; i < kCtx; ++i) toks[i] = static_cast<int32_t>((i * 7919u + 13u) % sp.n_vocab);
    std::vector<std::vector<float>> out;
    for (uint32_t at = 0; at < kCtx;) {
        const uint32_t n = at + 1 == kCtx ? 1 : std::min<uint32_t>(512, kCtx - 1 - at);
        auto l = m->forward(*s, std::span(toks).subspan(at, n));
        EXPECT_TRUE(l.ok()) << l.error().message;
        if (!l) return {};
        out.emplace_back(l->begin(), l->end());
        at += n;
    }
    EXPECT_EQ(s->n_past(), kCtx);
    return out;
}

void check_long_context(const TinySpec& sp) {
    if (kernels::best_isa() == kernels::Isa::Scalar) GTEST_SKIP() << "no SIMD ISA on this CPU";
    const auto ref = long_context_logits(sp, kernels::Isa::Scalar);
    const auto simd = long_context_logits(sp, kernels::best_isa());
    ASSERT_EQ(ref.size(), simd.size());
    ASSERT_FALSE(ref.empty());
    double max_diff = 0.0, max_abs = 0.0;
    for (size_t c = 0; c < ref.size(); ++c) {
        ASSERT_EQ(ref[c].size(), simd[c].size());
        for (size_t i = 0; i < ref[c].size(); ++i) {
            ASSERT_TRUE(std::isfinite(simd[c][i]));
            max_diff = std::max(max_diff, std::abs(double{ref[c][i]} - simd[c][i]));
            max_abs = std::max(max_abs, std::abs(double{ref[c][i]}));
        }
    }
    std::printf("[model] 4k context, %s: max |logit| %.3g, max |simd - scalar| %.3g\n", sp.arch.c_str(), max_abs,
                max_diff);
    EXPECT_GT(max_abs, 0.1);
    EXPECT_LT(max_diff, 2e-3 * max_abs);
}

TEST(ModelTiny, LongContext4kLlama) { check_long_context(TinySpec{}); }

TEST(ModelTiny, LongContext4kGemma3) {
    TinySpec sp = gemma3_spec();
    sp.n_swa = 512;
    sp.swa_pattern = 2;  // layer 0 slides over 512 keys, layer 1 sees all 4096
    check_long_context(sp);
}

TEST(ModelTiny, ForwardErrors) {
    TinyModel tm = make_tiny(TinySpec{});
    auto f = gguf::File::open_memory(tm.bytes);
    ASSERT_TRUE(f.ok());
    auto m = Model::load(*f, {.n_threads = 1});
    ASSERT_TRUE(m.ok()) << m.error().message;
    auto s = (*m)->new_sequence(4);
    ASSERT_TRUE(s.ok());
    const std::vector<int32_t> bad = {1, 40};
    auto r = (*m)->forward(*s, bad);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("token id 40 out of range"), std::string::npos) << r.error().message;
    EXPECT_EQ(s->n_past(), 0u);
    const std::vector<int32_t> five = {1, 2, 3, 4, 5};
    r = (*m)->forward(*s, five);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("do not fit the context"), std::string::npos) << r.error().message;
    EXPECT_FALSE((*m)->forward(*s, {}).ok());
    const std::vector<int32_t> four = {1, 2, 3, 4};
    EXPECT_TRUE((*m)->forward(*s, four).ok());
    const int32_t one = 1;
    EXPECT_FALSE((*m)->forward(*s, std::span(&one, 1)).ok());
    s->clear();
    EXPECT_TRUE((*m)->forward(*s, std::span(&one, 1)).ok());
    EXPECT_EQ((*m)->hparams().arch, Arch::Llama);
    EXPECT_FALSE((*m)->hparams().tied_output);
}

// ---------------------------------------------------------------------------------------------
// Real models against llama.cpp.

// The model file named by env var `var`; nullopt (skip) when unset. A set variable that points
// nowhere is a test failure.
std::optional<std::string> model_path(const char* var, const std::string& fallback = "") {
    const char* v = std::getenv(var);
    if (v && *v) {
        if (!std::filesystem::is_regular_file(v)) {
            ADD_FAILURE() << var << "=" << v << " does not name a file";
            return std::nullopt;
        }
        return std::string(v);
    }
    if (!fallback.empty() && std::filesystem::is_regular_file(fallback)) return fallback;
    return std::nullopt;
}

json load_refs(const std::string& name) {
    // $REALM_MODEL_REFS overrides the checked-in data (e.g. a freshly generated set).
    const char* dir = std::getenv("REALM_MODEL_REFS");
    const std::string path = std::string(dir && *dir ? dir : REALM_MODEL_REFS_DIR) + "/" + name + ".json";
    std::ifstream in(path);
    if (!in) {
        ADD_FAILURE() << "cannot read " << path;
        return json();
    }
    return json::parse(in);
}

struct PromptResult {
    size_t matched = 0;  // steps where our greedy token equals llama.cpp's
    size_t expected = 0;
    double max_logprob_diff = 0.0;  // over llama.cpp's top-k at the last prompt position
    double max_gen_diff = 0.0;      // over llama.cpp's top-2 at every generation step
    size_t tie_flips = 0;            // steps where we chose llama.cpp's runner-up within tie_gap
    std::vector<int32_t> generated;  // our argmax at each step
};

// node-llama-cpp's log-probabilities as the generator records them (AddonContext.cpp,
// SampleToken): the logits sorted in decreasing order, expf(logit - max) summed in float in that
// order, each probability the float quotient e / sum; the generator takes the (double) log of
// that float. Evaluating our logits the same way makes equal logits give equal log-probs, so the
// comparison sees our logits, not the float rounding of a sum over the whole vocabulary (which
// alone moves log-probs by up to ~1e-3 for Gemma 3's 262144 tokens).
class NodeLogProbs {
public:
    explicit NodeLogProbs(std::span<const float> logits) : logits_(logits) {
        std::vector<float> sorted(logits.begin(), logits.end());
        std::sort(sorted.begin(), sorted.end(), std::greater<float>());
        max_ = sorted.front();
        for (float l : sorted) sum_ += std::exp(l - max_);
    }
    double operator()(size_t id) const { return std::log(static_cast<double>(std::exp(logits_[id] - max_) / sum_)); }

private:
    std::span<const float> logits_;
    float max_ = 0.0f;
    float sum_ = 0.0f;
};

// One stored prompt, teacher-forced: after the prompt and after each of llama.cpp's generated
// tokens, our argmax must be llama.cpp's token, and our log-probs of llama.cpp's top-k (last
// prompt position) and top-2 (every step) must match its own. With every argmax equal, the inputs
// fed here are exactly those of our own free-running greedy generation, so `generated` is that
// generation and equals llama.cpp's token for token.
// With tie_gap > 0, a different argmax at a step where llama.cpp's top-2 are closer than tie_gap
// nats is counted in tie_flips instead of failing.
PromptResult run_prompt(const Model& m, const json& p, size_t max_gen, double tie_gap) {
    PromptResult r;
    const auto prompt = p.at("tokens").get<std::vector<int32_t>>();
    auto ref_gen = p.at("generated").get<std::vector<int32_t>>();
    const json& top2 = p.at("gen_top2");
    if (ref_gen.size() > max_gen) ref_gen.resize(max_gen);
    r.expected = ref_gen.size();
    auto seq = m.new_sequence(static_cast<uint32_t>(prompt.size() + ref_gen.size() + 1));
    if (!seq) {
        ADD_FAILURE() << seq.error().message;
        return r;
    }
    auto logits = m.forward(*seq, prompt);
    if (!logits) {
        ADD_FAILURE() << logits.error().message;
        return r;
    }
    {
        const NodeLogProbs lp(*logits);
        for (const auto& e : p.at("top_logprobs")) {
            const double d = std::abs(lp(e.at(0).get<size_t>()) - e.at(1).get<double>());
            r.max_logprob_diff = std::max(r.max_logprob_diff, d);
        }
    }
    for (size_t i = 0; i < ref_gen.size(); ++i) {
        const int32_t ours = argmax(*logits);
        r.generated.push_back(ours);
        const NodeLogProbs lp(*logits);
        for (const auto& e : top2.at(i)) {
            const double d = std::abs(lp(e.at(0).get<size_t>()) - e.at(1).get<double>());
            r.max_gen_diff = std::max(r.max_gen_diff, d);
        }
        if (ours == ref_gen[i]) {
            ++r.matched;
        } else {
            const json& t2 = top2.at(i);
            const double gap = t2.size() > 1 ? t2.at(0).at(1).get<double>() - t2.at(1).at(1).get<double>() : 0.0;
            if (gap < tie_gap) {
                ++r.tie_flips;
            } else {
                ADD_FAILURE() << "prompt " << p.at("name") << " step " << i << ": llama.cpp chose " << ref_gen[i]
                              << ", we chose " << ours << " (llama.cpp's top-2 gap " << gap << ")";
            }
        }
        if (i + 1 == ref_gen.size()) break;
        logits = m.forward(*seq, std::span(&ref_gen[i], 1));
        if (!logits) {
            ADD_FAILURE() << logits.error().message;
            return r;
        }
    }
    return r;
}

// The references come from llama.cpp's baseline x86-64 CPU variant (libggml-cpu-x64.so, pinned by
// scripts/gen_model_refs), whose float arithmetic src/model reproduces operation by operation:
// the same quantized-activation kernels, ggml_v_expf / ggml_v_silu as its SSE2 code computes
// them, the same summation orders (RMSNorm and F16 dot products in double, softmax in groups of
// four), F16 rounding of K, V, Q and the softmax weights. The logits then agree bit for bit, and
// the log-probs (evaluated as the generator does, see NodeLogProbs) up to the last bits of a
// double log (measured: at most 2e-15), so `tol` is 1e-9. Greedy generation must match at every
// step, near-ties included.
// (References from another variant -- REALM_GGML_CPU_VARIANT=best: AVX-512 exp and sums, AMX or
// repacked matmuls -- differ from these by up to ~0.3 nats in log-probs on the quantized models,
// whose outlier channels amplify last-bit differences through the quantized activations, and
// flip greedy near-ties; these tests would then fail.)
//
// The exact checks run with the scalar kernels forced (REALM_KERNELS / the CPU's best ISA would
// otherwise pick the SIMD ones). The *Simd variants run the best ISA this CPU has, whose float
// sums are ordered differently, like llama.cpp's own AVX-512 variant: the last-bit differences are
// amplified as above, so its greedy token must equal llama.cpp's wherever llama.cpp's top-2 are at
// least kSimdTieGap apart (closer near-ties may flip, as they do between llama.cpp's variants;
// they are counted and printed), and log-probs agree within kSimdTol.
void check_model(const char* name, const std::string& path, double tol, size_t max_prompts, size_t max_gen,
                 kernels::Isa isa = kernels::Isa::Scalar, double tie_gap = 0.0) {
    const IsaScope scope(isa);
    ASSERT_EQ(kernels::active_isa(), isa);
    json refs = load_refs(name);
    ASSERT_TRUE(refs.is_object());
    auto t0 = std::chrono::steady_clock::now();
    auto m = Model::open(path);
    ASSERT_TRUE(m.ok()) << m.error().message;
    size_t n = 0;
    for (const auto& p : refs.at("prompts")) {
        if (n++ >= max_prompts) break;
        PromptResult r = run_prompt(**m, p, max_gen, tie_gap);
        std::printf("[model] %s/%s: %zu/%zu greedy tokens equal (%zu near-tie flips), max |dlogprob| top-%zu %.3g, "
                    "generation top-2 %.3g\n",
                    name, p.at("name").get<std::string>().c_str(), r.matched, r.expected, r.tie_flips,
                    p.at("top_logprobs").size(), r.max_logprob_diff, r.max_gen_diff);
        auto ref_gen = p.at("generated").get<std::vector<int32_t>>();
        if (ref_gen.size() > max_gen) ref_gen.resize(max_gen);
        if (tie_gap == 0.0) EXPECT_EQ(r.generated, ref_gen) << name << "/" << p.at("name");
        EXPECT_LT(r.max_logprob_diff, tol) << name << "/" << p.at("name");
        EXPECT_LT(r.max_gen_diff, tol) << name << "/" << p.at("name");
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[model] %s: %.1f s (%zu threads, %s kernels)\n", name, secs, (*m)->n_threads(),
                std::string(kernels::isa_name(isa)).c_str());
}

#ifdef REALM_ASAN
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

TEST(ModelRef, Stories260K) {
    const char* shared = std::getenv("REALM_SHARED_DIR");
    auto path = model_path("REALM_STORIES", shared ? std::string(shared) + "/models/stories260K.gguf" : "");
    if (!path) GTEST_SKIP() << "REALM_STORIES not set and no stories260K.gguf under REALM_SHARED_DIR";
    check_model("stories260K", *path, 1e-9, 100, 48);
}

TEST(ModelRef, SmolLM2) {
    auto path = model_path("REALM_SMOLLM2");
    if (!path) GTEST_SKIP() << "REALM_SMOLLM2 not set";
    check_model("smollm2", *path, 1e-9, 100, 48);
}

TEST(ModelRef, Gemma3) {
    auto path = model_path("REALM_GEMMA3");
    if (!path) GTEST_SKIP() << "REALM_GEMMA3 not set";
    // Under ASan one prompt: the 262144-row output matrix makes each token slow.
    check_model("gemma3", *path, 1e-9, kAsan ? 1 : 100, 48);
}

// SIMD kernels against llama.cpp's baseline build (measured with AVX-512: log-probs within 0.63
// nats on SmolLM2 and Gemma 3, 5e-5 on stories260K; flips at top-2 gaps up to 0.271, SmolLM2
// chat_poem step 2, after the attention tiles changed the order of its float sums). llama.cpp's
// own AVX-512 build differs from its baseline build by up to 0.27 nats, so a closer top-2 does not
// decide the greedy token across SIMD variants.
constexpr double kSimdTol = 1.0;
constexpr double kSimdTieGap = 0.3;

TEST(ModelRef, Stories260KSimd) {
    if (kernels::best_isa() == kernels::Isa::Scalar) GTEST_SKIP() << "no SIMD ISA on this CPU";
    const char* shared = std::getenv("REALM_SHARED_DIR");
    auto path = model_path("REALM_STORIES", shared ? std::string(shared) + "/models/stories260K.gguf" : "");
    if (!path) GTEST_SKIP() << "REALM_STORIES not set and no stories260K.gguf under REALM_SHARED_DIR";
    check_model("stories260K", *path, kSimdTol, 100, 48, kernels::best_isa(), kSimdTieGap);
}

TEST(ModelRef, SmolLM2Simd) {
    if (kernels::best_isa() == kernels::Isa::Scalar) GTEST_SKIP() << "no SIMD ISA on this CPU";
    auto path = model_path("REALM_SMOLLM2");
    if (!path) GTEST_SKIP() << "REALM_SMOLLM2 not set";
    check_model("smollm2", *path, kSimdTol, 100, 48, kernels::best_isa(), kSimdTieGap);
}

TEST(ModelRef, Gemma3Simd) {
    if (kernels::best_isa() == kernels::Isa::Scalar) GTEST_SKIP() << "no SIMD ISA on this CPU";
    auto path = model_path("REALM_GEMMA3");
    if (!path) GTEST_SKIP() << "REALM_GEMMA3 not set";
    check_model("gemma3", *path, kSimdTol, kAsan ? 1 : 100, 48, kernels::best_isa(), kSimdTieGap);
}

}  // namespace
}  // namespace realm::model
