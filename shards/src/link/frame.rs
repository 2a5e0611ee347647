//! Bytes on a link, as the session carries them: frames and acknowledgements.
//!
//! Rules:
//! 1. After the handshake, a link carries frames: a little-endian `u32`
//!    length, then one ABI v1 envelope (the framing of docs/WIRE.md). A
//!    length over [`ENVELOPE_BYTES_MAX`] or an envelope that does not decode
//!    is malformed: that connection closes, no other.
//! 2. The handshake and the records that carry these bytes, encrypted, are
//!    `caxton_cluster::session`'s: this module sees only the plaintext.
//! 3. Runtime names are rewritten as they cross nodes (`crate::names`).
//! 4. The receiving side acknowledges: after the frames of each read are in
//!    its shard, it writes the count of frames taken on this connection so
//!    far, a little-endian `u64` ([`ACK_BYTES`]), back on the same
//!    connection. The sender keeps each frame until it is acknowledged.

use crate::envelope::{EnvelopeError, Message};
use crate::limits::ENVELOPE_BYTES_MAX;

/// Bytes of an acknowledgement (rule 4).
pub const ACK_BYTES: usize = 8;
/// Bytes of a frame's length prefix.
pub const FRAME_PREFIX_BYTES: usize = 4;

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
                for read in caxton_cluster::fuzz::reads(&bytes, &cuts) {
                    buf.extend_from_slice(read);
                    if take_frames(&mut buf, &mut out).is_err() {
                        return Ok(());
                    }
                }
                prop_assert!(buf.len() < FRAME_PREFIX_BYTES + ENVELOPE_BYTES_MAX);
            }
        }
    }
}
