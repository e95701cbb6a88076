#include "gguf/types.hpp"

#include <array>
#include <cctype>

namespace realm {
namespace {

constexpr std::array kTraits = {
    TypeTraits{TensorType::F32, "f32", 1, 4},
    TypeTraits{TensorType::F16, "f16", 1, 2},
    TypeTraits{TensorType::Q4_0, "q4_0", 32, 18},
    TypeTraits{TensorType::Q4_1, "q4_1", 32, 20},
    TypeTraits{TensorType::Q5_0, "q5_0", 32, 22},
    TypeTraits{TensorType::Q5_1, "q5_1", 32, 24},
    TypeTraits{TensorType::Q8_0, "q8_0", 32, 34},
    TypeTraits{TensorType::Q8_1, "q8_1", 32, 36},
    TypeTraits{TensorType::Q2_K, "q2_K", 256, 84},
    TypeTraits{TensorType::Q3_K, "q3_K", 256, 110},
    TypeTraits{TensorType::Q4_K, "q4_K", 256, 144},
    TypeTraits{TensorType::Q5_K, "q5_K", 256, 176},
    TypeTraits{TensorType::Q6_K, "q6_K", 256, 210},
    TypeTraits{TensorType::Q8_K, "q8_K", 256, 292},
    TypeTraits{TensorType::IQ2_XXS, "iq2_xxs", 256, 66},
    TypeTraits{TensorType::IQ2_XS, "iq2_xs", 256, 74},
    TypeTraits{TensorType::IQ3_XXS, "iq3_xxs", 256, 98},
    TypeTraits{TensorType::IQ1_S, "iq1_s", 256, 50},
    TypeTraits{TensorType::IQ4_NL, "iq4_nl", 32, 18},
    TypeTraits{TensorType::IQ3_S, "iq3_s", 256, 110},
    TypeTraits{TensorType::IQ2_S, "iq2_s", 256, 82},
    TypeTraits{TensorType::IQ4_XS, "iq4_xs", 256, 136},
    TypeTraits{TensorType::I8, "i8", 1, 1},
    TypeTraits{TensorType::I16, "i16", 1, 2},
    TypeTraits{TensorType::I32, "i32", 1, 4},
    TypeTraits{TensorType::I64, "i64", 1, 8},
    TypeTraits{TensorType::F64, "f64", 1, 8},
    TypeTraits{TensorType::IQ1_M, "iq1_m", 256, 56},
    TypeTraits{TensorType::BF16, "bf16", 1, 2},
    TypeTraits{TensorType::TQ1_0, "tq1_0", 256, 54},
    TypeTraits{TensorType::TQ2_0, "tq2_0", 256, 66},
    TypeTraits{TensorType::MXFP4, "mxfp4", 32, 17},
    TypeTraits{TensorType::NVFP4, "nvfp4", 64, 36},
    TypeTraits{TensorType::Q1_0, "q1_0", 128, 18},
    TypeTraits{TensorType::Q2_0, "q2_0", 64, 18},
};

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    }
    return true;
}

}  // namespace

std::optional<TypeTraits> type_traits(uint32_t id) {
    for (const auto& t : kTraits) {
        if (static_cast<uint32_t>(t.type) == id) return t;
    }
    return std::nullopt;
}

std::string_view type_name(TensorType t) {
    auto tr = type_traits(t);
    return tr ? tr->name : std::string_view("unknown");
}

std::optional<TensorType> type_from_name(std::string_view name) {
    for (const auto& t : kTraits) {
        if (iequals(t.name, name)) return t.type;
    }
    return std::nullopt;
}

}  // namespace realm
