// TEST DOUBLE — a tiny deterministic stand-in for the inference engine, for sandbox tests only.
// Vocabulary: the 256 byte values plus BOS (256) and EOS (257). Its "forward pass" is a fixed function of the
// sequence length: the top logit is 'a' + len % 26 until the sequence holds 32 tokens, then EOS. Model "slow" is the same with a 20 ms sleep in every feed.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sandbox/backend.hpp"

namespace realm::sandbox::testing {

inline std::atomic<int> g_live_sequences{0};

class TinySequence final : public Sequence {
public:
    TinySequence(int32_t n_vocab, int32_t n_ctx, std::chrono::milliseconds delay)
        : n_vocab_(n_vocab), n_ctx_(n_ctx), delay_(delay) {
        ++g_live_sequences;
    }
    ~TinySequence() override { --g_live_sequences; }

    Status feed(std::span<const int32_t> tokens) override {
        if (delay_.count() > 0) std::this_thread::sleep_for(delay_);  // a "slow forward pass"
        if (tokens_.size() + tokens.size() > static_cast<size_t>(n_ctx_)) return make_error("context full");
        tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
        logits_.assign(static_cast<size_t>(n_vocab_), 0.f);
        const int32_t target = tokens_.size() >= 32 ? 257 : 'a' + static_cast<int32_t>(tokens_.size() % 26);
        for (int32_t i = 0; i < n_vocab_; ++i) logits_[static_cast<size_t>(i)] = -0.01f * static_cast<float>(std::abs(i - target));
        logits_[static_cast<size_t>(target)] = 10.f;
        return {};
    }
    size_t length() const override { return tokens_.size(); }
    Result<std::span<const float>> logits() override {
        if (tokens_.empty()) return make_error("no logits before the first feed");
        return std::span<const float>(logits_);
    }
    Result<int32_t> sample(const SamplingParams& p) override {
        if (tokens_.empty()) return make_error("nothing to sample from");
        // logit_bias is applied (so tests can see it reach the backend); the penalties are ignored.
        std::vector<float> l = logits_;
        for (const auto& [tok, bias] : p.logit_bias) l[static_cast<size_t>(tok)] += bias;
        const auto best = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
        if (p.temperature <= 0.f) return best;
        // "Random" among the top three, fully determined by the seed and the length.
        const uint64_t r = (p.seed * 6364136223846793005ull + tokens_.size() * 1442695040888963407ull) >> 33;
        const int32_t cand = best + static_cast<int32_t>(r % 3) - 1;
        return std::clamp(cand, 0, n_vocab_ - 1);
    }

private:
    int32_t n_vocab_, n_ctx_;
    std::chrono::milliseconds delay_;
    std::vector<int32_t> tokens_;
    std::vector<float> logits_;
};

class TinyModel final : public Model {
public:
    explicit TinyModel(std::string name, std::chrono::milliseconds feed_delay = {}) : delay_(feed_delay) {
        info_ = ModelInfo{std::move(name), 258, 512, 256, 257};
    }
    const ModelInfo& info() const override { return info_; }
    Result<std::vector<int32_t>> tokenize(std::string_view text, bool add_special, bool) override {
        std::vector<int32_t> out;
        if (add_special) out.push_back(256);
        for (unsigned char ch : text) out.push_back(ch);
        return out;
    }
    Result<std::string> detokenize(std::span<const int32_t> tokens, bool render_special) override {
        std::string s;
        for (int32_t t : tokens) {
            if (t < 256) s.push_back(static_cast<char>(t));
            else if (render_special) s += t == 256 ? "<s>" : "</s>";
        }
        return s;
    }
    Result<std::string> apply_chat_template(std::string_view messages_json, bool add_generation_prompt) override {
        const auto j = nlohmann::json::parse(messages_json, nullptr, false);
        if (j.is_discarded() || !j.is_array()) return make_error("messages must be an array");
        std::string s;
        for (const auto& m : j) {
            if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
                !m["content"].is_string())
                return make_error("each message needs string role and content");
            s += "<|" + m["role"].get<std::string>() + "|>" + m["content"].get<std::string>() + "\n";
        }
        if (add_generation_prompt) s += "<|assistant|>";
        return s;
    }
    bool is_end_of_generation(int32_t token) const override { return token == 257; }
    Result<std::unique_ptr<Sequence>> open_sequence(std::shared_ptr<const std::atomic<bool>>) override {
        return std::unique_ptr<Sequence>(std::make_unique<TinySequence>(info_.n_vocab, info_.n_ctx, delay_));
    }

private:
    ModelInfo info_;
    std::chrono::milliseconds delay_;
};

class TinyBackend final : public Backend {
public:
    Result<std::shared_ptr<Model>> find_model(std::string_view name) override {
        if (name == "slow") return std::shared_ptr<Model>(std::make_shared<TinyModel>("slow", std::chrono::milliseconds(20)));
        if (name != "tiny" && name != "secret") return make_error("no model named '" + std::string(name) + "'");
        return std::shared_ptr<Model>(std::make_shared<TinyModel>(std::string(name)));
    }
};

}  // namespace realm::sandbox::testing
