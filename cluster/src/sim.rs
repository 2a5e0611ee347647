//! A whole cluster in one thread, with virtual time: every node is a real
//! [`Membership`] (foca, the registry, sealed packets); the network is an
//! event queue with a seeded one-way latency. The same seed replays the same
//! run, packet for packet.
//!
//! Used by the gossip convergence benchmark and by tests that need a
//! cluster of hundreds without the wall clock.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};

use foca::{OwnedNotification, Timer};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::{GossipSettings, KeyRing, Membership, NodeId};

/// Port every simulated node listens on.
pub const SIM_PORT: u16 = 7946;
/// One-way network latency, before jitter, in microseconds.
pub const SIM_LATENCY_US: u64 = 250;
/// Largest jitter added to a packet's latency, in microseconds.
pub const SIM_JITTER_US: u64 = 250;

enum Event {
    Timer(Timer<NodeId>),
    Packet(Vec<u8>),
}

struct Scheduled {
    at_us: u64,
    seq: u64,
    node: usize,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

pub struct Simulation {
    settings: GossipSettings,
    /// The secret every node starts with (each node has a ring of its own).
    secret: &'static [u8],
    nodes: Vec<Option<Membership>>,
    by_addr: HashMap<SocketAddr, usize>,
    events: BinaryHeap<Scheduled>,
    seq: u64,
    now_us: u64,
    rng: SmallRng,
    /// For each node address: which nodes see it up, and which saw it down.
    seen_up: HashMap<SocketAddr, HashSet<usize>>,
    seen_down: HashMap<SocketAddr, HashSet<usize>>,
    /// When each address was first declared down by anyone.
    first_down_us: HashMap<SocketAddr, u64>,
}

pub fn sim_addr(index: usize) -> SocketAddr {
    assert!(index < 1 << 24);
    SocketAddr::new(Ipv4Addr::new(10, (index >> 16) as u8, (index >> 8) as u8, index as u8).into(), SIM_PORT)
}

impl Simulation {
    pub fn new(settings: GossipSettings, seed: u64) -> Simulation {
        Simulation {
            settings,
            secret: b"simulated cluster key",
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            events: BinaryHeap::new(),
            seq: 0,
            now_us: 0,
            rng: SmallRng::seed_from_u64(seed),
            seen_up: HashMap::new(),
            seen_down: HashMap::new(),
            first_down_us: HashMap::new(),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    pub fn node(&self, i: usize) -> Option<&Membership> {
        self.nodes[i].as_ref()
    }

    pub fn node_mut(&mut self, i: usize) -> Option<&mut Membership> {
        self.nodes[i].as_mut()
    }

    /// Starts a new node (not yet joined). Returns its index.
    pub fn add_node(&mut self) -> usize {
        self.add_node_with(KeyRing::new(self.secret, None).unwrap())
    }

    /// Starts a new node with keys of its own. Returns its index.
    pub fn add_node_with(&mut self, keys: KeyRing) -> usize {
        let i = self.nodes.len();
        let addr = sim_addr(i);
        let id = NodeId { addr, api: addr, api_tls: false, boot: 1 };
        let seed = self.rng.random::<u64>();
        self.nodes.push(Some(Membership::new(id.clone(), &self.settings, keys, seed, id.boot as u64, Vec::new())));
        self.by_addr.insert(addr, i);
        i
    }

    /// Node `i` announces itself to node `via`.
    pub fn join(&mut self, i: usize, via: usize) {
        let addr = sim_addr(via);
        if let Some(m) = self.nodes[i].as_mut() {
            m.join(addr);
        }
        self.drain(i);
    }

    /// Node `i` announces itself again to node `via`, as a node that hears
    /// from no member does now and then.
    pub fn rejoin(&mut self, i: usize, via: usize) {
        let addr = sim_addr(via);
        if let Some(m) = self.nodes[i].as_mut() {
            m.rejoin(&[addr]);
        }
        self.drain(i);
    }

    /// Node `i` stops dead: no goodbye, its packets and timers vanish.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Node `i` leaves gracefully, then stops.
    pub fn leave(&mut self, i: usize) {
        if let Some(m) = self.nodes[i].as_mut() {
            m.leave();
        }
        self.drain(i);
        self.nodes[i] = None;
    }

    /// How many live nodes other than `addr`'s own see it up.
    pub fn seeing_up(&self, addr: SocketAddr) -> usize {
        self.seen_up.get(&addr).map_or(0, |s| s.iter().filter(|&&n| self.nodes[n].is_some()).count())
    }

    /// How many live nodes saw `addr` declared down.
    pub fn seeing_down(&self, addr: SocketAddr) -> usize {
        self.seen_down.get(&addr).map_or(0, |s| s.iter().filter(|&&n| self.nodes[n].is_some()).count())
    }

    pub fn first_down_us(&self, addr: SocketAddr) -> Option<u64> {
        self.first_down_us.get(&addr).copied()
    }

    /// Sum of the gossip bytes every node sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.nodes.iter().flatten().map(|m| m.stats.bytes_out).sum()
    }

    /// Runs events until `done` holds (checked each `check_us` of virtual
    /// time) or `limit_us` passes. Returns the time `done` first held.
    pub fn run_until(&mut self, limit_us: u64, check_us: u64, mut done: impl FnMut(&Simulation) -> bool) -> Option<u64> {
        let mut next_check = self.now_us;
        loop {
            if self.now_us >= next_check {
                if done(self) {
                    return Some(self.now_us);
                }
                next_check = self.now_us + check_us;
            }
            if self.now_us >= limit_us {
                return None;
            }
            let Some(ev) = self.events.pop() else {
                self.now_us = next_check.min(limit_us);
                continue;
            };
            if ev.at_us > next_check {
                // Advance to the check first; put the event back.
                self.now_us = next_check.min(limit_us);
                self.events.push(ev);
                continue;
            }
            self.now_us = ev.at_us;
            let Some(m) = self.nodes[ev.node].as_mut() else { continue };
            match ev.event {
                Event::Timer(t) => m.handle_timer(t),
                Event::Packet(p) => {
                    let _ = m.handle_packet(&p);
                }
            }
            self.drain(ev.node);
        }
    }

    /// Moves node `i`'s output into the event queue and the views.
    fn drain(&mut self, i: usize) {
        let Some(m) = self.nodes[i].as_mut() else { return };
        let crate::membership::Output { sends, timers, notifications, .. } = m.take_output();
        for (to, packet) in sends {
            let Some(&dst) = self.by_addr.get(&to.addr) else { continue };
            let at = self.now_us + SIM_LATENCY_US + self.rng.random_range(0..=SIM_JITTER_US);
            self.push(at, dst, Event::Packet(packet));
        }
        for (after, t) in timers {
            let at = self.now_us + after.as_micros() as u64;
            self.push(at, i, Event::Timer(t));
        }
        for n in notifications {
            match n {
                OwnedNotification::MemberUp(id) => {
                    self.seen_up.entry(id.addr).or_default().insert(i);
                }
                OwnedNotification::MemberDown(id) => {
                    if let Some(s) = self.seen_up.get_mut(&id.addr) {
                        s.remove(&i);
                    }
                    self.seen_down.entry(id.addr).or_default().insert(i);
                    self.first_down_us.entry(id.addr).or_insert(self.now_us);
                }
                _ => {}
            }
        }
    }

    fn push(&mut self, at_us: u64, node: usize, event: Event) {
        self.seq += 1;
        self.events.push(Scheduled { at_us, seq: self.seq, node, event });
    }
}

/// What the convergence benchmark measures for one cluster size.
#[derive(Debug, Clone)]
pub struct Convergence {
    pub nodes: usize,
    /// A new node's announce until every member sees it up.
    pub join_ms: f64,
    /// A node's crash until every live member saw it declared down
    /// (detection: probe, suspicion timeout; then dissemination).
    pub failure_ms: f64,
    /// From the first member declaring it down until every live member did:
    /// the dissemination part of `failure_ms`.
    pub failure_spread_ms: f64,
    /// Gossip bytes sent and received per node per second, steady state.
    pub bytes_per_node_s: f64,
    /// The same while the join and the crash spread (churn).
    pub churn_bytes_per_node_s: f64,
}

/// Starts a converged cluster of `n` nodes, then measures a join, a crash
/// and the steady gossip traffic. The start is converged by construction
/// (every node is told every other one): a thousand nodes joining at once
/// converge to all-but-a-few pairs within seconds, but the last pairs wait
/// for foca's periodic announces (tens of seconds), which measures the
/// bootstrap, not a join.
pub fn measure_convergence(n: usize, settings: GossipSettings, seed: u64) -> Result<Convergence, String> {
    assert!(n >= 2);
    let settings = GossipSettings { cluster_size_hint: n as u32, ..settings };
    let mut sim = Simulation::new(settings, seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    for _ in 0..n {
        sim.add_node();
    }
    let ids: Vec<NodeId> = (0..n).map(|i| sim.node(i).unwrap().id().clone()).collect();
    for i in 0..n {
        let others = ids.iter().filter(|id| id.addr != sim_addr(i)).cloned();
        sim.node_mut(i).unwrap().assume_members(others);
        sim.drain(i);
    }
    let everyone_up = |s: &Simulation| (0..n).all(|i| s.seeing_up(sim_addr(i)) == n - 1);
    sim.run_until(10_000_000, 10_000, everyone_up).ok_or(format!("{n} nodes told of each other are not all up"))?;

    // Steady traffic over 10 s of virtual time.
    let (t0, b0) = (sim.now_us(), sim.bytes_sent());
    sim.run_until(t0 + 10_000_000, 1_000_000, |_| false);
    let bytes_per_node_s = (sim.bytes_sent() - b0) as f64 * 2.0 / n as f64 / 10.0;

    // A join.
    let (churn_t0, churn_b0) = (sim.now_us(), sim.bytes_sent());
    let newcomer = sim.add_node();
    let via = rng.random_range(0..n);
    let start = sim.now_us();
    sim.join(newcomer, via);
    let target = sim_addr(newcomer);
    let joined = sim.run_until(start + 120_000_000, 1_000, |s| s.seeing_up(target) == n).ok_or(format!("a join into {n} nodes did not converge in 120 s"))?;
    let join_ms = (joined - start) as f64 / 1e3;

    // A crash.
    let victim = rng.random_range(0..n);
    let gone = sim_addr(victim);
    let start = sim.now_us();
    sim.kill(victim);
    let live = n; // n + 1 nodes, one dead
    let detected =
        sim.run_until(start + 300_000_000, 1_000, |s| s.seeing_down(gone) == live).ok_or(format!("a crash in {n} nodes was not seen by everyone in 300 s"))?;
    let first = sim.first_down_us(gone).expect("someone declared it down");
    let churn_s = (sim.now_us() - churn_t0) as f64 / 1e6;
    let churn_bytes_per_node_s = (sim.bytes_sent() - churn_b0) as f64 * 2.0 / (n + 1) as f64 / churn_s;
    Ok(Convergence {
        nodes: n,
        join_ms,
        failure_ms: (detected - start) as f64 / 1e3,
        failure_spread_ms: (detected - first) as f64 / 1e3,
        bytes_per_node_s,
        churn_bytes_per_node_s,
    })
}

/// What the registry's spread measures for one cluster.
#[derive(Debug, Clone)]
pub struct RegistrySpread {
    /// Every node publishing its names at once, until every node knows
    /// every name's route; `None` if it did not within the limit.
    pub converged_ms: Option<f64>,
    /// Routes known, summed over the nodes, at the end (the goal: nodes ×
    /// nodes × names each).
    pub routes_known: usize,
    /// Gossip bytes sent and received per node until it had spread (or
    /// the limit): the registry pushes each new item to every member
    /// directly, so this is about nodes × names × an item's bytes × 2.
    pub bytes_per_node: f64,
}

/// ADR-0017's cluster-wide capacity, its membership half: `n` converged
/// nodes each deploy `names_per_node` agents at once (so every node
/// publishes that many route items), in virtual time, up to `limit_s`.
pub fn measure_registry_spread(n: usize, names_per_node: usize, settings: GossipSettings, seed: u64, limit_s: u64) -> Result<RegistrySpread, String> {
    assert!(n >= 2 && names_per_node >= 1);
    let settings = GossipSettings { cluster_size_hint: n as u32, ..settings };
    let mut sim = Simulation::new(settings, seed);
    for _ in 0..n {
        sim.add_node();
    }
    let ids: Vec<NodeId> = (0..n).map(|i| sim.node(i).unwrap().id().clone()).collect();
    for i in 0..n {
        sim.node_mut(i).unwrap().assume_members(ids.iter().filter(|id| id.addr != sim_addr(i)).cloned());
        sim.drain(i);
    }
    sim.run_until(10_000_000, 10_000, |s| (0..n).all(|i| s.seeing_up(sim_addr(i)) == n - 1)).ok_or(format!("{n} nodes are not all up"))?;
    let name = |node: usize, k: usize| format!("n{node}-agent-{k}");
    let (t0, b0) = (sim.now_us(), sim.bytes_sent());
    for node in 0..n {
        for k in 0..names_per_node {
            let item = crate::RouteItem { agent: name(node, k), node: sim_addr(node), version: 1, present: true };
            sim.node_mut(node).unwrap().publish(item);
        }
        sim.drain(node);
    }
    let known = |s: &Simulation| -> usize {
        (0..n).map(|i| (0..n).map(|node| (0..names_per_node).filter(|&k| s.node(i).unwrap().route(&name(node, k)).is_some()).count()).sum::<usize>()).sum()
    };
    let goal = n * n * names_per_node;
    let done = sim.run_until(t0 + limit_s * 1_000_000, 10_000, |s| known(s) == goal);
    Ok(RegistrySpread {
        converged_ms: done.map(|t| (t - t0) as f64 / 1e3),
        routes_known: known(&sim),
        bytes_per_node: (sim.bytes_sent() - b0) as f64 * 2.0 / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_ten_nodes_deploying_at_once_reaches_every_node() {
        let spread = measure_registry_spread(10, 200, settings(), 5, 120).unwrap();
        assert_eq!(spread.routes_known, 10 * 10 * 200, "{spread:?}");
        assert!(spread.converged_ms.is_some());
    }

    fn settings() -> GossipSettings {
        GossipSettings { interval_ms: 200, fanout: 3, packet_bytes_max: 1400, cluster_size_hint: 10, periodic_gossip: true }
    }

    #[test]
    fn a_small_cluster_converges_detects_a_crash_and_the_same_seed_replays_it() {
        let a = measure_convergence(10, settings(), 7).unwrap();
        let b = measure_convergence(10, settings(), 7).unwrap();
        assert!(a.join_ms > 0.0 && a.failure_ms > a.failure_spread_ms);
        assert_eq!((a.join_ms, a.failure_ms, a.bytes_per_node_s), (b.join_ms, b.failure_ms, b.bytes_per_node_s));
    }

    /// `n` nodes, each joined through node 0, run until all see all.
    fn joined_through_node_0(n: usize, settings: GossipSettings, seed: u64) -> Simulation {
        let mut sim = Simulation::new(settings, seed);
        for i in 0..n {
            sim.add_node();
            if i > 0 {
                sim.join(i, 0);
            }
        }
        sim.run_until(60_000_000, 10_000, |s| (0..n).all(|i| s.seeing_up(sim_addr(i)) == n - 1)).expect("converged");
        sim
    }

    #[test]
    fn timings_follow_the_cluster_size() {
        let sim = joined_through_node_0(4, GossipSettings { cluster_size_hint: 1000, ..settings() }, 5);
        let tuned = sim.node(0).unwrap().tuned_for();
        assert_eq!(tuned, crate::membership::CLUSTER_TUNING_NODES_MIN, "re-tuned from 1000 to the 4 it sees, floored");
    }

    #[test]
    fn a_graceful_leave_reaches_every_member_within_two_seconds() {
        let mut sim = joined_through_node_0(8, settings(), 3);
        let start = sim.now_us();
        sim.leave(5);
        let done = sim.run_until(start + 10_000_000, 1_000, |s| s.seeing_down(sim_addr(5)) == 7).expect("everyone saw the leave");
        assert!(done - start <= 2_000_000, "took {} us", done - start);
    }

    #[test]
    fn registry_items_reach_every_member_including_a_late_joiner() {
        let mut sim = joined_through_node_0(5, settings(), 11);
        let item = crate::RouteItem { agent: "echo".into(), node: sim_addr(2), version: 1, present: true };
        sim.node_mut(2).unwrap().publish(item.clone());
        let t = sim.now_us();
        sim.run_until(t + 10_000_000, 10_000, |s| (0..5).all(|i| s.node(i).unwrap().route("echo").as_ref() == Some(&item))).expect("spread");
        let late = sim.add_node();
        sim.join(late, 0);
        let t = sim.now_us();
        sim.run_until(t + 30_000_000, 10_000, |s| s.node(late).unwrap().route("echo").as_ref() == Some(&item)).expect("the late joiner learned it");
    }

    #[test]
    fn a_key_rotation_completes_on_every_member_without_a_refused_packet() {
        let n = 6;
        let mut sim = joined_through_node_0(n, settings(), 13);
        let old = sim.node(0).unwrap().keys().ids().0;
        // The operator hands every node the next key, one after another.
        for i in 0..n {
            sim.node(i).unwrap().keys().reload(b"simulated cluster key", Some(b"the next simulated key")).unwrap();
            let t = sim.now_us();
            sim.run_until(t + 300_000, 10_000, |_| false);
        }
        let t = sim.now_us();
        let rotated = |s: &Simulation| (0..n).all(|i| s.node(i).unwrap().keys().phase() == (1, false) && s.node(i).unwrap().keys().ids().0 != old);
        sim.run_until(t + 30_000_000, 10_000, rotated).expect("every member dropped the old key");
        for i in 0..n {
            let m = sim.node(i).unwrap();
            assert_eq!((m.stats.key_switches, m.stats.key_drops), (1, 1));
            assert_eq!(m.stats.refused_bad_tag, 0, "node {i}: no packet sealed with a key it lacked");
            assert!(m.keys().find(old).is_none());
        }
        assert!((0..n).all(|i| sim.seeing_up(sim_addr(i)) == n - 1), "still one cluster");
        // A node that restarts with the key files of before the rotation's
        // end (the old key current, the new one next) still gets in: its
        // attempts to join alternate the key they are sealed with.
        let stale = KeyRing::new(b"simulated cluster key", Some(b"the next simulated key")).unwrap();
        let late = sim.add_node_with(stale);
        sim.join(late, 0);
        for _ in 0..10 {
            let t = sim.now_us();
            if sim.run_until(t + 1_000_000, 10_000, |s| s.seeing_up(sim_addr(late)) == n).is_some() {
                break;
            }
            sim.rejoin(late, 0);
        }
        assert_eq!(sim.seeing_up(sim_addr(late)), n, "every member sees the restarted node");
        let t = sim.now_us();
        sim.run_until(t + 10_000_000, 10_000, |s| s.node(late).unwrap().keys().phase() == (1, false)).expect("it dropped the old key too");
        assert_eq!(sim.node(late).unwrap().keys().ids().0, sim.node(0).unwrap().keys().ids().0);
        // A node that only knows the old key is no longer let in.
        let stale = sim.add_node();
        sim.join(stale, 0);
        let t = sim.now_us();
        sim.run_until(t + 5_000_000, 10_000, |_| false);
        assert_eq!(sim.seeing_up(sim_addr(stale)), 0);
        assert!(sim.node(0).unwrap().stats.refused_bad_tag > 0);
    }
}
