/* policy: a tenant's content policy over chat/completions.
 *
 * Request: as the default guest's (model, messages | prompt, temperature (1), top_p (1), top_k (0), min_p (0),
 * repeat_penalty (1), repeat_last_n (64), frequency_penalty (0), presence_penalty (0), typical_p (1),
 * max_tokens, seed, stream) plus
 *   banned            [string, ...]  words that must never appear in the output (ASCII case-insensitive,
 *                                   as substrings); at most 64, each 1..256 bytes
 *   max_regenerations number (8)     how many rewinds the request may spend, at most 14 (every rewind
 *                                   re-opens the sequence, and a request has 16 sequence handles)
 * It generates with the host's `step`. Whenever the token just produced completes a banned word, it rewinds:
 * the sequence is re-opened and re-fed (prompt + accepted tokens — the ABI has no truncate), that token gets a
 * -inf logit bias at that position, and the position is sampled again. Only accepted tokens are streamed, so
 * banned text is never emitted. When the budget is spent (or every token is banned) the response is an
 * error of type "policy_error". Responses carry "policy": {"regenerations": N}.
 */
#include <realm_guest.h>
#include <realm_guest_json.h>

REALM_GUEST_DEFINE_ALLOC_AND_VERSION()

REALM_EXPORT(realm_init) int32_t realm_init(void) { return 0; }

enum { kMaxBanned = 64, kMaxWord = 256, kMaxRegen = 14, kMaxBansPerPos = 1024 };

typedef struct {
    openai_fields f;
    double max_regen;
    buf banned[kMaxBanned];
    int n_banned;
} request;

static int request_field(parser* p, const char* k, void* ctx) {
    request* r = (request*)ctx;
    int ok = openai_field(p, k, &r->f);
    if (ok >= 0) return ok;
    if (!strcmp(k, "max_regenerations")) return number_field(p, &r->max_regen, 0);
    if (!strcmp(k, "banned"))
        return str_list(p, r->banned, &r->n_banned, kMaxBanned, 0, "\"banned\" must be an array of strings",
                        "\"banned\" has more than 64 words");
    return -1;
}

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Does `text[0..n)` contain a banned word that ends after byte `from` (i.e. one the new bytes completed)? */
static int completes_banned(const request* r, const char* text, size_t n, size_t from) {
    for (int j = 0; j < r->n_banned; ++j) {
        const buf* w = &r->banned[j];
        if (w->n > n) continue;
        size_t start = from + 1 > w->n ? from + 1 - w->n : 0;
        for (size_t at = start; at + w->n <= n; ++at) {
            size_t k = 0;
            while (k < w->n && lower(text[at + k]) == lower(w->p[k])) ++k;
            if (k == w->n) return 1;
        }
    }
    return 0;
}

typedef struct {
    buf raw;      /* accepted bytes, all of them (checked against the banned words) */
    size_t drained; /* bytes of raw already moved through UTF-8 completion */
    buf pending;  /* incomplete UTF-8 tail */
    buf text;     /* final text */
    int stream, cancelled;
} out_state;

static void accept_piece(out_state* o, const char* piece, size_t n, int final) {
    buf_add(&o->raw, piece, n);
    buf_add(&o->pending, piece, n);
    size_t before = o->text.n;
    utf8_drain(&o->pending, &o->text, final);
    if (o->stream && !o->cancelled && o->text.n > before) {
        if (realm_emit(o->text.p + before, (int32_t)(o->text.n - before)) == REALM_E_CANCELLED) o->cancelled = 1;
    }
}

static int32_t respond_policy_error(const char* msg, int regen) {
    buf b = {0};
    buf_str(&b, "{\"error\":{\"message\":");
    json_str(&b, msg, strlen(msg));
    buf_str(&b, ",\"type\":\"policy_error\"},\"policy\":{\"regenerations\":");
    buf_int(&b, regen);
    buf_str(&b, "}}");
    int32_t rc = b.oom ? REALM_E_LIMIT : realm_response_write(b.p, (int32_t)b.n);
    buf_free(&b);
    return rc < 0 ? rc : 0;
}

static int32_t handle(const char* req, size_t len) {
    request r;
    memset(&r, 0, sizeof r);
    openai_fields_init(&r.f);
    r.max_regen = 8;
    parser p = {req, len, 0, 0, 0};
    int32_t rc = 0;
    int32_t* toks = 0; /* prompt + accepted tokens */
    char* rendered = 0;
    char* piece = 0;
    realm_logit_bias* bans = 0;
    uint32_t n_bans = 0;
    out_state o;
    memset(&o, 0, sizeof o);
    int32_t model = 0, seq = 0;
    int regen = 0;

    if (!json_object(&p, request_field, &r)) {
        rc = respond_error("invalid_request_error", "invalid request JSON", p.err ? p.err : "parse error");
        goto done;
    }
    if (!r.f.model.n) { rc = respond_error("invalid_request_error", "\"model\" is required", 0); goto done; }
    if (!r.f.messages && !r.f.has_prompt) {
        rc = respond_error("invalid_request_error", "one of \"messages\" or \"prompt\" is required", 0);
        goto done;
    }
    for (int j = 0; j < r.n_banned; ++j)
        if (r.banned[j].n == 0 || r.banned[j].n > kMaxWord || r.banned[j].oom) {
            rc = respond_error("invalid_request_error", "banned words must be 1..256 bytes", 0);
            goto done;
        }
    if (!(r.max_regen >= 0 && r.max_regen <= kMaxRegen)) {
        rc = respond_error("invalid_request_error", "\"max_regenerations\" must be in [0, 14]", 0);
        goto done;
    }
    if (!(r.f.temperature >= 0 && r.f.temperature <= 1e30) || !(r.f.typical_p > 0 && r.f.typical_p <= 1) ||
        !(r.f.frequency_penalty >= -1e30 && r.f.frequency_penalty <= 1e30) ||
        !(r.f.presence_penalty >= -1e30 && r.f.presence_penalty <= 1e30) ||
        !(r.f.top_k >= -2147483648.0 && r.f.top_k <= 2147483647.0) ||
        !(r.f.repeat_last_n >= -1 && r.f.repeat_last_n <= 2147483647.0) ||
        (r.f.has_max_tokens && !(r.f.max_tokens >= 1 && r.f.max_tokens <= 2147483647.0)) ||
        (r.f.has_seed && !(r.f.seed >= 0 && r.f.seed < 18446744073709551616.0))) {
        rc = respond_error("invalid_request_error", "a sampling parameter is out of range", 0);
        goto done;
    }

    model = realm_model_open(r.f.model.p, (int32_t)r.f.model.n);
    if (model < 0) {
        rc = model == REALM_E_NOT_FOUND ? respond_error("invalid_request_error", "no such model", r.f.model.p)
                                        : host_error("model_open");
        goto done;
    }
    const char* text;
    int32_t text_len;
    uint32_t tflags;
    if (r.f.messages) {
        int32_t need = realm_chat_template(model, r.f.messages, (int32_t)r.f.messages_len, REALM_TEMPLATE_ADD_GENERATION_PROMPT, 0, 0);
        if (need < 0) { rc = host_error("chat template"); goto done; }
        rendered = (char*)malloc((size_t)need + 1);
        if (!rendered) { rc = respond_error("server_error", "out of memory", 0); goto done; }
        if (realm_chat_template(model, r.f.messages, (int32_t)r.f.messages_len, REALM_TEMPLATE_ADD_GENERATION_PROMPT,
                                rendered, need) != need) { rc = host_error("chat template"); goto done; }
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
    const int32_t n_ctx = model_info_int(model, "\"n_ctx\":");
    if (n_ctx > 0 && n_tok >= n_ctx) {
        rc = respond_error("invalid_request_error", "the prompt does not fit the model's context", 0);
        goto done;
    }
    const int32_t cap_tok = n_ctx > 0 ? n_ctx + 1 : n_tok + (r.f.has_max_tokens ? (int32_t)r.f.max_tokens : 4096) + 1;
    toks = (int32_t*)malloc((size_t)cap_tok * sizeof(int32_t));
    bans = (realm_logit_bias*)malloc(kMaxBansPerPos * sizeof *bans);
    piece = (char*)malloc(4096);
    if (!toks || !bans || !piece) { rc = respond_error("server_error", "out of memory", 0); goto done; }
    if (realm_tokenize(model, text, text_len, tflags, toks, n_tok) != n_tok) { rc = host_error("tokenize"); goto done; }

    seq = realm_seq_open(model);
    if (seq < 0) { rc = host_error("seq_open"); goto done; }
    {
        /* A cancelled client gets no response: the host reports the request as cancelled. */
        int32_t fed = realm_seq_feed(seq, toks, n_tok);
        if (fed < 0) { rc = fed == REALM_E_CANCELLED ? REALM_E_CANCELLED : host_error("seq_feed"); goto done; }
    }

    realm_sampling_params sp;
    sp.temperature = (float)r.f.temperature;
    sp.top_p = (float)r.f.top_p;
    sp.min_p = (float)r.f.min_p;
    sp.top_k = (int32_t)r.f.top_k;
    sp.repeat_penalty = (float)r.f.repeat_penalty;
    sp.repeat_last_n = (int32_t)r.f.repeat_last_n;
    sp.seed = r.f.has_seed ? (uint64_t)r.f.seed : (uint64_t)realm_now_ms();
    sp.frequency_penalty = (float)r.f.frequency_penalty;
    sp.presence_penalty = (float)r.f.presence_penalty;
    sp.typical_p = (float)r.f.typical_p;
    sp.n_logit_bias = 0;
    sp.logit_bias = (uint32_t)(uintptr_t)bans;
    sp.step_flags = 0;

    o.stream = r.f.stream;
    long long n_gen = 0; /* accepted completion tokens, plus the end-of-generation step */
    int32_t length = n_tok;
    const char* finish = "stop";
    for (;;) {
        realm_step_result res;
        sp.n_logit_bias = n_bans; /* bans apply to this position only */
        int32_t tok = realm_step(seq, &sp, (int32_t)sizeof sp, &res, piece, 4096);
        if (tok < 0) {
            if (tok == REALM_E_CANCELLED) { o.cancelled = 1; break; }
            if (tok == REALM_E_BACKEND && n_bans > 0) {
                rc = respond_policy_error("every token at this position completes a banned word", regen);
                goto done;
            }
            rc = host_error("step");
            goto done;
        }
        if (res.flags & REALM_STEP_END_OF_GENERATION) {
            ++n_gen;
            accept_piece(&o, "", 0, 1);
            break;
        }
        size_t tl = res.text_len > 0 && res.text_len <= 4096 ? (size_t)res.text_len : 0;
        size_t old = o.raw.n;
        buf_add(&o.raw, piece, tl); /* tentatively */
        int bad = tl > 0 && completes_banned(&r, o.raw.p, o.raw.n, old);
        o.raw.n = old;
        if (bad) {
            /* Rewind: the token was fed by step; re-open the sequence without it and ban it here. */
            if (regen >= (int)r.max_regen || n_bans >= kMaxBansPerPos) {
                rc = respond_policy_error("could not avoid a banned word within the regeneration limit", regen);
                goto done;
            }
            ++regen;
            bans[n_bans].token = tok;
            bans[n_bans].bias = -__builtin_inff();
            ++n_bans;
            realm_seq_close(seq);
            seq = realm_seq_open(model);
            if (seq < 0) { rc = host_error("seq_open"); goto done; }
            if (realm_seq_feed(seq, toks, length) < 0) { rc = host_error("seq_feed"); goto done; }
            continue;
        }
        n_bans = 0;
        toks[length++] = tok;
        ++n_gen;
        accept_piece(&o, piece, tl, 0);
        if ((r.f.has_max_tokens && n_gen >= (long long)r.f.max_tokens) || (n_ctx > 0 && length >= n_ctx) ||
            length >= cap_tok) {
            accept_piece(&o, "", 0, 1);
            finish = "length";
            break;
        }
        if (o.cancelled || realm_cancelled()) { o.cancelled = 1; break; }
    }
    if (o.text.oom || o.raw.oom || o.pending.oom) { rc = respond_error("server_error", "out of memory", 0); goto done; }
    {
        buf b = {0};
        openai_response_open(&b, &r.f, &o.text, o.cancelled, finish, n_tok, n_gen);
        buf_str(&b, ",\"policy\":{\"regenerations\":");
        buf_int(&b, regen);
        buf_str(&b, "}");
        buf_str(&b, "}");
        rc = write_response(&b);
    }
done:
    if (seq > 0) realm_seq_close(seq);
    free(piece);
    free(toks);
    free(bans);
    free(rendered);
    buf_free(&o.raw);
    buf_free(&o.pending);
    buf_free(&o.text);
    openai_fields_free(&r.f);
    for (int j = 0; j < r.n_banned; ++j) buf_free(&r.banned[j]);
    return rc < 0 ? rc : 0;
}

REALM_EXPORT(realm_handle_request) int32_t realm_handle_request(int32_t ptr, int32_t len) {
    if (len < 0) return REALM_E_INVALID_ARGUMENT;
    return handle((const char*)(intptr_t)ptr, (size_t)len);
}
