/* choice: constrained choice with the guest's own logit processing.
 *
 * Request: {"model", "messages": [...] | "prompt": "...", "choices": ["yes", "no", "maybe"]}
 *   choices: 1..15 distinct non-empty strings (each choice needs its own sequence to be scored, and a
 *   request has 16 sequence handles).
 * Each choice is tokenized as a continuation of the prompt (prompt + choice, the prompt's own tokens
 * removed; if the tokenizer merges across the boundary, the choice alone). The guest reads the full logits
 * (seq_logits) after the prompt and after every prefix of every choice, turns them into log-probabilities
 * itself (log-softmax) and answers with the choice of highest total log-probability, so the answer is
 * always exactly one of the choices.
 * Response: {"object": "choice", "model", "choice": "...", "index": i,
 *            "scores": {"<choice>": sum of the log-probabilities of its tokens, ...},
 *            "tokens": {"<choice>": number of tokens, ...}, "usage": {"prompt_tokens": n}}
 * The chosen choice is also emitted as one chunk. Bad requests get an {"error": ...} response, never a trap.
 */
#include <math.h>
#include <stdio.h>

#include <realm_guest.h>
#include <realm_guest_json.h>

REALM_GUEST_DEFINE_ALLOC_AND_VERSION()

REALM_EXPORT(realm_init) int32_t realm_init(void) { return 0; }

enum { kMaxChoices = 15, kMaxChoiceTokens = 64, kMaxChoiceBytes = 1024 };

typedef struct {
    openai_fields f;
    buf choices[kMaxChoices];
    int n_choices;
    int has_choices;
} request;

static int request_field(parser* p, const char* k, void* ctx) {
    request* r = (request*)ctx;
    int ok = openai_field(p, k, &r->f);
    if (ok >= 0) return ok;
    if (!strcmp(k, "choices")) {
        r->has_choices = 1;
        return str_list(p, r->choices, &r->n_choices, kMaxChoices, 0, "\"choices\" must be an array of strings",
                        "\"choices\" has more than 15 strings");
    }
    return -1;
}

/* Tokenizes into a malloc'd array; returns the count (>= 0) or a negative code. */
static int32_t tokenize_alloc(int32_t model, const char* s, size_t n, uint32_t flags, int32_t** out) {
    *out = 0;
    int32_t need = realm_tokenize(model, s, (int32_t)n, flags, 0, 0);
    if (need < 0) return need;
    int32_t* t = (int32_t*)malloc((size_t)(need > 0 ? need : 1) * sizeof(int32_t));
    if (!t) return REALM_E_LIMIT;
    if (need > 0 && realm_tokenize(model, s, (int32_t)n, flags, t, need) != need) {
        free(t);
        return REALM_E_BACKEND;
    }
    *out = t;
    return need;
}

/* log-probability of `tok` under the logits (log-softmax, computed in double). */
static double log_prob(const float* logits, int32_t n_vocab, int32_t tok) {
    float mx = logits[0];
    for (int32_t i = 1; i < n_vocab; ++i)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += exp((double)logits[i] - (double)mx);
    return (double)logits[tok] - (double)mx - log(sum);
}

static int32_t handle(const char* req, size_t len) {
    request r;
    memset(&r, 0, sizeof r);
    openai_fields_init(&r.f);
    parser p = {req, len, 0, 0, 0};
    int32_t rc = 0, model = 0, seq = 0, n_vocab = 0;
    char* rendered = 0;
    int32_t* ptoks = 0;
    float* logits = 0;
    int32_t* ctoks[kMaxChoices] = {0};
    int32_t clen[kMaxChoices] = {0};
    double lps[kMaxChoices][kMaxChoiceTokens];
    double score[kMaxChoices] = {0};

    if (!json_object(&p, request_field, &r)) {
        rc = respond_error("invalid_request_error", "invalid request JSON", p.err ? p.err : "parse error");
        goto done;
    }
    if (!r.f.model.n) { rc = respond_error("invalid_request_error", "\"model\" is required", 0); goto done; }
    if (!r.f.messages && !r.f.has_prompt) {
        rc = respond_error("invalid_request_error", "one of \"messages\" or \"prompt\" is required", 0);
        goto done;
    }
    if (r.n_choices == 0) {
        rc = respond_error("invalid_request_error", "\"choices\" must be a non-empty array of strings", 0);
        goto done;
    }
    for (int c = 0; c < r.n_choices; ++c) {
        if (r.choices[c].n == 0 || r.choices[c].n > kMaxChoiceBytes || r.choices[c].oom) {
            rc = respond_error("invalid_request_error", "each choice must be 1..1024 bytes", 0);
            goto done;
        }
        for (int d = 0; d < c; ++d)
            if (r.choices[d].n == r.choices[c].n && !memcmp(r.choices[d].p, r.choices[c].p, r.choices[c].n)) {
                rc = respond_error("invalid_request_error", "\"choices\" must be distinct", 0);
                goto done;
            }
    }

    model = realm_model_open(r.f.model.p, (int32_t)r.f.model.n);
    if (model < 0) {
        rc = model == REALM_E_NOT_FOUND ? respond_error("invalid_request_error", "no such model", r.f.model.p)
                                        : host_error("model_open");
        goto done;
    }
    buf text = {0};
    uint32_t tflags;
    if (r.f.messages) {
        int32_t need = realm_chat_template(model, r.f.messages, (int32_t)r.f.messages_len, REALM_TEMPLATE_ADD_GENERATION_PROMPT, 0, 0);
        if (need < 0) { rc = host_error("chat template"); goto done; }
        rendered = (char*)malloc((size_t)need + 1);
        if (!rendered) { rc = respond_error("server_error", "out of memory", 0); goto done; }
        if (realm_chat_template(model, r.f.messages, (int32_t)r.f.messages_len, REALM_TEMPLATE_ADD_GENERATION_PROMPT,
                                rendered, need) != need) { rc = host_error("chat template"); goto done; }
        buf_add(&text, rendered, (size_t)need);
        tflags = REALM_TOKENIZE_ADD_SPECIAL | REALM_TOKENIZE_PARSE_SPECIAL;
    } else {
        buf_add(&text, r.f.prompt.p ? r.f.prompt.p : "", r.f.prompt.n);
        tflags = REALM_TOKENIZE_ADD_SPECIAL;
    }
    const size_t prompt_bytes = text.n;
    int32_t n_p = tokenize_alloc(model, text.p ? text.p : "", text.n, tflags, &ptoks);
    if (n_p < 0) { buf_free(&text); rc = host_error("tokenize"); goto done; }
    if (n_p == 0) { buf_free(&text); rc = respond_error("invalid_request_error", "the prompt is empty", 0); goto done; }

    /* Each choice as a continuation of the prompt. */
    for (int c = 0; c < r.n_choices; ++c) {
        text.n = prompt_bytes;
        buf_add(&text, r.choices[c].p, r.choices[c].n);
        if (text.oom) { buf_free(&text); rc = respond_error("server_error", "out of memory", 0); goto done; }
        int32_t* full = 0;
        int32_t n_full = tokenize_alloc(model, text.p, text.n, tflags, &full);
        if (n_full < 0) { buf_free(&text); rc = host_error("tokenize"); goto done; }
        int same = n_full > n_p && !memcmp(full, ptoks, (size_t)n_p * sizeof(int32_t));
        if (same) {
            clen[c] = n_full - n_p;
            memmove(full, full + n_p, (size_t)clen[c] * sizeof(int32_t));
            ctoks[c] = full;
        } else {
            free(full);
            clen[c] = tokenize_alloc(model, r.choices[c].p, r.choices[c].n, 0, &ctoks[c]);
            if (clen[c] < 0) { buf_free(&text); rc = host_error("tokenize"); goto done; }
        }
        if (clen[c] == 0 || clen[c] > kMaxChoiceTokens) {
            buf_free(&text);
            rc = respond_error("invalid_request_error", "each choice must be 1..64 tokens", r.choices[c].p);
            goto done;
        }
    }
    buf_free(&text);

    /* Score: log-probabilities of every choice's tokens, from the full logits the host returns. */
    seq = realm_seq_open(model);
    if (seq < 0) { rc = host_error("seq_open"); goto done; }
    if (realm_seq_feed(seq, ptoks, n_p) < 0) { rc = host_error("seq_feed"); goto done; }
    n_vocab = realm_seq_logits(seq, 0, 0);
    if (n_vocab <= 0) { rc = host_error("seq_logits"); goto done; }
    logits = (float*)malloc((size_t)n_vocab * sizeof(float));
    if (!logits) { rc = respond_error("server_error", "out of memory", 0); goto done; }
    if (realm_seq_logits(seq, logits, n_vocab) != n_vocab) { rc = host_error("seq_logits"); goto done; }
    for (int c = 0; c < r.n_choices; ++c) lps[c][0] = log_prob(logits, n_vocab, ctoks[c][0]);
    realm_seq_close(seq);
    seq = 0;
    for (int c = 0; c < r.n_choices; ++c) {
        if (clen[c] < 2) continue;
        if (realm_cancelled()) { rc = REALM_E_CANCELLED; goto done; }
        seq = realm_seq_open(model);
        if (seq < 0) { rc = host_error("seq_open"); goto done; }
        if (realm_seq_feed(seq, ptoks, n_p) < 0) { rc = host_error("seq_feed"); goto done; }
        for (int d = 1; d < clen[c]; ++d) {
            if (realm_seq_feed(seq, &ctoks[c][d - 1], 1) < 0) { rc = host_error("seq_feed"); goto done; }
            if (realm_seq_logits(seq, logits, n_vocab) != n_vocab) { rc = host_error("seq_logits"); goto done; }
            lps[c][d] = log_prob(logits, n_vocab, ctoks[c][d]);
        }
        realm_seq_close(seq);
        seq = 0;
    }
    for (int c = 0; c < r.n_choices; ++c)
        for (int d = 0; d < clen[c]; ++d) score[c] += lps[c][d];

    /* The answer is the choice whose tokens are most probable as a whole (sum of log-probabilities;
     * ties: the first listed). Token-by-token greedy would commit to a first token and could miss a
     * better multi-token choice. */
    int chosen = 0;
    for (int c = 1; c < r.n_choices; ++c)
        if (score[c] > score[chosen]) chosen = c;

    realm_emit(r.choices[chosen].p, (int32_t)r.choices[chosen].n);
    {
        buf b = {0};
        char num[64];
        buf_str(&b, "{\"object\":\"choice\",\"model\":");
        json_str(&b, r.f.model.p, r.f.model.n);
        buf_str(&b, ",\"choice\":");
        json_str(&b, r.choices[chosen].p, r.choices[chosen].n);
        buf_str(&b, ",\"index\":");
        buf_int(&b, chosen);
        buf_str(&b, ",\"scores\":{");
        for (int c = 0; c < r.n_choices; ++c) {
            if (c) buf_ch(&b, ',');
            json_str(&b, r.choices[c].p, r.choices[c].n);
            snprintf(num, sizeof num, ":%.9g", isfinite(score[c]) ? score[c] : -1e30);
            buf_str(&b, num);
        }
        buf_str(&b, "},\"tokens\":{");
        for (int c = 0; c < r.n_choices; ++c) {
            if (c) buf_ch(&b, ',');
            json_str(&b, r.choices[c].p, r.choices[c].n);
            buf_ch(&b, ':');
            buf_int(&b, clen[c]);
        }
        buf_str(&b, "},\"usage\":{\"prompt_tokens\":");
        buf_int(&b, n_p);
        buf_str(&b, "}}");
        rc = write_response(&b);
    }
done:
    if (seq > 0) realm_seq_close(seq);
    free(logits);
    free(ptoks);
    free(rendered);
    for (int c = 0; c < kMaxChoices; ++c) free(ctoks[c]);
    openai_fields_free(&r.f);
    for (int j = 0; j < r.n_choices; ++j) buf_free(&r.choices[j]);
    return rc < 0 ? rc : 0;
}

REALM_EXPORT(realm_handle_request) int32_t realm_handle_request(int32_t ptr, int32_t len) {
    if (len < 0) return REALM_E_INVALID_ARGUMENT;
    return handle((const char*)(intptr_t)ptr, (size_t)len);
}
