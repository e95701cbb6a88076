// Tensor element types with ggml's numeric ids, block sizes and block byte sizes.
// The ids are part of the GGUF file format; the sizes decide every bounds check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace realm {

enum class TensorType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
    IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
    IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40,
    Q1_0 = 41, Q2_0 = 42,
};

struct TypeTraits {
    TensorType type;
    std::string_view name;  // ggml's spelling, e.g. "q4_K"
    uint32_t block_size;    // elements per block
    uint32_t type_size;     // bytes per block
};

// nullopt for ids that ggml does not define (removed or unknown types).
std::optional<TypeTraits> type_traits(uint32_t id);
inline std::optional<TypeTraits> type_traits(TensorType t) { return type_traits(static_cast<uint32_t>(t)); }
std::string_view type_name(TensorType t);
// Case-insensitive lookup by ggml name ("q4_k", "Q4_K", "f32").
std::optional<TensorType> type_from_name(std::string_view name);

}  // namespace realm
