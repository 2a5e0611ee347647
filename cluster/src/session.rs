//! Link sessions: the handshake that opens a TCP link between two nodes and
//! the records that carry its bytes afterwards. Bytes in, bytes out, no
//! I/O: the shards' link tasks drive it over io_uring sockets, and tests
//! drive it over blocking ones.
//!
//! Mechanism: Noise `NNpsk0` (the `snow` crate) with ChaCha20-Poly1305 and
//! SHA-256, the pre-shared key derived from the cluster key
//! ([`crate::keyring`]). Why Noise and not TLS: a cluster already shares a
//! key and has no certificate authority, Noise needs neither certificates
//! nor their expiry, it takes two messages, and each side's ephemeral
//! Diffie-Hellman gives every connection keys of its own (a key that leaks
//! later opens no recorded session). Both directions are owned by the shard
//! that owns the socket: no cross-core hop.
//!
//! Rules:
//! 1. The client opens with `HELLO`: magic `CXL2`, the id of the key it
//!    sends with, a mode byte, then a `u16` length and Noise's first message
//!    (its payload empty). The magic, key id and mode are Noise's prologue,
//!    so altering any of them fails the handshake. A server that holds no
//!    key of that id, or speaks another mode, refuses it.
//! 2. The server answers with a `u16` length and Noise's second message,
//!    whose payload is its node name. The client checks it is the node it
//!    meant to reach.
//! 3. The client's first record carries its node name: a server takes the
//!    client as authenticated only once that record opens (a replayed
//!    `HELLO` gets no further, since only the real client can open the
//!    answer's keys).
//! 4. After the handshake, each direction is a stream of records: a `u16`
//!    length, then a ChaCha20-Poly1305 ciphertext of at most
//!    [`RECORD_PLAIN_BYTES_MAX`] bytes and its tag. Nonces count records per
//!    direction, so a record altered, replayed, reordered or dropped does
//!    not open: the connection is refused as tampered.
//! 5. [`Mode::Plain`] (benchmarks only; the node never uses it) keeps the
//!    handshake and its authentication but sends records without
//!    encryption, to measure what encryption costs.

use std::sync::Arc;

use snow::{HandshakeState, StatelessTransportState};

use crate::keyring::{Key, KeyId, KeyRing, KEY_ID_BYTES};

/// Noise protocol name of every link.
pub const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// First bytes of a hello (rule 1).
pub const LINK_MAGIC: &[u8; 4] = b"CXL2";
/// Bytes of a record's length prefix (rule 4).
pub const RECORD_PREFIX_BYTES: usize = 2;
/// Bytes of a record's tag.
pub const RECORD_TAG_BYTES: usize = 16;
/// Largest ciphertext a record carries: Noise's message limit.
pub const RECORD_BYTES_MAX: usize = 65_535;
/// Largest plaintext a record carries.
pub const RECORD_PLAIN_BYTES_MAX: usize = RECORD_BYTES_MAX - RECORD_TAG_BYTES;
/// Bytes of a hello's fixed head: magic, key id, mode, length.
pub const HELLO_HEAD_BYTES: usize = 4 + KEY_ID_BYTES + 1 + 2;
/// Longest node name a handshake carries.
pub const NAME_BYTES_MAX: usize = 255;
/// Longest handshake message after a hello's head, or answer, or first
/// record: an ephemeral key, a name and a tag. A peer that announces more
/// is refused before the bytes are read.
pub const HANDSHAKE_MESSAGE_BYTES_MAX: usize = 32 + NAME_BYTES_MAX + RECORD_TAG_BYTES;

/// What records carry (rule 5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Encrypted and authenticated: every node.
    Sealed,
    /// Authenticated handshake, records in clear: a benchmark's baseline.
    Plain,
}

impl Mode {
    fn byte(self) -> u8 {
        match self {
            Mode::Sealed => 1,
            Mode::Plain => 0,
        }
    }
}

/// Why a handshake or a record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// Not a caxton link, or a message of the wrong shape.
    Malformed(&'static str),
    /// The peer holds no key this node holds, or does not prove it.
    BadKey,
    /// Reached a node other than the one meant.
    WrongNode(String),
    /// A record did not open (rule 4).
    Tampered,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Malformed(why) => write!(f, "malformed handshake: {why}"),
            SessionError::BadKey => f.write_str("the peer did not prove the cluster key"),
            SessionError::WrongNode(n) => write!(f, "reached another node ({n})"),
            SessionError::Tampered => f.write_str("a record did not open: altered, replayed or not ours"),
        }
    }
}

fn prologue(id: KeyId, mode: Mode) -> [u8; 4 + KEY_ID_BYTES + 1] {
    let mut p = [0u8; 4 + KEY_ID_BYTES + 1];
    p[..4].copy_from_slice(LINK_MAGIC);
    p[4..4 + KEY_ID_BYTES].copy_from_slice(&id.0);
    p[4 + KEY_ID_BYTES] = mode.byte();
    p
}

fn noise(key: &Key, mode: Mode, initiator: bool) -> HandshakeState {
    let id_prologue = prologue(key.id, mode);
    let builder = snow::Builder::new(NOISE_PARAMS.parse().expect("valid Noise parameters"))
        .prologue(&id_prologue)
        .and_then(|b| b.psk(0, key.link_psk()))
        .expect("a 32-byte psk at position 0");
    match initiator {
        true => builder.build_initiator(),
        false => builder.build_responder(),
    }
    .expect("the Noise resolver supports NNpsk0 with 25519, ChaChaPoly and SHA256")
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&(message.len() as u16).to_le_bytes());
    out.extend_from_slice(message);
    out
}

/// The client's side of a handshake in progress.
pub struct ClientHandshake {
    noise: HandshakeState,
    mode: Mode,
    key: KeyId,
}

/// Starts a handshake with the key this node sends with (rule 1). Returns
/// the state and the hello to send.
pub fn client_hello(ring: &KeyRing, mode: Mode) -> (ClientHandshake, Vec<u8>) {
    let key = ring.sending();
    let mut noise = noise(&key, mode, true);
    let mut msg = [0u8; 128];
    let n = noise.write_message(&[], &mut msg).expect("a first message fits");
    let mut hello = prologue(key.id, mode).to_vec();
    hello.extend_from_slice(&framed(&msg[..n]));
    debug_assert_eq!(hello.len(), HELLO_HEAD_BYTES + n);
    (ClientHandshake { noise, mode, key: key.id }, hello)
}

impl ClientHandshake {
    /// Takes the server's answer (its Noise message, without the length
    /// prefix), checks it came from `expect`, and returns the session and
    /// the first record to send, which names this node (rules 2 and 3).
    pub fn finish(mut self, answer: &[u8], expect: &str, self_name: &str) -> Result<(Session, Vec<u8>), SessionError> {
        let mut name = [0u8; RECORD_BYTES_MAX];
        let n = self.noise.read_message(answer, &mut name).map_err(|_| SessionError::BadKey)?;
        if &name[..n] != expect.as_bytes() {
            return Err(SessionError::WrongNode(String::from_utf8_lossy(&name[..n]).into_owned()));
        }
        let transport = self.noise.into_stateless_transport_mode().map_err(|_| SessionError::Malformed("handshake incomplete"))?;
        let mut session = Session::new(transport, self.mode, self.key);
        let mut confirm = Vec::new();
        session.sealer.seal_always(self_name.as_bytes(), &mut confirm);
        Ok((session, confirm))
    }
}

/// A hello's head: the key id, the mode and the length of the message after.
pub fn read_hello_head(head: &[u8; HELLO_HEAD_BYTES]) -> Result<(KeyId, Mode, usize), SessionError> {
    if &head[..4] != LINK_MAGIC {
        return Err(SessionError::Malformed("not a caxton link (bad magic)"));
    }
    let id = KeyId(head[4..4 + KEY_ID_BYTES].try_into().unwrap());
    let mode = match head[4 + KEY_ID_BYTES] {
        1 => Mode::Sealed,
        0 => Mode::Plain,
        _ => return Err(SessionError::Malformed("unknown mode")),
    };
    Ok((id, mode, u16::from_le_bytes([head[HELLO_HEAD_BYTES - 2], head[HELLO_HEAD_BYTES - 1]]) as usize))
}

/// The server's side: waits for the client's first record (rule 3).
pub struct ServerHandshake {
    session: Session,
}

/// Answers a hello (rules 1 and 2): `id` and `mode` from its head, `message`
/// the Noise message after it. Returns the state and the answer to send.
pub fn server_answer(ring: &KeyRing, mode: Mode, id: KeyId, theirs: Mode, message: &[u8], self_name: &str) -> Result<(ServerHandshake, Vec<u8>), SessionError> {
    if theirs != mode {
        return Err(SessionError::Malformed("the peer's record mode is not this node's"));
    }
    let key = ring.find(id).ok_or(SessionError::BadKey)?;
    assert!(self_name.len() <= NAME_BYTES_MAX);
    let mut noise = noise(&key, mode, false);
    let mut scratch = [0u8; 128];
    noise.read_message(message, &mut scratch).map_err(|_| SessionError::BadKey)?;
    let mut answer = [0u8; 512];
    let n = noise.write_message(self_name.as_bytes(), &mut answer).expect("an answer fits");
    let transport = noise.into_stateless_transport_mode().map_err(|_| SessionError::Malformed("handshake incomplete"))?;
    Ok((ServerHandshake { session: Session::new(transport, mode, id) }, framed(&answer[..n])))
}

impl ServerHandshake {
    /// Takes the client's first record (its body, without the length
    /// prefix): the session and the client's node name (rule 3).
    pub fn finish(mut self, record: &[u8]) -> Result<(Session, String), SessionError> {
        let mut name = Vec::new();
        self.session.opener.open_always(record, &mut name)?;
        let name = String::from_utf8(name).map_err(|_| SessionError::Malformed("node name is not UTF-8"))?;
        Ok((self.session, name))
    }
}

/// Both directions of an open link; split so that a reader and a writer
/// task each own theirs.
pub struct Session {
    pub sealer: Sealer,
    pub opener: Opener,
    /// The cluster key the handshake used ([`crate::keyring`] rule 5).
    pub key: KeyId,
}

impl Session {
    fn new(transport: StatelessTransportState, mode: Mode, key: KeyId) -> Session {
        let transport = Arc::new(transport);
        Session { sealer: Sealer { transport: transport.clone(), nonce: 0, mode }, opener: Opener { transport, nonce: 0, mode }, key }
    }
}

/// Seals this side's bytes into records (rule 4).
pub struct Sealer {
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    mode: Mode,
}

impl Sealer {
    fn seal_always(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        assert!(plain.len() <= RECORD_PLAIN_BYTES_MAX);
        let at = out.len();
        out.resize(at + RECORD_PREFIX_BYTES + plain.len() + RECORD_TAG_BYTES, 0);
        let n = self.transport.write_message(self.nonce, plain, &mut out[at + RECORD_PREFIX_BYTES..]).expect("a record fits");
        assert_eq!(n, plain.len() + RECORD_TAG_BYTES);
        out[at..at + RECORD_PREFIX_BYTES].copy_from_slice(&(n as u16).to_le_bytes());
        self.nonce += 1;
    }

    /// Appends `plain` to `out` as records. Allocates nothing once `out`
    /// has grown to a batch.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        for chunk in plain.chunks(RECORD_PLAIN_BYTES_MAX) {
            match self.mode {
                Mode::Sealed => self.seal_always(chunk, out),
                Mode::Plain => {
                    out.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
                    out.extend_from_slice(chunk);
                }
            }
        }
    }

    /// Bytes `plain_bytes` of plaintext take as records.
    pub fn sealed_len(&self, plain_bytes: usize) -> usize {
        let records = plain_bytes.div_ceil(RECORD_PLAIN_BYTES_MAX);
        let tag = if self.mode == Mode::Sealed { RECORD_TAG_BYTES } else { 0 };
        plain_bytes + records * (RECORD_PREFIX_BYTES + tag)
    }
}

/// Opens the peer's records (rule 4).
pub struct Opener {
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    mode: Mode,
}

impl Opener {
    fn open_always(&mut self, record: &[u8], out: &mut Vec<u8>) -> Result<(), SessionError> {
        if record.len() < RECORD_TAG_BYTES {
            return Err(SessionError::Tampered);
        }
        let at = out.len();
        out.resize(at + record.len() - RECORD_TAG_BYTES, 0);
        match self.transport.read_message(self.nonce, record, &mut out[at..]) {
            Ok(n) => {
                assert_eq!(n, record.len() - RECORD_TAG_BYTES);
                self.nonce += 1;
                Ok(())
            }
            Err(_) => {
                out.truncate(at);
                Err(SessionError::Tampered)
            }
        }
    }

    /// Takes the whole records at the front of `sealed`, appending their
    /// plaintext to `plain`; leaves a partial record. A record that does
    /// not open is an error, and the connection must close.
    pub fn open(&mut self, sealed: &mut Vec<u8>, plain: &mut Vec<u8>) -> Result<(), SessionError> {
        let mut at = 0;
        let result = loop {
            let Some(prefix) = sealed.get(at..at + RECORD_PREFIX_BYTES) else { break Ok(()) };
            let len = u16::from_le_bytes([prefix[0], prefix[1]]) as usize;
            let start = at + RECORD_PREFIX_BYTES;
            let Some(record) = sealed.get(start..start + len) else { break Ok(()) };
            let opened = match self.mode {
                Mode::Sealed => self.open_always(record, plain),
                Mode::Plain => {
                    plain.extend_from_slice(record);
                    Ok(())
                }
            };
            if let Err(e) = opened {
                break Err(e);
            }
            at = start + len;
        };
        sealed.drain(..at);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a cluster key, 16+ bytes";

    /// A full handshake between `client` and `server` rings.
    fn connect(client: &KeyRing, server: &KeyRing, mode: Mode) -> Result<(Session, Session), SessionError> {
        let (hs, hello) = client_hello(client, mode);
        let head: [u8; HELLO_HEAD_BYTES] = hello[..HELLO_HEAD_BYTES].try_into().unwrap();
        let (id, theirs, len) = read_hello_head(&head)?;
        assert_eq!(len, hello.len() - HELLO_HEAD_BYTES);
        let (pending, answer) = server_answer(server, mode, id, theirs, &hello[HELLO_HEAD_BYTES..], "server")?;
        let (client_session, confirm) = hs.finish(&answer[2..], "server", "client")?;
        let (server_session, name) = pending.finish(&confirm[2..])?;
        assert_eq!(name, "client");
        Ok((client_session, server_session))
    }

    #[test]
    fn records_cross_both_ways_split_anywhere_and_hide_their_content() {
        let ring = KeyRing::new(KEY, None).unwrap();
        let (mut c, mut s) = connect(&ring, &ring, Mode::Sealed).unwrap();
        let message = b"agent secret-agent says: confidential".repeat(3000);
        let mut wire = Vec::new();
        c.sealer.seal(&message, &mut wire);
        assert_eq!(wire.len(), c.sealer.sealed_len(message.len()));
        assert!(!wire.windows(12).any(|w| w == b"secret-agent"));
        let (mut buf, mut plain) = (Vec::new(), Vec::new());
        for piece in wire.chunks(977) {
            buf.extend_from_slice(piece);
            s.opener.open(&mut buf, &mut plain).unwrap();
        }
        assert!(buf.is_empty());
        assert_eq!(plain, message);
        let mut back = Vec::new();
        s.sealer.seal(b"ack", &mut back);
        let mut got = Vec::new();
        c.opener.open(&mut back, &mut got).unwrap();
        assert_eq!(got, b"ack");
    }

    #[test]
    fn an_altered_replayed_or_dropped_record_is_refused() {
        let ring = KeyRing::new(KEY, None).unwrap();
        let (mut c, mut s) = connect(&ring, &ring, Mode::Sealed).unwrap();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        c.sealer.seal(b"first", &mut one);
        c.sealer.seal(b"second", &mut two);
        for i in 0..one.len() {
            let (mut bad, mut plain) = (one.clone(), Vec::new());
            bad[i] ^= 0x40;
            // A flipped length makes a record that is not whole yet or
            // does not open; either way nothing comes out of it.
            let r = s.opener.open(&mut bad, &mut plain);
            assert!(r.is_err() || plain.is_empty(), "byte {i}");
        }
        let mut plain = Vec::new();
        let mut skipped = two.clone();
        assert_eq!(s.opener.open(&mut skipped, &mut plain), Err(SessionError::Tampered), "a dropped record");
        s.opener.open(&mut one.clone(), &mut plain).unwrap();
        assert_eq!(s.opener.open(&mut one.clone(), &mut plain), Err(SessionError::Tampered), "a replay");
    }

    #[test]
    fn handshakes_need_a_shared_key_the_right_node_and_the_same_mode() {
        let ring = KeyRing::new(KEY, None).unwrap();
        let other = KeyRing::new(b"another cluster key entirely", None).unwrap();
        assert_eq!(connect(&other, &ring, Mode::Sealed).err(), Some(SessionError::BadKey));
        let (hs, hello) = client_hello(&ring, Mode::Sealed);
        let (pending, answer) = server_answer(&ring, Mode::Sealed, ring.ids().0, Mode::Sealed, &hello[HELLO_HEAD_BYTES..], "someone-else").unwrap();
        assert!(matches!(hs.finish(&answer[2..], "server", "client"), Err(SessionError::WrongNode(_))));
        drop(pending);
        let (_, hello) = client_hello(&ring, Mode::Plain);
        assert!(server_answer(&ring, Mode::Sealed, ring.ids().0, Mode::Plain, &hello[HELLO_HEAD_BYTES..], "s").is_err(), "a plain peer");
        // Mode and key id are in the prologue: changing them breaks it.
        let (_, hello) = client_hello(&ring, Mode::Sealed);
        let both = KeyRing::new(KEY, Some(b"the next cluster key")).unwrap();
        let next = both.ids().1;
        assert_eq!(server_answer(&both, Mode::Sealed, next, Mode::Sealed, &hello[HELLO_HEAD_BYTES..], "s").err(), Some(SessionError::BadKey));
        // Plain records still need the handshake and carry the bytes as is.
        let (mut c, mut s) = connect(&ring, &ring, Mode::Plain).unwrap();
        let mut wire = Vec::new();
        c.sealer.seal(b"visible", &mut wire);
        let mut plain = Vec::new();
        s.opener.open(&mut wire, &mut plain).unwrap();
        assert_eq!(plain, b"visible");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::fuzz::config(256))]

            /// Any bytes after a handshake, cut anywhere: plaintext only from
            /// records that open, an error otherwise, never a panic, and
            /// less than a record left over.
            #[test]
            fn any_record_stream_opens_or_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..4000), cuts in prop::collection::vec(1usize..700, 1..12)) {
                let ring = KeyRing::new(KEY, None).unwrap();
                let (_, mut s) = connect(&ring, &ring, Mode::Sealed).unwrap();
                let (mut buf, mut plain) = (Vec::new(), Vec::new());
                for read in crate::fuzz::reads(&bytes, &cuts) {
                    buf.extend_from_slice(read);
                    if s.opener.open(&mut buf, &mut plain).is_err() {
                        prop_assert!(plain.is_empty(), "random bytes never open");
                        return Ok(());
                    }
                }
                prop_assert!(plain.is_empty());
                prop_assert!(buf.len() < RECORD_PREFIX_BYTES + RECORD_BYTES_MAX);
            }

            /// Any hello: refused or answered, never a panic; only a
            /// client with the key gets a session.
            #[test]
            fn any_hello_is_answered_or_refused(head in any::<[u8; HELLO_HEAD_BYTES]>(), body in prop::collection::vec(any::<u8>(), 0..200)) {
                let ring = KeyRing::new(KEY, None).unwrap();
                if let Ok((id, mode, _)) = read_hello_head(&head) {
                    prop_assert!(server_answer(&ring, Mode::Sealed, id, mode, &body, "s").is_err());
                }
            }
        }
    }

    #[test]
    fn a_ring_in_rotation_accepts_either_key() {
        let old = KeyRing::new(KEY, None).unwrap();
        let both = KeyRing::new(KEY, Some(b"the next cluster key")).unwrap();
        let new = KeyRing::new(b"the next cluster key", None).unwrap();
        assert!(connect(&old, &both, Mode::Sealed).is_ok());
        assert!(connect(&new, &both, Mode::Sealed).is_ok());
        assert!(connect(&both, &old, Mode::Sealed).is_ok(), "sends with the current key");
        assert!(connect(&new, &old, Mode::Sealed).is_err());
    }
}
