//! FIPA interaction protocols, as small state machines an agent keeps in
//! its fields and feeds the messages it receives.
//!
//! - [`Request`]: `request` (or `query-ref`) with a deadline: it ends with
//!   a reply, a refusal, a failure notice from the node, or a time-out.
//! - [`Subscription`] and [`Subscribers`]: `subscribe`, the informs that
//!   follow, and `cancel`.
//! - [`CfpRound`]: contract-net as initiator: `cfp` to N participants with
//!   a deadline, their `propose`/`refuse`, `accept-proposal` to one and
//!   `reject-proposal` to the others, and the winner's `inform` or
//!   `failure`. A participant needs no helper: it answers with
//!   [`Context::reply`], which keeps the conversation, the protocol and
//!   `in_reply_to`.
//!
//! Rules:
//! 1. Each helper sends with a fresh `reply_with` and a `reply_by`
//!    deadline, and sets a timer for the same deadline: it ends even if
//!    nobody answers and the node has nothing to fail back.
//! 2. `on_message` answers whether a message belongs to the helper (by
//!    `in_reply_to`, or its timer's id) and what it changed; messages of
//!    other conversations are left to the agent (`None`).
//! 3. A helper that has ended ignores whatever comes later: a late answer
//!    is not counted twice.
//! 4. Helpers live in the agent's memory: a crash of the instance loses
//!    them (their timers still fire, and are then not recognised). Keep in
//!    state what must survive.

use std::time::Duration;

use crate::{Context, FailureReason, Message, Outgoing, Performative, Protocol, Result, TimerId};

/// Microseconds since the epoch, `after` from now.
fn deadline(ctx: &mut Context<'_>, after: Duration) -> u64 {
    ctx.now_micros().max(0) as u64 + after.as_micros() as u64
}

// ------------------------------------------------------------ request

/// What happened to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestEvent {
    /// The receiver agreed; the result is still to come.
    Agreed,
    /// The answer (`inform`, or the receiver's own `failure`).
    Replied {
        performative: Performative,
        content: Vec<u8>,
    },
    Refused(Vec<u8>),
    /// The node failed the request back (a crash, an unknown receiver...).
    Failed(FailureReason),
    /// No answer by the deadline.
    TimedOut,
}

impl RequestEvent {
    /// Does it end the request?
    pub fn is_final(&self) -> bool {
        !matches!(self, RequestEvent::Agreed)
    }
}

/// A request (or query) in flight (rule 1).
#[derive(Debug)]
pub struct Request {
    pub receiver: String,
    pub conversation_id: u64,
    pub reply_with: u64,
    timer: Option<TimerId>,
    done: bool,
}

impl Request {
    /// Sends `request` to `receiver`, to be answered within `timeout`.
    pub fn send(ctx: &mut Context<'_>, receiver: &str, content: &[u8], timeout: Duration) -> Result<Request> {
        Request::start(ctx, receiver, Performative::Request, Protocol::FIPA_REQUEST, content, timeout)
    }

    /// Sends `query-ref` to `receiver`, to be answered within `timeout`.
    pub fn query(ctx: &mut Context<'_>, receiver: &str, content: &[u8], timeout: Duration) -> Result<Request> {
        Request::start(ctx, receiver, Performative::QueryRef, Protocol::FIPA_QUERY, content, timeout)
    }

    fn start(ctx: &mut Context<'_>, receiver: &str, performative: Performative, protocol: Protocol, content: &[u8], timeout: Duration) -> Result<Request> {
        let (conversation_id, reply_with) = (ctx.new_id(), ctx.new_id());
        let reply_by = deadline(ctx, timeout);
        let out = Outgoing::new(receiver, performative, content).conversation(conversation_id).reply_with(reply_with).reply_by(reply_by).protocol(protocol);
        ctx.send_message(out)?;
        let timer = ctx.timer_set(timeout, reply_with.to_le_bytes())?;
        Ok(Request { receiver: receiver.to_string(), conversation_id, reply_with, timer: Some(timer), done: false })
    }

    /// Rule 2: what `m` means for this request, if it is about it.
    pub fn on_message(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Option<RequestEvent> {
        if self.done {
            return None; // rule 3
        }
        let event = if m.timer().is_some() && m.timer() == self.timer {
            self.timer = None;
            RequestEvent::TimedOut
        } else if m.in_reply_to() == self.reply_with {
            match (m.failure_notice(), m.performative()) {
                (Some(reason), _) => RequestEvent::Failed(reason),
                (None, Performative::Agree) => RequestEvent::Agreed,
                (None, Performative::Refuse) => RequestEvent::Refused(m.content().to_vec()),
                (None, p) => RequestEvent::Replied { performative: p, content: m.content().to_vec() },
            }
        } else {
            return None;
        };
        if event.is_final() {
            self.finish(ctx);
        }
        Some(event)
    }

    fn finish(&mut self, ctx: &mut Context<'_>) {
        self.done = true;
        if let Some(t) = self.timer.take() {
            let _ = ctx.timer_cancel(t);
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

// ------------------------------------------------------------ subscribe

/// What happened to a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEvent {
    Agreed,
    Refused(Vec<u8>),
    /// One of the informs the subscription brings.
    Inform(Vec<u8>),
    /// The publisher failed, or the node failed the subscription back.
    Failed(Option<FailureReason>),
}

/// A subscription to another agent's informs.
#[derive(Debug)]
pub struct Subscription {
    pub publisher: String,
    pub conversation_id: u64,
    pub reply_with: u64,
    active: bool,
}

impl Subscription {
    pub fn start(ctx: &mut Context<'_>, publisher: &str, content: &[u8]) -> Result<Subscription> {
        let (conversation_id, reply_with) = (ctx.new_id(), ctx.new_id());
        let out =
            Outgoing::new(publisher, Performative::Subscribe, content).conversation(conversation_id).reply_with(reply_with).protocol(Protocol::FIPA_SUBSCRIBE);
        ctx.send_message(out)?;
        Ok(Subscription { publisher: publisher.to_string(), conversation_id, reply_with, active: true })
    }

    pub fn on_message(&mut self, m: &Message<'_>) -> Option<SubscriptionEvent> {
        if !self.active || m.in_reply_to() != self.reply_with {
            return None;
        }
        let event = match (m.failure_notice(), m.performative()) {
            (Some(reason), _) => SubscriptionEvent::Failed(Some(reason)),
            (None, Performative::Agree) => SubscriptionEvent::Agreed,
            (None, Performative::Refuse) => SubscriptionEvent::Refused(m.content().to_vec()),
            (None, Performative::Failure) => SubscriptionEvent::Failed(None),
            (None, _) => SubscriptionEvent::Inform(m.content().to_vec()),
        };
        if matches!(event, SubscriptionEvent::Refused(_) | SubscriptionEvent::Failed(_)) {
            self.active = false;
        }
        Some(event)
    }

    /// Ends it: `cancel` to the publisher, in the conversation.
    pub fn cancel(&mut self, ctx: &mut Context<'_>) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        let out = Outgoing::new(&self.publisher, Performative::Cancel, b"")
            .conversation(self.conversation_id)
            .in_reply_to(self.reply_with)
            .protocol(Protocol::FIPA_SUBSCRIBE);
        ctx.send_message(out)
    }

    pub fn is_active(&self) -> bool {
        self.active
    }
}

/// The publisher's side: who is subscribed.
#[derive(Debug, Default)]
pub struct Subscribers {
    /// (subscriber, its subscription's reply_with, conversation).
    list: Vec<(String, u64, u64)>,
}

impl Subscribers {
    /// Takes `subscribe` (answered `agree`) and `cancel`; `true` if `m` was
    /// one of them.
    pub fn on_message(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<bool> {
        match m.performative() {
            Performative::Subscribe => {
                self.list.push((m.sender().to_string(), m.reply_with(), m.conversation_id()));
                ctx.reply(m, Performative::Agree, b"")?;
                Ok(true)
            }
            Performative::Cancel => {
                let before = self.list.len();
                self.list.retain(|(who, rw, conv)| !(who == m.sender() && (*rw == m.in_reply_to() || *conv == m.conversation_id())));
                Ok(self.list.len() < before)
            }
            _ => Ok(false),
        }
    }

    /// Sends `content` to every subscriber; how many took it. A subscriber
    /// the node cannot reach (unknown, or its node down) is dropped.
    pub fn publish(&mut self, ctx: &mut Context<'_>, content: &[u8]) -> usize {
        let mut sent = 0;
        self.list.retain(|(who, rw, conv)| {
            let out = Outgoing::new(who, Performative::Inform, content).conversation(*conv).in_reply_to(*rw).protocol(Protocol::FIPA_SUBSCRIBE);
            match ctx.send_message(out) {
                Ok(()) => {
                    sent += 1;
                    true
                }
                Err(e) => e.is_busy(),
            }
        });
        sent
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

// ------------------------------------------------------------ contract net

/// Where a participant of a round stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bid {
    /// Invited; no answer yet.
    Waiting,
    Proposed(Vec<u8>),
    Refused(Vec<u8>),
    /// The node failed its `cfp` back (a crash, its node down...).
    Failed(FailureReason),
    /// It answered after the deadline (rule 3: not counted).
    TooLate,
}

#[derive(Debug)]
struct Invitee {
    name: String,
    reply_with: u64,
    bid: Bid,
}

/// What happened to a [`CfpRound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundEvent {
    /// A participant answered (or the node failed it back).
    Answered(String),
    /// Every participant has answered: time to award.
    AllAnswered,
    /// The deadline passed: award among the proposals in.
    Deadline,
    /// The winner's result: `Ok(its inform)`, or why not.
    Finished(Result<Vec<u8>, RoundFailure>),
}

/// Why a round gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundFailure {
    /// Nobody proposed in time.
    NoProposal,
    /// The winner answered `failure`.
    WinnerFailed(Vec<u8>),
    /// The node failed the award back.
    Notice(FailureReason),
    /// The winner did not answer in time.
    TimedOut,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Collecting,
    Awarding { winner: String, reply_with: u64 },
    Done,
}

/// A contract-net round, as its initiator (rules 1 to 3).
#[derive(Debug)]
pub struct CfpRound {
    pub conversation_id: u64,
    invited: Vec<Invitee>,
    timer: Option<TimerId>,
    phase: Phase,
}

impl CfpRound {
    /// Sends `cfp` with `task` to every participant, to be answered within
    /// `deadline`.
    pub fn start(ctx: &mut Context<'_>, participants: &[&str], task: &[u8], deadline_after: Duration) -> Result<CfpRound> {
        let conversation_id = ctx.new_id();
        let reply_by = deadline(ctx, deadline_after);
        let mut invited = Vec::with_capacity(participants.len());
        for name in participants {
            let reply_with = ctx.new_id();
            let out = Outgoing::new(name, Performative::Cfp, task)
                .conversation(conversation_id)
                .reply_with(reply_with)
                .reply_by(reply_by)
                .protocol(Protocol::FIPA_CONTRACT_NET);
            let bid = match ctx.send_message(out) {
                Ok(()) => Bid::Waiting,
                // Refused at once (unknown, or its node down): as good as failed back.
                Err(crate::Error::Abi(crate::AbiError::NotFound)) => Bid::Failed(FailureReason::UnknownReceiver),
                Err(crate::Error::Abi(crate::AbiError::Unreachable)) => Bid::Failed(FailureReason::NodeDown),
                Err(e) => return Err(e),
            };
            invited.push(Invitee { name: name.to_string(), reply_with, bid });
        }
        let timer = ctx.timer_set(deadline_after, conversation_id.to_le_bytes())?;
        Ok(CfpRound { conversation_id, invited, timer: Some(timer), phase: Phase::Collecting })
    }

    /// Rule 2: what `m` means for this round, if it is about it.
    pub fn on_message(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Option<RoundEvent> {
        if m.timer().is_some() && m.timer() == self.timer {
            self.timer = None;
            return Some(match &self.phase {
                Phase::Collecting => {
                    for i in &mut self.invited {
                        if i.bid == Bid::Waiting {
                            i.bid = Bid::TooLate;
                        }
                    }
                    RoundEvent::Deadline
                }
                Phase::Awarding { .. } => {
                    self.phase = Phase::Done;
                    RoundEvent::Finished(Err(RoundFailure::TimedOut))
                }
                Phase::Done => return None,
            });
        }
        if let Phase::Awarding { reply_with, .. } = &self.phase {
            if m.in_reply_to() != *reply_with {
                return self.late(m);
            }
            let result = match (m.failure_notice(), m.performative()) {
                (Some(reason), _) => Err(RoundFailure::Notice(reason)),
                (None, Performative::Inform) => Ok(m.content().to_vec()),
                (None, _) => Err(RoundFailure::WinnerFailed(m.content().to_vec())),
            };
            self.phase = Phase::Done;
            if let Some(t) = self.timer.take() {
                let _ = ctx.timer_cancel(t);
            }
            return Some(RoundEvent::Finished(result));
        }
        if self.phase != Phase::Collecting {
            return self.late(m);
        }
        let i = self.invited.iter_mut().find(|i| i.reply_with == m.in_reply_to() && m.in_reply_to() != 0)?;
        if i.bid != Bid::Waiting {
            return None; // rule 3: answered already
        }
        i.bid = match (m.failure_notice(), m.performative()) {
            (Some(reason), _) => Bid::Failed(reason),
            (None, Performative::Propose) => Bid::Proposed(m.content().to_vec()),
            (None, _) => Bid::Refused(m.content().to_vec()),
        };
        let name = i.name.clone();
        if self.invited.iter().all(|i| i.bid != Bid::Waiting) {
            return Some(RoundEvent::AllAnswered);
        }
        Some(RoundEvent::Answered(name))
    }

    /// An answer to this round's `cfp` after the deadline: marked, not
    /// counted (rule 3).
    fn late(&mut self, m: &Message<'_>) -> Option<RoundEvent> {
        let i = self.invited.iter_mut().find(|i| i.reply_with == m.in_reply_to() && m.in_reply_to() != 0)?;
        if i.bid == Bid::Waiting || i.bid == Bid::TooLate {
            i.bid = Bid::TooLate;
        }
        None
    }

    /// The proposals in, as (participant, proposal).
    pub fn proposals(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.invited.iter().filter_map(|i| match &i.bid {
            Bid::Proposed(p) => Some((i.name.as_str(), p.as_slice())),
            _ => None,
        })
    }

    /// Every participant and where it stands.
    pub fn bids(&self) -> impl Iterator<Item = (&str, &Bid)> {
        self.invited.iter().map(|i| (i.name.as_str(), &i.bid))
    }

    /// Awards the round: `accept-proposal` to `winner` (who must have
    /// proposed), `reject-proposal` to every other proposer; the winner's
    /// answer is due within `timeout`. With no winner, the round ends
    /// (`RoundFailure::NoProposal`), rejecting every proposal.
    pub fn award(&mut self, ctx: &mut Context<'_>, winner: Option<&str>, timeout: Duration) -> Result<Option<RoundEvent>> {
        assert_eq!(self.phase, Phase::Collecting, "a round is awarded once");
        if let Some(t) = self.timer.take() {
            let _ = ctx.timer_cancel(t);
        }
        for i in &mut self.invited {
            if i.bid == Bid::Waiting {
                i.bid = Bid::TooLate;
            }
        }
        let proposers: Vec<(String, u64)> = self.invited.iter().filter(|i| matches!(i.bid, Bid::Proposed(_))).map(|i| (i.name.clone(), i.reply_with)).collect();
        for (name, reply_with) in &proposers {
            if Some(name.as_str()) != winner {
                let out = Outgoing::new(name, Performative::RejectProposal, b"")
                    .conversation(self.conversation_id)
                    .in_reply_to(*reply_with)
                    .protocol(Protocol::FIPA_CONTRACT_NET);
                let _ = ctx.send_message(out); // a lost rejection harms no one
            }
        }
        let Some(winner) = winner else {
            self.phase = Phase::Done;
            return Ok(Some(RoundEvent::Finished(Err(RoundFailure::NoProposal))));
        };
        let their = proposers.iter().find(|(n, _)| n == winner).map(|(_, rw)| *rw).expect("the winner proposed");
        let reply_with = ctx.new_id();
        let reply_by = deadline(ctx, timeout);
        let out = Outgoing::new(winner, Performative::AcceptProposal, b"")
            .conversation(self.conversation_id)
            .in_reply_to(their)
            .reply_with(reply_with)
            .reply_by(reply_by)
            .protocol(Protocol::FIPA_CONTRACT_NET);
        ctx.send_message(out)?;
        self.timer = Some(ctx.timer_set(timeout, self.conversation_id.to_le_bytes())?);
        self.phase = Phase::Awarding { winner: winner.to_string(), reply_with };
        Ok(None)
    }

    pub fn is_collecting(&self) -> bool {
        self.phase == Phase::Collecting
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestAgent, TestMessage};
    use crate::Agent;

    /// An initiator that runs one round at a time and records what happened.
    #[derive(Default)]
    struct Manager {
        round: Option<CfpRound>,
        events: Vec<RoundEvent>,
    }

    impl Agent for Manager {
        fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
            if m.sender().starts_with("@api") {
                self.round = Some(CfpRound::start(ctx, &["a", "b", "c", "d"], m.content(), Duration::from_millis(100))?);
                return Ok(());
            }
            let Some(round) = self.round.as_mut() else { return Ok(()) };
            let Some(event) = round.on_message(ctx, m) else { return Ok(()) };
            if matches!(event, RoundEvent::AllAnswered | RoundEvent::Deadline) {
                // The lowest price wins.
                let best = round.proposals().min_by_key(|(_, p)| p.to_vec()).map(|(n, _)| n.to_string());
                if let Some(e) = round.award(ctx, best.as_deref(), Duration::from_millis(100))? {
                    self.events.push(e);
                }
            }
            self.events.push(event);
            Ok(())
        }
    }

    fn cfp_of(m: &TestAgent<Manager>, to: &str) -> crate::testing::Sent {
        m.host().sent.iter().find(|s| s.receiver == to && s.performative == Performative::Cfp).unwrap().clone()
    }

    fn answer(to: &crate::testing::Sent, from: &str, p: Performative, content: &str) -> TestMessage {
        TestMessage::new(from, "manager", content)
            .performative(p)
            .conversation(to.conversation_id)
            .in_reply_to(to.reply_with)
            .protocol(Protocol::FIPA_CONTRACT_NET)
    }

    #[test]
    fn a_round_ends_by_its_deadline_with_the_best_proposal_and_ignores_the_late() {
        let mut m = TestAgent::<Manager>::start().unwrap();
        m.host_mut().now_micros = 1_000_000;
        m.deliver(&TestMessage::new("@api/1", "manager", "task")).unwrap();
        let cfps: Vec<_> = ["a", "b", "c", "d"].iter().map(|n| cfp_of(&m, n)).collect();
        assert!(cfps.iter().all(|c| c.reply_by == 1_100_000 && c.protocol == Protocol::FIPA_CONTRACT_NET && c.reply_with != 0));
        m.deliver(&answer(&cfps[0], "a", Performative::Propose, "30")).unwrap();
        m.deliver(&answer(&cfps[1], "b", Performative::Propose, "20")).unwrap();
        // c crashed: the node fails its cfp back.
        m.deliver(&TestMessage::new("@node", "manager", "crashed_handler").performative(Performative::Failure).in_reply_to(cfps[2].reply_with)).unwrap();
        // d says nothing: the deadline decides.
        m.advance(150).unwrap();
        let accept = m.host().sent.iter().find(|s| s.performative == Performative::AcceptProposal).unwrap().clone();
        assert_eq!((accept.receiver.as_str(), accept.in_reply_to), ("b", cfps[1].reply_with), "the lowest price wins");
        let rejected: Vec<_> = m.host().sent.iter().filter(|s| s.performative == Performative::RejectProposal).map(|s| s.receiver.clone()).collect();
        assert_eq!(rejected, ["a"]);
        // d's late answer changes nothing; the winner's inform ends it.
        m.deliver(&answer(&cfps[3], "d", Performative::Propose, "1")).unwrap();
        m.deliver(&TestMessage::new("b", "manager", "done").performative(Performative::Inform).in_reply_to(accept.reply_with)).unwrap();
        let round = m.agent().round.as_ref().unwrap();
        assert!(round.is_done());
        let bids: Vec<_> = round.bids().map(|(n, b)| (n.to_string(), b.clone())).collect();
        assert_eq!(bids[2].1, Bid::Failed(FailureReason::CrashedHandler));
        assert_eq!(bids[3].1, Bid::TooLate);
        assert_eq!(m.agent().events.last(), Some(&RoundEvent::Finished(Ok(b"done".to_vec()))));
        assert!(m.host().timers.is_empty(), "no timer left behind");
        let count = m.agent().events.len();
        m.advance(1000).unwrap();
        assert_eq!(m.agent().events.len(), count, "nothing after the end");
    }

    #[test]
    fn a_silent_winner_times_the_round_out_and_all_answers_close_collection_early() {
        let mut m = TestAgent::<Manager>::start().unwrap();
        m.deliver(&TestMessage::new("@api/1", "manager", "task")).unwrap();
        let cfps: Vec<_> = ["a", "b", "c", "d"].iter().map(|n| cfp_of(&m, n)).collect();
        for (c, n) in cfps.iter().zip(["a", "b", "c", "d"]) {
            m.deliver(&answer(c, n, if n == "d" { Performative::Refuse } else { Performative::Propose }, &format!("{}", n.as_bytes()[0]))).unwrap();
        }
        assert!(m.agent().events.contains(&RoundEvent::AllAnswered), "no need to wait for the deadline");
        m.advance(150).unwrap();
        assert_eq!(m.agent().events.last(), Some(&RoundEvent::Finished(Err(RoundFailure::TimedOut))));
    }

    #[derive(Default)]
    struct Asker {
        request: Option<Request>,
        events: Vec<RequestEvent>,
    }

    impl Agent for Asker {
        fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
            if m.sender().starts_with("@api") {
                self.request = Some(Request::send(ctx, "worker", b"job", Duration::from_millis(50))?);
            } else if let Some(e) = self.request.as_mut().and_then(|r| r.on_message(ctx, m)) {
                self.events.push(e);
            }
            Ok(())
        }
    }

    #[test]
    fn a_request_ends_once_by_reply_notice_or_time_out() {
        let mut a = TestAgent::<Asker>::start().unwrap();
        a.deliver(&TestMessage::new("@api/1", "asker", "")).unwrap();
        let sent = a.host().sent[0].clone();
        a.deliver(&TestMessage::new("worker", "asker", "").performative(Performative::Agree).in_reply_to(sent.reply_with)).unwrap();
        a.deliver(&TestMessage::new("worker", "asker", "42").performative(Performative::Inform).in_reply_to(sent.reply_with)).unwrap();
        a.advance(100).unwrap();
        assert_eq!(a.agent().events, [RequestEvent::Agreed, RequestEvent::Replied { performative: Performative::Inform, content: b"42".to_vec() }]);
        // A notice ends it; so does the deadline, once.
        a.deliver(&TestMessage::new("@api/1", "asker", "")).unwrap();
        let sent = a.host().sent[1].clone();
        a.deliver(&TestMessage::new("@node", "asker", "unknown_receiver").performative(Performative::Failure).in_reply_to(sent.reply_with)).unwrap();
        a.deliver(&TestMessage::new("@api/1", "asker", "")).unwrap();
        a.advance(100).unwrap();
        a.advance(100).unwrap();
        assert_eq!(a.agent().events[2..], [RequestEvent::Failed(FailureReason::UnknownReceiver), RequestEvent::TimedOut]);
    }

    #[derive(Default)]
    struct Publisher {
        subscribers: Subscribers,
    }

    impl Agent for Publisher {
        fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
            if !self.subscribers.on_message(ctx, m)? {
                self.subscribers.publish(ctx, m.content());
            }
            Ok(())
        }
    }

    #[test]
    fn subscribers_get_each_inform_until_they_cancel() {
        let mut p = TestAgent::<Publisher>::start().unwrap();
        p.deliver(&TestMessage::new("s1", "pub", "").performative(Performative::Subscribe).reply_with(5).conversation(9)).unwrap();
        p.deliver(&TestMessage::new("s2", "pub", "").performative(Performative::Subscribe).reply_with(6).conversation(10)).unwrap();
        p.deliver(&TestMessage::new("@api/1", "pub", "news")).unwrap();
        let informs: Vec<_> = p.host().sent.iter().filter(|s| s.performative == Performative::Inform).map(|s| (s.receiver.clone(), s.in_reply_to)).collect();
        assert_eq!(informs, [("s1".to_string(), 5), ("s2".to_string(), 6)]);
        p.deliver(&TestMessage::new("s1", "pub", "").performative(Performative::Cancel).in_reply_to(5).conversation(9)).unwrap();
        p.deliver(&TestMessage::new("@api/1", "pub", "more")).unwrap();
        assert_eq!(p.host().sent.iter().filter(|s| s.performative == Performative::Inform).count(), 3);
        assert_eq!(p.agent().subscribers.len(), 1);
    }
}
