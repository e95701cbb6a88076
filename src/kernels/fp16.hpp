// IEEE half (fp16) and bfloat16 <-> float conversions, bit-compatible with ggml's reference
// conversions (GGML_FP32_TO_FP16 / GGML_FP16_TO_FP32 / GGML_FP32_TO_BF16 in ggml-impl.h):
//   - float -> fp16: round to nearest, ties to even; overflow -> +-inf; NaN -> sign | 0x7E00.
//   - fp16 -> float: exact; NaNs keep their payload and come out quiet (ggml computes this
//     conversion with a float multiply, which quiets signalling NaNs).
//   - float -> bf16: round to nearest, ties to even; NaN -> upper half with the quiet bit forced.
//   - bf16 -> float: exact (upper 16 bits).
// Pure integer bit manipulation: the results do not depend on the FPU, rounding mode or
// compiler flags. These are the ground truth for any vectorised conversion.
#pragma once

#include <bit>
#include <cstdint>

namespace realm::kernels {

constexpr float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;

    if (exp == 0x1F) {
        if (mant == 0) return std::bit_cast<float>(sign | 0x7F800000u);         // +-inf
        return std::bit_cast<float>(sign | 0x7FC00000u | (mant << 13));          // quiet NaN
    }
    if (exp != 0) {  // normal: rebias exponent 15 -> 127
        return std::bit_cast<float>(sign | ((exp + (127 - 15)) << 23) | (mant << 13));
    }
    if (mant == 0) return std::bit_cast<float>(sign);  // +-0
    // Subnormal half: mant * 2^-24. Normalise into a float (always representable).
    uint32_t e = 127 - 15 + 1;  // exponent of 2^-14
    uint32_t m = mant;
    while ((m & 0x400u) == 0) {
        m <<= 1;
        --e;
    }
    return std::bit_cast<float>(sign | (e << 23) | ((m & 0x3FFu) << 13));
}

constexpr uint16_t fp32_to_fp16(float f) {
    const uint32_t w = std::bit_cast<uint32_t>(f);
    const auto sign = static_cast<uint16_t>((w >> 16) & 0x8000u);
    const uint32_t a = w & 0x7FFFFFFFu;  // magnitude bits

    if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);  // NaN
    if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 (incl. inf) -> inf
    if (a >= 0x38800000u) {
        // Result is a normal half (|f| >= 2^-14). Round the 23-bit mantissa to 10 bits (ties to
        // even); a carry out of the mantissa correctly bumps the exponent.
        const uint32_t rounded = a + 0xFFFu + ((a >> 13) & 1u);
        return static_cast<uint16_t>(sign | ((rounded - ((127u - 15u) << 23)) >> 13));
    }
    if (a <= 0x33000000u) return sign;  // |f| <= 2^-25: rounds to +-0 (2^-25 is a tie -> even 0)
    // Result is a half subnormal (or the smallest normal after rounding up): count units of 2^-24.
    const uint32_t e = a >> 23;                        // 102..112
    const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;    // value = m * 2^(e - 150)
    const uint32_t shift = 126 - e;                    // value / 2^-24 = m >> shift
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
}

constexpr float bf16_to_fp32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

constexpr uint16_t fp32_to_bf16(float f) {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace realm::kernels
