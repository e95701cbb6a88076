/* echo: the smallest complete Realm guest. It logs, streams the request body back in 16-byte chunks and
 * answers {"echo": <request>, "bytes": N, "chunks": K, "elapsed_ms": T}. No model needed. */
#include <string.h>

#include "realm_guest.h"

REALM_GUEST_DEFINE_ALLOC_AND_VERSION()

static int32_t g_inits;

REALM_EXPORT(realm_init) int32_t realm_init(void) {
    ++g_inits;
    return REALM_OK;
}

static int put_uint(char* out, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
    return n;
}

REALM_EXPORT(realm_handle_request) int32_t realm_handle_request(const char* req, int32_t len) {
    const int64_t t0 = realm_now_ms();
    realm_log_str(REALM_LOG_INFO, "echo: handling request");

    /* The same bytes are available through request_read (sized output: ask, then read). */
    int32_t need = realm_request_read(NULL, 0);
    if (need != len) return REALM_E_STATE;

    int32_t chunks = 0;
    for (int32_t off = 0; off < len; off += 16) {
        if (realm_cancelled()) return REALM_E_CANCELLED;
        int32_t n = len - off < 16 ? len - off : 16;
        int32_t rc = realm_emit(req + off, n);
        if (rc < 0) return rc;
        ++chunks;
    }

    static const char a[] = "{\"echo\":", b[] = ",\"bytes\":", c[] = ",\"chunks\":", d[] = ",\"elapsed_ms\":";
    char* out = malloc((size_t)len + 128);
    if (!out) return REALM_E_LIMIT;
    int32_t k = 0;
    memcpy(out + k, a, sizeof a - 1), k += (int32_t)sizeof a - 1;
    memcpy(out + k, req, (size_t)len), k += len;
    memcpy(out + k, b, sizeof b - 1), k += (int32_t)sizeof b - 1;
    k += put_uint(out + k, (uint64_t)len);
    memcpy(out + k, c, sizeof c - 1), k += (int32_t)sizeof c - 1;
    k += put_uint(out + k, (uint64_t)chunks);
    memcpy(out + k, d, sizeof d - 1), k += (int32_t)sizeof d - 1;
    int64_t dt = realm_now_ms() - t0;
    k += put_uint(out + k, (uint64_t)(dt < 0 ? 0 : dt));
    out[k++] = '}';
    int32_t rc = realm_response_write(out, k);
    free(out);
    return rc < 0 ? rc : REALM_OK;
}
