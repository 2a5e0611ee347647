//! Failure notices: when a message that asked for a reply (a non-zero
//! `reply_with`) cannot be handled, the runtime answers its sender with a
//! `failure` from [`NOTICE_SENDER`], `in_reply_to` set to that
//! `reply_with`, in the same conversation, and one of these reasons as the
//! content (ASCII). A notice never causes a notice.

/// The sender of every failure notice.
pub const NOTICE_SENDER: &str = "@node";

/// Why a message was not handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No agent has that name (here or, in a cluster, anywhere).
    UnknownReceiver,
    /// The handler trapped (a crash); its writes and sends were undone.
    CrashedHandler,
    /// The handler ran past its execution time slice.
    TimedOut,
    /// The receiver was undeployed with the message still queued.
    Undeployed,
    /// The receiver's node is down.
    NodeDown,
    /// The link to the receiver's node gave the message up after its retries.
    LinkLost,
    /// Its `reply_by` passed before a handler could start on it.
    Expired,
    /// The receiver is quarantined (crashing over and over).
    Quarantined,
    /// The receiver cannot understand it: a version 1 agent and a
    /// performative version 1 does not have.
    NotUnderstood,
    /// The handler returned an error (the SDK: an `Err`), so no reply will
    /// come; its writes and sends stand.
    HandlerError,
}

impl FailureReason {
    pub const ALL: [FailureReason; 10] = [
        FailureReason::UnknownReceiver,
        FailureReason::CrashedHandler,
        FailureReason::TimedOut,
        FailureReason::Undeployed,
        FailureReason::NodeDown,
        FailureReason::LinkLost,
        FailureReason::Expired,
        FailureReason::Quarantined,
        FailureReason::NotUnderstood,
        FailureReason::HandlerError,
    ];

    /// The notice's content.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::UnknownReceiver => "unknown_receiver",
            FailureReason::CrashedHandler => "crashed_handler",
            FailureReason::TimedOut => "timed_out",
            FailureReason::Undeployed => "undeployed",
            FailureReason::NodeDown => "node_down",
            FailureReason::LinkLost => "link_lost",
            FailureReason::Expired => "expired",
            FailureReason::Quarantined => "quarantined",
            FailureReason::NotUnderstood => "not_understood",
            FailureReason::HandlerError => "handler_error",
        }
    }

    pub fn from_content(content: &[u8]) -> Option<FailureReason> {
        FailureReason::ALL.iter().copied().find(|r| r.as_str().as_bytes() == content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_back_from_their_content() {
        for r in FailureReason::ALL {
            assert_eq!(FailureReason::from_content(r.as_str().as_bytes()), Some(r));
        }
        assert_eq!(FailureReason::from_content(b"nope"), None);
    }
}
