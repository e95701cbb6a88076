// Internal helpers shared by the reference kernels. Not part of the public API.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "kernels/fp16.hpp"

namespace realm::kernels::detail {

// ggml's nearest_int: round to nearest, ties to even, through the 1.5 * 2^23 magic number.
// Exact for |f| <= 2^22; for other inputs (NaN, inf, huge) it returns the same garbage as ggml,
// deterministically and without UB.
inline int nearest_int(float f) {
    const float v = f + 12582912.f;
    const auto bits = std::bit_cast<int32_t>(v);
    return (bits & 0x007FFFFF) - 0x00400000;
}

// float -> integer conversion the way ggml's x86 build performs a C cast such as
// (int8_t)(x + 8.5f): truncate toward zero (cvttss2si); NaN and out-of-range values give the
// "integer indefinite" 0x80000000. Callers keep the low 8 bits, which is what the C cast to a
// byte type keeps. Spelled out so that degenerate inputs (e.g. 1/d overflowing to inf for
// subnormal blocks) stay byte-compatible instead of being undefined behaviour.
inline int32_t trunc_to_int32(float f) {
    if (!(f >= -2147483648.0f && f < 2147483648.0f)) return INT32_MIN;  // also NaN
    return static_cast<int32_t>(f);
}
inline int8_t trunc_to_int8(float f) { return static_cast<int8_t>(trunc_to_int32(f)); }
inline uint8_t trunc_to_uint8(float f) { return static_cast<uint8_t>(trunc_to_int32(f)); }

// C's roundf: halfway cases away from zero.
inline float round_half_away(float f) { return std::round(f); }

inline float h2f(uint16_t h) { return fp16_to_fp32(h); }
inline uint16_t f2h(float f) { return fp32_to_fp16(f); }

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
// scales[0..3]: low 6 bits = scale j, scales[4..7]: low 6 bits = min j (j < 4);
// for j >= 4 the low/high nibbles of scales[8..11] hold the low 4 bits of scale/min and the top
// two bits of scales[j-4] / scales[j] hold their high 2 bits.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// The 6-bit scale of sub-block j (0..15) of a Q3_K block, in [0, 63] (subtract 32 to use).
// Low 4 bits: low nibble of scales[j] (j < 8) or high nibble of scales[j-8];
// high 2 bits: bits 2*(j/4) of scales[8 + j%4].
inline int q3_k_scale(const uint8_t* scales, int j) {
    const int low = j < 8 ? (scales[j] & 0xF) : (scales[j - 8] >> 4);
    const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return low | (high << 4);
}

}  // namespace realm::kernels::detail
