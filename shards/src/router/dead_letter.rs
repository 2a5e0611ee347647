//! Why a message was not delivered, and the dead letters counted by
//! reason (router rule 4): every undeliverable message is one of these,
//! never dropped silently, and those whose sender asked for a reply get a
//! failure notice (`notices`).

use caxton_abi::failure::FailureReason;

/// Why a message was not delivered (rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetter {
    UnknownReceiver,
    CrashedHandler,
    Undeployed,
    ApiUnavailable,
    TimedOut,
    /// Queued for a node that went down, or sent to one that is down.
    NodeDown,
    /// Sent to a live node and never acknowledged, after every attempt.
    LinkLost,
    /// Its `reply_by` passed before a handler could start on it.
    Expired,
    /// A performative its version 1 receiver cannot read.
    NotUnderstood,
    /// Its receiver is quarantined after crashing over and over.
    Quarantined,
    /// Still held when the node stopped, past its drain timeout.
    Stopped,
}

impl DeadLetter {
    /// Every reason, in the order of [`DeadLetters`], with its metric label.
    pub const ALL: [(DeadLetter, &'static str); 11] = [
        (DeadLetter::UnknownReceiver, "unknown_receiver"),
        (DeadLetter::CrashedHandler, "crashed_handler"),
        (DeadLetter::Undeployed, "undeployed"),
        (DeadLetter::ApiUnavailable, "api_unavailable"),
        (DeadLetter::TimedOut, "timed_out"),
        (DeadLetter::NodeDown, "node_down"),
        (DeadLetter::LinkLost, "link_lost"),
        (DeadLetter::Expired, "expired"),
        (DeadLetter::NotUnderstood, "not_understood"),
        (DeadLetter::Quarantined, "quarantined"),
        (DeadLetter::Stopped, "node_stopped"),
    ];

    /// The failure notice its sender gets, if any: a message to a runtime
    /// endpoint that is gone has no one to blame but the endpoint.
    pub fn notice(self) -> Option<FailureReason> {
        Some(match self {
            DeadLetter::UnknownReceiver => FailureReason::UnknownReceiver,
            DeadLetter::CrashedHandler => FailureReason::CrashedHandler,
            DeadLetter::Undeployed => FailureReason::Undeployed,
            DeadLetter::ApiUnavailable => return None,
            DeadLetter::TimedOut => FailureReason::TimedOut,
            DeadLetter::NodeDown => FailureReason::NodeDown,
            DeadLetter::LinkLost => FailureReason::LinkLost,
            DeadLetter::Expired => FailureReason::Expired,
            DeadLetter::NotUnderstood => FailureReason::NotUnderstood,
            DeadLetter::Quarantined => FailureReason::Quarantined,
            DeadLetter::Stopped => FailureReason::NodeDown,
        })
    }

    fn index(self) -> usize {
        DeadLetter::ALL.iter().position(|(r, _)| *r == self).expect("every reason is listed")
    }
}

/// Dead letters counted by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetters([u64; DeadLetter::ALL.len()]);

impl DeadLetters {
    pub fn add(&mut self, reason: DeadLetter, n: u64) {
        self.0[reason.index()] += n;
    }

    pub fn get(&self, reason: DeadLetter) -> u64 {
        self.0[reason.index()]
    }

    /// (label, count) for every reason.
    pub fn by_label(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DeadLetter::ALL.iter().map(|(r, label)| (*label, self.get(*r)))
    }
}
