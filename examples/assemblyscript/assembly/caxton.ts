// caxton.ts: caxton's agent ABI, version 2, for AssemblyScript
// (docs/ABI.md). Messages parsed from the envelope the node delivers,
// messages encoded for `send`, state, durable timers and the instance's own
// address, without a byte offset in the agent's code.
//
// The entry file must export `caxton_abi_version` returning ABI_VERSION
// (version 2 envelopes both ways), beside caxton_alloc and caxton_handle.

@external("caxton", "send")
declare function host_send(ptr: usize, len: i32): i32;
@external("caxton", "state_get")
declare function host_state_get(key: usize, keyLen: i32, buf: usize, cap: i32): i32;
@external("caxton", "state_put")
declare function host_state_put(key: usize, keyLen: i32, value: usize, valueLen: i32): i32;
@external("caxton", "state_delete")
declare function host_state_delete(key: usize, keyLen: i32): i32;
@external("caxton", "now_micros")
declare function host_now_micros(): i64;
@external("caxton", "timer_set")
declare function host_timer_set(delayMs: i64, ptr: usize, len: i32): i64;
@external("caxton", "timer_cancel")
declare function host_timer_cancel(id: i64): i32;
@external("caxton", "self_name")
declare function host_self_name(ptr: usize, cap: i32): i32;

export const ABI_VERSION: i32 = 2;

// Negative results of the host functions (docs/ABI.md).
export const NOT_FOUND: i32 = -1;
export const BUSY: i32 = -2;
export const INVALID: i32 = -3;
export const TOO_LARGE: i32 = -4;
export const OVER_LIMIT: i32 = -5;
export const UNREACHABLE: i32 = -6;
export const DENIED: i32 = -7;

// The 22 FIPA communicative acts; 0 to 10 are version 1's.
export enum Performative {
  Request = 0, Inform = 1, QueryIf = 2, QueryRef = 3, Propose = 4, AcceptProposal = 5,
  RejectProposal = 6, Agree = 7, Refuse = 8, Failure = 9, NotUnderstood = 10, Cfp = 11,
  Cancel = 12, Confirm = 13, Disconfirm = 14, InformIf = 15, InformRef = 16, Propagate = 17,
  Proxy = 18, RequestWhen = 19, RequestWhenever = 20, Subscribe = 21,
}
const PERFORMATIVE_MAX: u8 = 21;

// The envelope (little-endian): a 76-byte header, then sender, receiver,
// protocol and content.
export const HEADER_BYTES: i32 = 76;
export const ADDRESS_BYTES_MAX: i32 = 193;
const CONTENT_BYTES_MAX: u32 = 1024 * 1024;
const AT_PERFORMATIVE: usize = 1;
const AT_FLAGS: usize = 2;
const AT_MESSAGE_ID: usize = 4;
const AT_CONVERSATION_ID: usize = 12;
const AT_REPLY_WITH: usize = 20;
const AT_IN_REPLY_TO: usize = 28;
const AT_REPLY_BY: usize = 36;
const AT_SENDER_LEN: usize = 68;
const AT_RECEIVER_LEN: usize = 69;
const AT_PROTOCOL_LEN: usize = 70;
const AT_RESERVED: usize = 71;
const AT_CONTENT_LEN: usize = 72;

/// A message the node delivered, copied out of the inbox.
export class Message {
  performative: u8 = 0;
  messageId: u64 = 0;
  conversationId: u64 = 0;
  replyWith: u64 = 0;
  inReplyTo: u64 = 0;
  /// Microseconds since the Unix epoch; 0: no deadline.
  replyBy: u64 = 0;
  sender: string = "";
  receiver: string = "";
  protocol: string = "";
  content: ArrayBuffer = new ArrayBuffer(0);

  /// The envelope at `ptr`, or null if it is not a version 2 envelope whose
  /// lengths add up.
  static parse(ptr: i32, len: i32): Message | null {
    const p = <usize>ptr;
    if (len < HEADER_BYTES || load<u8>(p) != <u8>ABI_VERSION) return null;
    if (load<u8>(p + AT_PERFORMATIVE) > PERFORMATIVE_MAX || load<u16>(p + AT_FLAGS) != 0 || load<u8>(p + AT_RESERVED) != 0) return null;
    const senderLen = <i32>load<u8>(p + AT_SENDER_LEN);
    const receiverLen = <i32>load<u8>(p + AT_RECEIVER_LEN);
    const protocolLen = <i32>load<u8>(p + AT_PROTOCOL_LEN);
    const contentLen = load<u32>(p + AT_CONTENT_LEN);
    if (contentLen > CONTENT_BYTES_MAX) return null;
    if (<i64>HEADER_BYTES + senderLen + receiverLen + protocolLen + <i64>contentLen != <i64>len) return null;
    const m = new Message();
    m.performative = load<u8>(p + AT_PERFORMATIVE);
    m.messageId = load<u64>(p + AT_MESSAGE_ID);
    m.conversationId = load<u64>(p + AT_CONVERSATION_ID);
    m.replyWith = load<u64>(p + AT_REPLY_WITH);
    m.inReplyTo = load<u64>(p + AT_IN_REPLY_TO);
    m.replyBy = load<u64>(p + AT_REPLY_BY);
    let at = p + <usize>HEADER_BYTES;
    m.sender = String.UTF8.decodeUnsafe(at, <usize>senderLen);
    at += <usize>senderLen;
    m.receiver = String.UTF8.decodeUnsafe(at, <usize>receiverLen);
    at += <usize>receiverLen;
    m.protocol = String.UTF8.decodeUnsafe(at, <usize>protocolLen);
    at += <usize>protocolLen;
    m.content = new ArrayBuffer(<i32>contentLen);
    memory.copy(changetype<usize>(m.content), at, <usize>contentLen);
    return m;
  }

  /// The content as UTF-8 text.
  text(): string {
    return String.UTF8.decode(this.content);
  }

  /// One of this instance's timers firing: its id is `inReplyTo`.
  isTimer(): bool {
    return this.sender == "@timer" && this.performative == <u8>Performative.Inform;
  }

  /// The node's notice that a message this instance sent failed; the
  /// reason is the content ("crashed_handler", "timed_out", ...).
  isFailureNotice(): bool {
    return this.sender == "@node" && this.performative == <u8>Performative.Failure;
  }
}

/// A message to send; the node sets the sender, the message id and the
/// trace context.
export class Outgoing {
  performative: u8 = <u8>Performative.Inform;
  conversationId: u64 = 0;
  replyWith: u64 = 0;
  inReplyTo: u64 = 0;
  replyBy: u64 = 0;
  receiver: string = "";
  protocol: string = "";
  content: ArrayBuffer = new ArrayBuffer(0);

  constructor(receiver: string, performative: Performative, content: string) {
    this.receiver = receiver;
    this.performative = <u8>performative;
    this.content = String.UTF8.encode(content);
  }

  /// The answer to `m`: to its sender, in its conversation and protocol,
  /// `inReplyTo` its `replyWith`.
  static replyTo(m: Message, performative: Performative, content: string): Outgoing {
    const o = new Outgoing(m.sender, performative, content);
    o.conversationId = m.conversationId;
    o.inReplyTo = m.replyWith;
    o.protocol = m.protocol;
    return o;
  }
}

// One buffer for every envelope sent, grown to the largest and reused.
let outbox: usize = 0;
let outboxCap: i32 = 0;

/// Encodes `o` and sends it: 0, or a negative result (docs/ABI.md).
export function send(o: Outgoing): i32 {
  const receiver = String.UTF8.encode(o.receiver);
  const protocol = String.UTF8.encode(o.protocol);
  const receiverLen = receiver.byteLength;
  const protocolLen = protocol.byteLength;
  const contentLen = o.content.byteLength;
  if (receiverLen > ADDRESS_BYTES_MAX || protocolLen > 255 || <u32>contentLen > CONTENT_BYTES_MAX) return TOO_LARGE;
  const total = HEADER_BYTES + receiverLen + protocolLen + contentLen;
  if (total > outboxCap) {
    outbox = outbox == 0 ? heap.alloc(<usize>total) : heap.realloc(outbox, <usize>total);
    outboxCap = total;
  }
  memory.fill(outbox, 0, <usize>HEADER_BYTES);
  store<u8>(outbox, <u8>ABI_VERSION);
  store<u8>(outbox + AT_PERFORMATIVE, o.performative);
  store<u64>(outbox + AT_CONVERSATION_ID, o.conversationId);
  store<u64>(outbox + AT_REPLY_WITH, o.replyWith);
  store<u64>(outbox + AT_IN_REPLY_TO, o.inReplyTo);
  store<u64>(outbox + AT_REPLY_BY, o.replyBy);
  store<u8>(outbox + AT_RECEIVER_LEN, <u8>receiverLen);
  store<u8>(outbox + AT_PROTOCOL_LEN, <u8>protocolLen);
  store<u32>(outbox + AT_CONTENT_LEN, <u32>contentLen);
  let at = outbox + <usize>HEADER_BYTES;
  memory.copy(at, changetype<usize>(receiver), <usize>receiverLen);
  at += <usize>receiverLen;
  memory.copy(at, changetype<usize>(protocol), <usize>protocolLen);
  at += <usize>protocolLen;
  memory.copy(at, changetype<usize>(o.content), <usize>contentLen);
  return host_send(outbox, total);
}

/// Replies to `m` with `content` (see Outgoing.replyTo).
export function reply(m: Message, performative: Performative, content: string): i32 {
  return send(Outgoing.replyTo(m, performative, content));
}

/// This instance's value for `key`, or null if it has none.
export function stateGet(key: string): ArrayBuffer | null {
  const k = String.UTF8.encode(key);
  let buf = new ArrayBuffer(64);
  let n = host_state_get(changetype<usize>(k), k.byteLength, changetype<usize>(buf), buf.byteLength);
  if (n < 0) return null;
  if (n > buf.byteLength) {
    buf = new ArrayBuffer(n);
    n = host_state_get(changetype<usize>(k), k.byteLength, changetype<usize>(buf), buf.byteLength);
    if (n < 0) return null;
  }
  return buf.slice(0, n);
}

/// Writes `value` under `key`: 0, or a negative result.
export function statePut(key: string, value: ArrayBuffer): i32 {
  const k = String.UTF8.encode(key);
  return host_state_put(changetype<usize>(k), k.byteLength, changetype<usize>(value), value.byteLength);
}

/// Deletes `key`: 0, or NOT_FOUND.
export function stateDelete(key: string): i32 {
  const k = String.UTF8.encode(key);
  return host_state_delete(changetype<usize>(k), k.byteLength);
}

/// A durable timer: after `delayMs` this instance receives an inform from
/// "@timer" (isTimer()) whose inReplyTo is the id returned (> 0), with
/// `content`; or a negative result.
export function timerSet(delayMs: i64, content: string): i64 {
  const c = String.UTF8.encode(content);
  return host_timer_set(delayMs, changetype<usize>(c), c.byteLength);
}

/// Cancels a timer of this instance: 0, or NOT_FOUND.
export function timerCancel(id: i64): i32 {
  return host_timer_cancel(id);
}

/// This instance's address: its name, or TYPE/KEY for a keyed activation.
export function selfName(): string {
  const buf = new ArrayBuffer(ADDRESS_BYTES_MAX);
  const n = host_self_name(changetype<usize>(buf), buf.byteLength);
  return n < 0 ? "" : String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>n);
}

/// Microseconds since the Unix epoch.
export function nowMicros(): i64 {
  return host_now_micros();
}
