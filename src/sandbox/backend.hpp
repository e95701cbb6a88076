// The inference engine as the sandbox sees it. The engine layer implements these interfaces; the sandbox
// only ever hands guests opaque handles to them. Every method is called on the request's thread, from inside
// a host function, and must not throw (errors are values); the sandbox still catches anything thrown and
// turns it into a host error for that request only.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/result.hpp"

namespace realm::sandbox {

struct ModelInfo {
    std::string name;
    int32_t n_vocab = 0;
    int32_t n_ctx = 0;
    int32_t bos_token = -1;  // -1: none
    int32_t eos_token = -1;  // -1: none
};

// Mirrors realm_sampling_params (guest/include/realm_guest.h), already validated by the sandbox.
struct SamplingParams {
    float temperature = 0.8f;
    float top_p = 0.95f;
    float min_p = 0.05f;
    int32_t top_k = 40;
    float repeat_penalty = 1.0f;
    int32_t repeat_last_n = 64;
    uint64_t seed = 0;
    float frequency_penalty = 0.0f;  // finite; 0 disables
    float presence_penalty = 0.0f;   // finite; 0 disables
    float typical_p = 1.0f;          // (0, 1]; 1 disables
    // token -> added to its logit (finite or -inf); tokens are in [0, n_vocab), at most
    // REALM_MAX_LOGIT_BIAS entries (guest entries for the same token are summed).
    std::map<int32_t, float> logit_bias;

    bool operator==(const SamplingParams&) const = default;
};

// One KV-cache slot of one model, owned by one request.
class Sequence {
public:
    virtual ~Sequence() = default;
    // Appends tokens (already range-checked against n_vocab) and runs the forward pass.
    virtual Status feed(std::span<const int32_t> tokens) = 0;
    // Number of tokens fed so far.
    virtual size_t length() const = 0;
    // Logits after the last fed token (n_vocab values); valid until the next feed or close.
    virtual Result<std::span<const float>> logits() = 0;
    // Samples the next token from the current logits; does not feed it.
    virtual Result<int32_t> sample(const SamplingParams& params) = 0;
};

class Model {
public:
    virtual ~Model() = default;
    virtual const ModelInfo& info() const = 0;
    virtual Result<std::vector<int32_t>> tokenize(std::string_view text, bool add_special, bool parse_special) = 0;
    virtual Result<std::string> detokenize(std::span<const int32_t> tokens, bool render_special) = 0;
    // messages_json: a JSON array of {"role","content"} objects (already checked to be valid JSON).
    virtual Result<std::string> apply_chat_template(std::string_view messages_json, bool add_generation_prompt) = 0;
    // The text one generated token contributes to a stream (used by `step`): unlike detokenize of a
    // one-token list, no leading-space removal or space clean-up (those apply to the start of a text).
    // Control tokens give "". Default: detokenize({token}, false).
    virtual Result<std::string> token_piece(int32_t token) {
        const int32_t one[1] = {token};
        return detokenize(std::span<const int32_t>(one, 1), false);
    }
    virtual bool is_end_of_generation(int32_t token) const = 0;
    // `cancelled` (may be null) is the request's cancellation flag: a feed in progress stops at the
    // next engine step once it is set.
    virtual Result<std::unique_ptr<Sequence>> open_sequence(std::shared_ptr<const std::atomic<bool>> cancelled) = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    // Looks a model up by name. The sandbox has already checked the tenant may use `name`.
    // Returns an error (not a null pointer) when there is no such model.
    virtual Result<std::shared_ptr<Model>> find_model(std::string_view name) = 0;
};

}  // namespace realm::sandbox
