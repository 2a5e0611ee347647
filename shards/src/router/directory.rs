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

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::link::NodeIdx;

use super::LocalId;

/// A name of this node: its instance count, and the local mailbox of each
/// instance placed on this shard.
pub struct DirEntry {
    pub instances: u32,
    pub local: Box<[Option<LocalId>]>,
    /// A keyed type: no instances of its own, an activation per key
    /// (`keyed`).
    pub keyed: bool,
}

/// Looked up once per message sent (rule 4): hashed with foldhash, seeded at
/// random per process (names come from operators and authenticated peers;
/// the seed keeps colliding names from being precomputed).
#[derive(Default)]
pub struct Directory {
    own: HashMap<Box<[u8]>, DirEntry, RandomState>,
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
        self.own.insert(name.as_bytes().into(), entry);
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
        d.add("a", DirEntry { instances: 2, local: vec![Some(0), None].into(), keyed: false }).unwrap();
        assert!(d.add("a", DirEntry { instances: 1, local: vec![None].into(), keyed: false }).is_err());
        assert_eq!(d.get(b"a").unwrap().instances, 2);
        assert!(d.remove("a").is_some() && d.remove("a").is_none());
        d.set_remote("far", Some(3));
        assert_eq!(d.remote(b"far"), Some(3));
        d.set_remote("far", None);
        assert_eq!(d.remote(b"far"), None);
    }
}
