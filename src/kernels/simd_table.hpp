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
using TileFn = void (*)(int64_t n, const std::byte* w, size_t w_stride, size_t rows, const std::byte* a,
                        size_t a_stride, size_t toks, float* y, size_t y_stride, std::byte* scratch);

inline constexpr size_t kTileMaxToks = 128;
// Per 32-element block: 16 rows of unpacked weights (512 bytes), their scales and mins (2 x 64),
// and the activation sums of up to kTileMaxToks rows (4 bytes each).
inline constexpr size_t tile_scratch_bytes(int64_t n) {
    return static_cast<size_t>(n < 0 ? 0 : n) / 32 * (512 + 128 + 4 * kTileMaxToks) + 64;
}

struct SimdKernels {
    TensorType type;
    VecDotFn vec_dot;         // weight types; nullptr: keep the scalar one
    QuantizeRowFn quantize;   // activation formats (Q8_0, Q8_1, Q8_K, F16, BF16); nullptr: scalar
    TileFn tile;              // nullptr: the matmul calls vec_dot per pair
};

// A plain pointer + count rather than std::span: the SIMD translation units are compiled with
// -mavx2/-mavx512*, and any out-of-line template they instantiate (a COMDAT the linker may keep
// for every caller) would carry those instructions into code that runs on any x86-64.
struct SimdKernelList {
    const SimdKernels* items;
    size_t count;
    const SimdOps* ops;
};

SimdKernelList avx2_kernels();
SimdKernelList avx512_kernels();

// The tile of `type` for `isa`; nullptr for Isa::Scalar, an ISA the CPU lacks, or a type without
// one (the matmul then calls vec_dot per pair).
TileFn tile_fn(TensorType type, Isa isa);

}  // namespace realm::kernels::detail
