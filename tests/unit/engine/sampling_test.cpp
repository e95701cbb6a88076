// Sampler: greedy, temperature statistics, each filter's candidate set on hand-made logits, a
// full-sort reference of the whole chain on large vocabularies, penalties, logit bias, seeds and
// parameter validation.
#include "engine/sampling.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

namespace {

using realm::engine::Candidate;
using realm::engine::Sampler;
using realm::engine::SamplingParams;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Sampler make(const SamplingParams& p, size_t vocab, std::span<const int32_t> eog = {}) {
    auto s = Sampler::create(p, vocab, eog);
    EXPECT_TRUE(s) << s.error().message;
    return std::move(s).value();
}

std::set<int32_t> ids_of(std::span<const Candidate> c) {
    std::set<int32_t> out;
    for (const auto& x : c) out.insert(x.id);
    return out;
}

std::set<int32_t> candidate_ids(Sampler& s, const std::vector<float>& logits) {
    auto c = s.candidates(logits);
    EXPECT_TRUE(c) << c.error().message;
    if (!c) return {};
    return ids_of(*c);
}

std::map<int32_t, float> candidate_logits(Sampler& s, const std::vector<float>& logits) {
    auto c = s.candidates(logits);
    EXPECT_TRUE(c) << c.error().message;
    std::map<int32_t, float> out;
    if (!c) return out;
    for (const auto& x : *c) out[x.id] = x.logit;
    return out;
}

// logits = log(probs): softmax gives back the probabilities.
std::vector<float> log_probs(std::initializer_list<double> probs) {
    std::vector<float> out;
    for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
    return out;
}

SamplingParams neutral() {
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = 1;
    return p;
}

std::vector<float> random_logits(size_t n, uint32_t seed, float scale = 4.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// ---------------------------------------------------------------------------------------------
// Greedy

TEST(SamplerGreedy, ArgmaxWithTiesToLowestId) {
    SamplingParams p = neutral();
    p.temperature = 0.0f;
    auto s = make(p, 5);
    const std::vector<float> logits{1.0f, 5.0f, 3.0f, 5.0f, -2.0f};
    for (int i = 0; i < 10; ++i) {
        auto t = s.sample(logits);
        ASSERT_TRUE(t) << t.error().message;
        EXPECT_EQ(*t, 1);
    }
    auto c = s.candidates(logits);
    ASSERT_TRUE(c);
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].id, 1);
    EXPECT_FLOAT_EQ((*c)[0].p, 1.0f);
}

TEST(SamplerGreedy, ArgmaxThroughFiltersAndLargeVocab) {
    const size_t n = 262144;
    auto logits = random_logits(n, 7);
    logits[123457] = 100.0f;
    logits[200000] = 100.0f;  // tie: lower id wins
    for (int32_t k : {0, 1, 40, 10000}) {
        SamplingParams p = neutral();
        p.temperature = 0.0f;
        p.top_k = k;
        p.top_p = 0.9f;
        p.min_p = 0.05f;
        auto s = make(p, n);
        auto t = s.sample(logits);
        ASSERT_TRUE(t) << t.error().message;
        EXPECT_EQ(*t, 123457) << "top_k " << k;
    }
}

TEST(SamplerGreedy, TemperatureZeroAfterTypicalMayExcludeArgmax) {
    // Same as llama.cpp: temperature <= 0 picks the best token left by the filters, and
    // typical-p can drop the most probable one (see the typical-p test for the numbers).
    SamplingParams p = neutral();
    p.temperature = 0.0f;
    p.typical_p = 0.45f;
    auto s = make(p, 4);
    auto t = s.sample(log_probs({0.4, 0.3, 0.2, 0.1}));
    ASSERT_TRUE(t);
    EXPECT_EQ(*t, 1);
}

// ---------------------------------------------------------------------------------------------
// Temperature

TEST(SamplerTemperature, ProbabilitiesAreSoftmaxOfScaledLogits) {
    const std::vector<float> logits{0.0f, 1.0f, 2.0f, 0.5f, -1.0f};
    for (float t : {0.5f, 1.0f, 1.7f}) {
        SamplingParams p = neutral();
        p.temperature = t;
        auto s = make(p, logits.size());
        auto c = s.candidates(logits);
        ASSERT_TRUE(c);
        ASSERT_EQ(c->size(), logits.size());
        double z = 0;
        for (float l : logits) z += std::exp(l / t);
        for (const auto& x : *c) {
            EXPECT_NEAR(x.p, std::exp(logits[static_cast<size_t>(x.id)] / t) / z, 1e-6) << "T " << t;
            EXPECT_FLOAT_EQ(x.logit, logits[static_cast<size_t>(x.id)] / t);
        }
    }
}

TEST(SamplerTemperature, DrawsMatchSoftmaxChiSquare) {
    const std::vector<float> logits{0.0f, 1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
    for (float t : {0.7f, 1.0f, 2.0f}) {
        SamplingParams p = neutral();
        p.temperature = t;
        p.seed = 1234;
        auto s = make(p, logits.size());
        const int draws = 20000;
        std::vector<int> counts(logits.size(), 0);
        for (int i = 0; i < draws; ++i) {
            auto tok = s.sample(logits);
            ASSERT_TRUE(tok);
            ++counts[static_cast<size_t>(*tok)];
        }
        double z = 0;
        for (float l : logits) z += std::exp(l / t);
        double chi2 = 0;
        for (size_t i = 0; i < logits.size(); ++i) {
            const double expected = draws * std::exp(logits[i] / t) / z;
            chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
        }
        // 5 degrees of freedom: P(chi2 > 30) ~ 1.5e-5. Loose on purpose; the seed is fixed.
        EXPECT_LT(chi2, 30.0) << "T " << t;
    }
}

// ---------------------------------------------------------------------------------------------
// Filters on hand-made logits

TEST(SamplerFilters, TopKKeepsKHighestTiesToLowerId) {
    const std::vector<float> logits{0.1f, 0.5f, 0.3f, 0.9f, 0.2f, 0.5f};
    auto cands = [&](int32_t k) {
        SamplingParams p = neutral();
        p.top_k = k;
        auto s = make(p, logits.size());
        return candidate_ids(s, logits);
    };
    EXPECT_EQ(cands(1), (std::set<int32_t>{3}));
    EXPECT_EQ(cands(2), (std::set<int32_t>{3, 1}));
    EXPECT_EQ(cands(3), (std::set<int32_t>{3, 1, 5}));
    EXPECT_EQ(cands(4), (std::set<int32_t>{3, 1, 5, 2}));
    EXPECT_EQ(cands(0).size(), 6u);
    EXPECT_EQ(cands(6).size(), 6u);
    EXPECT_EQ(cands(100).size(), 6u);
}

TEST(SamplerFilters, TopKLargeKUsesSelection) {
    const size_t n = 20000;
    auto logits = random_logits(n, 3);
    for (int32_t k : {5000, 4096, 4097, 37}) {
        SamplingParams p = neutral();
        p.top_k = k;
        auto s = make(p, n);
        std::vector<int32_t> order(n);
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
            const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
            return la > lb || (la == lb && a < b);
        });
        std::set<int32_t> expected(order.begin(), order.begin() + k);
        EXPECT_EQ(candidate_ids(s, logits), expected) << "k " << k;
    }
}

TEST(SamplerFilters, TopP) {
    // probabilities 0.5, 0.25, 0.15, 0.1 in a shuffled order of ids
    const auto logits = log_probs({0.15, 0.5, 0.1, 0.25});
    auto cands = [&](float top_p) {
        SamplingParams p = neutral();
        p.top_p = top_p;
        auto s = make(p, logits.size());
        return candidate_ids(s, logits);
    };
    EXPECT_EQ(cands(0.3f), (std::set<int32_t>{1}));
    EXPECT_EQ(cands(0.7f), (std::set<int32_t>{1, 3}));
    EXPECT_EQ(cands(0.8f), (std::set<int32_t>{1, 3, 0}));
    EXPECT_EQ(cands(0.95f), (std::set<int32_t>{1, 3, 0, 2}));
    EXPECT_EQ(cands(1.0f), (std::set<int32_t>{1, 3, 0, 2}));
}

TEST(SamplerFilters, TopPRenormalisesAfterTopK) {
    // after top-k 2: 0.5/0.75 and 0.25/0.75 -> top_p 0.6 keeps only the first
    const auto logits = log_probs({0.15, 0.5, 0.1, 0.25});
    SamplingParams p = neutral();
    p.top_k = 2;
    p.top_p = 0.6f;
    auto s = make(p, logits.size());
    EXPECT_EQ(candidate_ids(s, logits), (std::set<int32_t>{1}));
    p.top_p = 0.7f;
    auto s2 = make(p, logits.size());
    EXPECT_EQ(candidate_ids(s2, logits), (std::set<int32_t>{1, 3}));
}

TEST(SamplerFilters, MinP) {
    const auto logits = log_probs({0.15, 0.5, 0.1, 0.25});
    auto cands = [&](float min_p) {
        SamplingParams p = neutral();
        p.min_p = min_p;
        auto s = make(p, logits.size());
        return candidate_ids(s, logits);
    };
    EXPECT_EQ(cands(0.0f).size(), 4u);
    EXPECT_EQ(cands(0.1f), (std::set<int32_t>{0, 1, 2, 3}));    // >= 0.05
    EXPECT_EQ(cands(0.25f), (std::set<int32_t>{0, 1, 3}));      // >= 0.125
    EXPECT_EQ(cands(0.4f), (std::set<int32_t>{1, 3}));          // >= 0.2
    EXPECT_EQ(cands(0.6f), (std::set<int32_t>{1}));             // >= 0.3
    EXPECT_EQ(cands(1.0f), (std::set<int32_t>{1}));
}

TEST(SamplerFilters, TypicalP) {
    // p = 0.4 0.3 0.2 0.1, entropy H = 1.27985; |-log p - H| = 0.3636 0.0759 0.3296 1.0227,
    // so the order is id 1 (0.3), id 2 (0.2), id 0 (0.4), id 3 (0.1); kept until the sum > p.
    const auto logits = log_probs({0.4, 0.3, 0.2, 0.1});
    auto cands = [&](float typical) {
        SamplingParams p = neutral();
        p.typical_p = typical;
        auto s = make(p, logits.size());
        return candidate_ids(s, logits);
    };
    EXPECT_EQ(cands(0.25f), (std::set<int32_t>{1}));
    EXPECT_EQ(cands(0.45f), (std::set<int32_t>{1, 2}));
    EXPECT_EQ(cands(0.8f), (std::set<int32_t>{1, 2, 0}));
    EXPECT_EQ(cands(0.95f), (std::set<int32_t>{0, 1, 2, 3}));
    EXPECT_EQ(cands(1.0f), (std::set<int32_t>{0, 1, 2, 3}));
}

TEST(SamplerFilters, SingleCandidateAndBannedTokensSkipFilters) {
    SamplingParams p = neutral();
    p.top_p = 0.1f;
    p.typical_p = 0.1f;
    p.min_p = 0.9f;
    p.logit_bias = {{0, kNegInf}, {2, kNegInf}};
    auto s = make(p, 3);
    auto c = s.candidates(std::vector<float>{5.0f, 1.0f, 9.0f});
    ASSERT_TRUE(c);
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].id, 1);
    EXPECT_FLOAT_EQ((*c)[0].p, 1.0f);
}

// Independent full-sort implementation of the chain (no penalties/bias) to compare against on
// large vocabularies, where the sampler takes its partial-sort and heap paths.
struct RefCand {
    int32_t id;
    double l;
    double p;
};
bool ref_by_logit(const RefCand& a, const RefCand& b) {
    return a.l > b.l || (a.l == b.l && a.id < b.id);
}
std::vector<RefCand> ref_sorted(const std::vector<float>& logits) {
    std::vector<RefCand> c;
    for (size_t i = 0; i < logits.size(); ++i) c.push_back({static_cast<int32_t>(i), logits[i], 0});
    std::sort(c.begin(), c.end(), ref_by_logit);
    return c;
}

// `c`: all candidates sorted by ref_by_logit (computed once per logits vector).
std::vector<int32_t> reference_chain(std::vector<RefCand> c, const SamplingParams& p) {
    using C = RefCand;
    const auto by_logit = ref_by_logit;
    auto softmax = [](std::vector<C>& v) {
        double m = -1e300;
        for (auto& x : v) m = std::max(m, x.l);
        double z = 0;
        for (auto& x : v) z += (x.p = std::exp(x.l - m));
        for (auto& x : v) x.p /= z;
    };
    if (p.top_k > 0 && static_cast<size_t>(p.top_k) < c.size()) c.resize(static_cast<size_t>(p.top_k));
    if (p.typical_p < 1.0f && c.size() > 1) {
        softmax(c);
        double h = 0;
        for (auto& x : c) h -= x.p * std::log(x.p);
        std::vector<std::pair<float, C>> keyed;  // score as the sampler rounds it
        for (auto& x : c) keyed.emplace_back(static_cast<float>(std::fabs(-std::log(x.p) - h)), x);
        std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
            return a.first < b.first || (a.first == b.first && a.second.id < b.second.id);
        });
        std::vector<C> t;
        for (auto& x : keyed) t.push_back(x.second);
        double cum = 0;
        size_t last = t.size();
        for (size_t i = 0; i < t.size(); ++i) {
            cum += t[i].p;
            if (cum > p.typical_p) {
                last = i + 1;
                break;
            }
        }
        t.resize(last);
        c = t;
        std::sort(c.begin(), c.end(), by_logit);
    }
    if (p.top_p < 1.0f && c.size() > 1) {
        softmax(c);
        double cum = 0;
        size_t last = c.size();
        for (size_t i = 0; i < c.size(); ++i) {
            cum += c[i].p;
            if (cum >= p.top_p) {
                last = i + 1;
                break;
            }
        }
        c.resize(last);
    }
    if (p.min_p > 0.0f && c.size() > 1) {
        const double thr = c[0].l + std::log(static_cast<double>(p.min_p));
        std::erase_if(c, [&](const C& x) { return x.l < thr; });
    }
    std::vector<int32_t> out;
    for (auto& x : c) out.push_back(x.id);
    std::sort(out.begin(), out.end());
    return out;
}

TEST(SamplerFilters, ChainMatchesFullSortReferenceOnGemmaSizedVocab) {
    const size_t n = 262144;
    struct Case {
        int32_t top_k;
        float top_p, min_p, typical_p;
    };
    const Case cases[] = {
        {0, 1.0f, 0.0f, 1.0f},     // OpenAI defaults: the whole vocabulary
        {40, 0.95f, 0.05f, 1.0f},  // llama-server defaults
        {0, 0.9f, 0.0f, 1.0f},     // top-p over the whole vocabulary (expanding partial sort)
        {0, 1.0f, 0.02f, 1.0f},    // min-p alone
        {0, 0.5f, 0.0f, 1.0f},
        {5000, 0.99f, 0.0f, 1.0f},  // nth_element path
        {100, 1.0f, 0.0f, 0.7f},   // typical-p, small set: sorted
        {0, 1.0f, 0.0f, 0.5f},     // typical-p over the whole vocabulary: bucketed
        {0, 0.8f, 0.01f, 0.9f},    // everything but top-k
    };
    // Flat-ish logits so that top-p keeps tens of thousands of candidates; a second set with
    // many exact ties (logits rounded to 1/4) to check the tie-breaking inside a bucket.
    auto tied = random_logits(n, 12, 2.0f);
    for (auto& x : tied) x = std::round(x * 4.0f) / 4.0f;
    for (const auto& logits : {random_logits(n, 11, 1.0f), tied}) {
        const auto sorted = ref_sorted(logits);
        for (const auto& cs : cases) {
            SamplingParams p = neutral();
            p.top_k = cs.top_k;
            p.top_p = cs.top_p;
            p.min_p = cs.min_p;
            p.typical_p = cs.typical_p;
            auto s = make(p, n);
            std::vector<int32_t> got;
            {
                auto c = s.candidates(logits);
                ASSERT_TRUE(c) << c.error().message;
                for (const auto& x : *c) got.push_back(x.id);
                std::sort(got.begin(), got.end());
            }
            const auto want = reference_chain(sorted, p);
            // Summation order may differ at the exact cut-off; allow one token of slack there.
            const size_t diff = std::max(got.size(), want.size()) - std::min(got.size(), want.size());
            EXPECT_LE(diff, 1u) << "top_k " << cs.top_k << " top_p " << cs.top_p;
            std::vector<int32_t> common;
            std::set_intersection(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(common));
            EXPECT_GE(common.size() + 1, std::max(got.size(), want.size())) << "top_k " << cs.top_k;
            EXPECT_GT(got.size(), 0u);
            auto t = s.sample(logits);
            ASSERT_TRUE(t);
            EXPECT_TRUE(std::binary_search(got.begin(), got.end(), *t));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Penalties and logit bias

TEST(SamplerPenalties, RepeatFrequencyPresenceExact) {
    SamplingParams p = neutral();
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    auto s = make(p, 5);
    for (int32_t t : {0, 0, 1, 4}) s.accept(t);
    const std::vector<float> logits{2.0f, -1.0f, 0.5f, 3.0f, 0.0f};
    const auto got = candidate_logits(s, logits);
    ASSERT_EQ(got.size(), 5u);
    EXPECT_FLOAT_EQ(got.at(0), 2.0f / 2.0f - (2 * 0.5f + 0.25f));  // positive: divided
    EXPECT_FLOAT_EQ(got.at(1), -1.0f * 2.0f - (0.5f + 0.25f));     // negative: multiplied
    EXPECT_FLOAT_EQ(got.at(2), 0.5f);                              // not in the window
    EXPECT_FLOAT_EQ(got.at(3), 3.0f);
    EXPECT_FLOAT_EQ(got.at(4), 0.0f * 2.0f - (0.5f + 0.25f));      // zero counts as non-positive
    // the raw logits are untouched and the next call sees the same window
    EXPECT_EQ(candidate_logits(s, logits), got);
}

TEST(SamplerPenalties, WindowSlidesAndCanBeDisabled) {
    const std::vector<float> logits{2.0f, 2.0f, 2.0f};
    SamplingParams p = neutral();
    p.frequency_penalty = 1.0f;
    p.penalty_last_n = 2;
    auto s = make(p, 3);
    for (int32_t t : {0, 0, 1}) s.accept(t);  // window {0, 1}
    auto got = candidate_logits(s, logits);
    EXPECT_FLOAT_EQ(got.at(0), 1.0f);
    EXPECT_FLOAT_EQ(got.at(1), 1.0f);
    EXPECT_FLOAT_EQ(got.at(2), 2.0f);
    s.accept(1);  // window {1, 1}
    got = candidate_logits(s, logits);
    EXPECT_FLOAT_EQ(got.at(0), 2.0f);
    EXPECT_FLOAT_EQ(got.at(1), 0.0f);
    s.accept(-1);  // out of range: ignored
    s.accept(3);
    EXPECT_EQ(candidate_logits(s, logits), got);
    s.reset();
    got = candidate_logits(s, logits);
    EXPECT_FLOAT_EQ(got.at(1), 2.0f);

    p.penalty_last_n = 0;
    auto off = make(p, 3);
    for (int32_t t : {0, 0, 1}) off.accept(t);
    got = candidate_logits(off, logits);
    EXPECT_FLOAT_EQ(got.at(0), 2.0f);

    p.penalty_last_n = -1;  // the whole history
    auto all = make(p, 3);
    for (int i = 0; i < 100; ++i) all.accept(0);
    got = candidate_logits(all, logits);
    EXPECT_FLOAT_EQ(got.at(0), 2.0f - 100.0f);
}

TEST(SamplerPenalties, AppliedAfterLogitBias) {
    SamplingParams p = neutral();
    p.repeat_penalty = 2.0f;
    p.logit_bias = {{0, 3.0f}};
    auto s = make(p, 2);
    s.accept(0);
    const auto got = candidate_logits(s, {-1.0f, 0.0f});
    EXPECT_FLOAT_EQ(got.at(0), (-1.0f + 3.0f) / 2.0f);
}

TEST(SamplerLogitBias, AddsAndBans) {
    const std::vector<float> logits{1.0f, 0.0f, 3.0f, 2.0f};
    SamplingParams p = neutral();
    p.temperature = 0.0f;
    p.logit_bias = {{1, 10.0f}};
    auto s = make(p, 4);
    EXPECT_EQ(*s.sample(logits), 1);

    p.logit_bias = {{2, kNegInf}};
    auto ban = make(p, 4);
    EXPECT_EQ(*ban.sample(logits), 3);
    p.temperature = 1.0f;
    auto ban_t = make(p, 4);
    EXPECT_EQ(candidate_ids(ban_t, logits), (std::set<int32_t>{0, 1, 3}));
    for (int i = 0; i < 200; ++i) EXPECT_NE(*ban_t.sample(logits), 2);
    EXPECT_FLOAT_EQ(candidate_logits(ban_t, logits).at(0), 1.0f);

    p.logit_bias = {{0, kNegInf}, {1, kNegInf}, {2, kNegInf}, {3, kNegInf}};
    auto none = make(p, 4);
    auto r = none.sample(logits);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("-inf"), std::string::npos);
}

TEST(SamplerLogitBias, IgnoreEosBansEogTokens) {
    const std::vector<float> logits{0.0f, 0.0f, 9.0f, 1.0f};
    const std::vector<int32_t> eog{2, 77};  // 77: outside the vocabulary, ignored
    SamplingParams p = neutral();
    p.temperature = 0.0f;
    p.ignore_eos = true;
    auto s = make(p, 4, eog);
    EXPECT_EQ(*s.sample(logits), 3);
    p.ignore_eos = false;
    auto s2 = make(p, 4, eog);
    EXPECT_EQ(*s2.sample(logits), 2);
}

// ---------------------------------------------------------------------------------------------
// Seeds

std::vector<int32_t> run(uint64_t seed, int steps) {
    const size_t n = 1000;
    SamplingParams p = neutral();
    p.seed = seed;
    p.top_k = 50;
    p.temperature = 1.5f;
    p.repeat_penalty = 1.1f;
    auto s = make(p, n);
    std::vector<int32_t> out;
    for (int i = 0; i < steps; ++i) {
        const auto logits = random_logits(n, static_cast<uint32_t>(i), 1.0f);
        auto t = s.sample(logits);
        EXPECT_TRUE(t);
        out.push_back(*t);
        s.accept(*t);
    }
    return out;
}

TEST(SamplerSeed, SameSeedSameSequenceDifferentSeedDifferent) {
    const auto a = run(42, 100);
    EXPECT_EQ(a, run(42, 100));
    EXPECT_NE(a, run(43, 100));
    EXPECT_NE(a, run(uint64_t{42} | (uint64_t{1} << 40), 100));  // high bits matter too
}

TEST(SamplerSeed, UnsetSeedIsRandomAndReported) {
    SamplingParams p = neutral();
    p.seed.reset();
    auto a = make(p, 10);
    auto b = make(p, 10);
    EXPECT_NE(a.seed(), b.seed());
    p.seed = 99;
    EXPECT_EQ(make(p, 10).seed(), 99u);
}

TEST(SamplerSeed, ReproducibleFromReportedSeed) {
    const auto logits = random_logits(300, 5, 1.0f);
    SamplingParams p = neutral();
    p.seed.reset();
    auto a = make(p, logits.size());
    p.seed = a.seed();
    auto b = make(p, logits.size());
    for (int i = 0; i < 50; ++i) EXPECT_EQ(*a.sample(logits), *b.sample(logits));
}

// ---------------------------------------------------------------------------------------------
// Validation

TEST(SamplingParamsValidate, DefaultsAreOpenAI) {
    SamplingParams p;
    EXPECT_FLOAT_EQ(p.temperature, 1.0f);
    EXPECT_FLOAT_EQ(p.top_p, 1.0f);
    EXPECT_EQ(p.top_k, 0);
    EXPECT_FLOAT_EQ(p.min_p, 0.0f);
    EXPECT_FLOAT_EQ(p.typical_p, 1.0f);
    EXPECT_FLOAT_EQ(p.repeat_penalty, 1.0f);
    EXPECT_FLOAT_EQ(p.frequency_penalty, 0.0f);
    EXPECT_FLOAT_EQ(p.presence_penalty, 0.0f);
    EXPECT_FALSE(p.seed.has_value());
    EXPECT_FALSE(p.max_tokens.has_value());
    EXPECT_TRUE(p.stop.empty());
    EXPECT_FALSE(p.ignore_eos);
    EXPECT_TRUE(p.validate(10));
}

TEST(SamplingParamsValidate, RejectsBadValues) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    struct Case {
        const char* what;
        void (*set)(SamplingParams&);
    };
    static float g_nan, g_inf;
    g_nan = nan;
    g_inf = inf;
    const Case cases[] = {
        {"temperature", [](SamplingParams& p) { p.temperature = -0.1f; }},
        {"temperature", [](SamplingParams& p) { p.temperature = g_nan; }},
        {"temperature", [](SamplingParams& p) { p.temperature = g_inf; }},
        {"top_k", [](SamplingParams& p) { p.top_k = -1; }},
        {"top_p", [](SamplingParams& p) { p.top_p = 0.0f; }},
        {"top_p", [](SamplingParams& p) { p.top_p = 1.5f; }},
        {"top_p", [](SamplingParams& p) { p.top_p = g_nan; }},
        {"top_p", [](SamplingParams& p) { p.top_p = -0.5f; }},
        {"min_p", [](SamplingParams& p) { p.min_p = -0.1f; }},
        {"min_p", [](SamplingParams& p) { p.min_p = 1.1f; }},
        {"min_p", [](SamplingParams& p) { p.min_p = g_nan; }},
        {"typical_p", [](SamplingParams& p) { p.typical_p = 0.0f; }},
        {"typical_p", [](SamplingParams& p) { p.typical_p = g_nan; }},
        {"repeat_penalty", [](SamplingParams& p) { p.repeat_penalty = 0.0f; }},
        {"repeat_penalty", [](SamplingParams& p) { p.repeat_penalty = -1.0f; }},
        {"repeat_penalty", [](SamplingParams& p) { p.repeat_penalty = g_inf; }},
        {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = g_nan; }},
        {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = -g_inf; }},
        {"penalty_last_n", [](SamplingParams& p) { p.penalty_last_n = -2; }},
        {"logit_bias", [](SamplingParams& p) { p.logit_bias = {{10, 1.0f}}; }},
        {"logit_bias", [](SamplingParams& p) { p.logit_bias = {{-1, 1.0f}}; }},
        {"logit_bias", [](SamplingParams& p) { p.logit_bias = {{3, g_nan}}; }},
        {"logit_bias", [](SamplingParams& p) { p.logit_bias = {{3, g_inf}}; }},
        {"max_tokens", [](SamplingParams& p) { p.max_tokens = 0; }},
        {"max_tokens", [](SamplingParams& p) { p.max_tokens = -5; }},
        {"stop", [](SamplingParams& p) { p.stop = {"ok", ""}; }},
        {"stop", [](SamplingParams& p) { p.stop = {std::string(1000, 'x')}; }},
        {"stop", [](SamplingParams& p) { p.stop = {"\xC3"}; }},
        {"stop", [](SamplingParams& p) { p.stop = std::vector<std::string>(100, "x"); }},
    };
    for (const auto& c : cases) {
        SamplingParams p;
        c.set(p);
        auto st = p.validate(10);
        ASSERT_FALSE(st) << c.what;
        EXPECT_NE(st.error().message.find(c.what), std::string::npos) << st.error().message;
        EXPECT_FALSE(Sampler::create(p, 10)) << c.what;
    }
    SamplingParams ok;
    EXPECT_FALSE(ok.validate(0));
    ok.logit_bias = {{9, -std::numeric_limits<float>::infinity()}, {0, -100.0f}};
    ok.temperature = 0.0f;
    ok.top_k = 1000;  // larger than the vocabulary: fine
    ok.min_p = 1.0f;
    ok.penalty_last_n = -1;
    ok.max_tokens = 1;
    ok.stop = {"\xE2\x82\xAC", "END"};
    EXPECT_TRUE(ok.validate(10)) << ok.validate(10).error().message;
}

TEST(SamplerErrors, BadLogits) {
    auto s = make(neutral(), 4);
    EXPECT_FALSE(s.sample(std::vector<float>{1, 2, 3}));
    EXPECT_FALSE(s.sample(std::vector<float>{1, 2, 3, 4, 5}));
    EXPECT_FALSE(s.sample(std::vector<float>{1, std::numeric_limits<float>::quiet_NaN(), 3, 4}));
    EXPECT_FALSE(s.sample(std::vector<float>{1, std::numeric_limits<float>::infinity(), 3, 4}));
    EXPECT_FALSE(s.sample(std::vector<float>(4, kNegInf)));
    // -inf logits are simply masked
    auto ok = s.sample(std::vector<float>{kNegInf, 2, kNegInf, kNegInf});
    ASSERT_TRUE(ok);
    EXPECT_EQ(*ok, 1);
}

TEST(SamplerErrors, HugeValuesStayFinite) {
    for (float typical : {1.0f, 0.5f}) {
        for (float top_p : {1.0f, 0.5f}) {
            for (float temp : {0.5f, 1e-30f, 1e30f}) {
                SamplingParams p = neutral();
                p.repeat_penalty = 1e-30f;
                p.frequency_penalty = -3e38f;
                p.logit_bias = {{1, 3e38f}};
                p.temperature = temp;
                p.typical_p = typical;
                p.top_p = top_p;
                p.min_p = 0.01f;
                auto s = make(p, 4);
                s.accept(0);
                s.accept(3);
                const std::vector<float> logits{3e38f, 3e38f, -3e38f, -3e38f};
                auto c = s.candidates(logits);
                ASSERT_TRUE(c) << c.error().message;
                double sum = 0;
                for (const auto& x : *c) {
                    EXPECT_FALSE(std::isnan(x.p));
                    sum += x.p;
                }
                EXPECT_NEAR(sum, 1.0, 1e-5);
                EXPECT_TRUE(s.sample(logits));
            }
        }
    }
}

}  // namespace
