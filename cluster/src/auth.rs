//! Authentication with the cluster's shared secret: HMAC-SHA256, truncated
//! to [`TAG_BYTES`], over a label and the data. Labels keep the uses apart
//! (a gossip tag is never a valid handshake tag).
//!
//! Rules:
//! 1. Every gossip packet ends with its tag; a packet whose tag does not
//!    verify is dropped before foca sees a byte of it.
//! 2. A TCP link starts with a challenge-response handshake (both sides
//!    prove the key over fresh nonces of both), so neither a keyless client
//!    nor a keyless server gets past it.
//! 3. Tags are compared in constant time (`hmac`'s `verify_truncated_left`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of tag appended to a packet or sent in a handshake.
pub const TAG_BYTES: usize = 16;
/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 16;
/// Shortest secret accepted, in bytes.
pub const KEY_BYTES_MIN: usize = 16;

const GOSSIP_LABEL: &[u8] = b"caxton/gossip/1";
const SERVER_LABEL: &[u8] = b"caxton/link-server/1";
const CLIENT_LABEL: &[u8] = b"caxton/link-client/1";

#[derive(Clone)]
pub struct ClusterKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    pub fn new(secret: &[u8]) -> Result<ClusterKey, String> {
        if secret.len() < KEY_BYTES_MIN {
            return Err(format!("the cluster key must be at least {KEY_BYTES_MIN} bytes, got {}", secret.len()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
        Ok(ClusterKey { mac })
    }

    fn tag(&self, label: &[u8], parts: &[&[u8]]) -> [u8; TAG_BYTES] {
        let mut mac = self.mac.clone();
        mac.update(label);
        for p in parts {
            mac.update(&(p.len() as u32).to_le_bytes());
            mac.update(p);
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    fn verify(&self, label: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(label);
        for p in parts {
            mac.update(&(p.len() as u32).to_le_bytes());
            mac.update(p);
        }
        tag.len() == TAG_BYTES && mac.verify_truncated_left(tag).is_ok()
    }

    /// Appends the packet's tag (rule 1).
    pub fn seal(&self, packet: &mut Vec<u8>) {
        let tag = self.tag(GOSSIP_LABEL, &[packet]);
        packet.extend_from_slice(&tag);
    }

    /// The packet without its tag, if the tag verifies (rule 1).
    pub fn open<'a>(&self, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let body_len = sealed.len().checked_sub(TAG_BYTES)?;
        let (body, tag) = sealed.split_at(body_len);
        self.verify(GOSSIP_LABEL, &[body], tag).then_some(body)
    }

    /// The server's proof in a link handshake (rule 2).
    pub fn server_proof(&self, client_nonce: &[u8], server_nonce: &[u8], server: &[u8]) -> [u8; TAG_BYTES] {
        self.tag(SERVER_LABEL, &[client_nonce, server_nonce, server])
    }

    pub fn check_server_proof(&self, client_nonce: &[u8], server_nonce: &[u8], server: &[u8], proof: &[u8]) -> bool {
        self.verify(SERVER_LABEL, &[client_nonce, server_nonce, server], proof)
    }

    /// The client's proof in a link handshake (rule 2).
    pub fn client_proof(&self, client_nonce: &[u8], server_nonce: &[u8], client: &[u8]) -> [u8; TAG_BYTES] {
        self.tag(CLIENT_LABEL, &[client_nonce, server_nonce, client])
    }

    pub fn check_client_proof(&self, client_nonce: &[u8], server_nonce: &[u8], client: &[u8], proof: &[u8]) -> bool {
        self.verify(CLIENT_LABEL, &[client_nonce, server_nonce, client], proof)
    }
}

/// Fresh random bytes for a nonce, from the kernel.
pub fn nonce() -> [u8; NONCE_BYTES] {
    use std::io::Read;
    let mut n = [0u8; NONCE_BYTES];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut n)).expect("/dev/urandom is readable");
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClusterKey {
        ClusterKey::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn a_sealed_packet_opens_with_the_same_key_only() {
        let a = key("0123456789abcdef-a");
        let mut p = b"hello gossip".to_vec();
        a.seal(&mut p);
        assert_eq!(p.len(), 12 + TAG_BYTES);
        assert_eq!(a.open(&p), Some(&b"hello gossip"[..]));
        assert_eq!(key("0123456789abcdef-b").open(&p), None);
        let mut flipped = p.clone();
        flipped[3] ^= 1;
        assert_eq!(a.open(&flipped), None);
        assert_eq!(a.open(&p[..TAG_BYTES - 1]), None, "shorter than a tag");
    }

    #[test]
    fn handshake_proofs_are_bound_to_their_role_and_nonces() {
        let k = key("0123456789abcdef");
        let (c, s) = (nonce(), nonce());
        assert_ne!(c, s);
        let sp = k.server_proof(&c, &s, b"srv");
        assert!(k.check_server_proof(&c, &s, b"srv", &sp));
        assert!(!k.check_client_proof(&c, &s, b"srv", &sp), "a server proof is no client proof");
        assert!(!k.check_server_proof(&s, &c, b"srv", &sp), "nonces are ordered");
        let cp = k.client_proof(&c, &s, b"cli");
        assert!(k.check_client_proof(&c, &s, b"cli", &cp));
        assert!(!key("another key, long enough").check_client_proof(&c, &s, b"cli", &cp));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(ClusterKey::new(b"short").is_err());
    }
}
