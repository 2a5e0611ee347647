//! Caxton's agent ABI, version 2: what an agent and the runtime agree on,
//! byte for byte. No `std`, no allocation, no dependencies, so that the
//! runtime, the agent SDK (built for WebAssembly) and clients of the wire
//! listener all use this one definition and cannot drift apart.
//!
//! - [`envelope`]: the 76-byte header and the variable fields after it,
//!   parsed in place ([`Envelope`]) and written into a caller's buffer;
//! - [`v1`]: version 1's 44-byte envelope, and the translation both ways;
//! - [`Performative`]: the 22 FIPA communicative acts and their codes;
//! - [`Protocol`]: the interaction protocol a conversation follows;
//! - [`TraceContext`]: W3C trace context (trace id, parent span id);
//! - [`failure`]: the reasons of the runtime's failure notices;
//! - [`code`]: the results host functions return;
//! - the limits of the ABI (names, content, state keys and values).
//!
//! The reference for agent writers is docs/ABI.md.

#![cfg_attr(not(test), no_std)]

pub mod code;
pub mod envelope;
pub mod failure;
pub mod v1;

pub use envelope::{decode_header, encode_into, encode_unchecked_names, encoded_len, Envelope, EnvelopeError, Header, Lengths};

/// The ABI version this crate speaks (the envelope's first byte).
pub const VERSION: u8 = 2;

/// Size of the fixed envelope header, in bytes.
pub const HEADER_BYTES: usize = 76;

/// Longest agent name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;

/// Longest key of a keyed agent's activation (`kv/KEY`), in bytes of UTF-8.
pub const KEY_BYTES_MAX: usize = 128;

/// Longest address in an envelope's sender or receiver: an agent or
/// runtime name, or a keyed address `TYPE/KEY` (one length byte each).
pub const ADDRESS_BYTES_MAX: usize = NAME_BYTES_MAX + 1 + KEY_BYTES_MAX;
const _: () = assert!(ADDRESS_BYTES_MAX <= u8::MAX as usize, "an address length is one byte");

/// Longest protocol name, in bytes.
pub const PROTOCOL_BYTES_MAX: usize = 32;

/// Largest message content, in bytes (1 MiB).
pub const CONTENT_BYTES_MAX: usize = 1024 * 1024;

/// Largest encoded envelope, in bytes: header, two names, a protocol and
/// the content.
pub const ENVELOPE_BYTES_MAX: usize = HEADER_BYTES + 2 * ADDRESS_BYTES_MAX + PROTOCOL_BYTES_MAX + CONTENT_BYTES_MAX;

/// Longest state key, in bytes.
pub const STATE_KEY_BYTES_MAX: usize = 1024;

/// Largest state value, in bytes (1 MiB).
pub const STATE_VALUE_BYTES_MAX: usize = 1024 * 1024;

/// Most state writes (puts and deletes) one handler call may make.
pub const STATE_WRITES_PER_HANDLER_MAX: usize = 1000;

/// First byte of every runtime name (`@api/7`, `@wire/3`, `@node`).
pub const RUNTIME_NAME_PREFIX: u8 = b'@';

/// The FIPA ACL communicative acts (FIPA SC00037, as FIPA SC00061's
/// `performative` parameter names them), by code. Codes 0 to 10 are
/// version 1's and keep their numbers; 11 to 21 are new in version 2.
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
    /// `cfp`: call for proposal.
    Cfp = 11,
    Cancel = 12,
    Confirm = 13,
    Disconfirm = 14,
    InformIf = 15,
    InformRef = 16,
    Propagate = 17,
    Proxy = 18,
    RequestWhen = 19,
    RequestWhenever = 20,
    Subscribe = 21,
}

/// How many performatives there are (codes `0..PERFORMATIVES`).
pub const PERFORMATIVES: usize = 22;

/// How many version 1 had (codes `0..PERFORMATIVES_V1`).
pub const PERFORMATIVES_V1: usize = 11;

impl Performative {
    /// Every performative, in code order.
    pub const ALL: [Performative; PERFORMATIVES] = [
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
        Performative::Cfp,
        Performative::Cancel,
        Performative::Confirm,
        Performative::Disconfirm,
        Performative::InformIf,
        Performative::InformRef,
        Performative::Propagate,
        Performative::Proxy,
        Performative::RequestWhen,
        Performative::RequestWhenever,
        Performative::Subscribe,
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

    /// The name FIPA SC00061 gives it (`query-if`).
    pub fn fipa_name(self) -> &'static str {
        FIPA_NAMES[self as usize]
    }

    /// By either name.
    pub fn from_name(name: &str) -> Option<Performative> {
        PERFORMATIVE_NAMES.iter().chain(FIPA_NAMES.iter()).position(|n| *n == name).map(|i| Performative::ALL[i % PERFORMATIVES])
    }
}

/// The performatives' names, by code.
pub const PERFORMATIVE_NAMES: [&str; PERFORMATIVES] = [
    "request",
    "inform",
    "query_if",
    "query_ref",
    "propose",
    "accept_proposal",
    "reject_proposal",
    "agree",
    "refuse",
    "failure",
    "not_understood",
    "cfp",
    "cancel",
    "confirm",
    "disconfirm",
    "inform_if",
    "inform_ref",
    "propagate",
    "proxy",
    "request_when",
    "request_whenever",
    "subscribe",
];

const FIPA_NAMES: [&str; PERFORMATIVES] = [
    "request",
    "inform",
    "query-if",
    "query-ref",
    "propose",
    "accept-proposal",
    "reject-proposal",
    "agree",
    "refuse",
    "failure",
    "not-understood",
    "cfp",
    "cancel",
    "confirm",
    "disconfirm",
    "inform-if",
    "inform-ref",
    "propagate",
    "proxy",
    "request-when",
    "request-whenever",
    "subscribe",
];

/// The interaction protocol a message belongs to: none, one of FIPA's, or
/// a short name of the agents' own (1 to 32 bytes of `[a-z0-9._-]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocol {
    len: u8,
    bytes: [u8; PROTOCOL_BYTES_MAX],
}

impl Protocol {
    pub const NONE: Protocol = Protocol { len: 0, bytes: [0; PROTOCOL_BYTES_MAX] };
    pub const FIPA_REQUEST: Protocol = Protocol::known("fipa-request");
    pub const FIPA_QUERY: Protocol = Protocol::known("fipa-query");
    pub const FIPA_CONTRACT_NET: Protocol = Protocol::known("fipa-contract-net");
    pub const FIPA_SUBSCRIBE: Protocol = Protocol::known("fipa-subscribe");
    pub const FIPA_REQUEST_WHEN: Protocol = Protocol::known("fipa-request-when");

    const fn known(name: &str) -> Protocol {
        let b = name.as_bytes();
        assert!(b.len() <= PROTOCOL_BYTES_MAX);
        let mut bytes = [0u8; PROTOCOL_BYTES_MAX];
        let mut i = 0;
        while i < b.len() {
            bytes[i] = b[i];
            i += 1;
        }
        Protocol { len: b.len() as u8, bytes }
    }

    /// A protocol by name; empty is none.
    pub fn new(name: &[u8]) -> Result<Protocol, EnvelopeError> {
        if name.len() > PROTOCOL_BYTES_MAX || !name.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')) {
            return Err(EnvelopeError::Invalid("bad protocol name"));
        }
        let mut p = Protocol::NONE;
        p.bytes[..name.len()].copy_from_slice(name);
        p.len = name.len() as u8;
        Ok(p)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub fn is_none(&self) -> bool {
        self.len == 0
    }
}

impl Default for Protocol {
    fn default() -> Protocol {
        Protocol::NONE
    }
}

impl core::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Protocol({:?})", self.as_str())
    }
}

/// W3C trace context: the trace a message belongs to and the span that
/// sent it. All zeros: none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub parent_span_id: [u8; 8],
}

impl TraceContext {
    pub fn is_none(&self) -> bool {
        self.trace_id == [0; 16]
    }
}

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

/// The separator of a keyed address: `TYPE/KEY`.
pub const KEY_SEPARATOR: u8 = b'/';

/// Splits a keyed address `TYPE/KEY` into its type (an agent name) and its
/// key (1..=[`KEY_BYTES_MAX`] bytes of UTF-8, which may hold `/`); `None`
/// for anything else.
pub fn split_keyed(address: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = address.iter().position(|&b| b == KEY_SEPARATOR)?;
    let (name, key) = (&address[..at], &address[at + 1..]);
    (is_agent_name(name) && !key.is_empty() && key.len() <= KEY_BYTES_MAX && core::str::from_utf8(key).is_ok()).then_some((name, key))
}

/// Is `name` a valid sender or receiver: an agent's, a keyed address, or
/// the runtime's?
pub fn is_endpoint_name(name: &[u8]) -> bool {
    is_agent_name(name) || is_runtime_name(name) || split_keyed(name).is_some()
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
            assert_eq!(Performative::from_name(p.fipa_name()), Some(*p));
        }
        assert_eq!(Performative::from_code(22), None);
        assert_eq!(Performative::Failure.name(), "failure");
        assert_eq!(Performative::from_name("accept-proposal"), Some(Performative::AcceptProposal));
        assert_eq!(Performative::Cfp.code(), 11, "version 1's codes stay, the new ones follow");
        assert_eq!(Performative::Subscribe.code(), 21);
    }

    #[test]
    fn protocols_are_short_names() {
        assert_eq!(Protocol::FIPA_CONTRACT_NET.as_str(), "fipa-contract-net");
        assert_eq!(Protocol::new(b"fipa-contract-net").unwrap(), Protocol::FIPA_CONTRACT_NET);
        assert!(Protocol::new(b"").unwrap().is_none());
        assert!(Protocol::new(b"Bad Name").is_err());
        assert!(Protocol::new(&[b'a'; 33]).is_err());
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
        assert_eq!(split_keyed(b"kv/user/42"), Some((&b"kv"[..], &b"user/42"[..])), "a key may hold the separator");
        assert_eq!(split_keyed("kv/é".as_bytes()), Some((&b"kv"[..], "é".as_bytes())));
        assert!(split_keyed(b"kv/").is_none() && split_keyed(b"kv").is_none() && split_keyed(b"KV/x").is_none() && split_keyed(b"kv/\xff").is_none());
        assert!(split_keyed(&[b"kv/".as_slice(), &[b'k'; KEY_BYTES_MAX]].concat()).is_some());
        assert!(split_keyed(&[b"kv/".as_slice(), &[b'k'; KEY_BYTES_MAX + 1]].concat()).is_none());
        assert!(is_endpoint_name(b"kv/x") && !is_endpoint_name(b"kv/"));
    }
}
