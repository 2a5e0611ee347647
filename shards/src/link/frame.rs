//! Bytes on a link: the handshake, the frames, and the runtime names that
//! change as a message crosses nodes.
//!
//! Rules:
//! 1. After the handshake, a link carries frames: a little-endian `u32`
//!    length, then one ABI v1 envelope (the framing of docs/WIRE.md). A
//!    length over [`ENVELOPE_BYTES_MAX`] or an envelope that does not decode
//!    is malformed: that connection closes, no other.
//! 2. Handshake (auth rule 2): the client sends `HELLO` (magic, its node
//!    name, a nonce); the server answers with its name, its nonce and its
//!    proof; the client sends its proof. Each side checks the other's proof
//!    before it trusts a byte more.
//! 3. A runtime sender (`@api/7`) crossing from node A becomes
//!    `@node/<tag of A>/api/7` on arrival, so a reply finds its way back;
//!    on A, a receiver `@node/<tag of A>/api/7` becomes `@api/7` again.
//! 4. The receiving side acknowledges: after the frames of each read are in
//!    its shard, it writes the count of frames taken on this connection so
//!    far, a little-endian `u64` ([`ACK_BYTES`]), back on the same
//!    connection. The sender keeps each frame until it is acknowledged.

use caxton_cluster::auth::{NONCE_BYTES, TAG_BYTES};
use caxton_cluster::identity::node_tag;

use crate::envelope::{EnvelopeError, Message};
use crate::limits::{ENVELOPE_BYTES_MAX, NAME_BYTES_MAX, RUNTIME_NAME_PREFIX};

/// First bytes of every handshake message.
pub const LINK_MAGIC: &[u8; 4] = b"CXL1";
/// Bytes of an acknowledgement (rule 4).
pub const ACK_BYTES: usize = 8;
/// Bytes of a frame's length prefix.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// Prefix of node-qualified runtime names (rule 3).
pub const NODE_NAME_PREFIX: &str = "@node/";

/// The client's opening: magic, name, nonce.
pub fn encode_hello(name: &str, nonce: &[u8; NONCE_BYTES]) -> Vec<u8> {
    assert!(name.len() <= u8::MAX as usize);
    let mut b = Vec::with_capacity(4 + 1 + name.len() + NONCE_BYTES);
    b.extend_from_slice(LINK_MAGIC);
    b.push(name.len() as u8);
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(nonce);
    b
}

/// The server's answer: magic, name, nonce, proof.
pub fn encode_challenge(name: &str, nonce: &[u8; NONCE_BYTES], proof: &[u8; TAG_BYTES]) -> Vec<u8> {
    let mut b = encode_hello(name, nonce);
    b.extend_from_slice(proof);
    b
}

/// Reads a hello's or a challenge's fixed head: magic and name length.
pub fn decode_head(head: &[u8; 5]) -> Result<usize, &'static str> {
    if &head[..4] != LINK_MAGIC {
        return Err("not a caxton link (bad magic)");
    }
    Ok(head[4] as usize)
}

/// Appends one frame for `message` (rule 1).
pub fn push_frame(buf: &mut Vec<u8>, message: &Message) {
    let bytes = message.as_bytes();
    debug_assert!(bytes.len() <= ENVELOPE_BYTES_MAX);
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Takes whole frames from the front of `buf`; leaves a partial one.
/// Returns the envelopes, or the first malformed one's error (rule 1).
pub fn take_frames(buf: &mut Vec<u8>, out: &mut Vec<Message>) -> Result<(), EnvelopeError> {
    let mut at = 0;
    while buf.len() - at >= FRAME_PREFIX_BYTES {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        if len > ENVELOPE_BYTES_MAX {
            return Err(EnvelopeError::TooLarge);
        }
        if buf.len() - at - FRAME_PREFIX_BYTES < len {
            break;
        }
        let start = at + FRAME_PREFIX_BYTES;
        out.push(Message::decode(buf[start..start + len].to_vec())?);
        at = start + len;
    }
    buf.drain(..at);
    Ok(())
}

/// `@node/<tag>/` for a node name.
pub fn node_prefix(node_name: &str) -> String {
    format!("{NODE_NAME_PREFIX}{:016x}/", node_tag(node_name))
}

/// The tag in a node-qualified runtime name, if it is one.
pub fn tag_of(receiver: &[u8]) -> Option<u64> {
    let rest = receiver.strip_prefix(NODE_NAME_PREFIX.as_bytes())?;
    let hex = std::str::from_utf8(rest.get(..16)?).ok()?;
    (rest.get(16) == Some(&b'/')).then_some(())?;
    u64::from_str_radix(hex, 16).ok()
}

/// Rule 3, on arrival from node `from` at node `here` (`here_prefix` is
/// `node_prefix(here)`). `Ok(None)`: nothing to rewrite.
pub fn rewrite_on_arrival(message: &Message, from_prefix: &str, here_prefix: &str) -> Result<Option<Message>, EnvelopeError> {
    let sender = message.sender();
    let receiver = message.receiver();
    let qualify = sender.first() == Some(&RUNTIME_NAME_PREFIX) && !sender.starts_with(NODE_NAME_PREFIX.as_bytes());
    let unqualify = receiver.starts_with(here_prefix.as_bytes());
    if !qualify && !unqualify {
        return Ok(None);
    }
    let new_sender: Vec<u8> = if qualify {
        let mut s = from_prefix.as_bytes().to_vec();
        s.extend_from_slice(&sender[1..]);
        if s.len() > NAME_BYTES_MAX {
            sender.to_vec() // too long to qualify: a reply to it stays on this node
        } else {
            s
        }
    } else {
        sender.to_vec()
    };
    let new_receiver: Vec<u8> = if unqualify {
        let mut r = vec![RUNTIME_NAME_PREFIX];
        r.extend_from_slice(&receiver[here_prefix.len()..]);
        r
    } else {
        receiver.to_vec()
    };
    Message::encode(&message.header(), &new_sender, &new_receiver, message.content()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Header;

    fn msg(sender: &str, receiver: &str, content: &[u8]) -> Message {
        Message::encode(&Header { message_id: 9, conversation_id: 4, ..Default::default() }, sender.as_bytes(), receiver.as_bytes(), content).unwrap()
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let ms = [msg("a", "b", b"one"), msg("@api/1", "c", &[7u8; 300]), msg("", "d", b"")];
        let mut wire = Vec::new();
        for m in &ms {
            push_frame(&mut wire, m);
        }
        for cut in 0..wire.len() {
            let mut buf = wire[..cut].to_vec();
            let mut out = Vec::new();
            take_frames(&mut buf, &mut out).unwrap();
            buf.extend_from_slice(&wire[cut..]);
            take_frames(&mut buf, &mut out).unwrap();
            assert!(buf.is_empty());
            assert_eq!(out.iter().map(|m| m.as_bytes()).collect::<Vec<_>>(), ms.iter().map(|m| m.as_bytes()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn oversized_and_garbled_frames_are_errors() {
        let mut buf = ((ENVELOPE_BYTES_MAX + 1) as u32).to_le_bytes().to_vec();
        assert!(take_frames(&mut buf, &mut Vec::new()).is_err());
        let mut buf = 10u32.to_le_bytes().to_vec();
        buf.extend_from_slice(&[0xff; 10]);
        assert!(take_frames(&mut buf, &mut Vec::new()).is_err());
    }

    #[test]
    fn runtime_names_are_qualified_on_the_way_out_and_restored_on_the_way_back() {
        let (a, b) = (node_prefix("127.0.0.1:7000"), node_prefix("127.0.0.2:7000"));
        let request = msg("@api/7", "echo", b"hi");
        let arrived = rewrite_on_arrival(&request, &a, &b).unwrap().unwrap();
        assert_eq!(arrived.sender(), format!("{a}api/7").as_bytes());
        assert_eq!(tag_of(arrived.sender()), Some(node_tag("127.0.0.1:7000")));
        assert_eq!(arrived.content(), b"hi");
        let reply = msg("echo", std::str::from_utf8(arrived.sender()).unwrap(), b"hi back");
        assert!(rewrite_on_arrival(&reply, &b, &b).unwrap().is_none(), "not for node b");
        let home = rewrite_on_arrival(&reply, &b, &a).unwrap().unwrap();
        assert_eq!(home.receiver(), b"@api/7");
        assert_eq!(home.header(), reply.header());
        assert!(rewrite_on_arrival(&msg("x", "y", b""), &a, &b).unwrap().is_none());
        assert_eq!(decode_head(b"CXL1\x03"), Ok(3));
        assert!(decode_head(b"HTTP/").is_err());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(caxton_cluster::fuzz::config(512))]

            /// A link stream of any bytes, cut into reads anywhere: frames or
            /// an error, never a panic; what is left is less than a frame.
            #[test]
            fn any_stream_yields_frames_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..3000), cuts in prop::collection::vec(1usize..500, 1..20)) {
                let mut buf = Vec::new();
                let mut out = Vec::new();
                let mut at = 0;
                for cut in cuts.iter().cycle() {
                    if at >= bytes.len() {
                        break;
                    }
                    let end = (at + cut).min(bytes.len());
                    buf.extend_from_slice(&bytes[at..end]);
                    at = end;
                    if take_frames(&mut buf, &mut out).is_err() {
                        return Ok(());
                    }
                }
                prop_assert!(buf.len() < FRAME_PREFIX_BYTES + ENVELOPE_BYTES_MAX);
            }

            /// Handshake heads of any bytes: a name length or a refusal.
            #[test]
            fn any_head_is_read_or_refused(head in any::<[u8; 5]>()) {
                match decode_head(&head) {
                    Ok(len) => prop_assert!(head.starts_with(LINK_MAGIC) && len == head[4] as usize),
                    Err(_) => prop_assert!(!head.starts_with(LINK_MAGIC)),
                }
            }

            /// Runtime names crossing nodes: any sender and receiver, any
            /// node names; a rewrite keeps every other field.
            #[test]
            fn rewriting_names_keeps_the_rest(sender in "@[a-z0-9/]{1,63}", receiver in "(@node/[0-9a-f]{16}/)?[a-z]{1,20}", a in "[0-9.:]{1,21}", b in "[0-9.:]{1,21}") {
                let m = Message::encode(&Header { message_id: 5, conversation_id: 6, reply_with: 7, in_reply_to: 8, performative: 1 }, sender.as_bytes(), receiver.as_bytes(), b"c").unwrap();
                if let Ok(Some(r)) = rewrite_on_arrival(&m, &node_prefix(&a), &node_prefix(&b)) {
                    prop_assert_eq!((r.header(), r.content()), (m.header(), m.content()));
                }
                let _ = tag_of(receiver.as_bytes());
            }
        }
    }
}
