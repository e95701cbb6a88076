// Token sampling: the parameters a request may set (validated, since they come from untrusted
// HTTP requests and WebAssembly guests) and a Sampler that turns one step's logits into a token.
//
//   realm::engine::SamplingParams p;            // OpenAI defaults: temperature 1, top_p 1, ...
//   p.temperature = 0.7f; p.top_k = 40; p.seed = 42;
//   auto s = realm::engine::Sampler::create(p, vocab_size, tokenizer.eog_ids());
//   if (!s) { reply_400(s.error().message); return; }
//   for (...) {
//       auto tok = s->sample(logits);           // std::span<const float>, vocab_size entries
//       if (!tok) { fail(tok.error().message); break; }
//       s->accept(*tok);                        // feeds the repetition-penalty window
//   }
//
// The chain follows llama.cpp's default sampler chain (common/sampling.cpp):
//   logit_bias -> penalties -> top-k -> typical-p -> top-p -> min-p -> temperature -> draw
// with the same semantics for each stage:
//   - logit_bias adds to the logit; -inf bans the token.
//   - penalties (over the last penalty_last_n accepted tokens, counts c > 0): a positive logit is
//     divided by repeat_penalty, a non-positive one multiplied; then c * frequency_penalty +
//     presence_penalty is subtracted.
//   - top-k keeps the k highest logits (ties broken towards the lower id).
//   - typical-p keeps the tokens whose -log p is closest to the entropy until their
//     cumulative probability exceeds typical_p (strictly, as llama.cpp).
//   - top-p keeps the most probable tokens until their cumulative probability reaches top_p.
//   - min-p keeps the tokens with p >= min_p * p_max.
//   - temperature divides the logits by T; T <= 0 means greedy: the highest logit left after
//     the filters (ties -> the lowest id).
// Tokens whose logit is -inf after bias/penalties are never candidates; if none is left, sample()
// returns an error instead of inventing a token.
//
// Randomness: std::mt19937 seeded explicitly from `seed` (or from std::random_device when unset;
// seed() reports the value used). The same seed and the same sequence of logits give the same
// tokens on every run and platform (the uniform draw is built from raw mt19937 output, not from a
// standard-library distribution). We do NOT promise llama.cpp's exact random stream.
//
// Efficiency (vocabularies of 262144, e.g. Gemma 3): buffers are reused between calls; greedy is
// one pass; top-k uses a bounded heap (or nth_element for large k); top-p and typical-p bucket the
// candidates by key in one pass and sort only the bucket where the cut falls; min-p and
// temperature are linear. No full sort of the vocabulary on any path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gguf/result.hpp"

namespace realm::engine {

// Bounds applied by SamplingParams::validate to untrusted input.
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;

struct SamplingParams {
    // Defaults follow OpenAI's API: sampling at temperature 1 from the full distribution, no
    // penalties, no limit besides the context, random seed.
    float temperature = 1.0f;       // >= 0; 0 = greedy
    int32_t top_k = 0;              // >= 0; 0 = disabled
    float top_p = 1.0f;             // (0, 1]; 1 = disabled
    float min_p = 0.0f;             // [0, 1]; 0 = disabled
    float typical_p = 1.0f;         // (0, 1]; 1 = disabled
    float repeat_penalty = 1.0f;    // > 0; 1 = disabled
    float frequency_penalty = 0.0f;  // finite; 0 = disabled
    float presence_penalty = 0.0f;   // finite; 0 = disabled
    int32_t penalty_last_n = 64;     // window of accepted tokens; 0 = disabled, -1 = all of them
    std::map<int32_t, float> logit_bias;  // token -> added to its logit (finite or -inf)
    std::optional<uint64_t> seed;         // unset: random from the OS
    std::optional<int32_t> max_tokens;    // >= 1; unset: no limit (until the context is full)
    std::vector<std::string> stop;        // non-empty valid UTF-8, at most kMaxStopStrings
    bool ignore_eos = false;              // do not stop at end-of-generation tokens (and ban them)

    SamplingParams() = default;

    // Errors name the offending field: NaN/inf where a finite number is needed, values out of
    // range, logit_bias on a token outside [0, vocab_size) or a NaN/+inf bias, empty, too long
    // or invalid-UTF-8 stop strings, vocab_size == 0.
    Status validate(size_t vocab_size) const;
};

// One surviving candidate after the filter chain: the token, its logit after bias, penalties and
// temperature, and its probability among the survivors.
struct Candidate {
    int32_t id = 0;
    float logit = 0.0f;
    float p = 0.0f;
};

class Sampler {
public:
    // Validates `params`. With params.ignore_eos, the `eog_ids` (e.g. Tokenizer::eog_ids()) are
    // banned (-inf) as llama.cpp does; ids outside the vocabulary are ignored.
    static Result<Sampler> create(const SamplingParams& params, size_t vocab_size,
                                  std::span<const int32_t> eog_ids = {});

    // Runs the chain and draws a token. Errors: logits.size() != vocab_size, a NaN or +inf logit,
    // no candidate left (everything banned).
    Result<int32_t> sample(std::span<const float> logits);

    // The candidates left after the whole chain except the final draw (sorted by descending
    // probability only when a stage needed it). The span points into the sampler and is valid
    // until its next call. Same errors as sample(). Useful for logprobs and for tests.
    Result<std::span<const Candidate>> candidates(std::span<const float> logits);

    // Records a token in the penalty window (prompt tokens may be accepted too, as llama-server
    // does). Out-of-range ids are ignored.
    void accept(int32_t token);
    // Clears the penalty window (the RNG state is kept).
    void reset();

    uint64_t seed() const { return seed_; }
    size_t vocab_size() const { return vocab_size_; }
    const SamplingParams& params() const { return params_; }

private:
    Sampler(const SamplingParams& params, size_t vocab_size, uint64_t seed);

    Status prepare(std::span<const float> logits);
    bool penalties_active() const;
    double uniform01();

    SamplingParams params_;
    size_t vocab_size_ = 0;
    uint64_t seed_ = 0;
    std::mt19937 rng_;
    std::vector<std::pair<int32_t, float>> bias_;  // flattened logit_bias (+ eog bans)

    // penalty window
    std::deque<int32_t> window_;
    std::unordered_map<int32_t, int32_t> counts_;

    // reused buffers
    std::vector<float> work_;                 // adjusted logits
    std::vector<Candidate> cand_;             // current candidates
    std::vector<float> key_;                  // top-p / typical-p sort keys
    std::vector<uint32_t> idx_, bucket_;
    std::vector<double> hist_;
    std::vector<Candidate> scratch_;
    bool sorted_ = false;                     // cand_ sorted by logit descending
};

}  // namespace realm::engine
