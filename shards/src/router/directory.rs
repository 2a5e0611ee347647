//! Which agent names this node knows, how many instances each has and
//! which of them live on this shard; and which names live on other nodes.
//!
//! Rules:
//! 1. Every shard holds the whole directory of the node's own names (deploy
//!    commands reach every shard), so that it can place any message without
//!    a lookup elsewhere (`placement`).
//! 2. A name is here once: adding it twice is refused, removing an absent
//!    one does nothing (the control plane's mistakes are errors, never
//!    panics).
//! 3. Names on other nodes map to the node hosting them, as gossip says
//!    (`set_remote`); a name of this node wins over a remote route.
//! 4. Every name here is valid (the control plane checks it before adding):
//!    a receiver found here needs no check of its bytes.
//! 5. A lookup touches as few cache lines as it can (issue 26: with 10,000
//!    agents every one is cold): a name of up to [`NAME_INLINE_BYTES`]
//!    bytes and up to two local instances are kept in the table's own
//!    entry, not behind pointers of their own.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use foldhash::fast::RandomState;

use crate::link::NodeIdx;

use super::LocalId;

/// Bytes of a name kept in the table's entry (rule 5); a longer one is
/// kept on the heap. 30 makes a key 32 bytes, and most names fit.
pub const NAME_INLINE_BYTES: usize = 30;

/// A directory key: a name's bytes, inline when short (rule 5). Hashes and
/// compares as its bytes, so it is looked up by `&[u8]`.
#[derive(Clone, PartialEq, Eq)]
enum NameKey {
    Inline { len: u8, bytes: [u8; NAME_INLINE_BYTES] },
    Heap(Box<[u8]>),
}

impl NameKey {
    fn new(name: &[u8]) -> NameKey {
        if name.len() > NAME_INLINE_BYTES {
            return NameKey::Heap(name.into());
        }
        let mut bytes = [0; NAME_INLINE_BYTES];
        bytes[..name.len()].copy_from_slice(name);
        let key = NameKey::Inline { len: name.len() as u8, bytes };
        debug_assert_eq!(key.borrow() as &[u8], name);
        key
    }
}

impl Borrow<[u8]> for NameKey {
    fn borrow(&self) -> &[u8] {
        match self {
            NameKey::Inline { len, bytes } => &bytes[..*len as usize],
            NameKey::Heap(bytes) => bytes,
        }
    }
}

impl Hash for NameKey {
    /// As its bytes hash: `Borrow`'s contract, so `get(&[u8])` finds it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        <Self as Borrow<[u8]>>::borrow(self).hash(state)
    }
}

/// The local mailbox of each instance of a name, `None` for an instance
/// on another shard: up to two inline (rule 5).
#[derive(Clone, Debug)]
pub enum LocalIds {
    Inline { len: u8, ids: [Option<LocalId>; 2] },
    Heap(Box<[Option<LocalId>]>),
}

impl LocalIds {
    /// Instance `i`'s mailbox, if it lives on this shard.
    pub fn get(&self, i: usize) -> Option<LocalId> {
        match self {
            LocalIds::Inline { len, ids } => ids[..*len as usize].get(i).copied().flatten(),
            LocalIds::Heap(ids) => ids.get(i).copied().flatten(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            LocalIds::Inline { len, .. } => *len as usize,
            LocalIds::Heap(ids) => ids.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mailboxes on this shard.
    pub fn iter(&self) -> impl Iterator<Item = LocalId> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

impl From<Box<[Option<LocalId>]>> for LocalIds {
    fn from(ids: Box<[Option<LocalId>]>) -> LocalIds {
        if ids.len() > 2 {
            return LocalIds::Heap(ids);
        }
        let mut inline = [None; 2];
        inline[..ids.len()].copy_from_slice(&ids);
        LocalIds::Inline { len: ids.len() as u8, ids: inline }
    }
}

/// A name of this node: its instance count, and the local mailbox of each
/// instance placed on this shard.
pub struct DirEntry {
    pub instances: u32,
    pub local: LocalIds,
    /// A keyed type: no instances of its own, an activation per key
    /// (`keyed`).
    pub keyed: bool,
}

/// Looked up once per message sent (rule 4): hashed with foldhash, seeded at
/// random per process (names come from operators and authenticated peers;
/// the seed keeps colliding names from being precomputed).
#[derive(Default)]
pub struct Directory {
    own: HashMap<NameKey, DirEntry, RandomState>,
    remote: HashMap<Box<[u8]>, NodeIdx, RandomState>,
}

impl Directory {
    /// Adds a name of this node (rule 2).
    pub fn add(&mut self, name: &str, entry: DirEntry) -> Result<(), String> {
        assert!(entry.instances as usize == entry.local.len());
        if !caxton_abi::is_agent_name(name.as_bytes()) {
            return Err(format!("{name:?} is not an agent name (rule 4)"));
        }
        if self.own.contains_key(name.as_bytes()) {
            return Err(format!("agent {name} is already here"));
        }
        self.own.insert(NameKey::new(name.as_bytes()), entry);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Option<DirEntry> {
        self.own.remove(name.as_bytes())
    }

    /// `name` as the bytes of a message's receiver: none that is not valid
    /// UTF-8 (or not a valid name) is ever here (rule 4).
    pub fn get(&self, name: &[u8]) -> Option<&DirEntry> {
        self.own.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.own.contains_key(name.as_bytes())
    }

    /// `agent` lives on node `node`, or nowhere known (rule 3).
    pub fn set_remote(&mut self, agent: &str, node: Option<NodeIdx>) {
        match node {
            // Rule 4: a name gossip got wrong is not routed to.
            Some(_) if !caxton_abi::is_agent_name(agent.as_bytes()) => {}
            Some(n) => {
                self.remote.insert(agent.as_bytes().into(), n);
            }
            None => {
                self.remote.remove(agent.as_bytes());
            }
        }
    }

    /// The node hosting `agent`, if another one does.
    pub fn remote(&self, agent: &[u8]) -> Option<NodeIdx> {
        self.remote.get(agent).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_added_once_and_remote_routes_come_and_go() {
        let mut d = Directory::default();
        d.add("a", DirEntry { instances: 2, local: LocalIds::from(vec![Some(0), None].into_boxed_slice()), keyed: false }).unwrap();
        assert!(d.add("a", DirEntry { instances: 1, local: LocalIds::from(vec![None].into_boxed_slice()), keyed: false }).is_err());
        assert_eq!(d.get(b"a").unwrap().instances, 2);
        assert!(d.remove("a").is_some() && d.remove("a").is_none());
        d.set_remote("far", Some(3));
        assert_eq!(d.remote(b"far"), Some(3));
        d.set_remote("far", None);
        assert_eq!(d.remote(b"far"), None);
    }

    /// Rule 5: names either side of the inline length, and instance
    /// counts either side of two, are found as they were added.
    #[test]
    fn short_and_long_names_and_instance_lists_are_found_alike() {
        let mut d = Directory::default();
        let names: Vec<String> =
            [1, NAME_INLINE_BYTES - 1, NAME_INLINE_BYTES, NAME_INLINE_BYTES + 1, caxton_abi::NAME_BYTES_MAX].iter().map(|&n| "a".repeat(n)).collect();
        for (i, name) in names.iter().enumerate() {
            let local: Vec<Option<LocalId>> = (0..i as u32).map(|k| (k % 2 == 0).then_some(k + 10)).collect();
            d.add(name, DirEntry { instances: i as u32, local: LocalIds::from(local.into_boxed_slice()), keyed: false }).unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            let entry = d.get(name.as_bytes()).unwrap();
            assert_eq!((entry.instances as usize, entry.local.len()), (i, i));
            for k in 0..i {
                assert_eq!(entry.local.get(k), (k % 2 == 0).then_some(k as u32 + 10));
            }
            assert_eq!(entry.local.get(i), None, "past the last instance");
            assert_eq!(entry.local.iter().count(), i.div_ceil(2));
        }
        assert!(d.get(&[b'a'; 2][..]).is_none(), "a prefix of a name is not the name");
        assert!(d.get(&names[3].as_bytes()[..NAME_INLINE_BYTES]).is_some(), "is its own name");
        assert!(d.remove(&names[4]).is_some() && !d.contains(&names[4]));
    }
}
