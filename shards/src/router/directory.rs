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

use std::collections::HashMap;

use crate::link::NodeIdx;

use super::LocalId;

/// A name of this node: its instance count, and the local mailbox of each
/// instance placed on this shard.
pub struct DirEntry {
    pub instances: u32,
    pub local: Box<[Option<LocalId>]>,
}

#[derive(Default)]
pub struct Directory {
    own: HashMap<Box<str>, DirEntry>,
    remote: HashMap<Box<str>, NodeIdx>,
}

impl Directory {
    /// Adds a name of this node (rule 2).
    pub fn add(&mut self, name: &str, entry: DirEntry) -> Result<(), String> {
        assert!(entry.instances as usize == entry.local.len());
        if self.own.contains_key(name) {
            return Err(format!("agent {name} is already here"));
        }
        self.own.insert(name.into(), entry);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Option<DirEntry> {
        self.own.remove(name)
    }

    pub fn get(&self, name: &str) -> Option<&DirEntry> {
        self.own.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.own.contains_key(name)
    }

    /// `agent` lives on node `node`, or nowhere known (rule 3).
    pub fn set_remote(&mut self, agent: &str, node: Option<NodeIdx>) {
        match node {
            Some(n) => {
                self.remote.insert(agent.into(), n);
            }
            None => {
                self.remote.remove(agent);
            }
        }
    }

    /// The node hosting `agent`, if another one does.
    pub fn remote(&self, agent: &str) -> Option<NodeIdx> {
        self.remote.get(agent).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_added_once_and_remote_routes_come_and_go() {
        let mut d = Directory::default();
        d.add("a", DirEntry { instances: 2, local: vec![Some(0), None].into() }).unwrap();
        assert!(d.add("a", DirEntry { instances: 1, local: vec![None].into() }).is_err());
        assert_eq!(d.get("a").unwrap().instances, 2);
        assert!(d.remove("a").is_some() && d.remove("a").is_none());
        d.set_remote("far", Some(3));
        assert_eq!(d.remote("far"), Some(3));
        d.set_remote("far", None);
        assert_eq!(d.remote("far"), None);
    }
}
