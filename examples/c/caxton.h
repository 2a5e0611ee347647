/* caxton.h: caxton's agent ABI, version 2, for C (docs/ABI.md).
 *
 * An agent exports `memory`, caxton_alloc, caxton_handle, and optionally
 * caxton_init; CAXTON_ABI_V2 (once, in one file) exports
 * caxton_abi_version, which makes it a version 2 module: it receives and
 * sends version 2 envelopes (22 performatives, deadlines, protocols,
 * trace context) and may use timers and self_name. Build it as a WASI
 * reactor:
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -o agent.wasm agent.c
 * printf and friends reach the node's log; time() and malloc() work.
 *
 * Messages are read in place (caxton_parse: no copy, nothing allocated)
 * and written with caxton_encode into a buffer of the caller's.
 */
#ifndef CAXTON_H
#define CAXTON_H

#include <stdint.h>
#include <string.h>

#define CAXTON_IMPORT(name) __attribute__((import_module("caxton"), import_name(name)))
#define CAXTON_EXPORT(name) __attribute__((export_name(name)))

/* Host functions (docs/ABI.md, "Imports"). Negative results: */
enum caxton_result {
    CAXTON_NOT_FOUND = -1, CAXTON_BUSY = -2, CAXTON_INVALID = -3, CAXTON_TOO_LARGE = -4,
    CAXTON_OVER_LIMIT = -5, CAXTON_UNREACHABLE = -6, CAXTON_DENIED = -7,
};
CAXTON_IMPORT("send") int32_t caxton_send(const uint8_t *envelope, int32_t len);
CAXTON_IMPORT("state_get") int32_t caxton_state_get(const uint8_t *key, int32_t key_len, uint8_t *buf, int32_t buf_cap);
CAXTON_IMPORT("state_put") int32_t caxton_state_put(const uint8_t *key, int32_t key_len, const uint8_t *val, int32_t val_len);
CAXTON_IMPORT("state_delete") int32_t caxton_state_delete(const uint8_t *key, int32_t key_len);
CAXTON_IMPORT("now_micros") int64_t caxton_now_micros(void);
/* A durable timer: after delay_ms this instance receives an inform from
 * "@timer" whose in_reply_to is the id returned (> 0) and whose content is
 * these bytes. */
CAXTON_IMPORT("timer_set") int64_t caxton_timer_set(int64_t delay_ms, const uint8_t *content, int32_t len);
CAXTON_IMPORT("timer_cancel") int32_t caxton_timer_cancel(int64_t id);
/* This instance's address (its name, or TYPE/KEY for a keyed agent's
 * activation); CAXTON_ADDRESS_BYTES_MAX bytes always suffice. */
CAXTON_IMPORT("self_name") int32_t caxton_self_name(uint8_t *buf, int32_t cap);
CAXTON_IMPORT("log") void caxton_log(int32_t level, const uint8_t *line, int32_t len);

/* Declares a version 2 module: use once, at file scope. */
#define CAXTON_ABI_V2 \
    CAXTON_EXPORT("caxton_abi_version") int32_t caxton_abi_version(void) { return 2; }

/* The 22 FIPA communicative acts; 0 to 10 are version 1's. */
enum caxton_performative {
    CAXTON_REQUEST = 0, CAXTON_INFORM = 1, CAXTON_QUERY_IF = 2, CAXTON_QUERY_REF = 3,
    CAXTON_PROPOSE = 4, CAXTON_ACCEPT_PROPOSAL = 5, CAXTON_REJECT_PROPOSAL = 6, CAXTON_AGREE = 7,
    CAXTON_REFUSE = 8, CAXTON_FAILURE = 9, CAXTON_NOT_UNDERSTOOD = 10, CAXTON_CFP = 11,
    CAXTON_CANCEL = 12, CAXTON_CONFIRM = 13, CAXTON_DISCONFIRM = 14, CAXTON_INFORM_IF = 15,
    CAXTON_INFORM_REF = 16, CAXTON_PROPAGATE = 17, CAXTON_PROXY = 18, CAXTON_REQUEST_WHEN = 19,
    CAXTON_REQUEST_WHENEVER = 20, CAXTON_SUBSCRIBE = 21,
};
#define CAXTON_PERFORMATIVE_MAX 21

/* The envelope's layout (docs/ABI.md, "The envelope"): little-endian. */
#define CAXTON_VERSION 2
#define CAXTON_HEADER_BYTES 76
#define CAXTON_NAME_BYTES_MAX 64
#define CAXTON_ADDRESS_BYTES_MAX 193
#define CAXTON_PROTOCOL_BYTES_MAX 64
#define CAXTON_CONTENT_BYTES_MAX (1024 * 1024)
enum {
    CAXTON_AT_VERSION = 0, CAXTON_AT_PERFORMATIVE = 1, CAXTON_AT_FLAGS = 2, CAXTON_AT_MESSAGE_ID = 4,
    CAXTON_AT_CONVERSATION_ID = 12, CAXTON_AT_REPLY_WITH = 20, CAXTON_AT_IN_REPLY_TO = 28, CAXTON_AT_REPLY_BY = 36,
    CAXTON_AT_TRACE_ID = 44, CAXTON_AT_PARENT_SPAN_ID = 60, CAXTON_AT_SENDER_LEN = 68, CAXTON_AT_RECEIVER_LEN = 69,
    CAXTON_AT_PROTOCOL_LEN = 70, CAXTON_AT_RESERVED = 71, CAXTON_AT_CONTENT_LEN = 72,
};

/* A message read in place from its envelope: the pointers are into it. */
struct caxton_message {
    uint8_t performative;
    uint64_t message_id, conversation_id, reply_with, in_reply_to;
    uint64_t reply_by; /* microseconds since the Unix epoch; 0: none */
    const char *sender;   uint8_t sender_len;
    const char *receiver; uint8_t receiver_len;
    const char *protocol; uint8_t protocol_len; /* 0: none */
    const uint8_t *content; uint32_t content_len;
};

/* A message to send. Leave what you do not need zero. */
struct caxton_outgoing {
    uint8_t performative;
    uint64_t conversation_id, reply_with, in_reply_to, reply_by;
    const char *receiver; uint8_t receiver_len;
    const char *protocol; uint8_t protocol_len;
    const uint8_t *content; uint32_t content_len;
};

static inline uint64_t caxton_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t caxton_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t caxton_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Reads the envelope the node delivered: 0, or CAXTON_INVALID if it is not
 * a version 2 envelope whose lengths add up (the node never delivers one,
 * but a parser does not trust its input). */
static inline int caxton_parse(const uint8_t *e, int32_t len, struct caxton_message *m) {
    if (len < CAXTON_HEADER_BYTES || e[CAXTON_AT_VERSION] != CAXTON_VERSION) return CAXTON_INVALID;
    if (e[CAXTON_AT_PERFORMATIVE] > CAXTON_PERFORMATIVE_MAX || caxton_u16(e + CAXTON_AT_FLAGS) != 0 || e[CAXTON_AT_RESERVED] != 0) return CAXTON_INVALID;
    m->performative = e[CAXTON_AT_PERFORMATIVE];
    m->message_id = caxton_u64(e + CAXTON_AT_MESSAGE_ID);
    m->conversation_id = caxton_u64(e + CAXTON_AT_CONVERSATION_ID);
    m->reply_with = caxton_u64(e + CAXTON_AT_REPLY_WITH);
    m->in_reply_to = caxton_u64(e + CAXTON_AT_IN_REPLY_TO);
    m->reply_by = caxton_u64(e + CAXTON_AT_REPLY_BY);
    m->sender_len = e[CAXTON_AT_SENDER_LEN];
    m->receiver_len = e[CAXTON_AT_RECEIVER_LEN];
    m->protocol_len = e[CAXTON_AT_PROTOCOL_LEN];
    m->content_len = caxton_u32(e + CAXTON_AT_CONTENT_LEN);
    if (m->content_len > CAXTON_CONTENT_BYTES_MAX) return CAXTON_INVALID;
    if ((int64_t)CAXTON_HEADER_BYTES + m->sender_len + m->receiver_len + m->protocol_len + m->content_len != len) return CAXTON_INVALID;
    m->sender = (const char *)e + CAXTON_HEADER_BYTES;
    m->receiver = m->sender + m->sender_len;
    m->protocol = m->receiver + m->receiver_len;
    m->content = (const uint8_t *)m->protocol + m->protocol_len;
    return 0;
}

/* Bytes caxton_encode writes for `o`. */
static inline uint32_t caxton_encoded_len(const struct caxton_outgoing *o) {
    return CAXTON_HEADER_BYTES + o->receiver_len + o->protocol_len + o->content_len;
}

/* Writes `o` as an envelope into `out` (room for `cap` bytes); returns its
 * length, or CAXTON_TOO_LARGE if it does not fit. The node sets the sender,
 * the message id and the trace context. */
static inline int32_t caxton_encode(uint8_t *out, uint32_t cap, const struct caxton_outgoing *o) {
    uint32_t len = caxton_encoded_len(o);
    if (len > cap || o->content_len > CAXTON_CONTENT_BYTES_MAX) return CAXTON_TOO_LARGE;
    memset(out, 0, CAXTON_HEADER_BYTES);
    out[CAXTON_AT_VERSION] = CAXTON_VERSION;
    out[CAXTON_AT_PERFORMATIVE] = o->performative;
    memcpy(out + CAXTON_AT_CONVERSATION_ID, &o->conversation_id, 8);
    memcpy(out + CAXTON_AT_REPLY_WITH, &o->reply_with, 8);
    memcpy(out + CAXTON_AT_IN_REPLY_TO, &o->in_reply_to, 8);
    memcpy(out + CAXTON_AT_REPLY_BY, &o->reply_by, 8);
    out[CAXTON_AT_RECEIVER_LEN] = o->receiver_len;
    out[CAXTON_AT_PROTOCOL_LEN] = o->protocol_len;
    memcpy(out + CAXTON_AT_CONTENT_LEN, &o->content_len, 4);
    uint8_t *at = out + CAXTON_HEADER_BYTES;
    memcpy(at, o->receiver, o->receiver_len);
    memcpy(at + o->receiver_len, o->protocol, o->protocol_len);
    memcpy(at + o->receiver_len + o->protocol_len, o->content, o->content_len);
    return (int32_t)len;
}

/* The answer to `m` (to its sender, in its conversation and protocol, with
 * in_reply_to its reply_with), ready for caxton_encode. */
static inline struct caxton_outgoing caxton_reply_to(const struct caxton_message *m, uint8_t performative, const uint8_t *content, uint32_t content_len) {
    struct caxton_outgoing o = {0};
    o.performative = performative;
    o.conversation_id = m->conversation_id;
    o.in_reply_to = m->reply_with;
    o.receiver = m->sender;
    o.receiver_len = m->sender_len;
    o.protocol = m->protocol;
    o.protocol_len = m->protocol_len;
    o.content = content;
    o.content_len = content_len;
    return o;
}

/* Whether `m` is one of this instance's timers firing (its id is
 * m->in_reply_to, its content what caxton_timer_set was given). */
static inline int caxton_is_timer(const struct caxton_message *m) {
    return m->sender_len == 6 && memcmp(m->sender, "@timer", 6) == 0 && m->performative == CAXTON_INFORM;
}

/* Whether `m` is the node's failure notice about a message this instance
 * sent (its reason is the content: "crashed_handler", "timed_out", ...). */
static inline int caxton_is_failure_notice(const struct caxton_message *m) {
    return m->sender_len == 5 && memcmp(m->sender, "@node", 5) == 0 && m->performative == CAXTON_FAILURE;
}

#endif
