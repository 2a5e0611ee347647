//! API errors: every error is JSON `{"error": {"code", "message"}}` with a
//! fitting status.

use hyper::StatusCode;

use crate::control::{ControlError, ErrorKind};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds a client should wait before retrying (429 and 503).
    pub retry_after_s: Option<u32>,
    /// The methods a path allows, for a 405's `Allow` header.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after_s: None, allow: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError { retry_after_s: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message) }
    }

    /// The receiver's node is down (cluster): fail fast, retry later.
    pub fn node_unavailable(message: impl Into<String>) -> ApiError {
        ApiError { retry_after_s: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "node_unavailable", message) }
    }

    /// The node is draining (SIGTERM): it takes no new work.
    pub fn starting() -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting",
                "the node is starting: it is restoring its agents (GET /v1/ready says when it is done)",
            )
        }
    }

    pub fn shutting_down() -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the node is shutting down; it takes no new work")
        }
    }

    /// A request forwarded to another node failed on the way.
    pub fn bad_gateway(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, "forward_failed", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }
}

/// The control plane's errors as HTTP: each kind has its status, and the
/// ones worth retrying soon say when (`Retry-After: 1`).
impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let (status, retry_after_s) = match e.kind {
            ErrorKind::BadRequest => (StatusCode::BAD_REQUEST, None),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, None),
            ErrorKind::Conflict => (StatusCode::CONFLICT, None),
            ErrorKind::OverCapacity => (StatusCode::INSUFFICIENT_STORAGE, None),
            ErrorKind::Busy => (StatusCode::TOO_MANY_REQUESTS, Some(1)),
            ErrorKind::Unavailable | ErrorKind::NodeUnavailable => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, None),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        ApiError { retry_after_s, ..ApiError::new(status, e.code, e.message) }
    }
}
