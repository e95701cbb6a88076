// SIMD kernels against the scalar reference, for every ISA this CPU supports (the others are
// skipped, naming why): activation quantizers (same bytes), dot products (within a stated
// tolerance), matmul tiles (bitwise independent of batch, tile position and thread count), and
// the threadpool.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gguf/types.hpp"
#include "kernels/fp16.hpp"
#include "kernels/isa.hpp"
#include "kernels/matmul.hpp"
#include "kernels/ops.hpp"
#include "kernels/quants.hpp"
#include "kernels/threadpool.hpp"
#include "test_data.hpp"

namespace realm::kernels {
namespace {

using testing::Bytes;
using testing::Dist;
using testing::make_data;
using testing::name;

// Tolerance of a SIMD dot product against the scalar one, relative to sum |a_i * b_i| of the
// dequantized rows: both add the same exact integer block sums times the same float scales, in
// a different order (8 lanes, then a tree); float rounding of n/32 terms stays below
// ~n/32 * 2^-24 relative, i.e. < 1e-5 for the sizes here; 2e-5 leaves margin.
constexpr double kDotTol = 2e-5;

const TensorType kWeightTypes[] = {
    TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1,
    TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K,
    TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_NL, TensorType::IQ4_XS,
};

const Dist kDists[] = {Dist::Uniform, Dist::Gaussian, Dist::Synthetic, Dist::HalfGrid, Dist::Outliers, Dist::Large};

Bytes quantize_scalar(TensorType t, const std::vector<float>& x) {
    const KernelTraits* k = kernel_traits(t);
    auto size = row_size(t, static_cast<int64_t>(x.size()));
    Bytes q(size.ok() ? *size : 0);
    if (size.ok() && !x.empty()) k->quantize(x.data(), q.data(), static_cast<int64_t>(x.size()));
    return q;
}

std::vector<float> dequantize_scalar(TensorType t, const Bytes& q, size_t n) {
    std::vector<float> out(n);
    if (n > 0) kernel_traits(t)->dequantize(q.data(), out.data(), static_cast<int64_t>(n));
    return out;
}

// Element counts: whole blocks only for block formats (1..9, 13, 17, 33 blocks, so tails of
// every unroll width appear); any count for the float formats.
std::vector<size_t> sizes_for(TensorType t) {
    const auto bs = static_cast<size_t>(kernel_traits(t)->block_size);
    if (bs == 1) return {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257, 1000, 4099};
    std::vector<size_t> out;
    for (size_t b : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17, 33}) out.push_back(b * bs);
    if (bs == 32) out.push_back(4096);
    return out;
}

class Simd : public ::testing::TestWithParam<Isa> {
protected:
    void SetUp() override {
        if (!isa_supported(GetParam())) {
            GTEST_SKIP() << "this CPU lacks " << isa_name(GetParam()) << " (needs "
                         << (GetParam() == Isa::Avx2 ? "AVX2+FMA+F16C" : "AVX-512 F/BW/VL + VNNI") << ")";
        }
    }
};

TEST(Isa, NamesAndSelection) {
    for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) EXPECT_EQ(isa_from_name(isa_name(i)), i);
    EXPECT_FALSE(isa_from_name("sse9").has_value());
    EXPECT_TRUE(isa_supported(Isa::Scalar));
    EXPECT_TRUE(isa_supported(best_isa()));
    const Isa before = active_isa();
    EXPECT_TRUE(isa_supported(before));
    EXPECT_TRUE(set_active_isa(Isa::Scalar));
    EXPECT_EQ(active_isa(), Isa::Scalar);
    for (Isa i : {Isa::Avx2, Isa::Avx512}) {
        EXPECT_EQ(set_active_isa(i), isa_supported(i));
        if (!isa_supported(i)) {
            EXPECT_NE(active_isa(), i);
        }
    }
    EXPECT_TRUE(set_active_isa(before));
    // Scalar traits are the reference table itself.
    EXPECT_EQ(kernel_traits(TensorType::Q4_0, Isa::Scalar), kernel_traits(TensorType::Q4_0));
}

TEST_P(Simd, ActivationQuantizersGiveTheScalarBytes) {
    for (TensorType t : {TensorType::Q8_0, TensorType::Q8_1, TensorType::Q8_K, TensorType::F16, TensorType::BF16}) {
        SCOPED_TRACE(name(t));
        const KernelTraits* simd = kernel_traits(t, GetParam());
        ASSERT_NE(simd, nullptr);
        uint32_t seed = 7;
        for (size_t n : sizes_for(t)) {
            for (Dist d : kDists) {
                const std::vector<float> x = make_data(d, n, seed++);
                const Bytes a = quantize_scalar(t, x);
                Bytes b(a.size());
                simd->quantize(x.data(), b.data(), static_cast<int64_t>(n));
                ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0) << "n=" << n << " " << testing::dist_name(d);
            }
        }
    }
}

TEST_P(Simd, DotProductsMatchTheScalarReference) {
    for (TensorType t : kWeightTypes) {
        SCOPED_TRACE(name(t));
        const KernelTraits* ref = kernel_traits(t);
        const KernelTraits* simd = kernel_traits(t, GetParam());
        const TensorType vt = ref->vec_dot_type;
        uint32_t seed = 1000;
        double worst = 0.0;
        for (size_t n : sizes_for(t)) {
            for (Dist d : kDists) {
                const std::vector<float> a = make_data(d, n, seed++);
                const std::vector<float> b = make_data(Dist::Gaussian, n, seed++);
                const Bytes qa = quantize_scalar(t, a);
                const Bytes qb = quantize_scalar(vt, b);
                const std::vector<float> da = dequantize_scalar(t, qa, n);
                const std::vector<float> db = dequantize_scalar(vt, qb, n);
                double abs_sum = 0.0;
                for (size_t i = 0; i < n; ++i) abs_sum += std::fabs(static_cast<double>(da[i]) * db[i]);
                const double want = ref->vec_dot(static_cast<int64_t>(n), qa.data(), qb.data());
                const double got = simd->vec_dot(static_cast<int64_t>(n), qa.data(), qb.data());
                if (!std::isfinite(want)) continue;  // Large: fp16 scales overflowed in both
                const double err = std::fabs(got - want);
                worst = std::max(worst, err / (abs_sum + 1e-30));
                ASSERT_LE(err, kDotTol * abs_sum + 1e-30)
                    << "n=" << n << " " << testing::dist_name(d) << " got=" << got << " want=" << want;
                // Q2_K evaluates the scalar reference's own float expressions.
                if (t == TensorType::Q2_K) ASSERT_EQ(got, want) << "n=" << n;
            }
        }
        std::printf("  %-7s %-6s worst |simd - scalar| / sum|a*b| = %.3g\n", name(t).c_str(),
                    std::string(isa_name(GetParam())).c_str(), worst);
    }
}

// A weight matrix and activations for the matmul tests.
struct Problem {
    TensorType type;
    int64_t rows;
    int64_t cols;
    Bytes w;
    size_t row_bytes;
    std::vector<float> x;  // n_tok rows of cols
};

Problem make_problem(TensorType t, int64_t rows, int64_t cols, size_t n_tok, uint32_t seed) {
    Problem p{t, rows, cols, Bytes(), 0, {}};
    p.row_bytes = *row_size(t, cols);
    p.w = Bytes(p.row_bytes * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
        const std::vector<float> v = make_data(Dist::Gaussian, static_cast<size_t>(cols), seed + static_cast<uint32_t>(r));
        const Bytes q = quantize_scalar(t, v);
        std::memcpy(p.w.data() + static_cast<size_t>(r) * p.row_bytes, q.data(), p.row_bytes);
    }
    p.x = make_data(Dist::Uniform, static_cast<size_t>(cols) * n_tok, seed + 99991);
    return p;
}

// rows16: also pass the weight's Rows16 copy (where its type has that layout), which the ISAs
// with a Rows16 kernel read instead of the rows.
std::vector<float> run_matmul(const Problem& p, const float* x, size_t n, ThreadPool& pool, Isa isa,
                              bool rows16 = false) {
    std::vector<float> y(static_cast<size_t>(p.rows) * n, -1.0f);
    MatmulScratch scratch;
    Bytes packed;
    MatmulWeight w{p.type, p.w.data(), p.rows, p.cols, p.row_bytes, nullptr};
    if (rows16 && rows16_bytes(p.type, p.rows, p.cols) > 0) {
        packed = Bytes(rows16_bytes(p.type, p.rows, p.cols));
        repack_rows16(p.type, p.w.data(), p.rows, p.cols, p.row_bytes, packed.data());
        w.rows16 = packed.data();
    }
    matmul(w, x, n, y.data(), pool, scratch, isa);
    return y;
}

TEST_P(Simd, MatmulIsIndependentOfBatchTileAndThreads) {
    constexpr size_t kTok = 517;  // > one token block (512) and not a multiple of any tile width
    ThreadPool pool1(1);
    ThreadPool pool2(2);
    ThreadPool pool3(3);
    // Each type from its rows, then (where it has that layout) from its Rows16 copy.
    for (const bool rows16 : {false, true}) for (TensorType t : kWeightTypes) {
        if (rows16 && rows16_bytes(t, 16, 256) == 0) continue;
        SCOPED_TRACE(name(t) + (rows16 ? " rows16" : ""));
        const int64_t cols = kernel_traits(t)->block_size == 1 ? 77 : 3 * kernel_traits(t)->block_size;
        const int64_t rows = 37;  // ragged against the 16-row blocks and every tile height
        const Problem p = make_problem(t, rows, cols, kTok, 5);
        const std::vector<float> full = run_matmul(p, p.x.data(), kTok, pool2, GetParam(), rows16);
        // The same pairs through the dot product, one at a time.
        const KernelTraits* k = kernel_traits(t, GetParam());
        const TensorType vt = k->vec_dot_type;
        for (size_t tok = 0; tok < kTok; ++tok) {
            const std::vector<float> xt(p.x.begin() + static_cast<ptrdiff_t>(tok * cols),
                                        p.x.begin() + static_cast<ptrdiff_t>((tok + 1) * cols));
            Bytes qa;
            const void* act = xt.data();
            if (vt != TensorType::F32) {
                qa = Bytes(*row_size(vt, cols));
                kernel_traits(vt, GetParam())->quantize(xt.data(), qa.data(), cols);
                act = qa.data();
            }
            for (int64_t r = 0; r < rows; ++r) {
                const float want = k->vec_dot(cols, p.w.data() + static_cast<size_t>(r) * p.row_bytes, act);
                ASSERT_EQ(std::bit_cast<uint32_t>(full[tok * rows + r]), std::bit_cast<uint32_t>(want))
                    << "tok=" << tok << " row=" << r;
                // Q2_K's tiles keep the scalar reference's float expressions too.
                if (t == TensorType::Q2_K) {
                    const float scalar = kernel_traits(t)->vec_dot(cols, p.w.data() + static_cast<size_t>(r) * p.row_bytes, act);
                    ASSERT_EQ(std::bit_cast<uint32_t>(full[tok * rows + r]), std::bit_cast<uint32_t>(scalar));
                }
            }
        }
        // Alone (n = 1), in a batch of 7 starting anywhere, with 1 or 3 threads.
        for (size_t start : {size_t{0}, size_t{3}, size_t{61}, size_t{127}, size_t{511}, size_t{516}}) {
            const std::vector<float> one = run_matmul(p, p.x.data() + start * cols, 1, pool1, GetParam(), rows16);
            for (int64_t r = 0; r < rows; ++r) {
                ASSERT_EQ(std::bit_cast<uint32_t>(one[r]), std::bit_cast<uint32_t>(full[start * rows + r]));
            }
            const size_t n7 = std::min<size_t>(7, kTok - start);
            const std::vector<float> seven = run_matmul(p, p.x.data() + start * cols, n7, pool3, GetParam(), rows16);
            for (size_t i = 0; i < n7 * static_cast<size_t>(rows); ++i) {
                ASSERT_EQ(std::bit_cast<uint32_t>(seven[i]), std::bit_cast<uint32_t>(full[start * rows + i]));
            }
        }
    }
}

// Element-wise kernels against double-precision formulas, on random non-zero inputs of every
// length up to 70 (all tails of the 8-wide loops) and a few long rows. Tolerances: 1e-6
// relative for sums (float accumulation of up to 4096 terms), 2e-6 for exp-based values (the
// polynomial is within ~2 ulp of expf), and half an F16 ulp plus that for the F16 softmax.
TEST_P(Simd, ElementwiseOpsMatchTheirFormulas) {
    const SimdOps* ops = simd_ops(GetParam());
    ASSERT_NE(ops, nullptr);
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-8.0f, 8.0f);
    std::vector<size_t> sizes;
    for (size_t n = 1; n <= 70; ++n) sizes.push_back(n);
    for (size_t n : {576, 2048, 4096}) sizes.push_back(n);
    for (size_t n : sizes) {
        SCOPED_TRACE("n=" + std::to_string(n));
        std::vector<float> gate(n), up(n), w(n);
        for (size_t i = 0; i < n; ++i) {
            gate[i] = u(rng);
            up[i] = u(rng);
            w[i] = u(rng);
        }
        // SiLU-gated product.
        std::vector<float> g = gate;
        ops->silu_mul(g.data(), up.data(), n);
        for (size_t i = 0; i < n; ++i) {
            const double want = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
            ASSERT_NEAR(g[i], want, 2e-6 * std::fabs(want) + 1e-30) << i;
        }
        // RMSNorm, in place and not.
        double ss = 0.0;
        for (float v : gate) ss += static_cast<double>(v) * v;
        const double sc = 1.0 / std::sqrt(ss / static_cast<double>(n) + 1e-6);
        std::vector<float> y(n);
        ops->rms_norm(gate.data(), w.data(), y.data(), n, 1e-6f);
        std::vector<float> inplace = gate;
        ops->rms_norm(inplace.data(), w.data(), inplace.data(), n, 1e-6f);
        for (size_t i = 0; i < n; ++i) {
            const double want = gate[i] * sc * w[i];
            ASSERT_NEAR(y[i], want, 1e-6 * std::fabs(want) + 1e-12) << i;
            ASSERT_EQ(std::bit_cast<uint32_t>(inplace[i]), std::bit_cast<uint32_t>(y[i]));
        }
        // Softmax to F16.
        std::vector<float> x = gate;
        std::vector<uint16_t> w16(n);
        ops->softmax_f16(x.data(), n, w16.data());
        double mx = gate[0], sum = 0.0;
        for (float v : gate) mx = std::max<double>(mx, v);
        for (float v : gate) sum += std::exp(v - mx);
        for (size_t i = 0; i < n; ++i) {
            const double want = std::exp(gate[i] - mx) / sum;
            // F16 rounding (2^-11 relative, or the subnormal step 2^-24) plus the exp error.
            ASSERT_NEAR(fp16_to_fp32(w16[i]), want, want * (std::ldexp(1.0, -11) + 1e-5) + std::ldexp(1.0, -24)) << i;
        }
    }
}

TEST_P(Simd, RopeGeluAndAddMatchTheirFormulas) {
    const SimdOps* ops = simd_ops(GetParam());
    ASSERT_NE(ops, nullptr);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-4.0f, 4.0f);
    std::uniform_real_distribution<float> angle(-100.0f, 100.0f);
    for (size_t n_rot : {2, 6, 8, 14, 16, 30, 64, 128}) {
        for (bool neox : {false, true}) {
            SCOPED_TRACE("n_rot=" + std::to_string(n_rot) + (neox ? " neox" : " adjacent"));
            const size_t head = n_rot + 4;  // dimensions past n_rot stay as they are
            std::vector<float> x(head), cs(n_rot);
            for (auto& v : x) v = u(rng);
            for (size_t i = 0; i < n_rot; i += 2) {
                const float t = angle(rng);
                cs[i] = std::cos(t);
                cs[i + 1] = std::sin(t);
            }
            std::vector<float> y = x;
            ops->rope(y.data(), n_rot, neox, cs.data());
            // Bitwise ggml's rope: each product and sum rounded on its own (separate statements,
            // so that no FMA contraction applies here either).
            for (size_t p = 0; p < n_rot / 2; ++p) {
                const size_t a = neox ? p : 2 * p, b = neox ? p + n_rot / 2 : 2 * p + 1;
                const float c = cs[2 * p], sn = cs[2 * p + 1];
                const float ac = x[a] * c, bs = x[b] * sn, as = x[a] * sn, bc = x[b] * c;
                const float want_a = ac - bs, want_b = as + bc;
                ASSERT_EQ(std::bit_cast<uint32_t>(y[a]), std::bit_cast<uint32_t>(want_a)) << p;
                ASSERT_EQ(std::bit_cast<uint32_t>(y[b]), std::bit_cast<uint32_t>(want_b)) << p;
            }
            for (size_t i = n_rot; i < head; ++i) ASSERT_EQ(y[i], x[i]);
        }
    }
    // The GELU-gated product is a table lookup: bitwise the scalar one, whatever the table holds.
    std::vector<float> table(65536);
    for (auto& v : table) v = u(rng);
    std::uniform_real_distribution<float> wide(-14.0f, 14.0f);
    for (size_t n : {1, 7, 8, 9, 64, 2051}) {
        std::vector<float> g(n), up(n);
        for (size_t i = 0; i < n; ++i) {
            g[i] = wide(rng);
            up[i] = u(rng);
        }
        if (n > 4) g[0] = -10.0f, g[1] = 10.0f, g[2] = -9.999f, g[3] = 0.0f;
        std::vector<float> got = g;
        ops->gelu_mul(got.data(), up.data(), n, table.data());
        std::vector<float> sum = g;
        ops->add(sum.data(), up.data(), n);
        for (size_t i = 0; i < n; ++i) {
            const float v = g[i];
            const float want = (v <= -10.0f ? 0.0f : v >= 10.0f ? v : table[fp32_to_fp16(v)]) * up[i];
            ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want)) << "n=" << n << " i=" << i;
            ASSERT_EQ(sum[i], g[i] + up[i]);
        }
    }
}

TEST_P(Simd, F16ConversionsMatchTheScalarOnes) {
    const SimdOps* ops = simd_ops(GetParam());
    ASSERT_NE(ops, nullptr);
    std::vector<uint16_t> all;
    for (uint32_t h = 0; h < 65536; ++h) {
        if ((h & 0x7C00u) == 0x7C00u && (h & 0x3FFu) != 0) continue;  // NaN payloads may differ
        all.push_back(static_cast<uint16_t>(h));
    }
    std::vector<float> f(all.size());
    ops->f16_to_f32(all.data(), f.data(), all.size());
    for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(std::bit_cast<uint32_t>(f[i]), std::bit_cast<uint32_t>(fp16_to_fp32(all[i])));
    // Rounding: random magnitudes from the subnormal range to past the largest half, ties included.
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> e(-27.0f, 17.0f);
    std::vector<float> x(4099);
    for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 2 ? -1.0f : 1.0f) * std::exp2(e(rng));
    for (size_t i = 0; i + 1 < all.size() && i < 2000; ++i) x[i] = 0.5f * (fp16_to_fp32(all[i]) + fp16_to_fp32(all[i + 1]));
    for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{9}, x.size()}) {
        std::vector<uint16_t> h(n);
        ops->f32_to_f16(x.data(), h.data(), n);
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(h[i], fp32_to_fp16(x[i])) << x[i];
    }
}

// The attention tiles against a double reference, and tile invariance: a (query, key) score or a
// query's output is bitwise the same alone as in any tile (the model's batch independence).
TEST_P(Simd, AttentionTilesMatchTheReferenceAndEachOther) {
    const SimdOps* ops = simd_ops(GetParam());
    ASSERT_NE(ops, nullptr);
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-4.0f, 4.0f);
    for (size_t hk : {1, 7, 8, 13, 64, 70, 256}) {
        const size_t n_ctx = 150, stride = hk * 2;  // another head's keys in between
        std::vector<uint16_t> k(stride * n_ctx);
        for (auto& v : k) v = fp32_to_fp16(u(rng));
        for (size_t nq : {1, 3, 8}) {
            std::vector<float> q(nq * hk);
            for (auto& v : q) v = fp16_to_fp32(fp32_to_fp16(u(rng)));
            std::vector<float> kf(64 * hk);
            for (auto [j0, j1] : {std::pair<size_t, size_t>{0, 1}, {5, 9}, {3, 67}, {0, 64}, {17, 150}}) {
                SCOPED_TRACE("hk=" + std::to_string(hk) + " nq=" + std::to_string(nq) + " keys " + std::to_string(j0) +
                             ".." + std::to_string(j1));
                std::vector<float> sc(nq * n_ctx, -1.0f);
                ops->attn_scores(q.data(), nq, hk, k.data(), stride, j0, j1, 0.5f, sc.data(), n_ctx, kf.data());
                for (size_t iq = 0; iq < nq; ++iq) {
                    std::vector<float> alone(n_ctx);
                    ops->attn_scores(q.data() + iq * hk, 1, hk, k.data(), stride, j1 - 1, j1, 0.5f, alone.data(), n_ctx,
                                     kf.data());
                    ASSERT_EQ(std::bit_cast<uint32_t>(alone[j1 - 1]), std::bit_cast<uint32_t>(sc[iq * n_ctx + j1 - 1]));
                    for (size_t j = j0; j < j1; ++j) {
                        double want = 0.0, abs_sum = 0.0;
                        for (size_t i = 0; i < hk; ++i) {
                            const double p = static_cast<double>(q[iq * hk + i]) * fp16_to_fp32(k[j * stride + i]);
                            want += p;
                            abs_sum += std::fabs(p);
                        }
                        ASSERT_NEAR(sc[iq * n_ctx + j], 0.5 * want, 0.5 * 1e-6 * abs_sum) << "query " << iq << " key " << j;
                    }
                }
            }
        }
    }
    // Values: V^T rows of n_ctx positions; each query weighs its own keys [lo, hi), zero elsewhere.
    for (size_t hv : {1, 5, 64, 256}) {
        const size_t n_ctx = 150;
        std::vector<uint16_t> vt(hv * n_ctx);
        for (auto& v : vt) v = fp32_to_fp16(u(rng));
        const size_t nq = 11;  // more than one pass of 8
        std::vector<size_t> lo(nq), hi(nq);
        std::vector<float> w(nq * n_ctx, 0.0f);
        for (size_t iq = 0; iq < nq; ++iq) {
            lo[iq] = 3 + iq * 5;
            hi[iq] = 40 + iq * 9;
            for (size_t j = lo[iq]; j < hi[iq]; ++j) w[iq * n_ctx + j] = fp16_to_fp32(fp32_to_fp16(std::fabs(u(rng)) / 8.0f));
        }
        std::vector<float> out(nq * hv), alone(hv);
        std::vector<float*> outs(nq);
        for (size_t iq = 0; iq < nq; ++iq) outs[iq] = out.data() + iq * hv;
        ops->attn_values(w.data(), nq, n_ctx, vt.data(), n_ctx, hv, 0, hi[nq - 1], outs.data());
        for (size_t iq = 0; iq < nq; ++iq) {
            SCOPED_TRACE("hv=" + std::to_string(hv) + " query " + std::to_string(iq));
            float* one = alone.data();
            ops->attn_values(w.data() + iq * n_ctx, 1, n_ctx, vt.data(), n_ctx, hv, lo[iq] / 8 * 8, hi[iq], &one);
            for (size_t d = 0; d < hv; ++d) {
                double want = 0.0, abs_sum = 0.0;
                for (size_t j = lo[iq]; j < hi[iq]; ++j) {
                    const double p = static_cast<double>(w[iq * n_ctx + j]) * fp16_to_fp32(vt[d * n_ctx + j]);
                    want += p;
                    abs_sum += std::fabs(p);
                }
                ASSERT_NEAR(out[iq * hv + d], want, 1e-6 * abs_sum) << "d=" << d;
                ASSERT_EQ(std::bit_cast<uint32_t>(alone[d]), std::bit_cast<uint32_t>(out[iq * hv + d])) << "d=" << d;
            }
        }
    }
}

TEST(SimdOps, ScalarIsaHasNone) { EXPECT_EQ(simd_ops(Isa::Scalar), nullptr); }

INSTANTIATE_TEST_SUITE_P(Isas, Simd, ::testing::Values(Isa::Avx2, Isa::Avx512),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// matmul_many gives every matrix exactly what matmul gives it alone: with shared activations
// (one format), and one by one (formats that differ).
TEST_P(Simd, MatmulManyEqualsOneByOne) {
    ThreadPool pool(2);
    const std::vector<std::vector<TensorType>> sets = {
        {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q5_0},  // Q8_0 activations
        {TensorType::Q4_K, TensorType::Q6_K},                    // Q8_K activations
        {TensorType::Q4_0, TensorType::Q4_K, TensorType::Q4_1},  // three formats
    };
    uint32_t seed = 5;
    for (const auto& set : sets) {
        for (size_t n : {size_t{1}, size_t{3}, size_t{9}, size_t{130}}) {
            std::vector<Problem> ps;
            int64_t rows = 19;
            for (TensorType t : set) ps.push_back(make_problem(t, rows += 16, 512, n, seed++));
            std::vector<MatmulWeight> ws;
            std::vector<std::vector<float>> ys;
            std::vector<float*> yp;
            // The matrices of a format with a Rows16 layout also bring that copy (read by the ISAs
            // that have a kernel for it), which must not change any matrix's bits.
            std::vector<Bytes> packed;
            packed.reserve(ps.size());
            for (auto& p : ps) {
                packed.emplace_back(rows16_bytes(p.type, p.rows, p.cols));
                const bool r16 = packed.back().size() > 0;
                if (r16) repack_rows16(p.type, p.w.data(), p.rows, p.cols, p.row_bytes, packed.back().data());
                ws.push_back({p.type, p.w.data(), p.rows, p.cols, p.row_bytes, r16 ? packed.back().data() : nullptr});
                ys.emplace_back(static_cast<size_t>(p.rows) * n, -1.0f);
            }
            for (auto& y : ys) yp.push_back(y.data());
            const std::vector<float>& x = ps[0].x;
            MatmulScratch scratch;
            matmul_many(ws, x.data(), n, yp, pool, scratch, GetParam());
            for (size_t i = 0; i < ps.size(); ++i) {
                SCOPED_TRACE("matrix " + std::to_string(i) + " n=" + std::to_string(n));
                ASSERT_EQ(ys[i], run_matmul(ps[i], x.data(), n, pool, GetParam()));
            }
        }
    }
}

// The Rows16 copy on real widths (several groups, prefetches past a group's end, every token
// tile), against the rows, bitwise; on every ISA (those without a Rows16 kernel read the rows).
TEST(Matmul, Rows16CopyGivesTheSameBits) {
    ThreadPool pool(2);
    // 768 columns: Q6_K's groups of an odd number of super-blocks start off a cache line.
    for (TensorType t : {TensorType::Q4_0, TensorType::Q4_K, TensorType::Q6_K}) for (int64_t cols : {2048, 768}) {
        const Problem p = make_problem(t, 100, cols, 21, 23);
        EXPECT_EQ(rows16_bytes(t, 100, cols), 112 * p.row_bytes);
        for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
            if (!isa_supported(isa)) continue;
            SCOPED_TRACE(name(t) + " " + std::to_string(cols) + " " + std::string(isa_name(isa)));
            for (size_t n : {size_t{1}, size_t{2}, size_t{5}, size_t{12}, size_t{21}}) {
                ASSERT_EQ(run_matmul(p, p.x.data(), n, pool, isa, true), run_matmul(p, p.x.data(), n, pool, isa))
                    << "n=" << n;
            }
        }
    }
    // Decode calls that get several groups (a thread's chunk on 2 threads: 725 rows, 5 groups a
    // chunk; 1015 rows, 8 a chunk) read them in lock-step where the format does (decode_groups):
    // with 5, neighbouring groups and a rest; with 8, two runs of 2 groups read side by side, the
    // last group partial and inside a run.
    for (TensorType t : {TensorType::Q4_0, TensorType::Q4_K, TensorType::Q6_K})
    for (int64_t rows : {int64_t{725}, int64_t{1015}}) {
        const Problem p = make_problem(t, rows, 2048, 3, 29);
        for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
            if (!isa_supported(isa)) continue;
            SCOPED_TRACE(name(t) + " " + std::to_string(rows) + " rows " + std::string(isa_name(isa)));
            for (size_t n : {size_t{1}, size_t{3}}) {
                ASSERT_EQ(run_matmul(p, p.x.data(), n, pool, isa, true), run_matmul(p, p.x.data(), n, pool, isa))
                    << "n=" << n;
            }
        }
    }
    EXPECT_EQ(rows16_bytes(TensorType::Q8_0, 100, 2048), 0u);
    EXPECT_EQ(rows16_bytes(TensorType::Q4_0, 100, 33), 0u);
    EXPECT_EQ(rows16_used(TensorType::Q4_0, Isa::Scalar), false);
}

TEST(Matmul, ScalarIsaIsTheScalarReference) {
    ThreadPool pool(2);
    for (TensorType t : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K,
                         TensorType::F16, TensorType::F32}) {
        SCOPED_TRACE(name(t));
        const int64_t cols = 2 * kernel_traits(t)->block_size * (kernel_traits(t)->block_size == 1 ? 64 : 1);
        const Problem p = make_problem(t, 19, cols, 5, 17);
        const std::vector<float> y = run_matmul(p, p.x.data(), 5, pool, Isa::Scalar);
        const KernelTraits* k = kernel_traits(t);
        for (size_t tok = 0; tok < 5; ++tok) {
            const float* xt = p.x.data() + tok * cols;
            Bytes qa;
            const void* act = xt;
            if (k->vec_dot_type != TensorType::F32) {
                qa = quantize_scalar(k->vec_dot_type, std::vector<float>(xt, xt + cols));
                act = qa.data();
            }
            for (int64_t r = 0; r < 19; ++r) {
                const float want = k->vec_dot(cols, p.w.data() + static_cast<size_t>(r) * p.row_bytes, act);
                ASSERT_EQ(std::bit_cast<uint32_t>(y[tok * 19 + r]), std::bit_cast<uint32_t>(want));
            }
        }
    }
}

TEST(ThreadPool, ManyShortLoopsCoverEveryIndexOnce) {
    for (size_t threads : {1, 2, 3, 5}) {
        ThreadPool pool(threads);
        std::vector<std::atomic<int>> hits(997);
        for (int iter = 0; iter < 500; ++iter) {
            const size_t n = 1 + static_cast<size_t>(iter * 37) % hits.size();
            const size_t grain = 1 + static_cast<size_t>(iter) % 7;
            pool.parallel_for(n, grain, [&](size_t b, size_t e, size_t thread) {
                ASSERT_LT(thread, pool.size());
                ASSERT_LE(e, n);
                for (size_t i = b; i < e; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
            });
            for (size_t i = 0; i < hits.size(); ++i) {
                ASSERT_EQ(hits[i].exchange(0), i < n ? 1 : 0) << "threads=" << threads << " iter=" << iter;
            }
        }
    }
}

// More threads than cores, plus busy threads competing for them: workers are often descheduled
// and wake up after their loop has ended (and the next has begun). Each loop must still run
// every item exactly once, with its own body and bounds, and never hang.
TEST(ThreadPool, LateWorkersNeverRunAnEndedLoop) {
    std::atomic<bool> busy{true};
    std::vector<std::thread> spinners;
    for (int i = 0; i < 2; ++i) {
        spinners.emplace_back([&] {
            while (busy.load(std::memory_order_relaxed)) {
            }
        });
    }
    ThreadPool pool(6);
    std::vector<std::atomic<int>> hits(257);
    for (int iter = 0; iter < 3000; ++iter) {
        const size_t n = 1 + static_cast<size_t>(iter * 61) % hits.size();
        const size_t grain = 1 + static_cast<size_t>(iter) % 5;
        pool.parallel_for(n, grain, [&, n, iter](size_t b, size_t e, size_t thread) {
            ASSERT_LT(thread, pool.size());
            ASSERT_LE(e, n) << "iter " << iter;
            for (size_t i = b; i < e; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
            if (iter % 97 == 0) std::this_thread::yield();
        });
        for (size_t i = 0; i < hits.size(); ++i) {
            ASSERT_EQ(hits[i].exchange(0), i < n ? 1 : 0) << "iter=" << iter;
        }
    }
    busy.store(false);
    for (auto& t : spinners) t.join();
}

TEST(ThreadPool, ConcurrentCallersAreSerialised) {
    ThreadPool pool(2);
    std::atomic<long> total{0};
    auto caller = [&] {
        for (int i = 0; i < 300; ++i) {
            pool.parallel_for(64, 4, [&](size_t b, size_t e, size_t) { total.fetch_add(static_cast<long>(e - b)); });
        }
    };
    std::thread a(caller);
    std::thread b(caller);
    a.join();
    b.join();
    EXPECT_EQ(total.load(), 2L * 300 * 64);
}

}  // namespace
}  // namespace realm::kernels
