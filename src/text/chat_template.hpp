// Chat-template rendering (tokenizer.chat_template from GGUF metadata), configured like
// HF transformers' apply_chat_template: trim_blocks + lstrip_blocks, loopcontrols, the
// `generation` tag, raise_exception / strftime_now globals, tojson = json.dumps(ensure_ascii=False).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "gguf/result.hpp"
#include "text/jinja.hpp"

namespace realm::text {

class ChatTemplate {
public:
    // Syntax errors and unsupported constructs (naming the construct and line) are errors here.
    static Result<ChatTemplate> parse(std::string_view source);

    // Variables: messages, add_generation_prompt, then every member of `extra` (bos_token,
    // eos_token, tools, ...; an `extra` member may override nothing above).
    // nlohmann::json sorts object keys; use render_ordered to keep the caller's key order
    // (it matters for templates that iterate message/tool dicts or print them with tojson).
    Result<std::string> render(const nlohmann::json& messages, bool add_generation_prompt,
                               const nlohmann::json& extra = nlohmann::json::object()) const;
    Result<std::string> render_ordered(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                       const nlohmann::ordered_json& extra = nlohmann::ordered_json::object(),
                                       const jinja::RenderOptions& options = {}) const;

private:
    explicit ChatTemplate(jinja::Template t) : template_(std::move(t)) {}
    jinja::Template template_;
};

}  // namespace realm::text
