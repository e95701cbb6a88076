// Runtime dispatch table and the checked span API.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "kernels/quants.hpp"
#include "kernels/simd_table.hpp"

namespace realm::kernels {
namespace {

// Adapters from the typed kernels to the type-erased signatures.
template <class Block, void (*Fn)(const Block*, float*, int64_t)>
void erase_dequantize(const void* src, float* dst, int64_t n) {
    Fn(static_cast<const Block*>(src), dst, n);
}
template <class Block, void (*Fn)(const float*, Block*, int64_t)>
void erase_quantize(const float* src, void* dst, int64_t n) {
    Fn(src, static_cast<Block*>(dst), n);
}
template <class BlockX, class BlockY, float (*Fn)(int64_t, const BlockX*, const BlockY*)>
float erase_vec_dot(int64_t n, const void* x, const void* y) {
    return Fn(n, static_cast<const BlockX*>(x), static_cast<const BlockY*>(y));
}

template <class Block, int64_t kBlockSize, void (*Deq)(const Block*, float*, int64_t),
          void (*Quant)(const float*, Block*, int64_t)>
constexpr KernelTraits make_traits(TensorType type, VecDotFn dot, TensorType dot_type,
                                   QuantizeRowFn quant_ref = nullptr) {
    return KernelTraits{
        type,
        kBlockSize,
        sizeof(Block),
        alignof(Block),
        &erase_dequantize<Block, Deq>,
        &erase_quantize<Block, Quant>,
        quant_ref != nullptr ? quant_ref : &erase_quantize<Block, Quant>,
        dot,
        dot_type,
    };
}

using TT = TensorType;

// constexpr: constant-initialised, so kernel_traits() is usable during static initialisation.
constexpr std::array kTable = {
    make_traits<float, 1, dequantize_row_f32, quantize_row_f32>(
        TT::F32, &erase_vec_dot<float, float, vec_dot_f32>, TT::F32),
    make_traits<uint16_t, 1, dequantize_row_f16, quantize_row_f16>(
        TT::F16, &erase_vec_dot<uint16_t, uint16_t, vec_dot_f16>, TT::F16),
    make_traits<uint16_t, 1, dequantize_row_bf16, quantize_row_bf16>(
        TT::BF16, &erase_vec_dot<uint16_t, uint16_t, vec_dot_bf16>, TT::BF16),
    make_traits<BlockQ4_0, kQK4_0, dequantize_row_q4_0, quantize_row_q4_0>(
        TT::Q4_0, &erase_vec_dot<BlockQ4_0, BlockQ8_0, vec_dot_q4_0_q8_0>, TT::Q8_0),
    make_traits<BlockQ4_1, kQK4_1, dequantize_row_q4_1, quantize_row_q4_1>(
        TT::Q4_1, &erase_vec_dot<BlockQ4_1, BlockQ8_1, vec_dot_q4_1_q8_1>, TT::Q8_1),
    make_traits<BlockQ5_0, kQK5_0, dequantize_row_q5_0, quantize_row_q5_0>(
        TT::Q5_0, &erase_vec_dot<BlockQ5_0, BlockQ8_0, vec_dot_q5_0_q8_0>, TT::Q8_0),
    make_traits<BlockQ5_1, kQK5_1, dequantize_row_q5_1, quantize_row_q5_1>(
        TT::Q5_1, &erase_vec_dot<BlockQ5_1, BlockQ8_1, vec_dot_q5_1_q8_1>, TT::Q8_1),
    make_traits<BlockQ8_0, kQK8_0, dequantize_row_q8_0, quantize_row_q8_0>(
        TT::Q8_0, &erase_vec_dot<BlockQ8_0, BlockQ8_0, vec_dot_q8_0_q8_0>, TT::Q8_0),
    make_traits<BlockQ8_1, kQK8_1, dequantize_row_q8_1, quantize_row_q8_1>(TT::Q8_1, nullptr, TT::Q8_1),
    make_traits<BlockQ2_K, kQK_K, dequantize_row_q2_K, quantize_row_q2_K>(
        TT::Q2_K, &erase_vec_dot<BlockQ2_K, BlockQ8_K, vec_dot_q2_K_q8_K>, TT::Q8_K),
    make_traits<BlockQ3_K, kQK_K, dequantize_row_q3_K, quantize_row_q3_K>(
        TT::Q3_K, &erase_vec_dot<BlockQ3_K, BlockQ8_K, vec_dot_q3_K_q8_K>, TT::Q8_K),
    make_traits<BlockQ4_K, kQK_K, dequantize_row_q4_K, quantize_row_q4_K>(
        TT::Q4_K, &erase_vec_dot<BlockQ4_K, BlockQ8_K, vec_dot_q4_K_q8_K>, TT::Q8_K),
    make_traits<BlockQ5_K, kQK_K, dequantize_row_q5_K, quantize_row_q5_K>(
        TT::Q5_K, &erase_vec_dot<BlockQ5_K, BlockQ8_K, vec_dot_q5_K_q8_K>, TT::Q8_K),
    make_traits<BlockQ6_K, kQK_K, dequantize_row_q6_K, quantize_row_q6_K>(
        TT::Q6_K, &erase_vec_dot<BlockQ6_K, BlockQ8_K, vec_dot_q6_K_q8_K>, TT::Q8_K),
    make_traits<BlockQ8_K, kQK_K, dequantize_row_q8_K, quantize_row_q8_K>(TT::Q8_K, nullptr, TT::Q8_K),
    make_traits<BlockIQ4_NL, kQK4_NL, dequantize_row_iq4_nl, quantize_row_iq4_nl>(
        TT::IQ4_NL, &erase_vec_dot<BlockIQ4_NL, BlockQ8_0, vec_dot_iq4_nl_q8_0>, TT::Q8_0,
        &erase_quantize<BlockIQ4_NL, quantize_row_iq4_nl_fast>),
    make_traits<BlockIQ4_XS, kQK_K, dequantize_row_iq4_xs, quantize_row_iq4_xs>(
        TT::IQ4_XS, &erase_vec_dot<BlockIQ4_XS, BlockQ8_K, vec_dot_iq4_xs_q8_K>, TT::Q8_K),
};

std::string name_of(TensorType type) {
    const std::string_view n = type_name(type);
    if (n != "unknown") return std::string(n);
    return "type " + std::to_string(static_cast<uint32_t>(type));
}

bool is_aligned(const void* p, size_t align) { return reinterpret_cast<uintptr_t>(p) % align == 0; }

Result<const KernelTraits*> traits_or_error(TensorType type) {
    const KernelTraits* t = kernel_traits(type);
    if (t == nullptr) return make_error("no kernels for tensor type " + name_of(type));
    return t;
}

// Number of blocks for n elements, or an error if n is not a whole number of blocks.
Result<size_t> block_count(const KernelTraits& t, size_t n) {
    const auto bs = static_cast<size_t>(t.block_size);
    if (n % bs != 0) {
        return make_error(name_of(t.type) + ": element count " + std::to_string(n) +
                          " is not a multiple of the block size " + std::to_string(bs));
    }
    return n / bs;
}

// Scratch size for realigning misaligned byte buffers; holds at least one block of any type.
constexpr size_t kScratchBytes = 4096;

}  // namespace

const KernelTraits* kernel_traits(TensorType type) {
    for (const auto& t : kTable) {
        if (t.type == type) return &t;
    }
    return nullptr;
}

namespace {

using SimdTable = std::array<KernelTraits, kTable.size()>;

SimdTable make_simd_table(detail::SimdKernelList list) {
    SimdTable table = kTable;
    for (size_t i = 0; i < list.count; ++i) {
        const detail::SimdKernels& k = list.items[i];
        for (auto& t : table) {
            if (t.type != k.type) continue;
            if (k.vec_dot != nullptr) t.vec_dot = k.vec_dot;
            if (k.quantize != nullptr) t.quantize = k.quantize;
        }
    }
    return table;
}

const SimdTable* simd_table(Isa isa) {
    if (isa == Isa::Scalar || !isa_supported(isa)) return nullptr;
    if (isa == Isa::Avx2) {
        static const SimdTable avx2 = make_simd_table(detail::avx2_kernels());
        return &avx2;
    }
    static const SimdTable avx512 = make_simd_table(detail::avx512_kernels());
    return &avx512;
}

}  // namespace

const KernelTraits* kernel_traits(TensorType type, Isa isa) {
    const SimdTable* table = simd_table(isa);
    if (table == nullptr) return kernel_traits(type);
    for (const auto& t : *table) {
        if (t.type == type) return &t;
    }
    return nullptr;
}

const SimdOps* simd_ops(Isa isa) {
    if (isa == Isa::Scalar || !isa_supported(isa)) return nullptr;
    return isa == Isa::Avx2 ? detail::avx2_kernels().ops : detail::avx512_kernels().ops;
}

namespace detail {
namespace {
// The SIMD list of `isa`; nullopt for Isa::Scalar or an ISA the CPU lacks.
std::optional<SimdKernelList> kernel_list(Isa isa) {
    if (isa == Isa::Scalar || !isa_supported(isa)) return std::nullopt;
    return isa == Isa::Avx2 ? avx2_kernels() : avx512_kernels();
}
}  // namespace

TileFn tile_fn(TensorType type, Isa isa) {
    const auto list = kernel_list(isa);
    for (size_t i = 0; list && i < list->count; ++i) {
        if (list->items[i].type == type) return list->items[i].tile;
    }
    return nullptr;
}

TileFn rows16_tile_fn(TensorType type, Isa isa) {
    const auto list = kernel_list(isa);
    for (size_t i = 0; list && i < list->rows16_count; ++i) {
        if (list->rows16[i].type == type) return list->rows16[i].tile;
    }
    return nullptr;
}
}  // namespace detail

Result<size_t> row_size(TensorType type, int64_t n) {
    auto t = traits_or_error(type);
    if (!t) return t.error();
    if (n < 0) return make_error(name_of(type) + ": negative element count " + std::to_string(n));
    auto nb = block_count(**t, static_cast<size_t>(n));
    if (!nb) return nb.error();
    if (*nb > std::numeric_limits<size_t>::max() / (*t)->type_size) {
        return make_error(name_of(type) + ": row of " + std::to_string(n) + " elements overflows size_t");
    }
    return *nb * (*t)->type_size;
}

Status dequantize(TensorType type, std::span<const std::byte> src, std::span<float> dst) {
    auto tr = traits_or_error(type);
    if (!tr) return tr.error();
    const KernelTraits& t = **tr;
    auto nb = block_count(t, dst.size());
    if (!nb) return nb.error();
    if (src.size() % t.type_size != 0 || src.size() / t.type_size != *nb) {
        return make_error(name_of(type) + ": " + std::to_string(src.size()) + " bytes do not hold the " +
                          std::to_string(*nb) + " blocks needed for " + std::to_string(dst.size()) + " elements");
    }
    if (*nb == 0) return {};
    if (is_aligned(src.data(), t.block_align)) {
        t.dequantize(src.data(), dst.data(), static_cast<int64_t>(dst.size()));
        return {};
    }
    // Misaligned source (e.g. a tensor at an odd offset of a file mapping): realign in chunks.
    alignas(16) std::byte scratch[kScratchBytes];
    const size_t chunk_blocks = kScratchBytes / t.type_size;
    for (size_t b = 0; b < *nb; b += chunk_blocks) {
        const size_t cnt = std::min(chunk_blocks, *nb - b);
        std::memcpy(scratch, src.data() + b * t.type_size, cnt * t.type_size);
        t.dequantize(scratch, dst.data() + b * static_cast<size_t>(t.block_size),
                     static_cast<int64_t>(cnt) * t.block_size);
    }
    return {};
}

Status quantize(TensorType type, std::span<const float> src, std::span<std::byte> dst) {
    auto tr = traits_or_error(type);
    if (!tr) return tr.error();
    const KernelTraits& t = **tr;
    auto nb = block_count(t, src.size());
    if (!nb) return nb.error();
    if (dst.size() % t.type_size != 0 || dst.size() / t.type_size != *nb) {
        return make_error(name_of(type) + ": destination of " + std::to_string(dst.size()) +
                          " bytes does not match the " + std::to_string(*nb) + " blocks needed for " +
                          std::to_string(src.size()) + " elements");
    }
    if (*nb == 0) return {};
    if (is_aligned(dst.data(), t.block_align)) {
        t.quantize(src.data(), dst.data(), static_cast<int64_t>(src.size()));
        return {};
    }
    alignas(16) std::byte scratch[kScratchBytes];
    const size_t chunk_blocks = kScratchBytes / t.type_size;
    for (size_t b = 0; b < *nb; b += chunk_blocks) {
        const size_t cnt = std::min(chunk_blocks, *nb - b);
        t.quantize(src.data() + b * static_cast<size_t>(t.block_size), scratch,
                   static_cast<int64_t>(cnt) * t.block_size);
        std::memcpy(dst.data() + b * t.type_size, scratch, cnt * t.type_size);
    }
    return {};
}

Result<float> vec_dot(TensorType type, int64_t n, std::span<const std::byte> x, std::span<const std::byte> y) {
    auto tr = traits_or_error(type);
    if (!tr) return tr.error();
    const KernelTraits& t = **tr;
    if (t.vec_dot == nullptr) return make_error(name_of(type) + " has no dot product (activation-only format)");
    const KernelTraits* ty = kernel_traits(t.vec_dot_type);
    if (ty == nullptr) return make_error(name_of(type) + ": no kernels for its dot-product partner type");
    auto xs = row_size(type, n);
    if (!xs) return xs.error();
    auto ys = row_size(t.vec_dot_type, n);
    if (!ys) return ys.error();
    if (x.size() != *xs) {
        return make_error(name_of(type) + ": x holds " + std::to_string(x.size()) + " bytes, expected " +
                          std::to_string(*xs));
    }
    if (y.size() != *ys) {
        return make_error(name_of(t.vec_dot_type) + ": y holds " + std::to_string(y.size()) + " bytes, expected " +
                          std::to_string(*ys));
    }
    if (n == 0) return 0.0f;

    // Realign misaligned rows into heap copies (vec_dot keeps state across blocks).
    std::vector<std::max_align_t> xbuf;
    std::vector<std::max_align_t> ybuf;
    const void* xp = x.data();
    const void* yp = y.data();
    if (!is_aligned(xp, t.block_align)) {
        xbuf.resize((x.size() + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
        std::memcpy(xbuf.data(), x.data(), x.size());
        xp = xbuf.data();
    }
    if (!is_aligned(yp, ty->block_align)) {
        ybuf.resize((y.size() + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
        std::memcpy(ybuf.data(), y.data(), y.size());
        yp = ybuf.data();
    }
    return t.vec_dot(n, xp, yp);
}

}  // namespace realm::kernels
