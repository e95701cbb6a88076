/*
 * realm_guest_json.h — small C helpers shared by the guests (guest/default, guest/examples): a growable byte
 * buffer, UTF-8 checks, JSON string output and a strict recursive-descent JSON reader with a depth limit,
 * error responses, used by the default guest and the examples; header-only, every function is
 * `static inline` so a guest pays only for what it uses.
 */
#ifndef REALM_GUEST_JSON_H
#define REALM_GUEST_JSON_H

#include <realm_guest.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

/* ---- growable byte buffer ------------------------------------------------------------------------- */
typedef struct {
    char* p;
    size_t n, cap;
    int oom;
} buf;

static inline void buf_reserve(buf* b, size_t extra) {
    if (b->oom) return;
    if (b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char* p = (char*)realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}
static inline void buf_add(buf* b, const char* s, size_t n) {
    buf_reserve(b, n);
    if (b->oom) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static inline void buf_str(buf* b, const char* s) { buf_add(b, s, strlen(s)); }
static inline void buf_ch(buf* b, char c) { buf_add(b, &c, 1); }
static inline void buf_free(buf* b) {
    free(b->p);
    b->p = 0;
    b->n = b->cap = 0;
}
static inline void buf_int(buf* b, long long v) {
    char tmp[32];
    int i = 0, neg = v < 0;
    unsigned long long u = neg ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[i++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg) buf_ch(b, '-');
    while (i) buf_ch(b, tmp[--i]);
}

/* ---- UTF-8 -------------------------------------------------------------------------------------------- */
/* Length of the valid UTF-8 character at s[0..n): >0 valid, 0 incomplete but could become valid, -1 invalid. */
static inline int utf8_char(const unsigned char* s, size_t n) {
    unsigned char c = s[0];
    int len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return -1;
    for (int k = 1; k < len; ++k) {
        if ((size_t)k >= n) return 0;
        unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (s[k] < lo_k || s[k] > hi_k) return -1;
    }
    return len;
}
static const char kReplacement[] = "\xEF\xBF\xBD";

/* Moves the complete (or certainly invalid) prefix of raw into out; keeps an incomplete tail in raw. With
 * flush, the tail becomes U+FFFD per byte. */
static inline void utf8_drain(buf* raw, buf* out, int flush) {
    size_t i = 0;
    const unsigned char* s = (const unsigned char*)raw->p;
    while (i < raw->n) {
        int l = utf8_char(s + i, raw->n - i);
        if (l > 0) {
            buf_add(out, raw->p + i, (size_t)l);
            i += (size_t)l;
        } else if (l < 0 || flush) {
            buf_add(out, kReplacement, 3);
            i += 1;
        } else {
            break;
        }
    }
    memmove(raw->p, raw->p + i, raw->n - i);
    raw->n -= i;
    if (raw->p) raw->p[raw->n] = 0;
}

/* ---- JSON output ------------------------------------------------------------------------------------ */
static inline void json_str(buf* b, const char* s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_ch(b, '"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            int l = utf8_char((const unsigned char*)s + i, n - i);
            if (l > 0) {
                buf_add(b, s + i, (size_t)l);
                i += (size_t)l;
            } else {
                buf_add(b, kReplacement, 3);
                i += 1;
            }
            continue;
        }
        switch (c) {
            case '"': buf_str(b, "\\\""); break;
            case '\\': buf_str(b, "\\\\"); break;
            case '\n': buf_str(b, "\\n"); break;
            case '\r': buf_str(b, "\\r"); break;
            case '\t': buf_str(b, "\\t"); break;
            default:
                if (c < 0x20) {
                    char e[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
                    buf_str(b, e);
                } else {
                    buf_ch(b, (char)c);
                }
        }
        ++i;
    }
    buf_ch(b, '"');
}

/* ---- JSON input: a strict recursive-descent parser with a depth limit ---------------------------------- */
typedef struct {
    const char* s;
    size_t n, i;
    int depth;
    const char* err;
} parser;

enum { kMaxDepth = 64 };

static inline void ws(parser* p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) ++p->i;
}
static inline int fail(parser* p, const char* why) {
    if (!p->err) p->err = why;
    return 0;
}
static inline int lit(parser* p, const char* w) {
    size_t l = strlen(w);
    if (p->n - p->i < l || memcmp(p->s + p->i, w, l) != 0) return fail(p, "invalid JSON literal");
    p->i += l;
    return 1;
}
static inline int hex4(parser* p, unsigned* out) {
    if (p->n - p->i < 4) return fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
        char c = p->s[p->i++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(p, "bad \\u escape");
    }
    *out = v;
    return 1;
}
static inline void put_cp(buf* b, unsigned cp) {
    char t[4];
    if (cp < 0x80) { t[0] = (char)cp; buf_add(b, t, 1); }
    else if (cp < 0x800) { t[0] = (char)(0xC0 | (cp >> 6)); t[1] = (char)(0x80 | (cp & 63)); buf_add(b, t, 2); }
    else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | (cp >> 12)); t[1] = (char)(0x80 | ((cp >> 6) & 63)); t[2] = (char)(0x80 | (cp & 63));
        buf_add(b, t, 3);
    } else {
        t[0] = (char)(0xF0 | (cp >> 18)); t[1] = (char)(0x80 | ((cp >> 12) & 63));
        t[2] = (char)(0x80 | ((cp >> 6) & 63)); t[3] = (char)(0x80 | (cp & 63));
        buf_add(b, t, 4);
    }
}
/* Parses a string at p->i (which must be '"'); appends the unescaped bytes to out when out != NULL. */
static inline int str(parser* p, buf* out) {
    if (p->i >= p->n || p->s[p->i] != '"') return fail(p, "expected a string");
    ++p->i;
    while (p->i < p->n) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') {
            ++p->i;
            return 1;
        }
        if (c < 0x20) return fail(p, "control character in a string");
        if (c == '\\') {
            if (++p->i >= p->n) break;
            char e = p->s[p->i++];
            const char* rep = 0;
            switch (e) {
                case '"': rep = "\""; break;
                case '\\': rep = "\\"; break;
                case '/': rep = "/"; break;
                case 'b': rep = "\b"; break;
                case 'f': rep = "\f"; break;
                case 'n': rep = "\n"; break;
                case 'r': rep = "\r"; break;
                case 't': rep = "\t"; break;
                case 'u': {
                    unsigned cp;
                    if (!hex4(p, &cp)) return 0;
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        unsigned lo;
                        if (p->n - p->i >= 6 && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                            p->i += 2;
                            if (!hex4(p, &lo)) return 0;
                            if (lo >= 0xDC00 && lo <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            else {
                                if (out) put_cp(out, 0xFFFD);
                                cp = lo >= 0xD800 && lo <= 0xDFFF ? 0xFFFD : lo;
                            }
                        } else {
                            cp = 0xFFFD;
                        }
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        cp = 0xFFFD;
                    }
                    if (out) put_cp(out, cp);
                    continue;
                }
                default: return fail(p, "bad escape in a string");
            }
            if (out) buf_str(out, rep);
            continue;
        }
        if (out) buf_ch(out, (char)c);
        ++p->i;
    }
    return fail(p, "unterminated string");
}
static inline int num(parser* p, double* out) {
    size_t st = p->i;
    if (p->i < p->n && p->s[p->i] == '-') ++p->i;
    if (p->i >= p->n) return fail(p, "bad number");
    if (p->s[p->i] == '0') ++p->i;
    else if (p->s[p->i] >= '1' && p->s[p->i] <= '9') while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') ++p->i;
    else return fail(p, "bad number");
    if (p->i < p->n && p->s[p->i] == '.') {
        ++p->i;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return fail(p, "bad number");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') ++p->i;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        ++p->i;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) ++p->i;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return fail(p, "bad number");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') ++p->i;
    }
    char tmp[64];
    size_t l = p->i - st;
    if (l >= sizeof tmp) l = sizeof tmp - 1; /* absurdly long numbers lose digits, not safety */
    memcpy(tmp, p->s + st, l);
    tmp[l] = 0;
    if (out) *out = strtod(tmp, 0);
    return 1;
}
static inline int value(parser* p);
static inline int container(parser* p, char open, char close) {
    if (++p->depth > kMaxDepth) return fail(p, "JSON nested too deeply");
    ++p->i;
    ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        ++p->i;
        --p->depth;
        return 1;
    }
    for (;;) {
        if (open == '{') {
            ws(p);
            if (!str(p, 0)) return 0;
            ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') return fail(p, "expected ':'");
            ++p->i;
        }
        if (!value(p)) return 0;
        ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            ++p->i;
            continue;
        }
        if (p->i < p->n && p->s[p->i] == close) {
            ++p->i;
            --p->depth;
            return 1;
        }
        return fail(p, "expected ',' or a closing bracket");
    }
}
/* Validates and skips one value. */
static inline int value(parser* p) {
    ws(p);
    if (p->i >= p->n) return fail(p, "unexpected end of JSON");
    switch (p->s[p->i]) {
        case '{': return container(p, '{', '}');
        case '[': return container(p, '[', ']');
        case '"': return str(p, 0);
        case 't': return lit(p, "true");
        case 'f': return lit(p, "false");
        case 'n': return lit(p, "null");
        default: return num(p, 0);
    }
}

static inline int is_null(parser* p) {
    ws(p);
    if (p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0) {
        p->i += 4;
        return 1;
    }
    return 0;
}
static inline int number_field(parser* p, double* out, int* present) {
    if (is_null(p)) return 1;
    ws(p);
    if (!num(p, out)) return fail(p, "expected a number");
    if (present) *present = 1;
    return 1;
}

/* Parses the input, which must be one JSON object, member by member: field(p, key, ctx) parses the
 * member's value and returns 1, or 0 after fail(), or -1 to have the value validated and skipped. */
typedef int (*json_field_fn)(parser* p, const char* key, void* ctx);
static inline int json_object(parser* p, json_field_fn field, void* ctx) {
    ws(p);
    if (p->i >= p->n || p->s[p->i] != '{') return fail(p, "the request must be a JSON object");
    ++p->i;
    p->depth = 1;
    ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        ++p->i;
    } else {
        for (;;) {
            buf key = {0};
            ws(p);
            if (!str(p, &key)) { buf_free(&key); return 0; }
            ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') { buf_free(&key); return fail(p, "expected ':'"); }
            ++p->i;
            ws(p);
            int ok = key.oom ? fail(p, "out of memory") : field(p, key.p ? key.p : "", ctx);
            if (ok < 0) ok = value(p);
            buf_free(&key);
            if (!ok) return 0;
            ws(p);
            if (p->i < p->n && p->s[p->i] == ',') { ++p->i; continue; }
            if (p->i < p->n && p->s[p->i] == '}') { ++p->i; break; }
            return fail(p, "expected ',' or '}'");
        }
    }
    ws(p);
    if (p->i != p->n) return fail(p, "trailing characters after the JSON object");
    return 1;
}

/* An array of at most `max` strings (or null: none; or, when `single` is set, one bare string) into
 * out[0..*n), replacing what was there. `what` names the field in errors: "\"stop\"". */
static inline int str_list(parser* p, buf* out, int* n, int max, int single, const char* what, const char* too_many) {
    for (int j = 0; j < *n; ++j) buf_free(&out[j]);
    *n = 0;
    if (is_null(p)) return 1;
    if (single && p->i < p->n && p->s[p->i] == '"') {
        buf s = {0};
        int ok = str(p, &s);
        out[(*n)++] = s;
        return ok;
    }
    if (p->i >= p->n || p->s[p->i] != '[') return fail(p, what);
    ++p->i;
    ws(p);
    if (p->i < p->n && p->s[p->i] == ']') { ++p->i; return 1; }
    for (;;) {
        ws(p);
        if (*n == max) return fail(p, too_many);
        if (p->i >= p->n || p->s[p->i] != '"') return fail(p, what);
        buf s = {0};
        if (!str(p, &s)) { buf_free(&s); return 0; }
        out[(*n)++] = s;
        ws(p);
        if (p->i < p->n && p->s[p->i] == ',') { ++p->i; continue; }
        if (p->i < p->n && p->s[p->i] == ']') { ++p->i; return 1; }
        return fail(p, what);
    }
}

/* The request fields the OpenAI-style guests share, with OpenAI's defaults. */
typedef struct {
    buf model;
    const char* messages; /* raw JSON slice of the array, or NULL */
    size_t messages_len;
    buf prompt;
    int has_prompt;
    double temperature, top_p, min_p, top_k, repeat_penalty, repeat_last_n, frequency_penalty, presence_penalty;
    double typical_p, max_tokens, seed;
    int has_max_tokens, has_seed, stream;
} openai_fields;

static inline void openai_fields_init(openai_fields* r) {
    memset(r, 0, sizeof *r);
    r->temperature = 1.0;
    r->top_p = 1.0;
    r->repeat_penalty = 1.0;
    r->repeat_last_n = 64;
    r->typical_p = 1.0;
}
static inline void openai_fields_free(openai_fields* r) {
    buf_free(&r->model);
    buf_free(&r->prompt);
}

/* Parses member `k` when it is one of the shared fields (1 / 0), else returns -1. */
static inline int openai_field(parser* p, const char* k, openai_fields* r) {
    if (!strcmp(k, "model")) {
        r->model.n = 0;
        return is_null(p) || str(p, &r->model);
    }
    if (!strcmp(k, "messages")) {
        size_t st = p->i;
        if (is_null(p)) {
            r->messages = 0;
            return 1;
        }
        if (p->i >= p->n || p->s[p->i] != '[') return fail(p, "\"messages\" must be an array");
        int ok = value(p);
        r->messages = p->s + st;
        r->messages_len = p->i - st;
        return ok;
    }
    if (!strcmp(k, "prompt")) {
        r->prompt.n = 0;
        if (is_null(p)) return 1;
        r->has_prompt = 1;
        if (p->i >= p->n || p->s[p->i] != '"') return fail(p, "\"prompt\" must be a string");
        return str(p, &r->prompt);
    }
    if (!strcmp(k, "stream")) {
        if (p->i < p->n && p->s[p->i] == 't') { r->stream = 1; return lit(p, "true"); }
        if (p->i < p->n && p->s[p->i] == 'f') { r->stream = 0; return lit(p, "false"); }
        return is_null(p) || fail(p, "\"stream\" must be a boolean");
    }
    if (!strcmp(k, "max_tokens") || !strcmp(k, "max_completion_tokens"))
        return number_field(p, &r->max_tokens, &r->has_max_tokens);
    if (!strcmp(k, "seed")) return number_field(p, &r->seed, &r->has_seed);
    static const struct { const char* name; size_t offset; } kNumbers[] = {
        {"temperature", offsetof(openai_fields, temperature)},
        {"top_p", offsetof(openai_fields, top_p)},
        {"min_p", offsetof(openai_fields, min_p)},
        {"top_k", offsetof(openai_fields, top_k)},
        {"repeat_penalty", offsetof(openai_fields, repeat_penalty)},
        {"repeat_last_n", offsetof(openai_fields, repeat_last_n)},
        {"frequency_penalty", offsetof(openai_fields, frequency_penalty)},
        {"presence_penalty", offsetof(openai_fields, presence_penalty)},
        {"typical_p", offsetof(openai_fields, typical_p)},
    };
    for (size_t j = 0; j < sizeof kNumbers / sizeof kNumbers[0]; ++j)
        if (!strcmp(k, kNumbers[j].name)) return number_field(p, (double*)((char*)r + kNumbers[j].offset), 0);
    return -1;
}

/* An integer member of realm_model_info's JSON, e.g. key "\"n_ctx\":"; 0 when absent. */
static inline int32_t model_info_int(int32_t model, const char* key) {
    char info[1024];
    int32_t n = realm_model_info(model, info, (int32_t)sizeof info - 1);
    if (n < 0 || n > (int32_t)sizeof info - 1) return 0;
    info[n] = 0;
    const char* k = strstr(info, key);
    return k ? (int32_t)atol(k + strlen(key)) : 0;
}

/* ---- responses -------------------------------------------------------------------------------------- */
static inline int32_t respond_error(const char* type, const char* msg, const char* detail) {
    buf b = {0};
    buf m = {0};
    buf_str(&m, msg);
    if (detail && detail[0]) {
        buf_str(&m, ": ");
        buf_str(&m, detail);
    }
    buf_str(&b, "{\"error\":{\"message\":");
    json_str(&b, m.p ? m.p : "", m.n);
    buf_str(&b, ",\"type\":");
    json_str(&b, type, strlen(type));
    buf_str(&b, "}}");
    int32_t rc = b.oom ? REALM_E_LIMIT : realm_response_write(b.p, (int32_t)b.n);
    buf_free(&b);
    buf_free(&m);
    return rc < 0 ? rc : 0;
}

static inline int32_t host_error(const char* what) {
    char msg[512];
    int32_t n = realm_last_error(msg, (int32_t)sizeof msg - 1);
    if (n < 0) n = 0;
    if (n > (int32_t)sizeof msg - 1) n = (int32_t)sizeof msg - 1;
    msg[n] = 0;
    /* The host's messages already name the call ("step: ..."). */
    size_t wl = strlen(what);
    const int named = strncmp(msg, what, wl) == 0 && msg[wl] == ':';
    return respond_error("server_error", named ? msg : what, named ? 0 : msg);
}

/* A chat.completion (messages) or text_completion (prompt) object with one choice and its usage, left
 * open after "usage":{...} so that a guest may add members; close it with "}" and write_response(). */
static inline void openai_response_open(buf* b, const openai_fields* f, const buf* text, int cancelled,
                                        const char* finish, long long n_tok, long long n_gen) {
    const int chat = f->messages != 0;
    buf_str(b, chat ? "{\"object\":\"chat.completion\",\"model\":" : "{\"object\":\"text_completion\",\"model\":");
    json_str(b, f->model.p, f->model.n);
    buf_str(b, ",\"choices\":[{\"index\":0,");
    buf_str(b, chat ? "\"message\":{\"role\":\"assistant\",\"content\":" : "\"text\":");
    json_str(b, text->p ? text->p : "", text->n);
    if (chat) buf_str(b, "}");
    buf_str(b, ",\"finish_reason\":");
    buf_str(b, cancelled ? "\"cancelled\"" : (finish[0] == 's' ? "\"stop\"" : "\"length\""));
    buf_str(b, "}],\"usage\":{\"prompt_tokens\":");
    buf_int(b, n_tok);
    buf_str(b, ",\"completion_tokens\":");
    buf_int(b, n_gen);
    buf_str(b, ",\"total_tokens\":");
    buf_int(b, n_tok + n_gen);
    buf_str(b, "}");
}

/* Writes b as the response (an out-of-memory error instead when b overflowed) and frees it. */
static inline int32_t write_response(buf* b) {
    int32_t rc;
    if (b->oom) rc = respond_error("server_error", "out of memory", 0);
    else rc = realm_response_write(b->p, (int32_t)b->n) < 0 ? host_error("response_write") : 0;
    buf_free(b);
    return rc;
}

#endif /* REALM_GUEST_JSON_H */
