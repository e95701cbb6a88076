#include "engine/loaded_model.hpp"

#include <fstream>
#include <sstream>

namespace realm::engine {

const std::string_view kGemmaChatTemplate =
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{% if role == 'system' %}{% set role = 'user' %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

namespace {

std::string token_text_or_empty(const text::Tokenizer& t, std::optional<int32_t> id) {
    return id ? t.token_text(*id) : std::string();
}

}  // namespace

Result<std::unique_ptr<LoadedModel>> LoadedModel::open(const std::string& path, const LoadOptions& opts) {
    auto m = model::Model::open(path, model::LoadOptions{.n_threads = opts.n_threads, .weights = opts.weights});
    if (!m) return m.error();
    auto tok = text::Tokenizer::from_metadata((*m)->file().metadata());
    if (!tok) return make_error(path + ": " + tok.error().message);
    std::unique_ptr<LoadedModel> l(new LoadedModel());
    l->path_ = path;
    l->model_ = std::move(*m);
    l->tokenizer_.emplace(std::move(*tok));

    std::string source;
    if (!opts.chat_template_path.empty()) {
        std::ifstream in(opts.chat_template_path, std::ios::binary);
        if (!in) {
            l->template_error_ = "cannot read chat template file '" + opts.chat_template_path + "'";
            return l;
        }
        std::stringstream ss;
        ss << in.rdbuf();
        source = ss.str();
    } else if (auto t = l->model_->file().metadata().get_string("tokenizer.chat_template"); t.ok()) {
        source = std::string(*t);
    } else if (l->model_->hparams().arch == model::Arch::Gemma3) {
        source = std::string(kGemmaChatTemplate);
    } else {
        l->template_error_ = "the model has no chat template (tokenizer.chat_template); pass --chat-template FILE";
        return l;
    }
    auto tpl = text::ChatTemplate::parse(source);
    if (!tpl) {
        l->template_error_ = "chat template: " + tpl.error().message;
        return l;
    }
    l->template_.emplace(std::move(*tpl));
    return l;
}

Result<const text::ChatTemplate*> LoadedModel::chat_template() const {
    if (!template_) return make_error(template_error_);
    return &*template_;
}

Result<std::string> LoadedModel::render_chat(const nlohmann::json& messages, bool add_generation_prompt) const {
    auto tpl = chat_template();
    if (!tpl) return tpl.error();
    const text::Tokenizer& tk = *tokenizer_;
    nlohmann::json extra = {{"bos_token", token_text_or_empty(tk, tk.bos())},
                            {"eos_token", token_text_or_empty(tk, tk.eos())}};
    auto text = (*tpl)->render(messages, add_generation_prompt, extra);
    if (!text) return make_error("chat template: " + text.error().message);
    // The tokenizer adds BOS itself when the model asks for it; drop the template's copy so the
    // prompt does not start with two (llama.cpp does the same).
    const std::string bos = token_text_or_empty(tk, tk.bos());
    if (tk.add_bos() && !bos.empty() && text->starts_with(bos)) text->erase(0, bos.size());
    return std::move(*text);
}

}  // namespace realm::engine
