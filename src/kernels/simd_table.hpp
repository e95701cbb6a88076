// Internal: what each SIMD translation unit (quants_avx2.cpp, quants_avx512.cpp) provides, and
// how dispatch.cpp merges it over the scalar table. Not part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/isa.hpp"
#include "kernels/ops.hpp"
#include "kernels/quants.hpp"

namespace realm::kernels::detail {

// Computes y[t * y_stride + r] = row r of w . row t of a for r < rows, t < toks, where w holds
// rows of `n` elements (w_stride bytes apart) and a the activation rows in the vec_dot_type
// (a_stride bytes apart). For a given ISA every (r, t) result is bitwise the one vec_dot gives
// for that pair alone: tiles only share loads, never change a pair's accumulation order.
// toks <= kTileMaxToks; scratch: tile_scratch_bytes(n) bytes, 64-byte aligned, private to the
// calling thread (the AVX-512 tiles repack 16 weight rows there once and reuse them for every
// activation row of the call).
// What the tiles need of each 32-element activation block (Q8_0, Q8_1), computed once per matmul
// rather than once per row block: the int8 sum (Q8_0's offset term) and the fp16 scale (and Q8_1's
// s) as floats, exactly.
struct ActBlock {
    int32_t sum;
    float d;
    float s;
    int32_t unused;
};

// ainfo: ainfo[t * (n / 32) + block] for Q8_0/Q8_1 activations (the matmul always gives it; the
// tiles also accept nullptr and then compute the same figures from the blocks).
using TileFn = void (*)(int64_t n, const std::byte* w, size_t w_stride, size_t rows, const std::byte* a,
                        size_t a_stride, size_t toks, float* y, size_t y_stride, const ActBlock* ainfo,
                        std::byte* scratch);

inline constexpr size_t kTileMaxToks = 512;
// The AVX-512 tiles' repacked 16 weight rows: per 32-element block 512 bytes of quants and 128 of
// scales and mins; per 256-element K-quant super-block 5760 bytes (kKStride), i.e. 720 per 32.
inline constexpr size_t tile_scratch_bytes(int64_t n) { return static_cast<size_t>(n < 0 ? 0 : n) / 32 * 720 + 64; }

struct SimdKernels {
    TensorType type;
    VecDotFn vec_dot;         // weight types; nullptr: keep the scalar one
    QuantizeRowFn quantize;   // activation formats (Q8_0, Q8_1, Q8_K, F16, BF16); nullptr: scalar
    TileFn tile;              // nullptr: the matmul calls vec_dot per pair
};

// A plain pointer + count rather than std::span: the SIMD translation units are compiled with
// -mavx2/-mavx512*, and any out-of-line template they instantiate (a COMDAT the linker may keep
// for every caller) would carry those instructions into code that runs on any x86-64.
// Byte offsets of the Rows16 layout (matmul.hpp), shared by repack_rows16 and the kernels.
// Q4_0, per group: nb blocks of kR16Q40Quants bytes, then nb x 16 fp16 scales.
inline constexpr size_t kR16Q40Quants = 256;
inline constexpr size_t kR16Q40Block = kR16Q40Quants + 16 * 2;  // quants + scales per block
// Q4_K, per super-block of a group: quants, 3 vectors of packed scales, 16 d, 16 dmin.
inline constexpr size_t kR16Q4KScales = 2048;
inline constexpr size_t kR16Q4KD = kR16Q4KScales + 3 * 64;
inline constexpr size_t kR16Q4KDmin = kR16Q4KD + 16 * 2;
inline constexpr size_t kR16Q4KBlock = kR16Q4KDmin + 16 * 2;
// Q6_K, per super-block of a group: ql, qh, scales (its 16 d at the group's end, as Q4_0's scales,
// so that every super-block starts on a cache line).
inline constexpr size_t kR16Q6KQh = 2048;
inline constexpr size_t kR16Q6KScales = kR16Q6KQh + 16 * 64;
inline constexpr size_t kR16Q6KBlock = kR16Q6KScales + 4 * 64;  // without the d
static_assert(kR16Q40Block == 16 * 18 && kR16Q4KBlock == 16 * 144 && kR16Q6KBlock + 16 * 2 == 16 * 210,
              "the same bytes as 16 rows' blocks");

// The tiles that read a weight in the Rows16 layout (matmul.hpp): w is a group's start, w_stride
// the row size in the file's layout, ainfo required.
struct Rows16Kernel {
    TensorType type;
    TileFn tile;
};

struct SimdKernelList {
    const SimdKernels* items;
    size_t count;
    const SimdOps* ops;
    const Rows16Kernel* rows16;
    size_t rows16_count;
};

SimdKernelList avx2_kernels();
SimdKernelList avx512_kernels();

// The tile of `type` for `isa`; nullptr for Isa::Scalar, an ISA the CPU lacks, or a type without
// one (the matmul then calls vec_dot per pair).
TileFn tile_fn(TensorType type, Isa isa);
// The Rows16 tile of `type` for `isa`; nullptr where there is none.
TileFn rows16_tile_fn(TensorType type, Isa isa);

}  // namespace realm::kernels::detail
