//! What a node knows of its cluster, for its API and its shards, and the
//! pure logic that keeps it: membership news and registry changes in, the
//! view and the updates every shard must apply out. No I/O: the node's
//! gossip pump applies it to what its [`crate::Membership`] produces, and
//! tests (or the simulator) can apply it to theirs.
//!
//! Rules:
//! 1. A member's identity changes when it restarts (a higher boot): news
//!    about an older identity never overrides the newer one.
//! 2. A node named by a route is made known to the shards (as down) before
//!    the route, so a shard never holds a route to a node it cannot name.
//! 3. Suspects stay routable: SWIM has not given up on them. foca does not
//!    notify suspicion, so it is read off its table ([`refresh_states`]).
//! 4. Updates a slow shard has not taken can be coalesced to the latest of
//!    each node and each name, nodes first (rule 2): the shard ends with
//!    the same view, and what waits for it is bounded by the number of
//!    nodes and names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use foca::{Member, OwnedNotification, State};

use crate::membership::GossipStats;
use crate::{NodeId, RouteItem};

/// A change a shard must apply, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterUpdate {
    /// A node was learned or changed state. A suspect is alive (rule 3).
    Node { name: Arc<str>, addr: SocketAddr, alive: bool, suspect: bool },
    /// `agent` lives on node `node` (`None`: nowhere known, or here). The
    /// node was named by a `Node` update before (rule 2).
    Route { agent: Arc<str>, node: Option<Arc<str>> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }
}

#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub id: NodeId,
    pub state: MemberState,
}

/// Where an agent of another node lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteRoute {
    pub node: SocketAddr,
    /// The node's API, if the node has been seen.
    pub api: Option<SocketAddr>,
    /// Alive or suspect (a node not seen yet counts as not alive).
    pub alive: bool,
}

/// What a node knows of its cluster.
pub struct ClusterView {
    pub me: NodeId,
    pub members: BTreeMap<SocketAddr, MemberInfo>,
    pub routes: HashMap<String, RouteItem>,
    pub stats: GossipStats,
    pub refused_oversized: u64,
}

impl ClusterView {
    pub fn new(me: NodeId, cached: &[RouteItem]) -> ClusterView {
        ClusterView {
            me,
            members: BTreeMap::new(),
            routes: cached.iter().map(|r| (r.agent.clone(), r.clone())).collect(),
            stats: GossipStats::default(),
            refused_oversized: 0,
        }
    }

    /// Where `agent` lives, if on another node.
    pub fn remote_route(&self, agent: &str) -> Option<RemoteRoute> {
        let r = self.routes.get(agent).filter(|r| r.present && r.node != self.me.addr)?;
        let m = self.members.get(&r.node);
        Some(RemoteRoute { node: r.node, api: m.map(|m| m.id.api), alive: m.is_some_and(|m| m.state != MemberState::Down) })
    }

    /// "down", or "not seen by this node yet" for a node gossip has not
    /// reported.
    pub fn why_unreachable(&self, node: SocketAddr) -> &'static str {
        if self.members.contains_key(&node) {
            "down"
        } else {
            "not seen by this node yet"
        }
    }

    pub fn member_by_name(&self, name: &str) -> Option<&MemberInfo> {
        let addr: SocketAddr = name.parse().ok()?;
        self.members.get(&addr)
    }

    /// Members other than this node in `state`.
    pub fn count(&self, state: MemberState) -> usize {
        self.members.values().filter(|m| m.id.addr != self.me.addr && m.state == state).count()
    }

    /// Applies membership news; returns the updates for the shards. `Err`
    /// carries nothing: a `Defunct` (this node declared down) is logged by
    /// the caller, which sees it in `notes`.
    pub fn apply_notifications(&mut self, notes: &[OwnedNotification<NodeId>]) -> Vec<ClusterUpdate> {
        let mut updates = Vec::new();
        for n in notes {
            let (id, alive) = match n {
                OwnedNotification::MemberUp(id) => (id, true),
                OwnedNotification::Rename(_, id) => (id, true),
                OwnedNotification::MemberDown(id) => (id, false),
                OwnedNotification::Rejoin(id) => {
                    self.me = id.clone();
                    continue;
                }
                _ => continue,
            };
            // Rule 1: news about an older identity of a member is stale.
            if self.members.get(&id.addr).is_some_and(|known| known.id.boot > id.boot) {
                continue;
            }
            let state = if alive { MemberState::Alive } else { MemberState::Down };
            self.members.insert(id.addr, MemberInfo { id: id.clone(), state });
            updates.push(ClusterUpdate::Node { name: id.name().into(), addr: id.addr, alive, suspect: false });
        }
        updates
    }

    /// Reads suspects off foca's table (rule 3); returns the updates.
    pub fn refresh_states<'m>(&mut self, members: impl Iterator<Item = &'m Member<NodeId>>) -> Vec<ClusterUpdate> {
        let mut updates = Vec::new();
        for member in members {
            let Some(info) = self.members.get_mut(&member.id().addr) else { continue };
            if info.id != *member.id() {
                continue;
            }
            let was = info.state;
            match (member.state(), was) {
                (State::Suspect, MemberState::Alive) => info.state = MemberState::Suspect,
                (State::Alive, MemberState::Suspect) => info.state = MemberState::Alive,
                _ => {}
            }
            if info.state != was {
                updates.push(ClusterUpdate::Node { name: info.id.name().into(), addr: info.id.addr, alive: true, suspect: info.state == MemberState::Suspect });
            }
        }
        updates
    }

    /// Applies registry changes; returns the updates, nodes named by a route
    /// first (rule 2), and the names this node hosted that moved elsewhere.
    pub fn apply_routes(&mut self, changes: Vec<RouteItem>) -> (Vec<ClusterUpdate>, Vec<RouteItem>) {
        let mut updates = Vec::new();
        let mut moved_away = Vec::new();
        let me = self.me.addr;
        for r in changes {
            let remote = r.present && r.node != me;
            if remote && self.routes.get(&r.agent).is_some_and(|old| old.node == me && old.present) {
                moved_away.push(r.clone());
            }
            if remote && !self.members.contains_key(&r.node) {
                updates.push(ClusterUpdate::Node { name: r.node.to_string().into(), addr: r.node, alive: false, suspect: false });
            }
            updates.push(ClusterUpdate::Route { agent: r.agent.as_str().into(), node: remote.then(|| r.node.to_string().into()) });
            self.routes.insert(r.agent.clone(), r);
        }
        (updates, moved_away)
    }
}

/// What the shards must learn of the routes a node cached before it
/// restarted (rule 2: each node first, as down until gossip says more).
pub fn cached_updates(me: SocketAddr, cached: &[RouteItem]) -> Vec<ClusterUpdate> {
    let mut updates = Vec::new();
    for r in cached.iter().filter(|r| r.present && r.node != me) {
        updates.push(ClusterUpdate::Node { name: r.node.to_string().into(), addr: r.node, alive: false, suspect: false });
        updates.push(ClusterUpdate::Route { agent: r.agent.as_str().into(), node: Some(r.node.to_string().into()) });
    }
    updates
}

/// Keeps only the latest update of each node and each agent name, nodes
/// first (rule 4).
pub fn coalesce(pending: &mut Vec<ClusterUpdate>) {
    let mut nodes: Vec<ClusterUpdate> = Vec::new();
    let mut routes: Vec<ClusterUpdate> = Vec::new();
    let mut seen_nodes = HashSet::new();
    let mut seen_agents = HashSet::new();
    for u in pending.drain(..).rev() {
        match &u {
            ClusterUpdate::Node { name, .. } => {
                if seen_nodes.insert(name.clone()) {
                    nodes.push(u);
                }
            }
            ClusterUpdate::Route { agent, .. } => {
                if seen_agents.insert(agent.clone()) {
                    routes.push(u);
                }
            }
        }
    }
    pending.extend(nodes.into_iter().rev());
    pending.extend(routes.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8, boot: u32) -> NodeId {
        let addr: SocketAddr = format!("127.0.0.{i}:7946").parse().unwrap();
        NodeId { addr, api: addr, api_tls: false, boot }
    }

    #[test]
    fn coalescing_keeps_the_latest_of_each_and_nodes_first() {
        let node = |alive| ClusterUpdate::Node { name: "b:1".into(), addr: "127.0.0.2:1".parse().unwrap(), alive, suspect: false };
        let route = |agent: &str, node: Option<&str>| ClusterUpdate::Route { agent: agent.into(), node: node.map(Into::into) };
        let mut pending = vec![route("x", Some("b:1")), node(false), route("y", Some("b:1")), node(true), route("x", None)];
        coalesce(&mut pending);
        assert_eq!(pending.len(), 3, "{pending:?}");
        assert!(matches!(pending[0], ClusterUpdate::Node { alive: true, .. }));
        assert!(matches!(&pending[1], ClusterUpdate::Route { agent, .. } if &**agent == "y"));
        assert!(matches!(&pending[2], ClusterUpdate::Route { agent, node: None } if &**agent == "x"));
    }

    #[test]
    fn older_identities_are_stale_and_routes_name_their_node_first() {
        let mut v = ClusterView::new(id(1, 1), &[]);
        let up = v.apply_notifications(&[OwnedNotification::MemberUp(id(2, 2))]);
        assert_eq!(up.len(), 1);
        assert!(v.apply_notifications(&[OwnedNotification::MemberDown(id(2, 1))]).is_empty(), "rule 1");
        assert_eq!(v.count(MemberState::Alive), 1);
        let far = RouteItem { agent: "far".into(), node: "127.0.0.3:7946".parse().unwrap(), version: 1, present: true };
        let (updates, moved) = v.apply_routes(vec![far.clone()]);
        assert!(moved.is_empty());
        assert!(matches!(&updates[0], ClusterUpdate::Node { alive: false, .. }), "rule 2: {updates:?}");
        assert!(matches!(&updates[1], ClusterUpdate::Route { node: Some(_), .. }));
        assert_eq!(v.remote_route("far"), Some(RemoteRoute { node: far.node, api: None, alive: false }));
        assert_eq!(v.why_unreachable(far.node), "not seen by this node yet");
        let mine = RouteItem { agent: "mine".into(), node: v.me.addr, version: 1, present: true };
        v.apply_routes(vec![mine.clone()]);
        let (_, moved) = v.apply_routes(vec![RouteItem { node: far.node, version: 2, ..mine }]);
        assert_eq!(moved.len(), 1, "a name of this node moved elsewhere");
        assert_eq!(cached_updates(v.me.addr, &[far]).len(), 2);
    }
}
