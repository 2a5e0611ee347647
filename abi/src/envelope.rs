//! The envelope of version 2: a 76-byte little-endian header, then the
//! sender, the receiver, the protocol and the content.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version = 2 |
//! | 1 | 1 | performative (0..=21) |
//! | 2 | 2 | flags, 0 |
//! | 4 | 8 | message_id |
//! | 12 | 8 | conversation_id (0 = none) |
//! | 20 | 8 | reply_with (0 = none) |
//! | 28 | 8 | in_reply_to (0 = none) |
//! | 36 | 8 | reply_by, microseconds since the Unix epoch (0 = none) |
//! | 44 | 16 | trace_id (W3C trace context; zeros = none) |
//! | 60 | 8 | parent_span_id |
//! | 68 | 1 | sender length |
//! | 69 | 1 | receiver length |
//! | 70 | 1 | protocol length (0 = none) |
//! | 71 | 1 | reserved, 0 |
//! | 72 | 4 | content length |
//! | 76 | … | sender, receiver, protocol, content |
//!
//! Rules:
//! 1. [`Envelope::parse`] and [`decode_header`] accept only what
//!    [`encode_into`] can produce: version 2, a known performative, zero
//!    flags and reserved bytes, lengths within the limits that add up to
//!    the whole, and valid names (the sender may be empty: the host fills
//!    it in) and protocol.
//! 2. Encoding writes into the caller's buffer and allocates nothing.
//! 3. An agent may skip what the node checks anyway: [`Envelope::read_delivered`]
//!    and [`encode_unchecked_names`] check the structure (lengths, version,
//!    performative) but not the names' alphabet, which the node checked on
//!    the way in and checks again on the way out. They are never used on
//!    bytes from outside the node.

use crate::{is_endpoint_name, Performative, Protocol, TraceContext, ADDRESS_BYTES_MAX, CONTENT_BYTES_MAX, HEADER_BYTES, PROTOCOL_BYTES_MAX, VERSION};

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

/// The fixed fields a sender chooses, and the protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// A [`Performative`] code.
    pub performative: u8,
    pub message_id: u64,
    pub conversation_id: u64,
    pub reply_with: u64,
    pub in_reply_to: u64,
    /// Microseconds since the Unix epoch after which the message is not
    /// delivered but failed back as `expired` (0: no deadline).
    pub reply_by: u64,
    pub trace: TraceContext,
    pub protocol: Protocol,
}

/// Lengths of the variable fields, read from a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lengths {
    pub sender: usize,
    pub receiver: usize,
    pub protocol: usize,
    pub content: usize,
}

impl Lengths {
    pub fn total(&self) -> usize {
        HEADER_BYTES + self.sender + self.receiver + self.protocol + self.content
    }

    /// Where the content starts.
    pub fn content_at(&self) -> usize {
        HEADER_BYTES + self.sender + self.receiver + self.protocol
    }
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Checks the variable lengths a fixed header of `header_bytes` claims
/// against the limits and the whole envelope's `total` (rule 1; version 1
/// has no protocol, so its length is 0 there).
pub(crate) fn check_lengths(lengths: &Lengths, header_bytes: usize, total: usize) -> Result<(), EnvelopeError> {
    if lengths.content > CONTENT_BYTES_MAX {
        return Err(EnvelopeError::TooLarge);
    }
    if lengths.sender > ADDRESS_BYTES_MAX || lengths.receiver > ADDRESS_BYTES_MAX {
        return Err(EnvelopeError::Invalid("address longer than 193 bytes"));
    }
    if lengths.protocol > PROTOCOL_BYTES_MAX {
        return Err(EnvelopeError::Invalid("protocol longer than 32 bytes"));
    }
    if lengths.receiver == 0 {
        return Err(EnvelopeError::Invalid("empty receiver"));
    }
    if header_bytes + lengths.sender + lengths.receiver + lengths.protocol + lengths.content != total {
        return Err(EnvelopeError::Invalid("lengths do not add up to the envelope's size"));
    }
    Ok(())
}

/// Checks the fixed header (rule 1) and returns the fields and the
/// variable lengths. `total` is the length claimed for the whole envelope.
/// The protocol, a variable field, is left at none: [`Envelope`] reads it.
pub fn decode_header(head: &[u8; HEADER_BYTES], total: usize) -> Result<(Header, Lengths), EnvelopeError> {
    if head[0] != VERSION {
        return Err(EnvelopeError::Invalid("unsupported version"));
    }
    if Performative::from_code(head[1]).is_none() {
        return Err(EnvelopeError::Invalid("unknown performative"));
    }
    if head[2] != 0 || head[3] != 0 || head[71] != 0 {
        return Err(EnvelopeError::Invalid("flags and reserved bytes must be 0"));
    }
    let lengths = Lengths {
        sender: head[68] as usize,
        receiver: head[69] as usize,
        protocol: head[70] as usize,
        content: u32::from_le_bytes([head[72], head[73], head[74], head[75]]) as usize,
    };
    check_lengths(&lengths, HEADER_BYTES, total)?;
    let mut trace = TraceContext::default();
    trace.trace_id.copy_from_slice(&head[44..60]);
    trace.parent_span_id.copy_from_slice(&head[60..68]);
    let header = Header {
        performative: head[1],
        message_id: read_u64(head, 4),
        conversation_id: read_u64(head, 12),
        reply_with: read_u64(head, 20),
        in_reply_to: read_u64(head, 28),
        reply_by: read_u64(head, 36),
        trace,
        protocol: Protocol::NONE,
    };
    Ok((header, lengths))
}

/// Writes the fixed header into `buf[..HEADER_BYTES]` (the protocol's
/// length; its bytes are a variable field).
pub fn write_header(buf: &mut [u8], header: &Header, lengths: Lengths) {
    assert!(buf.len() >= HEADER_BYTES);
    assert!(lengths.sender <= ADDRESS_BYTES_MAX && lengths.receiver <= ADDRESS_BYTES_MAX && lengths.protocol <= PROTOCOL_BYTES_MAX);
    buf[0] = VERSION;
    buf[1] = header.performative;
    buf[2..4].fill(0);
    buf[4..12].copy_from_slice(&header.message_id.to_le_bytes());
    buf[12..20].copy_from_slice(&header.conversation_id.to_le_bytes());
    buf[20..28].copy_from_slice(&header.reply_with.to_le_bytes());
    buf[28..36].copy_from_slice(&header.in_reply_to.to_le_bytes());
    buf[36..44].copy_from_slice(&header.reply_by.to_le_bytes());
    buf[44..60].copy_from_slice(&header.trace.trace_id);
    buf[60..68].copy_from_slice(&header.trace.parent_span_id);
    buf[68] = lengths.sender as u8;
    buf[69] = lengths.receiver as u8;
    buf[70] = lengths.protocol as u8;
    buf[71] = 0;
    buf[72..76].copy_from_slice(&(lengths.content as u32).to_le_bytes());
}

/// Bytes the envelope of these fields takes.
pub fn encoded_len(header: &Header, sender: &[u8], receiver: &[u8], content: &[u8]) -> usize {
    HEADER_BYTES + sender.len() + receiver.len() + header.protocol.as_bytes().len() + content.len()
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
    Ok(Lengths { sender: sender.len(), receiver: receiver.len(), protocol: header.protocol.as_bytes().len(), content: content_len })
}

/// Writes the variable fields after the header; returns the total.
fn write_fields(buf: &mut [u8], header: &Header, lengths: Lengths, sender: &[u8], receiver: &[u8], content: &[u8]) -> usize {
    write_header(buf, header, lengths);
    let mut at = HEADER_BYTES;
    for field in [sender, receiver, header.protocol.as_bytes(), content] {
        buf[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    debug_assert_eq!(at, lengths.total());
    at
}

/// Writes an envelope into `buf` (rule 2); returns the bytes written. The
/// buffer must hold [`encoded_len`] bytes.
pub fn encode_into(buf: &mut [u8], header: &Header, sender: &[u8], receiver: &[u8], content: &[u8]) -> Result<usize, EnvelopeError> {
    let lengths = check_fields(header, sender, receiver, content.len())?;
    if buf.len() < lengths.total() {
        return Err(EnvelopeError::Invalid("buffer smaller than the envelope"));
    }
    Ok(write_fields(buf, header, lengths, sender, receiver, content))
}

/// Writes an envelope into `buf` checking lengths and the performative
/// but not the names' alphabet (rule 3: for agents, whose every send the
/// node checks in full). Returns the bytes written.
pub fn encode_unchecked_names(buf: &mut [u8], header: &Header, sender: &[u8], receiver: &[u8], content: &[u8]) -> Result<usize, EnvelopeError> {
    if content.len() > CONTENT_BYTES_MAX {
        return Err(EnvelopeError::TooLarge);
    }
    if sender.len() > ADDRESS_BYTES_MAX || receiver.len() > ADDRESS_BYTES_MAX || receiver.is_empty() {
        return Err(EnvelopeError::Invalid("bad name"));
    }
    if Performative::from_code(header.performative).is_none() {
        return Err(EnvelopeError::Invalid("unknown performative"));
    }
    let lengths = Lengths { sender: sender.len(), receiver: receiver.len(), protocol: header.protocol.as_bytes().len(), content: content.len() };
    if buf.len() < lengths.total() {
        return Err(EnvelopeError::Invalid("buffer smaller than the envelope"));
    }
    Ok(write_fields(buf, header, lengths, sender, receiver, content))
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
        let e = Envelope::read_delivered(bytes)?;
        if !(e.sender().is_empty() || is_endpoint_name(e.sender())) || !is_endpoint_name(e.receiver()) {
            return Err(EnvelopeError::Invalid("bad name"));
        }
        Ok(e)
    }

    /// Reads an envelope the node delivered to an agent (rule 3): the
    /// structure and the protocol are checked, the names are taken as the
    /// node checked them.
    pub fn read_delivered(bytes: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        if bytes.len() > crate::ENVELOPE_BYTES_MAX {
            return Err(EnvelopeError::TooLarge);
        }
        let head: &[u8; HEADER_BYTES] = bytes.get(..HEADER_BYTES).and_then(|h| h.try_into().ok()).ok_or(EnvelopeError::Invalid("shorter than the header"))?;
        let (mut header, lengths) = decode_header(head, bytes.len())?;
        let at = HEADER_BYTES + lengths.sender + lengths.receiver;
        header.protocol = Protocol::new(&bytes[at..at + lengths.protocol])?;
        Ok(Envelope { bytes, header, lengths })
    }

    pub fn header(&self) -> Header {
        self.header
    }

    pub fn lengths(&self) -> Lengths {
        self.lengths
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
        &self.bytes[self.lengths.content_at()..]
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn header() -> Header {
        Header {
            performative: 13,
            message_id: 7,
            conversation_id: 9,
            reply_with: 11,
            in_reply_to: 13,
            reply_by: 1_800_000_000_000_000,
            trace: TraceContext { trace_id: [0xab; 16], parent_span_id: [0xcd; 8] },
            protocol: Protocol::FIPA_QUERY,
        }
    }

    #[test]
    fn written_envelopes_parse_to_the_same_fields_and_the_abi_layout() {
        let mut buf = [0u8; 128];
        let n = encode_into(&mut buf, &header(), b"a", b"bc", b"xyz").unwrap();
        assert_eq!(n, encoded_len(&header(), b"a", b"bc", b"xyz"));
        assert_eq!(n, 76 + 1 + 2 + 10 + 3);
        let b = &buf[..n];
        assert_eq!((b[0], b[1], b[68], b[69], b[70]), (2, 13, 1, 2, 10));
        assert_eq!(&b[28..36], &13u64.to_le_bytes());
        assert_eq!(&b[36..44], &1_800_000_000_000_000u64.to_le_bytes());
        assert_eq!(&b[44..60], &[0xab; 16]);
        assert_eq!(&b[60..68], &[0xcd; 8]);
        assert_eq!(&b[72..76], &3u32.to_le_bytes());
        assert_eq!(&b[76..], b"abcfipa-queryxyz");
        let e = Envelope::parse(b).unwrap();
        assert_eq!((e.header(), e.sender(), e.receiver(), e.content()), (header(), &b"a"[..], &b"bc"[..], &b"xyz"[..]));
        assert_eq!(e.performative(), Performative::Confirm);
        assert!(encode_into(&mut [0u8; 10], &header(), b"a", b"b", b"").is_err(), "a buffer too small");
        // Rule 3: the light pair writes and reads the same bytes.
        let mut light = [0u8; 128];
        assert_eq!(encode_unchecked_names(&mut light, &header(), b"a", b"bc", b"xyz"), Ok(n));
        assert_eq!(&light[..n], b);
        assert_eq!(Envelope::read_delivered(b).unwrap(), e);
        assert!(encode_unchecked_names(&mut light, &header(), b"", b"", b"").is_err(), "a receiver is needed");
        assert!(Envelope::read_delivered(&b[..n - 1]).is_err(), "lengths must add up");
    }

    #[test]
    fn malformed_envelopes_are_refused_with_why() {
        let h = Header { protocol: Protocol::NONE, ..header() };
        let mut good = [0u8; 79];
        encode_into(&mut good, &h, b"a", b"b", b"c").unwrap();
        let mut cases: [([u8; 79], EnvelopeError); 6] = [(good, EnvelopeError::TooLarge); 6];
        cases[0].0[0] = 1;
        cases[0].1 = EnvelopeError::Invalid("unsupported version");
        cases[1].0[1] = 22;
        cases[1].1 = EnvelopeError::Invalid("unknown performative");
        cases[2].0[71] = 1;
        cases[2].1 = EnvelopeError::Invalid("flags and reserved bytes must be 0");
        cases[3].0[69] = 0;
        cases[3].1 = EnvelopeError::Invalid("empty receiver");
        cases[4].0[77] = b'A';
        cases[4].1 = EnvelopeError::Invalid("bad name");
        cases[5].0[70] = 1;
        cases[5].1 = EnvelopeError::Invalid("lengths do not add up to the envelope's size");
        for (bytes, want) in cases {
            assert_eq!(Envelope::parse(&bytes).unwrap_err(), want);
        }
        assert_eq!(Envelope::parse(&good[..40]).unwrap_err(), EnvelopeError::Invalid("shorter than the header"));
        // A protocol with a byte outside its alphabet.
        let mut bad = [0u8; 128];
        let n = encode_into(&mut bad, &header(), b"a", b"b", b"").unwrap();
        bad[76 + 2] = b'F';
        assert_eq!(Envelope::parse(&bad[..n]).unwrap_err(), EnvelopeError::Invalid("bad protocol name"));
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

            /// A valid envelope with one byte changed: refused, or valid
            /// and writing back to itself.
            #[test]
            fn flipped_bytes_are_caught_or_consistent(at in 0usize..95, to in any::<u8>()) {
                let mut bytes = [0u8; 128];
                let n = encode_into(&mut bytes, &header(), b"ab", b"cd", b"ef").unwrap();
                let at = at % n;
                bytes[at] = to;
                if let Ok(e) = Envelope::parse(&bytes[..n]) {
                    let mut again = [0u8; 128];
                    let m = encode_into(&mut again, &e.header(), e.sender(), e.receiver(), e.content()).unwrap();
                    prop_assert_eq!(&again[..m], &bytes[..n]);
                }
            }
        }
    }
}
