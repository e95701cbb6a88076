// Choosing tensor types and converting tensor data, shared by `realm quantize` and `realm synth`.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "gguf/reader.hpp"
#include "gguf/result.hpp"
#include "gguf/types.hpp"

namespace realm::cli {

// What the user asked for: one type for every weight matrix, or a llama.cpp-style mix.
struct QuantTarget {
    TensorType base;
    bool q4_k_m = false;  // Q4_K with Q6_K for output and for attn_v/ffn_down in "more bits" layers
    bool tied_embeddings = false;  // no output.weight: token_embd doubles as the output matrix
};
Result<QuantTarget> parse_quant_target(std::string_view name);

// The value llama.cpp stores in general.file_type for this target, if it has one.
std::optional<uint32_t> llama_file_type(const QuantTarget& target);

// The type tensor `name` with dims `ne` (ggml order) gets. 1-D tensors keep `current` unless
// the target is F32, which dequantizes everything. Row lengths that do not fit a block size
// fall back as llama.cpp's quantizer does (K-quants to 32-element formats, then to F16).
TensorType choose_type(const QuantTarget& target, std::string_view name, std::span<const uint64_t> ne,
                       TensorType current, uint32_t n_layer);

// Fills `out` with `rows` rows of `row_len` elements in type `dst_type`; `row` writes the float
// values of one row. Rows are spread over the hardware threads.
Status convert_rows(TensorType dst_type, uint64_t rows, uint64_t row_len, std::span<std::byte> out,
                    const std::function<Status(uint64_t row, std::span<float> values)>& row);

}  // namespace realm::cli
