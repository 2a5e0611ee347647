//! manager: runs contract-net rounds for its callers
//! (`caxton_agent::protocols::CfpRound`).
//!
//! A caller (REST or wire) sends "TASK DEADLINE_MS BIDDER,BIDDER,…"; the
//! manager sends `cfp` to every bidder with that deadline, awards the
//! lowest price among the proposals in when all have answered or the
//! deadline passes, and answers the caller, once per round:
//! "winner=NAME price=P result=… failed=NAME:REASON,… late=NAME,…", or
//! "no_winner failed=… late=…". Rounds run side by side, one per
//! conversation.

use std::time::Duration;

use caxton_agent::protocols::{Bid, CfpRound, RoundEvent, RoundFailure};
use caxton_agent::{Agent, Context, Message, Outgoing, Performative, Result};

/// How long the winner has to answer its award.
const AWARD_TIMEOUT: Duration = Duration::from_millis(2000);

struct Round {
    round: CfpRound,
    caller: String,
    caller_reply_with: u64,
    caller_conversation: u64,
    winner: Option<(String, u64)>,
}

#[derive(Default)]
pub struct Manager {
    rounds: Vec<Round>,
}

impl Manager {
    fn start(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        let text = m.text().unwrap_or("");
        let mut words = text.split(' ');
        let (task, deadline, bidders) = (words.next().unwrap_or(""), words.next().unwrap_or("500"), words.next().unwrap_or(""));
        let bidders: Vec<&str> = bidders.split(',').filter(|b| !b.is_empty()).collect();
        let deadline = Duration::from_millis(deadline.parse().unwrap_or(500));
        let round = CfpRound::start(ctx, &bidders, task.as_bytes(), deadline)?;
        self.rounds.push(Round { round, caller: m.sender().to_string(), caller_reply_with: m.reply_with(), caller_conversation: m.conversation_id(), winner: None });
        Ok(())
    }
}

/// The caller's answer: who won, and what became of the others.
fn summary(r: &Round, result: &std::result::Result<Vec<u8>, RoundFailure>) -> String {
    let mut failed = Vec::new();
    let mut late = Vec::new();
    for (name, bid) in r.round.bids() {
        match bid {
            Bid::Failed(reason) => failed.push(format!("{name}:{}", reason.as_str())),
            Bid::TooLate | Bid::Waiting => late.push(name.to_string()),
            _ => {}
        }
    }
    let head = match (&r.winner, result) {
        (Some((name, price)), Ok(done)) => format!("winner={name} price={price} result={}", String::from_utf8_lossy(done)),
        (Some((name, price)), Err(e)) => format!("winner={name} price={price} result=failed:{e:?}"),
        (None, _) => "no_winner".to_string(),
    };
    format!("{head} failed={} late={}", failed.join(","), late.join(","))
}

impl Agent for Manager {
    fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        if m.sender().starts_with('@') && m.timer().is_none() && m.failure_notice().is_none() {
            return self.start(ctx, m);
        }
        for i in 0..self.rounds.len() {
            let Some(event) = self.rounds[i].round.on_message(ctx, m) else { continue };
            let r = &mut self.rounds[i];
            let finished = match event {
                RoundEvent::AllAnswered | RoundEvent::Deadline => {
                    let best = r.round.proposals().filter_map(|(n, p)| Some((std::str::from_utf8(p).ok()?.parse::<u64>().ok()?, n.to_string()))).min();
                    r.winner = best.as_ref().map(|(p, n)| (n.clone(), *p));
                    match r.round.award(ctx, best.as_ref().map(|(_, n)| n.as_str()), AWARD_TIMEOUT)? {
                        Some(RoundEvent::Finished(result)) => Some(result),
                        _ => None,
                    }
                }
                RoundEvent::Finished(result) => Some(result),
                RoundEvent::Answered(_) => None,
            };
            if let Some(result) = finished {
                let r = self.rounds.swap_remove(i);
                let text = summary(&r, &result);
                let out = Outgoing::new(&r.caller, Performative::Inform, text.as_bytes()).conversation(r.caller_conversation).in_reply_to(r.caller_reply_with);
                return ctx.send_message(out);
            }
            return Ok(());
        }
        Ok(()) // about no round of ours (late, or of a round already ended)
    }
}

caxton_agent::export_agent!(Manager);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};
    use caxton_agent::Performative;

    #[test]
    fn a_round_is_awarded_to_the_lowest_price_and_reported_once() {
        let mut m = TestAgent::<super::Manager>::start().unwrap();
        m.deliver(&TestMessage::new("@api/1", "manager", "paint 100 x,y,z").reply_with(42)).unwrap();
        let cfps: Vec<_> = m.host().sent.clone();
        assert_eq!(cfps.len(), 3);
        for (c, price) in cfps.iter().zip(["30", "10"]) {
            m.deliver(&TestMessage::new(&c.receiver, "manager", price).performative(Performative::Propose).conversation(c.conversation_id).in_reply_to(c.reply_with)).unwrap();
        }
        m.deliver(&TestMessage::new("@node", "manager", "crashed_handler").performative(Performative::Failure).in_reply_to(cfps[2].reply_with)).unwrap();
        let accept = m.host().sent.iter().find(|s| s.performative == Performative::AcceptProposal).unwrap().clone();
        assert_eq!(accept.receiver, "y");
        m.deliver(&TestMessage::new("y", "manager", "done by y").performative(Performative::Inform).in_reply_to(accept.reply_with)).unwrap();
        let told = m.host().sent.last().unwrap().clone();
        assert_eq!((told.receiver.as_str(), told.in_reply_to), ("@api/1", 42));
        assert_eq!(told.text(), "winner=y price=10 result=done by y failed=z:crashed_handler late=");
        m.advance(5000).unwrap();
        assert_eq!(m.host().sent.iter().filter(|s| s.receiver == "@api/1").count(), 1, "once");
    }
}
