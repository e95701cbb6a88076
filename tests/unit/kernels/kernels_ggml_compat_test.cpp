// Bit-compatibility of the reference kernels with ggml's own, using llama.cpp's prebuilt shared
// libraries loaded with dlopen() from $REALM_GGML_LIB_DIR:
//   - quantize: our bytes == ggml_quantize_chunk(type, ..., imatrix = NULL) bytes (or ggml's
//     *_ref quantizer for the activation formats Q8_1 / Q8_K, which quantize_chunk rejects),
//     and our quantize_ref == ggml type_traits from_float_ref;
//   - dequantize: our floats == ggml to_float floats, bit for bit;
//   - vec_dot: our scalar dot == ggml's CPU vec_dot. Bit-exact against the baseline x86-64 CPU
//     variant (which runs ggml's generic scalar code); within a small relative tolerance against
//     the SIMD variants that run on this machine (different float summation order).
// Skipped when REALM_GGML_LIB_DIR is unset; fails when it is set but the libraries do not load.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gguf/types.hpp"
#include "kernels/fp16.hpp"
#include "kernels/quants.hpp"
#include "test_data.hpp"

namespace realm {
// Readable parameter values in test names / ctest output ("GetParam() = q4_K").
void PrintTo(TensorType t, std::ostream* os) { *os << type_name(t); }
}  // namespace realm

namespace realm::kernels {
namespace {

using testing::Bytes;
using testing::Dist;
using testing::make_data;
using testing::name;

// ------------------------------------------------------------------ ggml ABI (ggml.h, ggml-cpu.h)

using GgmlToFloat = void (*)(const void*, float*, int64_t);
using GgmlFromFloat = void (*)(const float*, void*, int64_t);
using GgmlVecDot = void (*)(int n, float* s, size_t bs, const void* x, size_t bx, const void* y, size_t by, int nrc);

struct GgmlTypeTraits {
    const char* type_name;
    int64_t blck_size;
    int64_t blck_size_interleave;
    size_t type_size;
    bool is_quantized;
    GgmlToFloat to_float;
    GgmlFromFloat from_float_ref;
};

struct GgmlTypeTraitsCpu {
    GgmlFromFloat from_float;
    GgmlVecDot vec_dot;
    int32_t vec_dot_type;  // enum ggml_type
    int64_t nrows;
};

struct CpuVariant {
    std::string name;  // "x64", "haswell", ...
    int score = 0;
    const GgmlTypeTraitsCpu* (*traits)(int32_t) = nullptr;
};

class Ggml {
public:
    static Ggml& get() {
        static Ggml g;
        return g;
    }

    bool env_set = false;
    bool ok = false;
    std::string error;
    std::string dir;

    size_t (*quantize_chunk)(int32_t, const float*, void*, int64_t, int64_t, int64_t, const float*) = nullptr;
    const GgmlTypeTraits* (*type_traits)(int32_t) = nullptr;
    void (*quantize_init)(int32_t) = nullptr;
    void (*fp16_to_fp32_row)(const uint16_t*, float*, int64_t) = nullptr;
    void (*fp32_to_fp16_row)(const float*, uint16_t*, int64_t) = nullptr;
    void (*bf16_to_fp32_row)(const uint16_t*, float*, int64_t) = nullptr;
    void (*fp32_to_bf16_row_ref)(const float*, uint16_t*, int64_t) = nullptr;
    GgmlFromFloat quantize_row_q8_K_ref = nullptr;  // Q8_K is not in the type_traits table
    GgmlToFloat dequantize_row_q8_K = nullptr;
    std::vector<CpuVariant> cpus;  // every CPU variant that scores > 0 here; "x64" first

    const CpuVariant* cpu(const std::string& n) const {
        for (const auto& c : cpus) {
            if (c.name == n) return &c;
        }
        return nullptr;
    }

private:
    template <class F>
    bool sym(void* h, const char* s, F& out) {
        out = reinterpret_cast<F>(dlsym(h, s));
        if (out == nullptr) error += std::string("missing symbol ") + s + "; ";
        return out != nullptr;
    }

    Ggml() {
        const char* env = std::getenv("REALM_GGML_LIB_DIR");
        if (env == nullptr || *env == '\0') return;
        env_set = true;
        dir = env;
        const std::string base_path = dir + "/libggml-base.so";
        void* base = dlopen(base_path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (base == nullptr) {
            const char* e = dlerror();
            error = "dlopen(" + base_path + ") failed: " + (e ? e : "?");
            return;
        }
        bool all = sym(base, "ggml_quantize_chunk", quantize_chunk);
        all &= sym(base, "ggml_get_type_traits", type_traits);
        all &= sym(base, "ggml_quantize_init", quantize_init);
        all &= sym(base, "ggml_fp16_to_fp32_row", fp16_to_fp32_row);
        all &= sym(base, "ggml_fp32_to_fp16_row", fp32_to_fp16_row);
        all &= sym(base, "ggml_bf16_to_fp32_row", bf16_to_fp32_row);
        all &= sym(base, "ggml_fp32_to_bf16_row_ref", fp32_to_bf16_row_ref);
        all &= sym(base, "quantize_row_q8_K_ref", quantize_row_q8_K_ref);
        all &= sym(base, "dequantize_row_q8_K", dequantize_row_q8_K);
        if (!all) return;

        // CPU backends: ggml picks among these by ggml_backend_score(); 0 = cannot run here.
        std::vector<std::string> files;
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
            const std::string f = entry.path().filename().string();
            if (f.rfind("libggml-cpu-", 0) == 0 && f.size() > 15 && f.substr(f.size() - 3) == ".so") files.push_back(f);
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            void* h = dlopen((dir + "/" + f).c_str(), RTLD_NOW | RTLD_LOCAL);
            if (h == nullptr) continue;
            auto score = reinterpret_cast<int (*)()>(dlsym(h, "ggml_backend_score"));
            auto init = reinterpret_cast<void (*)()>(dlsym(h, "ggml_cpu_init"));
            CpuVariant v;
            v.name = f.substr(12, f.size() - 12 - 3);
            v.traits = reinterpret_cast<const GgmlTypeTraitsCpu* (*)(int32_t)>(dlsym(h, "ggml_get_type_traits_cpu"));
            if (score == nullptr || init == nullptr || v.traits == nullptr) continue;
            v.score = score();
            if (v.score <= 0) continue;  // needs instructions this CPU lacks
            init();                       // fp16 tables etc.
            cpus.push_back(v);
        }
        auto x64 = std::find_if(cpus.begin(), cpus.end(), [](const CpuVariant& c) { return c.name == "x64"; });
        if (x64 != cpus.end()) std::rotate(cpus.begin(), x64, x64 + 1);
        if (cpus.empty() || cpus.front().name != "x64") {
            error = "libggml-cpu-x64.so did not load from " + dir;
            return;
        }
        ok = true;
    }
};

#define REQUIRE_GGML()                                                                   \
    Ggml& g = Ggml::get();                                                               \
    if (!g.env_set) GTEST_SKIP() << "REALM_GGML_LIB_DIR not set; ggml compat tests skipped"; \
    ASSERT_TRUE(g.ok) << g.error

int32_t id(TensorType t) { return static_cast<int32_t>(t); }

// quantize_chunk handles every type here except the activation formats.
bool in_quantize_chunk(TensorType t) { return t != TensorType::Q8_1 && t != TensorType::Q8_K; }

// ggml's file-producing quantization of nrows x n_per_row values (Q8_1/Q8_K: their _ref).
Bytes ggml_quantize(Ggml& g, TensorType t, const std::vector<float>& x, int64_t nrows) {
    const int64_t n = static_cast<int64_t>(x.size());
    const size_t bytes = *row_size(t, n);
    Bytes out(bytes);
    std::memset(out.data(), 0, bytes);
    if (in_quantize_chunk(t)) {
        g.quantize_init(id(t));
        const size_t written = g.quantize_chunk(id(t), x.data(), out.data(), 0, nrows, n / nrows, nullptr);
        EXPECT_EQ(written, bytes);
    } else if (t == TensorType::Q8_K) {
        g.quantize_row_q8_K_ref(x.data(), out.data(), n);
    } else {
        g.type_traits(id(t))->from_float_ref(x.data(), out.data(), n);
    }
    return out;
}

GgmlToFloat ggml_to_float(Ggml& g, TensorType t) {
    if (t == TensorType::Q8_K) return g.dequantize_row_q8_K;
    return g.type_traits(id(t))->to_float;
}

// First differing block, or -1.
int64_t first_diff_block(const Bytes& a, const Bytes& b, size_t type_size) {
    for (size_t i = 0; i < a.size(); ++i) {
        if (a.data()[i] != b.data()[i]) return static_cast<int64_t>(i / type_size);
    }
    return -1;
}

std::string hex_block(const Bytes& b, int64_t block, size_t type_size) {
    std::string s;
    char buf[4];
    for (size_t i = 0; i < type_size && i < 48; ++i) {
        std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(b.data()[block * type_size + i]));
        s += buf;
    }
    return s;
}

// Rows x elements-per-row shapes for a type: several block counts.
std::vector<std::pair<int64_t, int64_t>> shapes_for(TensorType t) {
    const int64_t bs = kernel_traits(t)->block_size;
    if (bs == 1) return {{1, 1}, {3, 33}, {2, 4096}};
    if (bs == 32) return {{1, 32}, {3, 96}, {4, 32 * 17}, {2, 4096}};
    return {{1, 256}, {3, 512}, {2, 256 * 7}};
}

class GgmlCompat : public ::testing::TestWithParam<TensorType> {};

// ------------------------------------------------------------------ quantize

TEST_P(GgmlCompat, QuantizeBytesIdentical) {
    REQUIRE_GGML();
    const TensorType t = GetParam();
    const KernelTraits* k = kernel_traits(t);
    size_t blocks = 0;
    uint32_t seed = 1000;
    for (Dist d : testing::all_dists()) {
        for (auto [rows, per_row] : shapes_for(t)) {
            const std::vector<float> x = make_data(d, static_cast<size_t>(rows * per_row), seed++);
            const Bytes theirs = ggml_quantize(g, t, x, rows);
            Bytes ours(theirs.size());
            std::memset(ours.data(), 0, ours.size());
            ASSERT_TRUE(quantize(t, x, ours.span()).ok());
            const int64_t bad = first_diff_block(ours, theirs, k->type_size);
            ASSERT_EQ(bad, -1) << testing::dist_name(d) << " rows=" << rows << " n=" << per_row << " block " << bad
                               << "\n  ours:  " << hex_block(ours, bad, k->type_size)
                               << "\n  ggml:  " << hex_block(theirs, bad, k->type_size);
            blocks += theirs.size() / k->type_size;
        }
    }
    std::printf("[compat] %-7s quantize (%s): %zu blocks over %zu distributions, byte-identical\n", name(t).c_str(),
                in_quantize_chunk(t) ? "ggml_quantize_chunk" : "quantize_row_*_ref", blocks,
                testing::all_dists().size());
}

TEST_P(GgmlCompat, QuantizeRefMatchesFromFloatRef) {
    REQUIRE_GGML();
    const TensorType t = GetParam();
    const KernelTraits* k = kernel_traits(t);
    GgmlFromFloat ref = t == TensorType::Q8_K ? g.quantize_row_q8_K_ref : g.type_traits(id(t))->from_float_ref;
    if (t == TensorType::F32 && ref == nullptr) {
        // No from_float_ref for f32 in ggml: its conversion (quantize_chunk) is a plain copy.
        ref = [](const float* x, void* y, int64_t n) { std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float)); };
    }
    if (ref == nullptr) GTEST_SKIP() << "ggml has no from_float_ref for " << name(t);
    size_t blocks = 0;
    uint32_t seed = 2000;
    for (Dist d : testing::all_dists()) {
        const std::vector<float> x = make_data(d, 4096, seed++);
        Bytes theirs(*row_size(t, 4096));
        Bytes ours(theirs.size());
        std::memset(theirs.data(), 0, theirs.size());
        std::memset(ours.data(), 0, ours.size());
        ref(x.data(), theirs.data(), 4096);
        k->quantize_ref(x.data(), ours.data(), 4096);
        if (t == TensorType::IQ4_NL) {
            // ggml's quantize_row_iq4_nl_ref leaves the quants of an all-(near-)zero block as
            // whatever its stack array held: the previous block's (reproduced here) or, before
            // the first regular block, uninitialised memory. Blank those leading blocks' quants.
            const size_t ts = k->type_size;
            for (size_t b = 0; b < ours.size() / ts; ++b) {
                float amax = 0.0f;
                for (size_t i = 32 * b; i < 32 * b + 32; ++i) amax = std::max(amax, std::fabs(x[i]));
                if (amax >= 1e-15f) break;
                std::memset(ours.data() + b * ts + 2, 0, ts - 2);
                std::memset(theirs.data() + b * ts + 2, 0, ts - 2);
            }
        }
        const int64_t bad = first_diff_block(ours, theirs, k->type_size);
        ASSERT_EQ(bad, -1) << testing::dist_name(d) << " block " << bad << "\n  ours:  " << hex_block(ours, bad, k->type_size)
                           << "\n  ggml:  " << hex_block(theirs, bad, k->type_size);
        blocks += ours.size() / k->type_size;
    }
    std::printf("[compat] %-7s quantize_ref == ggml from_float_ref: %zu blocks byte-identical\n", name(t).c_str(), blocks);
}

TEST_P(GgmlCompat, QuantizeNonFiniteInputs) {
    // NaN / inf / huge / subnormal inputs: ggml's x86 behaviour is deterministic and reproduced.
    REQUIRE_GGML();
    const TensorType t = GetParam();
    const KernelTraits* k = kernel_traits(t);
    const float inf = std::numeric_limits<float>::infinity();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> x = make_data(Dist::Gaussian, 4096, 77);
    for (size_t i = 0; i < x.size(); i += 97) x[i] = (i % 3 == 0) ? inf : (i % 3 == 1) ? -inf : nan;
    for (size_t i = 5; i < x.size(); i += 211) x[i] = 3e38f;
    for (size_t i = 1024; i < 1536; ++i) x[i] = std::numeric_limits<float>::denorm_min() * static_cast<float>(i % 7);
    const Bytes theirs = ggml_quantize(g, t, x, 1);
    Bytes ours(theirs.size());
    std::memset(ours.data(), 0, ours.size());
    ASSERT_TRUE(quantize(t, x, ours.span()).ok());
    const int64_t bad = first_diff_block(ours, theirs, k->type_size);
    EXPECT_EQ(bad, -1) << "block " << bad << "\n  ours:  " << hex_block(ours, bad, k->type_size)
                       << "\n  ggml:  " << hex_block(theirs, bad, k->type_size);
}

// ------------------------------------------------------------------ dequantize

// Equal bits, or both NaN. Only used for garbage input: when two different NaNs meet in one
// operation, which payload survives depends on the compiler's operand order.
bool same_float(float a, float b) {
    return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b) || (std::isnan(a) && std::isnan(b));
}

TEST_P(GgmlCompat, DequantizeFloatsIdentical) {
    REQUIRE_GGML();
    const TensorType t = GetParam();
    GgmlToFloat to_float = ggml_to_float(g, t);
    if (t == TensorType::F32 && to_float == nullptr) {
        // ggml uses f32 data as is (no to_float entry): compare against the identity.
        to_float = [](const void* x, float* y, int64_t n) { std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float)); };
    }
    if (to_float == nullptr) GTEST_SKIP() << "ggml has no dequantizer for " << name(t);
    const KernelTraits* k = kernel_traits(t);
    const size_t n = 4096;

    // (a) Bytes from the quantizer, all distributions: memcmp-identical floats.
    uint32_t seed = 3000;
    for (Dist d : testing::all_dists()) {
        const std::vector<float> x = make_data(d, n, seed++);
        Bytes q(*row_size(t, n));
        ASSERT_TRUE(quantize(t, x, q.span()).ok());
        std::vector<float> ours(n);
        std::vector<float> theirs(n);
        ASSERT_TRUE(dequantize(t, q.span(), ours).ok());
        to_float(q.data(), theirs.data(), static_cast<int64_t>(n));
        ASSERT_EQ(std::memcmp(ours.data(), theirs.data(), n * sizeof(float)), 0) << testing::dist_name(d);
    }

    // (b) Random bytes (any scale bits, incl. inf/NaN/subnormal fp16): identical up to NaN payloads.
    std::mt19937 rng(99);
    size_t nan_payload_diffs = 0;
    for (int rep = 0; rep < 8; ++rep) {
        Bytes q(*row_size(t, n));
        for (size_t i = 0; i < q.size(); ++i) q.data()[i] = static_cast<std::byte>(rng());
        std::vector<float> ours(n);
        std::vector<float> theirs(n);
        ASSERT_TRUE(dequantize(t, q.span(), ours).ok());
        to_float(q.data(), theirs.data(), static_cast<int64_t>(n));
        for (size_t i = 0; i < n; ++i) {
            ASSERT_TRUE(same_float(ours[i], theirs[i]))
                << "garbage rep " << rep << " i=" << i << " ours=" << ours[i] << " ggml=" << theirs[i];
            nan_payload_diffs += std::bit_cast<uint32_t>(ours[i]) != std::bit_cast<uint32_t>(theirs[i]);
        }
    }
    std::printf("[compat] %-7s dequantize == ggml to_float: bit-identical (%zu random blocks: %zu NaN-payload-only diffs)\n",
                name(t).c_str(), 8 * n / static_cast<size_t>(k->block_size), nan_payload_diffs);
}

// ------------------------------------------------------------------ vec_dot

TEST_P(GgmlCompat, VecDotMatchesGgmlCpu) {
    REQUIRE_GGML();
    const TensorType t = GetParam();
    const KernelTraits* k = kernel_traits(t);
    if (k->vec_dot == nullptr) GTEST_SKIP() << name(t) << " is an activation format (no vec_dot in ggml either)";
    const TensorType vt = k->vec_dot_type;

    for (const CpuVariant& cpu : g.cpus) {
        SCOPED_TRACE(cpu.name);
        const GgmlTypeTraitsCpu* ct = cpu.traits(id(t));
        ASSERT_NE(ct, nullptr);
        ASSERT_NE(ct->vec_dot, nullptr);
        ASSERT_EQ(ct->vec_dot_type, id(vt));
        const bool exact = cpu.name == "x64";  // ggml's generic scalar code
        double worst = 0.0;
        uint32_t seed = 4000;
        for (Dist d : {Dist::Uniform, Dist::Gaussian, Dist::Synthetic, Dist::HalfGrid, Dist::Outliers, Dist::ZeroBlocks}) {
            for (auto [rows, per_row] : shapes_for(t)) {
                const auto n = static_cast<size_t>(rows * per_row);
                const std::vector<float> a = make_data(d, n, seed++);
                const std::vector<float> b = make_data(Dist::Gaussian, n, seed++);
                Bytes qa(*row_size(t, n));
                Bytes qb(*row_size(vt, n));
                ASSERT_TRUE(quantize(t, a, qa.span()).ok());
                ASSERT_TRUE(quantize(vt, b, qb.span()).ok());
                const float ours = k->vec_dot(static_cast<int64_t>(n), qa.data(), qb.data());
                float theirs = NAN;
                ct->vec_dot(static_cast<int>(n), &theirs, 0, qa.data(), 0, qb.data(), 0, 1);
                if (exact) {
                    ASSERT_EQ(std::bit_cast<uint32_t>(ours), std::bit_cast<uint32_t>(theirs))
                        << testing::dist_name(d) << " n=" << n << " ours=" << ours << " ggml=" << theirs;
                } else {
                    // SIMD kernels sum in a different order (and F16/BF16 in float rather than
                    // double): allow 1e-5 of sum |a_i b_i| over the dequantized rows - about a
                    // hundred float ulps, far below any quantization error (observed: <= 4e-7).
                    std::vector<float> da(n);
                    std::vector<float> db(n);
                    ASSERT_TRUE(dequantize(t, qa.span(), da).ok());
                    ASSERT_TRUE(dequantize(vt, qb.span(), db).ok());
                    double abs_sum = 0.0;
                    for (size_t i = 0; i < n; ++i) abs_sum += std::fabs(static_cast<double>(da[i]) * db[i]);
                    const double err = std::fabs(static_cast<double>(ours) - theirs);
                    worst = std::max(worst, err / (abs_sum + 1e-30));
                    ASSERT_LE(err, 1e-5 * abs_sum + 1e-30)
                        << testing::dist_name(d) << " n=" << n << " ours=" << ours << " ggml=" << theirs;
                }
            }
        }
        if (exact) {
            std::printf("[compat] %-7s vec_dot vs ggml-cpu-%s (generic): bit-identical\n", name(t).c_str(), cpu.name.c_str());
        } else {
            std::printf("[compat] %-7s vec_dot vs ggml-cpu-%s: max |diff| / sum|a*b| = %.2g\n", name(t).c_str(),
                        cpu.name.c_str(), worst);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GgmlCompat, ::testing::ValuesIn(testing::supported_types()),
                         [](const ::testing::TestParamInfo<TensorType>& info) { return name(info.param); });

// ------------------------------------------------------------------ fp16 / bf16

TEST(GgmlCompatFp16, ConversionsMatchGgml) {
    REQUIRE_GGML();
    // Decode: all 65536 halves / bf16 values.
    std::vector<uint16_t> h(65536);
    for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
    std::vector<float> theirs(65536);
    g.fp16_to_fp32_row(h.data(), theirs.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(fp16_to_fp32(h[i])), std::bit_cast<uint32_t>(theirs[i])) << std::hex << i;
    }
    g.bf16_to_fp32_row(h.data(), theirs.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(bf16_to_fp32(h[i])), std::bit_cast<uint32_t>(theirs[i])) << std::hex << i;
    }

    // Encode: a stride through all float bit patterns plus every fp16 / bf16 rounding tie and its
    // neighbours.
    std::vector<float> x;
    for (uint64_t bits = 0; bits <= 0xFFFFFFFFull; bits += 65537) x.push_back(std::bit_cast<float>(static_cast<uint32_t>(bits)));
    for (uint32_t i = 0; i < 0x7C00; ++i) {
        const double lo = fp16_to_fp32(static_cast<uint16_t>(i));
        const double hi = fp16_to_fp32(static_cast<uint16_t>(i + 1));
        const auto mid = static_cast<float>((lo + hi) / 2);
        for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
            x.push_back(v);
            x.push_back(-v);
        }
    }
    for (uint32_t i = 0; i < 0x7F80; i += 3) {
        const uint32_t tie = (i << 16) | 0x8000u;
        for (uint32_t b : {tie, tie - 1, tie + 1}) {
            x.push_back(std::bit_cast<float>(b));
            x.push_back(std::bit_cast<float>(b | 0x80000000u));
        }
    }
    std::vector<uint16_t> h_theirs(x.size());
    g.fp32_to_fp16_row(x.data(), h_theirs.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_EQ(fp32_to_fp16(x[i]), h_theirs[i]) << std::hex << std::bit_cast<uint32_t>(x[i]);
    }
    g.fp32_to_bf16_row_ref(x.data(), h_theirs.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_EQ(fp32_to_bf16(x[i]), h_theirs[i]) << std::hex << std::bit_cast<uint32_t>(x[i]);
    }
    std::printf("[compat] fp16/bf16: all 65536 decodes and %zu encodes bit-identical\n", x.size());
}

TEST(GgmlCompatLoad, LibrariesLoad) {
    REQUIRE_GGML();
    std::string names;
    for (const auto& c : g.cpus) names += " " + c.name + "(" + std::to_string(c.score) + ")";
    std::printf("[compat] %s: CPU variants usable here:%s\n", g.dir.c_str(), names.c_str());
    for (TensorType t : testing::supported_types()) {
        const GgmlTypeTraits* tt = g.type_traits(id(t));
        ASSERT_NE(tt, nullptr);
        EXPECT_EQ(tt->blck_size, kernel_traits(t)->block_size) << name(t);
        EXPECT_EQ(tt->type_size, kernel_traits(t)->type_size) << name(t);
    }
}

}  // namespace
}  // namespace realm::kernels
