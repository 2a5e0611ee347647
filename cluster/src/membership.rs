//! One node's view of the cluster: foca plus what caxton adds.
//!
//! Input and time go in (`handle_packet`, `handle_timer`, `join`, `publish`,
//! `leave`); packets, timers and notifications come out (`poll_*`). Nothing
//! here reads a clock or a socket, so a seeded simulation replays a whole
//! cluster ([`crate::sim`]).
//!
//! Rules:
//! 1. Every packet out is sealed (encrypted and authenticated), every
//!    packet in is opened first ([`crate::keyring`] rule 1); a refused
//!    packet is counted by why.
//! 2. A packet never exceeds `GossipSettings::packet_bytes_max`, seal
//!    included: foca is given that size minus the seal and the header.
//! 3. When a member comes up, this node sends it the names it hosts in
//!    sync packets addressed to it alone ([`crate::registry`] rule 3); the
//!    driver also calls [`Membership::resync_one`] now and then, so a lost
//!    sync packet is made good.
//!    A name published here also goes straight to every member in sync
//!    packets (batched until the next `poll_send`) while the cluster has at
//!    most [`DIRECT_PUSH_MEMBERS_MAX`] members: foca passes an update on only
//!    about 4·log10(N+1) times, which in a small cluster can miss a member.
//! 5. Every packet starts with a header ([`crate::freshness`]): a kind byte,
//!    [`KIND_FOCA`] (foca's own) or [`KIND_SYNC`] (registry items: `u16`
//!    length, item, repeated), the sender, its epoch and a sequence number,
//!    the destination and the other key it holds. The seal covers it. A
//!    packet for another node, or one seen before, is refused and counted
//!    (freshness rules 1 and 2).
//! 6. What each member's packets say of its keys is kept, and after every
//!    packet and timer the key ring applies its rotation rules to the
//!    active members ([`crate::keyring`] rule 3); a step is counted and
//!    handed to the driver (`take_key_steps`).
//! 4. foca's timings follow the cluster's size: when the members seen
//!    double or halve, the suspicion timeout and the times an update is
//!    passed on are re-derived for the new size (foca allows exactly these
//!    to change at run time).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::rc::Rc;
use std::time::Duration;

use foca::{AccumulatingRuntime, BroadcastHandler, Config, Foca, Member, OwnedNotification, PeriodicParams, PostcardCodec, Timer};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::freshness::{Freshness, Header, Stale, HEADER_BYTES};
use crate::keyring::{KeyRing, Report, Reports, Step, SEAL_BYTES};
use crate::registry::{RegistryError, RouteKey};
use crate::{NodeId, Registry, RouteItem};

/// First byte of a packet carrying foca's data (rule 5).
pub const KIND_FOCA: u8 = 0;
/// First byte of a packet carrying registry items for one member (rule 5).
pub const KIND_SYNC: u8 = 1;

/// Smallest cluster size foca's timings are derived for (rule 4).
pub const CLUSTER_TUNING_NODES_MIN: u32 = 10;

/// Largest cluster to which a newly published name is also pushed to every
/// member directly (rule 3); larger ones rely on foca's dissemination.
pub const DIRECT_PUSH_MEMBERS_MAX: usize = 128;

/// The gossip parameters (ADR-0017's SWIM section). Defaults come from the
/// node's limits module; the simulator uses the same ones.
#[derive(Debug, Clone, Copy)]
pub struct GossipSettings {
    /// Between two gossip rounds of a node. ADR: 200 ms.
    pub interval_ms: u64,
    /// Members each round goes to. ADR: 3.
    pub fanout: usize,
    /// Largest packet, seal included. ADR: 1400 bytes (MTU-safe).
    pub packet_bytes_max: usize,
    /// Expected cluster size: sets how many times an update is passed on
    /// and how long a suspect has to refute (foca's LAN formulas). A
    /// membership re-tunes itself when the size it sees doubles or halves
    /// (rule 4).
    pub cluster_size_hint: u32,
    /// Gossip every `interval_ms` to `fanout` members (SWIM's dissemination
    /// rounds); `false` leaves updates to ride on probes only (a baseline).
    pub periodic_gossip: bool,
}

impl GossipSettings {
    /// Room for a packet's body: the packet less its header and seal.
    pub fn body_bytes_max(&self) -> usize {
        self.packet_bytes_max - SEAL_BYTES - HEADER_BYTES
    }

    /// foca's LAN profile with our gossip parameters (rule 2).
    pub fn foca_config(&self) -> Config {
        assert!(self.packet_bytes_max > SEAL_BYTES + HEADER_BYTES + 64, "packets too small for a foca header");
        let mut c = Config::new_lan(NonZeroU32::new(self.cluster_size_hint.max(1)).unwrap());
        c.max_packet_size = NonZeroUsize::new(self.body_bytes_max()).unwrap();
        c.periodic_gossip = self
            .periodic_gossip
            .then(|| PeriodicParams { frequency: Duration::from_millis(self.interval_ms), num_members: NonZeroUsize::new(self.fanout.max(1)).unwrap() });
        c
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// It did not open under a key this node holds: wrong key, altered,
    /// or not ours.
    BadTag,
    /// It opened but the header, the items or foca refused the content.
    Malformed,
    /// Authentic, but seen before or too old (freshness rule 2).
    Replay,
    /// Authentic, but addressed to another node (freshness rule 1).
    WrongDestination,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct GossipStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub refused_bad_tag: u64,
    pub refused_malformed: u64,
    pub refused_replay: u64,
    pub refused_wrong_destination: u64,
    /// Rotation steps taken (rule 6).
    pub key_switches: u64,
    pub key_drops: u64,
    pub key_reverts: u64,
}

/// foca's broadcast handler; the registry itself is shared with
/// [`Membership`] (foca does not hand its handler back).
struct SharedRegistry(Rc<RefCell<Registry>>);

impl BroadcastHandler<NodeId> for SharedRegistry {
    type Key = RouteKey;
    type Error = RegistryError;

    fn receive_item(&mut self, data: &[u8], sender: Option<&NodeId>) -> Result<Option<RouteKey>, RegistryError> {
        self.0.borrow_mut().receive_item(data, sender)
    }
}

/// What a [`Membership`] asks of its driver ([`Membership::take_output`]).
#[derive(Default)]
pub struct Output {
    pub sends: Vec<(NodeId, Vec<u8>)>,
    pub timers: Vec<(Duration, Timer<NodeId>)>,
    pub notifications: Vec<OwnedNotification<NodeId>>,
    pub route_changes: Vec<RouteItem>,
}

pub struct Membership {
    foca: Foca<NodeId, PostcardCodec, SmallRng, SharedRegistry>,
    runtime: AccumulatingRuntime<NodeId>,
    registry: Rc<RefCell<Registry>>,
    keys: KeyRing,
    /// What members' packets say of their keys (rule 6).
    reports: Reports,
    steps: Vec<Step>,
    settings: GossipSettings,
    /// Sealed sync packets waiting to go (rule 3).
    outbox: std::collections::VecDeque<(NodeId, Vec<u8>)>,
    /// Names published since the last `poll_send`, to push (rule 3).
    to_push: Vec<RouteItem>,
    rng: SmallRng,
    /// This process's boot number and the last sequence it sealed (rule 5).
    epoch: u64,
    seq: u64,
    freshness: Freshness,
    pub stats: GossipStats,
}

impl Membership {
    /// `epoch` must be higher at every start of the node (its boot number):
    /// it is what tells its new packets from replayed old ones.
    pub fn new(id: NodeId, settings: &GossipSettings, keys: KeyRing, seed: u64, epoch: u64, cached: Vec<RouteItem>) -> Membership {
        let registry = Rc::new(RefCell::new(Registry::with_routes(cached)));
        let foca = Foca::with_custom_broadcast(id, settings.foca_config(), SmallRng::seed_from_u64(seed), PostcardCodec, SharedRegistry(registry.clone()));
        Membership {
            foca,
            runtime: AccumulatingRuntime::new(),
            registry,
            keys,
            reports: Reports::default(),
            steps: Vec::new(),
            settings: *settings,
            outbox: Default::default(),
            to_push: Vec::new(),
            rng: SmallRng::seed_from_u64(seed ^ 0x5ca1ab1e),
            epoch,
            seq: 0,
            freshness: Freshness::default(),
            stats: GossipStats::default(),
        }
    }

    /// The cluster size foca's timings are derived for now (rule 4).
    pub fn tuned_for(&self) -> u32 {
        self.settings.cluster_size_hint
    }

    fn retune(&mut self) {
        // Below 10, foca's formulas give the same suspicion (4 probe periods)
        // and too few retransmissions to reach every member reliably.
        let seen = (self.foca.num_members() as u32 + 1).max(CLUSTER_TUNING_NODES_MIN);
        let tuned = self.settings.cluster_size_hint.max(1);
        if seen > tuned * 2 || seen * 2 < tuned {
            let settings = GossipSettings { cluster_size_hint: seen, ..self.settings };
            if self.foca.set_config(settings.foca_config()).is_ok() {
                self.settings = settings;
            }
        }
    }

    pub fn id(&self) -> &NodeId {
        self.foca.identity()
    }

    /// Announces this node again to `seeds` while it hears from no member;
    /// each attempt alternates the key it sends with, when it holds two
    /// ([`crate::keyring`] rule 6).
    pub fn rejoin(&mut self, seeds: &[SocketAddr]) {
        if self.active_members() == 0 {
            self.keys.alternate();
        }
        for &seed in seeds {
            self.join(seed);
        }
    }

    /// Announces this node to whoever listens at `addr`.
    pub fn join(&mut self, addr: SocketAddr) {
        if addr != self.id().addr {
            let _ = self.foca.announce(NodeId::seed(addr), &mut self.runtime);
        }
    }

    /// Takes `members` as alive without asking anyone (a converged start
    /// for simulations; a real node joins through `join`).
    pub fn assume_members(&mut self, members: impl Iterator<Item = NodeId>) {
        let _ = self.foca.apply_many(members.map(Member::alive), false, &mut self.runtime);
    }

    /// Takes one packet from the network (rules 1 and 5).
    pub fn handle_packet(&mut self, sealed: &[u8]) -> Result<(), PacketError> {
        self.stats.packets_in += 1;
        self.stats.bytes_in += sealed.len() as u64;
        let handled = self.open(sealed).and_then(|(header, packet)| {
            let body = &packet[HEADER_BYTES..];
            match header.kind {
                KIND_FOCA => self.foca.handle_data(body, &mut self.runtime).map_err(|_| PacketError::Malformed),
                KIND_SYNC => self.take_sync(body),
                _ => Err(PacketError::Malformed),
            }
        });
        match handled {
            Err(PacketError::BadTag) => self.stats.refused_bad_tag += 1,
            Err(PacketError::Malformed) => self.stats.refused_malformed += 1,
            Err(PacketError::Replay) => self.stats.refused_replay += 1,
            Err(PacketError::WrongDestination) => self.stats.refused_wrong_destination += 1,
            Ok(()) => self.rotate(),
        }
        handled
    }

    /// Applies the key ring's rotation rules to the active members (rule 6).
    pub fn rotate(&mut self) {
        let active: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        self.reports.retain(|a| active.contains(a));
        let reports = &self.reports;
        if let Some(step) = self.keys.advance(active.iter().map(|a| reports.get(a))) {
            match step {
                Step::Switched(_) => self.stats.key_switches += 1,
                Step::Dropped(_) => self.stats.key_drops += 1,
                Step::Reverted(_) => self.stats.key_reverts += 1,
            }
            self.steps.push(step);
        }
    }

    /// Rotation steps taken since the last call, for the driver to log.
    pub fn take_key_steps(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }

    /// The node's key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Opens a packet, then checks its header: the header and the whole
    /// opened packet if it is new and for this node. Records what its
    /// sender said of its keys (rule 6).
    fn open(&mut self, sealed: &[u8]) -> Result<(Header, Vec<u8>), PacketError> {
        let (sealed_with, packet) = self.keys.open(sealed).ok_or(PacketError::BadTag)?;
        let (header, _) = Header::decode(&packet).ok_or(PacketError::Malformed)?;
        let me = self.foca.identity().addr;
        self.freshness.check(me, &header).map_err(|stale| match stale {
            Stale::WrongDestination => PacketError::WrongDestination,
            Stale::Replay => PacketError::Replay,
        })?;
        self.reports.record(header.from, Report { sends: sealed_with, holds: header.holds });
        Ok((header, packet))
    }

    /// Registry items from a sync packet: `u16` length, item, repeated.
    fn take_sync(&mut self, mut items: &[u8]) -> Result<(), PacketError> {
        let me = self.foca.identity().addr;
        let mut registry = self.registry.borrow_mut();
        while !items.is_empty() {
            let len = u16::from_le_bytes(items.get(..2).ok_or(PacketError::Malformed)?.try_into().unwrap()) as usize;
            let item = items.get(2..2 + len).ok_or(PacketError::Malformed)?;
            items = &items[2 + len..];
            let item = RouteItem::decode(item).map_err(|_| PacketError::Malformed)?;
            // Only this node speaks for its own names (registry rule 1).
            if item.node != me {
                registry.learn_remote(item);
            }
        }
        Ok(())
    }

    /// Seals `body` of `kind` for `to` (rules 1 and 5).
    fn seal(&mut self, to: SocketAddr, kind: u8, body: &[u8]) -> Vec<u8> {
        debug_assert!(body.len() <= self.settings.body_bytes_max());
        self.seq += 1;
        let (_, holds) = self.keys.ids();
        let header = Header { kind, from: self.foca.identity().addr, epoch: self.epoch, seq: self.seq, to, holds };
        let mut packet = Vec::with_capacity(HEADER_BYTES + body.len() + SEAL_BYTES);
        header.encode(&mut packet);
        packet.extend_from_slice(body);
        self.keys.seal(&mut packet);
        debug_assert!(packet.len() <= self.settings.packet_bytes_max, "rule 2");
        packet
    }

    /// Queues sync packets with every name this node hosts, for `to` alone.
    pub fn sync_to(&mut self, to: NodeId) {
        let me = self.id().addr;
        let own: Vec<Vec<u8>> = self.registry.borrow().iter().filter(|r| r.node == me).map(RouteItem::encode).collect();
        self.queue_items(to, own);
    }

    /// Pushes the names published since the last call to every member.
    fn push_published(&mut self) {
        let items: Vec<Vec<u8>> = self.to_push.drain(..).map(|i| i.encode()).collect();
        if self.foca.num_members() > DIRECT_PUSH_MEMBERS_MAX {
            return;
        }
        let members: Vec<NodeId> = self.foca.iter_members().map(|m| m.id().clone()).collect();
        for to in members {
            self.queue_items(to, items.clone());
        }
    }

    fn queue_items(&mut self, to: NodeId, own: Vec<Vec<u8>>) {
        let room = self.settings.body_bytes_max();
        let mut body = Vec::new();
        for item in own {
            if !body.is_empty() && body.len() + 2 + item.len() > room {
                let full = std::mem::take(&mut body);
                self.queue_sealed(to.clone(), &full);
            }
            body.extend_from_slice(&(item.len() as u16).to_le_bytes());
            body.extend_from_slice(&item);
        }
        if !body.is_empty() {
            self.queue_sealed(to, &body);
        }
    }

    /// Syncs one member chosen at random (anti-entropy, rule 3).
    pub fn resync_one(&mut self) {
        let members: Vec<NodeId> = self.foca.iter_members().map(|m| m.id().clone()).collect();
        if !members.is_empty() {
            let i = self.rng.random_range(0..members.len());
            self.sync_to(members[i].clone());
        }
    }

    fn queue_sealed(&mut self, to: NodeId, body: &[u8]) {
        let packet = self.seal(to.addr, KIND_SYNC, body);
        self.outbox.push_back((to, packet));
    }

    pub fn handle_timer(&mut self, timer: Timer<NodeId>) {
        // Stale timers (an old probe's) are refused by foca: not an error.
        let _ = self.foca.handle_timer(timer, &mut self.runtime);
        self.rotate();
    }

    /// Publishes an item about a name this node hosts.
    pub fn publish(&mut self, item: RouteItem) {
        debug_assert_eq!(item.node, self.id().addr, "a node publishes only its own names (registry rule 1)");
        if let Err(e) = self.foca.add_broadcast(&item.encode()) {
            // Only an item over a packet could fail: names are at most 64 bytes.
            panic!("route item refused by foca: {e}");
        }
        self.to_push.push(item);
    }

    /// Tells the cluster this node leaves; its members drop it at once.
    pub fn leave(&mut self) {
        let _ = self.foca.leave_cluster(&mut self.runtime);
    }

    /// The next packet to send, sealed (rules 1, 2 and 5).
    pub fn poll_send(&mut self) -> Option<(NodeId, Vec<u8>)> {
        if !self.to_push.is_empty() {
            self.push_published();
        }
        if let Some((to, packet)) = self.outbox.pop_front() {
            self.stats.packets_out += 1;
            self.stats.bytes_out += packet.len() as u64;
            return Some((to, packet));
        }
        let (to, data) = self.runtime.to_send()?;
        let packet = self.seal(to.addr, KIND_FOCA, &data);
        self.stats.packets_out += 1;
        self.stats.bytes_out += packet.len() as u64;
        Some((to, packet))
    }

    pub fn poll_timer(&mut self) -> Option<(Duration, Timer<NodeId>)> {
        self.runtime.to_schedule()
    }

    /// The next notification; a member coming up triggers rule 3 first.
    pub fn poll_notification(&mut self) -> Option<OwnedNotification<NodeId>> {
        let n = self.runtime.to_notify()?;
        if let OwnedNotification::MemberUp(id) | OwnedNotification::Rename(_, id) = &n {
            // A forgotten node that is back is heard again (registry rule 4).
            self.registry.borrow_mut().remember(id.addr);
            self.sync_to(id.clone());
        }
        if let OwnedNotification::MemberDown(id) = &n {
            // Freshness rule 3, and what it reported of its keys.
            self.freshness.forget(&id.addr);
            let gone = id.addr;
            self.reports.retain(|a| *a != gone);
        }
        if matches!(n, OwnedNotification::MemberUp(_) | OwnedNotification::MemberDown(_)) {
            self.retune();
        }
        Some(n)
    }

    /// Everything produced since the last call, taken in the one safe
    /// order: notifications first (a member coming up queues sync packets,
    /// rule 3), then packets, timers and registry changes.
    pub fn take_output(&mut self) -> Output {
        let mut out = Output::default();
        while let Some(n) = self.poll_notification() {
            out.notifications.push(n);
        }
        while let Some(p) = self.poll_send() {
            out.sends.push(p);
        }
        while let Some(t) = self.poll_timer() {
            out.timers.push(t);
        }
        out.route_changes = self.take_route_changes();
        out
    }

    /// Registry items that changed this node's view since the last call.
    pub fn take_route_changes(&mut self) -> Vec<RouteItem> {
        self.registry.borrow_mut().take_changes()
    }

    /// Forgets a node that is gone for good: the names it hosted, and any
    /// news of them until it is alive again (registry rule 4). Returns the
    /// names. The view decides whether it may be forgotten.
    pub fn forget(&mut self, node: SocketAddr) -> Vec<String> {
        assert_ne!(node, self.id().addr, "a node never forgets itself");
        self.registry.borrow_mut().forget_node(node)
    }

    pub fn route(&self, agent: &str) -> Option<RouteItem> {
        self.registry.borrow().get(agent).cloned()
    }

    /// Every member foca knows, with its state (down ones included until
    /// foca forgets them).
    pub fn members(&self) -> impl Iterator<Item = &Member<NodeId>> {
        self.foca.iter_membership_state()
    }

    /// Active members (alive or suspect), this node excluded.
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "the cluster key!";

    fn node(i: u8, key: &str) -> Membership {
        let addr: SocketAddr = format!("127.0.0.{i}:7946").parse().unwrap();
        let settings = GossipSettings { interval_ms: 200, fanout: 3, packet_bytes_max: 1400, cluster_size_hint: 3, periodic_gossip: true };
        Membership::new(NodeId { addr, api: addr, api_tls: false, boot: 1 }, &settings, KeyRing::new(key.as_bytes(), None).unwrap(), i as u64, 1, Vec::new())
    }

    /// A packet sealed with the key, as `from` would send it to `to`.
    fn forge(from: &Membership, to: &Membership, seq: u64, kind: u8, body: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        let ring = KeyRing::new(KEY.as_bytes(), None).unwrap();
        Header { kind, from: from.id().addr, epoch: 1, seq, to: to.id().addr, holds: ring.ids().1 }.encode(&mut p);
        p.extend_from_slice(body);
        ring.seal(&mut p);
        p
    }

    #[test]
    fn a_sync_packet_carries_own_names_to_one_member_and_garbage_is_refused() {
        let (mut a, mut b) = (node(1, KEY), node(2, KEY));
        for i in 0..100 {
            a.publish(RouteItem { agent: format!("agent-with-a-longish-name-{i}"), node: a.id().addr, version: 1, present: true });
        }
        while a.poll_send().is_some() {} // no members yet: nothing pushed
        a.sync_to(b.id().clone());
        let mut packets = 0;
        while let Some((to, p)) = a.poll_send() {
            assert_eq!(to, *b.id());
            assert!(p.len() <= 1400, "rule 2: {}", p.len());
            b.handle_packet(&p).unwrap();
            packets += 1;
        }
        assert!(packets > 1, "100 names do not fit one packet");
        assert_eq!(b.route("agent-with-a-longish-name-99").unwrap().node, a.id().addr);
        assert_eq!(b.take_route_changes().len(), 100);

        assert_eq!(b.handle_packet(&forge(&a, &b, 1000, KIND_SYNC, &[0xff, 0xff, 1])), Err(PacketError::Malformed));
        assert_eq!(b.handle_packet(&forge(&a, &b, 1001, 9, &[1, 2])), Err(PacketError::Malformed));
        assert_eq!(node(3, "another key, 16+").handle_packet(&forge(&a, &b, 1002, KIND_SYNC, &[])), Err(PacketError::BadTag));
        assert_eq!(b.stats.refused_malformed, 2);
    }

    #[test]
    fn replayed_and_misdirected_packets_are_refused_and_own_names_are_skipped() {
        let (mut a, mut b) = (node(1, KEY), node(2, KEY));
        a.publish(RouteItem { agent: "mine".into(), node: a.id().addr, version: 1, present: true });
        while a.poll_send().is_some() {}
        a.sync_to(b.id().clone());
        let (_, sync) = a.poll_send().unwrap();
        b.handle_packet(&sync).unwrap();
        assert_eq!(b.handle_packet(&sync), Err(PacketError::Replay), "the same packet twice");
        assert_eq!(a.handle_packet(&sync), Err(PacketError::WrongDestination), "sent back to its sender");
        assert_eq!((b.stats.refused_replay, a.stats.refused_wrong_destination), (1, 1));
        // A sync packet naming the receiver's own names (once, a loop that
        // never ended): skipped, and the rest still read.
        let items: Vec<u8> = [
            RouteItem { agent: "x".into(), node: b.id().addr, version: 9, present: true },
            RouteItem { agent: "y".into(), node: a.id().addr, version: 9, present: true },
        ]
        .iter()
        .flat_map(|i| {
            let e = i.encode();
            let mut v = (e.len() as u16).to_le_bytes().to_vec();
            v.extend(e);
            v
        })
        .collect();
        assert_eq!(b.handle_packet(&forge(&a, &b, 50, KIND_SYNC, &items)), Ok(()));
        assert!(b.route("x").is_none(), "only b speaks for its names");
        assert_eq!(b.route("y").unwrap().version, 9);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Sealed packets of any kind and body, from a member with the key:
        /// what reaches the parsers behind the seal.
        fn sealed(from: &Membership, to: &Membership) -> impl Strategy<Value = Vec<u8>> {
            let (f, t) = (from.id().addr, to.id().addr);
            (any::<u8>(), 1u64..u64::MAX, prop::collection::vec(any::<u8>(), 0..1400), any::<bool>()).prop_map(move |(kind, seq, body, sync)| {
                let mut p = Vec::new();
                // Epoch 0: the real sender (epoch 1) comes after, as after a restart.
                let ring = KeyRing::new(KEY.as_bytes(), None).unwrap();
                Header { kind: if sync { KIND_SYNC } else { kind }, from: f, epoch: 0, seq, to: t, holds: ring.ids().1 }.encode(&mut p);
                p.extend_from_slice(&body);
                ring.seal(&mut p);
                p
            })
        }

        proptest! {
            #![proptest_config(crate::fuzz::config(512))]

            /// Any bytes from anyone: refused before parsing, never a panic.
            #[test]
            fn unauthenticated_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
                let mut b = node(2, KEY);
                prop_assert_eq!(b.handle_packet(&bytes), Err(PacketError::BadTag));
            }

            /// Anything a key holder could seal: parsed without a panic or a
            /// hang, and the node still works after.
            #[test]
            fn sealed_bodies_of_any_shape_never_wedge_a_node(packets in prop::collection::vec(sealed(&node(1, KEY), &node(2, KEY)), 1..8)) {
                let (mut a, mut b) = (node(1, KEY), node(2, KEY));
                for p in &packets {
                    let _ = b.handle_packet(p);
                }
                a.sync_to(b.id().clone());
                a.publish(RouteItem { agent: "after".into(), node: a.id().addr, version: 1, present: true });
                a.sync_to(b.id().clone());
                while let Some((_, p)) = a.poll_send() {
                    let _ = b.handle_packet(&p);
                }
                prop_assert!(b.route("after").is_some());
            }

            /// Sync bodies built from real items, cut anywhere: the items
            /// before the cut are read, the cut one is refused.
            #[test]
            fn cut_sync_bodies_are_malformed_not_fatal(names in prop::collection::vec("[a-z]{1,20}", 1..10), cut in any::<prop::sample::Index>()) {
                let (a, mut b) = (node(1, KEY), node(2, KEY));
                let mut body = Vec::new();
                for n in &names {
                    let e = RouteItem { agent: n.clone(), node: a.id().addr, version: 3, present: true }.encode();
                    body.extend_from_slice(&(e.len() as u16).to_le_bytes());
                    body.extend_from_slice(&e);
                }
                let at = cut.index(body.len() + 1);
                let whole = at == body.len();
                let result = b.handle_packet(&forge(&a, &b, 1, KIND_SYNC, &body[..at]));
                prop_assert!(result.is_ok() || (!whole && result == Err(PacketError::Malformed)), "{:?}", result);
            }
        }
    }
}
