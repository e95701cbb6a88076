// SIMD element-wise kernels for the forward pass (SiLU-gated and GELU-gated products, RMSNorm,
// RoPE, residual adds, F16 conversions, attention tiles and softmax). They use FMA and float sums, so they agree with ggml's
// scalar formulas within rounding, not bitwise; the model keeps its ggml-exact scalar versions
// for Isa::Scalar and calls these otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/isa.hpp"

namespace realm::kernels {

struct SimdOps {
    // gate[i] = silu(gate[i]) * up[i] (silu(x) = x / (1 + e^-x)).
    void (*silu_mul)(float* gate, const float* up, size_t n);
    // y = x / sqrt(mean(x^2) + eps) * w; y may alias x.
    void (*rms_norm)(const float* x, const float* w, float* y, size_t n, float eps);
    // w16 = F16(softmax(x)) over n >= 1 values; x is overwritten.
    void (*softmax_f16)(float* x, size_t n, uint16_t* w16);
    void (*f16_to_f32)(const uint16_t* x, float* y, size_t n);
    // Round to nearest even, as kernels::fp32_to_fp16 (NaN payloads may differ).
    void (*f32_to_f16)(const float* x, uint16_t* y, size_t n);
    // x[i] += y[i] (exact, as the scalar sum).
    void (*add)(float* x, const float* y, size_t n);
    // RoPE on one head: rotates the first n_rot values of x by the angles cs (cos and sin of each
    // pair, interleaved): adjacent pairs (x[2i], x[2i+1]), or with neox (x[i], x[i + n_rot/2]);
    // bitwise the scalar formula (x0 c - x1 s, x0 s + x1 c, without FMA).
    void (*rope)(float* x, size_t n_rot, bool neox, const float* cs);
    // gate[i] = G(gate[i]) * up[i], G(x) = 0 for x <= -10, x for x >= 10, else table[fp16 bits of x]
    // (ggml's GELU through a 65536-entry table; bitwise the scalar lookup).
    void (*gelu_mul)(float* gate, const float* up, size_t n, const float* table);
    // Attention tiles (nq queries sharing one K/V head). Scores: s[iq * s_stride + j] =
    // scale * (q_iq . k_j) for j in [j0, j1), k_j = k + j * k_stride (hk F16 values), q rows of
    // hk floats; kf: scratch of 64 * hk floats.
    void (*attn_scores)(const float* q, size_t nq, size_t hk, const uint16_t* k, size_t k_stride, size_t j0,
                        size_t j1, float scale, float* s, size_t s_stride, float* kf);
    // Values: out[iq][d] = sum over j in [j0, j1) of w[iq * w_stride + j] * vt[d * v_stride + j], for
    // d < hv; j0 a multiple of 8. Each (query, d) is summed in lanes by j mod 8, so weights that are
    // zero outside a query's keys give the same result as its own range alone.
    void (*attn_values)(const float* w, size_t nq, size_t w_stride, const uint16_t* vt, size_t v_stride,
                        size_t hv, size_t j0, size_t j1, float* const* out);
};

// The element-wise kernels of `isa`; nullptr for Isa::Scalar or an ISA this CPU lacks.
const SimdOps* simd_ops(Isa isa);

}  // namespace realm::kernels
