//! The agent registry: which node hosts each agent name, spread as foca
//! custom broadcasts.
//!
//! Rules:
//! 1. A node is the authority for the names it hosts: only it publishes
//!    items naming itself (deploy: `present`, undeploy: a tombstone).
//! 2. Versions order the items of one name; an item older than or equal to
//!    what a node knows is not news and is not passed on. Versions are the
//!    publisher's wall clock in microseconds, bumped past the last one it
//!    used, so a name moved between nodes orders by time of deploy.
//! 3. foca passes each item on a bounded number of times; a node that joins
//!    later learns the names of each member from that member, which sends
//!    them to it alone on seeing it come up ([`crate::Membership::sync_to`]).
//! 4. A node this one forgot (an operator's `caxton cluster forget`, or a
//!    member down past the reap time) has its items dropped, and items
//!    naming it are no news until it is seen alive again: a late broadcast
//!    cannot bring a forgotten node's names back. The most recent
//!    [`FORGOTTEN_NODES_MAX`] forgotten nodes are remembered as such.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};

use crate::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteItem {
    pub agent: String,
    pub node: SocketAddr,
    pub version: u64,
    /// `false`: a tombstone (the agent was undeployed from `node`).
    pub present: bool,
}

impl RouteItem {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a route item serializes")
    }

    pub fn decode(data: &[u8]) -> Result<RouteItem, RegistryError> {
        postcard::from_bytes(data).map_err(|_| RegistryError)
    }
}

/// What foca keeps per queued item: newer items of a name replace older ones.
pub struct RouteKey {
    agent: String,
    version: u64,
}

impl Invalidates for RouteKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.agent == other.agent && self.version >= other.version
    }
}

#[derive(Debug)]
pub struct RegistryError;

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed registry item")
    }
}

impl std::error::Error for RegistryError {}

/// Forgotten nodes whose items are refused until they come back (rule 4).
/// Cost: a socket address each. Exceeded: the oldest is no longer refused
/// (only a late broadcast of its names could then bring them back).
pub const FORGOTTEN_NODES_MAX: usize = 1024;

#[derive(Default)]
pub struct Registry {
    routes: HashMap<String, RouteItem>,
    /// Items that changed what this node knows, for the driver to apply.
    changes: Vec<RouteItem>,
    /// Nodes forgotten and not seen alive since (rule 4), oldest first.
    forgotten: VecDeque<SocketAddr>,
}

impl Registry {
    /// Starts from what a node cached (its `routes` table).
    pub fn with_routes(items: impl IntoIterator<Item = RouteItem>) -> Registry {
        Registry { routes: items.into_iter().map(|r| (r.agent.clone(), r)).collect(), changes: Vec::new(), forgotten: VecDeque::new() }
    }

    pub fn get(&self, agent: &str) -> Option<&RouteItem> {
        self.routes.get(agent)
    }

    pub fn iter(&self) -> impl Iterator<Item = &RouteItem> {
        self.routes.values()
    }

    pub fn take_changes(&mut self) -> Vec<RouteItem> {
        std::mem::take(&mut self.changes)
    }

    /// Takes an item a member sent in a sync packet. Returns whether it was
    /// news.
    pub fn learn_remote(&mut self, item: RouteItem) -> bool {
        self.learn(item, false)
    }

    /// Drops every item naming `node` and refuses new ones until it is
    /// seen alive again (rule 4). Returns the names it hosted.
    pub fn forget_node(&mut self, node: SocketAddr) -> Vec<String> {
        let names: Vec<String> = self.routes.values().filter(|r| r.node == node).map(|r| r.agent.clone()).collect();
        for name in &names {
            self.routes.remove(name);
        }
        if !self.forgotten.contains(&node) {
            if self.forgotten.len() == FORGOTTEN_NODES_MAX {
                self.forgotten.pop_front();
            }
            self.forgotten.push_back(node);
        }
        assert!(self.routes.values().all(|r| r.node != node) && self.forgotten.len() <= FORGOTTEN_NODES_MAX);
        names
    }

    /// `node` is alive again: its items are news again (rule 4).
    pub fn remember(&mut self, node: SocketAddr) {
        self.forgotten.retain(|n| *n != node);
    }

    fn learn(&mut self, item: RouteItem, local: bool) -> bool {
        if !local && self.forgotten.contains(&item.node) {
            return false;
        }
        let news = match self.routes.get(&item.agent) {
            None => true,
            Some(known) => item.version > known.version || (local && item.version == known.version),
        };
        if news {
            self.routes.insert(item.agent.clone(), item.clone());
            self.changes.push(item);
        }
        news
    }
}

impl BroadcastHandler<NodeId> for Registry {
    type Key = RouteKey;
    type Error = RegistryError;

    fn receive_item(&mut self, data: &[u8], sender: Option<&NodeId>) -> Result<Option<RouteKey>, RegistryError> {
        let item = RouteItem::decode(data)?;
        let key = RouteKey { agent: item.agent.clone(), version: item.version };
        // `sender == None`: published here (rule 1), always passed on.
        Ok(self.learn(item, sender.is_none()).then_some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(agent: &str, version: u64, present: bool) -> RouteItem {
        RouteItem { agent: agent.into(), node: "127.0.0.1:7000".parse().unwrap(), version, present }
    }

    #[test]
    fn newer_items_replace_older_and_old_news_is_not_passed_on() {
        let mut r = Registry::default();
        let from = NodeId::seed("127.0.0.9:1".parse().unwrap());
        assert!(r.receive_item(&item("a", 5, true).encode(), Some(&from)).unwrap().is_some());
        assert!(r.receive_item(&item("a", 5, true).encode(), Some(&from)).unwrap().is_none());
        assert!(r.receive_item(&item("a", 4, false).encode(), Some(&from)).unwrap().is_none());
        assert!(r.receive_item(&item("a", 6, false).encode(), Some(&from)).unwrap().is_some());
        assert!(!r.get("a").unwrap().present);
        assert_eq!(r.take_changes().len(), 2);
        assert!(r.receive_item(b"\xff\xff\xff", Some(&from)).is_err());
    }

    #[test]
    fn a_local_republish_goes_out_again() {
        let mut r = Registry::default();
        assert!(r.receive_item(&item("a", 5, true).encode(), None).unwrap().is_some());
        assert!(r.receive_item(&item("a", 5, true).encode(), None).unwrap().is_some());
        let newer = RouteKey { agent: "a".into(), version: 6 };
        assert!(newer.invalidates(&RouteKey { agent: "a".into(), version: 5 }));
        assert!(!newer.invalidates(&RouteKey { agent: "b".into(), version: 1 }));
    }

    /// Rule 4: a forgotten node's names go, a late item naming it is no
    /// news (and not passed on), and once it is alive again it is heard.
    #[test]
    fn a_forgotten_node_stays_forgotten_until_it_comes_back() {
        let mut r = Registry::default();
        let from = NodeId::seed("127.0.0.9:1".parse().unwrap());
        let gone: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        r.receive_item(&item("a", 5, true).encode(), Some(&from)).unwrap();
        r.receive_item(&item("b", 5, false).encode(), Some(&from)).unwrap();
        let other = RouteItem { node: "127.0.0.2:7000".parse().unwrap(), ..item("c", 1, true) };
        r.receive_item(&other.encode(), Some(&from)).unwrap();
        let mut names = r.forget_node(gone);
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert!(r.get("a").is_none() && r.get("c").is_some());
        assert!(r.receive_item(&item("a", 6, true).encode(), Some(&from)).unwrap().is_none(), "a late broadcast is no news");
        assert!(!r.learn_remote(item("d", 1, true)), "nor a sync");
        assert!(r.get("a").is_none() && r.get("d").is_none());
        r.remember(gone);
        assert!(r.learn_remote(item("a", 5, true)), "alive again: its names are heard");
        for port in 0..=FORGOTTEN_NODES_MAX as u16 {
            r.forget_node(SocketAddr::from(([10, 0, 0, 1], port)));
        }
        assert!(r.forgotten.len() == FORGOTTEN_NODES_MAX && !r.forgotten.contains(&SocketAddr::from(([10, 0, 0, 1], 0))), "bounded, oldest out");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::fuzz::config(1024))]

            #[test]
            fn items_round_trip_and_garbage_is_an_error(agent in "[a-z0-9._-]{1,64}", port in any::<u16>(), version in any::<u64>(), present in any::<bool>(), junk in prop::collection::vec(any::<u8>(), 0..200)) {
                let item = RouteItem { agent, node: std::net::SocketAddr::from(([10, 0, 0, 1], port)), version, present };
                prop_assert_eq!(RouteItem::decode(&item.encode()).unwrap(), item);
                let _ = RouteItem::decode(&junk); // any answer but a panic
                let mut r = Registry::default();
                let _ = r.receive_item(&junk, None);
            }
        }
    }
}
