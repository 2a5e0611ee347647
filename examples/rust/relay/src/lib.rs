//! relay: passes a request along a chain of agents, then answers its
//! origin (the SDK twin of examples/agents/relay.wat).
//!
//! A request from a runtime sender (the REST API's `@api/…`) has content
//! "hop1 hop2 … hopN". The relay forwards it to hop1 with content
//! "<origin> hop2 … hopN"; each relay passes it on the same way, and the
//! last one replies "done via N hops" to the origin, with `in_reply_to` set
//! to the request's `reply_with`, which travels unchanged along the chain.
//! Instances live on different shards, so the chain crosses them.

use caxton_agent::{Agent, Context, Message, Outgoing, Performative, Result};

#[derive(Default)]
pub struct Relay {
    /// Reused for the content passed on (no allocation once grown).
    next: String,
}

impl Agent for Relay {
    fn handle(&mut self, ctx: &mut Context<'_>, message: &Message<'_>) -> Result<()> {
        let Ok(text) = message.text() else { return ctx.reply(message, Performative::NotUnderstood, b"not text") };
        let mut words = text.split(' ').filter(|w| !w.is_empty());
        // From the origin the content is the hops; from a relay, the origin first.
        let (origin, hops_done) = if message.sender().starts_with('@') {
            (message.sender(), 0usize)
        } else {
            let origin = words.next().unwrap_or("");
            let done = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            (origin, done)
        };
        let Some(hop) = words.next() else {
            let done = format!("done via {hops_done} hops");
            let reply = Outgoing::new(origin, Performative::Inform, done.as_bytes()).conversation(message.conversation_id()).in_reply_to(message.reply_with());
            return ctx.send_message(reply);
        };
        self.next.clear();
        self.next.push_str(origin);
        self.next.push(' ');
        self.next.push_str(&(hops_done + 1).to_string());
        for w in words {
            self.next.push(' ');
            self.next.push_str(w);
        }
        let out = Outgoing::new(hop, Performative::Request, self.next.as_bytes()).conversation(message.conversation_id()).reply_with(message.reply_with());
        ctx.send_message(out)
    }
}

caxton_agent::export_agent!(Relay);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};

    #[test]
    fn passes_the_request_on_and_the_last_hop_answers_the_origin() {
        let mut r = TestAgent::<super::Relay>::start().unwrap();
        r.deliver(&TestMessage::new("@api/3", "r1", "r2 r3").conversation(4).reply_with(77)).unwrap();
        let hop = r.host().sent[0].clone();
        assert_eq!((hop.receiver.as_str(), hop.text(), hop.reply_with), ("r2", "@api/3 1 r3", 77));
        r.deliver(&TestMessage::new("r2", "r3", "@api/3 2").conversation(4).reply_with(77)).unwrap();
        let done = r.host().sent[1].clone();
        assert_eq!((done.receiver.as_str(), done.text(), done.in_reply_to, done.conversation_id), ("@api/3", "done via 2 hops", 77, 4));
    }
}
