//! Messages: an owned, validated envelope of ABI version 2, as the runtime
//! moves it between mailboxes, shards and nodes. The format itself (header,
//! names, limits, and version 1 and the translation to it) is
//! `caxton_abi`'s, shared with agents and clients; its table is in
//! `caxton_abi::envelope`.
//!
//! Rules:
//! 1. A [`Message`] always holds a valid version 2 encoding: every
//!    constructor checks it (and turns version 1 into version 2), so routing
//!    code reads fields without checking again.
//! 2. The receiver is never empty; the sender may be empty only in an envelope
//!    an agent hands to `send`, where the host overwrites it.

use caxton_abi::failure::{FailureReason, NOTICE_SENDER};

use crate::limits::{CONTENT_BYTES_MAX, ENVELOPE_BYTES_MAX, ENVELOPE_HEADER_BYTES};

pub use caxton_abi::envelope::{check_fields, write_header};
pub use caxton_abi::{
    decode_header, is_agent_name, is_endpoint_name, is_runtime_name, EnvelopeError, Header, Lengths, Performative, Protocol, TraceContext, VERSION,
};

/// FIPA performatives, in ABI order (`caxton_abi::PERFORMATIVE_NAMES`).
pub const PERFORMATIVES: [&str; caxton_abi::PERFORMATIVES] = caxton_abi::PERFORMATIVE_NAMES;

pub fn performative_code(name: &str) -> Option<u8> {
    Performative::from_name(name).map(Performative::code)
}

pub fn performative_name(code: u8) -> &'static str {
    Performative::from_code(code).map_or("unknown", Performative::name)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Offsets of version 2's variable-length fields' lengths.
const SENDER_LEN_AT: usize = 68;
const RECEIVER_LEN_AT: usize = 69;
const PROTOCOL_LEN_AT: usize = 70;

/// One encoded, validated envelope. See rule 1.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    buf: Vec<u8>,
    /// When the message was sent (monotonic ns, [`crate::clock::now_ns`]):
    /// routing latency is measured from here. Not part of the encoding.
    sent_ns: u64,
    path: RoutePath,
}

/// How a message reached its shard (for the routing histograms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutePath {
    /// Sent by an agent on the same shard.
    Local,
    /// Crossed from another shard.
    Remote,
    /// Came from another node, over a link.
    Node,
    /// Came from the REST API.
    Api,
}

impl RoutePath {
    /// Its label in metrics and traces.
    pub fn name(self) -> &'static str {
        match self {
            RoutePath::Local => "local",
            RoutePath::Remote => "remote",
            RoutePath::Node => "node",
            RoutePath::Api => "api",
        }
    }
}

/// A message's buffer goes back to the pool of the thread dropping it
/// (`buffer_pool`).
impl Drop for Message {
    fn drop(&mut self) {
        crate::buffer_pool::give(std::mem::take(&mut self.buf));
    }
}

impl Message {
    fn new(buf: Vec<u8>) -> Message {
        Message { buf, sent_ns: crate::clock::now_ns(), path: RoutePath::Local }
    }

    /// Encodes a message. Names must be valid endpoint names (the sender may
    /// be empty) and the content within [`CONTENT_BYTES_MAX`].
    pub fn encode(header: &Header, sender: &[u8], receiver: &[u8], content: &[u8]) -> Result<Message, EnvelopeError> {
        let lengths = check_fields(header, sender, receiver, content.len())?;
        let mut buf = crate::buffer_pool::take(lengths.total());
        let written = caxton_abi::encode_into(&mut buf, header, sender, receiver, content)?;
        debug_assert_eq!(written, buf.len());
        Ok(Message::new(buf))
    }

    /// Builds the message an agent asked to send: header and receiver from its
    /// envelope, `sender` and `message_id` from the host, content read by
    /// `read_content` straight into the new buffer (one copy, no staging).
    pub fn encode_from_agent(
        header: &Header,
        sender: &[u8],
        receiver: &[u8],
        content_len: usize,
        read_content: impl FnOnce(&mut [u8]) -> Result<(), EnvelopeError>,
    ) -> Result<Message, EnvelopeError> {
        debug_assert!(is_agent_name(sender));
        if content_len > CONTENT_BYTES_MAX {
            return Err(EnvelopeError::TooLarge);
        }
        if !is_endpoint_name(receiver) {
            return Err(EnvelopeError::Invalid("bad receiver name"));
        }
        let protocol = header.protocol.as_bytes();
        let lengths = Lengths { sender: sender.len(), receiver: receiver.len(), protocol: protocol.len(), content: content_len };
        let mut buf = crate::buffer_pool::take(lengths.total());
        write_header(&mut buf, header, lengths);
        let mut at = ENVELOPE_HEADER_BYTES;
        for field in [sender, receiver, protocol] {
            buf[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        read_content(&mut buf[at..])?;
        Ok(Message::new(buf))
    }

    /// Decodes and validates bytes received from outside (tests, the wire,
    /// REST): version 2, or version 1 turned into version 2 (rule 1).
    pub fn decode(buf: Vec<u8>) -> Result<Message, EnvelopeError> {
        const { assert!(ENVELOPE_BYTES_MAX == caxton_abi::ENVELOPE_BYTES_MAX) };
        if buf.first() == Some(&caxton_abi::v1::VERSION) {
            let mut up = vec![0u8; caxton_abi::v1::upgraded_len(buf.len())];
            let n = caxton_abi::v1::upgrade_into(&buf, &mut up)?;
            debug_assert_eq!(n, up.len());
            return Ok(Message::new(up));
        }
        caxton_abi::Envelope::parse(&buf)?;
        Ok(Message::new(buf))
    }

    /// The failure notice for this message, sent from `@node` to its sender,
    /// if it asked for a reply (a non-zero `reply_with`) and is not itself
    /// from `@node`: a notice never causes a notice.
    pub fn failure_notice(&self, reason: FailureReason) -> Option<Message> {
        if self.reply_with() == 0 || self.sender().is_empty() || self.sender() == NOTICE_SENDER.as_bytes() {
            return None;
        }
        let header = Header {
            performative: Performative::Failure.code(),
            conversation_id: self.conversation_id(),
            in_reply_to: self.reply_with(),
            trace: self.trace(),
            protocol: self.protocol(),
            ..Header::default()
        };
        let notice = Message::encode(&header, NOTICE_SENDER.as_bytes(), self.sender(), reason.as_str().as_bytes()).ok()?;
        debug_assert_eq!(notice.reply_with(), 0, "rule: no notice about a notice");
        Some(notice)
    }

    /// Sets the id (the runtime's messages, made before their shard
    /// numbers them).
    pub fn set_message_id(&mut self, id: u64) {
        self.buf[4..12].copy_from_slice(&id.to_le_bytes());
    }

    pub fn sent_ns(&self) -> u64 {
        self.sent_ns
    }

    pub fn path(&self) -> RoutePath {
        self.path
    }

    pub fn set_path(&mut self, path: RoutePath) {
        self.path = path;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn header(&self) -> Header {
        Header {
            performative: self.buf[1],
            message_id: self.message_id(),
            conversation_id: self.conversation_id(),
            reply_with: self.reply_with(),
            in_reply_to: self.in_reply_to(),
            reply_by: self.reply_by(),
            trace: self.trace(),
            protocol: self.protocol(),
        }
    }

    pub fn performative(&self) -> u8 {
        self.buf[1]
    }

    pub fn message_id(&self) -> u64 {
        read_u64(&self.buf, 4)
    }

    pub fn conversation_id(&self) -> u64 {
        read_u64(&self.buf, 12)
    }

    pub fn reply_with(&self) -> u64 {
        read_u64(&self.buf, 20)
    }

    pub fn in_reply_to(&self) -> u64 {
        read_u64(&self.buf, 28)
    }

    /// The deadline, microseconds since the Unix epoch (0: none).
    pub fn reply_by(&self) -> u64 {
        read_u64(&self.buf, 36)
    }

    pub fn trace(&self) -> TraceContext {
        let mut t = TraceContext::default();
        t.trace_id.copy_from_slice(&self.buf[44..60]);
        t.parent_span_id.copy_from_slice(&self.buf[60..68]);
        t
    }

    /// Sets the trace context (a handler's sends inherit the trace of the
    /// message being handled).
    pub fn set_trace(&mut self, trace: &TraceContext) {
        self.buf[44..60].copy_from_slice(&trace.trace_id);
        self.buf[60..68].copy_from_slice(&trace.parent_span_id);
    }

    pub fn protocol(&self) -> Protocol {
        let at = ENVELOPE_HEADER_BYTES + self.buf[SENDER_LEN_AT] as usize + self.buf[RECEIVER_LEN_AT] as usize;
        Protocol::new(&self.buf[at..at + self.buf[PROTOCOL_LEN_AT] as usize]).expect("rule 1")
    }

    pub fn sender(&self) -> &[u8] {
        &self.buf[ENVELOPE_HEADER_BYTES..ENVELOPE_HEADER_BYTES + self.buf[SENDER_LEN_AT] as usize]
    }

    pub fn receiver(&self) -> &[u8] {
        let start = ENVELOPE_HEADER_BYTES + self.buf[SENDER_LEN_AT] as usize;
        &self.buf[start..start + self.buf[RECEIVER_LEN_AT] as usize]
    }

    pub fn content(&self) -> &[u8] {
        &self.buf[ENVELOPE_HEADER_BYTES + self.buf[SENDER_LEN_AT] as usize + self.buf[RECEIVER_LEN_AT] as usize + self.buf[PROTOCOL_LEN_AT] as usize..]
    }

    /// Writes the version 1 twin of this message into `out` (reused), for
    /// a version 1 agent or client; `Err` if version 1 cannot say it.
    pub fn downgrade_into(&self, out: &mut Vec<u8>) -> Result<(), caxton_abi::v1::NotInV1> {
        let e = caxton_abi::Envelope::read_delivered(&self.buf).expect("rule 1");
        out.clear();
        out.resize(caxton_abi::v1::downgraded_len(&e), 0);
        caxton_abi::v1::downgrade_into(&e, out).map(drop)
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.message_id())
            .field("performative", &performative_name(self.performative()))
            .field("sender", &String::from_utf8_lossy(self.sender()))
            .field("receiver", &String::from_utf8_lossy(self.receiver()))
            .field("content_len", &self.content().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            performative: 3,
            message_id: 7,
            conversation_id: 9,
            reply_with: 11,
            in_reply_to: 13,
            reply_by: 17,
            trace: TraceContext { trace_id: [5; 16], parent_span_id: [6; 8] },
            protocol: Protocol::FIPA_QUERY,
        }
    }

    #[test]
    fn encode_then_decode_round_trips_every_field() {
        let m = Message::encode(&header(), b"alice", b"bob.2", b"hello").unwrap();
        assert_eq!(m.len(), 76 + 5 + 5 + 10 + 5);
        let d = Message::decode(m.as_bytes().to_vec()).unwrap();
        assert_eq!(d.header(), header());
        assert_eq!(d.sender(), b"alice");
        assert_eq!(d.receiver(), b"bob.2");
        assert_eq!(d.content(), b"hello");
    }

    #[test]
    fn layout_matches_the_abi_table() {
        let m = Message::encode(&header(), b"a", b"bc", b"xyz").unwrap();
        let b = m.as_bytes();
        assert_eq!((b[0], b[1]), (2, 3));
        assert_eq!(&b[4..12], &7u64.to_le_bytes());
        assert_eq!(&b[28..36], &13u64.to_le_bytes());
        assert_eq!(&b[36..44], &17u64.to_le_bytes());
        assert_eq!((b[68], b[69], b[70]), (1, 2, 10));
        assert_eq!(&b[72..76], &3u32.to_le_bytes());
        assert_eq!(&b[76..], b"abcfipa-queryxyz");
        assert_eq!(m.protocol(), Protocol::FIPA_QUERY);
        assert_eq!(m.trace(), header().trace);
    }

    #[test]
    fn version_1_comes_in_as_version_2_and_goes_out_as_itself() {
        let v2 = Message::encode(&Header { reply_by: 0, trace: TraceContext::default(), protocol: Protocol::NONE, ..header() }, b"a", b"b", b"c").unwrap();
        let mut v1 = Vec::new();
        v2.downgrade_into(&mut v1).unwrap();
        assert_eq!((v1[0], v1.len()), (1, 44 + 3));
        assert_eq!(Message::decode(v1).unwrap().as_bytes(), v2.as_bytes());
        let cfp = Message::encode(&Header { performative: Performative::Cfp.code(), ..header() }, b"a", b"b", b"c").unwrap();
        assert!(cfp.downgrade_into(&mut Vec::new()).is_err(), "version 1 has no cfp");
    }

    #[test]
    fn a_failure_notice_answers_a_request_once_and_never_a_notice() {
        let request = Message::encode(&header(), b"alice", b"bob", b"do it").unwrap();
        let notice = request.failure_notice(FailureReason::CrashedHandler).unwrap();
        assert_eq!((notice.sender(), notice.receiver(), notice.content()), (&b"@node"[..], &b"alice"[..], &b"crashed_handler"[..]));
        assert_eq!((notice.performative(), notice.in_reply_to(), notice.conversation_id(), notice.reply_with()), (9, 11, 9, 0));
        assert_eq!(notice.trace(), request.trace(), "the notice is in the request's trace");
        assert!(notice.failure_notice(FailureReason::UnknownReceiver).is_none(), "no notice about a notice");
        let fire_and_forget = Message::encode(&Header { reply_with: 0, ..header() }, b"alice", b"bob", b"x").unwrap();
        assert!(fire_and_forget.failure_notice(FailureReason::UnknownReceiver).is_none(), "nobody asked for a reply");
    }

    #[test]
    fn decode_refuses_malformed_envelopes() {
        let good = Message::encode(&header(), b"a", b"b", b"c").unwrap().into_bytes();
        let mut cases: Vec<(Vec<u8>, EnvelopeError)> = Vec::new();
        cases.push((good[..40].to_vec(), EnvelopeError::Invalid("shorter than the header")));
        let mut v = good.clone();
        v[0] = 3;
        cases.push((v, EnvelopeError::Invalid("unsupported version")));
        let mut v = good.clone();
        v[1] = 22;
        cases.push((v, EnvelopeError::Invalid("unknown performative")));
        let mut v = good.clone();
        v[2] = 1;
        cases.push((v, EnvelopeError::Invalid("flags and reserved bytes must be 0")));
        let mut v = good.clone();
        v.push(0);
        cases.push((v, EnvelopeError::Invalid("lengths do not add up to the envelope's size")));
        let mut v = good.clone();
        v[69] = 0;
        cases.push((v, EnvelopeError::Invalid("empty receiver")));
        let mut v = good.clone();
        v[76 + 1] = b'A';
        cases.push((v, EnvelopeError::Invalid("bad name")));
        let mut v = good.clone();
        v[72..76].copy_from_slice(&((CONTENT_BYTES_MAX + 1) as u32).to_le_bytes());
        cases.push((v, EnvelopeError::TooLarge));
        for (bytes, want) in cases {
            assert_eq!(Message::decode(bytes).unwrap_err(), want);
        }
    }

    #[test]
    fn encode_refuses_oversize_content() {
        let big = vec![0u8; CONTENT_BYTES_MAX + 1];
        assert_eq!(Message::encode(&header(), b"a", b"b", &big).unwrap_err(), EnvelopeError::TooLarge);
        let max = vec![0u8; CONTENT_BYTES_MAX];
        assert!(Message::encode(&header(), b"a", b"b", &max).is_ok());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof!["[a-z0-9._-]{1,64}", "@[a-z0-9._/-]{1,63}"].prop_map(String::into_bytes)
        }

        fn message() -> impl Strategy<Value = (Header, Vec<u8>, Vec<u8>, Vec<u8>)> {
            let protocol = prop_oneof![Just(Protocol::NONE), "[a-z0-9._-]{1,32}".prop_map(|p| Protocol::new(p.as_bytes()).unwrap())];
            let trace = (any::<[u8; 16]>(), any::<[u8; 8]>()).prop_map(|(trace_id, parent_span_id)| TraceContext { trace_id, parent_span_id });
            let header = ((0u8..22, any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()), (any::<u64>(), trace, protocol)).prop_map(
                |((performative, message_id, conversation_id, reply_with, in_reply_to), (reply_by, trace, protocol))| Header {
                    performative,
                    message_id,
                    conversation_id,
                    reply_with,
                    in_reply_to,
                    reply_by,
                    trace,
                    protocol,
                },
            );
            (header, prop_oneof![Just(Vec::new()), name()], name(), prop::collection::vec(any::<u8>(), 0..600))
        }

        proptest! {
            #![proptest_config(caxton_cluster::fuzz::config(1024))]

            /// Oracle: what encodes decodes to the same fields.
            #[test]
            fn encode_then_decode_is_the_identity((header, sender, receiver, content) in message()) {
                let m = Message::encode(&header, &sender, &receiver, &content).unwrap();
                let d = Message::decode(m.as_bytes().to_vec()).unwrap();
                prop_assert_eq!((d.header(), d.sender(), d.receiver(), d.content()), (header, &sender[..], &receiver[..], &content[..]));
            }

            /// Any bytes: a valid message or an error, never a panic; what
            /// decodes (as version 2) re-encodes to the same bytes.
            #[test]
            fn any_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                if let (Ok(m), Some(2)) = (Message::decode(bytes.clone()), bytes.first().copied()) {
                    let again = Message::encode(&m.header(), m.sender(), m.receiver(), m.content()).unwrap();
                    prop_assert_eq!(again.as_bytes(), &bytes[..]);
                }
            }

            /// A valid envelope with one byte changed: still valid and
            /// self-consistent, or refused.
            #[test]
            fn flipped_bytes_are_caught_or_consistent((header, sender, receiver, content) in message(), at in any::<prop::sample::Index>(), to in any::<u8>()) {
                let mut bytes = Message::encode(&header, &sender, &receiver, &content).unwrap().into_bytes();
                let i = at.index(bytes.len());
                bytes[i] = to;
                if let Ok(m) = Message::decode(bytes) {
                    prop_assert!(is_endpoint_name(m.receiver()));
                    prop_assert_eq!(m.len(), ENVELOPE_HEADER_BYTES + m.sender().len() + m.receiver().len() + m.protocol().as_bytes().len() + m.content().len());
                }
            }
        }
    }
}
