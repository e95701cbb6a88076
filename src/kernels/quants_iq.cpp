// Non-linear 4-bit formats: IQ4_NL (blocks of 32, one fp16 scale) and IQ4_XS (super-blocks of
// 256 with 6-bit sub-block scales). Values are indices into kValuesIQ4NL.
//
// The quantizer follows ggml's quantize_row_iq4_nl_impl without importance weights (weights
// x^2): per 32-block pick the scale by a least-squares search over 2*ntry+1 candidate grids,
// then (IQ4_XS) quantize the block scales to 6 bits and re-pick every index against the stored
// scale.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/quants.hpp"
#include "kernels/quants_impl.hpp"

namespace realm::kernels {

using detail::f2h;
using detail::h2f;

namespace {

constexpr float kGroupMaxEps = 1e-15f;

// Index of the level nearest to x in the sorted table (ties toward the lower level), as ggml's
// best_index_int8 computes it.
int best_index_iq4nl(float x) {
    const int8_t* val = kValuesIQ4NL;
    constexpr int n = 16;
    if (x <= static_cast<float>(val[0])) return 0;
    if (x >= static_cast<float>(val[n - 1])) return n - 1;
    int ml = 0;
    int mu = n - 1;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < static_cast<float>(val[mav])) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    return x - static_cast<float>(val[mu - 1]) < static_cast<float>(val[mu]) - x ? mu - 1 : mu;
}

struct IQ4Out {
    uint16_t* d;           // fp16 super-block scale
    uint8_t* qs;           // super_block_size / 2 bytes
    uint16_t* scales_h;    // IQ4_XS only
    uint8_t* scales_l;     // IQ4_XS only
};

// One super-block (32 for IQ4_NL, 256 for IQ4_XS) of ggml's quantize_row_iq4_nl_impl with
// quant_weights == NULL. L (super_block_size entries) carries over between calls, which matters
// only for the ntry <= 0 path (see quantize_row_iq4_nl_fast).
void quantize_iq4_superblock(int super_block_size, const float* x, IQ4Out out, uint8_t* L, int ntry) {
    constexpr int block_size = 32;
    const int nblocks = super_block_size / block_size;
    const float v0 = static_cast<float>(kValuesIQ4NL[0]);
    float scales[kQK_K / 32];
    float weight[block_size];

    std::memset(out.qs, 0, static_cast<size_t>(super_block_size / 2));
    *out.d = f2h(0.0f);

    float max_scale = 0.0f;
    float amax_scale = 0.0f;
    for (int ib = 0; ib < nblocks; ++ib) {
        const float* xb = x + ib * block_size;
        uint8_t* Lb = L + ib * block_size;
        for (int j = 0; j < block_size; ++j) weight[j] = xb[j] * xb[j];
        float amax = 0.0f;
        float max = 0.0f;
        for (int j = 0; j < block_size; ++j) {
            const float ax = std::fabs(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < kGroupMaxEps) {
            scales[ib] = 0.0f;
            continue;
        }
        // Initial grid maps the extreme value onto the extreme level (-127).
        float d = ntry > 0 ? -max / v0 : max / v0;
        float id = 1.0f / d;
        float sumqx = 0.0f;
        float sumq2 = 0.0f;
        for (int j = 0; j < block_size; ++j) {
            const int l = best_index_iq4nl(id * xb[j]);
            Lb[j] = static_cast<uint8_t>(l);
            const float q = static_cast<float>(kValuesIQ4NL[l]);
            const float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; ++itry) {
            id = static_cast<float>(itry + kValuesIQ4NL[0]) / max;
            sumqx = 0.0f;
            sumq2 = 0.0f;
            for (int j = 0; j < block_size; ++j) {
                const int l = best_index_iq4nl(id * xb[j]);
                const float q = static_cast<float>(kValuesIQ4NL[l]);
                const float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        const float abs_d = std::fabs(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }

    if (nblocks > 1) {
        // IQ4_XS: 6-bit signed block scales relative to d = -max_scale/32. The indices are
        // re-picked with the float (not fp16-rounded) d, as in ggml.
        *out.scales_h = 0;
        const float d = -max_scale / 32.0f;
        *out.d = f2h(d);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int ib = 0; ib < nblocks; ++ib) {
            int l = detail::nearest_int(id * scales[ib]);
            l = std::max(-32, std::min(31, l));
            const float dl = d * static_cast<float>(l);
            const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
            uint8_t* Lb = L + ib * block_size;
            const float* xb = x + ib * block_size;
            for (int j = 0; j < block_size; ++j) Lb[j] = static_cast<uint8_t>(best_index_iq4nl(idl * xb[j]));
            l += 32;
            const auto l_l = static_cast<uint8_t>(l & 0xF);
            const auto l_h = static_cast<uint8_t>(l >> 4);
            if (ib % 2 == 0) {
                out.scales_l[ib / 2] = l_l;
            } else {
                out.scales_l[ib / 2] = static_cast<uint8_t>(out.scales_l[ib / 2] | (l_l << 4));
            }
            *out.scales_h = static_cast<uint16_t>(*out.scales_h | (l_h << (2 * (ib % 8))));
        }
    } else {
        *out.d = f2h(scales[0]);
        if (ntry > 0) {
            const float id = scales[0] != 0.0f ? 1.0f / scales[0] : 0.0f;
            for (int j = 0; j < super_block_size; ++j) L[j] = static_cast<uint8_t>(best_index_iq4nl(id * x[j]));
        }
    }

    // Element j of a 32-block in the low nibble of qs[j], element j + 16 in the high nibble.
    for (int i = 0; i < super_block_size / 32; ++i) {
        for (int j = 0; j < 16; ++j) {
            out.qs[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
        }
    }
}

}  // namespace

// --------------------------------------------------------------------------------- IQ4_NL

void quantize_row_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t k) {
    const int64_t nb = k / kQK4_NL;
    uint8_t L[kQK4_NL] = {};
    for (int64_t i = 0; i < nb; ++i) {
        quantize_iq4_superblock(kQK4_NL, x + kQK4_NL * i, IQ4Out{&y[i].d, y[i].qs, nullptr, nullptr}, L, 7);
    }
}

void quantize_row_iq4_nl_fast(const float* x, BlockIQ4_NL* y, int64_t k) {
    const int64_t nb = k / kQK4_NL;
    uint8_t L[kQK4_NL];
    std::memset(L, 8, sizeof(L));  // ggml: uninitialised; only visible for a leading zero block
    for (int64_t i = 0; i < nb; ++i) {
        quantize_iq4_superblock(kQK4_NL, x + kQK4_NL * i, IQ4Out{&y[i].d, y[i].qs, nullptr, nullptr}, L, -1);
    }
}

void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t k) {
    const int64_t nb = k / kQK4_NL;
    for (int64_t i = 0; i < nb; ++i, y += kQK4_NL) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < kQK4_NL / 2; ++j) {
            y[j] = d * static_cast<float>(kValuesIQ4NL[x[i].qs[j] & 0xF]);
            y[j + kQK4_NL / 2] = d * static_cast<float>(kValuesIQ4NL[x[i].qs[j] >> 4]);
        }
    }
}

float vec_dot_iq4_nl_q8_0(int64_t n, const BlockIQ4_NL* x, const BlockQ8_0* y) {
    static_assert(kQK4_NL == kQK8_0);
    const int64_t nb = n / kQK4_NL;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float d = h2f(y[ib].d) * h2f(x[ib].d);
        int sumi = 0;
        for (int j = 0; j < kQK4_NL / 2; ++j) {
            sumi += y[ib].qs[j] * kValuesIQ4NL[x[ib].qs[j] & 0xF];
            sumi += y[ib].qs[j + kQK4_NL / 2] * kValuesIQ4NL[x[ib].qs[j] >> 4];
        }
        sumf += d * static_cast<float>(sumi);
    }
    return sumf;
}

// --------------------------------------------------------------------------------- IQ4_XS

namespace {
// 6-bit scale of sub-block ib (0..7), in [0, 63]: low nibble from scales_l, top 2 bits from
// bits 2*ib of scales_h.
int iq4_xs_scale(const BlockIQ4_XS& b, int ib) {
    return ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4);
}
}  // namespace

void quantize_row_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    uint8_t L[kQK_K] = {};
    for (int64_t i = 0; i < nb; ++i) {
        quantize_iq4_superblock(kQK_K, x + kQK_K * i, IQ4Out{&y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l}, L, 7);
    }
}

void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < kQK_K / 32; ++ib, y += 32) {
            const float dl = d * static_cast<float>(iq4_xs_scale(x[i], ib) - 32);
            const uint8_t* qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * static_cast<float>(kValuesIQ4NL[qs[j] & 0xF]);
                y[j + 16] = dl * static_cast<float>(kValuesIQ4NL[qs[j] >> 4]);
            }
        }
    }
}

float vec_dot_iq4_xs_q8_K(int64_t n, const BlockIQ4_XS* x, const BlockQ8_K* y) {
    const int64_t nb = n / kQK_K;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        const float d4d8 = h2f(x[i].d) * y[i].d;
        for (int ib = 0; ib < kQK_K / 32; ++ib) {
            const float dl = d4d8 * static_cast<float>(iq4_xs_scale(x[i], ib) - 32);
            const uint8_t* qs = x[i].qs + 16 * ib;
            const int8_t* q8 = y[i].qs + 32 * ib;
            int sumi = 0;
            for (int j = 0; j < 16; ++j) {
                sumi += q8[j] * kValuesIQ4NL[qs[j] & 0xF];
                sumi += q8[j + 16] * kValuesIQ4NL[qs[j] >> 4];
            }
            sumf += dl * static_cast<float>(sumi);
        }
    }
    return sumf;
}

}  // namespace realm::kernels
