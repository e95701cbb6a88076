// Quantized matrix x activation products: y = W x for one weight matrix and n activation rows.
//
//   kernels::MatmulScratch scratch;             // reused across calls (activation buffer)
//   kernels::matmul({type, data, rows, cols, row_bytes}, x, n, y, pool, scratch);
//
// The activations are quantized once to the weight type's vec_dot_type, then every
// (weight row, activation row) pair is computed by the ISA's tile kernel: blocks of weight rows
// are spread over the threads, and inside a block several weight rows x activation rows share
// their loads (the rows stay in L1 while the activation rows stream from L2).
//
// Determinism: for a given ISA, y[t * rows + r] is bitwise the same whatever n, whichever other
// activation rows share the batch and however many threads run: a pair's sum is always
// accumulated block by block in the same order, tiles only share loads. With Isa::Scalar it is
// the scalar reference (bit-exact with ggml's generic code).
//
// Weights stay where they are (the shared file mapping), except where a format has a 16-row
// interleaved layout (Rows16, below) that the ISA's kernels read faster: the caller may make that
// copy once at load (repack_rows16) and pass it along; the results are bitwise the same.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "gguf/types.hpp"
#include "kernels/isa.hpp"
#include "kernels/threadpool.hpp"

namespace realm::kernels {

struct MatmulWeight {
    TensorType type;
    const std::byte* data;  // rows * row_bytes bytes, each row aligned for its block type
    int64_t rows;
    int64_t cols;           // a multiple of the type's block size
    size_t row_bytes;
    // Optional: the same matrix in the Rows16 layout, read instead of `data` by ISAs with a kernel
    // for it (rows16_used); rows16_bytes(type, rows, cols) bytes, 64-byte aligned.
    const std::byte* rows16 = nullptr;
};

// Rows16 layout (Q4_0, Q4_K, Q6_K): groups of 16 rows (the last one padded with zero rows), each the
// same bytes as its rows, rearranged so that a 512-bit register holds one dword of each of the 16
// rows (no horizontal sums, no per-row scale loads in the dot products) and a thread reads one
// stream. A group is 16 * row_bytes, so row r0 (a multiple of 16) starts at r0 * row_bytes, as in
// the file's layout.
//   Q4_0: per 32-element block 4 vectors of 64 bytes (dword r of vector j: bytes 4j..4j+3 of row
//         r's nibbles); after the group's nb blocks, the 16 fp16 scales of each block.
//   Q4_K: per super-block 32 vectors of quants (dword r of vector v: bytes 4v..4v+3 of row r's
//         qs), 3 of scales (dword r of vector k: bytes 4k..4k+3 of its 12 scale bytes), the 16 d
//         and the 16 dmin (fp16): 2304 bytes.
//   Q6_K: per super-block 32 vectors of ql, 16 of qh, 4 of scales (dword r of vector v: bytes
//         4v..4v+3 of row r's ql, qh, scales): 3328 bytes; after the group's nb super-blocks, the
//         16 d (fp16) of each.
//
// The bytes of that layout for a rows x cols matrix of `type`; 0 where the type has none.
size_t rows16_bytes(TensorType type, int64_t rows, int64_t cols);
// Whether matmul with `isa` reads the Rows16 copy of a `type` weight (false: it reads `data`).
bool rows16_used(TensorType type, Isa isa);
// Whether a loader should make that copy of a `type` matrix for `isa`: rows16_used, except Q6_K on
// AMD CPUs. On the Zen 4 host measured (2026-12-07) its Rows16 decode streamed DRAM at 2/3 of the
// row kernel's rate, where Q4_0 and Q4_K streamed as fast as from the rows and computed faster; on
// the Intel hosts measured it decoded an L3-resident model faster than the rows.
bool rows16_copy_pays(TensorType type, Isa isa);
// dst (rows16_bytes(type, rows, cols) bytes) := the rows16 layout of src (rows of row_bytes).
// Preconditions: rows16_bytes(type, rows, cols) > 0, row_bytes = row_size(type, cols).
void repack_rows16(TensorType type, const std::byte* src, int64_t rows, int64_t cols, size_t row_bytes,
                   std::byte* dst);

// Per-caller buffers (quantized activations, per-thread tile space); not shared between
// concurrent calls.
struct MatmulScratch {
    std::vector<std::max_align_t> act;
    std::vector<std::max_align_t> tile;
    std::vector<std::max_align_t> ainfo;  // per activation block: sum and float scales (detail::ActBlock)
};

// y[t * w.rows + r] = row r of w . row t of x (x rows have w.cols floats), t < n. Preconditions
// (checked by the model loader, not here): w.type has a dot product, shapes are consistent.
void matmul(const MatmulWeight& w, const float* x, size_t n, float* y, ThreadPool& pool, MatmulScratch& scratch,
            Isa isa = active_isa());

// Several matrices of the same column count against the same activations (Q, K and V; gate and
// up): ys[i] gets ws[i]'s product, each exactly as matmul would give it, with the activations
// quantized once and one loop over all the rows. If their activation formats differ (or there are
// more than 4), they run one by one.
void matmul_many(std::span<const MatmulWeight> ws, const float* x, size_t n, std::span<float* const> ys,
                 ThreadPool& pool, MatmulScratch& scratch, Isa isa = active_isa());

}  // namespace realm::kernels
