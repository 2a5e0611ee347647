/* caxton.h: caxton's agent ABI, version 1, for C (docs/ABI.md).
 *
 * An agent exports `memory`, caxton_alloc, caxton_handle and optionally
 * caxton_init; build it as a WASI reactor:
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -o agent.wasm agent.c
 * printf and friends reach the node's log; time() and malloc() work.
 */
#ifndef CAXTON_H
#define CAXTON_H

#include <stdint.h>
#include <string.h>

#define CAXTON_IMPORT(name) __attribute__((import_module("caxton"), import_name(name)))
#define CAXTON_EXPORT(name) __attribute__((export_name(name)))

CAXTON_IMPORT("send") int32_t caxton_send(const uint8_t *envelope, int32_t len);
CAXTON_IMPORT("state_get") int32_t caxton_state_get(const uint8_t *key, int32_t key_len, uint8_t *buf, int32_t buf_cap);
CAXTON_IMPORT("state_put") int32_t caxton_state_put(const uint8_t *key, int32_t key_len, const uint8_t *val, int32_t val_len);
CAXTON_IMPORT("state_delete") int32_t caxton_state_delete(const uint8_t *key, int32_t key_len);
CAXTON_IMPORT("now_micros") int64_t caxton_now_micros(void);
CAXTON_IMPORT("log") void caxton_log(int32_t level, const uint8_t *line, int32_t len);

enum caxton_performative {
    CAXTON_REQUEST = 0, CAXTON_INFORM = 1, CAXTON_QUERY_IF = 2, CAXTON_QUERY_REF = 3,
    CAXTON_PROPOSE = 4, CAXTON_ACCEPT_PROPOSAL = 5, CAXTON_REJECT_PROPOSAL = 6, CAXTON_AGREE = 7,
    CAXTON_REFUSE = 8, CAXTON_FAILURE = 9, CAXTON_NOT_UNDERSTOOD = 10,
};

#define CAXTON_HEADER_BYTES 44

/* A message read in place from its envelope. */
struct caxton_message {
    uint8_t performative;
    uint64_t message_id, conversation_id, reply_with, in_reply_to;
    const char *sender;   uint8_t sender_len;
    const char *receiver; uint8_t receiver_len;
    const uint8_t *content; uint32_t content_len;
};

static inline uint64_t caxton_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t caxton_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Reads the envelope the node delivered; 0, or -1 if it does not add up. */
static inline int caxton_parse(const uint8_t *e, int32_t len, struct caxton_message *m) {
    if (len < CAXTON_HEADER_BYTES || e[0] != 1) return -1;
    m->performative = e[1];
    m->message_id = caxton_u64(e + 4);
    m->conversation_id = caxton_u64(e + 12);
    m->reply_with = caxton_u64(e + 20);
    m->in_reply_to = caxton_u64(e + 28);
    m->sender_len = e[36];
    m->receiver_len = e[37];
    m->content_len = caxton_u32(e + 40);
    if ((int64_t)CAXTON_HEADER_BYTES + m->sender_len + m->receiver_len + m->content_len != len) return -1;
    m->sender = (const char *)e + CAXTON_HEADER_BYTES;
    m->receiver = m->sender + m->sender_len;
    m->content = (const uint8_t *)m->receiver + m->receiver_len;
    return 0;
}

/* Writes an envelope to `receiver` into `out` (at least 44 + receiver_len
 * + content_len bytes); returns its length. The node fills in the sender
 * and the message id. */
static inline int32_t caxton_encode(uint8_t *out, uint8_t performative, uint64_t conversation_id, uint64_t reply_with, uint64_t in_reply_to,
                                    const char *receiver, uint8_t receiver_len, const uint8_t *content, uint32_t content_len) {
    memset(out, 0, CAXTON_HEADER_BYTES);
    out[0] = 1;
    out[1] = performative;
    memcpy(out + 12, &conversation_id, 8);
    memcpy(out + 20, &reply_with, 8);
    memcpy(out + 28, &in_reply_to, 8);
    out[37] = receiver_len;
    memcpy(out + 40, &content_len, 4);
    memcpy(out + CAXTON_HEADER_BYTES, receiver, receiver_len);
    memcpy(out + CAXTON_HEADER_BYTES + receiver_len, content, content_len);
    return CAXTON_HEADER_BYTES + receiver_len + (int32_t)content_len;
}

#endif
