//! bidder: a participant of contract-net rounds (examples/rust/manager).
//!
//! To a `cfp` it answers `propose` with its price for the task, a number
//! every bidder computes the same way from its name and the task
//! ([`price`]), so a test knows who should win. When its proposal is
//! accepted it answers `inform` "done TASK by NAME"; a rejection needs no
//! answer. Two bidders misbehave by name: one whose name starts with
//! `bidder-crash` panics on every `cfp` (the node fails the `cfp` back to
//! the manager as `crashed_handler`), and one starting with `bidder-late`
//! answers after the round's deadline (a timer past `reply_by`).

use std::time::Duration;

use caxton_agent::{Agent, Context, Message, Outgoing, Performative, Protocol, Result};

/// A bidder's price for a task: FNV-1a of "NAME:TASK", mod 1000.
pub fn price(name: &str, task: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([b':']).chain(task.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 1000
}

/// A `cfp` the late bidder answers later: where to send the proposal.
struct Deferred {
    manager: String,
    conversation_id: u64,
    in_reply_to: u64,
    task: String,
    timer: u64,
}

#[derive(Default)]
pub struct Bidder {
    deferred: Vec<Deferred>,
}

impl Agent for Bidder {
    fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        let me = m.receiver().to_string();
        if let Some(timer) = m.timer() {
            let Some(i) = self.deferred.iter().position(|d| d.timer == timer.0) else { return Ok(()) };
            let d = self.deferred.swap_remove(i);
            let bid = price(&me, &d.task).to_string();
            let out = Outgoing::new(&d.manager, Performative::Propose, bid.as_bytes())
                .conversation(d.conversation_id)
                .in_reply_to(d.in_reply_to)
                .protocol(Protocol::FIPA_CONTRACT_NET);
            return ctx.send_message(out);
        }
        match m.performative() {
            Performative::Cfp => {
                let task = m.text().unwrap_or("").to_string();
                if me.starts_with("bidder-crash") {
                    panic!("{me} cannot bid on {task}");
                }
                if me.starts_with("bidder-late") {
                    // Past the deadline: its answer comes too late to count.
                    let until = m.reply_by().saturating_sub(ctx.now_micros().max(0) as u64) / 1000 + 300;
                    let timer = ctx.timer_set(Duration::from_millis(until), b"")?;
                    self.deferred.push(Deferred { manager: m.sender().to_string(), conversation_id: m.conversation_id(), in_reply_to: m.reply_with(), task, timer: timer.0 });
                    return Ok(());
                }
                ctx.reply(m, Performative::Propose, price(&me, &task).to_string())
            }
            Performative::AcceptProposal => ctx.reply(m, Performative::Inform, format!("done by {me}")),
            _ => Ok(()), // reject-proposal, or anything else: nothing to say
        }
    }
}

caxton_agent::export_agent!(Bidder);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};
    use caxton_agent::Performative;

    #[test]
    fn proposes_its_price_and_answers_an_award() {
        let mut b = TestAgent::<super::Bidder>::start().unwrap();
        b.deliver(&TestMessage::new("manager", "bidder-07", "paint").performative(Performative::Cfp).reply_with(5)).unwrap();
        let p = b.host().sent[0].clone();
        assert_eq!((p.performative, p.in_reply_to, p.text().parse::<u64>().unwrap()), (Performative::Propose, 5, super::price("bidder-07", "paint")));
        b.deliver(&TestMessage::new("manager", "bidder-07", "").performative(Performative::AcceptProposal).reply_with(9)).unwrap();
        assert_eq!((b.host().sent[1].performative, b.host().sent[1].in_reply_to), (Performative::Inform, 9));
    }

    #[test]
    fn prices_are_stable() {
        // The same values as caxton-testkit's contract_net test: the tests
        // and the load test compute winners with a copy of `price`.
        assert_eq!(super::price("bidder-07", "paint"), 641);
        assert_eq!(super::price("cn-bidder-3", "r42"), 835);
    }

    #[test]
    fn the_late_bidder_answers_after_the_deadline() {
        let mut b = TestAgent::<super::Bidder>::start().unwrap();
        b.host_mut().now_micros = 1_000_000;
        b.deliver(&TestMessage::new("manager", "bidder-late", "paint").performative(Performative::Cfp).reply_with(5).reply_by(1_100_000)).unwrap();
        assert!(b.host().sent.is_empty());
        b.advance(450).unwrap();
        assert_eq!(b.host().sent[0].performative, Performative::Propose);
    }
}
