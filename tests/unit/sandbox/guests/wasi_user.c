/* A guest that uses stdio (snprintf, printf), so wasi-libc pulls in WASI imports. The host gives it an
 * empty WASI context (no files, env, args; stdout discarded): it must link and run. */
#include <stdio.h>
#include <string.h>

#include "realm_guest.h"

REALM_GUEST_DEFINE_ALLOC_AND_VERSION()
REALM_EXPORT(realm_init) int32_t realm_init(void) { return REALM_OK; }

REALM_EXPORT(realm_handle_request) int32_t realm_handle_request(const char* req, int32_t len) {
    (void)req;
    char buf[64];
    printf("this goes nowhere\n");
    fflush(stdout);
    FILE* f = fopen("/etc/passwd", "r"); /* no preopens: must fail */
    int n = snprintf(buf, sizeof buf, "{\"len\":%d,\"file_opened\":%s}", (int)len, f ? "true" : "false");
    if (f) fclose(f);
    return realm_response_write(buf, n) < 0 ? -1 : 0;
}
