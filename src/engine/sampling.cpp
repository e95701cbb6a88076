#include "engine/sampling.hpp"

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <limits>

#include "text/utf8.hpp"

namespace realm::engine {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::string fmt(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    return std::to_string(v);
}

// Candidate order: higher logit first, ties towards the lower id (deterministic across
// standard-library implementations of nth_element and the heap functions).
bool better(const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// The items taken in ascending (key, id) order until their probability mass reaches `target`
// (>= target, or > target when `strict`): moves them to the front of `c` (in no particular order)
// and returns how many there are; c.size() when the mass never reaches the target.
// Small sets are sorted; large ones (Gemma's 262144 tokens) are bucketed by key in one pass, so
// only the bucket where the cut falls gets sorted. Bucket indices are monotone in the key, so the
// result is the same as walking a full sort.
size_t keep_mass_prefix(std::vector<Candidate>& c, std::vector<float>& key, double target, bool strict,
                        std::vector<uint32_t>& idx, std::vector<uint32_t>& bucket, std::vector<double>& hist,
                        std::vector<Candidate>& scratch) {
    const size_t n = c.size();
    const auto reached = [&](double cum) { return strict ? cum > target : cum >= target; };
    const auto before = [&](uint32_t a, uint32_t b) {
        return key[a] < key[b] || (key[a] == key[b] && c[a].id < c[b].id);
    };
    const auto emit = [&](size_t count) {  // idx[0..count) first, in that order
        scratch.clear();
        for (size_t i = 0; i < count; ++i) scratch.push_back(c[idx[i]]);
        std::copy(scratch.begin(), scratch.end(), c.begin());
        return count;
    };
    idx.clear();
    if (n <= 1024) {
        for (size_t i = 0; i < n; ++i) idx.push_back(static_cast<uint32_t>(i));
        std::sort(idx.begin(), idx.end(), before);
        double cum = 0.0;
        for (size_t i = 0; i < n; ++i) {
            cum += c[idx[i]].p;
            if (reached(cum)) return emit(i + 1);
        }
        return n;
    }
    float kmin = kInf, kmax = -kInf;
    for (float k : key) {
        if (std::isfinite(k)) {
            kmin = std::min(kmin, k);
            kmax = std::max(kmax, k);
        }
    }
    constexpr size_t kBuckets = 4096;
    const double range = static_cast<double>(kmax) - static_cast<double>(kmin);
    const double scale = range > 0.0 ? static_cast<double>(kBuckets) / range : 0.0;
    bucket.resize(n);
    hist.assign(kBuckets, 0.0);
    for (size_t i = 0; i < n; ++i) {
        size_t b = kBuckets - 1;  // non-finite keys (p == 0) go last
        if (std::isfinite(key[i])) {
            const double x = (static_cast<double>(key[i]) - kmin) * scale;
            b = std::min(kBuckets - 1, static_cast<size_t>(x));
        }
        bucket[i] = static_cast<uint32_t>(b);
        hist[b] += c[i].p;
    }
    double cum = 0.0;
    size_t cut = kBuckets;
    for (size_t b = 0; b < kBuckets; ++b) {
        if (reached(cum + hist[b])) {
            cut = b;
            break;
        }
        cum += hist[b];
    }
    if (cut == kBuckets) return n;
    for (size_t i = 0; i < n; ++i) {
        if (bucket[i] < cut) idx.push_back(static_cast<uint32_t>(i));
    }
    const size_t whole = idx.size();
    for (size_t i = 0; i < n; ++i) {
        if (bucket[i] == cut) idx.push_back(static_cast<uint32_t>(i));
    }
    std::sort(idx.begin() + static_cast<std::ptrdiff_t>(whole), idx.end(), before);
    for (size_t i = whole; i < idx.size(); ++i) {
        cum += c[idx[i]].p;
        if (reached(cum)) return emit(i + 1);
    }
    return n;  // rounding: the bucket sums reached the target, the items did not
}

// p = softmax(logit / temp), computed as exp((l - max) / temp) so that huge logits cannot
// overflow.
// Returns log(sum of exp((l - max) / temp)), so that log p = (l - max) / temp - that.
double softmax(std::vector<Candidate>& c, float temp, bool sorted) {
    float max_l = c[0].logit;
    if (!sorted) {
        for (const auto& x : c) max_l = std::max(max_l, x.logit);
    }
    // (l - max) <= 0 may overflow to -inf for logits near -+FLT_MAX, and (l - max) / temp to -inf
    // for a tiny temp: exp gives 0, the right limit; the maximum itself gives exp(0) = 1.
    double sum = 0.0;  // 262144 terms: sum in double
    for (auto& x : c) {
        x.p = std::exp((x.logit - max_l) / temp);
        sum += x.p;
    }
    const auto inv = static_cast<float>(1.0 / sum);
    for (auto& x : c) x.p *= inv;
    return std::log(sum);
}

size_t best_index(const std::vector<Candidate>& c) {
    size_t best = 0;
    for (size_t i = 1; i < c.size(); ++i) {
        if (better(c[i], c[best])) best = i;
    }
    return best;
}

}  // namespace

Status SamplingParams::validate(size_t vocab_size) const {
    if (vocab_size == 0) return make_error("sampling: vocabulary is empty");
    if (vocab_size > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
        return make_error("sampling: vocabulary too large");
    }
    if (!std::isfinite(temperature) || temperature < 0.0f) {
        return make_error("temperature must be a finite number >= 0, got " + fmt(temperature));
    }
    if (top_k < 0) return make_error("top_k must be >= 0 (0 disables it), got " + std::to_string(top_k));
    if (!(top_p > 0.0f && top_p <= 1.0f)) return make_error("top_p must be in (0, 1], got " + fmt(top_p));
    if (!(min_p >= 0.0f && min_p <= 1.0f)) return make_error("min_p must be in [0, 1], got " + fmt(min_p));
    if (!(typical_p > 0.0f && typical_p <= 1.0f)) {
        return make_error("typical_p must be in (0, 1], got " + fmt(typical_p));
    }
    if (!std::isfinite(repeat_penalty) || repeat_penalty <= 0.0f) {
        return make_error("repeat_penalty must be a finite number > 0, got " + fmt(repeat_penalty));
    }
    if (!std::isfinite(frequency_penalty)) {
        return make_error("frequency_penalty must be finite, got " + fmt(frequency_penalty));
    }
    if (!std::isfinite(presence_penalty)) {
        return make_error("presence_penalty must be finite, got " + fmt(presence_penalty));
    }
    if (penalty_last_n < -1) {
        return make_error("penalty_last_n must be >= -1 (-1: all tokens, 0: disabled), got " +
                          std::to_string(penalty_last_n));
    }
    for (const auto& [tok, bias] : logit_bias) {
        if (tok < 0 || static_cast<size_t>(tok) >= vocab_size) {
            return make_error("logit_bias: token " + std::to_string(tok) + " is outside the vocabulary [0, " +
                              std::to_string(vocab_size) + ")");
        }
        if (std::isnan(bias) || bias == kInf) {
            return make_error("logit_bias: bias for token " + std::to_string(tok) +
                              " must be finite or -inf, got " + fmt(bias));
        }
    }
    if (max_tokens && *max_tokens < 1) {
        return make_error("max_tokens must be >= 1, got " + std::to_string(*max_tokens));
    }
    if (stop.size() > kMaxStopStrings) {
        return make_error("stop: at most " + std::to_string(kMaxStopStrings) + " stop strings, got " +
                          std::to_string(stop.size()));
    }
    for (const auto& s : stop) {
        if (s.empty()) return make_error("stop: stop strings must not be empty");
        if (s.size() > kMaxStopStringBytes) {
            return make_error("stop: stop strings are limited to " + std::to_string(kMaxStopStringBytes) +
                              " bytes");
        }
        if (!text::utf8_is_valid(s)) return make_error("stop: stop strings must be valid UTF-8");
    }
    return {};
}

Result<Sampler> Sampler::create(const SamplingParams& params, size_t vocab_size, std::span<const int32_t> eog_ids) {
    if (auto st = params.validate(vocab_size); !st) return st.error();
    uint64_t seed = 0;
    if (params.seed) {
        seed = *params.seed;
    } else {
        try {
            std::random_device rd;
            seed = (static_cast<uint64_t>(rd()) << 32) | rd();
        } catch (...) {
            seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        }
    }
    Sampler s(params, vocab_size, seed);
    if (params.ignore_eos) {
        for (int32_t id : eog_ids) {
            if (id >= 0 && static_cast<size_t>(id) < vocab_size) s.bias_.emplace_back(id, -kInf);
        }
    }
    return s;
}

Sampler::Sampler(const SamplingParams& params, size_t vocab_size, uint64_t seed)
    : params_(params), vocab_size_(vocab_size), seed_(seed) {
    std::seed_seq seq{static_cast<uint32_t>(seed & 0xFFFFFFFFu), static_cast<uint32_t>(seed >> 32)};
    rng_.seed(seq);
    bias_.assign(params.logit_bias.begin(), params.logit_bias.end());
}

bool Sampler::penalties_active() const {
    return params_.penalty_last_n != 0 &&
           (params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f);
}

void Sampler::accept(int32_t token) {
    if (token < 0 || static_cast<size_t>(token) >= vocab_size_ || !penalties_active()) return;
    ++counts_[token];
    if (params_.penalty_last_n < 0) return;  // the whole history: counts only, nothing to evict
    window_.push_back(token);
    if (params_.penalty_last_n > 0 && window_.size() > static_cast<size_t>(params_.penalty_last_n)) {
        const int32_t old = window_.front();
        window_.pop_front();
        auto it = counts_.find(old);
        if (it != counts_.end() && --it->second == 0) counts_.erase(it);
    }
}

void Sampler::reset() {
    window_.clear();
    counts_.clear();
}

double Sampler::uniform01() {
    // 53 random bits from two 32-bit outputs: [0, 1), independent of the standard library.
    const uint64_t a = rng_() >> 5;  // 27 bits
    const uint64_t b = rng_() >> 6;  // 26 bits
    return static_cast<double>((a << 26) | b) * (1.0 / 9007199254740992.0);
}

Status Sampler::prepare(std::span<const float> logits) {
    const size_t n = vocab_size_;
    if (logits.size() != n) {
        return make_error("sampling: got " + std::to_string(logits.size()) + " logits for a vocabulary of " +
                          std::to_string(n));
    }
    {
        // !(v < inf) is true exactly for NaN and +inf; a branch-free reduction vectorises.
        bool bad = false;
        for (size_t i = 0; i < n; ++i) bad |= !(logits[i] < kInf);
        if (bad) {
            for (size_t i = 0; i < n; ++i) {
                if (!(logits[i] < kInf)) {
                    return make_error("sampling: logit of token " + std::to_string(i) + " is " + fmt(logits[i]));
                }
            }
        }
    }

    // 1. logit bias and penalties, on a copy only when something changes.
    const float* src = logits.data();
    const bool penal = penalties_active() && !counts_.empty();
    if (!bias_.empty() || penal) {
        work_.assign(logits.begin(), logits.end());
        for (const auto& [tok, b] : bias_) work_[static_cast<size_t>(tok)] += b;
        if (penal) {
            const float rep = params_.repeat_penalty;
            const float freq = params_.frequency_penalty;
            const float pres = params_.presence_penalty;
            for (const auto& [tok, count] : counts_) {
                float& l = work_[static_cast<size_t>(tok)];
                if (l <= 0.0f) {
                    l *= rep;
                } else {
                    l /= rep;
                }
                l -= static_cast<float>(count) * freq + static_cast<float>(count > 0) * pres;
            }
        }
        // Overflow from huge biases/penalties: clamp +inf, keep everything finite or -inf.
        for (const auto& [tok, b] : bias_) {
            float& l = work_[static_cast<size_t>(tok)];
            if (l == kInf) l = FLT_MAX;
        }
        for (const auto& [tok, c] : counts_) {
            float& l = work_[static_cast<size_t>(tok)];
            if (l == kInf) l = FLT_MAX;
            if (std::isnan(l)) l = -kInf;
        }
        src = work_.data();
    }

    const bool greedy = params_.temperature <= 0.0f;
    const size_t k = static_cast<size_t>(params_.top_k);
    cand_.clear();
    sorted_ = false;

    // Greedy without typical-p: top-k, top-p, min-p and temperature <= 0 all keep the best token,
    // so one pass over the logits is enough (strict > keeps the lowest id on ties).
    if (greedy && params_.typical_p >= 1.0f) {
        size_t best = 0;
        float best_l = src[0];
        for (size_t i = 1; i < n; ++i) {
            if (src[i] > best_l) {
                best_l = src[i];
                best = i;
            }
        }
        if (best_l == -kInf) {
            return make_error("sampling: no token can be sampled (every logit is -inf after logit_bias)");
        }
        cand_.push_back({static_cast<int32_t>(best), best_l, 1.0f});
        sorted_ = true;
        return {};
    }

    // 2. candidates (top-k selects while building).
    if (k > 0 && k < n && k <= 4096) {
        // bounded heap whose top is the worst kept candidate
        cand_.reserve(k);
        for (size_t i = 0; i < n; ++i) {
            const float v = src[i];
            if (v == -kInf) continue;
            const Candidate c{static_cast<int32_t>(i), v, 0.0f};
            if (cand_.size() < k) {
                cand_.push_back(c);
                std::push_heap(cand_.begin(), cand_.end(), better);
            } else if (better(c, cand_.front())) {
                std::pop_heap(cand_.begin(), cand_.end(), better);
                cand_.back() = c;
                std::push_heap(cand_.begin(), cand_.end(), better);
            }
        }
        std::sort_heap(cand_.begin(), cand_.end(), better);
        sorted_ = true;
    } else {
        cand_.resize(n);
        size_t m = 0;
        for (size_t i = 0; i < n; ++i) {  // branch-free compaction of the finite logits
            cand_[m] = {static_cast<int32_t>(i), src[i], 0.0f};
            m += src[i] != -kInf;
        }
        cand_.resize(m);
        if (k > 0 && k < cand_.size()) {
            const auto kth = cand_.begin() + static_cast<std::ptrdiff_t>(k);
            std::nth_element(cand_.begin(), kth, cand_.end(), better);
            cand_.resize(k);
            std::sort(cand_.begin(), cand_.end(), better);
            sorted_ = true;
        }
    }
    if (cand_.empty()) {
        return make_error("sampling: no token can be sampled (every logit is -inf after logit_bias)");
    }

    // 3. typical-p: keep the tokens whose -log p is closest to the entropy until the mass > p.
    if (params_.typical_p < 1.0f && cand_.size() > 1) {
        const double log_z = softmax(cand_, 1.0f, sorted_);
        const float max_l = cand_[sorted_ ? 0 : best_index(cand_)].logit;
        // log p = l - max - log_z: no log per token (and finite even where p underflows to 0)
        const auto log_p = [&](const Candidate& c) { return (static_cast<double>(c.logit) - max_l) - log_z; };
        double entropy = 0.0;
        for (const auto& c : cand_) {
            if (c.p > 0.0f) entropy -= static_cast<double>(c.p) * log_p(c);
        }
        key_.resize(cand_.size());
        for (size_t i = 0; i < cand_.size(); ++i) {
            key_[i] = static_cast<float>(std::fabs(-log_p(cand_[i]) - entropy));
        }
        const size_t last = keep_mass_prefix(cand_, key_, params_.typical_p, /*strict=*/true, idx_, bucket_,
                                             hist_, scratch_);
        cand_.resize(last);
        sorted_ = false;
    }

    // 4. top-p: keep the most probable tokens until the mass >= p.
    if (params_.top_p < 1.0f && cand_.size() > 1) {
        softmax(cand_, 1.0f, sorted_);
        size_t last = cand_.size();
        if (sorted_) {
            double cum = 0.0;
            for (size_t i = 0; i < cand_.size(); ++i) {
                cum += cand_[i].p;
                if (cum >= params_.top_p) {
                    last = i + 1;
                    break;
                }
            }
        } else {
            key_.resize(cand_.size());
            for (size_t i = 0; i < cand_.size(); ++i) key_[i] = -cand_[i].logit;
            last = keep_mass_prefix(cand_, key_, params_.top_p, /*strict=*/false, idx_, bucket_, hist_, scratch_);
        }
        cand_.resize(last);
    }

    // 5. min-p
    if (params_.min_p > 0.0f && cand_.size() > 1) {
        const float max_l = cand_[sorted_ ? 0 : best_index(cand_)].logit;
        const float min_l = max_l + std::log(params_.min_p);
        std::erase_if(cand_, [min_l](const Candidate& c) { return c.logit < min_l; });
    }

    // 6. temperature and final probabilities
    if (greedy) {
        const Candidate best = cand_[sorted_ ? 0 : best_index(cand_)];
        cand_.assign(1, best);
        cand_[0].p = 1.0f;
        sorted_ = true;
    } else {
        const float t = params_.temperature;
        softmax(cand_, t, sorted_);
        if (t != 1.0f) {
            for (auto& c : cand_) c.logit /= t;
        }
    }
    return {};
}

Result<std::span<const Candidate>> Sampler::candidates(std::span<const float> logits) {
    if (auto st = prepare(logits); !st) return st.error();
    return std::span<const Candidate>(cand_);
}

Result<int32_t> Sampler::sample(std::span<const float> logits) {
    if (auto st = prepare(logits); !st) return st.error();
    if (cand_.size() == 1) return cand_[0].id;
    double total = 0.0;
    for (const auto& c : cand_) total += c.p;
    const double u = uniform01() * total;
    double cum = 0.0;
    size_t pick = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
        cum += cand_[i].p;
        if (u < cum) {
            pick = i;
            break;
        }
    }
    if (pick == cand_.size()) {  // rounding at the very end: the last candidate with p > 0
        pick = cand_.size() - 1;
        while (pick > 0 && cand_[pick].p <= 0.0f) --pick;
    }
    return cand_[pick].id;
}

}  // namespace realm::engine
