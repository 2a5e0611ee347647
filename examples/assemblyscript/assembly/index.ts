// greeter: a caxton agent in AssemblyScript, ABI version 2 (caxton.ts), on
// WASI through @assemblyscript/wasi-shim (console.log reaches the node's
// log, Date.now reads the clock).
//
// - Any message: replies "hello from AssemblyScript, <content> (greeting N)",
//   counting greetings in state.
// - A cfp: proposes "3", as a contract-net participant would.
// - "remind MS": answers when a durable timer fires MS ms later, "reminded
//   after MS ms" (who asked is kept in state under the timer's id).
// - "crash": traps (a counted crash; the instance comes back).
//
// Build: npm ci && npm run build (a reactor: --exportStart _initialize).

import * as caxton from "./caxton";
import { Message, Outgoing, Performative } from "./caxton";

let inbox: usize = 0;
let inboxCap: i32 = 0;

/// Version 2 envelopes both ways.
export function caxton_abi_version(): i32 {
  return caxton.ABI_VERSION;
}

/// Room for a message of `len` bytes, reused from message to message.
export function caxton_alloc(len: i32): i32 {
  if (len > inboxCap) {
    inbox = inbox == 0 ? heap.alloc(<usize>len) : heap.realloc(inbox, <usize>len);
    inboxCap = len;
  }
  return <i32>inbox;
}

export function caxton_init(): i32 {
  console.log("greeter (AssemblyScript) starting as " + caxton.selfName() + " at " + Date.now().toString());
  return 0;
}

function u64Bytes(v: u64): ArrayBuffer {
  const b = new ArrayBuffer(8);
  store<u64>(changetype<usize>(b), v);
  return b;
}

function remind(m: Message, delayMs: i64): i32 {
  const id = caxton.timerSet(delayMs, "reminder");
  if (id < 0) return <i32>id;
  // Who asked: "<conversation>,<reply_with>,<delay>,<sender>".
  const asker = m.conversationId.toString() + "," + m.replyWith.toString() + "," + delayMs.toString() + "," + m.sender;
  return caxton.statePut("timer/" + id.toString(), String.UTF8.encode(asker));
}

function reminded(timer: Message): i32 {
  const key = "timer/" + timer.inReplyTo.toString();
  const kept = caxton.stateGet(key);
  if (kept == null) return 0; // cancelled, or not ours
  caxton.stateDelete(key);
  const parts = String.UTF8.decode(kept).split(",", 4);
  const o = new Outgoing(parts[3], Performative.Inform, "reminded after " + parts[2] + " ms");
  o.conversationId = U64.parseInt(parts[0]);
  o.inReplyTo = U64.parseInt(parts[1]);
  return caxton.send(o);
}

export function caxton_handle(ptr: i32, len: i32): i32 {
  const m = Message.parse(ptr, len);
  if (m == null) return caxton.INVALID;
  if (m.isTimer()) return reminded(m);
  if (m.isFailureNotice()) {
    console.log("a message of mine failed: " + m.text());
    return 0;
  }
  const text = m.text();
  if (text == "crash") unreachable();
  if (m.performative == <u8>Performative.Cfp) return caxton.reply(m, Performative.Propose, "3");
  if (text.startsWith("remind ")) return remind(m, I64.parseInt(text.substring(7)));

  const kept = caxton.stateGet("greetings");
  const count: u64 = (kept == null ? 0 : load<u64>(changetype<usize>(kept))) + 1;
  const stored = caxton.statePut("greetings", u64Bytes(count));
  if (stored != 0) return stored;
  console.log("greeted " + m.sender + " (" + count.toString() + ") at " + Date.now().toString());
  return caxton.reply(m, Performative.Inform, "hello from AssemblyScript, " + text + " (greeting " + count.toString() + ")");
}
