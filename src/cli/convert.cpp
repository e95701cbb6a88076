#include "cli/convert.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/quants.hpp"

namespace realm::cli {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) { return s.ends_with(suffix); }

// Layer index from "blk.N.*", or nullopt.
std::optional<uint32_t> layer_of(std::string_view name) {
    if (!name.starts_with("blk.")) return std::nullopt;
    uint32_t n = 0;
    auto [p, ec] = std::from_chars(name.data() + 4, name.data() + name.size(), n);
    if (ec != std::errc() || p == name.data() + 4) return std::nullopt;
    return n;
}

// llama.cpp's rule for which layers of a Q4_K_M model keep more bits.
bool use_more_bits(uint32_t i, uint32_t n) {
    const auto ii = static_cast<int64_t>(i), nn = static_cast<int64_t>(n);
    return ii < nn / 8 || ii >= 7 * nn / 8 || (ii - nn / 8) % 3 == 2;
}

// llama.cpp's fallback when a row length is not a multiple of the type's block size.
TensorType fallback(TensorType t) {
    switch (t) {
        case TensorType::Q2_K:
        case TensorType::Q3_K:
        case TensorType::IQ4_XS: return TensorType::IQ4_NL;
        case TensorType::Q4_K: return TensorType::Q5_0;
        case TensorType::Q5_K: return TensorType::Q5_1;
        case TensorType::Q6_K: return TensorType::Q8_0;
        default: return TensorType::F16;
    }
}

uint64_t block_size(TensorType t) { return type_traits(t)->block_size; }

}  // namespace

Result<QuantTarget> parse_quant_target(std::string_view name) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == "q4_k_m") return QuantTarget{TensorType::Q4_K, true};
    auto t = type_from_name(name);
    if (!t) return make_error("unknown tensor type '" + std::string(name) + "'");
    const auto* k = kernels::kernel_traits(*t);
    if (!k || !k->quantize) {
        return make_error("tensor type '" + std::string(name) + "' has no quantizer in realm");
    }
    return QuantTarget{*t, false};
}

std::optional<uint32_t> llama_file_type(const QuantTarget& target) {
    if (target.q4_k_m) return 15;
    switch (target.base) {
        case TensorType::F32: return 0;
        case TensorType::F16: return 1;
        case TensorType::Q4_0: return 2;
        case TensorType::Q4_1: return 3;
        case TensorType::Q8_0: return 7;
        case TensorType::Q5_0: return 8;
        case TensorType::Q5_1: return 9;
        case TensorType::Q2_K: return 10;
        case TensorType::Q3_K: return 11;  // Q3_K_S: every matrix Q3_K
        case TensorType::Q4_K: return 14;  // Q4_K_S
        case TensorType::Q5_K: return 16;  // Q5_K_S
        case TensorType::Q6_K: return 18;
        case TensorType::IQ4_NL: return 25;
        case TensorType::IQ4_XS: return 30;
        case TensorType::BF16: return 32;
        default: return std::nullopt;  // activation formats (Q8_1, Q8_K) have no llama.cpp file type
    }
}

TensorType choose_type(const QuantTarget& target, std::string_view name, std::span<const uint64_t> ne,
                       TensorType current, uint32_t n_layer) {
    if (target.base == TensorType::F32) return TensorType::F32;
    if (ne.size() < 2) return current;
    TensorType t = target.base;
    if (target.q4_k_m) {
        const bool is_output = name == "output.weight" || (target.tied_embeddings && name == "token_embd.weight");
        if (is_output) {
            t = TensorType::Q6_K;
        } else if (ends_with(name, "attn_v.weight") || ends_with(name, "ffn_down.weight")) {
            if (auto i = layer_of(name); i && use_more_bits(*i, n_layer)) t = TensorType::Q6_K;
        }
    }
    while (ne[0] % block_size(t) != 0 && t != TensorType::F16) t = fallback(t);
    return t;
}

Status convert_rows(TensorType dst_type, uint64_t rows, uint64_t row_len, std::span<std::byte> out,
                    const std::function<Status(uint64_t row, std::span<float> values)>& row) {
    const auto row_bytes = kernels::row_size(dst_type, static_cast<int64_t>(row_len));
    if (!row_bytes) return row_bytes.error();
    if (*row_bytes * rows != out.size()) return make_error("internal: output size mismatch");

    const unsigned n_threads = std::max(1U, std::min<unsigned>(std::thread::hardware_concurrency(), 64));
    std::mutex mu;
    std::atomic<bool> failed{false};
    std::optional<Error> first_error;
    auto work = [&](unsigned t) {
        std::vector<float> values(row_len);
        for (uint64_t r = t; r < rows && !failed.load(std::memory_order_relaxed); r += n_threads) {
            Status s = row(r, values);
            if (s.ok()) s = kernels::quantize(dst_type, values, out.subspan(r * *row_bytes, *row_bytes));
            if (!s.ok()) {
                std::lock_guard lock(mu);
                if (!first_error) first_error = s.error();
                failed = true;
                return;
            }
        }
    };
    {
        std::vector<std::jthread> pool;
        for (unsigned t = 1; t < n_threads; ++t) pool.emplace_back(work, t);
        work(0);
    }
    if (first_error) return *first_error;
    return {};
}

}  // namespace realm::cli
