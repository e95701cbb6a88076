// Legacy 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//
// Bit-compatibility notes (ggml-quants.c, quantize_row_*_ref / dequantize_row_*; ggml-cpu
// quants.c, ggml_vec_dot_*_generic):
//   - the scale is computed in float from the block maximum and rounded to fp16 for storage,
//     but quantization multiplies by the reciprocal of the *unrounded* float scale;
//   - quants are produced by a truncating C cast of (x*id + offset), not by rounding;
//   - float operations happen in exactly ggml's order (products are not reassociated).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "kernels/quants.hpp"
#include "kernels/quants_impl.hpp"

namespace realm::kernels {

using detail::f2h;
using detail::h2f;

namespace {

// Index and value of the element with the largest magnitude (first one on ties), as ggml's
// "if (amax < fabsf(v)) { amax = fabsf(v); max = v; }" loop finds it.
struct AbsMax {
    float amax = 0.0f;
    float max = 0.0f;
};
AbsMax abs_max(const float* x, int64_t n) {
    AbsMax r;
    for (int64_t j = 0; j < n; ++j) {
        const float ax = std::fabs(x[j]);
        if (r.amax < ax) {
            r.amax = ax;
            r.max = x[j];
        }
    }
    return r;
}

struct MinMax {
    float min = FLT_MAX;
    float max = -FLT_MAX;
};
MinMax min_max(const float* x, int64_t n) {
    MinMax r;
    for (int64_t j = 0; j < n; ++j) {
        if (x[j] < r.min) r.min = x[j];
        if (x[j] > r.max) r.max = x[j];
    }
    return r;
}

void store_u32_le(uint8_t* dst, uint32_t v) {
    for (int b = 0; b < 4; ++b) dst[b] = static_cast<uint8_t>(v >> (8 * b));
}
uint32_t load_u32_le(const uint8_t* src) {
    uint32_t v = 0;
    for (int b = 0; b < 4; ++b) v |= static_cast<uint32_t>(src[b]) << (8 * b);
    return v;
}

}  // namespace

// ----------------------------------------------------------------------------------- Q4_0

void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t k) {
    constexpr int qk = kQK4_0;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, x += qk) {
        const AbsMax m = abs_max(x, qk);
        const float d = m.max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        for (int j = 0; j < qk / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[j + qk / 2] * id;
            const int q0 = std::min(15, static_cast<int>(detail::trunc_to_int8(x0 + 8.5f)));
            const int q1 = std::min(15, static_cast<int>(detail::trunc_to_int8(x1 + 8.5f)));
            y[i].qs[j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | (static_cast<uint8_t>(q1) << 4));
        }
    }
}

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t k) {
    constexpr int qk = kQK4_0;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, y += qk) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < qk / 2; ++j) {
            const int q0 = (x[i].qs[j] & 0x0F) - 8;
            const int q1 = (x[i].qs[j] >> 4) - 8;
            y[j] = static_cast<float>(q0) * d;
            y[j + qk / 2] = static_cast<float>(q1) * d;
        }
    }
}

float vec_dot_q4_0_q8_0(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y) {
    constexpr int qk = kQK4_0;
    const int64_t nb = n / qk;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ++ib) {
        int sumi = 0;
        for (int j = 0; j < qk / 2; ++j) {
            sumi += ((x[ib].qs[j] & 0x0F) - 8) * y[ib].qs[j];
            sumi += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + qk / 2];
        }
        sumf += static_cast<float>(sumi) * h2f(x[ib].d) * h2f(y[ib].d);
    }
    return sumf;
}

// ----------------------------------------------------------------------------------- Q4_1

void quantize_row_q4_1(const float* x, BlockQ4_1* y, int64_t k) {
    constexpr int qk = kQK4_1;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, x += qk) {
        const MinMax mm = min_max(x, qk);
        const float d = (mm.max - mm.min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        y[i].m = f2h(mm.min);
        for (int j = 0; j < qk / 2; ++j) {
            const float x0 = (x[j] - mm.min) * id;
            const float x1 = (x[j + qk / 2] - mm.min) * id;
            const int q0 = std::min(15, static_cast<int>(detail::trunc_to_int8(x0 + 0.5f)));
            const int q1 = std::min(15, static_cast<int>(detail::trunc_to_int8(x1 + 0.5f)));
            y[i].qs[j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | (static_cast<uint8_t>(q1) << 4));
        }
    }
}

void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t k) {
    constexpr int qk = kQK4_1;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, y += qk) {
        const float d = h2f(x[i].d);
        const float m = h2f(x[i].m);
        for (int j = 0; j < qk / 2; ++j) {
            y[j] = static_cast<float>(x[i].qs[j] & 0x0F) * d + m;
            y[j + qk / 2] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
        }
    }
}

float vec_dot_q4_1_q8_1(int64_t n, const BlockQ4_1* x, const BlockQ8_1* y) {
    constexpr int qk = kQK4_1;
    const int64_t nb = n / qk;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ++ib) {
        int sumi = 0;
        for (int j = 0; j < qk / 2; ++j) {
            sumi += (x[ib].qs[j] & 0x0F) * y[ib].qs[j];
            sumi += (x[ib].qs[j] >> 4) * y[ib].qs[j + qk / 2];
        }
        // The min term uses the activation block's precomputed d * sum(q).
        sumf += (h2f(x[ib].d) * h2f(y[ib].d)) * static_cast<float>(sumi) + h2f(x[ib].m) * h2f(y[ib].s);
    }
    return sumf;
}

// ----------------------------------------------------------------------------------- Q5_0

void quantize_row_q5_0(const float* x, BlockQ5_0* y, int64_t k) {
    constexpr int qk = kQK5_0;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, x += qk) {
        const AbsMax m = abs_max(x, qk);
        const float d = m.max / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        uint32_t qh = 0;
        for (int j = 0; j < qk / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[j + qk / 2] * id;
            const auto q0 = static_cast<uint8_t>(std::min(31, static_cast<int>(detail::trunc_to_int8(x0 + 16.5f))));
            const auto q1 = static_cast<uint8_t>(std::min(31, static_cast<int>(detail::trunc_to_int8(x1 + 16.5f))));
            y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + qk / 2);
        }
        store_u32_le(y[i].qh, qh);
    }
}

void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t k) {
    constexpr int qk = kQK5_0;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, y += qk) {
        const float d = h2f(x[i].d);
        const uint32_t qh = load_u32_le(x[i].qh);
        for (int j = 0; j < qk / 2; ++j) {
            const uint32_t h0 = ((qh >> j) << 4) & 0x10;         // bit j      -> bit 4
            const uint32_t h1 = (qh >> (j + 12)) & 0x10;         // bit j + 16 -> bit 4
            const int q0 = static_cast<int>((x[i].qs[j] & 0x0Fu) | h0) - 16;
            const int q1 = static_cast<int>((x[i].qs[j] >> 4) | h1) - 16;
            y[j] = static_cast<float>(q0) * d;
            y[j + qk / 2] = static_cast<float>(q1) * d;
        }
    }
}

float vec_dot_q5_0_q8_0(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y) {
    constexpr int qk = kQK5_0;
    const int64_t nb = n / qk;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ++ib) {
        const uint32_t qh = load_u32_le(x[ib].qh);
        int sumi = 0;
        for (int j = 0; j < qk / 2; ++j) {
            const uint32_t h0 = ((qh >> j) & 1u) << 4;
            const uint32_t h1 = ((qh >> (j + 16)) & 1u) << 4;
            const int q0 = static_cast<int>((x[ib].qs[j] & 0x0Fu) | h0) - 16;
            const int q1 = static_cast<int>((x[ib].qs[j] >> 4) | h1) - 16;
            sumi += q0 * y[ib].qs[j];
            sumi += q1 * y[ib].qs[j + qk / 2];
        }
        sumf += (h2f(x[ib].d) * h2f(y[ib].d)) * static_cast<float>(sumi);
    }
    return sumf;
}

// ----------------------------------------------------------------------------------- Q5_1

void quantize_row_q5_1(const float* x, BlockQ5_1* y, int64_t k) {
    constexpr int qk = kQK5_1;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, x += qk) {
        const MinMax mm = min_max(x, qk);
        const float d = (mm.max - mm.min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        y[i].m = f2h(mm.min);
        uint32_t qh = 0;
        for (int j = 0; j < qk / 2; ++j) {
            const float x0 = (x[j] - mm.min) * id;
            const float x1 = (x[j + qk / 2] - mm.min) * id;
            const uint8_t q0 = detail::trunc_to_uint8(x0 + 0.5f);  // no clamp in ggml either
            const uint8_t q1 = detail::trunc_to_uint8(x1 + 0.5f);
            y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + qk / 2);
        }
        store_u32_le(y[i].qh, qh);
    }
}

void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t k) {
    constexpr int qk = kQK5_1;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, y += qk) {
        const float d = h2f(x[i].d);
        const float m = h2f(x[i].m);
        const uint32_t qh = load_u32_le(x[i].qh);
        for (int j = 0; j < qk / 2; ++j) {
            const uint32_t h0 = ((qh >> j) << 4) & 0x10;
            const uint32_t h1 = (qh >> (j + 12)) & 0x10;
            const auto q0 = static_cast<int>((x[i].qs[j] & 0x0Fu) | h0);
            const auto q1 = static_cast<int>((x[i].qs[j] >> 4) | h1);
            y[j] = static_cast<float>(q0) * d + m;
            y[j + qk / 2] = static_cast<float>(q1) * d + m;
        }
    }
}

float vec_dot_q5_1_q8_1(int64_t n, const BlockQ5_1* x, const BlockQ8_1* y) {
    constexpr int qk = kQK5_1;
    const int64_t nb = n / qk;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ++ib) {
        const uint32_t qh = load_u32_le(x[ib].qh);
        int sumi = 0;
        for (int j = 0; j < qk / 2; ++j) {
            const uint32_t h0 = ((qh >> j) << 4) & 0x10;
            const uint32_t h1 = (qh >> (j + 12)) & 0x10;
            sumi += static_cast<int>((x[ib].qs[j] & 0x0Fu) | h0) * y[ib].qs[j];
            sumi += static_cast<int>((x[ib].qs[j] >> 4) | h1) * y[ib].qs[j + qk / 2];
        }
        sumf += (h2f(x[ib].d) * h2f(y[ib].d)) * static_cast<float>(sumi) + h2f(x[ib].m) * h2f(y[ib].s);
    }
    return sumf;
}

// ----------------------------------------------------------------------------------- Q8_0

namespace {
// ggml's amax loop for Q8_0/Q8_1 uses MAX(amax, fabsf(v)) = amax > |v| ? amax : |v|.
float abs_max_macro(const float* x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; ++j) {
        const float av = std::fabs(x[j]);
        amax = amax > av ? amax : av;
    }
    return amax;
}
}  // namespace

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t k) {
    constexpr int qk = kQK8_0;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, x += qk) {
        const float amax = abs_max_macro(x, qk);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        for (int j = 0; j < qk; ++j) y[i].qs[j] = detail::trunc_to_int8(detail::round_half_away(x[j] * id));
    }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t k) {
    constexpr int qk = kQK8_0;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, y += qk) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < qk; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

float vec_dot_q8_0_q8_0(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y) {
    constexpr int qk = kQK8_0;
    const int64_t nb = n / qk;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ++ib) {
        int sumi = 0;
        for (int j = 0; j < qk; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += static_cast<float>(sumi) * (h2f(x[ib].d) * h2f(y[ib].d));
    }
    return sumf;
}

// ----------------------------------------------------------------------------------- Q8_1

void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t k) {
    constexpr int qk = kQK8_1;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, x += qk) {
        const float amax = abs_max_macro(x, qk);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        int sum = 0;
        for (int j = 0; j < qk; ++j) {
            y[i].qs[j] = detail::trunc_to_int8(detail::round_half_away(x[j] * id));
            sum += y[i].qs[j];
        }
        y[i].s = f2h(static_cast<float>(sum) * d);
    }
}

void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t k) {
    constexpr int qk = kQK8_1;
    const int64_t nb = k / qk;
    for (int64_t i = 0; i < nb; ++i, y += qk) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < qk; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

}  // namespace realm::kernels
