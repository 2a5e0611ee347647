//! One node's view of the cluster: foca plus what caxton adds.
//!
//! Input and time go in (`handle_packet`, `handle_timer`, `join`, `publish`,
//! `leave`); packets, timers and notifications come out (`poll_*`). Nothing
//! here reads a clock or a socket, so a seeded simulation replays a whole
//! cluster ([`crate::sim`]).
//!
//! Rules:
//! 1. Every packet out is sealed, every packet in is opened first
//!    ([`crate::auth`] rule 1); a refused packet is counted by why.
//! 2. A packet never exceeds `GossipSettings::packet_bytes_max`, tag
//!    included: foca is given that size minus the tag.
//! 3. When a member comes up, this node republishes the names it hosts
//!    ([`crate::registry`] rule 3).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::rc::Rc;
use std::time::Duration;

use foca::{AccumulatingRuntime, BroadcastHandler, Config, Foca, Member, OwnedNotification, PeriodicParams, PostcardCodec, Timer};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::auth::{ClusterKey, TAG_BYTES};
use crate::registry::{RegistryError, RouteKey};
use crate::{NodeId, Registry, RouteItem};

/// The gossip parameters (ADR-0017's SWIM section). Defaults come from the
/// node's limits module; the simulator uses the same ones.
#[derive(Debug, Clone, Copy)]
pub struct GossipSettings {
    /// Between two gossip rounds of a node. ADR: 200 ms.
    pub interval_ms: u64,
    /// Members each round goes to. ADR: 3.
    pub fanout: usize,
    /// Largest packet, tag included. ADR: 1400 bytes (MTU-safe).
    pub packet_bytes_max: usize,
    /// Expected cluster size: sets how many times an update is passed on
    /// and how long a suspect has to refute (foca's LAN formulas).
    pub cluster_size_hint: u32,
}

impl GossipSettings {
    /// foca's LAN profile with our gossip parameters (rule 2).
    pub fn foca_config(&self) -> Config {
        assert!(self.packet_bytes_max > TAG_BYTES + 64, "packets too small for a foca header");
        let mut c = Config::new_lan(NonZeroU32::new(self.cluster_size_hint.max(1)).unwrap());
        c.max_packet_size = NonZeroUsize::new(self.packet_bytes_max - TAG_BYTES).unwrap();
        c.periodic_gossip = Some(PeriodicParams {
            frequency: Duration::from_millis(self.interval_ms),
            num_members: NonZeroUsize::new(self.fanout.max(1)).unwrap(),
        });
        c
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// The tag did not verify: wrong key, or not ours.
    BadTag,
    /// The tag verified but foca refused the content.
    Malformed,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct GossipStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub refused_bad_tag: u64,
    pub refused_malformed: u64,
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

pub struct Membership {
    foca: Foca<NodeId, PostcardCodec, SmallRng, SharedRegistry>,
    runtime: AccumulatingRuntime<NodeId>,
    registry: Rc<RefCell<Registry>>,
    key: ClusterKey,
    pub stats: GossipStats,
}

impl Membership {
    pub fn new(id: NodeId, settings: &GossipSettings, key: ClusterKey, seed: u64, cached: Vec<RouteItem>) -> Membership {
        let registry = Rc::new(RefCell::new(Registry::with_routes(cached)));
        let foca = Foca::with_custom_broadcast(id, settings.foca_config(), SmallRng::seed_from_u64(seed), PostcardCodec, SharedRegistry(registry.clone()));
        Membership { foca, runtime: AccumulatingRuntime::new(), registry, key, stats: GossipStats::default() }
    }

    pub fn id(&self) -> &NodeId {
        self.foca.identity()
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

    /// Takes one packet from the network (rule 1).
    pub fn handle_packet(&mut self, sealed: &[u8]) -> Result<(), PacketError> {
        self.stats.packets_in += 1;
        self.stats.bytes_in += sealed.len() as u64;
        let Some(body) = self.key.open(sealed) else {
            self.stats.refused_bad_tag += 1;
            return Err(PacketError::BadTag);
        };
        self.foca.handle_data(body, &mut self.runtime).map_err(|_| {
            self.stats.refused_malformed += 1;
            PacketError::Malformed
        })
    }

    pub fn handle_timer(&mut self, timer: Timer<NodeId>) {
        // Stale timers (an old probe's) are refused by foca: not an error.
        let _ = self.foca.handle_timer(timer, &mut self.runtime);
    }

    /// Publishes an item about a name this node hosts.
    pub fn publish(&mut self, item: RouteItem) {
        debug_assert_eq!(item.node, self.id().addr, "a node publishes only its own names (registry rule 1)");
        if let Err(e) = self.foca.add_broadcast(&item.encode()) {
            // Only an item over a packet could fail: names are at most 64 bytes.
            panic!("route item refused by foca: {e}");
        }
    }

    /// Republishes every name this node hosts (rule 3).
    pub fn republish_own(&mut self) {
        let own: Vec<RouteItem> = self.registry.borrow().iter().filter(|r| r.node == self.id().addr).cloned().collect();
        for item in own {
            self.publish(item);
        }
    }

    /// Tells the cluster this node leaves; its members drop it at once.
    pub fn leave(&mut self) {
        let _ = self.foca.leave_cluster(&mut self.runtime);
    }

    /// The next packet to send, sealed (rules 1 and 2).
    pub fn poll_send(&mut self) -> Option<(NodeId, Vec<u8>)> {
        let (to, data) = self.runtime.to_send()?;
        let mut packet = Vec::with_capacity(data.len() + TAG_BYTES);
        packet.extend_from_slice(&data);
        self.key.seal(&mut packet);
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
        if matches!(n, OwnedNotification::MemberUp(_)) {
            self.republish_own();
        }
        Some(n)
    }

    /// Registry items that changed this node's view since the last call.
    pub fn take_route_changes(&mut self) -> Vec<RouteItem> {
        self.registry.borrow_mut().take_changes()
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
