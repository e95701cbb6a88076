#include "sandbox/engine_backend.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

namespace realm::sandbox {

engine::SamplingParams to_engine_params(const SamplingParams& p) {
    engine::SamplingParams e;
    e.temperature = p.temperature > 0.f ? p.temperature : 0.f;
    e.top_p = p.top_p;
    e.min_p = p.min_p;
    e.top_k = p.top_k > 0 ? p.top_k : 0;
    e.repeat_penalty = p.repeat_penalty;
    e.penalty_last_n = p.repeat_last_n;
    e.seed = p.seed;
    e.frequency_penalty = p.frequency_penalty;
    e.presence_penalty = p.presence_penalty;
    e.typical_p = p.typical_p;
    e.logit_bias = p.logit_bias;
    return e;
}

namespace {

bool same_params(const SamplingParams& a, const SamplingParams& b) { return a == b; }

// What a model's sequences share: the loaded model, the batcher that runs their forward passes
// together, and live counts for the metrics.
struct Shared {
    std::shared_ptr<const engine::LoadedModel> lm;
    uint32_t n_ctx = 0;
    std::unique_ptr<engine::Batcher> batcher;
    std::atomic<size_t> sequences{0};
    std::atomic<size_t> kv_bytes{0};
};

class EngineSequence final : public Sequence {
public:
    EngineSequence(std::shared_ptr<Shared> sh, model::Sequence seq, std::shared_ptr<const std::atomic<bool>> cancel)
        : sh_(std::move(sh)), seq_(std::move(seq)), cancel_(std::move(cancel)) {
        sh_->sequences.fetch_add(1);
        sh_->kv_bytes.fetch_add(seq_.kv_bytes());
    }
    ~EngineSequence() override {
        sh_->sequences.fetch_sub(1);
        sh_->kv_bytes.fetch_sub(seq_.kv_bytes());
    }
    EngineSequence(const EngineSequence&) = delete;
    EngineSequence& operator=(const EngineSequence&) = delete;

    Status feed(std::span<const int32_t> tokens) override {
        if (tokens.empty()) return {};
        const auto n_vocab = static_cast<int64_t>(sh_->lm->model().hparams().n_vocab);
        for (int32_t t : tokens)
            if (t < 0 || t >= n_vocab) return make_error("token id " + std::to_string(t) + " is outside the vocabulary");
        if (tokens.size() > static_cast<size_t>(seq_.n_ctx() - seq_.n_past()))
            return make_error("context full: " + std::to_string(seq_.n_past()) + " + " + std::to_string(tokens.size()) +
                              " tokens > n_ctx " + std::to_string(seq_.n_ctx()));
        const uint32_t before = seq_.n_past();
        Status st = sh_->batcher->feed(seq_, tokens, cancel_.get());
        // A cancelled feed may have appended some chunks: keep the history in step with the cache.
        const size_t appended = seq_.n_past() - before;
        history_.insert(history_.end(), tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(appended));
        if (sampler_)
            for (size_t i = 0; i < appended; ++i) sampler_->accept(tokens[i]);
        if (!st) {
            logits_.reset();
            return st;
        }
        logits_ = seq_.logits();
        return {};
    }

    size_t length() const override { return history_.size(); }

    Result<std::span<const float>> logits() override {
        if (!logits_) return make_error("no logits before the first feed");
        return *logits_;
    }

    Result<int32_t> sample(const SamplingParams& p) override {
        if (!logits_) return make_error("nothing to sample from: no tokens fed yet");
        if (!sampler_ || !same_params(p, params_)) {
            auto s = engine::Sampler::create(to_engine_params(p), sh_->lm->model().hparams().n_vocab,
                                             sh_->lm->tokenizer().eog_ids());
            if (!s) return s.error();
            sampler_.emplace(std::move(*s));
            params_ = p;
            for (int32_t t : history_) sampler_->accept(t);
        }
        auto t = sampler_->sample(*logits_);
        if (!t) return t.error();
        // The token enters the penalty window when it is fed (step feeds it; EOG ends generation).
        return *t;
    }

private:
    std::shared_ptr<Shared> sh_;
    model::Sequence seq_;
    std::shared_ptr<const std::atomic<bool>> cancel_;
    std::optional<std::span<const float>> logits_;
    std::vector<int32_t> history_;
    std::optional<engine::Sampler> sampler_;
    SamplingParams params_;
};

class EngineModel final : public Model {
public:
    EngineModel(std::string name, std::shared_ptr<Shared> sh) : sh_(std::move(sh)) {
        const auto& tk = sh_->lm->tokenizer();
        info_.name = std::move(name);
        info_.n_vocab = static_cast<int32_t>(sh_->lm->model().hparams().n_vocab);
        info_.n_ctx = static_cast<int32_t>(sh_->n_ctx);
        info_.bos_token = tk.bos().value_or(-1);
        info_.eos_token = tk.eos().value_or(-1);
    }

    const ModelInfo& info() const override { return info_; }

    Result<std::vector<int32_t>> tokenize(std::string_view text, bool add_special, bool parse_special) override {
        return sh_->lm->tokenizer().encode(text, add_special, parse_special);
    }

    Result<std::string> detokenize(std::span<const int32_t> tokens, bool render_special) override {
        return sh_->lm->tokenizer().decode(tokens, render_special);
    }

    Result<std::string> token_piece(int32_t token) override {
        if (!sh_->lm->tokenizer().valid(token)) return make_error("token id " + std::to_string(token) + " is outside the vocabulary");
        return sh_->lm->tokenizer().token_to_piece(token, /*special=*/false);
    }

    Result<std::string> apply_chat_template(std::string_view messages_json, bool add_generation_prompt) override {
        auto j = nlohmann::json::parse(messages_json, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded() || !j.is_array()) return make_error("messages must be a JSON array");
        for (const auto& m : j) {
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content"))
                return make_error("each message needs a string \"role\" and a \"content\"");
        }
        return sh_->lm->render_chat(j, add_generation_prompt);
    }

    bool is_end_of_generation(int32_t token) const override { return sh_->lm->tokenizer().is_eog(token); }

    Result<std::unique_ptr<Sequence>> open_sequence(std::shared_ptr<const std::atomic<bool>> cancelled) override {
        auto seq = sh_->lm->model().new_sequence(sh_->n_ctx);
        if (!seq) return seq.error();
        return std::unique_ptr<Sequence>(std::make_unique<EngineSequence>(sh_, std::move(*seq), std::move(cancelled)));
    }

    EngineBackend::ModelStats stats() const {
        const engine::BatcherStats b = sh_->batcher->stats();
        return {info_.name, sh_->sequences.load(), sh_->kv_bytes.load(), b.waiting, b.steps, b.tokens, b.batched_steps,
                b.max_sequences_in_step};
    }

private:
    std::shared_ptr<Shared> sh_;
    ModelInfo info_;
};

}  // namespace

Status EngineBackend::add_model(const std::string& name, const std::string& path, const EngineModelOptions& opts) {
    auto lm = engine::LoadedModel::open(path, engine::LoadOptions{opts.n_threads, opts.chat_template_path, opts.weights});
    if (!lm) return lm.error();
    return add_model(name, std::shared_ptr<const engine::LoadedModel>(std::move(*lm)), opts.n_ctx);
}

Status EngineBackend::add_model(const std::string& name, std::shared_ptr<const engine::LoadedModel> model,
                                uint32_t n_ctx) {
    if (name.empty() || name.size() > 256) return make_error("model names must be 1..256 bytes");
    if (!model) return make_error("add_model: no model");
    auto sh = std::make_shared<Shared>();
    const uint32_t train = model->model().hparams().n_ctx_train;
    sh->n_ctx = n_ctx != 0 ? n_ctx : std::min<uint32_t>(train != 0 ? train : 4096, 4096);
    sh->lm = std::move(model);
    sh->batcher = std::make_unique<engine::Batcher>(sh->lm->model(), batching_);
    std::lock_guard<std::mutex> lock(mu_);
    if (models_.count(name)) return make_error("a model named '" + name + "' is already registered");
    auto m = std::make_shared<EngineModel>(name, std::move(sh));
    models_.emplace(name, m);
    engine_models_.push_back(std::move(m));
    return {};
}

void EngineBackend::allow(const std::string& tenant, const std::vector<std::string>& models) {
    std::lock_guard<std::mutex> lock(mu_);
    allow_[tenant].insert(models.begin(), models.end());
}

std::vector<std::string> EngineBackend::allowed_models(const std::string& tenant) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = allow_.find(tenant);
    if (it == allow_.end()) return {};
    return {it->second.begin(), it->second.end()};
}

std::vector<std::string> EngineBackend::model_names() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& [k, v] : models_) out.push_back(k);
    return out;
}

std::vector<EngineBackend::ModelStats> EngineBackend::stats() const {
    std::vector<std::shared_ptr<EngineModel>> models;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& m : engine_models_) models.push_back(std::static_pointer_cast<EngineModel>(m));
    }
    std::vector<ModelStats> out;
    for (const auto& m : models) out.push_back(m->stats());
    return out;
}

Result<std::shared_ptr<Model>> EngineBackend::find_model(std::string_view name) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(name);
    if (it == models_.end()) return make_error("no model named '" + std::string(name) + "'");
    return it->second;
}

}  // namespace realm::sandbox
