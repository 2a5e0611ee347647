/* greeter: a C agent on wasi-libc. Replies "hello, <content>" to every
 * message, counting greetings in state; logs each one with printf and
 * stamps it with time(). Content "crash" dereferences a null pointer's
 * worth of nonsense and traps (a counted crash; the instance comes back).
 *
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -o greeter.wasm greeter.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "caxton.h"

static uint8_t *inbox;
static int32_t inbox_cap;

CAXTON_EXPORT("caxton_alloc") int32_t caxton_alloc(int32_t len) {
    if (len > inbox_cap) {
        uint8_t *grown = realloc(inbox, (size_t)len);
        if (!grown) return -1;
        inbox = grown;
        inbox_cap = len;
    }
    return (int32_t)(uintptr_t)inbox;
}

CAXTON_EXPORT("caxton_init") int32_t caxton_init(void) {
    printf("greeter (C) starting at %lld\n", (long long)time(NULL));
    return 0;
}

CAXTON_EXPORT("caxton_handle") int32_t caxton_handle(int32_t ptr, int32_t len) {
    struct caxton_message m;
    if (caxton_parse((const uint8_t *)(uintptr_t)ptr, len, &m) != 0) return -3;
    if (m.content_len == 5 && memcmp(m.content, "crash", 5) == 0) __builtin_trap();

    static const uint8_t key[] = "greetings";
    uint64_t count = 0;
    if (caxton_state_get(key, sizeof key - 1, (uint8_t *)&count, sizeof count) < 0) count = 0;
    count++;
    if (caxton_state_put(key, sizeof key - 1, (const uint8_t *)&count, sizeof count) != 0) return -5;

    char *text = malloc(m.content_len + 64);
    if (!text) return -5;
    int n = snprintf(text, m.content_len + 64, "hello, %.*s (greeting %llu)", (int)m.content_len, (const char *)m.content, (unsigned long long)count);
    printf("greeted %.*s at %lld\n", (int)m.sender_len, m.sender, (long long)time(NULL));

    uint8_t *out = malloc(CAXTON_HEADER_BYTES + m.sender_len + (size_t)n);
    int32_t rc = -5;
    if (out) {
        int32_t elen = caxton_encode(out, CAXTON_INFORM, m.conversation_id, 0, m.reply_with, m.sender, m.sender_len, (const uint8_t *)text, (uint32_t)n);
        rc = caxton_send(out, elen);
    }
    free(out);
    free(text);
    return rc;
}
