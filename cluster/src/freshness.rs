//! Gossip packets that cannot be replayed or redirected: the header every
//! sealed packet carries, and the window each node keeps per sender.
//!
//! Layout, encrypted with the rest of the packet ([`crate::keyring`] rule 1):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | kind ([`crate::membership::KIND_FOCA`] or `KIND_SYNC`) |
//! | 19 | sender address |
//! | 8 | sender epoch: the sender's boot number, higher at every start |
//! | 8 | sequence: per sender and epoch, 1, 2, 3, … |
//! | 19 | destination address |
//! | 4 | the other key the sender holds, or the sealing one ([`crate::keyring`] rule 3) |
//! | … | body |
//!
//! An address is a family byte (4 or 6), 16 bytes of IP (an IPv4 one in its
//! first 4) and a little-endian port.
//!
//! Rules:
//! 1. A packet whose destination is not this node is refused
//!    (`wrong_destination`): one captured on its way to B and sent to A, or
//!    sent back to its own sender, says nothing to them.
//! 2. Per sender address, a node keeps the highest epoch seen and, in it,
//!    a window of the last [`REPLAY_WINDOW`] sequence numbers (as IPsec
//!    does). A packet of an older epoch, of a sequence already seen, or older
//!    than the window is refused (`replay`). A higher epoch (the sender
//!    restarted) starts a new window.
//! 3. Only packets that opened under a held key reach the window, so no one without
//!    the key can fill it; its memory is one entry per sender, about 200
//!    bytes. A key holder chooses the sender address it writes, so the
//!    windows are bounded anyway: at most [`REPLAY_SENDERS_MAX`], the one
//!    heard from least recently making way for a new sender; and a member
//!    declared down has its window forgotten ([`Freshness::forget`]).
//! 4. What is not covered: after *this* node restarts, it knows no window,
//!    so a packet captured before the restart, from a sender's current
//!    epoch, is taken once if it comes before the sender's next packet.
//!    foca's own incarnation numbers make such old news stale.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::keyring::{KeyId, KEY_ID_BYTES};

/// Bytes of an encoded address.
pub const ADDR_BYTES: usize = 19;
/// Bytes of the header.
pub const HEADER_BYTES: usize = 1 + ADDR_BYTES + 8 + 8 + ADDR_BYTES + KEY_ID_BYTES;
/// Sequence numbers remembered per sender (rule 2).
pub const REPLAY_WINDOW: u64 = 1024;
/// Senders whose windows are kept at once (rule 3): far above a cluster's
/// members (ADR-0017 plans for 100 nodes). Past it, the sender heard from
/// least recently is forgotten (a replay of its old packets could then be
/// taken once, as after this node restarts: rule 4).
pub const REPLAY_SENDERS_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub from: SocketAddr,
    pub epoch: u64,
    pub seq: u64,
    pub to: SocketAddr,
    /// The other key the sender holds (rotation), or the one it sealed with.
    pub holds: KeyId,
}

fn encode_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    let (family, ip) = match addr.ip() {
        IpAddr::V4(v4) => {
            let mut ip = [0u8; 16];
            ip[..4].copy_from_slice(&v4.octets());
            (4u8, ip)
        }
        IpAddr::V6(v6) => (6u8, v6.octets()),
    };
    out.push(family);
    out.extend_from_slice(&ip);
    out.extend_from_slice(&addr.port().to_le_bytes());
}

fn decode_addr(b: &[u8]) -> Option<SocketAddr> {
    let b: &[u8; ADDR_BYTES] = b.try_into().ok()?;
    let port = u16::from_le_bytes([b[17], b[18]]);
    let ip: IpAddr = match b[0] {
        4 if b[5..17].iter().all(|&x| x == 0) => IpAddr::from([b[1], b[2], b[3], b[4]]),
        6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[1..17]).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

impl Header {
    /// Appends the header to an empty packet.
    pub fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(out.is_empty());
        out.push(self.kind);
        encode_addr(out, self.from);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        encode_addr(out, self.to);
        out.extend_from_slice(&self.holds.0);
        debug_assert_eq!(out.len(), HEADER_BYTES);
    }

    /// The header and the body after it; `None` if malformed.
    pub fn decode(packet: &[u8]) -> Option<(Header, &[u8])> {
        if packet.len() < HEADER_BYTES {
            return None;
        }
        let (head, body) = packet.split_at(HEADER_BYTES);
        let from = decode_addr(&head[1..1 + ADDR_BYTES])?;
        let at = 1 + ADDR_BYTES;
        let epoch = u64::from_le_bytes(head[at..at + 8].try_into().unwrap());
        let seq = u64::from_le_bytes(head[at + 8..at + 16].try_into().unwrap());
        let to = decode_addr(&head[at + 16..at + 16 + ADDR_BYTES])?;
        let holds = KeyId(head[HEADER_BYTES - KEY_ID_BYTES..].try_into().unwrap());
        Some((Header { kind: head[0], from, epoch, seq, to, holds }, body))
    }
}

/// Why a sealed, authentic packet is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Rule 1.
    WrongDestination,
    /// Rule 2.
    Replay,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// When this sender was last heard, in packets checked (rule 3).
    heard: u64,
    epoch: u64,
    /// Highest sequence seen in `epoch`.
    top: u64,
    /// Bit i: `top - i` was seen.
    seen: [u64; (REPLAY_WINDOW / 64) as usize],
}

impl Window {
    fn fresh(heard: u64, epoch: u64, seq: u64) -> Window {
        let mut w = Window { heard, epoch, top: seq, seen: [0; (REPLAY_WINDOW / 64) as usize] };
        w.mark(0);
        w
    }

    fn is_marked(&self, back: u64) -> bool {
        self.seen[(back / 64) as usize] & (1 << (back % 64)) != 0
    }

    fn mark(&mut self, back: u64) {
        self.seen[(back / 64) as usize] |= 1 << (back % 64);
    }

    /// Moves the top to `seq`, shifting the bitmap by the difference.
    fn advance(&mut self, seq: u64) {
        let shift = seq - self.top;
        self.top = seq;
        if shift >= REPLAY_WINDOW {
            self.seen = [0; (REPLAY_WINDOW / 64) as usize];
            return;
        }
        // Shift the whole bitmap towards older (higher indices).
        let (words, bits) = ((shift / 64) as usize, (shift % 64) as u32);
        let n = self.seen.len();
        for i in (0..n).rev() {
            let from = i.checked_sub(words);
            let hi = from.map_or(0, |f| self.seen[f]);
            let lo = from.and_then(|f| f.checked_sub(1)).map_or(0, |f| self.seen[f]);
            self.seen[i] = if bits == 0 { hi } else { (hi << bits) | (lo >> (64 - bits)) };
        }
    }
}

/// The windows of every sender this node heard from (rules 2 and 3).
#[derive(Debug, Default)]
pub struct Freshness {
    windows: HashMap<SocketAddr, Window>,
    /// Packets checked: the clock of `Window::heard`.
    checked: u64,
}

impl Freshness {
    /// Takes the header of an authentic packet addressed to `me`: `Ok` if
    /// it is new, and remembers it.
    pub fn check(&mut self, me: SocketAddr, h: &Header) -> Result<(), Stale> {
        if h.to != me {
            return Err(Stale::WrongDestination);
        }
        self.checked += 1;
        let Some(w) = self.windows.get_mut(&h.from) else {
            if self.windows.len() >= REPLAY_SENDERS_MAX {
                self.forget_least_recent();
            }
            self.windows.insert(h.from, Window::fresh(self.checked, h.epoch, h.seq));
            assert!(self.windows.len() <= REPLAY_SENDERS_MAX, "rule 3");
            return Ok(());
        };
        w.heard = self.checked;
        if h.epoch < w.epoch {
            return Err(Stale::Replay);
        }
        if h.epoch > w.epoch {
            *w = Window::fresh(self.checked, h.epoch, h.seq);
            return Ok(());
        }
        if h.seq > w.top {
            w.advance(h.seq);
            w.mark(0);
            return Ok(());
        }
        let back = w.top - h.seq;
        if back >= REPLAY_WINDOW || w.is_marked(back) {
            return Err(Stale::Replay);
        }
        w.mark(back);
        Ok(())
    }

    /// Forgets a sender's window (rule 3: a member declared down).
    pub fn forget(&mut self, sender: &SocketAddr) {
        self.windows.remove(sender);
    }

    fn forget_least_recent(&mut self) {
        let oldest = self.windows.iter().min_by_key(|(_, w)| w.heard).map(|(a, _)| *a);
        if let Some(a) = oldest {
            self.windows.remove(&a);
        }
    }

    /// Senders remembered.
    pub fn senders(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn h(from: &str, epoch: u64, seq: u64, to: &str) -> Header {
        Header { kind: 0, from: addr(from), epoch, seq, to: addr(to), holds: KeyId([1, 2, 3, 4]) }
    }

    #[test]
    fn headers_round_trip_for_both_families() {
        for (from, to) in [("10.0.0.1:7946", "10.0.0.2:7946"), ("[fe80::1]:1", "[::1]:65535")] {
            let header = Header { kind: 1, from: addr(from), epoch: 7, seq: u64::MAX, to: addr(to), holds: KeyId::default() };
            let mut out = Vec::new();
            header.encode(&mut out);
            out.extend_from_slice(b"body");
            assert_eq!(Header::decode(&out), Some((header, &b"body"[..])));
        }
        assert!(Header::decode(&[0; HEADER_BYTES - 1]).is_none());
        let mut bad = vec![0u8; HEADER_BYTES];
        bad[1] = 5; // no such family
        assert!(Header::decode(&bad).is_none());
    }

    #[test]
    fn each_packet_is_taken_once_and_only_by_its_destination() {
        let (a, b) = ("10.0.0.1:1", "10.0.0.2:1");
        let mut f = Freshness::default();
        assert_eq!(f.check(addr(b), &h(a, 1, 5, a)), Err(Stale::WrongDestination));
        assert_eq!(f.check(addr(b), &h(a, 1, 5, b)), Ok(()));
        assert_eq!(f.check(addr(b), &h(a, 1, 5, b)), Err(Stale::Replay));
        assert_eq!(f.check(addr(b), &h(a, 1, 3, b)), Ok(()), "late, but new");
        assert_eq!(f.check(addr(b), &h(a, 1, 3, b)), Err(Stale::Replay));
        assert_eq!(f.check(addr(b), &h(a, 1, 5 + 100, b)), Ok(()));
        assert_eq!(f.check(addr(b), &h(a, 1, 4, b)), Ok(()), "still in the window");
        assert_eq!(f.check(addr(b), &h(a, 1, 5, b)), Err(Stale::Replay), "remembered across the shift");
        assert_eq!(f.check(addr(b), &h(a, 1, 5 + 100 + REPLAY_WINDOW, b)), Ok(()));
        assert_eq!(f.check(addr(b), &h(a, 1, 100, b)), Err(Stale::Replay), "older than the window");
        assert_eq!(f.check(addr(b), &h(a, 2, 1, b)), Ok(()), "a restart starts over");
        assert_eq!(f.check(addr(b), &h(a, 1, 5000, b)), Err(Stale::Replay), "an old epoch is stale");
        assert_eq!(f.senders(), 1);
    }

    /// Rule 3: a key holder that writes a new sender address in every
    /// packet cannot grow the windows past their bound; the senders heard
    /// from most recently keep theirs, and a member declared down is
    /// forgotten.
    #[test]
    fn windows_are_bounded_whatever_senders_a_key_holder_names() {
        let mut f = Freshness::default();
        let me = "10.0.0.1:7946";
        assert!(f.check(addr(me), &h("10.0.0.2:7946", 1, 1, me)).is_ok());
        for i in 0..(REPLAY_SENDERS_MAX as u32 * 2) {
            let forged = SocketAddr::from(([172, 16, (i >> 8) as u8, i as u8], 1000 + (i >> 16) as u16));
            assert!(f.check(addr(me), &h(&forged.to_string(), 1, 1, me)).is_ok());
            if i % 100 == 0 {
                // A real member keeps talking: its window is kept.
                assert!(f.check(addr(me), &h("10.0.0.2:7946", 1, 2 + i as u64 / 100, me)).is_ok());
            }
            assert!(f.senders() <= REPLAY_SENDERS_MAX);
        }
        assert_eq!(f.check(addr(me), &h("10.0.0.2:7946", 1, 1, me)), Err(Stale::Replay), "the member's window survived the flood");
        f.forget(&addr("10.0.0.2:7946"));
        assert_eq!(f.senders(), REPLAY_SENDERS_MAX - 1);
    }

    #[test]
    fn the_window_matches_a_plain_set_for_any_order() {
        // Oracle: a set of everything seen, with the window's rule.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (a, b) = ("10.0.0.1:1", "10.0.0.2:1");
        let mut f = Freshness::default();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..20_000u64 {
            let seq = (i + next() % 3000).saturating_sub(1500).max(1);
            let top = seen.iter().next_back().copied().unwrap_or(0);
            let want = if seen.contains(&seq) || (top >= REPLAY_WINDOW && seq <= top - REPLAY_WINDOW) { Err(Stale::Replay) } else { Ok(()) };
            assert_eq!(f.check(addr(b), &h(a, 1, seq, b)), want, "seq {seq} after top {top}");
            if want.is_ok() {
                seen.insert(seq);
            }
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::fuzz::config(1024))]

            #[test]
            fn any_header_bytes_decode_or_refuse(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
                if let Some((h, body)) = Header::decode(&bytes) {
                    let mut again = Vec::new();
                    h.encode(&mut again);
                    again.extend_from_slice(body);
                    prop_assert_eq!(again.len(), bytes.len());
                }
            }
        }
    }
}
