//! What the control plane answers when it cannot do what was asked: a kind
//! (which the REST API turns into an HTTP status), a stable machine code
//! and a sentence for people. The control plane knows nothing of HTTP.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (a bad name, module, count, message).
    BadRequest,
    NotFound,
    /// The name is taken (here or on another node).
    Conflict,
    /// Admission control refuses it: the node has no room.
    OverCapacity,
    /// The receiver has no room now (back-pressure): retry soon.
    Busy,
    /// A shard cannot take or answer the command now: retry soon.
    Unavailable,
    /// The receiver's node is down.
    NodeUnavailable,
    /// No reply came in time.
    Timeout,
    Internal,
}

#[derive(Debug, Clone)]
pub struct ControlError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
}

impl ControlError {
    fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> ControlError {
        ControlError { kind, code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::BadRequest, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::NotFound, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::Conflict, "conflict", message)
    }

    /// A conflict with a code of its own.
    pub fn conflict_because(code: &'static str, message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::Conflict, code, message)
    }

    pub fn over_capacity(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::OverCapacity, "over_capacity", message)
    }

    /// The receiver's mailbox is full.
    pub fn too_many(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::Busy, "busy", message)
    }

    /// A shard cannot take or answer now.
    pub fn busy(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::Unavailable, "unavailable", message)
    }

    pub fn node_unavailable(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::NodeUnavailable, "node_unavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::Timeout, "reply_timeout", message)
    }

    pub fn internal(message: impl Into<String>) -> ControlError {
        ControlError::new(ErrorKind::Internal, "internal", message)
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
