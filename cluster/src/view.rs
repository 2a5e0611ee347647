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
//! 5. A member that is gone for good leaves the view: one an operator
//!    forgets ([`ClusterView::forget`]), or one down for the reap time
//!    ([`ClusterView::reapable`]). The names its routes gave go with it
//!    (the shards learn they route nowhere), and so does every series of
//!    it. A member alive or suspect is not forgotten: SWIM still hears it.

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
    /// When it was declared down, on the driver's clock (rule 5).
    pub down_since_ms: Option<u64>,
}

/// Why a node cannot be forgotten (rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgetRefused {
    /// It is this node.
    Me,
    /// SWIM still hears it: alive or suspect.
    Active(MemberState),
    /// No member and no route names it.
    Unknown,
}

impl std::fmt::Display for ForgetRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForgetRefused::Me => f.write_str("it is this node"),
            ForgetRefused::Active(state) => write!(f, "it is {}: the cluster still hears it; stop it first, and forget it once it is down", state.name()),
            ForgetRefused::Unknown => f.write_str("no member and no route of this node names it (see GET /v1/cluster/members)"),
        }
    }
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
    /// `now_ms` is the driver's clock, kept for the reap time (rule 5).
    pub fn apply_notifications(&mut self, notes: &[OwnedNotification<NodeId>], now_ms: u64) -> Vec<ClusterUpdate> {
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
            let down_since_ms = (!alive).then_some(now_ms);
            self.members.insert(id.addr, MemberInfo { id: id.clone(), state, down_since_ms });
            updates.push(ClusterUpdate::Node { name: id.name().into(), addr: id.addr, alive, suspect: false });
        }
        updates
    }

    /// Forgets `node` (rule 5): the member and the routes naming it.
    /// Returns the updates for the shards (each name it hosted now routes
    /// nowhere) and those names.
    pub fn forget(&mut self, node: SocketAddr) -> Result<(Vec<ClusterUpdate>, Vec<String>), ForgetRefused> {
        if node == self.me.addr {
            return Err(ForgetRefused::Me);
        }
        let routed: Vec<String> = self.routes.values().filter(|r| r.node == node).map(|r| r.agent.clone()).collect();
        match self.members.get(&node).map(|m| m.state) {
            Some(state @ (MemberState::Alive | MemberState::Suspect)) => return Err(ForgetRefused::Active(state)),
            None if routed.is_empty() => return Err(ForgetRefused::Unknown),
            _ => {}
        }
        self.members.remove(&node);
        let mut updates = Vec::new();
        let mut hosted = Vec::new();
        for agent in routed {
            let item = self.routes.remove(&agent).expect("listed above");
            if item.present {
                updates.push(ClusterUpdate::Route { agent: agent.as_str().into(), node: None });
                hosted.push(agent);
            }
        }
        assert!(!self.members.contains_key(&node) && self.routes.values().all(|r| r.node != node));
        Ok((updates, hosted))
    }

    /// Members down for at least `after_ms` at `now_ms` (rule 5).
    pub fn reapable(&self, now_ms: u64, after_ms: u64) -> Vec<SocketAddr> {
        self.members
            .values()
            .filter(|m| m.state == MemberState::Down && m.down_since_ms.is_some_and(|t| now_ms.saturating_sub(t) >= after_ms))
            .map(|m| m.id.addr)
            .collect()
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
        let up = v.apply_notifications(&[OwnedNotification::MemberUp(id(2, 2))], 0);
        assert_eq!(up.len(), 1);
        assert!(v.apply_notifications(&[OwnedNotification::MemberDown(id(2, 1))], 0).is_empty(), "rule 1");
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

    /// Rule 5: only a member that is down (or known by its routes alone)
    /// is forgotten, with its routes; a down one is reapable after the
    /// reap time, on the driver's clock.
    #[test]
    fn a_down_member_is_forgotten_with_its_routes_and_reaped_in_time() {
        let mut v = ClusterView::new(id(1, 1), &[]);
        v.apply_notifications(&[OwnedNotification::MemberUp(id(2, 1)), OwnedNotification::MemberUp(id(3, 1))], 0);
        let route = |agent: &str, i: u8, present| RouteItem { agent: agent.into(), node: id(i, 1).addr, version: 1, present };
        v.apply_routes(vec![route("a", 2, true), route("gone", 2, false), route("c", 3, true)]);
        assert_eq!(v.forget(id(2, 1).addr).unwrap_err(), ForgetRefused::Active(MemberState::Alive));
        assert_eq!(v.forget(v.me.addr).unwrap_err(), ForgetRefused::Me);
        assert_eq!(v.forget(id(9, 1).addr).unwrap_err(), ForgetRefused::Unknown);
        v.apply_notifications(&[OwnedNotification::MemberDown(id(2, 1))], 1_000);
        assert!(v.reapable(1_999, 1_000).is_empty());
        assert_eq!(v.reapable(2_000, 1_000), [id(2, 1).addr]);
        let (updates, hosted) = v.forget(id(2, 1).addr).unwrap();
        assert_eq!(hosted, ["a"]);
        assert_eq!(updates, [ClusterUpdate::Route { agent: "a".into(), node: None }]);
        assert!(!v.members.contains_key(&id(2, 1).addr) && v.remote_route("a").is_none() && !v.routes.contains_key("gone"));
        assert!(v.remote_route("c").is_some(), "other members' routes stay");
        assert!(v.reapable(u64::MAX, 0).is_empty());
        v.apply_routes(vec![route("late", 4, true)]);
        assert!(v.forget(id(4, 1).addr).is_ok(), "a node known by its routes alone");
    }
}
