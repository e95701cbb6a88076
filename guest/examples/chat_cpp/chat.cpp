// chat_cpp: a C++ guest using the thin helpers of realm_guest.h. It renders the request's "messages" with the
// model's chat template, generates up to "max_tokens" tokens greedily, streams them, and answers
// {"text": "...", "tokens": N, "finish_reason": "stop"|"length"}.
// The request is parsed minimally (this example avoids a JSON library): it must contain
// "messages": [...] and may contain "max_tokens": N.
#define REALM_GUEST_CXX_HELPERS
#include "realm_guest.h"

#include <string>
#include <string_view>
#include <vector>

REALM_GUEST_DEFINE_ALLOC_AND_VERSION()

REALM_EXTERN_C REALM_EXPORT(realm_init) int32_t realm_init(void) { return REALM_OK; }

namespace {

// The JSON array that follows "key": in s (bracket matching that respects strings), or "" if absent.
std::string_view json_array_after(std::string_view s, std::string_view key) {
    size_t k = s.find(key);
    if (k == std::string_view::npos) return {};
    size_t b = s.find('[', k);
    if (b == std::string_view::npos) return {};
    int depth = 0;
    bool in_str = false;
    for (size_t i = b; i < s.size(); ++i) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') ++i;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[') {
            ++depth;
        } else if (c == ']' && --depth == 0) {
            return s.substr(b, i - b + 1);
        }
    }
    return {};
}

int64_t int_after(std::string_view s, std::string_view key, int64_t fallback) {
    size_t k = s.find(key);
    if (k == std::string_view::npos) return fallback;
    size_t i = k + key.size();
    while (i < s.size() && (s[i] == '"' || s[i] == ':' || s[i] == ' ')) ++i;
    int64_t v = 0;
    bool any = false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0'), any = true;
    return any ? v : fallback;
}

void json_escape(std::string& out, std::string_view s) {
    static const char* hex = "0123456789abcdef";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
        else if (c < 0x20) out += "\\u00", out += hex[c >> 4], out += hex[c & 15];
        else out += static_cast<char>(c);
    }
}

int32_t fail(int32_t rc) {
    realm_guest::log(REALM_LOG_ERROR, realm_guest::last_error());
    return rc;
}

}  // namespace

REALM_EXTERN_C REALM_EXPORT(realm_handle_request) int32_t realm_handle_request(const char* req, int32_t len) {
    const std::string_view body(req, static_cast<size_t>(len));
    const std::string_view messages = json_array_after(body, "\"messages\"");
    if (messages.empty()) {
        realm_guest::log(REALM_LOG_WARN, "request has no \"messages\" array");
        return realm_guest::respond(R"({"error":"request needs a messages array"})");
    }
    const int64_t max_tokens = int_after(body, "\"max_tokens\"", 16);

    const int32_t model = realm_model_open("tiny", 4);
    if (model < 0) return fail(model);
    std::string prompt;
    if (int32_t n = realm_guest::chat_template(model, messages, REALM_TEMPLATE_ADD_GENERATION_PROMPT, prompt); n < 0)
        return fail(n);
    std::vector<int32_t> tokens;
    if (int32_t n = realm_guest::tokenize(model, prompt, REALM_TOKENIZE_ADD_SPECIAL, tokens); n < 0) return fail(n);
    const int32_t seq = realm_seq_open(model);
    if (seq < 0) return fail(seq);
    if (int32_t n = realm_seq_feed(seq, tokens.data(), static_cast<int32_t>(tokens.size())); n < 0) return fail(n);

    realm_sampling_params params = realm_sampling_default();
    params.temperature = 0.0f;
    std::string text;
    int64_t generated = 0;
    const char* finish = "length";
    char piece[128];
    while (generated < max_tokens) {
        if (realm_cancelled()) return REALM_E_CANCELLED;
        realm_step_result r;
        const int32_t t = realm_step(seq, &params, sizeof params, &r, piece, sizeof piece);
        if (t < 0) return fail(t);
        if (r.flags & REALM_STEP_END_OF_GENERATION) {
            finish = "stop";
            break;
        }
        std::string_view p(piece, r.text_len <= static_cast<int32_t>(sizeof piece) ? static_cast<size_t>(r.text_len) : 0);
        if (int32_t e = realm_guest::emit(p); e < 0) return fail(e);
        text += p;
        ++generated;
    }
    realm_seq_close(seq);

    std::string out = "{\"text\":\"";
    json_escape(out, text);
    out += "\",\"tokens\":" + std::to_string(generated) + ",\"finish_reason\":\"" + finish + "\"}";
    const int32_t rc = realm_guest::respond(out);
    return rc < 0 ? fail(rc) : REALM_OK;
}
