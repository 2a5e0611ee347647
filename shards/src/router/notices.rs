//! Failure notices waiting to be sent (ABI `failure` rules): a message that
//! asked for a reply and became a dead letter is answered from `@node`.
//!
//! Rules:
//! 1. A notice is made where the dead letter is counted (the router's
//!    `dead_letter`) and waits here; the shard sends what waits once per
//!    tick, outside any handler, through the normal routes (a local
//!    mailbox, another shard, the API, another node).
//! 2. The queue is bounded in count and bytes ([`NOTICES_PENDING_MAX`],
//!    [`NOTICES_PENDING_BYTES_MAX`]); past them a notice is dropped and
//!    counted, never blocking the path that made it.
//! 3. A notice that cannot be routed (its addressee is gone) is dropped and
//!    counted: it asks for no reply, so nothing answers it (no storms).

use std::collections::VecDeque;

use caxton_abi::failure::FailureReason;

use crate::envelope::Message;
use crate::limits::{NOTICES_PENDING_BYTES_MAX, NOTICES_PENDING_MAX};

/// Notices by reason, and those dropped (rules 2 and 3).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NoticeCounts {
    sent: [u64; FailureReason::ALL.len()],
    pub dropped: u64,
}

fn index(reason: FailureReason) -> usize {
    FailureReason::ALL.iter().position(|r| *r == reason).expect("every reason is listed")
}

impl NoticeCounts {
    pub fn sent(&self, reason: FailureReason) -> u64 {
        self.sent[index(reason)]
    }

    /// (reason, notices sent) for every reason.
    pub fn by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        FailureReason::ALL.iter().map(|r| (r.as_str(), self.sent(*r)))
    }
}

#[derive(Debug, Default)]
pub struct Notices {
    pending: VecDeque<(FailureReason, Message)>,
    bytes: usize,
    pub counts: NoticeCounts,
}

impl Notices {
    /// Queues the notice of `message`, if it asked for one (rule 1).
    pub fn offer(&mut self, reason: FailureReason, message: &Message) {
        let Some(notice) = message.failure_notice(reason) else { return };
        if !self.has_room_for(notice.len()) {
            self.counts.dropped += 1;
            return;
        }
        self.bytes += notice.len();
        self.pending.push_back((reason, notice));
        debug_assert!(self.pending.len() <= NOTICES_PENDING_MAX);
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether a notice of `bytes` would be queued now (rule 2).
    pub fn has_room_for(&self, bytes: usize) -> bool {
        self.pending.len() < NOTICES_PENDING_MAX && self.bytes + bytes <= NOTICES_PENDING_BYTES_MAX
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn pop(&mut self) -> Option<(FailureReason, Message)> {
        let (reason, notice) = self.pending.pop_front()?;
        self.bytes -= notice.len();
        Some((reason, notice))
    }

    /// Puts back a notice whose route was busy: it goes first next time.
    pub fn unpop(&mut self, reason: FailureReason, notice: Message) {
        self.bytes += notice.len();
        self.pending.push_front((reason, notice));
    }

    pub fn sent(&mut self, reason: FailureReason) {
        self.counts.sent[index(reason)] += 1;
    }

    /// A notice nobody can take (rule 3).
    pub fn undeliverable(&mut self) {
        self.counts.dropped += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Header;

    fn request(reply_with: u64) -> Message {
        Message::encode(&Header { reply_with, ..Header::default() }, b"alice", b"bob", b"x").unwrap()
    }

    #[test]
    fn only_requests_get_notices_and_the_queue_is_bounded() {
        let mut n = Notices::default();
        n.offer(FailureReason::CrashedHandler, &request(0));
        assert!(n.is_empty(), "no reply asked, no notice");
        for _ in 0..NOTICES_PENDING_MAX + 5 {
            n.offer(FailureReason::CrashedHandler, &request(7));
        }
        assert_eq!((n.len(), n.counts.dropped), (NOTICES_PENDING_MAX, 5), "rule 2");
        let (reason, notice) = n.pop().unwrap();
        assert_eq!((reason, notice.in_reply_to(), notice.content()), (FailureReason::CrashedHandler, 7, &b"crashed_handler"[..]));
        n.offer(FailureReason::UnknownReceiver, &notice);
        assert_eq!(n.len(), NOTICES_PENDING_MAX - 1, "no notice about a notice");
        n.unpop(reason, notice);
        assert_eq!(n.len(), NOTICES_PENDING_MAX);
        while n.pop().is_some() {}
        assert_eq!(n.bytes, 0);
    }
}
