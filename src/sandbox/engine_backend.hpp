// realm::sandbox::Backend over the real inference engine: a registry of loaded models by name, with
// per-tenant allow lists, handing the sandbox Model/Sequence objects backed by model::Model,
// text::Tokenizer, the chat template and engine::Sampler.
//
//   auto be = std::make_shared<realm::sandbox::EngineBackend>();
//   be->add_model("smollm2", path, {.n_threads = 4});       // loads the GGUF
//   be->allow("acme", {"smollm2"});
//   Request r; r.tenant = "acme"; r.allowed_models = be->allowed_models("acme"); ...
//
// Sampling: each sequence keeps one engine::Sampler for as long as the guest passes the same
// parameters, so a run of `step`s with a fixed seed draws the same random stream as `realm run`
// with that seed. The sampler's penalty window sees every token fed (prompt included), as `realm run`.
// Forward passes: each model has an engine::Batcher, so the sequences of all requests on one model
// run their decode steps (and chunked prompts) together, one forward pass per step.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "engine/batcher.hpp"
#include "engine/loaded_model.hpp"
#include "engine/sampling.hpp"
#include "sandbox/backend.hpp"

namespace realm::sandbox {

struct EngineModelOptions {
    uint32_t n_threads = 0;          // 0: all cores
    uint32_t n_ctx = 0;              // context per sequence; 0: min(training context, 4096)
    std::string chat_template_path;  // overrides the model's template
    model::Weights weights = model::Weights::Rows16;  // where the matrices are read from
};

// Maps the ABI's sampling parameters onto the engine's (temperature <= 0: greedy; top_k <= 0: off;
// penalties, typical_p and logit_bias pass through unchanged).
engine::SamplingParams to_engine_params(const SamplingParams& p);

class EngineBackend final : public Backend {
public:
    EngineBackend() = default;

    // Loads a GGUF and registers it under `name` (non-empty, unique).
    Status add_model(const std::string& name, const std::string& path, const EngineModelOptions& opts = {});
    // Registers an already loaded model.
    Status add_model(const std::string& name, std::shared_ptr<const engine::LoadedModel> model, uint32_t n_ctx = 0);

    // Tenant allow lists. A tenant with no list may use nothing.
    void allow(const std::string& tenant, const std::vector<std::string>& models);
    std::vector<std::string> allowed_models(const std::string& tenant) const;
    std::vector<std::string> model_names() const;

    Result<std::shared_ptr<Model>> find_model(std::string_view name) override;

    // Batching of models added from now on.
    void set_batching(const engine::BatcherOptions& opts) { batching_ = opts; }

    // Live figures per model (for metrics).
    struct ModelStats {
        std::string name;
        size_t sequences = 0;      // open sequences (requests holding KV)
        size_t kv_bytes = 0;       // their KV cache memory
        size_t waiting = 0;        // feeds queued or running in the batcher
        uint64_t steps = 0;        // forward passes run
        uint64_t tokens = 0;       // tokens processed by them
        uint64_t batched_steps = 0;
        size_t max_sequences_in_step = 0;
    };
    std::vector<ModelStats> stats() const;

private:
    mutable std::mutex mu_;
    std::map<std::string, std::shared_ptr<Model>, std::less<>> models_;
    std::map<std::string, std::set<std::string>> allow_;
    std::vector<std::shared_ptr<Model>> engine_models_;  // the EngineModels, in order of addition
    engine::BatcherOptions batching_;
};

}  // namespace realm::sandbox
