// greeter: a caxton agent in AssemblyScript, on WASI through
// @assemblyscript/wasi-shim (console.log reaches the node's log, Date.now
// reads the clock). Replies "hello from AssemblyScript, <content>" to every
// message; content "crash" traps (a counted crash; the instance comes back).
//
// Build: npm ci && npm run build (a reactor: --exportStart _initialize).

@external("caxton", "send")
declare function caxton_send(ptr: usize, len: i32): i32;

const HEADER_BYTES: i32 = 44;
const INFORM: u8 = 1;

let inbox: usize = 0;
let inboxCap: i32 = 0;
let outbox: usize = 0;
let outboxCap: i32 = 0;
let greeted: i32 = 0;

// Room for a message of `len` bytes, reused from message to message.
export function caxton_alloc(len: i32): i32 {
  if (len > inboxCap) {
    inbox = inbox == 0 ? heap.alloc(<usize>len) : heap.realloc(inbox, <usize>len);
    inboxCap = len;
  }
  return <i32>inbox;
}

export function caxton_init(): i32 {
  console.log("greeter (AssemblyScript) starting at " + Date.now().toString());
  return 0;
}

export function caxton_handle(ptr: i32, len: i32): i32 {
  const p = <usize>ptr;
  if (len < HEADER_BYTES || load<u8>(p) != 1) return -3;
  const senderLen = <i32>load<u8>(p + 36);
  const receiverLen = <i32>load<u8>(p + 37);
  const contentLen = load<i32>(p + 40);
  if (HEADER_BYTES + senderLen + receiverLen + contentLen != len) return -3;
  const sender = p + <usize>HEADER_BYTES;
  const content = sender + <usize>(senderLen + receiverLen);
  const text = String.UTF8.decodeUnsafe(content, <usize>contentLen);
  if (text == "crash") unreachable();

  greeted++;
  console.log("greeted " + String.UTF8.decodeUnsafe(sender, <usize>senderLen) + " (" + greeted.toString() + ") at " + Date.now().toString());
  const reply = String.UTF8.encode("hello from AssemblyScript, " + text);
  const replyLen = reply.byteLength;

  const total = HEADER_BYTES + senderLen + replyLen;
  if (total > outboxCap) {
    outbox = outbox == 0 ? heap.alloc(<usize>total) : heap.realloc(outbox, <usize>total);
    outboxCap = total;
  }
  memory.fill(outbox, 0, <usize>HEADER_BYTES);
  store<u8>(outbox, 1);                                   // version
  store<u8>(outbox + 1, INFORM);                          // performative
  store<u64>(outbox + 12, load<u64>(p + 12));             // conversation_id
  store<u64>(outbox + 28, load<u64>(p + 20));             // in_reply_to = their reply_with
  store<u8>(outbox + 37, <u8>senderLen);                  // receiver = their sender
  store<i32>(outbox + 40, replyLen);
  memory.copy(outbox + <usize>HEADER_BYTES, sender, <usize>senderLen);
  memory.copy(outbox + <usize>(HEADER_BYTES + senderLen), changetype<usize>(reply), <usize>replyLen);
  return caxton_send(outbox, total);
}
