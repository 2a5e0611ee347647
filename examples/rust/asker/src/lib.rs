//! asker: sends a request on behalf of a REST caller and tells it how the
//! request ended: a reply, a refusal, a failure notice from the node, or a
//! time-out (`caxton_agent::protocols::Request`).
//!
//! Content "TARGET TIMEOUT_MS CONTENT…" from a caller asks TARGET; the
//! caller gets "replied PERFORMATIVE CONTENT", "refused CONTENT",
//! "failed REASON" (a failure notice), "timed_out", or, when the node
//! refuses the send at once, "refused_at_send ERROR".

use std::time::Duration;

use caxton_agent::protocols::{Request, RequestEvent};
use caxton_agent::{Agent, Context, Message, Outgoing, Performative, Result};

/// A request in flight and whom to tell.
struct Asked {
    request: Request,
    caller: String,
    caller_reply_with: u64,
    caller_conversation: u64,
}

#[derive(Default)]
pub struct Asker {
    asked: Vec<Asked>,
}

impl Agent for Asker {
    fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        // A caller is a runtime name (`@api/7`, `@wire/3`, or one of another
        // node, `@node/<tag>/api/7`); the node's notices and timers are not.
        if m.sender().starts_with('@') && m.failure_notice().is_none() && m.timer().is_none() {
            let text = m.text().unwrap_or("");
            let mut words = text.splitn(3, ' ');
            let (target, timeout, content) = (words.next().unwrap_or(""), words.next().unwrap_or("1000"), words.next().unwrap_or(""));
            let timeout = Duration::from_millis(timeout.parse().unwrap_or(1000));
            return match Request::send(ctx, target, content.as_bytes(), timeout) {
                Ok(request) => {
                    self.asked.push(Asked { request, caller: m.sender().to_string(), caller_reply_with: m.reply_with(), caller_conversation: m.conversation_id() });
                    Ok(())
                }
                Err(e) => ctx.reply(m, Performative::Inform, format!("refused_at_send {e}")),
            };
        }
        for i in 0..self.asked.len() {
            let Some(event) = self.asked[i].request.on_message(ctx, m) else { continue };
            if !event.is_final() {
                return Ok(());
            }
            let asked = self.asked.swap_remove(i);
            let told = match event {
                RequestEvent::Replied { performative, content } => format!("replied {} {}", performative.name(), String::from_utf8_lossy(&content)),
                RequestEvent::Refused(content) => format!("refused {}", String::from_utf8_lossy(&content)),
                RequestEvent::Failed(reason) => format!("failed {}", reason.as_str()),
                RequestEvent::TimedOut => "timed_out".to_string(),
                RequestEvent::Agreed => unreachable!("not final"),
            };
            let out = Outgoing::new(&asked.caller, Performative::Inform, told.as_bytes()).conversation(asked.caller_conversation).in_reply_to(asked.caller_reply_with);
            return ctx.send_message(out);
        }
        Ok(()) // about nothing asked (a late answer)
    }
}

caxton_agent::export_agent!(Asker);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};
    use caxton_agent::Performative;

    #[test]
    fn tells_the_caller_how_each_request_ended() {
        let mut a = TestAgent::<super::Asker>::start().unwrap();
        a.deliver(&TestMessage::new("@api/1", "asker", "worker 100 job").reply_with(7)).unwrap();
        let req = a.host().sent[0].clone();
        assert_eq!((req.receiver.as_str(), req.text()), ("worker", "job"));
        a.deliver(&TestMessage::new("@node", "asker", "crashed_handler").performative(Performative::Failure).in_reply_to(req.reply_with)).unwrap();
        let told = a.host().sent[1].clone();
        assert_eq!((told.receiver.as_str(), told.text(), told.in_reply_to), ("@api/1", "failed crashed_handler", 7));
        a.deliver(&TestMessage::new("@api/2", "asker", "worker 100 job").reply_with(8)).unwrap();
        a.advance(200).unwrap();
        assert_eq!(a.host().sent.last().unwrap().text(), "timed_out");
    }
}
