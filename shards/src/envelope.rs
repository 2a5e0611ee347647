//! Messages: an owned, validated envelope of ABI version 1, as the runtime
//! moves it between mailboxes, shards and nodes. The format itself (header,
//! names, limits) is `caxton_abi`'s, shared with agents and clients.
//!
//! Layout, little-endian, a 44-byte header then the variable fields:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version = 1 |
//! | 1 | 1 | performative (0..=10) |
//! | 2 | 2 | flags, 0 |
//! | 4 | 8 | message_id |
//! | 12 | 8 | conversation_id (0 = none) |
//! | 20 | 8 | reply_with (0 = none) |
//! | 28 | 8 | in_reply_to (0 = none) |
//! | 36 | 1 | sender length |
//! | 37 | 1 | receiver length |
//! | 38 | 2 | reserved, 0 |
//! | 40 | 4 | content length |
//! | 44 | … | sender bytes, receiver bytes, content bytes |
//!
//! Rules:
//! 1. A [`Message`] always holds a valid encoding: every constructor checks it,
//!    so routing code reads fields without checking again.
//! 2. The receiver is never empty; the sender may be empty only in an envelope
//!    an agent hands to `send`, where the host overwrites it.

use crate::limits::{CONTENT_BYTES_MAX, ENVELOPE_BYTES_MAX, ENVELOPE_HEADER_BYTES};

pub use caxton_abi::envelope::{check_fields, write_header};
pub use caxton_abi::{decode_header, is_agent_name, is_endpoint_name, is_runtime_name, EnvelopeError, Header, Lengths, Performative, VERSION};

/// FIPA performatives, in ABI order (`caxton_abi::PERFORMATIVE_NAMES`).
pub const PERFORMATIVES: [&str; 11] = caxton_abi::PERFORMATIVE_NAMES;

pub fn performative_code(name: &str) -> Option<u8> {
    Performative::from_name(name).map(Performative::code)
}

pub fn performative_name(code: u8) -> &'static str {
    Performative::from_code(code).map_or("unknown", Performative::name)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

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

impl Message {
    /// Encodes a message. Names must be valid endpoint names (the sender may
    /// be empty) and the content within [`CONTENT_BYTES_MAX`].
    pub fn encode(header: &Header, sender: &[u8], receiver: &[u8], content: &[u8]) -> Result<Message, EnvelopeError> {
        let lengths = check_fields(header, sender, receiver, content.len())?;
        let mut buf = vec![0u8; lengths.total()];
        let written = caxton_abi::encode_into(&mut buf, header, sender, receiver, content)?;
        debug_assert_eq!(written, buf.len());
        Ok(Message { buf, sent_ns: crate::clock::now_ns(), path: RoutePath::Local })
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
        let lengths = Lengths { sender: sender.len(), receiver: receiver.len(), content: content_len };
        let mut buf = vec![0u8; lengths.total()];
        write_header(&mut buf, header, lengths);
        let names_end = ENVELOPE_HEADER_BYTES + sender.len() + receiver.len();
        buf[ENVELOPE_HEADER_BYTES..ENVELOPE_HEADER_BYTES + sender.len()].copy_from_slice(sender);
        buf[ENVELOPE_HEADER_BYTES + sender.len()..names_end].copy_from_slice(receiver);
        read_content(&mut buf[names_end..])?;
        Ok(Message { buf, sent_ns: crate::clock::now_ns(), path: RoutePath::Local })
    }

    /// Decodes and validates bytes received from outside (tests, the wire).
    pub fn decode(buf: Vec<u8>) -> Result<Message, EnvelopeError> {
        const { assert!(ENVELOPE_BYTES_MAX == caxton_abi::ENVELOPE_BYTES_MAX) };
        caxton_abi::Envelope::parse(&buf)?;
        Ok(Message { buf, sent_ns: crate::clock::now_ns(), path: RoutePath::Local })
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

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
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
            conversation_id: read_u64(&self.buf, 12),
            reply_with: read_u64(&self.buf, 20),
            in_reply_to: read_u64(&self.buf, 28),
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

    pub fn in_reply_to(&self) -> u64 {
        read_u64(&self.buf, 28)
    }

    pub fn sender(&self) -> &[u8] {
        &self.buf[ENVELOPE_HEADER_BYTES..ENVELOPE_HEADER_BYTES + self.buf[36] as usize]
    }

    pub fn receiver(&self) -> &[u8] {
        let start = ENVELOPE_HEADER_BYTES + self.buf[36] as usize;
        &self.buf[start..start + self.buf[37] as usize]
    }

    pub fn content(&self) -> &[u8] {
        &self.buf[ENVELOPE_HEADER_BYTES + self.buf[36] as usize + self.buf[37] as usize..]
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
        Header { performative: 3, message_id: 7, conversation_id: 9, reply_with: 11, in_reply_to: 13 }
    }

    #[test]
    fn encode_then_decode_round_trips_every_field() {
        let m = Message::encode(&header(), b"alice", b"bob.2", b"hello").unwrap();
        assert_eq!(m.len(), 44 + 5 + 5 + 5);
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
        assert_eq!(b[0], 1);
        assert_eq!(b[1], 3);
        assert_eq!(&b[4..12], &7u64.to_le_bytes());
        assert_eq!(&b[28..36], &13u64.to_le_bytes());
        assert_eq!((b[36], b[37]), (1, 2));
        assert_eq!(&b[40..44], &3u32.to_le_bytes());
        assert_eq!(&b[44..], b"abcxyz");
    }

    #[test]
    fn decode_refuses_malformed_envelopes() {
        let good = Message::encode(&header(), b"a", b"b", b"c").unwrap().into_bytes();
        let mut cases: Vec<(Vec<u8>, EnvelopeError)> = Vec::new();
        cases.push((good[..40].to_vec(), EnvelopeError::Invalid("shorter than the 44-byte header")));
        let mut v = good.clone();
        v[0] = 2;
        cases.push((v, EnvelopeError::Invalid("unsupported version")));
        let mut v = good.clone();
        v[1] = 11;
        cases.push((v, EnvelopeError::Invalid("unknown performative")));
        let mut v = good.clone();
        v[2] = 1;
        cases.push((v, EnvelopeError::Invalid("flags and reserved bytes must be 0")));
        let mut v = good.clone();
        v.push(0);
        cases.push((v, EnvelopeError::Invalid("lengths do not add up to the envelope's size")));
        let mut v = good.clone();
        v[37] = 0;
        cases.push((v, EnvelopeError::Invalid("empty receiver")));
        let mut v = good.clone();
        v[44 + 1] = b'A';
        cases.push((v, EnvelopeError::Invalid("bad name")));
        let mut v = good.clone();
        v[40..44].copy_from_slice(&((CONTENT_BYTES_MAX + 1) as u32).to_le_bytes());
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
            let header = (0u8..11, any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
                |(performative, message_id, conversation_id, reply_with, in_reply_to)| Header {
                    performative,
                    message_id,
                    conversation_id,
                    reply_with,
                    in_reply_to,
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
            /// decodes re-encodes to the same bytes.
            #[test]
            fn any_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                if let Ok(m) = Message::decode(bytes.clone()) {
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
                    prop_assert_eq!(m.len(), ENVELOPE_HEADER_BYTES + m.sender().len() + m.receiver().len() + m.content().len());
                }
            }
        }
    }
}
