//! What host functions return: 0 or a positive count on success, one of
//! these negative codes on failure. An agent that treats every negative
//! result as a failure handles codes added later too.

/// Done.
pub const OK: i32 = 0;
/// No such agent, or no such state key.
pub const NOT_FOUND: i32 = -1;
/// No room now (back-pressure): try again later.
pub const BUSY: i32 = -2;
/// A bad pointer, length, name or envelope.
pub const INVALID: i32 = -3;
/// Over a size limit (content, key or value).
pub const TOO_LARGE: i32 = -4;
/// Over a count or space limit (state writes per call, the state quota, the
/// disk floor), or the call's fuel is gone.
pub const OVER_LIMIT: i32 = -5;
/// The receiver lives on a node that is down.
pub const UNREACHABLE: i32 = -6;
/// Not permitted: a tool (`@tool/NAME`) the agent's deploy did not grant.
pub const DENIED: i32 = -7;

/// A negative result, as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbiError {
    NotFound,
    Busy,
    Invalid,
    TooLarge,
    OverLimit,
    Unreachable,
    Denied,
    /// A negative code this version does not know.
    Other(i32),
}

impl AbiError {
    /// The error a host function's result means, if it is one.
    pub fn from_code(code: i32) -> Option<AbiError> {
        Some(match code {
            c if c >= 0 => return None,
            NOT_FOUND => AbiError::NotFound,
            BUSY => AbiError::Busy,
            INVALID => AbiError::Invalid,
            TOO_LARGE => AbiError::TooLarge,
            OVER_LIMIT => AbiError::OverLimit,
            UNREACHABLE => AbiError::Unreachable,
            DENIED => AbiError::Denied,
            other => AbiError::Other(other),
        })
    }

    pub fn code(self) -> i32 {
        match self {
            AbiError::NotFound => NOT_FOUND,
            AbiError::Busy => BUSY,
            AbiError::Invalid => INVALID,
            AbiError::TooLarge => TOO_LARGE,
            AbiError::OverLimit => OVER_LIMIT,
            AbiError::Unreachable => UNREACHABLE,
            AbiError::Denied => DENIED,
            AbiError::Other(c) => c,
        }
    }
}

impl core::fmt::Display for AbiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self {
            AbiError::NotFound => "not found",
            AbiError::Busy => "busy: no room now, try later",
            AbiError::Invalid => "invalid argument",
            AbiError::TooLarge => "too large",
            AbiError::OverLimit => "over a limit",
            AbiError::Unreachable => "the receiver's node is down",
            AbiError::Denied => "not permitted: the tool is not granted to this agent",
            AbiError::Other(c) => return write!(f, "error {c}"),
        };
        f.write_str(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_errors_map_both_ways() {
        for c in [NOT_FOUND, BUSY, INVALID, TOO_LARGE, OVER_LIMIT, UNREACHABLE, DENIED, -99] {
            assert_eq!(AbiError::from_code(c).unwrap().code(), c);
        }
        assert_eq!(AbiError::from_code(OK), None);
        assert_eq!(AbiError::from_code(17), None, "a length is no error");
    }
}
