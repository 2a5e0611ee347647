//! calculator: answers "add A B" by calling the `add` tool of the MCP
//! server the operator configured as tool `calc`, and replies to the caller
//! with the tool's text. Deploy it with `--tools calc`.
//!
//! The caller waits while the tool runs, but the agent does not: its
//! handler returns at once, and the tool's answer arrives later as a
//! message. Who asked is kept in state under the call's id, so an answer
//! that arrives after a restart still finds its caller.

use caxton_agent::tools::ToolCall;
use caxton_agent::{Agent, Context, Message, Outgoing, Performative, Result};
use serde::{Deserialize, Serialize};

/// Who asked for call `id`: kept until its answer comes.
#[derive(Serialize, Deserialize)]
struct Asker {
    sender: String,
    reply_with: u64,
    conversation: u64,
}

fn pending(call: ToolCall) -> String {
    format!("pending/{}", call.0)
}

#[derive(Default)]
pub struct Calculator;

impl Agent for Calculator {
    fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        if let Some(answer) = m.tool_answer() {
            let Some(asker) = ctx.get::<Asker>(&pending(answer.call))? else { return Ok(()) };
            ctx.delete(&pending(answer.call))?;
            let (performative, text) = match answer.mcp() {
                Ok(result) if result.is_error != Some(true) => (Performative::Inform, result.text()),
                Ok(result) => (Performative::Failure, result.text()),
                Err(why) => (Performative::Failure, why),
            };
            let out = Outgoing::new(&asker.sender, performative, text.as_bytes()).in_reply_to(asker.reply_with).conversation(asker.conversation);
            return ctx.send_message(out);
        }
        let text = m.text().unwrap_or("");
        let numbers: Vec<f64> = text.strip_prefix("add ").unwrap_or("").split_whitespace().filter_map(|n| n.parse().ok()).collect();
        let [a, b] = numbers[..] else {
            return ctx.reply(m, Performative::NotUnderstood, "say: add A B");
        };
        let call = ctx.call_mcp_tool("calc", "add", &serde_json::json!({ "a": a, "b": b }))?;
        let asker = Asker { sender: m.sender().to_string(), reply_with: m.reply_with(), conversation: m.conversation_id() };
        ctx.put(&pending(call), &asker)
    }
}

caxton_agent::export_agent!(Calculator);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};
    use caxton_agent::tools::ToolFailure;

    use super::*;

    #[test]
    fn the_sum_comes_from_the_tool_and_a_failure_says_why() {
        let mut calc = TestAgent::<Calculator>::start().unwrap();
        calc.host_mut().script_tool("calc", |request| {
            let (a, b) = (request["arguments"]["a"].as_f64().unwrap(), request["arguments"]["b"].as_f64().unwrap());
            if a < 0.0 {
                return Err(ToolFailure::ToolDown);
            }
            Ok(serde_json::json!({ "content": [{ "type": "text", "text": format!("{}", a + b) }], "isError": false }))
        });
        calc.deliver(&TestMessage::new("alice", "calculator", "add 2 3").reply_with(7)).unwrap();
        let sent = calc.host().sent.last().unwrap();
        assert_eq!((sent.receiver.as_str(), sent.text(), sent.in_reply_to), ("alice", "5", 7));
        calc.deliver(&TestMessage::new("bob", "calculator", "add -1 3").reply_with(8)).unwrap();
        let sent = calc.host().sent.last().unwrap();
        assert_eq!((sent.performative, sent.text(), sent.in_reply_to), (Performative::Failure, "tool_down", 8));
        assert!(calc.host().state.is_empty(), "no caller is left waiting");
    }
}
