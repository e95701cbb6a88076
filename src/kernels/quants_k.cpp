// K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (256-element super-blocks) and their activation
// format Q8_K.
//
// The quantizers follow ggml's quantize_row_*_ref: per sub-block a scale (and min) is fitted by
// a small search (make_qkx2_quants / make_q3_quants / make_qx_quants below), the sub-block
// scales are quantized to 4/6/8 bits against a super-block fp16 scale, and finally every value
// is re-quantized with the scale that is actually stored. Float operations happen in ggml's
// order; the dot products follow ggml_vec_dot_*_q8_K_generic, including its float
// accumulation pattern (8 running float sums, reduced at the end).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/quants.hpp"
#include "kernels/quants_impl.hpp"

namespace realm::kernels {

using detail::f2h;
using detail::h2f;
using detail::nearest_int;

namespace {

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: below this a group is "all zero"

int clamp_int(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// Signed symmetric fit, weights x^2 (ggml make_qx_quants with rmse_type = 1 and no importance
// weights). L receives q + nmax in [0, 2*nmax). Returns the scale.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
    float max = 0.0f;
    float amax = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0.0f;
    float suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    // Try 18 nearby inverse scales, keep the one with the best weighted least-squares fit.
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = 0.0f;
        suml2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * static_cast<float>(l);
            suml2 += w * static_cast<float>(l) * static_cast<float>(l);
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                L[i] = static_cast<int8_t>(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Signed symmetric fit with iterative per-element refinement (ggml make_q3_quants, do_rmse =
// true). L receives q + nmax in [0, 2*nmax) (all 0 for an all-zero group). Returns the scale.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    float max = 0.0f;
    float amax = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    const float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0.0f;
    float suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w * x[i] * li;
            if (slx > 0.0f) {
                float sl2 = suml2 - w * li * li;
                const int new_l = clamp_int(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * static_cast<float>(new_l);
                    sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (n_changed == 0) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric fit x ~ scale * L - the_min with L in [0, nmax] (ggml make_qkx2_quants): starts
// from the min/max grid, then tries nstep+1 alternative grids and solves the weighted least
// squares for (scale, min) on each, keeping the best by weighted |error| (use_mad) or error^2.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    const float fnmax = static_cast<float>(nmax);
    float iscale = fnmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(clamp_int(l, 0, nmax));
        float diff = scale * static_cast<float>(L[i]) + min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
        float sum_l = 0.0f;
        float sum_l2 = 0.0f;
        float sum_xl = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            const float fl = static_cast<float>(l);
            sum_l += w * fl;
            sum_l2 += w * fl * fl;
            sum_xl += w * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Q2_K / Q3_K low-bit layout: element j + 32*s + 128*h (s in 0..3, h in 0..1, j in 0..31) lives
// in bits 2s..2s+1 of qs[32*h + j].
void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < kQK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                 (L[j + l + 96] << 6));
        }
    }
}

// The 2-bit field of element e in that layout.
int unpack_2bit(const uint8_t* qs, int e) {
    const int h = e / 128;
    const int s = (e % 128) / 32;
    return (qs[32 * h + e % 32] >> (2 * s)) & 3;
}

// Q4_K / Q5_K 6-bit scale/min packing (inverse of detail::get_scale_min_k4).
void pack_scale_min_k4(uint8_t* scales, int j, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        scales[j - 4] = static_cast<uint8_t>(scales[j - 4] | ((ls >> 4) << 6));
        scales[j] = static_cast<uint8_t>(scales[j] | ((lm >> 4) << 6));
    }
}

// Shared by Q4_K and Q5_K: fit 8 (scale, min) pairs of 32, quantize them to 6 bits, and
// re-quantize the values against the stored scales. Writes d, dmin, scales; returns L in [0, nmax].
template <class Block>
void quantize_q45_k_scales(const float* x, Block& y, uint8_t* L, int nmax, float rmin, int nstep) {
    float mins[kQK_K / 32];
    float scales[kQK_K / 32];
    float weights[32];
    uint8_t Laux[32];
    float max_scale = 0.0f;  // as the min is subtracted, scales are always positive
    float max_min = 0.0f;
    for (int j = 0; j < kQK_K / 32; ++j) {
        const float* xb = x + 32 * j;
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; ++l) sum_x2 += xb[l] * xb[l];
        const float av_x = std::sqrt(sum_x2 / 32.0f);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xb[l]);
        scales[j] = make_qkx2_quants(32, nmax, xb, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }

    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    std::memset(y.scales, 0, sizeof(y.scales));
    for (int j = 0; j < kQK_K / 32; ++j) {
        auto ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
        auto lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
        ls = std::min<uint8_t>(63, ls);
        lm = std::min<uint8_t>(63, lm);
        pack_scale_min_k4(y.scales, j, ls, lm);
    }
    y.d = f2h(max_scale / 63.0f);
    y.dmin = f2h(max_min / 63.0f);

    for (int j = 0; j < kQK_K / 32; ++j) {
        uint8_t sc = 0;
        uint8_t m = 0;
        detail::get_scale_min_k4(j, y.scales, &sc, &m);
        const float d = h2f(y.d) * static_cast<float>(sc);
        if (d == 0.0f) continue;
        const float dm = h2f(y.dmin) * static_cast<float>(m);
        for (int ii = 0; ii < 32; ++ii) {
            L[32 * j + ii] = static_cast<uint8_t>(clamp_int(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
        }
    }
}

}  // namespace

// ----------------------------------------------------------------------------------- Q2_K

void quantize_row_q2_K(const float* x, BlockQ2_K* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    constexpr float q4scale = 15.0f;
    uint8_t L[kQK_K];
    uint8_t Laux[16];
    float weights[16];
    float mins[kQK_K / 16];
    float scales[kQK_K / 16];

    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float max_scale = 0.0f;
        float max_min = 0.0f;
        for (int j = 0; j < kQK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }

        if (max_scale > 0.0f) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
            y[i].d = f2h(max_scale / q4scale);
        } else {
            for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = 0;
            y[i].d = f2h(0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < kQK_K / 16; ++j) {
                const auto l = static_cast<uint32_t>(nearest_int(iscale * mins[j]));
                y[i].scales[j] = static_cast<uint8_t>(y[i].scales[j] | (l << 4));
            }
            y[i].dmin = f2h(max_min / q4scale);
        } else {
            y[i].dmin = f2h(0.0f);
        }

        for (int j = 0; j < kQK_K / 16; ++j) {
            const float d = h2f(y[i].d) * static_cast<float>(y[i].scales[j] & 0xF);
            if (d == 0.0f) continue;
            const float dm = h2f(y[i].dmin) * static_cast<float>(y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                L[16 * j + ii] = static_cast<uint8_t>(clamp_int(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

void dequantize_row_q2_K(const BlockQ2_K* x, float* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
        const float d = h2f(x[i].d);
        const float min = h2f(x[i].dmin);
        for (int e = 0; e < kQK_K; ++e) {
            const uint8_t sc = x[i].scales[e / 16];
            const float dl = d * static_cast<float>(sc & 0xF);
            const float ml = min * static_cast<float>(sc >> 4);
            y[e] = dl * static_cast<float>(unpack_2bit(x[i].qs, e)) - ml;
        }
    }
}

float vec_dot_q2_K_q8_K(int64_t n, const BlockQ2_K* x, const BlockQ8_K* y) {
    const int64_t nb = n / kQK_K;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        // Min part from the activation's group sums: sum_j bsums[j] * m_j.
        int summs = 0;
        for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (x[i].scales[j] >> 4);
        // Scale part: sum_j sc_j * sum_{e in group j} q8[e] * q2[e].
        int isum = 0;
        for (int j = 0; j < 16; ++j) {
            int isuml = 0;
            for (int e = 16 * j; e < 16 * j + 16; ++e) isuml += y[i].qs[e] * unpack_2bit(x[i].qs, e);
            isum += (x[i].scales[j] & 0xF) * isuml;
        }
        const float dall = y[i].d * h2f(x[i].d);
        const float dmin = y[i].d * h2f(x[i].dmin);
        sumf += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
    }
    return sumf;
}

// ----------------------------------------------------------------------------------- Q3_K

void quantize_row_q3_K(const float* x, BlockQ3_K* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    int8_t L[kQK_K];
    float scales[kQK_K / 16];

    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float max_scale = 0.0f;
        float amax = 0.0f;
        for (int j = 0; j < kQK_K / 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = std::fabs(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }

        std::memset(y[i].scales, 0, sizeof(y[i].scales));
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < kQK_K / 16; ++j) {
                // ggml narrows to int8 before clamping.
                auto l8 = static_cast<int8_t>(nearest_int(iscale * scales[j]));
                const int l = clamp_int(l8, -32, 31) + 32;
                if (j < 8) {
                    y[i].scales[j] = static_cast<uint8_t>(l & 0xF);
                } else {
                    y[i].scales[j - 8] = static_cast<uint8_t>(y[i].scales[j - 8] | ((l & 0xF) << 4));
                }
                y[i].scales[j % 4 + 8] = static_cast<uint8_t>(y[i].scales[j % 4 + 8] | ((l >> 4) << (2 * (j / 4))));
            }
            y[i].d = f2h(1.0f / iscale);
        } else {
            y[i].d = f2h(0.0f);
        }

        for (int j = 0; j < kQK_K / 16; ++j) {
            const int sc = detail::q3_k_scale(y[i].scales, j) - 32;
            const float d = h2f(y[i].d) * static_cast<float>(sc);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                L[16 * j + ii] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
            }
        }

        // High bit of element j goes to bit j/32 of hmask[j%32]; the low 2 bits to qs.
        std::memset(y[i].hmask, 0, sizeof(y[i].hmask));
        uint8_t Lu[kQK_K];
        for (int j = 0; j < kQK_K; ++j) {
            int l = L[j];
            if (l > 3) {
                y[i].hmask[j % 32] = static_cast<uint8_t>(y[i].hmask[j % 32] | (1u << (j / 32)));
                l -= 4;
            }
            Lu[j] = static_cast<uint8_t>(l);
        }
        pack_2bit(Lu, y[i].qs);
    }
}

void dequantize_row_q3_K(const BlockQ3_K* x, float* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
        const float d_all = h2f(x[i].d);
        int sc[16];
        for (int j = 0; j < 16; ++j) sc[j] = detail::q3_k_scale(x[i].scales, j) - 32;
        for (int e = 0; e < kQK_K; ++e) {
            const float dl = d_all * static_cast<float>(sc[e / 16]);
            const bool high = (x[i].hmask[e % 32] >> (e / 32)) & 1;
            const int q = unpack_2bit(x[i].qs, e) - (high ? 0 : 4);
            y[e] = dl * static_cast<float>(q);
        }
    }
}

float vec_dot_q3_K_q8_K(int64_t n, const BlockQ3_K* x, const BlockQ8_K* y) {
    const int64_t nb = n / kQK_K;
    // ggml keeps 8 float partial sums (element index mod 8) across all blocks.
    float sums[8] = {};
    for (int64_t i = 0; i < nb; ++i) {
        int sc[16];
        for (int j = 0; j < 16; ++j) sc[j] = detail::q3_k_scale(x[i].scales, j) - 32;
        int32_t aux32[8] = {};
        for (int e = 0; e < kQK_K; ++e) {
            const bool high = (x[i].hmask[e % 32] >> (e / 32)) & 1;
            const int q = unpack_2bit(x[i].qs, e) - (high ? 0 : 4);
            aux32[e % 8] += sc[e / 16] * (y[i].qs[e] * q);
        }
        const float d = h2f(x[i].d) * y[i].d;
        for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
    }
    float sumf = 0.0f;
    for (float s : sums) sumf += s;
    return sumf;
}

// ----------------------------------------------------------------------------------- Q4_K

void quantize_row_q4_K(const float* x, BlockQ4_K* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        quantize_q45_k_scales(x, y[i], L, 15, -1.0f, 20);
        // Element j + 64*c (j < 32) in the low nibble of qs[32c + j], element j + 32 + 64*c in
        // the high nibble.
        for (int c = 0; c < kQK_K / 64; ++c) {
            for (int l = 0; l < 32; ++l) {
                y[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + l + 32] << 4));
            }
        }
    }
}

void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const float min = h2f(x[i].dmin);
        for (int c = 0; c < kQK_K / 64; ++c) {
            uint8_t sc = 0;
            uint8_t m = 0;
            detail::get_scale_min_k4(2 * c, x[i].scales, &sc, &m);
            const float d1 = d * static_cast<float>(sc);
            const float m1 = min * static_cast<float>(m);
            detail::get_scale_min_k4(2 * c + 1, x[i].scales, &sc, &m);
            const float d2 = d * static_cast<float>(sc);
            const float m2 = min * static_cast<float>(m);
            const uint8_t* q = x[i].qs + 32 * c;
            for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        }
    }
}

namespace {
// Shared dot product of Q4_K / Q5_K against Q8_K, given the unpacked quants a[256] of block i.
struct KDotState {
    float sums[8] = {};
    float sumf = 0.0f;
};
template <class Block>
void accumulate_q45_k(KDotState& st, const Block& x, const BlockQ8_K& y, const int8_t* a) {
    uint8_t scales[8];
    uint8_t mins[8];
    for (int j = 0; j < 8; ++j) detail::get_scale_min_k4(j, x.scales, &scales[j], &mins[j]);
    int sumi = 0;
    for (int j = 0; j < kQK_K / 16; ++j) sumi += y.bsums[j] * mins[j / 2];
    int32_t aux32[8] = {};
    for (int e = 0; e < kQK_K; ++e) aux32[e % 8] += scales[e / 32] * (y.qs[e] * a[e]);
    const float d = h2f(x.d) * y.d;
    for (int l = 0; l < 8; ++l) st.sums[l] += d * static_cast<float>(aux32[l]);
    const float dmin = h2f(x.dmin) * y.d;
    st.sumf -= dmin * static_cast<float>(sumi);
}
}  // namespace

float vec_dot_q4_K_q8_K(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y) {
    const int64_t nb = n / kQK_K;
    KDotState st;
    int8_t a[kQK_K];
    for (int64_t i = 0; i < nb; ++i) {
        for (int c = 0; c < kQK_K / 64; ++c) {
            for (int l = 0; l < 32; ++l) {
                a[64 * c + l] = static_cast<int8_t>(x[i].qs[32 * c + l] & 0xF);
                a[64 * c + l + 32] = static_cast<int8_t>(x[i].qs[32 * c + l] >> 4);
            }
        }
        accumulate_q45_k(st, x[i], y[i], a);
    }
    for (float s : st.sums) st.sumf += s;
    return st.sumf;
}

// ----------------------------------------------------------------------------------- Q5_K

void quantize_row_q5_K(const float* x, BlockQ5_K* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        quantize_q45_k_scales(x, y[i], L, 31, -0.5f, 15);
        // As Q4_K for the low 4 bits; bit 4 of element j + 64*c (+32) goes to bit 2c (2c+1)
        // of qh[j].
        std::memset(y[i].qh, 0, sizeof(y[i].qh));
        for (int c = 0; c < kQK_K / 64; ++c) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[64 * c + j];
                int l2 = L[64 * c + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    y[i].qh[j] = static_cast<uint8_t>(y[i].qh[j] | (1u << (2 * c)));
                }
                if (l2 > 15) {
                    l2 -= 16;
                    y[i].qh[j] = static_cast<uint8_t>(y[i].qh[j] | (2u << (2 * c)));
                }
                y[i].qs[32 * c + j] = static_cast<uint8_t>(l1 | (l2 << 4));
            }
        }
    }
}

void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const float min = h2f(x[i].dmin);
        for (int c = 0; c < kQK_K / 64; ++c) {
            uint8_t sc = 0;
            uint8_t m = 0;
            detail::get_scale_min_k4(2 * c, x[i].scales, &sc, &m);
            const float d1 = d * static_cast<float>(sc);
            const float m1 = min * static_cast<float>(m);
            detail::get_scale_min_k4(2 * c + 1, x[i].scales, &sc, &m);
            const float d2 = d * static_cast<float>(sc);
            const float m2 = min * static_cast<float>(m);
            const uint8_t* ql = x[i].qs + 32 * c;
            const unsigned u1 = 1u << (2 * c);
            const unsigned u2 = 2u << (2 * c);
            for (int l = 0; l < 32; ++l) {
                *y++ = d1 * static_cast<float>((ql[l] & 0xF) + ((x[i].qh[l] & u1) ? 16 : 0)) - m1;
            }
            for (int l = 0; l < 32; ++l) {
                *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((x[i].qh[l] & u2) ? 16 : 0)) - m2;
            }
        }
    }
}

float vec_dot_q5_K_q8_K(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y) {
    const int64_t nb = n / kQK_K;
    KDotState st;
    int8_t a[kQK_K];
    for (int64_t i = 0; i < nb; ++i) {
        for (int c = 0; c < kQK_K / 64; ++c) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q = x[i].qs[32 * c + l];
                const uint8_t h = x[i].qh[l];
                a[64 * c + l] = static_cast<int8_t>((q & 0xF) + (((h >> (2 * c)) & 1) ? 16 : 0));
                a[64 * c + l + 32] = static_cast<int8_t>((q >> 4) + (((h >> (2 * c + 1)) & 1) ? 16 : 0));
            }
        }
        accumulate_q45_k(st, x[i], y[i], a);
    }
    for (float s : st.sums) st.sumf += s;
    return st.sumf;
}

// ----------------------------------------------------------------------------------- Q6_K

namespace {
// Q6_K layout: for h in {0, 1} (128-element halves) and l < 32, elements l, l+32, l+64, l+96
// of the half keep their low nibbles in ql[64h + l] (lo), ql[64h + l + 32] (lo),
// ql[64h + l] (hi), ql[64h + l + 32] (hi) and their top 2 bits in bits 0-1, 2-3, 4-5, 6-7 of
// qh[32h + l].
int q6_k_value(const BlockQ6_K& b, int e) {
    const int h = e / 128;
    const int r = e % 128;
    const int s = r / 32;  // 0..3
    const int l = r % 32;
    const uint8_t ql = b.ql[64 * h + l + (s & 1) * 32];
    const int low = (s < 2) ? (ql & 0xF) : (ql >> 4);
    const int high = (b.qh[32 * h + l] >> (2 * s)) & 3;
    return (low | (high << 4)) - 32;
}
}  // namespace

void quantize_row_q6_K(const float* x, BlockQ6_K* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    int8_t L[kQK_K];
    float scales[kQK_K / 16];

    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float max_scale = 0.0f;
        float max_abs_scale = 0.0f;
        for (int ib = 0; ib < kQK_K / 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = std::fabs(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }

        if (max_abs_scale < kGroupMaxEps) {
            std::memset(&y[i], 0, sizeof(BlockQ6_K));
            y[i].d = f2h(0.0f);
            continue;
        }

        const float iscale = -128.0f / max_scale;
        y[i].d = f2h(1.0f / iscale);
        for (int ib = 0; ib < kQK_K / 16; ++ib) {
            y[i].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
        }

        for (int j = 0; j < kQK_K / 16; ++j) {
            const float d = h2f(y[i].d) * static_cast<float>(y[i].scales[j]);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                L[16 * j + ii] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
            }
        }

        for (int h = 0; h < 2; ++h) {
            const int8_t* Lh = L + 128 * h;
            uint8_t* ql = y[i].ql + 64 * h;
            uint8_t* qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; ++l) {
                const int q1 = Lh[l + 0] & 0xF;
                const int q2 = Lh[l + 32] & 0xF;
                const int q3 = Lh[l + 64] & 0xF;
                const int q4 = Lh[l + 96] & 0xF;
                ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
                ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
                qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                             ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
        const float d = h2f(x[i].d);
        for (int e = 0; e < kQK_K; ++e) {
            // ggml: d * sc * q, evaluated left to right.
            y[e] = d * static_cast<float>(x[i].scales[e / 16]) * static_cast<float>(q6_k_value(x[i], e));
        }
    }
}

float vec_dot_q6_K_q8_K(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y) {
    const int64_t nb = n / kQK_K;
    float sums[8] = {};
    for (int64_t i = 0; i < nb; ++i) {
        int32_t aux32[8] = {};
        for (int e = 0; e < kQK_K; ++e) {
            aux32[e % 8] += x[i].scales[e / 16] * (y[i].qs[e] * q6_k_value(x[i], e));
        }
        const float d = h2f(x[i].d) * y[i].d;
        for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
    }
    float sumf = 0.0f;
    for (float s : sums) sumf += s;
    return sumf;
}

// ----------------------------------------------------------------------------------- Q8_K

void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float max = 0.0f;
        float amax = 0.0f;
        for (int j = 0; j < kQK_K; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            // ggml leaves bsums untouched here; we zero them.
            std::memset(&y[i], 0, sizeof(BlockQ8_K));
            continue;
        }
        // -127 rather than -128: ggml's choice, keeps the SIMD IQ2 kernels simple.
        const float iscale = -127.0f / max;
        for (int j = 0; j < kQK_K; ++j) {
            y[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
        }
        for (int j = 0; j < kQK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[16 * j + ii];
            y[i].bsums[j] = static_cast<int16_t>(sum);
        }
        y[i].d = 1.0f / iscale;
    }
}

void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t k) {
    const int64_t nb = k / kQK_K;
    for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
        for (int j = 0; j < kQK_K; ++j) y[j] = x[i].d * static_cast<float>(x[i].qs[j]);
    }
}

}  // namespace realm::kernels
