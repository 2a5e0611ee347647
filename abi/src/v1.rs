//! Version 1's envelope, and the translation between the versions, so that
//! version 1 agents and clients keep working unchanged.
//!
//! Version 1 has a 44-byte header: version 1, performative (0..=10), flags,
//! message_id, conversation_id, reply_with, in_reply_to (offsets 4 to 35,
//! as in version 2), sender length at 36, receiver length at 37, two
//! reserved bytes, content length at 40; then sender, receiver, content.
//! It has no `reply_by`, trace context or protocol.
//!
//! Rules:
//! 1. Up: every version 1 envelope has a version 2 twin, with no deadline,
//!    no trace and no protocol ([`upgrade_into`]).
//! 2. Down: a version 2 envelope translates when its performative exists
//!    in version 1 (codes 0 to 10); its deadline, trace and protocol are
//!    dropped ([`downgrade_into`]). Any other is [`NotInV1`]: the runtime
//!    does not deliver it to a version 1 agent (it fails it back,
//!    `not_understood`).
//! 3. Both keep names, ids and content byte for byte; down then up gives
//!    back the fields version 1 has.

use crate::envelope::{check_lengths, read_u64, Envelope, EnvelopeError, Header, Lengths};
use crate::{is_endpoint_name, ADDRESS_BYTES_MAX, CONTENT_BYTES_MAX, PERFORMATIVES_V1};

/// Version 1's number (the envelope's first byte).
pub const VERSION: u8 = 1;

/// Size of version 1's fixed header, in bytes.
pub const HEADER_BYTES: usize = 44;

/// How much longer a version 2 envelope is than its version 1 twin with no
/// protocol.
pub const GROWTH_BYTES: usize = crate::HEADER_BYTES - HEADER_BYTES;

/// A version 2 envelope version 1 cannot say (rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotInV1 {
    pub performative: u8,
}

/// Checks a version 1 fixed header; returns it as version 2 has it, and
/// the lengths. `total` is the length claimed for the whole envelope.
pub fn decode_header(head: &[u8; HEADER_BYTES], total: usize) -> Result<(Header, Lengths), EnvelopeError> {
    if head[0] != VERSION {
        return Err(EnvelopeError::Invalid("unsupported version"));
    }
    if head[1] as usize >= PERFORMATIVES_V1 {
        return Err(EnvelopeError::Invalid("unknown performative"));
    }
    if head[2] != 0 || head[3] != 0 || head[38] != 0 || head[39] != 0 {
        return Err(EnvelopeError::Invalid("flags and reserved bytes must be 0"));
    }
    let lengths = Lengths {
        sender: head[36] as usize,
        receiver: head[37] as usize,
        protocol: 0,
        content: u32::from_le_bytes([head[40], head[41], head[42], head[43]]) as usize,
    };
    check_lengths(&lengths, HEADER_BYTES, total)?;
    let header = Header {
        performative: head[1],
        message_id: read_u64(head, 4),
        conversation_id: read_u64(head, 12),
        reply_with: read_u64(head, 20),
        in_reply_to: read_u64(head, 28),
        ..Header::default()
    };
    Ok((header, lengths))
}

/// Checks a whole version 1 envelope; returns its header (as version 2
/// has it) and lengths. Names are checked unless `trusted`.
pub fn parse(bytes: &[u8], trusted: bool) -> Result<(Header, Lengths), EnvelopeError> {
    if bytes.len() > HEADER_BYTES + 2 * ADDRESS_BYTES_MAX + CONTENT_BYTES_MAX {
        return Err(EnvelopeError::TooLarge);
    }
    let head: &[u8; HEADER_BYTES] =
        bytes.get(..HEADER_BYTES).and_then(|h| h.try_into().ok()).ok_or(EnvelopeError::Invalid("shorter than the 44-byte header"))?;
    let (header, lengths) = decode_header(head, bytes.len())?;
    let sender = &bytes[HEADER_BYTES..HEADER_BYTES + lengths.sender];
    let receiver = &bytes[HEADER_BYTES + lengths.sender..HEADER_BYTES + lengths.sender + lengths.receiver];
    if !trusted && (!(sender.is_empty() || is_endpoint_name(sender)) || !is_endpoint_name(receiver)) {
        return Err(EnvelopeError::Invalid("bad name"));
    }
    Ok((header, lengths))
}

/// Bytes the version 2 twin of a version 1 envelope of `v1_len` bytes
/// takes.
pub fn upgraded_len(v1_len: usize) -> usize {
    v1_len + GROWTH_BYTES
}

/// Writes the version 2 twin of a version 1 envelope into `out` (rule 1);
/// returns its length.
pub fn upgrade_into(v1: &[u8], out: &mut [u8]) -> Result<usize, EnvelopeError> {
    let (header, lengths) = parse(v1, false)?;
    let total = lengths.total();
    debug_assert_eq!(total, upgraded_len(v1.len()));
    if out.len() < total {
        return Err(EnvelopeError::Invalid("buffer smaller than the envelope"));
    }
    crate::envelope::write_header(out, &header, lengths);
    out[crate::HEADER_BYTES..total].copy_from_slice(&v1[HEADER_BYTES..]);
    Ok(total)
}

/// Bytes the version 1 twin of `e` takes.
pub fn downgraded_len(e: &Envelope<'_>) -> usize {
    HEADER_BYTES + e.sender().len() + e.receiver().len() + e.content().len()
}

/// Writes the version 1 twin of `e` into `out` (rule 2); returns its
/// length.
pub fn downgrade_into(e: &Envelope<'_>, out: &mut [u8]) -> Result<usize, NotInV1> {
    let h = e.header();
    if h.performative as usize >= PERFORMATIVES_V1 {
        return Err(NotInV1 { performative: h.performative });
    }
    let total = downgraded_len(e);
    assert!(out.len() >= total, "the caller sizes the buffer with downgraded_len");
    out[0] = VERSION;
    out[1] = h.performative;
    out[2..4].fill(0);
    out[4..12].copy_from_slice(&h.message_id.to_le_bytes());
    out[12..20].copy_from_slice(&h.conversation_id.to_le_bytes());
    out[20..28].copy_from_slice(&h.reply_with.to_le_bytes());
    out[28..36].copy_from_slice(&h.in_reply_to.to_le_bytes());
    out[36] = e.sender().len() as u8;
    out[37] = e.receiver().len() as u8;
    out[38..40].fill(0);
    out[40..44].copy_from_slice(&(e.content().len() as u32).to_le_bytes());
    let mut at = HEADER_BYTES;
    for field in [e.sender(), e.receiver(), e.content()] {
        out[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    debug_assert_eq!(at, total);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_into, Performative, Protocol, TraceContext};

    fn v1_bytes(performative: u8, sender: &[u8], receiver: &[u8], content: &[u8]) -> std::vec::Vec<u8> {
        let mut b = std::vec![0u8; HEADER_BYTES];
        b[0] = 1;
        b[1] = performative;
        b[4..12].copy_from_slice(&7u64.to_le_bytes());
        b[12..20].copy_from_slice(&9u64.to_le_bytes());
        b[20..28].copy_from_slice(&11u64.to_le_bytes());
        b[28..36].copy_from_slice(&13u64.to_le_bytes());
        b[36] = sender.len() as u8;
        b[37] = receiver.len() as u8;
        b[40..44].copy_from_slice(&(content.len() as u32).to_le_bytes());
        b.extend_from_slice(sender);
        b.extend_from_slice(receiver);
        b.extend_from_slice(content);
        b
    }

    #[test]
    fn up_then_down_gives_back_version_1_byte_for_byte() {
        let v1 = v1_bytes(3, b"alice", b"bob", b"hello");
        let mut v2 = std::vec![0u8; upgraded_len(v1.len())];
        assert_eq!(upgrade_into(&v1, &mut v2), Ok(v2.len()));
        let e = Envelope::parse(&v2).unwrap();
        let h = e.header();
        assert_eq!((h.performative, h.message_id, h.conversation_id, h.reply_with, h.in_reply_to), (3, 7, 9, 11, 13));
        assert_eq!((h.reply_by, h.trace, h.protocol), (0, TraceContext::default(), Protocol::NONE));
        assert_eq!((e.sender(), e.receiver(), e.content()), (&b"alice"[..], &b"bob"[..], &b"hello"[..]));
        let mut back = std::vec![0u8; downgraded_len(&e)];
        assert_eq!(downgrade_into(&e, &mut back), Ok(v1.len()));
        assert_eq!(back, v1);
    }

    #[test]
    fn down_drops_what_version_1_lacks_and_refuses_new_performatives() {
        let h = Header {
            performative: Performative::Inform.code(),
            reply_by: 5,
            trace: TraceContext { trace_id: [1; 16], parent_span_id: [2; 8] },
            protocol: Protocol::FIPA_REQUEST,
            ..Header::default()
        };
        let mut v2 = [0u8; 200];
        let n = encode_into(&mut v2, &h, b"a", b"b", b"c").unwrap();
        let e = Envelope::parse(&v2[..n]).unwrap();
        let mut v1 = [0u8; 200];
        let m = downgrade_into(&e, &mut v1).unwrap();
        assert_eq!(
            &v1[..m],
            &v1_bytes(1, b"a", b"b", b"c")[..].iter().enumerate().map(|(i, b)| if (4..36).contains(&i) { 0 } else { *b }).collect::<std::vec::Vec<_>>()[..]
        );
        let cfp = Header { performative: Performative::Cfp.code(), ..h };
        let n = encode_into(&mut v2, &cfp, b"a", b"b", b"c").unwrap();
        assert_eq!(downgrade_into(&Envelope::parse(&v2[..n]).unwrap(), &mut v1), Err(NotInV1 { performative: 11 }));
    }

    #[test]
    fn version_1_is_checked_as_strictly_as_before() {
        let good = v1_bytes(0, b"a", b"b", b"c");
        assert!(parse(&good, false).is_ok());
        for (at, to, why) in [
            (0, 2, "unsupported version"),
            (1, 11, "unknown performative"),
            (38, 1, "flags and reserved bytes must be 0"),
            (37, 0, "empty receiver"),
            (45, b'A', "bad name"),
        ] {
            let mut bad = good.clone();
            bad[at] = to;
            assert_eq!(parse(&bad, false).unwrap_err(), EnvelopeError::Invalid(why), "{at}");
        }
        let mut bad = good.clone();
        bad[45] = b'A';
        assert!(parse(&bad, true).is_ok(), "a trusted parse leaves names to the host");
    }
}
