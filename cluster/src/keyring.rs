//! The cluster's keys: what every gossip packet is sealed with, what every
//! link handshake is keyed with, and how a node moves from one key to the
//! next without downtime.
//!
//! A key is derived from the cluster secret (at least [`KEY_BYTES_MIN`]
//! bytes) with HMAC-SHA256 under a label per use, so that the uses stay
//! apart: a 4-byte [`KeyId`] (sent in clear, so that the receiver knows
//! which key to try), the gossip key and the links' Noise pre-shared key.
//!
//! Rules:
//! 1. A gossip packet is `key id (4) | nonce (24) | XChaCha20-Poly1305
//!    ciphertext | tag (16)`: its whole content, header included, is
//!    encrypted and authenticated; one that does not open under a key this
//!    node holds is refused before a byte of it is parsed. Nonces are a
//!    random per-process prefix and a counter, never repeated.
//! 2. A node holds one key, or two during a rotation: the current one and
//!    the next one (`--cluster-key-next-file`). It opens and accepts under
//!    either, and seals and connects with the one it *sends* with.
//! 3. Rotation, driven by what members report in every packet's header (the
//!    key it was sealed with and the other key its sender holds)
//!    ([`KeyRing::advance`]): (a) a node sends with the next key exactly
//!    while every active member reports holding it (a member that joins
//!    with the old key only turns it back); (b) a node drops the old key
//!    (the next key becomes the current one) once it sends with the next
//!    key and every active member reports sending with it. A dropped key is
//!    retired: a reload never takes it back (a key file not yet updated
//!    does not undo a rotation). A member not heard from yet holds nothing
//!    as far as this node knows, so it blocks both steps; a node with no
//!    active member takes no step (after a restart it has not heard from
//!    its cluster yet): alone, an operator ends a rotation by reloading the
//!    new key as the only one.
//! 4. The ring is shared by the gossip thread and every shard (a mutex held
//!    for a handshake's or a packet's lookups, never across I/O).
//! 5. A link opened with a key that is no longer held (dropped by rotation,
//!    or gone from the key files at a reload) is closed by its reader: what
//!    it carried unacknowledged goes again on a connection keyed with a
//!    held key. [`KeyRing::removals`] tells readers when to look.
//! 6. A node that hears from no member alternates its sending key at each
//!    attempt to join while it holds two ([`KeyRing::alternate`]), so that
//!    it reaches its cluster whichever step the rotation is at; rule 3
//!    takes over once members report.
//! 7. A forced rotation ([`KeyRing::force`], the answer to a leaked key):
//!    the node sends with the next key at once and never turns back, and
//!    drops the old key as soon as every active member that reports
//!    holding the next key sends with it. Members that do not hold it are
//!    not waited for: with rule 3 alone, whoever holds the old key could
//!    stop a rotation forever by gossiping (each of its packets turned it
//!    back). A member that was only slow to reload is cut off until it
//!    holds the new key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shortest secret accepted, in bytes.
pub const KEY_BYTES_MIN: usize = 16;
/// Bytes of a key id.
pub const KEY_ID_BYTES: usize = 4;
/// Bytes of a gossip packet's nonce.
pub const NONCE_BYTES: usize = 24;
/// Bytes of an AEAD tag.
pub const TAG_BYTES: usize = 16;
/// What sealing adds to a gossip packet (rule 1).
pub const SEAL_BYTES: usize = KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES;

const ID_LABEL: &[u8] = b"caxton/key-id/2";
const GOSSIP_LABEL: &[u8] = b"caxton/gossip/2";
const LINK_LABEL: &[u8] = b"caxton/link-psk/2";

/// Names a key without revealing it: the first bytes of an HMAC of a label.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct KeyId(pub [u8; KEY_ID_BYTES]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// One cluster key, derived for each of its uses.
pub struct Key {
    pub id: KeyId,
    gossip: XChaCha20Poly1305,
    link_psk: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl Key {
    pub fn new(secret: &[u8]) -> Result<Key, String> {
        if secret.len() < KEY_BYTES_MIN {
            return Err(format!("the cluster key must be at least {KEY_BYTES_MIN} bytes, got {}", secret.len()));
        }
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&derive(secret, ID_LABEL)[..KEY_ID_BYTES]);
        let gossip = XChaCha20Poly1305::new(&derive(secret, GOSSIP_LABEL).into());
        Ok(Key { id: KeyId(id), gossip, link_psk: derive(secret, LINK_LABEL) })
    }

    /// The links' Noise pre-shared key.
    pub fn link_psk(&self) -> &[u8; 32] {
        &self.link_psk
    }
}

/// Unique nonces for one process: a random prefix and a counter (rule 1).
struct Nonces {
    prefix: [u8; NONCE_BYTES - 8],
    next: u64,
}

impl Nonces {
    fn new() -> Nonces {
        let mut prefix = [0u8; NONCE_BYTES - 8];
        random_bytes(&mut prefix);
        Nonces { prefix, next: 0 }
    }

    fn take(&mut self) -> [u8; NONCE_BYTES] {
        self.next += 1;
        assert!(self.next < u64::MAX, "nonce counter exhausted");
        let mut n = [0u8; NONCE_BYTES];
        n[..NONCE_BYTES - 8].copy_from_slice(&self.prefix);
        n[NONCE_BYTES - 8..].copy_from_slice(&self.next.to_le_bytes());
        n
    }
}

/// Fills `out` from the kernel's random source.
pub fn random_bytes(out: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(out)).expect("/dev/urandom is readable");
}

/// What a member's packets say of its keys (rule 3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Report {
    /// The key its packet was sealed with.
    pub sends: KeyId,
    /// The other key it holds, or `sends` again when it holds one.
    pub holds: KeyId,
}

impl Report {
    fn has(&self, id: KeyId) -> bool {
        self.sends == id || self.holds == id
    }
}

/// A step of a rotation, for the driver to log and count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// Rule 3, step a: now sending with this key.
    Switched(KeyId),
    /// Rule 3, step b: this key is no longer accepted.
    Dropped(KeyId),
    /// Rule 3, step a undone: a member does not hold the next key (it
    /// joined with the old one only), so this node sends with the current
    /// key again.
    Reverted(KeyId),
}

struct State {
    current: Arc<Key>,
    next: Option<Arc<Key>>,
    sending_next: bool,
    /// Rule 7: the switch is forced, and members without the next key are
    /// not waited for.
    forced: bool,
    retired: Vec<KeyId>,
    nonces: Nonces,
}

impl State {
    fn sending(&self) -> &Arc<Key> {
        match (&self.next, self.sending_next) {
            (Some(next), true) => next,
            _ => &self.current,
        }
    }
}

/// The keys of one node, shared by its gossip thread and shards (rule 4).
#[derive(Clone)]
pub struct KeyRing {
    state: Arc<Mutex<State>>,
    /// Moves on whenever a key stops being held (rule 5).
    removals: Arc<AtomicU64>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sends, holds) = self.ids();
        write!(f, "KeyRing(sends {sends}, holds {holds})")
    }
}

impl KeyRing {
    /// A ring of the current secret and, during a rotation, the next one.
    pub fn new(current: &[u8], next: Option<&[u8]>) -> Result<KeyRing, String> {
        let current = Arc::new(Key::new(current)?);
        let next = next.map(Key::new).transpose()?.map(Arc::new).filter(|n| n.id != current.id);
        let state = State { current, next, sending_next: false, forced: false, retired: Vec::new(), nonces: Nonces::new() };
        Ok(KeyRing { state: Arc::new(Mutex::new(state)), removals: Arc::new(AtomicU64::new(0)) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key this node seals and connects with (rule 2).
    pub fn sending(&self) -> Arc<Key> {
        self.lock().sending().clone()
    }

    /// The held key of this id, if any (rule 2).
    pub fn find(&self, id: KeyId) -> Option<Arc<Key>> {
        let s = self.lock();
        let found = [Some(&s.current), s.next.as_ref()].into_iter().flatten().find(|k| k.id == id).cloned();
        found
    }

    /// What this node reports: the key it sends with and the other it holds.
    pub fn ids(&self) -> (KeyId, KeyId) {
        self.ids_of(&self.lock())
    }

    fn ids_of(&self, s: &State) -> (KeyId, KeyId) {
        let sends = s.sending().id;
        let other = [Some(&s.current), s.next.as_ref()].into_iter().flatten().map(|k| k.id).find(|&id| id != sends);
        (sends, other.unwrap_or(sends))
    }

    /// A count that moves on whenever a key stops being held: a link
    /// checks its key is still held only when it moved (rule 5), one atomic
    /// load a read.
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Keys held (1, or 2 during a rotation) and whether the next one is
    /// the one sent with: for metrics.
    pub fn phase(&self) -> (usize, bool) {
        let s = self.lock();
        (1 + s.next.is_some() as usize, s.next.is_some() && s.sending_next)
    }

    /// Seals a gossip packet in place (rule 1).
    pub fn seal(&self, packet: &mut Vec<u8>) {
        let (key, nonce) = {
            let mut s = self.lock();
            let key = s.sending().clone();
            (key, s.nonces.take())
        };
        let tag = key.gossip.encrypt_in_place_detached(XNonce::from_slice(&nonce), &key.id.0, packet).expect("a packet fits XChaCha20");
        let body = packet.len();
        packet.extend_from_slice(&tag);
        packet.splice(0..0, key.id.0.iter().chain(nonce.iter()).copied());
        debug_assert_eq!(packet.len(), body + SEAL_BYTES);
    }

    /// Opens a sealed packet (rule 1): the key it was sealed with and its
    /// content, or `None` if no held key opens it.
    pub fn open(&self, sealed: &[u8]) -> Option<(KeyId, Vec<u8>)> {
        if sealed.len() < SEAL_BYTES {
            return None;
        }
        let id = KeyId(sealed[..KEY_ID_BYTES].try_into().unwrap());
        let key = self.find(id)?;
        let (nonce, rest) = sealed[KEY_ID_BYTES..].split_at(NONCE_BYTES);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_BYTES);
        let mut body = ciphertext.to_vec();
        key.gossip.decrypt_in_place_detached(XNonce::from_slice(nonce), &id.0, &mut body, tag.into()).ok()?;
        debug_assert_eq!(body.len() + SEAL_BYTES, sealed.len());
        Some((id, body))
    }

    /// Takes the keys of a reload (SIGHUP): the secrets now in the key
    /// files. A retired key is not taken back (rule 3, step b); what this node
    /// sends with stays if it is still held. Returns what the ring holds.
    pub fn reload(&self, current: &[u8], next: Option<&[u8]>) -> Result<(KeyId, KeyId), String> {
        let mut fresh = vec![Arc::new(Key::new(current)?)];
        if let Some(n) = next {
            fresh.push(Arc::new(Key::new(n)?));
        }
        {
            let mut s = self.lock();
            let retired = s.retired.clone();
            fresh.retain(|k| !retired.contains(&k.id));
            fresh.dedup_by(|a, b| a.id == b.id);
            if fresh.is_empty() {
                return Err("every key given was retired by a rotation: give the cluster's current key".into());
            }
            let held: Vec<KeyId> = [Some(&s.current), s.next.as_ref()].into_iter().flatten().map(|k| k.id).collect();
            if fresh.len() == held.len() && fresh.iter().all(|k| held.contains(&k.id)) {
                return Ok(self.ids_of(&s)); // the same keys: nothing changes
            }
            // The current key stays current while it is held, so that the
            // cluster sees no change until the rotation rules say so.
            let sending = s.sending().id;
            if let Some(i) = fresh.iter().position(|k| k.id == s.current.id) {
                fresh.swap(0, i);
            }
            s.current = fresh[0].clone();
            s.next = fresh.get(1).cloned();
            s.sending_next = s.next.as_ref().is_some_and(|n| n.id == sending);
            s.forced &= s.sending_next;
            if held.iter().any(|id| !fresh.iter().any(|k| k.id == *id)) {
                self.removals.fetch_add(1, Ordering::Release);
            }
        }
        Ok(self.ids())
    }

    /// While this node hears from no member (rule 6), it alternates the key
    /// it sends with on every attempt to join, if it holds two: a node that
    /// restarts with the key files of before a rotation's end still reaches
    /// a cluster that has dropped the old key. Returns whether it changed.
    pub fn alternate(&self) -> bool {
        let mut s = self.lock();
        if s.next.is_none() {
            return false;
        }
        s.sending_next = !s.sending_next;
        true
    }

    /// Forces the rotation (rule 7): sends with the next key from now on,
    /// and drops the old one once every member holding the next key sends
    /// with it. Refused without a next key.
    pub fn force(&self) -> Result<Step, String> {
        let mut s = self.lock();
        let Some(next) = s.next.clone() else {
            return Err("no rotation to force: this node holds one key; put the new key in --cluster-key-next-file and reload (SIGHUP) first".into());
        };
        s.sending_next = true;
        s.forced = true;
        Ok(Step::Switched(next.id))
    }

    /// Is a rotation being forced (rule 7)?
    pub fn forced(&self) -> bool {
        self.lock().forced
    }

    /// Applies rules 3 and 7 to what the active members reported.
    /// `reports` has one entry per active member; `None` for one not
    /// heard from yet.
    pub fn advance<'r>(&self, reports: impl Iterator<Item = Option<&'r Report>> + Clone) -> Option<Step> {
        let mut s = self.lock();
        let next = s.next.clone()?;
        if s.forced {
            // Rule 7: only the members that hold the next key count.
            let holders = reports.clone().flatten().filter(|r| r.has(next.id));
            if !holders.clone().all(|r| r.sends == next.id) {
                return None;
            }
            return Some(Self::drop_current(&mut s, next, &self.removals));
        }
        reports.clone().next()?; // rule 3: no step without a member to agree
        let all_hold = reports.clone().all(|r| r.is_some_and(|r| r.has(next.id)));
        match (s.sending_next, all_hold) {
            (false, true) => {
                s.sending_next = true;
                return Some(Step::Switched(next.id));
            }
            (false, false) => return None,
            (true, false) => {
                s.sending_next = false;
                return Some(Step::Reverted(next.id));
            }
            (true, true) => {}
        }
        if reports.clone().all(|r| r.is_some_and(|r| r.sends == next.id)) {
            return Some(Self::drop_current(&mut s, next, &self.removals));
        }
        None
    }

    /// Rule 3, step b: the next key becomes the only one; the old one is
    /// retired.
    fn drop_current(s: &mut State, next: Arc<Key>, removals: &AtomicU64) -> Step {
        let old = std::mem::replace(&mut s.current, next);
        s.next = None;
        s.sending_next = false;
        s.forced = false;
        s.retired.push(old.id);
        removals.fetch_add(1, Ordering::Release);
        assert_ne!(old.id, s.current.id, "a rotation changes the key");
        Step::Dropped(old.id)
    }
}

/// The last report of each member, by address (rule 3).
#[derive(Default)]
pub struct Reports {
    by_member: HashMap<SocketAddr, Report>,
}

impl Reports {
    pub fn record(&mut self, from: SocketAddr, report: Report) {
        self.by_member.insert(from, report);
    }

    pub fn get(&self, member: &SocketAddr) -> Option<&Report> {
        self.by_member.get(member)
    }

    /// Forgets members no longer active; memory is one entry a member.
    pub fn retain(&mut self, active: impl Fn(&SocketAddr) -> bool) {
        self.by_member.retain(|a, _| active(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &[u8] = b"the old cluster key";
    const NEW: &[u8] = b"the new cluster key";

    #[test]
    fn a_sealed_packet_opens_under_a_held_key_only_and_hides_its_content() {
        let a = KeyRing::new(OLD, None).unwrap();
        let mut p = b"hello gossip, agent secret-name".to_vec();
        a.seal(&mut p);
        assert_eq!(p.len(), 31 + SEAL_BYTES);
        assert!(!p.windows(11).any(|w| w == b"secret-name"), "encrypted");
        assert_eq!(a.open(&p).unwrap().1, b"hello gossip, agent secret-name");
        assert_eq!(KeyRing::new(NEW, None).unwrap().open(&p), None);
        for i in 0..p.len() {
            let mut flipped = p.clone();
            flipped[i] ^= 1;
            assert_eq!(a.open(&flipped), None, "byte {i} flipped");
        }
        assert_eq!(a.open(&p[..SEAL_BYTES - 1]), None, "shorter than the seal");
        let mut q = b"hello gossip, agent secret-name".to_vec();
        a.seal(&mut q);
        assert_ne!(p, q, "a fresh nonce every packet");
        assert!(Key::new(b"short").is_err());
    }

    #[test]
    fn a_ring_opens_both_keys_during_a_rotation_and_seals_with_the_sending_one() {
        let ring = KeyRing::new(OLD, Some(NEW)).unwrap();
        let (old, new) = (KeyRing::new(OLD, None).unwrap(), KeyRing::new(NEW, None).unwrap());
        for other in [&old, &new] {
            let mut p = b"x".to_vec();
            other.seal(&mut p);
            assert!(ring.open(&p).is_some());
        }
        let mut p = b"x".to_vec();
        ring.seal(&mut p);
        assert!(old.open(&p).is_some() && new.open(&p).is_none(), "sends with the current key until rule 3, step a");
        assert_eq!(ring.ids(), (old.ids().0, new.ids().0));
    }

    #[test]
    fn rotation_switches_when_all_hold_the_next_key_and_drops_when_all_send_it() {
        let ring = KeyRing::new(OLD, Some(NEW)).unwrap();
        let (old_id, new_id) = ring.ids();
        let holds_old = Report { sends: old_id, holds: old_id };
        let holds_both = Report { sends: old_id, holds: new_id };
        let sends_new = Report { sends: new_id, holds: old_id };
        assert_eq!(ring.advance([Some(&holds_both), Some(&holds_old)].into_iter()), None, "one member lacks it");
        assert_eq!(ring.advance([Some(&holds_both), None].into_iter()), None, "one member not heard from");
        assert_eq!(ring.advance([Some(&holds_both), Some(&holds_both)].into_iter()), Some(Step::Switched(new_id)));
        assert_eq!(ring.sending().id, new_id);
        assert_eq!(ring.phase(), (2, true));
        assert_eq!(ring.advance([Some(&sends_new), Some(&holds_both)].into_iter()), None, "one member still sends the old key");
        assert_eq!(ring.advance([Some(&sends_new), Some(&sends_new)].into_iter()), Some(Step::Dropped(old_id)));
        assert!(ring.find(old_id).is_none() && ring.find(new_id).is_some());
        assert_eq!(ring.phase(), (1, false));
        assert_eq!(ring.advance(std::iter::empty()), None, "nothing left to rotate");
        // A reload from key files not yet updated does not undo it.
        assert_eq!(ring.reload(OLD, Some(NEW)).unwrap(), (new_id, new_id));
        assert!(ring.reload(OLD, None).is_err(), "only a retired key");
    }

    #[test]
    fn a_node_alone_takes_no_step_and_a_reload_ends_its_rotation() {
        let ring = KeyRing::new(OLD, None).unwrap();
        let (old_id, _) = ring.ids();
        let (sends, holds) = ring.reload(OLD, Some(NEW)).unwrap();
        assert_eq!(sends, old_id, "still sends with the key the cluster has");
        assert_ne!(holds, old_id);
        assert_eq!(ring.advance(std::iter::empty()), None, "no member to agree: no step");
        assert_eq!(ring.reload(NEW, None).unwrap(), (holds, holds), "the operator ends it");
        assert!(ring.find(old_id).is_none());
    }

    #[test]
    fn a_member_without_the_next_key_turns_the_switch_back_and_an_isolated_node_alternates() {
        let ring = KeyRing::new(OLD, Some(NEW)).unwrap();
        let (old_id, new_id) = ring.ids();
        let holds_both = Report { sends: old_id, holds: new_id };
        let holds_old = Report { sends: old_id, holds: old_id };
        assert_eq!(ring.advance([Some(&holds_both)].into_iter()), Some(Step::Switched(new_id)));
        assert_eq!(ring.advance([Some(&holds_both), Some(&holds_old)].into_iter()), Some(Step::Reverted(new_id)), "a newcomer with the old key only");
        assert_eq!(ring.sending().id, old_id);
        assert!(ring.alternate() && ring.sending().id == new_id);
        assert!(ring.alternate() && ring.sending().id == old_id);
        assert!(!KeyRing::new(OLD, None).unwrap().alternate(), "one key: nothing to alternate");
    }

    /// Rule 7: the holder of a leaked old key gossips with it during the
    /// rotation; each of its packets turned the switch back (issue 25). A
    /// forced rotation does not wait for it, drops the old key once the
    /// members that hold the new one send with it, and so cuts it off.
    #[test]
    fn a_forced_rotation_is_not_held_back_by_a_member_with_the_old_key_only() {
        let ring = KeyRing::new(OLD, Some(NEW)).unwrap();
        let (old_id, new_id) = ring.ids();
        let leaked = Report { sends: old_id, holds: old_id };
        let holds_both = Report { sends: old_id, holds: new_id };
        let sends_new = Report { sends: new_id, holds: old_id };
        // Unforced: the leaked key's holder keeps it from switching.
        for _ in 0..3 {
            assert_eq!(ring.advance([Some(&holds_both), Some(&leaked)].into_iter()), None);
        }
        assert!(KeyRing::new(OLD, None).unwrap().force().is_err(), "nothing to force with one key");
        assert_eq!(ring.force(), Ok(Step::Switched(new_id)));
        assert!(ring.forced() && ring.sending().id == new_id);
        // A member that holds the new key but still sends the old: wait.
        assert_eq!(ring.advance([Some(&holds_both), Some(&leaked)].into_iter()), None);
        assert_eq!(ring.sending().id, new_id, "never turned back while forced");
        // Every holder of the new key sends with it: the old key goes.
        assert_eq!(ring.advance([Some(&sends_new), Some(&leaked), None].into_iter()), Some(Step::Dropped(old_id)));
        assert!(ring.find(old_id).is_none(), "the leaked key opens nothing now");
        assert!(!ring.forced() && ring.phase() == (1, false));
        assert!(ring.reload(OLD, Some(NEW)).is_ok() && ring.find(old_id).is_none(), "retired: a stale reload does not bring it back");
    }
}
