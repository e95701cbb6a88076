/* Hostile: calls every realm import with out-of-bounds pointers, huge/negative lengths, bad flags and
 * invalid, closed, wrong-kind and foreign handles. Every call must fail with the documented code and leave
 * the guest running; the guest reports what each call returned as {"name": code, ...} and the test compares.
 * Request: {"model":"tiny","foreign_model":<h>,"foreign_seq":<h>} (handles issued to an earlier request). */
#include <math.h>
#include <string.h>

#include "realm_guest.h"

REALM_GUEST_DEFINE_ALLOC_AND_VERSION()
REALM_EXPORT(realm_init) int32_t realm_init(void) { return REALM_OK; }

#define OOB ((void*)0xffffff00u)
#define HUGE_LEN 0x7fffffff

static char g_out[16384];
static int32_t g_len;

static void put(const char* s) {
    size_t n = strlen(s);
    if (g_len + (int32_t)n < (int32_t)sizeof g_out) memcpy(g_out + g_len, s, n), g_len += (int32_t)n;
}
static void put_int(int64_t v) {
    char tmp[24];
    int n = 0, neg = v < 0;
    uint64_t u = neg ? (uint64_t)(-v) : (uint64_t)v;
    do tmp[n++] = (char)('0' + u % 10), u /= 10; while (u);
    if (neg) put("-");
    char s[2] = {0, 0};
    while (n) s[0] = tmp[--n], put(s);
}
static void record(const char* name, int64_t code) {
    put(g_len > 1 ? ",\"" : "\"");
    put(name);
    put("\":");
    put_int(code);
}
#define CHECK(name, expr) record(name, (int64_t)(expr))

static int64_t find_int(const char* req, int32_t len, const char* key) {
    size_t kl = strlen(key);
    for (int32_t i = 0; i + (int32_t)kl < len; ++i) {
        if (memcmp(req + i, key, kl) == 0) {
            int32_t j = i + (int32_t)kl;
            while (j < len && (req[j] == '"' || req[j] == ':' || req[j] == ' ')) ++j;
            int64_t v = 0, sign = 1;
            if (j < len && req[j] == '-') sign = -1, ++j;
            while (j < len && req[j] >= '0' && req[j] <= '9') v = v * 10 + (req[j++] - '0');
            return sign * v;
        }
    }
    return 0;
}

REALM_EXPORT(realm_handle_request) int32_t realm_handle_request(const char* req, int32_t len) {
    char buf[256];
    int32_t toks[8] = {104, 105, 33, 0, 0, 0, 0, 0};
    float logits[8];
    realm_top_logit top[8];
    realm_step_result res;
    realm_sampling_params p = realm_sampling_default();
    /* The very end of memory: valid pointer, but no room for a large buffer. */
    char* end = (char*)(__builtin_wasm_memory_size(0) * 65536u - 4);

    g_len = 0;
    put("{");
    CHECK("last_error_oob", realm_last_error(OOB, 100));
    CHECK("last_error_negcap", realm_last_error(buf, -1));
    CHECK("log_oob", realm_log(REALM_LOG_INFO, OOB, 10));
    CHECK("log_huge", realm_log(REALM_LOG_INFO, buf, HUGE_LEN));
    CHECK("log_neg", realm_log(REALM_LOG_INFO, buf, -1));
    CHECK("log_level", realm_log(42, buf, 1));
    CHECK("request_oob", realm_request_read(OOB, 100));
    CHECK("request_end", realm_request_read(end, 100));
    CHECK("request_size", realm_request_read(NULL, 0));
    CHECK("response_oob", realm_response_write(OOB, 10));
    CHECK("response_huge", realm_response_write(buf, HUGE_LEN));
    CHECK("response_not_json", realm_response_write("{nope", 5));
    CHECK("emit_oob", realm_emit(OOB, 10));
    CHECK("emit_huge", realm_emit(buf, HUGE_LEN));
    CHECK("emit_neg", realm_emit(buf, -1));
    CHECK("model_open_oob", realm_model_open(OOB, 4));
    CHECK("model_open_huge", realm_model_open(buf, HUGE_LEN));
    CHECK("model_open_forbidden", realm_model_open("secret", 6));
    CHECK("model_open_unknown", realm_model_open("nope", 4));
    int32_t m = realm_model_open("tiny", 4);
    CHECK("model_open", m > 0 ? 0 : m);
    CHECK("model_info_zero", realm_model_info(0, buf, sizeof buf));
    CHECK("model_info_random", realm_model_info(0x1234567, buf, sizeof buf));
    CHECK("model_info_oob", realm_model_info(m, OOB, 100));
    CHECK("eog_range", realm_token_is_eog(m, 1 << 30));
    CHECK("tokenize_text_oob", realm_tokenize(m, OOB, 10, 0, toks, 8));
    CHECK("tokenize_out_oob", realm_tokenize(m, "hi", 2, 0, OOB, 100));
    CHECK("tokenize_out_end", realm_tokenize(m, "hi", 2, 0, (int32_t*)end, 100));
    CHECK("tokenize_flags", realm_tokenize(m, "hi", 2, 0x80, toks, 8));
    CHECK("tokenize_huge", realm_tokenize(m, buf, HUGE_LEN, 0, toks, 8));
    CHECK("tokenize_negcap", realm_tokenize(m, "hi", 2, 0, toks, -8));
    CHECK("detokenize_oob", realm_detokenize(m, OOB, 5, 0, buf, sizeof buf));
    CHECK("detokenize_huge", realm_detokenize(m, toks, HUGE_LEN, 0, buf, sizeof buf));
    int32_t bad_toks[2] = {1, -5};
    CHECK("detokenize_bad_token", realm_detokenize(m, bad_toks, 2, 0, buf, sizeof buf));
    CHECK("detokenize_out_oob", realm_detokenize(m, toks, 3, 0, OOB, 100));
    CHECK("template_oob", realm_chat_template(m, OOB, 10, 0, buf, sizeof buf));
    CHECK("template_not_array", realm_chat_template(m, "{}", 2, 0, buf, sizeof buf));
    CHECK("template_huge", realm_chat_template(m, buf, HUGE_LEN, 0, buf, sizeof buf));
    CHECK("seq_open_bad", realm_seq_open(-1));
    int32_t s = realm_seq_open(m);
    CHECK("seq_open", s > 0 ? 0 : s);
    CHECK("seq_open_wrong_kind", realm_seq_open(s));
    CHECK("seq_feed_wrong_kind", realm_seq_feed(m, toks, 3));
    CHECK("seq_logits_before_feed", realm_seq_logits(s, logits, 8));
    CHECK("sample_before_feed", realm_sample(s, &p, sizeof p));
    CHECK("seq_feed_oob", realm_seq_feed(s, OOB, 10));
    CHECK("seq_feed_huge", realm_seq_feed(s, toks, HUGE_LEN));
    CHECK("seq_feed_neg", realm_seq_feed(s, toks, -1));
    CHECK("seq_feed_bad_token", realm_seq_feed(s, bad_toks, 2));
    CHECK("seq_feed", realm_seq_feed(s, toks, 3));
    CHECK("seq_logits_oob", realm_seq_logits(s, OOB, 1000));
    CHECK("seq_logits_small", realm_seq_logits(s, logits, 8)); /* sized output: returns n_vocab */
    CHECK("top_k_zero", realm_seq_top_k(s, 0, top, 8));
    CHECK("top_k_oob", realm_seq_top_k(s, 5, OOB, 5));
    CHECK("top_k", realm_seq_top_k(s, 5, top, 8));
    CHECK("sample_params_oob", realm_sample(s, OOB, sizeof p));
    CHECK("sample_params_len", realm_sample(s, &p, 31));
    p.temperature = NAN;
    CHECK("sample_params_nan", realm_sample(s, &p, sizeof p));
    p = realm_sampling_default();
    p.top_p = 2.0f;
    CHECK("sample_params_range", realm_sample(s, &p, sizeof p));
    p = realm_sampling_default();
    CHECK("sample_params_len_v0", realm_sample(s, &p, 32)); /* the old 32-byte layout */
    p.typical_p = 0.0f;
    CHECK("sample_typical_range", realm_sample(s, &p, sizeof p));
    p = realm_sampling_default();
    p.frequency_penalty = INFINITY;
    CHECK("sample_freq_inf", realm_sample(s, &p, sizeof p));
    p = realm_sampling_default();
    p.presence_penalty = NAN;
    CHECK("sample_presence_nan", realm_sample(s, &p, sizeof p));
    p = realm_sampling_default();
    p.step_flags = 0x80000000u;  /* an undefined flag bit */
    CHECK("sample_reserved", realm_sample(s, &p, sizeof p));
    p = realm_sampling_default();
    {
        static realm_logit_bias bias[4];
        p.temperature = 0.0f;
        CHECK("sample_greedy", realm_sample(s, &p, sizeof p));
        bias[0].token = 100; /* the greedy token after "hi!" in the test backend ('a' + 3) */
        bias[0].bias = -INFINITY;
        p.n_logit_bias = 1;
        p.logit_bias = (uint32_t)(uintptr_t)bias;
        CHECK("sample_bias_ban", realm_sample(s, &p, sizeof p));
        bias[1].token = 7; /* entries for one token add up: 7 gets +5 +6 and wins */
        bias[1].bias = 5.0f;
        bias[2].token = 7;
        bias[2].bias = 6.0f;
        p.n_logit_bias = 3;
        CHECK("sample_bias_sum", realm_sample(s, &p, sizeof p));
        p.n_logit_bias = 0;
        p.logit_bias = 0xffffff00u; /* ignored when n == 0 */
        CHECK("sample_bias_none_oob_ptr", realm_sample(s, &p, sizeof p));
        p.n_logit_bias = 1;
        CHECK("sample_bias_oob", realm_sample(s, &p, sizeof p));
        p.logit_bias = (uint32_t)(uintptr_t)end; /* 4 bytes left: one 8-byte entry does not fit */
        CHECK("sample_bias_end", realm_sample(s, &p, sizeof p));
        p.logit_bias = (uint32_t)(uintptr_t)bias;
        p.n_logit_bias = REALM_MAX_LOGIT_BIAS + 1;
        CHECK("sample_bias_too_many", realm_sample(s, &p, sizeof p));
        p.n_logit_bias = 0xffffffffu;
        CHECK("sample_bias_huge_n", realm_sample(s, &p, sizeof p));
        p.n_logit_bias = 1;
        bias[0].bias = NAN;
        CHECK("sample_bias_nan", realm_sample(s, &p, sizeof p));
        bias[0].bias = INFINITY;
        CHECK("sample_bias_pos_inf", realm_sample(s, &p, sizeof p));
        bias[0].bias = 1.0f;
        bias[0].token = 258; /* n_vocab */
        CHECK("sample_bias_token_range", realm_sample(s, &p, sizeof p));
        bias[0].token = -1;
        CHECK("step_bias_token_neg", realm_step(s, &p, sizeof p, &res, buf, sizeof buf));
        bias[0].token = 7;
        bias[0].bias = 3e38f;
        bias[1].token = 7;
        bias[1].bias = 3e38f;
        p.n_logit_bias = 2;
        CHECK("sample_bias_overflow", realm_sample(s, &p, sizeof p));
    }
    p = realm_sampling_default();
    CHECK("step_result_oob", realm_step(s, &p, sizeof p, OOB, buf, sizeof buf));
    CHECK("step_text_oob", realm_step(s, &p, sizeof p, &res, OOB, 100));
    CHECK("step_text_end", realm_step(s, &p, sizeof p, &res, end, 100));
    CHECK("foreign_model", realm_model_info((int32_t)find_int(req, len, "foreign_model"), buf, sizeof buf));
    CHECK("foreign_seq", realm_seq_feed((int32_t)find_int(req, len, "foreign_seq"), toks, 3));
    CHECK("seq_close", realm_seq_close(s));
    CHECK("seq_close_again", realm_seq_close(s));
    CHECK("seq_feed_closed", realm_seq_feed(s, toks, 3));
    int32_t last = 0;
    for (int i = 0; i < 1001; ++i) last = realm_log(REALM_LOG_DEBUG, "flood", 5);
    CHECK("log_flood_last", last);
    int32_t n = realm_last_error(buf, sizeof buf);
    CHECK("last_error_len_positive", n > 0 ? 1 : 0);
    record("my_model", m);
    record("my_seq", s);
    put("}");
    return realm_response_write(g_out, g_len) < 0 ? -1 : REALM_OK;
}
