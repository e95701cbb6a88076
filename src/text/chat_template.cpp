#include "text/chat_template.hpp"

namespace realm::text {

Result<ChatTemplate> ChatTemplate::parse(std::string_view source) {
    jinja::ParseOptions opt;
    opt.trim_blocks = true;
    opt.lstrip_blocks = true;
    auto t = jinja::Template::parse(source, opt);
    if (!t) return t.error();
    return ChatTemplate(std::move(t).value());
}

Result<std::string> ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                         const nlohmann::json& extra) const {
    // Round-trip through text: the simplest exact conversion between the two json flavours.
    nlohmann::ordered_json m, e;
    try {
        m = nlohmann::ordered_json::parse(messages.dump());
        e = nlohmann::ordered_json::parse(extra.dump());
    } catch (const std::exception& ex) {
        return make_error(std::string("chat template: bad JSON input: ") + ex.what());
    }
    return render_ordered(m, add_generation_prompt, e);
}

Result<std::string> ChatTemplate::render_ordered(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                                 const nlohmann::ordered_json& extra,
                                                 const jinja::RenderOptions& options) const {
    if (!messages.is_array()) return make_error("chat template: messages must be a JSON array");
    if (!extra.is_null() && !extra.is_object()) return make_error("chat template: extra must be a JSON object");
    nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
    ctx["messages"] = messages;
    ctx["add_generation_prompt"] = add_generation_prompt;
    if (extra.is_object())
        for (auto it = extra.begin(); it != extra.end(); ++it)
            if (it.key() != "messages" && it.key() != "add_generation_prompt") ctx[it.key()] = it.value();
    return template_.render(ctx, options);
}

}  // namespace realm::text
