#include "kernels/matmul.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels/fp16.hpp"
#include "kernels/quants.hpp"
#include "kernels/simd_table.hpp"

namespace realm::kernels {
namespace {

// Weight rows per work item: a multiple of every tile height, small enough to give each thread
// several items on the small matrices (576 rows -> 36 items) for load balance.
constexpr size_t kRowBlock = 16;
// Activation rows per pass over a row block: the block's weight rows, repacked once per pass
// (AVX-512 prompt tiles), are reused from L1 while the quantized activation rows stream from L2
// (~1.1 MB for 2048 columns, ~3.3 MB for 5632). Passes of 128 rows repacked each block four
// times at pp512: 512 measured 9% faster on TinyLlama Q4_K_M pp512, and no slower at pp1024.
constexpr size_t kTokBlock = detail::kTileMaxToks;
// Matrices sharing one matmul_many loop (Q, K, V).
constexpr size_t kMaxParts = 4;

size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

}  // namespace

void matmul(const MatmulWeight& w, const float* x, size_t n, float* y, ThreadPool& pool, MatmulScratch& scratch,
            Isa isa) {
    matmul_many(std::span(&w, 1), x, n, std::span(&y, 1), pool, scratch, isa);
}

void matmul_many(std::span<const MatmulWeight> ws, const float* x, size_t n, std::span<float* const> ys,
                 ThreadPool& pool, MatmulScratch& scratch, Isa isa) {
    if (n == 0 || ws.empty()) return;
    const KernelTraits& kt = *kernel_traits(ws[0].type, isa);
    const auto cols = static_cast<size_t>(ws[0].cols);
    // One shared activation quantization needs one activation format (and the per-matrix table
    // below has room for kMaxParts matrices).
    bool one_format = ws.size() <= kMaxParts;
    for (const MatmulWeight& w : ws.subspan(1)) one_format = one_format && kernel_traits(w.type, isa)->vec_dot_type == kt.vec_dot_type;
    if (!one_format) {
        for (size_t i = 0; i < ws.size(); ++i) matmul_many(ws.subspan(i, 1), x, n, ys.subspan(i, 1), pool, scratch, isa);
        return;
    }

    const std::byte* act = nullptr;
    const detail::ActBlock* act_info = nullptr;  // Q8_0/Q8_1, n > 1 only
    size_t stride = 0;
    if (kt.vec_dot_type == TensorType::F32) {
        act = reinterpret_cast<const std::byte*>(x);
        stride = cols * sizeof(float);
    } else {
        const KernelTraits& at = *kernel_traits(kt.vec_dot_type, isa);
        // F16/BF16 tiles take f32 rows holding the activations rounded to the weight format (the
        // rounding is ggml's vec_dot_type; the widening back is exact), so that they widen only
        // the weights.
        const bool widened = (kt.vec_dot_type == TensorType::F16 || kt.vec_dot_type == TensorType::BF16) &&
                             detail::tile_fn(ws[0].type, isa) != nullptr;
        stride = widened ? round_up(cols * sizeof(float), 64)
                         : round_up(cols / static_cast<size_t>(at.block_size) * at.type_size, 64);
        const size_t words = (stride * n + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t);
        if (scratch.act.size() < words) scratch.act.resize(words);
        auto* base = reinterpret_cast<std::byte*>(scratch.act.data());
        // Q8_0/Q8_1 activations also get their blocks' sums and float scales, for the tiles.
        const size_t nb = cols / static_cast<size_t>(at.block_size);
        detail::ActBlock* info = nullptr;
        if (kt.vec_dot_type == TensorType::Q8_0 || kt.vec_dot_type == TensorType::Q8_1) {
            const size_t info_words = (n * nb * sizeof(detail::ActBlock) + sizeof(std::max_align_t) - 1) /
                                      sizeof(std::max_align_t);
            if (scratch.ainfo.size() < info_words) scratch.ainfo.resize(info_words);
            info = reinterpret_cast<detail::ActBlock*>(scratch.ainfo.data());
        }
        const bool q8_1 = kt.vec_dot_type == TensorType::Q8_1;
        const auto quantize_rows = [&](size_t begin, size_t end, size_t) {
            for (size_t t = begin; t < end; ++t) {
                if (widened) {
                    // The 16-bit row goes to the upper half of the f32 row, then widens in place
                    // from the front: element i's f32 store never reaches a 16-bit value after i.
                    std::byte* row = base + t * stride;
                    auto* half = reinterpret_cast<uint16_t*>(row + 2 * cols);
                    auto* full = reinterpret_cast<float*>(row);
                    at.quantize(x + t * cols, half, static_cast<int64_t>(cols));
                    const bool bf16 = kt.vec_dot_type == TensorType::BF16;
                    for (size_t i = 0; i < cols; ++i) full[i] = bf16 ? bf16_to_fp32(half[i]) : fp16_to_fp32(half[i]);
                    continue;
                }
                at.quantize(x + t * cols, base + t * stride, static_cast<int64_t>(cols));
                if (info == nullptr) continue;
                for (size_t ib = 0; ib < nb; ++ib) {
                    detail::ActBlock& ai = info[t * nb + ib];
                    const int8_t* qs = nullptr;
                    if (q8_1) {
                        const auto& b = reinterpret_cast<const BlockQ8_1*>(base + t * stride)[ib];
                        qs = b.qs;
                        ai.d = fp16_to_fp32(b.d);
                        ai.s = fp16_to_fp32(b.s);
                    } else {
                        const auto& b = reinterpret_cast<const BlockQ8_0*>(base + t * stride)[ib];
                        qs = b.qs;
                        ai.d = fp16_to_fp32(b.d);
                        ai.s = 0.0f;
                    }
                    int32_t sum = 0;
                    for (size_t k = 0; k < static_cast<size_t>(kQK8_0); ++k) sum += qs[k];
                    ai.sum = sum;
                    ai.unused = 0;
                }
            }
        };
        if (n == 1) {
            quantize_rows(0, 1, 0);
        } else {
            pool.parallel_for(n, 1, quantize_rows);
        }
        act = base;
        act_info = info;
    }

    // One 64-byte aligned scratch area per thread for the tiles (all the matrices have `cols`).
    const size_t per_thread = (detail::tile_scratch_bytes(static_cast<int64_t>(cols)) + 63) / 64 * 64;
    const size_t bytes = per_thread * pool.size() + 64;
    const size_t words = (bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t);
    if (scratch.tile.size() < words) scratch.tile.resize(words);
    auto* scratch_base = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(scratch.tile.data()) + 63) / 64 * 64);

    // Work items: the row blocks of every matrix, one after the other, so that the matrices
    // share one loop (one barrier) as well as the quantized activations.
    struct Part {
        size_t end_block;  // one past the matrix's last work item
        const KernelTraits* traits;
        detail::TileFn tile;
        const std::byte* data;  // the file's rows, or the Rows16 copy that `tile` reads
    };
    static_assert(kRowBlock == 16, "a work item is one Rows16 group");
    std::array<Part, kMaxParts> parts{};
    size_t n_row_blocks = 0;
    for (size_t m = 0; m < ws.size(); ++m) {
        n_row_blocks += (static_cast<size_t>(ws[m].rows) + kRowBlock - 1) / kRowBlock;
        parts[m] = {n_row_blocks, kernel_traits(ws[m].type, isa), detail::tile_fn(ws[m].type, isa), ws[m].data};
        if (ws[m].rows16 != nullptr) {
            if (const detail::TileFn t16 = detail::rows16_tile_fn(ws[m].type, isa); t16 != nullptr) {
                parts[m].tile = t16;
                parts[m].data = ws[m].rows16;
            }
        }
    }
    // A few chunks per thread: enough to even out the load, few enough that handing them out
    // (an atomic on a shared cache line each) stays cheap next to a small matrix's work.
    const size_t grain = std::max<size_t>(1, n_row_blocks / (pool.size() * 4));
    // The matrix of a work item, and that matrix's first item.
    const auto locate = [&](size_t item) {
        size_t m = 0;
        while (item >= parts[m].end_block) ++m;
        return std::pair{m, m == 0 ? size_t{0} : parts[m - 1].end_block};
    };
    pool.parallel_for(n_row_blocks, grain, [&](size_t begin, size_t end, size_t thread) {
        // Decode: one tile call per matrix over all the chunk's rows of it, so that the decode
        // kernels can lay their 8 lanes over the whole range (sequential streams).
        if (n == 1) {
            for (size_t item = begin; item < end;) {
                const auto [m, first_block] = locate(item);
                const size_t last = std::min(end, parts[m].end_block);
                const detail::TileFn tile = parts[m].tile;
                if (tile == nullptr) break;
                const MatmulWeight& w = ws[m];
                const auto rows = static_cast<size_t>(w.rows);
                const size_t r0 = (item - first_block) * kRowBlock;
                const size_t r1 = std::min(rows, (last - first_block) * kRowBlock);
                tile(w.cols, parts[m].data + r0 * w.row_bytes, w.row_bytes, r1 - r0, act, stride, 1, ys[m] + r0, rows,
                     act_info, scratch_base + thread * per_thread);
                item = last;
                begin = last;
            }
        }
        for (size_t item = begin; item < end; ++item) {
            const auto [m, first_block] = locate(item);
            const size_t rb = item - first_block;
            const MatmulWeight& w = ws[m];
            const KernelTraits& wt = *parts[m].traits;
            const detail::TileFn tile = parts[m].tile;
            const auto rows = static_cast<size_t>(w.rows);
            float* y = ys[m];
            const size_t r0 = rb * kRowBlock;
            const size_t nr = std::min(kRowBlock, rows - r0);
            const std::byte* wr = parts[m].data + r0 * w.row_bytes;
            for (size_t t0 = 0; t0 < n; t0 += kTokBlock) {
                const size_t nt = std::min(kTokBlock, n - t0);
                if (tile != nullptr) {
                    tile(w.cols, wr, w.row_bytes, nr, act + t0 * stride, stride, nt, y + t0 * rows + r0, rows,
                         act_info != nullptr ? act_info + t0 * (cols / kQK8_0) : nullptr, scratch_base + thread * per_thread);
                    continue;
                }
                for (size_t r = 0; r < nr; ++r) {
                    for (size_t t = t0; t < t0 + nt; ++t) {
                        y[t * rows + r0 + r] = wt.vec_dot(w.cols, wr + r * w.row_bytes, act + t * stride);
                    }
                }
            }
        }
    });
}

namespace {
// The formats with a Rows16 layout: elements per block, bytes per block.
std::pair<size_t, size_t> rows16_block(TensorType type) {
    if (type == TensorType::Q4_0) return {static_cast<size_t>(kQK4_0), sizeof(BlockQ4_0)};
    if (type == TensorType::Q4_K) return {static_cast<size_t>(kQK_K), sizeof(BlockQ4_K)};
    if (type == TensorType::Q6_K) return {static_cast<size_t>(kQK_K), sizeof(BlockQ6_K)};
    return {0, 0};
}

// Dword `k` of `bytes` for row r of 16 goes to dst + 64 * k + 4 * r, for k < n.
void put_dwords(const uint8_t* bytes, size_t n, size_t r, std::byte* dst) {
    for (size_t k = 0; k < n; ++k) std::memcpy(dst + 64 * k + 4 * r, bytes + 4 * k, 4);
}
}  // namespace

size_t rows16_bytes(TensorType type, int64_t rows, int64_t cols) {
    const auto [qk, bytes] = rows16_block(type);
    if (qk == 0 || rows <= 0 || cols <= 0 || static_cast<size_t>(cols) % qk != 0) return 0;
    const auto groups = (static_cast<size_t>(rows) + 15) / 16;
    return groups * 16 * (static_cast<size_t>(cols) / qk) * bytes;
}

bool rows16_used(TensorType type, Isa isa) { return detail::rows16_tile_fn(type, isa) != nullptr; }

bool rows16_copy_pays(TensorType type, Isa isa) {
    return rows16_used(type, isa) && !(type == TensorType::Q6_K && __builtin_cpu_is("amd"));
}

void repack_rows16(TensorType type, const std::byte* src, int64_t rows, int64_t cols, size_t row_bytes,
                   std::byte* dst) {
    const auto [qk, block_bytes] = rows16_block(type);
    if (qk == 0) return;
    const size_t nb = static_cast<size_t>(cols) / qk;
    const auto n_rows = static_cast<size_t>(rows);
    for (size_t g = 0; g * 16 < n_rows; ++g) {
        std::byte* out = dst + g * 16 * row_bytes;
        for (size_t r = 0; r < 16; ++r) {
            const size_t row = g * 16 + r;
            for (size_t ib = 0; ib < nb; ++ib) {
                // Padding rows: zero scales and quants.
                const std::byte* in = row < n_rows ? src + row * row_bytes + ib * block_bytes : nullptr;
                if (type == TensorType::Q4_0) {
                    BlockQ4_0 b{};
                    if (in != nullptr) std::memcpy(&b, in, sizeof b);
                    put_dwords(b.qs, 4, r, out + ib * detail::kR16Q40Quants);
                    std::memcpy(out + nb * detail::kR16Q40Quants + (ib * 16 + r) * 2, &b.d, 2);
                } else if (type == TensorType::Q6_K) {
                    BlockQ6_K b{};
                    if (in != nullptr) std::memcpy(&b, in, sizeof b);
                    std::byte* s = out + ib * detail::kR16Q6KBlock;
                    put_dwords(b.ql, 32, r, s);
                    put_dwords(b.qh, 16, r, s + detail::kR16Q6KQh);
                    put_dwords(reinterpret_cast<const uint8_t*>(b.scales), 4, r, s + detail::kR16Q6KScales);
                    std::memcpy(out + nb * detail::kR16Q6KBlock + (ib * 16 + r) * 2, &b.d, 2);
                } else {
                    BlockQ4_K b{};
                    if (in != nullptr) std::memcpy(&b, in, sizeof b);
                    std::byte* s = out + ib * detail::kR16Q4KBlock;
                    put_dwords(b.qs, 32, r, s);
                    put_dwords(b.scales, 3, r, s + detail::kR16Q4KScales);
                    std::memcpy(s + detail::kR16Q4KD + 2 * r, &b.d, 2);
                    std::memcpy(s + detail::kR16Q4KDmin + 2 * r, &b.dmin, 2);
                }
            }
        }
    }
}

}  // namespace realm::kernels
