//! Bytes on a link: the handshake and the frames.
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
//! 3. Runtime names are rewritten as they cross nodes (`crate::names`).
//! 4. The receiving side acknowledges: after the frames of each read are in
//!    its shard, it writes the count of frames taken on this connection so
//!    far, a little-endian `u64` ([`ACK_BYTES`]), back on the same
//!    connection. The sender keeps each frame until it is acknowledged.

use caxton_cluster::auth::{NONCE_BYTES, TAG_BYTES};

use crate::envelope::{EnvelopeError, Message};
use crate::limits::ENVELOPE_BYTES_MAX;

/// First bytes of every handshake message.
pub const LINK_MAGIC: &[u8; 4] = b"CXL1";
/// Bytes of an acknowledgement (rule 4).
pub const ACK_BYTES: usize = 8;
/// Bytes of a frame's length prefix.
pub const FRAME_PREFIX_BYTES: usize = 4;

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
        }
    }
}
