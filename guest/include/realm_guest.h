/*
 * realm_guest.h — Realm guest ABI v1 (see docs/GUEST_ABI.md for the full reference).
 *
 * A Realm guest is a wasm32 core module (clang-19 --target=wasm32-wasi -mexec-model=reactor) that imports
 * host functions from the module "realm" and exports:
 *
 *   memory                                  its linear memory
 *   int32_t realm_abi_version(void)         must return REALM_ABI_VERSION (1)
 *   int32_t realm_alloc(int32_t size)       guest allocator (the host places the request with it)
 *   void    realm_free(int32_t ptr)
 *   int32_t realm_init(void)                0 or a negative REALM_E_* code
 *   int32_t realm_handle_request(int32_t ptr, int32_t len)   0 or a negative REALM_E_* code
 *
 * Use REALM_GUEST_DEFINE_ALLOC_AND_VERSION() once in a translation unit to get the version and allocator
 * exports backed by malloc/free.
 *
 * The constants and struct layouts below are shared with the host (which includes this header as C++ on a
 * 64-bit target; the static asserts pin the layouts). The import declarations exist only when compiling
 * for wasm.
 */
#ifndef REALM_GUEST_H
#define REALM_GUEST_H

#include <stddef.h>
#include <stdint.h>

#define REALM_ABI_VERSION 1

/* ---- Error codes: every import returns >= 0 on success, one of these on failure. ------------------- */
#define REALM_OK 0
#define REALM_E_INVALID_ARGUMENT (-1) /* a value is out of its documented range, or malformed input    */
#define REALM_E_OUT_OF_BOUNDS (-2)    /* a (pointer, length) does not lie inside the guest's memory     */
#define REALM_E_BAD_HANDLE (-3)       /* unknown, closed, wrong-kind or foreign (other request) handle  */
#define REALM_E_NOT_FOUND (-4)        /* no such model for this tenant                                  */
#define REALM_E_LIMIT (-5)            /* a per-request quota (handles, log lines, sizes) is exhausted   */
#define REALM_E_STATE (-6)            /* call not valid now (e.g. response already written)             */
#define REALM_E_CANCELLED (-7)        /* the client cancelled the request                               */
#define REALM_E_UNSUPPORTED (-8)      /* the backend does not support this operation                    */
#define REALM_E_BACKEND (-9)          /* the inference engine failed; see realm_last_error              */

/* ---- Log levels -------------------------------------------------------------------------------------- */
#define REALM_LOG_DEBUG 0
#define REALM_LOG_INFO 1
#define REALM_LOG_WARN 2
#define REALM_LOG_ERROR 3

/* ---- Flags ------------------------------------------------------------------------------------------- */
#define REALM_TOKENIZE_ADD_SPECIAL 1u   /* add BOS/EOS as the model's tokenizer does                   */
#define REALM_TOKENIZE_PARSE_SPECIAL 2u /* recognise special-token text such as <|im_start|>           */
#define REALM_DETOKENIZE_RENDER_SPECIAL 1u /* render special tokens as their text instead of dropping them */
#define REALM_TEMPLATE_ADD_GENERATION_PROMPT 1u
#define REALM_STEP_NO_FEED 1u /* realm_sampling_params.step_flags: step samples but does not feed the token
                                (the last token a request will take needs no forward pass)        */
#define REALM_STEP_END_OF_GENERATION 1u /* realm_step_result.flags: the sampled token ends generation  */

/* ---- Structs passed by pointer (little-endian, natural alignment, sizes fixed by the ABI) ------------ */
/* One logit_bias entry: `bias` is added to the token's logit before sampling; -INFINITY bans the token. */
typedef struct realm_logit_bias {
    int32_t token; /* [0, n_vocab)                                                */
    float bias;    /* finite or -INFINITY                                         */
} realm_logit_bias; /* 8 bytes */

#define REALM_MAX_LOGIT_BIAS 1024u /* most entries one realm_sampling_params may carry */

typedef struct realm_sampling_params {
    float temperature;    /* offset  0: <= 0: greedy (argmax)                        */
    float top_p;          /* offset  4: (0, 1]; 1 disables                           */
    float min_p;          /* offset  8: [0, 1); 0 disables                           */
    int32_t top_k;        /* offset 12: <= 0 disables                                */
    float repeat_penalty; /* offset 16: > 0; 1 disables                              */
    int32_t repeat_last_n;/* offset 20: >= 0; trailing tokens the penalties look at  */
    uint64_t seed;        /* offset 24: same seed + same inputs = same token         */
    float frequency_penalty; /* offset 32: finite; 0 disables (subtracts count * it) */
    float presence_penalty;  /* offset 36: finite; 0 disables (subtracts it once)    */
    float typical_p;      /* offset 40: (0, 1]; 1 disables                           */
    uint32_t n_logit_bias;/* offset 44: entries at logit_bias, <= REALM_MAX_LOGIT_BIAS */
    uint32_t logit_bias;  /* offset 48: guest address of realm_logit_bias[n_logit_bias]
                             (a wasm32 pointer; ignored when n_logit_bias == 0)      */
    uint32_t step_flags;  /* offset 52: 0 or REALM_STEP_NO_FEED (step only); other bits must be 0 */
} realm_sampling_params; /* 56 bytes; params_len must be sizeof(realm_sampling_params) */

typedef struct realm_top_logit {
    int32_t token;
    float logit;
} realm_top_logit; /* 8 bytes */

typedef struct realm_step_result {
    int32_t token;
    uint32_t flags;    /* REALM_STEP_* */
    int32_t text_len;  /* bytes of the token's text; written to text_ptr only if text_len <= text_cap */
    int32_t reserved;  /* 0 */
} realm_step_result; /* 16 bytes */

#ifdef __cplusplus
static_assert(sizeof(realm_sampling_params) == 56, "ABI: realm_sampling_params is 56 bytes");
static_assert(offsetof(realm_sampling_params, seed) == 24, "ABI: realm_sampling_params layout");
static_assert(offsetof(realm_sampling_params, frequency_penalty) == 32, "ABI: realm_sampling_params layout");
static_assert(offsetof(realm_sampling_params, typical_p) == 40, "ABI: realm_sampling_params layout");
static_assert(offsetof(realm_sampling_params, n_logit_bias) == 44, "ABI: realm_sampling_params layout");
static_assert(offsetof(realm_sampling_params, logit_bias) == 48, "ABI: realm_sampling_params layout");
static_assert(offsetof(realm_sampling_params, step_flags) == 52, "ABI: realm_sampling_params layout");
static_assert(sizeof(realm_logit_bias) == 8, "ABI: realm_logit_bias is 8 bytes");
static_assert(sizeof(realm_top_logit) == 8, "ABI: realm_top_logit is 8 bytes");
static_assert(sizeof(realm_step_result) == 16, "ABI: realm_step_result is 16 bytes");
#else
_Static_assert(sizeof(realm_sampling_params) == 56, "ABI: realm_sampling_params is 56 bytes");
_Static_assert(offsetof(realm_sampling_params, seed) == 24, "ABI: realm_sampling_params layout");
_Static_assert(offsetof(realm_sampling_params, frequency_penalty) == 32, "ABI: realm_sampling_params layout");
_Static_assert(offsetof(realm_sampling_params, typical_p) == 40, "ABI: realm_sampling_params layout");
_Static_assert(offsetof(realm_sampling_params, n_logit_bias) == 44, "ABI: realm_sampling_params layout");
_Static_assert(offsetof(realm_sampling_params, logit_bias) == 48, "ABI: realm_sampling_params layout");
_Static_assert(offsetof(realm_sampling_params, step_flags) == 52, "ABI: realm_sampling_params layout");
_Static_assert(sizeof(realm_logit_bias) == 8, "ABI: realm_logit_bias is 8 bytes");
_Static_assert(sizeof(realm_top_logit) == 8, "ABI: realm_top_logit is 8 bytes");
_Static_assert(sizeof(realm_step_result) == 16, "ABI: realm_step_result is 16 bytes");
#endif

/* ---- Imports (module "realm") ------------------------------------------------------------------------ */
#if defined(__wasm__)
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REALM_IMPORT(name) __attribute__((import_module("realm"), import_name(#name)))
#define REALM_EXPORT(name) __attribute__((export_name(#name), visibility("default")))

/* Buffer convention ("sized output"): functions that produce a variable amount of data take (out, cap)
 * and return the size needed (bytes, or elements where stated). They write the output only when it fits
 * (needed <= cap); otherwise nothing is written and the guest retries with a bigger buffer. */

/* Diagnostics */
REALM_IMPORT(last_error) int32_t realm_last_error(char* out, int32_t cap); /* message of the last failed call */
REALM_IMPORT(log) int32_t realm_log(int32_t level, const char* msg, int32_t len);

/* Request / response / streaming */
REALM_IMPORT(request_read) int32_t realm_request_read(char* out, int32_t cap); /* sized output, bytes */
REALM_IMPORT(response_write) int32_t realm_response_write(const char* json, int32_t len); /* once, valid JSON */
REALM_IMPORT(emit) int32_t realm_emit(const char* chunk, int32_t len);
REALM_IMPORT(cancelled) int32_t realm_cancelled(void);     /* 1 if the client went away, else 0 */
REALM_IMPORT(now_ms) int64_t realm_now_ms(void);           /* Unix time, milliseconds */
REALM_IMPORT(remaining_ms) int64_t realm_remaining_ms(void); /* time left in this request's budget */

/* Models and text */
REALM_IMPORT(model_open) int32_t realm_model_open(const char* name, int32_t len); /* handle */
REALM_IMPORT(model_info) int32_t realm_model_info(int32_t model, char* out, int32_t cap); /* sized, JSON */
REALM_IMPORT(token_is_eog) int32_t realm_token_is_eog(int32_t model, int32_t token); /* 1/0 */
REALM_IMPORT(tokenize) int32_t realm_tokenize(int32_t model, const char* text, int32_t len, uint32_t flags,
                                              int32_t* out, int32_t cap); /* sized, tokens */
REALM_IMPORT(detokenize) int32_t realm_detokenize(int32_t model, const int32_t* tokens, int32_t n,
                                                  uint32_t flags, char* out, int32_t cap); /* sized, bytes */
REALM_IMPORT(chat_template) int32_t realm_chat_template(int32_t model, const char* messages_json, int32_t len,
                                                        uint32_t flags, char* out, int32_t cap); /* sized */

/* Sequences (a KV-cache slot of one model) */
REALM_IMPORT(seq_open) int32_t realm_seq_open(int32_t model); /* handle */
REALM_IMPORT(seq_close) int32_t realm_seq_close(int32_t seq);
REALM_IMPORT(seq_feed) int32_t realm_seq_feed(int32_t seq, const int32_t* tokens, int32_t n); /* new length */
REALM_IMPORT(seq_logits) int32_t realm_seq_logits(int32_t seq, float* out, int32_t cap); /* sized, floats */
REALM_IMPORT(seq_top_k) int32_t realm_seq_top_k(int32_t seq, int32_t k, realm_top_logit* out, int32_t cap);
REALM_IMPORT(sample) int32_t realm_sample(int32_t seq, const realm_sampling_params* params, int32_t params_len);
REALM_IMPORT(step) int32_t realm_step(int32_t seq, const realm_sampling_params* params, int32_t params_len,
                                      realm_step_result* result, char* text, int32_t text_cap); /* token */

#ifdef __cplusplus
#define REALM_EXTERN_C extern "C"
#else
#define REALM_EXTERN_C
#endif

/* Defines the realm_abi_version, realm_alloc and realm_free exports (malloc-backed). Use it once, at file
 * scope. In C++, define the other exports with REALM_EXTERN_C too so their symbols are unmangled. */
#define REALM_GUEST_DEFINE_ALLOC_AND_VERSION()                                                          \
    REALM_EXTERN_C REALM_EXPORT(realm_abi_version) int32_t realm_abi_version(void) {                   \
        return REALM_ABI_VERSION;                                                                      \
    }                                                                                                  \
    REALM_EXTERN_C REALM_EXPORT(realm_alloc) int32_t realm_alloc(int32_t size) {                       \
        return size < 0 ? 0 : (int32_t)(intptr_t)malloc((size_t)size);                               \
    }                                                                                                  \
    REALM_EXTERN_C REALM_EXPORT(realm_free) void realm_free(int32_t ptr) { free((void*)(intptr_t)ptr); }

static inline void realm_log_str(int32_t level, const char* s) {
    int32_t n = 0;
    while (s[n]) ++n;
    realm_log(level, s, n);
}

static inline realm_sampling_params realm_sampling_default(void) {
    realm_sampling_params p;
    p.temperature = 0.8f;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.top_k = 40;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 0;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.typical_p = 1.0f;
    p.n_logit_bias = 0;
    p.logit_bias = 0;
    p.step_flags = 0;
    return p;
}

#ifdef __cplusplus
}  /* extern "C" */

/* ---- Thin C++ helpers (need the wasm32 libc++: -stdlib=libc++) ------------------------------------- */
#if defined(REALM_GUEST_CXX_HELPERS)
#include <string>
#include <string_view>
#include <vector>

namespace realm_guest {

inline std::string last_error() {
    std::string s(256, '\0');
    int32_t n = realm_last_error(s.data(), (int32_t)s.size());
    s.resize(n < 0 ? 0 : (n > (int32_t)s.size() ? s.size() : (size_t)n));
    return s;
}

inline void log(int32_t level, std::string_view msg) { realm_log(level, msg.data(), (int32_t)msg.size()); }

/* Calls a sized-output function twice at most: once with a guess, once with the exact size. */
template <class T, class F>
inline int32_t sized(std::vector<T>& out, F&& call, size_t guess = 256) {
    out.resize(guess);
    int32_t n = call(out.data(), (int32_t)out.size());
    if (n > (int32_t)out.size()) {
        out.resize((size_t)n);
        n = call(out.data(), (int32_t)out.size());
    }
    if (n >= 0 && n <= (int32_t)out.size()) out.resize((size_t)n);
    return n;
}

inline int32_t request(std::string& out) {
    std::vector<char> buf;
    int32_t n = sized(buf, [](char* p, int32_t c) { return realm_request_read(p, c); }, 4096);
    if (n >= 0) out.assign(buf.begin(), buf.end());
    return n;
}

inline int32_t respond(std::string_view json) { return realm_response_write(json.data(), (int32_t)json.size()); }
inline int32_t emit(std::string_view chunk) { return realm_emit(chunk.data(), (int32_t)chunk.size()); }

inline int32_t tokenize(int32_t model, std::string_view text, uint32_t flags, std::vector<int32_t>& out) {
    return sized(out, [&](int32_t* p, int32_t c) {
        return realm_tokenize(model, text.data(), (int32_t)text.size(), flags, p, c);
    }, text.size() + 8);
}

inline int32_t detokenize(int32_t model, const std::vector<int32_t>& toks, uint32_t flags, std::string& out) {
    std::vector<char> buf;
    int32_t n = sized(buf, [&](char* p, int32_t c) {
        return realm_detokenize(model, toks.data(), (int32_t)toks.size(), flags, p, c);
    }, toks.size() * 8 + 16);
    if (n >= 0) out.assign(buf.begin(), buf.end());
    return n;
}

inline int32_t chat_template(int32_t model, std::string_view messages_json, uint32_t flags, std::string& out) {
    std::vector<char> buf;
    int32_t n = sized(buf, [&](char* p, int32_t c) {
        return realm_chat_template(model, messages_json.data(), (int32_t)messages_json.size(), flags, p, c);
    }, messages_json.size() * 2 + 256);
    if (n >= 0) out.assign(buf.begin(), buf.end());
    return n;
}

}  // namespace realm_guest
#endif /* REALM_GUEST_CXX_HELPERS */
#endif /* __cplusplus */

#endif /* __wasm__ */

#endif /* REALM_GUEST_H */
