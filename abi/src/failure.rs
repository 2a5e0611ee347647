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

/// Prefix of a tool's runtime name: a call to tool `calc` is a `request`
/// to `@tool/calc`, and its answer (an `inform`, or a `failure` with a
/// [`ToolFailure`] as content) comes from the same name.
pub const TOOL_NAME_PREFIX: &str = "@tool/";

/// Why a tool call has no result: the content of the `failure` that
/// answers it, from `@tool/NAME`, `in_reply_to` the call's `reply_with`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolFailure {
    /// No result within the call's `reply_by` (or the node's default).
    Timeout,
    /// The node would not make the call: no such tool, a bad request, or
    /// past a bound (calls in flight on the node, the agent's rate).
    Refused,
    /// The tool answered with an error (MCP: a JSON-RPC error; HTTP: none,
    /// an HTTP status is a result), or broke the protocol.
    ToolError,
    /// The request or the response was past its size bound.
    TooLarge,
    /// The tool is down (its server is not connected, or not reachable).
    ToolDown,
}

impl ToolFailure {
    pub const ALL: [ToolFailure; 5] = [ToolFailure::Timeout, ToolFailure::Refused, ToolFailure::ToolError, ToolFailure::TooLarge, ToolFailure::ToolDown];

    /// The failure's content.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolFailure::Timeout => "timeout",
            ToolFailure::Refused => "refused",
            ToolFailure::ToolError => "tool_error",
            ToolFailure::TooLarge => "too_large",
            ToolFailure::ToolDown => "tool_down",
        }
    }

    /// The reason a failure's content names: its first word (a reason may
    /// be followed by a space and a human-readable detail).
    pub fn from_content(content: &[u8]) -> Option<ToolFailure> {
        let word = content.split(|&b| b == b' ').next().unwrap_or(content);
        ToolFailure::ALL.iter().copied().find(|r| r.as_str().as_bytes() == word)
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

    #[test]
    fn tool_failures_read_back_with_or_without_a_detail() {
        for r in ToolFailure::ALL {
            assert_eq!(ToolFailure::from_content(r.as_str().as_bytes()), Some(r));
        }
        assert_eq!(ToolFailure::from_content(b"tool_error division by zero"), Some(ToolFailure::ToolError));
        assert_eq!(ToolFailure::from_content(b"timeouts"), None);
    }
}
