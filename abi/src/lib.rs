//! Caxton's agent ABI, version 1: what an agent and the runtime agree on,
//! byte for byte. No `std`, no allocation, no dependencies, so that the
//! runtime, the agent SDK (built for WebAssembly) and clients of the wire
//! listener all use this one definition and cannot drift apart.
//!
//! - [`envelope`]: the 44-byte header and the variable fields after it,
//!   parsed in place ([`Envelope`]) and written into a caller's buffer;
//! - [`Performative`]: the FIPA performatives and their codes;
//! - [`code`]: the results host functions return;
//! - the limits of the ABI (names, content, state keys and values).
//!
//! The reference for agent writers is docs/ABI.md.

#![cfg_attr(not(test), no_std)]

pub mod code;
pub mod envelope;

pub use envelope::{decode_header, encode_into, encode_unchecked_names, encoded_len, Envelope, EnvelopeError, Header, Lengths};

/// The ABI version this crate speaks (the envelope's first byte).
pub const VERSION: u8 = 1;

/// Size of the fixed envelope header, in bytes.
pub const HEADER_BYTES: usize = 44;

/// Longest name (sender or receiver), in bytes.
pub const NAME_BYTES_MAX: usize = 64;

/// Largest message content, in bytes (1 MiB).
pub const CONTENT_BYTES_MAX: usize = 1024 * 1024;

/// Largest encoded envelope, in bytes: header, two names and the content.
pub const ENVELOPE_BYTES_MAX: usize = HEADER_BYTES + 2 * NAME_BYTES_MAX + CONTENT_BYTES_MAX;

/// Longest state key, in bytes.
pub const STATE_KEY_BYTES_MAX: usize = 1024;

/// Largest state value, in bytes (1 MiB).
pub const STATE_VALUE_BYTES_MAX: usize = 1024 * 1024;

/// Most state writes (puts and deletes) one handler call may make.
pub const STATE_WRITES_PER_HANDLER_MAX: usize = 1000;

/// First byte of every runtime name (`@api/7`, `@wire/3`, `@node`).
pub const RUNTIME_NAME_PREFIX: u8 = b'@';

/// The FIPA performatives of ABI version 1, by code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Performative {
    Request = 0,
    Inform = 1,
    QueryIf = 2,
    QueryRef = 3,
    Propose = 4,
    AcceptProposal = 5,
    RejectProposal = 6,
    Agree = 7,
    Refuse = 8,
    Failure = 9,
    NotUnderstood = 10,
}

impl Performative {
    /// Every performative, in code order.
    pub const ALL: [Performative; 11] = [
        Performative::Request,
        Performative::Inform,
        Performative::QueryIf,
        Performative::QueryRef,
        Performative::Propose,
        Performative::AcceptProposal,
        Performative::RejectProposal,
        Performative::Agree,
        Performative::Refuse,
        Performative::Failure,
        Performative::NotUnderstood,
    ];

    pub fn from_code(code: u8) -> Option<Performative> {
        Performative::ALL.get(code as usize).copied()
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The name used in JSON and by the CLI (`query_if`).
    pub fn name(self) -> &'static str {
        PERFORMATIVE_NAMES[self as usize]
    }

    pub fn from_name(name: &str) -> Option<Performative> {
        PERFORMATIVE_NAMES.iter().position(|n| *n == name).map(|i| Performative::ALL[i])
    }
}

/// The performatives' names, by code.
pub const PERFORMATIVE_NAMES: [&str; 11] =
    ["request", "inform", "query_if", "query_ref", "propose", "accept_proposal", "reject_proposal", "agree", "refuse", "failure", "not_understood"];

/// Is `name` a valid agent name: 1..=64 bytes of `[a-z0-9._-]`?
pub fn is_agent_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= NAME_BYTES_MAX && name.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

/// Is `name` a valid runtime name: `@` then 1..=63 bytes of `[a-z0-9._/-]`?
pub fn is_runtime_name(name: &[u8]) -> bool {
    name.len() >= 2
        && name.len() <= NAME_BYTES_MAX
        && name[0] == RUNTIME_NAME_PREFIX
        && name[1..].iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}

/// Is `name` a valid sender or receiver: an agent's or the runtime's?
pub fn is_endpoint_name(name: &[u8]) -> bool {
    is_agent_name(name) || is_runtime_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn performatives_have_stable_codes_and_names() {
        for (i, p) in Performative::ALL.iter().enumerate() {
            assert_eq!(p.code() as usize, i);
            assert_eq!(Performative::from_code(i as u8), Some(*p));
            assert_eq!(Performative::from_name(p.name()), Some(*p));
        }
        assert_eq!(Performative::from_code(11), None);
        assert_eq!(Performative::Failure.name(), "failure");
    }

    #[test]
    fn names_follow_the_abi_alphabet() {
        assert!(is_agent_name(b"echo-1.a_b"));
        assert!(!is_agent_name(b""));
        assert!(!is_agent_name(b"Echo"));
        assert!(!is_agent_name(&[b'a'; 65]));
        assert!(is_agent_name(&[b'a'; 64]));
        assert!(is_runtime_name(b"@api/17"));
        assert!(!is_runtime_name(b"@"));
        assert!(!is_agent_name(b"@api/1"));
        assert!(is_endpoint_name(b"@wire/2") && is_endpoint_name(b"x"));
    }
}
