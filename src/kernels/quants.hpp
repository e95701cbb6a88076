// Block formats of the ggml tensor types and their scalar reference kernels.
//
// For every supported type this layer provides
//   - dequantize_row_*: blocks -> floats, bit-identical to ggml's dequantize_row_* / to_float,
//   - quantize_row_*:   floats -> blocks, byte-identical to ggml's reference quantizer (the path
//                       ggml_quantize_chunk takes without an importance matrix),
//   - vec_dot_*:        dot product of a row against the 8-bit activation format ggml pairs the
//                       type with, following ggml's generic (scalar) integer math and float
//                       evaluation order exactly.
// These scalar versions are the ground truth for the SIMD kernels: keep them plain.
//
// The typed row functions take element counts k/n that must be multiples of the block size
// and pointers aligned to alignof(Block*); they do not validate. Data from untrusted files goes
// through the checked span API at the bottom of this header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "gguf/result.hpp"
#include "gguf/types.hpp"
#include "kernels/isa.hpp"

namespace realm::kernels {

// ---------------------------------------------------------------------------------------------
// Block layouts (identical to ggml-common.h). fp16 values are stored as raw IEEE half bits.

inline constexpr int64_t kQK4_0 = 32;
inline constexpr int64_t kQK4_1 = 32;
inline constexpr int64_t kQK5_0 = 32;
inline constexpr int64_t kQK5_1 = 32;
inline constexpr int64_t kQK8_0 = 32;
inline constexpr int64_t kQK8_1 = 32;
inline constexpr int64_t kQK_K = 256;  // super-block size of the K-quants and IQ4_XS
inline constexpr int64_t kKScaleSize = 12;
inline constexpr int64_t kQK4_NL = 32;

// The 16 non-linear levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl).
inline constexpr int8_t kValuesIQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// x = d * (q - 8), q in [0, 15]; element j in the low nibble of qs[j], element j+16 in the high.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK4_0 / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// x = d * q + m, q in [0, 15].
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[kQK4_1 / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

// x = d * (q - 16), q in [0, 31]; low 4 bits as in Q4_0, bit 4 of element j in bit j of qh.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kQK5_0 / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

// x = d * q + m, q in [0, 31].
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK5_1 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

// x = d * q.
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34);

// x = d * q; s = d * sum(q) (fp16), used by the Q4_1/Q5_1 dot products.
struct BlockQ8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[kQK8_1];
};
static_assert(sizeof(BlockQ8_1) == 36);

// 16 sub-blocks of 16: x = d * sc * q - dmin * m, sc/m 4-bit (low/high nibble of scales[j]).
struct BlockQ2_K {
    uint8_t scales[kQK_K / 16];
    uint8_t qs[kQK_K / 4];
    uint16_t d;
    uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// 16 sub-blocks of 16: x = d * (sc - 32) * (q - 4), sc 6-bit packed in scales[12], q 3-bit
// (2 low bits in qs, high bit in hmask).
struct BlockQ3_K {
    uint8_t hmask[kQK_K / 8];
    uint8_t qs[kQK_K / 4];
    uint8_t scales[12];
    uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110);

// 8 sub-blocks of 32: x = d * sc * q - dmin * m, sc/m 6-bit packed in scales[12], q 4-bit.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleSize];
    uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

// As Q4_K with a fifth quant bit in qh.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleSize];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// 16 sub-blocks of 16: x = d * sc * (q - 32), sc int8, q 6-bit (4 low bits in ql, 2 in qh).
struct BlockQ6_K {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// Activation format of the K-quants: float scale, int8 quants, sums of groups of 16.
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];
};
static_assert(sizeof(BlockQ8_K) == 292);

// x = d * kValuesIQ4NL[q], nibbles packed as in Q4_0.
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[kQK4_NL / 2];
};
static_assert(sizeof(BlockIQ4_NL) == 18);

// 8 sub-blocks of 32: x = d * (ls - 32) * kValuesIQ4NL[q], ls 6-bit (low 4 bits in scales_l,
// high 2 bits in scales_h).
struct BlockIQ4_XS {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[kQK_K / 64];
    uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// ---------------------------------------------------------------------------------------------
// Typed scalar reference kernels. k (n) = number of elements, a multiple of the block size.

// F32 / F16 / BF16 (block size 1). F16 and BF16 values are raw bits.
void dequantize_row_f32(const float* x, float* y, int64_t k);
void quantize_row_f32(const float* x, float* y, int64_t k);
float vec_dot_f32(int64_t n, const float* x, const float* y);
void dequantize_row_f16(const uint16_t* x, float* y, int64_t k);
void quantize_row_f16(const float* x, uint16_t* y, int64_t k);
float vec_dot_f16(int64_t n, const uint16_t* x, const uint16_t* y);
void dequantize_row_bf16(const uint16_t* x, float* y, int64_t k);
void quantize_row_bf16(const float* x, uint16_t* y, int64_t k);
float vec_dot_bf16(int64_t n, const uint16_t* x, const uint16_t* y);

// Legacy 32-element formats.
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t k);
void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t k);
float vec_dot_q4_0_q8_0(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y);
void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t k);
void quantize_row_q4_1(const float* x, BlockQ4_1* y, int64_t k);
float vec_dot_q4_1_q8_1(int64_t n, const BlockQ4_1* x, const BlockQ8_1* y);
void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t k);
void quantize_row_q5_0(const float* x, BlockQ5_0* y, int64_t k);
float vec_dot_q5_0_q8_0(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y);
void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t k);
void quantize_row_q5_1(const float* x, BlockQ5_1* y, int64_t k);
float vec_dot_q5_1_q8_1(int64_t n, const BlockQ5_1* x, const BlockQ8_1* y);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t k);
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t k);
float vec_dot_q8_0_q8_0(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y);
// Q8_1 is an activation format only; ggml has no dot product for it. Its dequantizer is
// d * q (ggml has none either).
void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t k);
void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t k);

// K-quants (256-element super-blocks).
void dequantize_row_q2_K(const BlockQ2_K* x, float* y, int64_t k);
void quantize_row_q2_K(const float* x, BlockQ2_K* y, int64_t k);
float vec_dot_q2_K_q8_K(int64_t n, const BlockQ2_K* x, const BlockQ8_K* y);
void dequantize_row_q3_K(const BlockQ3_K* x, float* y, int64_t k);
void quantize_row_q3_K(const float* x, BlockQ3_K* y, int64_t k);
float vec_dot_q3_K_q8_K(int64_t n, const BlockQ3_K* x, const BlockQ8_K* y);
void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t k);
void quantize_row_q4_K(const float* x, BlockQ4_K* y, int64_t k);
float vec_dot_q4_K_q8_K(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y);
void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t k);
void quantize_row_q5_K(const float* x, BlockQ5_K* y, int64_t k);
float vec_dot_q5_K_q8_K(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y);
void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t k);
void quantize_row_q6_K(const float* x, BlockQ6_K* y, int64_t k);
float vec_dot_q6_K_q8_K(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y);
// Q8_K is an activation format only (no dot product in ggml).
void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t k);
void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t k);

// Non-linear 4-bit formats.
void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t k);
// What llama-quantize / ggml_quantize_chunk produce (no importance matrix): searches 15 scales.
void quantize_row_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t k);
// ggml's quantize_row_iq4_nl_ref (type_traits.from_float_ref, also the CPU backend's from_float,
// i.e. what ggml uses to write an IQ4_NL KV cache): one scale, no search. For a block whose
// values are all below 1e-15 in magnitude (d = 0) ggml leaves the quants of the previous block
// of the same call in place (uninitialised memory for the first block); this implementation does
// the same for later blocks and writes index 8 for a leading zero block.
void quantize_row_iq4_nl_fast(const float* x, BlockIQ4_NL* y, int64_t k);
float vec_dot_iq4_nl_q8_0(int64_t n, const BlockIQ4_NL* x, const BlockQ8_0* y);
void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t k);
void quantize_row_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t k);
float vec_dot_iq4_xs_q8_K(int64_t n, const BlockIQ4_XS* x, const BlockQ8_K* y);

// ---------------------------------------------------------------------------------------------
// Runtime dispatch by tensor type.

// Type-erased row kernels. Preconditions as for the typed functions (n a multiple of
// block_size, pointers aligned to block_align, buffers large enough).
using DequantizeRowFn = void (*)(const void* src, float* dst, int64_t n);
using QuantizeRowFn = void (*)(const float* src, void* dst, int64_t n);
using VecDotFn = float (*)(int64_t n, const void* x, const void* y);

struct KernelTraits {
    TensorType type;
    int64_t block_size;   // elements per block
    size_t type_size;     // bytes per block
    size_t block_align;   // alignof the block struct
    DequantizeRowFn dequantize;
    QuantizeRowFn quantize;      // == ggml_quantize_chunk without importance matrix
    QuantizeRowFn quantize_ref;  // == ggml type_traits from_float_ref; same as quantize except IQ4_NL
    VecDotFn vec_dot;            // row of `type` . row of `vec_dot_type`; nullptr for Q8_1, Q8_K
    TensorType vec_dot_type;
};

// nullptr for types without kernels (IQ2_*, IQ3_*, IQ1_*, TQ*, MXFP4, NVFP4, Q1_0, Q2_0, ints,
// F64) and for unknown values.
const KernelTraits* kernel_traits(TensorType type);
inline bool has_kernels(TensorType type) { return kernel_traits(type) != nullptr; }
// The same traits with the SIMD vec_dot and activation quantizer of `isa` where it has them
// (Isa::Scalar, or an ISA this CPU lacks: the scalar reference). The SIMD dot products sum in a
// different float order and agree with the scalar ones within rounding; the SIMD activation
// quantizers give the scalar bytes for finite inputs.
const KernelTraits* kernel_traits(TensorType type, Isa isa);

// Bytes needed for n elements of `type`; error if the type has no kernels, n is negative or not
// a multiple of the block size, or the size overflows.
Result<size_t> row_size(TensorType type, int64_t n);

// Checked conversions for untrusted data. The element count is dst.size() (dequantize) or
// src.size() (quantize); it must be a multiple of the block size and the byte buffer must hold
// exactly the matching number of blocks. Byte buffers need no particular alignment.
Status dequantize(TensorType type, std::span<const std::byte> src, std::span<float> dst);
Status quantize(TensorType type, std::span<const float> src, std::span<std::byte> dst);

// Checked dot product of n elements: x holds a row of `type`, y a row of its vec_dot_type.
Result<float> vec_dot(TensorType type, int64_t n, std::span<const std::byte> x,
                      std::span<const std::byte> y);

}  // namespace realm::kernels
