/* The default guest: OpenAI chat/completions and completions semantics over guest ABI v1.
 *
 * Request (JSON object; unknown fields are ignored):
 *   model        string, required unless the host passes it: the model name to open
 *   messages     [{"role","content"}...]   -> chat completion (rendered with the model's chat template)
 *   prompt       string                    -> text completion (tokenized as plain text, BOS as the model asks)
 *   temperature (1), top_p (1), top_k (0 = off), min_p (0), repeat_penalty (1), repeat_last_n (64),
 *   max_tokens / max_completion_tokens (none: until end of generation or the context is full),
 *   stop (string or up to 16 strings), seed (default: the clock), stream (false): emit text chunks as they
 *   are generated, frequency_penalty (0), presence_penalty (0), typical_p (1, as llama-server),
 *   logit_bias ({"<token id>": bias, ...}, OpenAI form: at most 1024 entries, ids in [0, n_vocab), biases in
 *   [-100, 100] added to the logit; -100 bans the token outright, as OpenAI describes it).
 * Response: chat.completion / text_completion object with choices[0].message.content (or .text),
 * finish_reason ("stop" | "length") and usage {prompt_tokens, completion_tokens, total_tokens}.
 * Errors (bad JSON, bad parameters, engine failures) are an {"error": {...}} response, never a trap.
 *
 * The text follows `realm run`: token pieces joined, UTF-8 completed across tokens (invalid bytes become
 * U+FFFD), stop strings cut (the earliest complete one wins; the stop string itself is dropped), text that
 * could still be the start of a stop string held back when streaming.
 */
#include <realm_guest.h>
#include <realm_guest_json.h>
#include <stdlib.h>
#include <string.h>

REALM_GUEST_DEFINE_ALLOC_AND_VERSION()

REALM_EXPORT(realm_init) int32_t realm_init(void) { return 0; }

/* ---- the request ------------------------------------------------------------------------------------ */
enum { kMaxStops = 16 };

typedef struct {
    openai_fields f;
    double n;
    realm_logit_bias* bias; /* logit_bias entries (malloc'd) */
    uint32_t n_bias, cap_bias;
    buf stops[kMaxStops];
    int n_stops;
} request;

static int parse_logit_bias(parser* p, request* r) {
    if (p->i >= p->n || p->s[p->i] != '{') return fail(p, "\"logit_bias\" must be an object");
    ++p->i;
    ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        ++p->i;
        return 1;
    }
    for (;;) {
        buf key = {0};
        ws(p);
        if (!str(p, &key)) { buf_free(&key); return 0; }
        long long tok = 0;
        int ok = key.n > 0 && key.n <= 10 && !key.oom;
        for (size_t j = 0; ok && j < key.n; ++j) {
            if (key.p[j] < '0' || key.p[j] > '9') ok = 0;
            else tok = tok * 10 + (key.p[j] - '0');
        }
        buf_free(&key);
        if (!ok || tok > 2147483647LL) return fail(p, "\"logit_bias\" keys must be token ids");
        ws(p);
        if (p->i >= p->n || p->s[p->i] != ':') return fail(p, "expected ':'");
        ++p->i;
        ws(p);
        double v = 0;
        if (!num(p, &v)) return fail(p, "\"logit_bias\" values must be numbers");
        if (!(v >= -100.0 && v <= 100.0)) return fail(p, "\"logit_bias\" values must be in [-100, 100]");
        if (r->n_bias == REALM_MAX_LOGIT_BIAS) return fail(p, "\"logit_bias\" has more than 1024 entries");
        if (r->n_bias == r->cap_bias) {
            uint32_t cap = r->cap_bias ? r->cap_bias * 2 : 16;
            realm_logit_bias* nb = (realm_logit_bias*)realloc(r->bias, cap * sizeof *nb);
            if (!nb) return fail(p, "out of memory");
            r->bias = nb;
            r->cap_bias = cap;
        }
        r->bias[r->n_bias].token = (int32_t)tok;
        r->bias[r->n_bias].bias = v <= -100.0 ? -__builtin_inff() : (float)v;
        ++r->n_bias;
        ws(p);
        if (p->i < p->n && p->s[p->i] == ',') { ++p->i; continue; }
        if (p->i < p->n && p->s[p->i] == '}') { ++p->i; return 1; }
        return fail(p, "expected ',' or '}' in \"logit_bias\"");
    }
}

static int request_field(parser* p, const char* k, void* ctx) {
    request* r = (request*)ctx;
    int ok = openai_field(p, k, &r->f);
    if (ok >= 0) return ok;
    if (!strcmp(k, "n")) return number_field(p, &r->n, 0);
    if (!strcmp(k, "logit_bias")) {
        r->n_bias = 0;
        return is_null(p) || parse_logit_bias(p, r);
    }
    if (!strcmp(k, "stop"))
        return str_list(p, r->stops, &r->n_stops, kMaxStops, 1, "\"stop\" must be a string or an array of strings",
                        "\"stop\" has more than 16 strings");
    return -1;
}

static void free_request(request* r) {
    openai_fields_free(&r->f);
    for (int j = 0; j < r->n_stops; ++j) buf_free(&r->stops[j]);
    free(r->bias);
}

/* ---- generation -------------------------------------------------------------------------------------- */
typedef struct {
    buf raw;      /* bytes not yet complete UTF-8 */
    buf text;     /* the generated text so far (after a stop: cut before it) */
    size_t sent;  /* bytes of text already released */
    int stopped;
    int stream;
    int cancelled;
    const request* r;
} gen_state;

/* Looks for the earliest complete stop string in the unreleased text; cuts the text there. Otherwise
 * releases everything that cannot be the start of a stop string (all of it when `final`). */
static void release(gen_state* g, int final) {
    size_t best = (size_t)-1;
    for (int j = 0; j < g->r->n_stops; ++j) {
        const buf* s = &g->r->stops[j];
        if (s->n == 0 || g->text.n < s->n) continue;
        for (size_t at = g->sent; at + s->n <= g->text.n && at < best; ++at) {
            if (memcmp(g->text.p + at, s->p, s->n) == 0) {
                best = at;
                break;
            }
        }
    }
    size_t upto = g->text.n;
    if (best != (size_t)-1) {
        g->stopped = 1;
        g->text.n = best;
        g->text.p[best] = 0;
        upto = best;
    } else if (!final) {
        size_t hold = 0;
        for (int j = 0; j < g->r->n_stops; ++j) {
            const buf* s = &g->r->stops[j];
            for (size_t l = s->n > 0 ? s->n - 1 : 0; l > hold; --l) {
                if (l <= g->text.n - g->sent && memcmp(g->text.p + g->text.n - l, s->p, l) == 0) {
                    hold = l;
                    break;
                }
            }
        }
        upto = g->text.n - hold;
    }
    if (upto > g->sent) {
        if (g->stream && !g->cancelled) {
            if (realm_emit(g->text.p + g->sent, (int32_t)(upto - g->sent)) == REALM_E_CANCELLED) g->cancelled = 1;
        }
        g->sent = upto;
    }
}

static void push_piece(gen_state* g, const char* piece, size_t n, int final) {
    buf_add(&g->raw, piece, n);
    utf8_drain(&g->raw, &g->text, final);
    release(g, final);
}

static float clampf(double v) { return (float)v; }

static int32_t handle(const char* req, size_t len) {
    request r;
    memset(&r, 0, sizeof r);
    openai_fields_init(&r.f);
    r.n = 1;
    parser p = {req, len, 0, 0, 0};
    int32_t rc = 0;
    int32_t* toks = 0;
    char* rendered = 0;
    char* piece = 0;
    gen_state g;
    memset(&g, 0, sizeof g);
    int32_t model = 0, seq = 0;

    if (!json_object(&p, request_field, &r)) {
        rc = respond_error("invalid_request_error", "invalid request JSON", p.err ? p.err : "parse error");
        goto done;
    }
    if (!r.f.model.n) { rc = respond_error("invalid_request_error", "\"model\" is required", 0); goto done; }
    if (!r.f.messages && !r.f.has_prompt) {
        rc = respond_error("invalid_request_error", "one of \"messages\" or \"prompt\" is required", 0);
        goto done;
    }
    if (!(r.f.frequency_penalty >= -1e30 && r.f.frequency_penalty <= 1e30) ||
        !(r.f.presence_penalty >= -1e30 && r.f.presence_penalty <= 1e30)) {
        rc = respond_error("invalid_request_error", "\"frequency_penalty\" and \"presence_penalty\" must be finite", 0);
        goto done;
    }
    if (!(r.f.typical_p > 0 && r.f.typical_p <= 1)) {
        rc = respond_error("invalid_request_error", "\"typical_p\" must be in (0, 1]", 0);
        goto done;
    }
    if (!(r.f.temperature >= 0 && r.f.temperature <= 1e30)) {
        rc = respond_error("invalid_request_error", "\"temperature\" must be a finite number >= 0", 0);
        goto done;
    }
    if (r.n != 1) { rc = respond_error("invalid_request_error", "only n = 1 is supported", 0); goto done; }
    if (r.f.has_max_tokens && !(r.f.max_tokens >= 1 && r.f.max_tokens <= 2147483647.0)) {
        rc = respond_error("invalid_request_error", "\"max_tokens\" must be >= 1", 0);
        goto done;
    }
    if (!(r.f.top_k >= -2147483648.0 && r.f.top_k <= 2147483647.0) ||
        !(r.f.repeat_last_n >= -1 && r.f.repeat_last_n <= 2147483647.0)) {
        rc = respond_error("invalid_request_error", "\"top_k\" or \"repeat_last_n\" is out of range", 0);
        goto done;
    }
    if (r.f.has_seed && !(r.f.seed >= 0 && r.f.seed < 18446744073709551616.0)) {
        rc = respond_error("invalid_request_error", "\"seed\" must be a non-negative integer", 0);
        goto done;
    }
    for (int j = 0; j < r.n_stops; ++j)
        if (r.stops[j].n == 0 || r.stops[j].oom) {
            rc = respond_error("invalid_request_error", "stop strings must be non-empty", 0);
            goto done;
        }

    model = realm_model_open(r.f.model.p, (int32_t)r.f.model.n);
    if (model < 0) {
        rc = model == REALM_E_NOT_FOUND ? respond_error("invalid_request_error", "no such model", r.f.model.p)
                                        : host_error("model_open");
        goto done;
    }

    /* The prompt text. */
    const char* text;
    int32_t text_len;
    uint32_t tflags;
    if (r.f.messages) {
        int32_t need = realm_chat_template(model, r.f.messages, (int32_t)r.f.messages_len, REALM_TEMPLATE_ADD_GENERATION_PROMPT, 0, 0);
        if (need < 0) { rc = host_error("chat template"); goto done; }
        rendered = (char*)malloc((size_t)need + 1);
        if (!rendered) { rc = respond_error("server_error", "out of memory", 0); goto done; }
        int32_t got = realm_chat_template(model, r.f.messages, (int32_t)r.f.messages_len, REALM_TEMPLATE_ADD_GENERATION_PROMPT,
                                          rendered, need);
        if (got != need) { rc = host_error("chat template"); goto done; }
        text = rendered;
        text_len = need;
        tflags = REALM_TOKENIZE_ADD_SPECIAL | REALM_TOKENIZE_PARSE_SPECIAL;
    } else {
        text = r.f.prompt.p ? r.f.prompt.p : "";
        text_len = (int32_t)r.f.prompt.n;
        tflags = REALM_TOKENIZE_ADD_SPECIAL;
    }
    int32_t n_tok = realm_tokenize(model, text, text_len, tflags, 0, 0);
    if (n_tok < 0) { rc = host_error("tokenize"); goto done; }
    if (n_tok == 0) { rc = respond_error("invalid_request_error", "the prompt is empty", 0); goto done; }
    toks = (int32_t*)malloc((size_t)n_tok * sizeof(int32_t));
    if (!toks) { rc = respond_error("server_error", "out of memory", 0); goto done; }
    if (realm_tokenize(model, text, text_len, tflags, toks, n_tok) != n_tok) { rc = host_error("tokenize"); goto done; }

    const int32_t n_ctx = model_info_int(model, "\"n_ctx\":");
    if (n_ctx > 0 && n_tok >= n_ctx) {
        rc = respond_error("invalid_request_error", "the prompt does not fit the model's context", 0);
        goto done;
    }
    {
        const int32_t n_vocab = model_info_int(model, "\"n_vocab\":");
        for (uint32_t j = 0; j < r.n_bias; ++j)
            if (n_vocab > 0 && r.bias[j].token >= n_vocab) {
                rc = respond_error("invalid_request_error", "\"logit_bias\" names a token outside the vocabulary", 0);
                goto done;
            }
    }
    seq = realm_seq_open(model);
    if (seq < 0) { rc = host_error("seq_open"); goto done; }
    {
        /* A cancelled client gets no response: the host reports the request as cancelled. */
        int32_t fed = realm_seq_feed(seq, toks, n_tok);
        if (fed < 0) { rc = fed == REALM_E_CANCELLED ? REALM_E_CANCELLED : host_error("seq_feed"); goto done; }
    }

    realm_sampling_params sp;
    sp.temperature = clampf(r.f.temperature);
    sp.top_p = clampf(r.f.top_p);
    sp.min_p = clampf(r.f.min_p);
    sp.top_k = (int32_t)r.f.top_k;
    sp.repeat_penalty = clampf(r.f.repeat_penalty);
    sp.repeat_last_n = (int32_t)r.f.repeat_last_n;
    sp.seed = r.f.has_seed ? (uint64_t)r.f.seed : (uint64_t)realm_now_ms();
    sp.frequency_penalty = clampf(r.f.frequency_penalty);
    sp.presence_penalty = clampf(r.f.presence_penalty);
    sp.typical_p = clampf(r.f.typical_p);
    sp.n_logit_bias = r.n_bias;
    sp.logit_bias = (uint32_t)(uintptr_t)r.bias;
    sp.step_flags = 0;

    g.r = &r;
    g.stream = r.f.stream;
    const int32_t piece_cap = 4096;
    piece = (char*)malloc((size_t)piece_cap);
    if (!piece) { rc = respond_error("server_error", "out of memory", 0); goto done; }
    long long n_gen = 0;
    int32_t length = n_tok;
    const char* finish = "stop";
    for (;;) {
        realm_step_result res;
        /* The last token max_tokens allows is not fed: nothing will read the logits after it. */
        sp.step_flags = r.f.has_max_tokens && n_gen + 1 >= (long long)r.f.max_tokens ? REALM_STEP_NO_FEED : 0;
        int32_t tok = realm_step(seq, &sp, (int32_t)sizeof sp, &res, piece, piece_cap);
        if (tok < 0) {
            if (tok == REALM_E_CANCELLED) { g.cancelled = 1; break; }
            rc = host_error("step");
            goto done;
        }
        ++n_gen;
        if (res.flags & REALM_STEP_END_OF_GENERATION) {
            push_piece(&g, "", 0, 1);
            finish = "stop";
            break;
        }
        ++length;
        size_t tl = res.text_len > 0 && res.text_len <= piece_cap ? (size_t)res.text_len : 0;
        push_piece(&g, piece, tl, 0);
        if (g.stopped) { finish = "stop"; break; }
        if ((r.f.has_max_tokens && n_gen >= (long long)r.f.max_tokens) || (n_ctx > 0 && length >= n_ctx)) {
            push_piece(&g, "", 0, 1);
            finish = g.stopped ? "stop" : "length";
            break;
        }
        if (g.cancelled || realm_cancelled()) { g.cancelled = 1; break; }
    }
    if (g.text.oom || g.raw.oom) { rc = respond_error("server_error", "out of memory", 0); goto done; }

    {
        buf b = {0};
        openai_response_open(&b, &r.f, &g.text, g.cancelled, finish, n_tok, n_gen);
        buf_str(&b, "}");
        rc = write_response(&b);
    }

done:
    if (seq > 0) realm_seq_close(seq);
    free(piece);
    free(toks);
    free(rendered);
    buf_free(&g.raw);
    buf_free(&g.text);
    free_request(&r);
    return rc < 0 ? rc : 0;
}

REALM_EXPORT(realm_handle_request) int32_t realm_handle_request(int32_t ptr, int32_t len) {
    if (len < 0) return REALM_E_INVALID_ARGUMENT;
    return handle((const char*)(intptr_t)ptr, (size_t)len);
}
