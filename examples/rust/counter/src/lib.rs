//! counter: keeps a typed tally in state, per instance, and answers with
//! it. `request` adds one and replies with the count; `query_ref` replies
//! with the count; `inform` with content "reset" clears it.

use caxton_agent::{info, Agent, Context, Message, Performative, Result};
use serde::{Deserialize, Serialize};

/// What the counter keeps, in postcard through the SDK.
#[derive(Serialize, Deserialize, Debug, Default, PartialEq)]
pub struct Tally {
    pub count: u64,
    /// Who asked last.
    pub last_sender: String,
}

const KEY: &str = "tally";

#[derive(Default)]
pub struct Counter;

impl Agent for Counter {
    fn init(&mut self, ctx: &mut Context<'_>) -> Result<()> {
        let tally: Tally = ctx.get(KEY)?.unwrap_or_default();
        info!(ctx, "counter starting at {}", tally.count);
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Context<'_>, message: &Message<'_>) -> Result<()> {
        let mut tally: Tally = ctx.get(KEY)?.unwrap_or_default();
        match message.performative() {
            Performative::Request => {
                tally.count += 1;
                tally.last_sender = message.sender().to_string();
                ctx.put(KEY, &tally)?;
            }
            Performative::Inform if message.content() == b"reset" => {
                ctx.delete(KEY)?;
                tally = Tally::default();
            }
            Performative::QueryRef => {}
            _ => return ctx.reply(message, Performative::NotUnderstood, b""),
        }
        ctx.reply(message, Performative::Inform, tally.count.to_string())
    }
}

caxton_agent::export_agent!(Counter);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};
    use caxton_agent::Performative;

    use super::*;

    #[test]
    fn counts_survive_a_restart_and_reset_clears_them() {
        let mut c = TestAgent::<Counter>::start().unwrap();
        for _ in 0..3 {
            c.deliver(&TestMessage::new("alice", "counter", "")).unwrap();
        }
        assert_eq!(c.host().sent.last().unwrap().text(), "3");
        let host = c.stop();
        let mut c = TestAgent::<Counter>::start_with(host).unwrap();
        assert!(c.host().logs.iter().any(|(_, l)| l == "counter starting at 3"));
        c.deliver(&TestMessage::new("bob", "counter", "").performative(Performative::QueryRef)).unwrap();
        assert_eq!(c.host().sent.last().unwrap().text(), "3");
        c.deliver(&TestMessage::new("bob", "counter", "reset").performative(Performative::Inform)).unwrap();
        assert_eq!(c.host().sent.last().unwrap().text(), "0");
        assert!(c.host().state.is_empty());
    }
}
