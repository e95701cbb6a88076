// F32, F16 and BF16 rows. ggml's scalar dot products accumulate the float products in double
// (ggml_float) and round the sum to float at the end.
#include <cstring>

#include "kernels/fp16.hpp"
#include "kernels/quants.hpp"

namespace realm::kernels {

void dequantize_row_f32(const float* x, float* y, int64_t k) {
    if (k > 0) std::memcpy(y, x, static_cast<size_t>(k) * sizeof(float));
}

void quantize_row_f32(const float* x, float* y, int64_t k) {
    if (k > 0) std::memcpy(y, x, static_cast<size_t>(k) * sizeof(float));
}

float vec_dot_f32(int64_t n, const float* x, const float* y) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * y[i]);
    return static_cast<float>(sum);
}

void dequantize_row_f16(const uint16_t* x, float* y, int64_t k) {
    for (int64_t i = 0; i < k; ++i) y[i] = fp16_to_fp32(x[i]);
}

void quantize_row_f16(const float* x, uint16_t* y, int64_t k) {
    for (int64_t i = 0; i < k; ++i) y[i] = fp32_to_fp16(x[i]);
}

float vec_dot_f16(int64_t n, const uint16_t* x, const uint16_t* y) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
    return static_cast<float>(sum);
}

void dequantize_row_bf16(const uint16_t* x, float* y, int64_t k) {
    for (int64_t i = 0; i < k; ++i) y[i] = bf16_to_fp32(x[i]);
}

void quantize_row_bf16(const float* x, uint16_t* y, int64_t k) {
    for (int64_t i = 0; i < k; ++i) y[i] = fp32_to_bf16(x[i]);
}

float vec_dot_bf16(int64_t n, const uint16_t* x, const uint16_t* y) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
    return static_cast<float>(sum);
}

}  // namespace realm::kernels
