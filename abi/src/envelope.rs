//! The envelope: a 44-byte little-endian header, then the sender, the
//! receiver and the content.
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
//! 1. [`Envelope::parse`] and [`decode_header`] accept only what
//!    [`encode_into`] can produce: a known version and performative, zero
//!    flags and reserved bytes, lengths within the limits that add up to
//!    the whole, and valid names (the sender may be empty: the host fills
//!    it in).
//! 2. Encoding writes into the caller's buffer and allocates nothing.
//! 3. An agent may skip what the node checks anyway: [`Envelope::read_delivered`]
//!    and [`encode_unchecked_names`] check the structure (lengths, version,
//!    performative) but not the names' alphabet, which the node checked on
//!    the way in and checks again on the way out. They are never used on
//!    bytes from outside the node.

use crate::{is_endpoint_name, Performative, CONTENT_BYTES_MAX, HEADER_BYTES, NAME_BYTES_MAX, VERSION};

/// Why bytes are not an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Malformed: wrong version, lengths that do not add up, a bad name.
    Invalid(&'static str),
    /// Content or the whole envelope is over its limit.
    TooLarge,
}

impl core::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EnvelopeError::Invalid(why) => write!(f, "invalid envelope: {why}"),
            EnvelopeError::TooLarge => write!(f, "envelope too large (content at most {CONTENT_BYTES_MAX} bytes)"),
        }
    }
}

/// The fixed fields a sender chooses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// A [`Performative`] code.
    pub performative: u8,
    pub message_id: u64,
    pub conversation_id: u64,
    pub reply_with: u64,
    pub in_reply_to: u64,
}

/// Lengths of the variable fields, read from a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lengths {
    pub sender: usize,
    pub receiver: usize,
    pub content: usize,
}

impl Lengths {
    pub fn total(&self) -> usize {
        HEADER_BYTES + self.sender + self.receiver + self.content
    }
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Checks the fixed header (rule 1) and returns the fields and the
/// variable lengths. `total` is the length claimed for the whole envelope.
pub fn decode_header(head: &[u8; HEADER_BYTES], total: usize) -> Result<(Header, Lengths), EnvelopeError> {
    if head[0] != VERSION {
        return Err(EnvelopeError::Invalid("unsupported version"));
    }
    if Performative::from_code(head[1]).is_none() {
        return Err(EnvelopeError::Invalid("unknown performative"));
    }
    if head[2] != 0 || head[3] != 0 || head[38] != 0 || head[39] != 0 {
        return Err(EnvelopeError::Invalid("flags and reserved bytes must be 0"));
    }
    let lengths =
        Lengths { sender: head[36] as usize, receiver: head[37] as usize, content: u32::from_le_bytes([head[40], head[41], head[42], head[43]]) as usize };
    if lengths.content > CONTENT_BYTES_MAX {
        return Err(EnvelopeError::TooLarge);
    }
    if lengths.sender > NAME_BYTES_MAX || lengths.receiver > NAME_BYTES_MAX {
        return Err(EnvelopeError::Invalid("name longer than 64 bytes"));
    }
    if lengths.receiver == 0 {
        return Err(EnvelopeError::Invalid("empty receiver"));
    }
    if lengths.total() != total {
        return Err(EnvelopeError::Invalid("lengths do not add up to the envelope's size"));
    }
    let header = Header {
        performative: head[1],
        message_id: read_u64(head, 4),
        conversation_id: read_u64(head, 12),
        reply_with: read_u64(head, 20),
        in_reply_to: read_u64(head, 28),
    };
    Ok((header, lengths))
}

/// Writes the fixed header into `buf[..HEADER_BYTES]`.
pub fn write_header(buf: &mut [u8], header: &Header, lengths: Lengths) {
    assert!(buf.len() >= HEADER_BYTES);
    buf[0] = VERSION;
    buf[1] = header.performative;
    buf[2..4].fill(0);
    buf[4..12].copy_from_slice(&header.message_id.to_le_bytes());
    buf[12..20].copy_from_slice(&header.conversation_id.to_le_bytes());
    buf[20..28].copy_from_slice(&header.reply_with.to_le_bytes());
    buf[28..36].copy_from_slice(&header.in_reply_to.to_le_bytes());
    buf[36] = lengths.sender as u8;
    buf[37] = lengths.receiver as u8;
    buf[38..40].fill(0);
    buf[40..44].copy_from_slice(&(lengths.content as u32).to_le_bytes());
}

/// Bytes the envelope of these fields takes.
pub fn encoded_len(sender: &[u8], receiver: &[u8], content: &[u8]) -> usize {
    HEADER_BYTES + sender.len() + receiver.len() + content.len()
}

/// Checks the fields of an envelope to be written (rule 1).
pub fn check_fields(header: &Header, sender: &[u8], receiver: &[u8], content_len: usize) -> Result<Lengths, EnvelopeError> {
    if content_len > CONTENT_BYTES_MAX {
        return Err(EnvelopeError::TooLarge);
    }
    if Performative::from_code(header.performative).is_none() {
        return Err(EnvelopeError::Invalid("unknown performative"));
    }
    if !(sender.is_empty() || is_endpoint_name(sender)) || !is_endpoint_name(receiver) {
        return Err(EnvelopeError::Invalid("bad name"));
    }
    Ok(Lengths { sender: sender.len(), receiver: receiver.len(), content: content_len })
}

/// Writes an envelope into `buf` (rule 2); returns the bytes written. The
/// buffer must hold [`encoded_len`] bytes.
pub fn encode_into(buf: &mut [u8], header: &Header, sender: &[u8], receiver: &[u8], content: &[u8]) -> Result<usize, EnvelopeError> {
    let lengths = check_fields(header, sender, receiver, content.len())?;
    let total = lengths.total();
    if buf.len() < total {
        return Err(EnvelopeError::Invalid("buffer smaller than the envelope"));
    }
    write_header(buf, header, lengths);
    let mut at = HEADER_BYTES;
    for field in [sender, receiver, content] {
        buf[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    debug_assert_eq!(at, total);
    Ok(total)
}

/// Writes an envelope into `buf` checking lengths and the performative
/// but not the names' alphabet (rule 3: for agents, whose every send the
/// node checks in full). Returns the bytes written.
pub fn encode_unchecked_names(buf: &mut [u8], header: &Header, sender: &[u8], receiver: &[u8], content: &[u8]) -> Result<usize, EnvelopeError> {
    if content.len() > CONTENT_BYTES_MAX {
        return Err(EnvelopeError::TooLarge);
    }
    if sender.len() > NAME_BYTES_MAX || receiver.len() > NAME_BYTES_MAX || receiver.is_empty() {
        return Err(EnvelopeError::Invalid("bad name"));
    }
    if Performative::from_code(header.performative).is_none() {
        return Err(EnvelopeError::Invalid("unknown performative"));
    }
    let lengths = Lengths { sender: sender.len(), receiver: receiver.len(), content: content.len() };
    let total = lengths.total();
    if buf.len() < total {
        return Err(EnvelopeError::Invalid("buffer smaller than the envelope"));
    }
    write_header(buf, header, lengths);
    buf[HEADER_BYTES..HEADER_BYTES + sender.len()].copy_from_slice(sender);
    buf[HEADER_BYTES + sender.len()..HEADER_BYTES + sender.len() + receiver.len()].copy_from_slice(receiver);
    buf[total - content.len()..total].copy_from_slice(content);
    Ok(total)
}

/// A valid envelope, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    bytes: &'a [u8],
    header: Header,
    lengths: Lengths,
}

impl<'a> Envelope<'a> {
    /// Checks `bytes` is exactly one valid envelope (rule 1).
    pub fn parse(bytes: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        if bytes.len() > crate::ENVELOPE_BYTES_MAX {
            return Err(EnvelopeError::TooLarge);
        }
        let head: &[u8; HEADER_BYTES] =
            bytes.get(..HEADER_BYTES).and_then(|h| h.try_into().ok()).ok_or(EnvelopeError::Invalid("shorter than the 44-byte header"))?;
        let (header, lengths) = decode_header(head, bytes.len())?;
        let e = Envelope { bytes, header, lengths };
        if !(e.sender().is_empty() || is_endpoint_name(e.sender())) || !is_endpoint_name(e.receiver()) {
            return Err(EnvelopeError::Invalid("bad name"));
        }
        Ok(e)
    }

    /// Reads an envelope the node delivered to an agent (rule 3): the
    /// structure is checked, the names are taken as the node checked them.
    /// A name that is not UTF-8 can still not be mistaken for another.
    pub fn read_delivered(bytes: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        let head: &[u8; HEADER_BYTES] =
            bytes.get(..HEADER_BYTES).and_then(|h| h.try_into().ok()).ok_or(EnvelopeError::Invalid("shorter than the 44-byte header"))?;
        let (header, lengths) = decode_header(head, bytes.len())?;
        Ok(Envelope { bytes, header, lengths })
    }

    pub fn header(&self) -> Header {
        self.header
    }

    pub fn performative(&self) -> Performative {
        Performative::from_code(self.header.performative).expect("checked by parse")
    }

    pub fn sender(&self) -> &'a [u8] {
        &self.bytes[HEADER_BYTES..HEADER_BYTES + self.lengths.sender]
    }

    pub fn receiver(&self) -> &'a [u8] {
        let at = HEADER_BYTES + self.lengths.sender;
        &self.bytes[at..at + self.lengths.receiver]
    }

    pub fn content(&self) -> &'a [u8] {
        &self.bytes[HEADER_BYTES + self.lengths.sender + self.lengths.receiver..]
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header { performative: 3, message_id: 7, conversation_id: 9, reply_with: 11, in_reply_to: 13 }
    }

    #[test]
    fn written_envelopes_parse_to_the_same_fields_and_the_abi_layout() {
        let mut buf = [0u8; 64];
        let n = encode_into(&mut buf, &header(), b"a", b"bc", b"xyz").unwrap();
        assert_eq!(n, encoded_len(b"a", b"bc", b"xyz"));
        let b = &buf[..n];
        assert_eq!((b[0], b[1], b[36], b[37]), (1, 3, 1, 2));
        assert_eq!(&b[28..36], &13u64.to_le_bytes());
        assert_eq!(&b[40..44], &3u32.to_le_bytes());
        assert_eq!(&b[44..], b"abcxyz");
        let e = Envelope::parse(b).unwrap();
        assert_eq!((e.header(), e.sender(), e.receiver(), e.content()), (header(), &b"a"[..], &b"bc"[..], &b"xyz"[..]));
        assert_eq!(e.performative(), Performative::QueryRef);
        assert!(encode_into(&mut [0u8; 10], &header(), b"a", b"b", b"").is_err(), "a buffer too small");
        // Rule 3: the light pair writes and reads the same bytes.
        let mut light = [0u8; 64];
        assert_eq!(encode_unchecked_names(&mut light, &header(), b"a", b"bc", b"xyz"), Ok(n));
        assert_eq!(&light[..n], b);
        assert_eq!(Envelope::read_delivered(b).unwrap(), e);
        assert!(encode_unchecked_names(&mut light, &header(), b"", b"", b"").is_err(), "a receiver is needed");
        assert!(Envelope::read_delivered(&b[..n - 1]).is_err(), "lengths must add up");
    }

    #[test]
    fn malformed_envelopes_are_refused_with_why() {
        let mut good = [0u8; 47];
        encode_into(&mut good, &header(), b"a", b"b", b"c").unwrap();
        let mut cases: [([u8; 47], EnvelopeError); 5] = [(good, EnvelopeError::TooLarge); 5];
        cases[0].0[0] = 2;
        cases[0].1 = EnvelopeError::Invalid("unsupported version");
        cases[1].0[1] = 11;
        cases[1].1 = EnvelopeError::Invalid("unknown performative");
        cases[2].0[2] = 1;
        cases[2].1 = EnvelopeError::Invalid("flags and reserved bytes must be 0");
        cases[3].0[37] = 0;
        cases[3].1 = EnvelopeError::Invalid("empty receiver");
        cases[4].0[45] = b'A';
        cases[4].1 = EnvelopeError::Invalid("bad name");
        for (bytes, want) in cases {
            assert_eq!(Envelope::parse(&bytes).unwrap_err(), want);
        }
        assert_eq!(Envelope::parse(&good[..40]).unwrap_err(), EnvelopeError::Invalid("shorter than the 44-byte header"));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2048, rng_seed: proptest::test_runner::RngSeed::Fixed(18), failure_persistence: None, ..ProptestConfig::default() })]

            /// Any bytes: an envelope or an error, never a panic; what
            /// parses writes back to the same bytes.
            #[test]
            fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(e) = Envelope::parse(&bytes) {
                    let mut again = [0u8; 300];
                    let n = encode_into(&mut again, &e.header(), e.sender(), e.receiver(), e.content()).unwrap();
                    prop_assert_eq!(&again[..n], &bytes[..]);
                }
            }
        }
    }
}
