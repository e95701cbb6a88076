/* A well-behaved guest that uses every model import: chat template -> tokenize -> feed -> step loop,
 * streaming each token's text, plus logits/top-k/sample/detokenize checks. Response:
 * {"text":"...","tokens":N,"prompt_tokens":P,"top1":T,"n_vocab":V,"sampled":S,"info":{...}} */
#include <string.h>

#include "realm_guest.h"

REALM_GUEST_DEFINE_ALLOC_AND_VERSION()
REALM_EXPORT(realm_init) int32_t realm_init(void) { return REALM_OK; }

static char out[8192];
static int32_t olen;
static void put(const char* s, int32_t n) {
    if (olen + n < (int32_t)sizeof out) memcpy(out + olen, s, (size_t)n), olen += n;
}
static void puts_(const char* s) { put(s, (int32_t)strlen(s)); }
static void put_int(int64_t v) {
    char t[24];
    int n = 0, neg = v < 0;
    uint64_t u = neg ? (uint64_t)(-v) : (uint64_t)v;
    do t[n++] = (char)('0' + u % 10), u /= 10; while (u);
    if (neg) puts_("-");
    while (n) put(&t[--n], 1);
}
static int fail(int32_t rc) {
    char msg[256];
    int32_t n = realm_last_error(msg, sizeof msg);
    if (n > 0 && n <= (int32_t)sizeof msg) realm_log(REALM_LOG_ERROR, msg, n);
    return rc;
}

REALM_EXPORT(realm_handle_request) int32_t realm_handle_request(const char* req, int32_t len) {
    (void)req;
    (void)len;
    static const char msgs[] = "[{\"role\":\"user\",\"content\":\"ab\"}]";
    char prompt[512], info[256], text[64];
    int32_t toks[512];
    olen = 0;

    int32_t m = realm_model_open("tiny", 4);
    if (m < 0) return fail(m);
    int32_t ilen = realm_model_info(m, info, sizeof info);
    if (ilen < 0 || ilen > (int32_t)sizeof info) return fail(REALM_E_STATE);
    int32_t plen = realm_chat_template(m, msgs, sizeof msgs - 1, REALM_TEMPLATE_ADD_GENERATION_PROMPT, prompt, sizeof prompt);
    if (plen < 0 || plen > (int32_t)sizeof prompt) return fail(plen < 0 ? plen : REALM_E_STATE);
    int32_t nt = realm_tokenize(m, prompt, plen, REALM_TOKENIZE_ADD_SPECIAL, toks, 512);
    if (nt < 0 || nt > 512) return fail(nt < 0 ? nt : REALM_E_STATE);
    /* Round trip. */
    char back[512];
    int32_t bl = realm_detokenize(m, toks, nt, 0, back, sizeof back);
    if (bl != plen || memcmp(back, prompt, (size_t)plen) != 0) return fail(REALM_E_STATE);

    int32_t s = realm_seq_open(m);
    if (s < 0) return fail(s);
    int32_t fed = realm_seq_feed(s, toks, nt);
    if (fed != nt) return fail(fed < 0 ? fed : REALM_E_STATE);
    int32_t n_vocab = realm_seq_logits(s, NULL, 0);
    realm_top_logit top[3];
    int32_t k = realm_seq_top_k(s, 3, top, 3);
    if (k != 3) return fail(k < 0 ? k : REALM_E_STATE);
    realm_sampling_params p = realm_sampling_default();
    p.temperature = 0.0f; /* greedy */
    int32_t sampled = realm_sample(s, &p, sizeof p);
    if (sampled != top[0].token) return fail(REALM_E_STATE);

    puts_("{\"text\":\"");
    int32_t generated = 0;
    for (int i = 0; i < 8; ++i) {
        realm_step_result r;
        int32_t t = realm_step(s, &p, sizeof p, &r, text, sizeof text);
        if (t < 0) return fail(t);
        if (r.flags & REALM_STEP_END_OF_GENERATION) break;
        if (r.text_len > (int32_t)sizeof text) return fail(REALM_E_STATE);
        int32_t e = realm_emit(text, r.text_len);
        if (e < 0) return fail(e);
        for (int32_t j = 0; j < r.text_len; ++j) /* tiny model emits printable ASCII */
            if (text[j] != '"' && text[j] != '\\') put(&text[j], 1);
        ++generated;
    }
    puts_("\",\"tokens\":");
    put_int(generated);
    puts_(",\"prompt_tokens\":");
    put_int(nt);
    puts_(",\"top1\":");
    put_int(top[0].token);
    puts_(",\"n_vocab\":");
    put_int(n_vocab);
    puts_(",\"sampled\":");
    put_int(sampled);
    puts_(",\"seq_len\":");
    put_int(realm_seq_feed(s, toks, 0));
    int64_t left = realm_remaining_ms();
    puts_(",\"remaining_ok\":");
    puts_(left > 0 && left <= 2000 ? "true" : "false");
    puts_(",\"info\":");
    put(info, ilen);
    puts_("}");
    realm_seq_close(s);
    int32_t rc = realm_response_write(out, olen);
    return rc < 0 ? fail(rc) : REALM_OK;
}
