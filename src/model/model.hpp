// Decoder-only transformer models over GGUF weights: llama family (llama, mistral-style,
// SmolLM2, TinyLlama), qwen2 and gemma3.
//
//   auto file = realm::gguf::File::open(path);                 // the weights stay in this mmap
//   auto model = realm::model::Model::load(std::move(*file));  // or load(file_ref) to borrow it
//   auto seq = model->new_sequence(512);                       // owns its KV cache
//   auto logits = model->forward(*seq, prompt_ids);            // prefill; last position's logits
//   int32_t next = realm::model::argmax(*logits);
//   logits = model->forward(*seq, std::span(&next, 1));        // one decode step
//
// The computation reproduces, operation by operation, ggml's baseline x86-64 CPU variant
// (libggml-cpu-x64.so: SSE2, no FMA), so the logits equal llama.cpp's on that variant bit for
// bit (tests/unit/model): weights are multiplied as stored (activations quantized to the weight
// type's vec_dot_type, ggml's scalar vec_dot per output row), RMSNorm and F16 dots sum in
// double, the KV cache is F16 and attention is evaluated as llama.cpp does without flash
// attention (Q rounded to F16, F16 K·Q dots, softmax with ggml_v_expf and ggml's SSE2 summation
// order, weights rounded to F16 for the V product), SiLU is ggml_v_silu, GELU ggml's fp16
// table. Only the last position's logits are computed.
//
// A Model is immutable after load and may be shared by threads; each Sequence belongs to one
// thread at a time. Errors (unknown architecture, missing or mis-shaped tensors, bad metadata,
// context overflow, token ids out of range) come back as values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/reader.hpp"
#include "gguf/result.hpp"
#include "gguf/types.hpp"
#include "kernels/matmul.hpp"
#include "kernels/ops.hpp"
#include "kernels/quants.hpp"
#include "kernels/threadpool.hpp"

namespace realm::model {

enum class Arch { Llama, Qwen2, Gemma3 };

enum class RopeType {
    Normal,  // rotates pairs (x[2i], x[2i+1]) (llama)
    NeoX,    // rotates pairs (x[i], x[i + n_rot/2]) (qwen2, gemma3)
};

struct HParams {
    Arch arch = Arch::Llama;
    std::string arch_name;      // general.architecture
    uint32_t n_vocab = 0;
    uint32_t n_ctx_train = 0;
    uint32_t n_embd = 0;
    uint32_t n_layer = 0;
    uint32_t n_ff = 0;
    uint32_t n_head = 0;
    uint32_t n_head_kv = 0;
    uint32_t head_dim_k = 0;    // attention.key_length (default n_embd / n_head)
    uint32_t head_dim_v = 0;    // attention.value_length (default head_dim_k)
    uint32_t n_rot = 0;         // rope.dimension_count (default head_dim_k)
    float rms_eps = 1e-5f;
    RopeType rope_type = RopeType::Normal;
    float rope_freq_base = 10000.0f;
    float rope_freq_scale = 1.0f;      // 1 / linear scaling factor
    float rope_freq_base_swa = 10000.0f;  // sliding-window layers (gemma3)
    float rope_freq_scale_swa = 1.0f;
    uint32_t n_swa = 0;               // sliding window size; 0 = none
    std::vector<bool> swa_layers;      // per layer: uses the sliding window
    float attn_scale = 0.0f;           // scale of Q·K (1/sqrt(head_dim_k) by default)
    float embd_scale = 1.0f;           // input embeddings are multiplied by this (gemma3: sqrt(n_embd))
    float final_logit_softcap = 0.0f;  // 0 = off
    bool tied_output = false;          // output projection shares token_embd.weight
};

// A weight matrix in the file's mapping: rows of `cols` elements of `type`.
struct Weight {
    const gguf::TensorInfo* tensor = nullptr;
    const kernels::KernelTraits* traits = nullptr;
    const std::byte* data = nullptr;  // the rows: in the file's mapping, or the Model's copy (Weights::Copy)
    int64_t rows = 0;
    int64_t cols = 0;
    size_t row_bytes = 0;
    const std::byte* rows16 = nullptr;  // the Model's copy in kernels' Rows16 layout, if it made one
    explicit operator bool() const { return tensor != nullptr; }
};

struct Layer {
    std::vector<float> attn_norm, attn_q_norm, attn_k_norm, attn_post_norm;
    std::vector<float> ffn_norm, ffn_post_norm;
    std::vector<float> bq, bk, bv, bo;  // optional biases (qwen2: q, k, v)
    Weight wq, wk, wv, wo;
    Weight ffn_gate, ffn_up, ffn_down;
};

class Model;

// One sequence's state: its KV cache (F16, [layer][position][kv_head * head_dim] for K and
// V transposed per layer, as llama.cpp stores it without flash attention), its position and
// its last logits. Created by Model::new_sequence; usable only with that model, which must
// outlive it. Memory: 2 * n_layer * n_ctx * n_head_kv * head_dim * 2 bytes (kv_bytes()),
// freed with the sequence.
class Sequence {
public:
    Sequence(Sequence&&) noexcept = default;
    Sequence& operator=(Sequence&&) noexcept = default;

    uint32_t n_ctx() const { return n_ctx_; }
    uint32_t n_past() const { return n_past_; }  // tokens in the cache = next position
    // Forgets all tokens (the cache memory is kept).
    void clear() { n_past_ = 0; }
    // Logits after the last token of the last forward pass that asked for them (n_vocab values).
    std::span<const float> logits() const { return logits_; }
    size_t kv_bytes() const { return kv_bytes_; }

private:
    friend class Model;
    Sequence() = default;

    const Model* model_ = nullptr;
    uint32_t n_ctx_ = 0;
    uint32_t n_past_ = 0;
    size_t kv_bytes_ = 0;
    std::vector<std::vector<uint16_t>> k_;  // per layer: [n_ctx][n_head_kv * head_dim_k]
    std::vector<std::vector<uint16_t>> v_;  // per layer: [n_head_kv * head_dim_v][n_ctx]
    std::vector<float> logits_;
};

// One sequence's share of a batched forward pass.
struct BatchItem {
    Sequence* seq = nullptr;
    std::span<const int32_t> tokens;  // appended at positions n_past .. n_past + size - 1
    bool logits = true;               // compute the logits after the last token
};

// Where the layers' and the output's matrices are read from (token_embd and a tied output always
// keep their rows in the file's mapping).
enum class Weights {
    // The shared file mapping for all.
    File,
    // Rows16 copies (kernels::repack_rows16) of the matrices whose format has a faster kernel in
    // that layout on the active ISA (kernels::rows16_copy_pays: Q4_0, Q4_K, and Q6_K except on AMD,
    // with AVX-512); the rest from the mapping.
    Rows16,
    // A private copy of every matrix in the file's layout, on 2 MiB pages. On the Intel VM measured
    // (2026-12-07) single-token decode ran faster than with Rows16 copies (TinyLlama tg +9-15%) or
    // from the mapping (Q8_0 +8%), prompts 1-7% slower than with Rows16 (on the AMD host measured
    // before, Rows16 decoded faster: docs/PERFORMANCE.md).
    Copy,
};
// The name `--weights` takes for it.
constexpr std::string_view weights_name(Weights w) {
    return w == Weights::File ? "file" : w == Weights::Copy ? "copy" : "rows16";
}

struct LoadOptions {
    size_t n_threads = 0;  // 0: std::thread::hardware_concurrency()
    // Copies replace the copied matrices' file pages in memory (the same size), so the process's
    // resident size stays the model's; other processes mapping the file no longer share them.
    Weights weights = Weights::Rows16;
};

class Model {
public:
    // Borrows `file`: it must outlive the Model (tensor data stays in its mapping).
    static Result<std::unique_ptr<Model>> load(const gguf::File& file, const LoadOptions& opts = {});
    // Takes ownership of the file.
    static Result<std::unique_ptr<Model>> load(gguf::File&& file, const LoadOptions& opts = {});
    // gguf::File::open + load.
    static Result<std::unique_ptr<Model>> open(const std::string& path, const LoadOptions& opts = {});

    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;
    ~Model();

    const HParams& hparams() const { return hp_; }
    const gguf::File& file() const { return *file_; }
    size_t n_threads() const { return pool_->size(); }
    // Bytes of the private weight copies LoadOptions::weights made (0: all read from the mapping).
    size_t copied_bytes() const { return copied_bytes_; }

    // A fresh sequence with room for n_ctx tokens (0: min(n_ctx_train, 4096)).
    Result<Sequence> new_sequence(uint32_t n_ctx = 0) const;

    // Appends `tokens` (one or more) to the sequence at positions n_past .. n_past+n-1 and
    // returns the logits (n_vocab floats) after the last one. The span points into the
    // Sequence and stays valid until its next forward call. On error the sequence is unchanged.
    Result<std::span<const float>> forward(Sequence& seq, std::span<const int32_t> tokens) const;

    // One forward pass over several sequences at once (continuous batching): the weights are read
    // once for all their tokens. Every sequence's results are bit for bit what forward() gives it
    // alone, whatever else is in the batch. All items are checked first (distinct sequences of
    // this model, non-empty, in range, fitting their context); on error nothing changes.
    // Forward passes of one model are serialised (they share the thread pool and the scratch).
    Status forward_batch(std::span<const BatchItem> items) const;

private:
    Model() = default;
    static Result<std::unique_ptr<Model>> load_impl(std::unique_ptr<gguf::File> owned, const gguf::File& file,
                                                    const LoadOptions& opts);
    Status load_hparams();
    Status load_tensors();
    // The copies LoadOptions::weights asks for, in one arena on 2 MiB pages; the copied matrices'
    // file pages are released.
    void make_copies(Weights weights);

    // Attention work item: tokens [t0, t0 + nt) of one sequence (batch indices), heads [h0, ...)
    // of KV head g.
    struct AttnTile {
        uint32_t t0, nt, g, h0;
    };
    // Scratch of one forward pass, sized for the largest batch seen so far.
    struct Workspace {
        std::vector<float> x, xn, q, k_cur, v_cur, attn, tmp, gate, up, logits;
        std::vector<float> rope_full, rope_swa;  // per token: cos, sin of each rotated pair
        kernels::MatmulScratch mm;            // kernels::matmul's buffers (SIMD ISAs)
        std::vector<float> thread_buf;        // per-thread attention scores
        std::vector<uint16_t> thread_buf16;   // per-thread f16 softmax weights and q
        // Per token of the batch: its sequence (index into the items) and position.
        std::vector<uint32_t> tok_item, tok_pos;
        std::vector<int32_t> tok_id;
        std::vector<AttnTile> tiles;  // attention work items (SIMD path)
    };

    void matmul(Workspace& ws, const Weight& w, const float* x, size_t n_tokens, float* y) const;
    // Up to 3 matrices against the same input (kernels::matmul_many).
    void matmul_many(Workspace& ws, std::initializer_list<const Weight*> w, const float* x, size_t n_tokens,
                     std::initializer_list<float*> y) const;
    void attention(Workspace& ws, std::span<const BatchItem> items, uint32_t il, size_t n_tokens) const;
    // What one layer's attention over a batch needs to know of the shapes.
    struct AttnShape {
        uint32_t hk = 0, hv = 0, group = 0, max_ctx = 0;
        size_t kd = 0, qd = 0, od = 0;
        uint32_t swa = 0;  // sliding window (0: none)
        float kq_scale = 1.0f;
        // First key in view at position pos: keys before it are outside the sliding window, and
        // their softmax weight is exactly 0.
        uint32_t first_key(uint32_t pos) const { return swa != 0 && pos >= swa ? pos - swa + 1 : 0u; }
    };
    AttnShape attn_shape(std::span<const BatchItem> items, uint32_t il) const;
    void attention_tiled(Workspace& ws, std::span<const BatchItem> items, uint32_t il, const AttnShape& a,
                         const kernels::SimdOps& ops) const;

    std::unique_ptr<gguf::File> owned_file_;
    const gguf::File* file_ = nullptr;
    HParams hp_;
    Weight tok_embd_;
    Weight output_;
    std::vector<float> output_norm_;
    std::vector<float> rope_freqs_;  // llama: optional per-dimension-pair frequency divisors
    std::vector<Layer> layers_;
    struct FreeBytes {
        void operator()(std::byte* p) const { std::free(p); }
    };
    std::unique_ptr<std::byte, FreeBytes> copies_;  // the arena of the copies (LoadOptions::weights)
    size_t copied_bytes_ = 0;
    std::unique_ptr<kernels::ThreadPool> pool_;
    mutable std::mutex forward_mu_;  // one forward pass at a time
    mutable Workspace ws_;
};

// Index of the largest value (the first one on ties); -1 for an empty span.
int32_t argmax(std::span<const float> logits);

}  // namespace realm::model
