/* greeter: a C agent on wasi-libc, ABI version 2 (caxton.h).
 *
 * - Any message: replies "hello, <content> (greeting N)" as an inform,
 *   counting greetings in state; logs each with printf, stamped by time().
 * - A cfp: proposes "3" (the price of a greeting), as a contract-net
 *   participant would.
 * - "remind MS": answers nothing at once; sets a durable timer and, when it
 *   fires MS ms later, answers the asker "reminded after MS ms" (who asked
 *   is kept in state under the timer's id, so a restart loses no one).
 * - "crash": traps (a counted crash; the instance comes back).
 *
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -o greeter.wasm greeter.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "caxton.h"

CAXTON_ABI_V2

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
    uint8_t name[CAXTON_ADDRESS_BYTES_MAX];
    int32_t n = caxton_self_name(name, sizeof name);
    if (n < 0) return n;
    printf("greeter (C) starting as %.*s at %lld\n", (int)n, (const char *)name, (long long)time(NULL));
    return 0;
}

/* Encodes and sends `o`; the envelope's buffer lives for the call only. */
static int32_t send_message(const struct caxton_outgoing *o) {
    uint32_t len = caxton_encoded_len(o);
    uint8_t *out = malloc(len);
    if (!out) return CAXTON_OVER_LIMIT;
    int32_t n = caxton_encode(out, len, o);
    int32_t rc = n < 0 ? n : caxton_send(out, n);
    free(out);
    return rc;
}

/* Who asked for a reminder: kept in state under "timer/<id>". */
struct asker {
    uint64_t conversation_id, reply_with;
    uint32_t delay_ms;
    uint8_t sender_len;
    char sender[CAXTON_ADDRESS_BYTES_MAX];
};

static int timer_key(char *key, int64_t id) { return snprintf(key, 32, "timer/%lld", (long long)id); }

static int32_t remind(const struct caxton_message *m, uint32_t delay_ms) {
    static const uint8_t note[] = "reminder";
    int64_t id = caxton_timer_set(delay_ms, note, sizeof note - 1);
    if (id < 0) return (int32_t)id;
    struct asker a = {m->conversation_id, m->reply_with, delay_ms, m->sender_len, {0}};
    memcpy(a.sender, m->sender, m->sender_len);
    char key[32];
    int key_len = timer_key(key, id);
    return caxton_state_put((const uint8_t *)key, key_len, (const uint8_t *)&a, sizeof a);
}

static int32_t reminded(const struct caxton_message *timer) {
    char key[32];
    int key_len = timer_key(key, (int64_t)timer->in_reply_to);
    struct asker a;
    if (caxton_state_get((const uint8_t *)key, key_len, (uint8_t *)&a, sizeof a) != (int32_t)sizeof a) return 0; /* cancelled, or not ours */
    caxton_state_delete((const uint8_t *)key, key_len);
    char text[64];
    int n = snprintf(text, sizeof text, "reminded after %u ms", a.delay_ms);
    struct caxton_outgoing o = {0};
    o.performative = CAXTON_INFORM;
    o.conversation_id = a.conversation_id;
    o.in_reply_to = a.reply_with;
    o.receiver = a.sender;
    o.receiver_len = a.sender_len;
    o.content = (const uint8_t *)text;
    o.content_len = (uint32_t)n;
    return send_message(&o);
}

CAXTON_EXPORT("caxton_handle") int32_t caxton_handle(int32_t ptr, int32_t len) {
    struct caxton_message m;
    if (caxton_parse((const uint8_t *)(uintptr_t)ptr, len, &m) != 0) return CAXTON_INVALID;
    if (caxton_is_timer(&m)) return reminded(&m);
    if (caxton_is_failure_notice(&m)) {
        printf("a message of mine failed: %.*s\n", (int)m.content_len, (const char *)m.content);
        return 0;
    }
    if (m.content_len == 5 && memcmp(m.content, "crash", 5) == 0) __builtin_trap();
    if (m.performative == CAXTON_CFP) {
        struct caxton_outgoing o = caxton_reply_to(&m, CAXTON_PROPOSE, (const uint8_t *)"3", 1);
        return send_message(&o);
    }
    if (m.content_len > 7 && m.content_len < 20 && memcmp(m.content, "remind ", 7) == 0) {
        char digits[16] = {0};
        memcpy(digits, m.content + 7, m.content_len - 7);
        return remind(&m, (uint32_t)strtoul(digits, NULL, 10));
    }

    static const uint8_t key[] = "greetings";
    uint64_t count = 0;
    if (caxton_state_get(key, sizeof key - 1, (uint8_t *)&count, sizeof count) < 0) count = 0;
    count++;
    if (caxton_state_put(key, sizeof key - 1, (const uint8_t *)&count, sizeof count) != 0) return CAXTON_OVER_LIMIT;

    char *text = malloc(m.content_len + 64);
    if (!text) return CAXTON_OVER_LIMIT;
    int n = snprintf(text, m.content_len + 64, "hello, %.*s (greeting %llu)", (int)m.content_len, (const char *)m.content, (unsigned long long)count);
    printf("greeted %.*s at %lld\n", (int)m.sender_len, m.sender, (long long)time(NULL));
    struct caxton_outgoing o = caxton_reply_to(&m, CAXTON_INFORM, (const uint8_t *)text, (uint32_t)n);
    int32_t rc = send_message(&o);
    free(text);
    return rc;
}
