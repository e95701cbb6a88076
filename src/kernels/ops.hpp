// SIMD element-wise kernels for the forward pass (SiLU-gated product, RMSNorm, the attention
// row: F16 dot products and softmax). They use FMA and float sums, so they agree with ggml's
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
    // out[j] = scale * (q . k_j), k_j = k + j * k_stride, n rows of hk F16 values (attention
    // scores against the keys; or, with the softmax weights as q, the outputs against V^T).
    void (*f16_dots)(const uint16_t* q, const uint16_t* k, size_t k_stride, size_t hk, size_t n, float scale,
                     float* out);
    // w16 = F16(softmax(x)) over n >= 1 values; x is overwritten.
    void (*softmax_f16)(float* x, size_t n, uint16_t* w16);
};

// The element-wise kernels of `isa`; nullptr for Isa::Scalar or an ISA this CPU lacks.
const SimdOps* simd_ops(Isa isa);

}  // namespace realm::kernels
