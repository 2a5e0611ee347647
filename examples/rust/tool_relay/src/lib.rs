//! tool-relay: calls any tool it was granted with the request a caller
//! sends, and answers the caller with the tool's answer. The content is
//! JSON: `{"tool": NAME, "request": ..., "timeout_ms"?: N, "trap"?: true}`;
//! the answer `{"call": ID, "ok": RESULT}` or `{"call": ID, "failure":
//! TEXT}`, or `{"refused": CODE}` when the node refused the call at once
//! (a tool not granted: -7). With `"trap": true` the handler traps after
//! making the call, so the call must never be made. `stats` answers how
//! many answers each call got: `{"made": [ID...], "answered": {ID: N}}`.
//! `{"bench": ...}` times many calls (`bench`, for `make bench`).
//! The test suite's instrument for tools (tests/tools.rs).

mod bench;

use std::collections::BTreeMap;

use caxton_agent::tools::ToolCall;
use caxton_agent::{Agent, Context, Error, Message, Outgoing, Performative, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Asker {
    sender: String,
    reply_with: u64,
}

#[derive(Deserialize)]
struct Ask {
    tool: String,
    request: serde_json::Value,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    trap: bool,
}

const MADE: &str = "made";
const ANSWERED: &str = "answered";

fn pending(call: ToolCall) -> String {
    format!("pending/{}", call.0)
}

#[derive(Default)]
pub struct ToolRelay {
    bench: Option<bench::Bench>,
}

#[derive(Deserialize)]
struct BenchRequest {
    bench: bench::BenchAsk,
}

impl Agent for ToolRelay {
    fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        if let Some(answer) = m.tool_answer() {
            if let Some(b) = &mut self.bench {
                let failure = answer.result.as_ref().err().map(|e| e.text);
                if b.answered(ctx, answer.call, failure)? {
                    self.bench = None;
                }
                return Ok(());
            }
            let mut answered: BTreeMap<u64, u32> = ctx.get(ANSWERED)?.unwrap_or_default();
            *answered.entry(answer.call.0).or_default() += 1;
            ctx.put(ANSWERED, &answered)?;
            let Some(asker) = ctx.get::<Asker>(&pending(answer.call))? else { return Ok(()) };
            ctx.delete(&pending(answer.call))?;
            let body = match answer.result {
                Ok(bytes) => serde_json::json!({ "call": answer.call.0, "ok": serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default() }),
                Err(e) => serde_json::json!({ "call": answer.call.0, "failure": e.text }),
            };
            return ctx.send_message(Outgoing::new(&asker.sender, Performative::Inform, body.to_string().as_bytes()).in_reply_to(asker.reply_with));
        }
        if m.text() == Ok("stats") {
            let made: Vec<u64> = ctx.get(MADE)?.unwrap_or_default();
            let answered: BTreeMap<u64, u32> = ctx.get(ANSWERED)?.unwrap_or_default();
            return ctx.reply(m, Performative::Inform, serde_json::json!({ "made": made, "answered": answered }).to_string());
        }
        if let Ok(BenchRequest { bench }) = serde_json::from_slice(m.content()) {
            if self.bench.is_some() {
                return ctx.reply(m, Performative::Refuse, "a bench is running");
            }
            self.bench = Some(bench::Bench::start(ctx, m, bench)?);
            return Ok(());
        }
        let ask: Ask = match serde_json::from_slice(m.content()) {
            Ok(a) => a,
            Err(e) => return ctx.reply(m, Performative::NotUnderstood, e.to_string()),
        };
        let reply_by = ask.timeout_ms.map_or(0, |ms| (ctx.now_micros() as u64) + ms * 1000);
        let call = match ctx.call_tool_until(&ask.tool, &ask.request, reply_by) {
            Ok(call) => call,
            Err(Error::Abi(e)) => return ctx.reply(m, Performative::Refuse, serde_json::json!({ "refused": e.code() }).to_string()),
            Err(e) => return Err(e),
        };
        let mut made: Vec<u64> = ctx.get(MADE)?.unwrap_or_default();
        made.push(call.0);
        ctx.put(MADE, &made)?;
        if m.reply_with() != 0 {
            ctx.put(&pending(call), &Asker { sender: m.sender().to_string(), reply_with: m.reply_with() })?;
        }
        if ask.trap {
            panic!("a trap after a tool call: the call must not be made");
        }
        Ok(())
    }
}

caxton_agent::export_agent!(ToolRelay);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};

    use super::*;

    #[test]
    fn answers_are_relayed_and_counted_and_refusals_said() {
        let mut relay = TestAgent::<ToolRelay>::start().unwrap();
        relay.host_mut().script_tool("calc", |r| Ok(serde_json::json!({ "echo": r.clone() })));
        let ask = serde_json::json!({ "tool": "calc", "request": { "name": "add" } }).to_string();
        relay.deliver(&TestMessage::new("alice", "tool-relay", ask).reply_with(5)).unwrap();
        let v: serde_json::Value = serde_json::from_str(relay.host().sent.last().unwrap().text()).unwrap();
        assert_eq!(v["ok"]["echo"]["name"], "add");
        let refused = serde_json::json!({ "tool": "web", "request": {} }).to_string();
        relay.deliver(&TestMessage::new("alice", "tool-relay", refused).reply_with(6)).unwrap();
        assert_eq!(relay.host().sent.last().unwrap().text(), r#"{"refused":-7}"#);
        relay.deliver(&TestMessage::new("alice", "tool-relay", "stats").reply_with(7)).unwrap();
        let v: serde_json::Value = serde_json::from_str(relay.host().sent.last().unwrap().text()).unwrap();
        assert_eq!(v["made"].as_array().unwrap().len(), 1);
        assert_eq!(v["answered"].as_object().unwrap().values().next().unwrap(), 1);
    }

    #[test]
    fn a_bench_makes_every_call_concurrency_at_a_time_and_answers_once() {
        let mut relay = TestAgent::<ToolRelay>::start().unwrap();
        relay.host_mut().grant_tool("calc");
        let ask = serde_json::json!({ "bench": { "tool": "calc", "request": { "name": "add" }, "calls": 5, "concurrency": 2 } }).to_string();
        relay.deliver(&TestMessage::new("bench", "tool-relay", ask).reply_with(3)).unwrap();
        let mut answered = 0;
        while let Some((_, id, _)) = relay.host().tool_calls().first().cloned() {
            assert!(relay.host().tool_calls().len() <= 2, "two at a time");
            relay.answer_tool(ToolCall(id), Ok(serde_json::json!({ "content": [] }))).unwrap();
            answered += 1;
        }
        assert_eq!(answered, 5, "each answer sent the next, and no more");
        let summary: serde_json::Value = serde_json::from_str(relay.host().sent.last().unwrap().text()).unwrap();
        assert_eq!((summary["calls"].as_u64(), summary["failures"].as_u64()), (Some(5), Some(0)), "{summary}");
        assert_eq!(relay.host().sent.last().unwrap().in_reply_to, 3);
    }
}
