// A model ready for text generation: weights (model::Model), tokenizer and chat template, loaded
// from one GGUF file. Shared by `realm run`/`realm chat` and the sandbox's EngineBackend.
//
//   auto m = realm::engine::LoadedModel::open(path, {.n_threads = 4});
//   if (!m) { report(m.error()); return; }
//   auto prompt = (*m)->render_chat(messages, /*add_generation_prompt=*/true);   // BOS handled
//   auto ids = (*m)->tokenizer().encode(*prompt, true, true);
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "gguf/result.hpp"
#include "model/model.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace realm::engine {

// llama.cpp's built-in Gemma format, used for gemma3 files that ship without tokenizer.chat_template.
extern const std::string_view kGemmaChatTemplate;

struct LoadOptions {
    uint32_t n_threads = 0;           // 0: all cores
    std::string chat_template_path;   // Jinja file overriding the model's template; empty: the model's
    model::Weights weights = model::Weights::Rows16;
};

class LoadedModel {
public:
    static Result<std::unique_ptr<LoadedModel>> open(const std::string& path, const LoadOptions& opts = {});

    const model::Model& model() const { return *model_; }
    const text::Tokenizer& tokenizer() const { return *tokenizer_; }
    const std::string& path() const { return path_; }

    // The chat template, or why there is none (unreadable override file, parse error, missing).
    Result<const text::ChatTemplate*> chat_template() const;

    // Renders `messages` (a JSON array of {"role","content"}) with bos_token/eos_token set, and
    // drops the template's leading BOS text when the tokenizer adds BOS itself (as llama.cpp does),
    // so encode(text, add_special=true, parse_special=true) yields exactly one BOS.
    Result<std::string> render_chat(const nlohmann::json& messages, bool add_generation_prompt) const;

private:
    LoadedModel() = default;
    std::string path_;
    std::unique_ptr<model::Model> model_;
    std::optional<text::Tokenizer> tokenizer_;
    std::optional<text::ChatTemplate> template_;
    std::string template_error_;
};

}  // namespace realm::engine
