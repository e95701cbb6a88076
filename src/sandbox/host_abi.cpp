// Guest ABI v1: the host functions of import module "realm" (docs/GUEST_ABI.md).
//
// Every function here is reached from untrusted wasm. Rules:
//  - pointers and lengths are u32 offsets into the caller's linear memory; every access is bounds-checked
//    against the memory's current size before anything is read or written (guest_bytes());
//  - failures are negative REALM_E_* codes plus a message the guest reads with realm_last_error;
//  - only host-side policy breaches (emit flood, deadline, host bug) end the request, by trapping;
//  - nothing may throw out of a callback (Rust would abort the process): thunk() catches everything.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

#include "../../guest/include/realm_guest.h"
#include "sandbox/internal.hpp"

namespace realm::sandbox {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int32_t kKindModel = 1;
constexpr int32_t kKindSequence = 2;
constexpr uint32_t kMaxSlots = 0xFFE;   // handle index field is 12 bits, 0 reserved
constexpr int32_t kMaxModelName = 256;

struct Call {
    RequestContext& r;
    wasmtime_context_t* cx;
    wasmtime_val_raw_t* a;
    wasm_trap_t* trap = nullptr;
    int32_t last_code = 0;  // code of the last fail(), for helpers that return optionals

    int32_t i32(size_t i) const { return a[i].i32; }
    uint32_t u32(size_t i) const { return static_cast<uint32_t>(a[i].i32); }

    int32_t fail(int32_t code, std::string message) {
        r.last_error = std::move(message);
        last_code = code;
        return code;
    }
    // Ends the request: the guest cannot catch this.
    int32_t end(ErrorKind kind, std::string message) {
        r.fatal = kind;
        r.fatal_message = message;
        trap = wasmtime_trap_new(message.data(), message.size());
        return 0;
    }

    // The guest range [ptr, ptr + count * elem), or nullptr when it does not lie inside linear memory.
    uint8_t* guest_bytes(uint32_t ptr, uint64_t count, uint64_t elem = 1) {
        if (!r.memory) return nullptr;
        const uint64_t size = wasmtime_memory_data_size(cx, &*r.memory);
        const uint64_t bytes = count * elem;  // count < 2^32 and elem <= 32: no overflow
        if (uint64_t{ptr} > size || bytes > size - ptr) return nullptr;
        return wasmtime_memory_data(cx, &*r.memory) + ptr;
    }

    bool cancelled() const { return r.request->cancelled && r.request->cancelled->load(std::memory_order_relaxed); }
    bool past_deadline() const { return Clock::now() >= r.deadline; }

    // A feed the engine stopped because the client went away is a cancellation, not a backend fault.
    int32_t feed_failed(const char* what, const Error& e) {
        if (cancelled()) return fail(REALM_E_CANCELLED, std::string(what) + ": request cancelled by the client");
        return fail(REALM_E_BACKEND, std::string(what) + ": " + e.message);
    }

    // Common gate before work that may take a while: 0 to proceed, else an error code (or a trap).
    int32_t gate(const char* what) {
        if (past_deadline())
            return end(ErrorKind::deadline, "time budget of " + std::to_string(r.request->limits.time_budget.count()) +
                                                " ms exceeded (during realm::" + what + ")");
        if (cancelled()) return fail(REALM_E_CANCELLED, "request cancelled by the client");
        return 0;
    }

    // Sized output (see realm_guest.h): returns the element count needed, writes only when it fits.
    int32_t put(uint32_t out, int32_t cap, const void* data, size_t count, size_t elem, const char* what) {
        if (cap < 0) return fail(REALM_E_INVALID_ARGUMENT, std::string(what) + ": negative capacity");
        if (count > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
            return fail(REALM_E_LIMIT, std::string(what) + ": output too large");
        uint8_t* dst = nullptr;
        if (cap > 0) {
            dst = guest_bytes(out, static_cast<uint32_t>(cap), elem);
            if (!dst) return fail(REALM_E_OUT_OF_BOUNDS, std::string(what) + ": output buffer outside guest memory");
        }
        if (count <= static_cast<size_t>(cap) && count > 0) std::memcpy(dst, data, count * elem);
        return static_cast<int32_t>(count);
    }
};

// ---- Handles: (tag << 16) | (kind << 12) | (index + 1); tag is random per request, so a handle from another
// request (or tenant) is rejected instead of silently aliasing one of ours.
int32_t make_handle(const RequestContext& r, int32_t kind, size_t index) {
    return static_cast<int32_t>((uint32_t{r.handle_tag} << 16) | (uint32_t(kind) << 12) | uint32_t(index + 1));
}

std::optional<size_t> decode_handle(Call& c, int32_t handle, int32_t kind, size_t table_size, const char* what) {
    const auto h = static_cast<uint32_t>(handle);
    const uint32_t tag = h >> 16, k = (h >> 12) & 0xF, idx = h & 0xFFF;
    if (handle <= 0 || tag != c.r.handle_tag) {
        c.fail(REALM_E_BAD_HANDLE, std::string(what) + ": invalid handle " + std::to_string(handle) +
                                        " (not issued to this request)");
        return std::nullopt;
    }
    if (k != static_cast<uint32_t>(kind) || idx == 0 || idx > table_size) {
        c.fail(REALM_E_BAD_HANDLE, std::string(what) + ": handle " + std::to_string(handle) + " is not a " +
                                        (kind == kKindModel ? "model" : "sequence") + " handle");
        return std::nullopt;
    }
    return idx - 1;
}

ModelSlot* model_arg(Call& c, int32_t handle, const char* what) {
    auto i = decode_handle(c, handle, kKindModel, c.r.models.size(), what);
    return i ? &c.r.models[*i] : nullptr;
}

SequenceSlot* seq_arg(Call& c, int32_t handle, const char* what) {
    auto i = decode_handle(c, handle, kKindSequence, c.r.sequences.size(), what);
    if (!i) return nullptr;
    auto& s = c.r.sequences[*i];
    if (s.closed) {
        c.fail(REALM_E_BAD_HANDLE, std::string(what) + ": sequence " + std::to_string(handle) + " is closed");
        return nullptr;
    }
    return &s;
}

// Reads n i32 token ids from guest memory and range-checks them against the vocabulary.
std::optional<std::vector<int32_t>> tokens_arg(Call& c, uint32_t ptr, int32_t n, const Model& m, const char* what) {
    if (n < 0 || static_cast<uint32_t>(n) > c.r.request->limits.max_tokens_per_call) {
        c.fail(n < 0 ? REALM_E_INVALID_ARGUMENT : REALM_E_LIMIT, std::string(what) + ": bad token count " + std::to_string(n));
        return std::nullopt;
    }
    const uint8_t* src = c.guest_bytes(ptr, static_cast<uint32_t>(n), 4);
    if (!src) {
        c.fail(REALM_E_OUT_OF_BOUNDS, std::string(what) + ": token array outside guest memory");
        return std::nullopt;
    }
    std::vector<int32_t> toks(static_cast<size_t>(n));
    if (n > 0) std::memcpy(toks.data(), src, toks.size() * 4);
    const int32_t vocab = m.info().n_vocab;
    for (int32_t t : toks) {
        if (t < 0 || t >= vocab) {
            c.fail(REALM_E_INVALID_ARGUMENT, std::string(what) + ": token " + std::to_string(t) +
                                                 " out of range [0, " + std::to_string(vocab) + ")");
            return std::nullopt;
        }
    }
    return toks;
}

// Reads realm_sampling_params (and the logit_bias array it points at) from guest memory and validates them.
// n_vocab: the sequence's model, for the logit_bias token range check.
std::optional<SamplingParams> params_arg(Call& c, uint32_t ptr, int32_t len, int32_t n_vocab, const char* what,
                                        uint32_t* step_flags = nullptr) {
    if (len != static_cast<int32_t>(sizeof(realm_sampling_params))) {
        c.fail(REALM_E_INVALID_ARGUMENT, std::string(what) + ": params_len must be " +
                                             std::to_string(sizeof(realm_sampling_params)));
        return std::nullopt;
    }
    const uint8_t* src = c.guest_bytes(ptr, sizeof(realm_sampling_params));
    if (!src) {
        c.fail(REALM_E_OUT_OF_BOUNDS, std::string(what) + ": params outside guest memory");
        return std::nullopt;
    }
    realm_sampling_params g;
    std::memcpy(&g, src, sizeof g);
    const bool finite = std::isfinite(g.temperature) && std::isfinite(g.top_p) && std::isfinite(g.min_p) &&
                        std::isfinite(g.repeat_penalty) && std::isfinite(g.frequency_penalty) &&
                        std::isfinite(g.presence_penalty) && std::isfinite(g.typical_p);
    if (!finite || g.top_p <= 0.f || g.top_p > 1.f || g.min_p < 0.f || g.min_p >= 1.f || g.repeat_penalty <= 0.f ||
        g.repeat_last_n < 0 || g.typical_p <= 0.f || g.typical_p > 1.f || (g.step_flags & ~REALM_STEP_NO_FEED) != 0) {
        c.fail(REALM_E_INVALID_ARGUMENT, std::string(what) + ": sampling parameters out of range");
        return std::nullopt;
    }
    if (step_flags) *step_flags = g.step_flags;
    SamplingParams p;
    p.temperature = g.temperature;
    p.top_p = g.top_p;
    p.min_p = g.min_p;
    p.top_k = g.top_k;
    p.repeat_penalty = g.repeat_penalty;
    p.repeat_last_n = g.repeat_last_n;
    p.seed = g.seed;
    p.frequency_penalty = g.frequency_penalty;
    p.presence_penalty = g.presence_penalty;
    p.typical_p = g.typical_p;
    if (g.n_logit_bias > REALM_MAX_LOGIT_BIAS) {
        c.fail(REALM_E_INVALID_ARGUMENT, std::string(what) + ": n_logit_bias " + std::to_string(g.n_logit_bias) +
                                             " exceeds " + std::to_string(REALM_MAX_LOGIT_BIAS));
        return std::nullopt;
    }
    if (g.n_logit_bias > 0) {
        // n <= 1024, so n * 8 cannot overflow; guest_bytes checks address + size against the memory.
        const uint8_t* b = c.guest_bytes(g.logit_bias, g.n_logit_bias * static_cast<uint32_t>(sizeof(realm_logit_bias)));
        if (!b) {
            c.fail(REALM_E_OUT_OF_BOUNDS, std::string(what) + ": logit_bias array outside guest memory");
            return std::nullopt;
        }
        std::vector<realm_logit_bias> entries(g.n_logit_bias);
        std::memcpy(entries.data(), b, entries.size() * sizeof(realm_logit_bias));
        for (const auto& e : entries) {
            if (e.token < 0 || e.token >= n_vocab) {
                c.fail(REALM_E_INVALID_ARGUMENT, std::string(what) + ": logit_bias token " + std::to_string(e.token) +
                                                     " out of range [0, " + std::to_string(n_vocab) + ")");
                return std::nullopt;
            }
            const bool ok = std::isfinite(e.bias) || (std::isinf(e.bias) && e.bias < 0.f);
            if (!ok) {
                c.fail(REALM_E_INVALID_ARGUMENT, std::string(what) + ": logit_bias for token " +
                                                     std::to_string(e.token) + " must be finite or -inf");
                return std::nullopt;
            }
            float& sum = p.logit_bias[e.token];
            sum += e.bias;
            if (std::isnan(sum) || (std::isinf(sum) && sum > 0.f)) {
                c.fail(REALM_E_INVALID_ARGUMENT, std::string(what) + ": logit_bias for token " +
                                                     std::to_string(e.token) + " overflows");
                return std::nullopt;
            }
        }
    }
    return p;
}

std::string sanitize_log(std::string_view s) {
    std::string out(s);
    for (char& ch : out) {
        const auto u = static_cast<unsigned char>(ch);
        if ((u < 0x20 && u != '\t') || u == 0x7f) ch = '?';
    }
    return out;
}

// ---- The functions -------------------------------------------------------------------------------------

int32_t h_last_error(Call& c) {
    const std::string msg = c.r.last_error;  // copy: put() may overwrite last_error on failure
    return c.put(c.u32(0), c.i32(1), msg.data(), msg.size(), 1, "last_error");
}

int32_t h_log(Call& c) {
    const int32_t level = c.i32(0);
    const int32_t len = c.i32(2);
    if (level < REALM_LOG_DEBUG || level > REALM_LOG_ERROR) return c.fail(REALM_E_INVALID_ARGUMENT, "log: bad level");
    if (len < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "log: negative length");
    const uint8_t* p = c.guest_bytes(c.u32(1), static_cast<uint32_t>(len));
    if (!p) return c.fail(REALM_E_OUT_OF_BOUNDS, "log: message outside guest memory");
    const Limits& lim = c.r.request->limits;
    if (c.r.log_lines >= lim.max_log_lines) return c.fail(REALM_E_LIMIT, "log: line limit reached; line dropped");
    ++c.r.log_lines;
    std::string_view msg(reinterpret_cast<const char*>(p), std::min<size_t>(static_cast<size_t>(len), lim.max_log_line_bytes));
    const std::string line = sanitize_log(msg);
    const auto lvl = static_cast<LogLevel>(level);
    if (c.r.request->on_log) {
        c.r.request->on_log(lvl, line);
    } else {
        static constexpr spdlog::level::level_enum map[] = {spdlog::level::debug, spdlog::level::info,
                                                            spdlog::level::warn, spdlog::level::err};
        spdlog::log(map[level], "[guest tenant={} request={}] {}", c.r.request->tenant, c.r.request->request_id, line);
    }
    return REALM_OK;
}

int32_t h_request_read(Call& c) {
    const std::string& body = c.r.request->body_json;
    return c.put(c.u32(0), c.i32(1), body.data(), body.size(), 1, "request_read");
}

int32_t h_response_write(Call& c) {
    const int32_t len = c.i32(1);
    if (c.r.response) return c.fail(REALM_E_STATE, "response_write: the response was already written");
    if (len < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "response_write: negative length");
    if (static_cast<uint32_t>(len) > c.r.request->limits.max_response_bytes)
        return c.fail(REALM_E_LIMIT, "response_write: response larger than " +
                                         std::to_string(c.r.request->limits.max_response_bytes) + " bytes");
    const uint8_t* p = c.guest_bytes(c.u32(0), static_cast<uint32_t>(len));
    if (!p) return c.fail(REALM_E_OUT_OF_BOUNDS, "response_write: buffer outside guest memory");
    std::string body(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    if (!nlohmann::json::accept(body)) return c.fail(REALM_E_INVALID_ARGUMENT, "response_write: not valid JSON");
    c.r.response = std::move(body);
    return REALM_OK;
}

int32_t h_emit(Call& c) {
    const int32_t len = c.i32(1);
    if (len < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "emit: negative length");
    const uint8_t* p = c.guest_bytes(c.u32(0), static_cast<uint32_t>(len));
    if (!p) return c.fail(REALM_E_OUT_OF_BOUNDS, "emit: chunk outside guest memory");
    if (c.cancelled()) return c.fail(REALM_E_CANCELLED, "emit: request cancelled by the client");
    const Limits& lim = c.r.request->limits;
    auto& st = c.r.stats;
    if (st.emits + 1 > lim.max_emits || st.emit_bytes + static_cast<uint64_t>(len) > lim.max_emit_bytes)
        return c.end(ErrorKind::emit_limit, "emit limit exceeded (" + std::to_string(lim.max_emits) + " chunks / " +
                                                std::to_string(lim.max_emit_bytes) + " bytes per request)");
    ++st.emits;
    st.emit_bytes += static_cast<uint64_t>(len);
    if (c.r.request->on_chunk) c.r.request->on_chunk(std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(len)));
    return REALM_OK;
}

int32_t h_cancelled(Call& c) { return c.cancelled() ? 1 : 0; }

int64_t h_now_ms(Call&) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t h_remaining_ms(Call& c) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c.r.deadline - Clock::now()).count();
    return std::max<int64_t>(0, left);
}

int32_t h_model_open(Call& c) {
    const int32_t len = c.i32(1);
    if (len <= 0 || len > kMaxModelName) return c.fail(REALM_E_INVALID_ARGUMENT, "model_open: name length must be 1..256");
    const uint8_t* p = c.guest_bytes(c.u32(0), static_cast<uint32_t>(len));
    if (!p) return c.fail(REALM_E_OUT_OF_BOUNDS, "model_open: name outside guest memory");
    const std::string name(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    const auto& allowed = c.r.request->allowed_models;
    // Same answer for "does not exist" and "not yours": no existence oracle across tenants.
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
        return c.fail(REALM_E_NOT_FOUND, "model_open: no model '" + sanitize_log(name) + "' for this tenant");
    for (size_t i = 0; i < c.r.models.size(); ++i)
        if (c.r.models[i].name == name) return make_handle(c.r, kKindModel, i);
    if (c.r.models.size() >= std::min<uint32_t>(c.r.request->limits.max_models, kMaxSlots))
        return c.fail(REALM_E_LIMIT, "model_open: too many models in one request");
    if (!c.r.backend) return c.fail(REALM_E_UNSUPPORTED, "model_open: no inference backend in this host");
    auto m = c.r.backend->find_model(name);
    if (!m) return c.fail(REALM_E_NOT_FOUND, "model_open: " + m.error().message);
    if (!*m) return c.fail(REALM_E_BACKEND, "model_open: backend returned no model");
    c.r.models.push_back(ModelSlot{std::move(*m), name});
    return make_handle(c.r, kKindModel, c.r.models.size() - 1);
}

int32_t h_model_info(Call& c) {
    ModelSlot* m = model_arg(c, c.i32(0), "model_info");
    if (!m) return c.last_code;
    const ModelInfo& info = m->model->info();
    const nlohmann::json j = {{"name", m->name},          {"n_vocab", info.n_vocab}, {"n_ctx", info.n_ctx},
                              {"bos_token", info.bos_token}, {"eos_token", info.eos_token}};
    const std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return c.put(c.u32(1), c.i32(2), s.data(), s.size(), 1, "model_info");
}

int32_t h_token_is_eog(Call& c) {
    ModelSlot* m = model_arg(c, c.i32(0), "token_is_eog");
    if (!m) return c.last_code;
    const int32_t t = c.i32(1);
    if (t < 0 || t >= m->model->info().n_vocab) return c.fail(REALM_E_INVALID_ARGUMENT, "token_is_eog: token out of range");
    return m->model->is_end_of_generation(t) ? 1 : 0;
}

int32_t h_tokenize(Call& c) {
    ModelSlot* m = model_arg(c, c.i32(0), "tokenize");
    if (!m) return c.last_code;
    const int32_t len = c.i32(2);
    const uint32_t flags = c.u32(3);
    if (flags & ~(REALM_TOKENIZE_ADD_SPECIAL | REALM_TOKENIZE_PARSE_SPECIAL))
        return c.fail(REALM_E_INVALID_ARGUMENT, "tokenize: unknown flags");
    if (len < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "tokenize: negative length");
    if (static_cast<uint32_t>(len) > c.r.request->limits.max_request_bytes)
        return c.fail(REALM_E_LIMIT, "tokenize: text too long");
    const uint8_t* p = c.guest_bytes(c.u32(1), static_cast<uint32_t>(len));
    if (!p) return c.fail(REALM_E_OUT_OF_BOUNDS, "tokenize: text outside guest memory");
    if (c.i32(5) < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "tokenize: negative capacity");
    if (c.i32(5) > 0 && !c.guest_bytes(c.u32(4), c.u32(5), 4))
        return c.fail(REALM_E_OUT_OF_BOUNDS, "tokenize: output buffer outside guest memory");
    if (int32_t g = c.gate("tokenize")) return g;
    auto toks = m->model->tokenize(std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(len)),
                                   flags & REALM_TOKENIZE_ADD_SPECIAL, flags & REALM_TOKENIZE_PARSE_SPECIAL);
    if (!toks) return c.fail(REALM_E_BACKEND, "tokenize: " + toks.error().message);
    if (toks->size() > c.r.request->limits.max_tokens_per_call) return c.fail(REALM_E_LIMIT, "tokenize: too many tokens");
    return c.put(c.u32(4), c.i32(5), toks->data(), toks->size(), 4, "tokenize");
}

int32_t h_detokenize(Call& c) {
    ModelSlot* m = model_arg(c, c.i32(0), "detokenize");
    if (!m) return c.last_code;
    const uint32_t flags = c.u32(3);
    if (flags & ~REALM_DETOKENIZE_RENDER_SPECIAL) return c.fail(REALM_E_INVALID_ARGUMENT, "detokenize: unknown flags");
    auto toks = tokens_arg(c, c.u32(1), c.i32(2), *m->model, "detokenize");
    if (!toks) return c.last_code;
    if (c.i32(5) < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "detokenize: negative capacity");
    if (c.i32(5) > 0 && !c.guest_bytes(c.u32(4), c.u32(5)))
        return c.fail(REALM_E_OUT_OF_BOUNDS, "detokenize: output buffer outside guest memory");
    if (int32_t g = c.gate("detokenize")) return g;
    auto text = m->model->detokenize(*toks, flags & REALM_DETOKENIZE_RENDER_SPECIAL);
    if (!text) return c.fail(REALM_E_BACKEND, "detokenize: " + text.error().message);
    return c.put(c.u32(4), c.i32(5), text->data(), text->size(), 1, "detokenize");
}

int32_t h_chat_template(Call& c) {
    ModelSlot* m = model_arg(c, c.i32(0), "chat_template");
    if (!m) return c.last_code;
    const int32_t len = c.i32(2);
    const uint32_t flags = c.u32(3);
    if (flags & ~REALM_TEMPLATE_ADD_GENERATION_PROMPT) return c.fail(REALM_E_INVALID_ARGUMENT, "chat_template: unknown flags");
    if (len < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "chat_template: negative length");
    if (static_cast<uint32_t>(len) > c.r.request->limits.max_request_bytes)
        return c.fail(REALM_E_LIMIT, "chat_template: messages too long");
    const uint8_t* p = c.guest_bytes(c.u32(1), static_cast<uint32_t>(len));
    if (!p) return c.fail(REALM_E_OUT_OF_BOUNDS, "chat_template: messages outside guest memory");
    if (c.i32(5) < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "chat_template: negative capacity");
    if (c.i32(5) > 0 && !c.guest_bytes(c.u32(4), c.u32(5)))
        return c.fail(REALM_E_OUT_OF_BOUNDS, "chat_template: output buffer outside guest memory");
    const std::string_view msgs(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    const auto parsed = nlohmann::json::parse(msgs, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded() || !parsed.is_array())
        return c.fail(REALM_E_INVALID_ARGUMENT, "chat_template: messages must be a JSON array");
    if (int32_t g = c.gate("chat_template")) return g;
    auto text = m->model->apply_chat_template(msgs, flags & REALM_TEMPLATE_ADD_GENERATION_PROMPT);
    if (!text) return c.fail(REALM_E_BACKEND, "chat_template: " + text.error().message);
    return c.put(c.u32(4), c.i32(5), text->data(), text->size(), 1, "chat_template");
}

int32_t h_seq_open(Call& c) {
    ModelSlot* m = model_arg(c, c.i32(0), "seq_open");
    if (!m) return c.last_code;
    if (c.r.sequences.size() >= std::min<uint32_t>(c.r.request->limits.max_sequences, kMaxSlots))
        return c.fail(REALM_E_LIMIT, "seq_open: too many sequences in one request");
    if (int32_t g = c.gate("seq_open")) return g;
    auto s = m->model->open_sequence(c.r.request->cancelled);
    if (!s) return c.fail(REALM_E_BACKEND, "seq_open: " + s.error().message);
    if (!*s) return c.fail(REALM_E_BACKEND, "seq_open: backend returned no sequence");
    c.r.sequences.push_back(SequenceSlot{std::move(*s), m->model, false});
    return make_handle(c.r, kKindSequence, c.r.sequences.size() - 1);
}

int32_t h_seq_close(Call& c) {
    SequenceSlot* s = seq_arg(c, c.i32(0), "seq_close");
    if (!s) return c.last_code;
    s->seq.reset();
    s->closed = true;
    return REALM_OK;
}

int32_t h_seq_feed(Call& c) {
    SequenceSlot* s = seq_arg(c, c.i32(0), "seq_feed");
    if (!s) return c.last_code;
    const int32_t n = c.i32(2);
    if (n < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "seq_feed: negative token count");
    if (static_cast<uint32_t>(n) > c.r.request->limits.max_tokens_per_call) return c.fail(REALM_E_LIMIT, "seq_feed: too many tokens");
    if (!c.guest_bytes(c.u32(1), static_cast<uint32_t>(n), 4)) return c.fail(REALM_E_OUT_OF_BOUNDS, "seq_feed: tokens outside guest memory");
    auto toks = tokens_arg(c, c.u32(1), n, *s->model, "seq_feed");
    if (!toks) return c.last_code;
    if (int32_t g = c.gate("seq_feed")) return g;
    if (auto st = s->seq->feed(*toks); !st) return c.feed_failed("seq_feed", st.error());
    const size_t len = s->seq->length();
    return len > static_cast<size_t>(std::numeric_limits<int32_t>::max()) ? std::numeric_limits<int32_t>::max()
                                                                          : static_cast<int32_t>(len);
}

int32_t h_seq_logits(Call& c) {
    SequenceSlot* s = seq_arg(c, c.i32(0), "seq_logits");
    if (!s) return c.last_code;
    if (s->seq->length() == 0) return c.fail(REALM_E_STATE, "seq_logits: no tokens fed yet");
    auto l = s->seq->logits();
    if (!l) return c.fail(REALM_E_BACKEND, "seq_logits: " + l.error().message);
    return c.put(c.u32(1), c.i32(2), l->data(), l->size(), sizeof(float), "seq_logits");
}

int32_t h_seq_top_k(Call& c) {
    SequenceSlot* s = seq_arg(c, c.i32(0), "seq_top_k");
    if (!s) return c.last_code;
    const int32_t k = c.i32(1);
    if (k <= 0) return c.fail(REALM_E_INVALID_ARGUMENT, "seq_top_k: k must be positive");
    const int32_t cap = c.i32(3);
    if (cap < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "seq_top_k: negative capacity");
    if (cap > 0 && !c.guest_bytes(c.u32(2), static_cast<uint32_t>(cap), sizeof(realm_top_logit)))
        return c.fail(REALM_E_OUT_OF_BOUNDS, "seq_top_k: output buffer outside guest memory");
    if (s->seq->length() == 0) return c.fail(REALM_E_STATE, "seq_top_k: no tokens fed yet");
    auto l = s->seq->logits();
    if (!l) return c.fail(REALM_E_BACKEND, "seq_top_k: " + l.error().message);
    const std::span<const float> logits = *l;
    const size_t kk = std::min<size_t>(static_cast<size_t>(k), logits.size());
    if (kk > static_cast<size_t>(cap)) return static_cast<int32_t>(kk);  // sized output: report, write nothing
    std::vector<int32_t> idx(logits.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(kk), idx.end(), [&](int32_t a, int32_t b) {
        return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
               (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
    });
    std::vector<realm_top_logit> out(kk);
    for (size_t i = 0; i < kk; ++i) out[i] = realm_top_logit{idx[i], logits[static_cast<size_t>(idx[i])]};
    return c.put(c.u32(2), cap, out.data(), out.size(), sizeof(realm_top_logit), "seq_top_k");
}

int32_t sample_checked(Call& c, SequenceSlot& s, const SamplingParams& p, const char* what) {
    if (s.seq->length() == 0) return c.fail(REALM_E_STATE, std::string(what) + ": no tokens fed yet");
    auto t = s.seq->sample(p);
    if (!t) return c.fail(REALM_E_BACKEND, std::string(what) + ": " + t.error().message);
    if (*t < 0 || *t >= s.model->info().n_vocab) return c.fail(REALM_E_BACKEND, std::string(what) + ": backend sampled an invalid token");
    return *t;
}

int32_t h_sample(Call& c) {
    SequenceSlot* s = seq_arg(c, c.i32(0), "sample");
    if (!s) return c.last_code;
    auto p = params_arg(c, c.u32(1), c.i32(2), s->model->info().n_vocab, "sample");
    if (!p) return c.last_code;
    if (int32_t g = c.gate("sample")) return g;
    return sample_checked(c, *s, *p, "sample");
}

int32_t h_step(Call& c) {
    SequenceSlot* s = seq_arg(c, c.i32(0), "step");
    if (!s) return c.last_code;
    uint32_t flags = 0;
    auto p = params_arg(c, c.u32(1), c.i32(2), s->model->info().n_vocab, "step", &flags);
    if (!p) return c.last_code;
    if (!c.guest_bytes(c.u32(3), sizeof(realm_step_result))) return c.fail(REALM_E_OUT_OF_BOUNDS, "step: result outside guest memory");
    const int32_t cap = c.i32(5);
    if (cap < 0) return c.fail(REALM_E_INVALID_ARGUMENT, "step: negative text capacity");
    if (cap > 0 && !c.guest_bytes(c.u32(4), static_cast<uint32_t>(cap))) return c.fail(REALM_E_OUT_OF_BOUNDS, "step: text buffer outside guest memory");
    if (int32_t g = c.gate("step")) return g;
    const int32_t tok = sample_checked(c, *s, *p, "step");
    if (tok < 0) return tok;
    const std::array<int32_t, 1> one{tok};
    auto piece = s->model->token_piece(tok);
    if (!piece) return c.fail(REALM_E_BACKEND, "step: " + piece.error().message);
    const bool eog = s->model->is_end_of_generation(tok);
    if (!eog && (flags & REALM_STEP_NO_FEED) == 0) {
        if (auto st = s->seq->feed(one); !st) return c.feed_failed("step", st.error());
    }
    const size_t text_len = std::min<size_t>(piece->size(), static_cast<size_t>(std::numeric_limits<int32_t>::max()));
    realm_step_result res{tok, eog ? REALM_STEP_END_OF_GENERATION : 0u, static_cast<int32_t>(text_len), 0};
    // Memory cannot move during a host call, but re-derive the pointers anyway: cheap and obviously safe.
    std::memcpy(c.guest_bytes(c.u32(3), sizeof res), &res, sizeof res);
    if (text_len > 0 && text_len <= static_cast<size_t>(cap)) std::memcpy(c.guest_bytes(c.u32(4), text_len), piece->data(), text_len);
    return tok;
}

// ---- Thunks ---------------------------------------------------------------------------------------------
template <auto Fn>
wasm_trap_t* thunk(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args, size_t) {
    wasmtime_context_t* cx = wasmtime_caller_context(caller);
    auto* r = static_cast<RequestContext*>(wasmtime_context_get_data(cx));
    Call c{*r, cx, args};
    ++r->stats.host_calls;
    try {
        if (!r->request) return wasmtime_trap_new("realm: no request", 17);
        auto v = Fn(c);
        if (c.trap) return c.trap;
        if constexpr (std::is_same_v<decltype(v), int64_t>) {
            args[0].i64 = v;
        } else {
            args[0].i32 = v;
        }
        return nullptr;
    } catch (const std::exception& e) {
        if (c.trap) wasm_trap_delete(c.trap);
        r->fatal = ErrorKind::host;
        r->fatal_message = std::string("host error in a realm import: ") + e.what();
    } catch (...) {
        if (c.trap) wasm_trap_delete(c.trap);
        r->fatal = ErrorKind::host;
        r->fatal_message = "host error in a realm import";
    }
    return wasmtime_trap_new(r->fatal_message.data(), r->fatal_message.size());
}

}  // namespace

const std::vector<HostFunction>& abi_v1_imports() {
    using enum V;
    static const std::vector<HostFunction> fns = {
        {"last_error", {i32, i32}, {i32}, thunk<h_last_error>},
        {"log", {i32, i32, i32}, {i32}, thunk<h_log>},
        {"request_read", {i32, i32}, {i32}, thunk<h_request_read>},
        {"response_write", {i32, i32}, {i32}, thunk<h_response_write>},
        {"emit", {i32, i32}, {i32}, thunk<h_emit>},
        {"cancelled", {}, {i32}, thunk<h_cancelled>},
        {"now_ms", {}, {i64}, thunk<h_now_ms>},
        {"remaining_ms", {}, {i64}, thunk<h_remaining_ms>},
        {"model_open", {i32, i32}, {i32}, thunk<h_model_open>},
        {"model_info", {i32, i32, i32}, {i32}, thunk<h_model_info>},
        {"token_is_eog", {i32, i32}, {i32}, thunk<h_token_is_eog>},
        {"tokenize", {i32, i32, i32, i32, i32, i32}, {i32}, thunk<h_tokenize>},
        {"detokenize", {i32, i32, i32, i32, i32, i32}, {i32}, thunk<h_detokenize>},
        {"chat_template", {i32, i32, i32, i32, i32, i32}, {i32}, thunk<h_chat_template>},
        {"seq_open", {i32}, {i32}, thunk<h_seq_open>},
        {"seq_close", {i32}, {i32}, thunk<h_seq_close>},
        {"seq_feed", {i32, i32, i32}, {i32}, thunk<h_seq_feed>},
        {"seq_logits", {i32, i32, i32}, {i32}, thunk<h_seq_logits>},
        {"seq_top_k", {i32, i32, i32, i32}, {i32}, thunk<h_seq_top_k>},
        {"sample", {i32, i32, i32}, {i32}, thunk<h_sample>},
        {"step", {i32, i32, i32, i32, i32, i32}, {i32}, thunk<h_step>},
    };
    return fns;
}

const std::vector<RequiredExport>& abi_v1_exports() {
    using enum V;
    static const std::vector<RequiredExport> ex = {
        {"realm_abi_version", {}, {i32}},
        {"realm_alloc", {i32}, {i32}},
        {"realm_free", {i32}, {}},
        {"realm_init", {}, {i32}},
        {"realm_handle_request", {i32, i32}, {i32}},
    };
    return ex;
}

}  // namespace realm::sandbox
