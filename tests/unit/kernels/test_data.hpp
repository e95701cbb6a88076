// Test inputs shared by the kernels tests: the list of supported types and float generators
// with distributions that stress the quantizers (rounding ties, tiny values, constant blocks...).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gguf/types.hpp"
#include "kernels/quants.hpp"

namespace realm::kernels::testing {

inline const std::vector<TensorType>& supported_types() {
    static const std::vector<TensorType> types = {
        TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0,   TensorType::Q4_1,  TensorType::Q5_0,
        TensorType::Q5_1, TensorType::Q8_0, TensorType::Q8_1, TensorType::Q2_K,   TensorType::Q3_K,  TensorType::Q4_K,
        TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_K, TensorType::IQ4_NL, TensorType::IQ4_XS,
    };
    return types;
}

inline std::string name(TensorType t) { return std::string(type_name(t)); }

// Raw byte buffer with max_align_t alignment (enough for every block struct).
class Bytes {
public:
    explicit Bytes(size_t n = 0) : storage_((n + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t)), size_(n) {}
    std::byte* data() { return reinterpret_cast<std::byte*>(storage_.data()); }
    const std::byte* data() const { return reinterpret_cast<const std::byte*>(storage_.data()); }
    size_t size() const { return size_; }
    std::span<std::byte> span() { return {data(), size_}; }
    std::span<const std::byte> span() const { return {data(), size_}; }

private:
    std::vector<std::max_align_t> storage_;
    size_t size_;
};

enum class Dist {
    Uniform,       // U(-1, 1)
    Gaussian,      // N(0, 1) with per-block scale 10^U(-3, 3)
    Synthetic,     // ggml's test data: 0.1 + 2 cos(i + offset)
    HalfGrid,      // multiples of 1/2 and 1/4: x*id lands exactly on rounding ties
    Tiny,          // magnitudes 1e-45 .. 1e-14, incl. float subnormals and below GROUP_MAX_EPS
    ConstBlocks,   // every 32-block constant (random value, either sign)
    ZeroBlocks,    // gaussian with every third 32-block all zero (the first one non-zero)
    Large,         // magnitudes up to 1e6: fp16 scales overflow to inf for some types
    Outliers,      // gaussian with a few huge outliers per block
};

inline const char* dist_name(Dist d) {
    switch (d) {
        case Dist::Uniform: return "uniform";
        case Dist::Gaussian: return "gaussian";
        case Dist::Synthetic: return "synthetic";
        case Dist::HalfGrid: return "half-grid";
        case Dist::Tiny: return "tiny";
        case Dist::ConstBlocks: return "const-blocks";
        case Dist::ZeroBlocks: return "zero-blocks";
        case Dist::Large: return "large";
        case Dist::Outliers: return "outliers";
    }
    return "?";
}

inline std::vector<Dist> all_dists() {
    return {Dist::Uniform,     Dist::Gaussian,   Dist::Synthetic, Dist::HalfGrid, Dist::Tiny,
            Dist::ConstBlocks, Dist::ZeroBlocks, Dist::Large,     Dist::Outliers};
}

inline std::vector<float> make_data(Dist dist, size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    std::normal_distribution<float> gauss(0.0f, 1.0f);
    std::vector<float> x(n);
    switch (dist) {
        case Dist::Uniform:
            for (auto& v : x) v = uni(rng);
            break;
        case Dist::Gaussian: {
            float scale = 1.0f;
            for (size_t i = 0; i < n; ++i) {
                if (i % 32 == 0) scale = std::pow(10.0f, 3.0f * uni(rng));
                x[i] = scale * gauss(rng);
            }
            break;
        }
        case Dist::Synthetic:
            for (size_t i = 0; i < n; ++i) x[i] = 0.1f + 2.0f * std::cos(static_cast<float>(i) + static_cast<float>(seed % 7));
            break;
        case Dist::HalfGrid: {
            // Per 32-block: the first value is M * step (M in {8, 16, 127, 31}, either sign), the
            // others are half-integer multiples of step within [-M, M]. With power-of-two steps
            // the scales come out exact, so x * (1/d) lands exactly on .5 (roundf / nearest_int
            // ties) or on integers (truncation boundaries).
            std::uniform_int_distribution<int> amp(-3, 3);
            std::uniform_int_distribution<int> kind(0, 7);
            const int maxes[4] = {8, 16, 127, 31};
            for (size_t b = 0; b < n; b += 32) {
                const float step = std::ldexp(1.0f, amp(rng));
                const int k = kind(rng);
                const int m = maxes[k % 4];
                std::uniform_int_distribution<int> pick(-2 * m, 2 * m);
                for (size_t i = b; i < std::min(n, b + 32); ++i) x[i] = step * 0.5f * static_cast<float>(pick(rng));
                x[b] = step * static_cast<float>(k < 4 ? m : -m);
            }
            break;
        }
        case Dist::Tiny: {
            std::uniform_real_distribution<float> expo(-45.0f, -14.0f);
            float scale = 1.0f;
            for (size_t i = 0; i < n; ++i) {
                if (i % 32 == 0) scale = std::pow(10.0f, expo(rng));
                x[i] = scale * uni(rng);
            }
            break;
        }
        case Dist::ConstBlocks: {
            float v = 0.0f;
            for (size_t i = 0; i < n; ++i) {
                if (i % 32 == 0) v = gauss(rng);
                x[i] = v;
            }
            break;
        }
        case Dist::ZeroBlocks:
            for (size_t i = 0; i < n; ++i) x[i] = ((i / 32) % 3 == 2) ? 0.0f : gauss(rng);
            break;
        case Dist::Large: {
            std::uniform_real_distribution<float> expo(0.0f, 6.0f);
            float scale = 1.0f;
            for (size_t i = 0; i < n; ++i) {
                if (i % 32 == 0) scale = std::pow(10.0f, expo(rng));
                x[i] = scale * uni(rng);
            }
            break;
        }
        case Dist::Outliers: {
            std::uniform_int_distribution<int> pos(0, 63);
            for (size_t i = 0; i < n; ++i) x[i] = gauss(rng) * (pos(rng) == 0 ? 100.0f : 1.0f);
            break;
        }
    }
    return x;
}

}  // namespace realm::kernels::testing
