//! fetch: answers "PATH" by a GET of PATH on the HTTP tool the operator
//! configured as `web`, and replies "STATUS BODY". Deploy it with
//! `--tools web`. Like `calculator`, it keeps who asked in state under the
//! call's id.

use caxton_agent::tools::{HttpRequest, ToolCall};
use caxton_agent::{Agent, Context, Message, Outgoing, Performative, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Asker {
    sender: String,
    reply_with: u64,
}

fn pending(call: ToolCall) -> String {
    format!("pending/{}", call.0)
}

#[derive(Default)]
pub struct Fetch;

impl Agent for Fetch {
    fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        if let Some(answer) = m.tool_answer() {
            let Some(asker) = ctx.get::<Asker>(&pending(answer.call))? else { return Ok(()) };
            ctx.delete(&pending(answer.call))?;
            let (performative, text) = match answer.http() {
                Ok(r) => (Performative::Inform, format!("{} {}", r.status, r.body.unwrap_or_else(|| "(binary body)".into()))),
                Err(why) => (Performative::Failure, why),
            };
            return ctx.send_message(Outgoing::new(&asker.sender, performative, text.as_bytes()).in_reply_to(asker.reply_with));
        }
        let path = m.text().unwrap_or("/").trim();
        let call = ctx.call_http("web", &HttpRequest::get(path))?;
        ctx.put(&pending(call), &Asker { sender: m.sender().to_string(), reply_with: m.reply_with() })
    }
}

caxton_agent::export_agent!(Fetch);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};

    use super::*;

    #[test]
    fn the_status_and_body_come_back_to_the_caller() {
        let mut fetch = TestAgent::<Fetch>::start().unwrap();
        fetch.host_mut().script_tool("web", |request| {
            assert_eq!((request["method"].as_str(), request["path"].as_str()), (Some("GET"), Some("/hello")));
            Ok(serde_json::json!({ "status": 200, "headers": {}, "body": "hi" }))
        });
        fetch.deliver(&TestMessage::new("alice", "fetch", "/hello").reply_with(3)).unwrap();
        let sent = fetch.host().sent.last().unwrap();
        assert_eq!((sent.text(), sent.in_reply_to), ("200 hi", 3));
    }
}
