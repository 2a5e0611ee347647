//! Keyed agents on one shard: one activation per key of a keyed type, made
//! when a message (or a due timer) comes for the key, put away when it goes
//! quiet.
//!
//! Rules:
//! 1. A keyed type is in every shard's directory. A key's activation lives
//!    on the shard [`key_shard`](crate::placement::key_shard) picks from
//!    the whole address `TYPE/KEY`, so every message to a key reaches the
//!    same activation, in order (router rule 3).
//! 2. Only live activations are in memory: an address → mailbox map and an
//!    LRU order, about 100 bytes each plus the address. A passive key costs
//!    nothing here; its state and timers are rows of the shard's database.
//! 3. An activation is made in two steps. The router opens its mailbox when
//!    a message is routed to the key (also from inside a handler's send:
//!    no guest code runs then) and lists it as made; the shard gives it an
//!    instance slot before its next dispatch, and the instance is made, and
//!    `caxton_init` run, when its first message is delivered.
//! 4. Passivation takes only an activation whose mailbox holds and expects
//!    nothing (no message queued, no room reserved), between handler calls;
//!    a message for the key afterwards makes a new activation (rule 3).
//!    Nothing is lost, and nothing overtakes.
//! 5. A shard holds at most a bound of activations, live or waiting for
//!    their first delivery (twice its share of `--keyed-active-max`, and
//!    at least that share plus a tick's messages). Past it, a message for
//!    a passive key is refused busy, as a full mailbox refuses one (REST
//!    429, `send` -2, the wire retries), until activations are handled and
//!    passivated: a flood to distinct keys costs bounded memory.
//!
//! Steady state allocates nothing but the map entries of new activations.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use super::LocalId;

/// Why an activation was passivated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passivation {
    /// No message for `--keyed-idle`.
    Idle,
    /// The shard's share of `--keyed-active-max` was reached.
    Cap,
    /// Its key was deleted (`DELETE /v1/agents/NAME/keys/KEY`).
    Deleted,
}

impl Passivation {
    pub const ALL: [(Passivation, &'static str); 3] = [(Passivation::Idle, "idle"), (Passivation::Cap, "cap"), (Passivation::Deleted, "deleted")];
}

/// What one keyed type did on this shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyedCounts {
    pub active: u64,
    pub activations: u64,
    /// Messages its activations handled.
    pub handled: u64,
    pub passivations: [u64; Passivation::ALL.len()],
}

impl KeyedCounts {
    pub fn add(&mut self, other: &KeyedCounts) {
        self.active += other.active;
        self.activations += other.activations;
        self.handled += other.handled;
        for (a, b) in self.passivations.iter_mut().zip(other.passivations) {
            *a += b;
        }
    }
}

const NONE: LocalId = LocalId::MAX;

#[derive(Clone, Copy)]
struct Link {
    prev: LocalId,
    next: LocalId,
    linked: bool,
    last_used_ns: u64,
}

const UNLINKED: Link = Link { prev: NONE, next: NONE, linked: false, last_used_ns: 0 };

/// Live activations in least recently used order, indexed by mailbox id
/// (ids are dense and reused, so a `Vec` is the map). O(1) each.
#[derive(Default)]
struct Lru {
    links: Vec<Link>,
    head: Option<LocalId>,
    tail: Option<LocalId>,
}

impl Lru {
    fn push_back(&mut self, id: LocalId, now_ns: u64) {
        let i = id as usize;
        if self.links.len() <= i {
            self.links.resize(i + 1, UNLINKED);
        }
        assert!(!self.links[i].linked, "linked once");
        self.links[i] = Link { prev: self.tail.unwrap_or(NONE), next: NONE, linked: true, last_used_ns: now_ns };
        match self.tail {
            Some(t) => self.links[t as usize].next = id,
            None => self.head = Some(id),
        }
        self.tail = Some(id);
    }

    fn remove(&mut self, id: LocalId) {
        let Link { prev, next, linked, .. } = self.links[id as usize];
        assert!(linked, "removed once");
        match prev {
            NONE => self.head = (next != NONE).then_some(next),
            p => self.links[p as usize].next = next,
        }
        match next {
            NONE => self.tail = (prev != NONE).then_some(prev),
            n => self.links[n as usize].prev = prev,
        }
        self.links[id as usize] = UNLINKED;
    }

    fn touch(&mut self, id: LocalId, now_ns: u64) {
        if self.tail == Some(id) {
            self.links[id as usize].last_used_ns = now_ns;
            return;
        }
        self.remove(id);
        self.push_back(id, now_ns);
    }

    fn next_of(&self, id: LocalId) -> Option<LocalId> {
        let n = self.links[id as usize].next;
        (n != NONE).then_some(n)
    }
}

/// The live activations of this shard's keyed types (rule 2).
#[derive(Default)]
pub struct Activations {
    by_address: HashMap<Box<[u8]>, LocalId, RandomState>,
    /// The address of each live activation, by mailbox id.
    addresses: Vec<Option<(Arc<str>, Arc<str>)>>,
    lru: Lru,
    /// Made by the router, not yet given a slot by the shard (rule 3).
    made: Vec<LocalId>,
    counts: HashMap<Arc<str>, KeyedCounts, RandomState>,
    /// Rule 5: activations this shard may hold, live or waiting for their
    /// first delivery.
    live_max: Option<usize>,
}

impl Activations {
    /// Sets rule 5's bound (none until set: unit tests).
    pub fn set_live_max(&mut self, max: usize) {
        assert!(max > 0);
        self.live_max = Some(max);
    }

    /// May a new activation be made now? (rule 5)
    pub fn has_room(&self) -> bool {
        self.live_max.is_none_or(|max| self.by_address.len() < max)
    }

    pub fn get(&self, address: &[u8]) -> Option<LocalId> {
        self.by_address.get(address).copied()
    }

    /// Records a new activation of `address` (of keyed type `type_name`)
    /// in mailbox `id` (rule 3).
    pub fn insert(&mut self, type_name: &Arc<str>, address: &str, id: LocalId, now_ns: u64) {
        let i = id as usize;
        if self.addresses.len() <= i {
            self.addresses.resize(i + 1, None);
        }
        assert!(self.addresses[i].is_none(), "a mailbox holds one activation");
        let previous = self.by_address.insert(address.as_bytes().into(), id);
        assert!(previous.is_none(), "one activation per key");
        self.addresses[i] = Some((type_name.clone(), Arc::from(address)));
        self.lru.push_back(id, now_ns);
        self.made.push(id);
        let counts = self.counts.entry(type_name.clone()).or_default();
        counts.active += 1;
        counts.activations += 1;
    }

    /// Forgets activation `id`; returns its address.
    pub fn remove(&mut self, id: LocalId, why: Passivation) -> Arc<str> {
        let (type_name, address) = self.addresses[id as usize].take().expect("a live activation");
        let removed = self.by_address.remove(address.as_bytes());
        assert_eq!(removed, Some(id), "the map and the slots agree");
        self.lru.remove(id);
        self.made.retain(|&m| m != id);
        let counts = self.counts.get_mut(&type_name).expect("counted at insert");
        counts.active -= 1;
        counts.passivations[Passivation::ALL.iter().position(|(p, _)| *p == why).expect("listed")] += 1;
        address
    }

    /// `(type, address)` of activation `id`, if it is one.
    pub fn address_of(&self, id: LocalId) -> Option<&(Arc<str>, Arc<str>)> {
        self.addresses.get(id as usize).and_then(Option::as_ref)
    }

    /// A message was handled by activation `id`.
    pub fn touch(&mut self, id: LocalId, now_ns: u64) {
        let Some(Some((type_name, _))) = self.addresses.get(id as usize) else { return };
        self.counts.get_mut(type_name).expect("counted at insert").handled += 1;
        self.lru.touch(id, now_ns);
    }

    /// Activations made since the last call (rule 3).
    pub fn take_made(&mut self, into: &mut Vec<LocalId>) {
        into.append(&mut self.made);
    }

    pub fn has_made(&self) -> bool {
        !self.made.is_empty()
    }

    pub fn live(&self) -> usize {
        self.by_address.len()
    }

    /// Up to `max` activations, least recently used first, with when each
    /// was last used.
    pub fn oldest(&self, max: usize) -> impl Iterator<Item = (LocalId, u64)> + '_ {
        std::iter::successors(self.lru.head, |&id| self.lru.next_of(id)).take(max).map(|id| (id, self.lru.links[id as usize].last_used_ns))
    }

    /// The live activations of `type_name`.
    pub fn of_type<'a>(&'a self, type_name: &'a str) -> impl Iterator<Item = LocalId> + 'a {
        self.addresses.iter().enumerate().filter(move |(_, a)| a.as_ref().is_some_and(|(t, _)| &**t == type_name)).map(|(id, _)| id as LocalId)
    }

    pub fn counts(&self, type_name: &str) -> KeyedCounts {
        self.counts.get(type_name).copied().unwrap_or_default()
    }

    /// Forgets the counts of an undeployed type.
    pub fn forget_type(&mut self, type_name: &str) {
        assert!(self.of_type(type_name).next().is_none(), "its activations went first");
        self.counts.remove(type_name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lru_keeps_use_order_and_forgets_what_is_removed() {
        let mut a = Activations::default();
        let ty: Arc<str> = Arc::from("kv");
        for (id, key) in ["kv/a", "kv/b", "kv/c"].iter().enumerate() {
            a.insert(&ty, key, id as LocalId, id as u64);
        }
        let mut made = Vec::new();
        a.take_made(&mut made);
        assert_eq!(made, vec![0, 1, 2]);
        a.touch(0, 10);
        assert_eq!(a.oldest(9).map(|(id, _)| id).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(&*a.remove(2, Passivation::Cap), "kv/c");
        assert_eq!(a.oldest(9).collect::<Vec<_>>(), vec![(1, 1), (0, 10)]);
        assert_eq!(a.get(b"kv/c"), None);
        assert_eq!(a.get(b"kv/a"), Some(0));
        let c = a.counts("kv");
        assert_eq!((c.active, c.activations, c.handled, c.passivations), (2, 3, 1, [0, 1, 0]));
        a.remove(0, Passivation::Idle);
        a.remove(1, Passivation::Idle);
        assert_eq!(a.oldest(9).count(), 0);
        a.insert(&ty, "kv/a", 1, 20); // an id and an address come back
        assert_eq!(a.oldest(9).collect::<Vec<_>>(), vec![(1, 20)]);
    }
}
