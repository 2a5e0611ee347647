//! What one shard knows of the other nodes: who they are, whether they are
//! alive, and the messages queued for them (which names they host is
//! routing: `router::directory`).
//! Pure data, no I/O: the router reads and fills it inside a tick, the link
//! tasks (`listener`, `reader`, `writer`) drain and fill it between ticks,
//! on the same thread.
//!
//! - this module: the nodes, the outbox bounds, queueing (rules 1 to 3, 6);
//! - [`slot`]: a connection slot and its acknowledgements (rules 4, 5);
//! - [`inbound`]: arrivals waiting for a mailbox (rule 6).
//!
//! Rules:
//! 1. Each remote node has `slots` connection slots on this shard. A message
//!    goes to slot `conversation_id mod slots` (or a hash of its sender
//!    without one), so one conversation keeps to one connection and its
//!    order holds across the hop.
//! 2. Messages queued for a node (in slots, or unacknowledged) are at most
//!    `outbox_messages_max`; past it, sends get busy (router rule 1).
//! 3. A node marked down loses its queued messages as dead letters
//!    (`node_down`) at once, and sends to it fail fast (`Unreachable`).
//! 4. A message handed to a connection moves from its slot's `queue` to
//!    `unacked` *before* any of its bytes are written, and stays there until
//!    the receiving node acknowledges it (frame rule 4). Acknowledgements
//!    can therefore arrive at any point of a batch's writes: they can only
//!    name messages already in `unacked`. An acknowledgement that goes back
//!    or past what the writer has started to write is a protocol violation:
//!    it closes that one connection and is counted, never a panic.
//! 5. If the connection fails while the node is alive, `unacked` goes back
//!    to the front of the queue and is sent again on the next connection:
//!    nothing sent to a live node is lost, and order holds; a message the
//!    receiver took but could not acknowledge arrives twice (at-least-once,
//!    in that case only).
//! 6. Bytes are bounded as well as counts: the messages queued for all
//!    nodes together hold at most `outbox_bytes_max` (a send past it is
//!    busy), and arrivals waiting for a mailbox at most `inbound_bytes_max`
//!    (readers stop reading, so TCP pushes back), plus at most one read.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Waker;

use caxton_cluster::identity::node_tag;

use crate::envelope::Message;
use crate::placement::fnv1a64;

/// Index of a remote node in a shard's table.
pub type NodeIdx = u16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No connection; one is opened when a message is queued.
    Closed,
    /// A connector task runs for it.
    Connecting,
    /// A writer task owns a connection and waits on `waker`.
    Open,
}

/// Why a message to a node cannot be queued (rules 2, 3 and 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRefusal {
    /// The node is down: fail fast.
    Down,
    /// Its outbox has no room now, by count or by bytes.
    Full { bytes_bound: bool },
}

mod inbound;
mod slot;

pub use slot::{AckError, Slot};

pub struct RemoteNode {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub prefix: String,
    pub alive: bool,
    /// Alive, but SWIM suspects it (informational: still routable).
    pub suspect: bool,
    /// Messages queued in slots or unacknowledged (rule 2).
    pub queued: usize,
    pub reserved: usize,
    pub slots: Vec<Slot>,
    /// Its connections' failures, logged at most once an interval (a dead
    /// peer fails every slot every reconnect delay: dozens a second).
    pub failure_log: crate::throttle::Throttle,
}

#[derive(Debug, Default, Clone)]
pub struct LinkCounters {
    pub frames_out: u64,
    pub frames_in: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub connects: u64,
    pub connect_failures: u64,
    /// Messages sent again after a connection failed unacknowledged.
    pub resent: u64,
    /// Inbound connections refused: bad key (handshake), too many, malformed frame.
    pub refused_bad_key: u64,
    /// Inbound connections whose handshake did not complete (closed, timed
    /// out, not a caxton link).
    pub refused_handshake: u64,
    pub refused_too_many: u64,
    /// Connections waiting for a handshake slot were turned away: more
    /// handshakes at once than [`crate::limits::LINK_PENDING_HANDSHAKES_MAX`]
    /// (or than strangers may hold), or more from one source than
    /// [`crate::limits::LINK_PENDING_PER_SOURCE_MAX`] (link rule 6).
    pub refused_pending: u64,
    pub refused_pending_per_source: u64,
    pub closed_malformed: u64,
    /// Connections closed because a record did not open: altered, replayed
    /// or forged bytes (session rule 4), either direction.
    pub closed_tampered: u64,
    /// Inbound connections closed because their cluster key was dropped
    /// by a rotation (keyring rule 5).
    pub closed_retired_key: u64,
    /// Outbound connections closed because the peer acknowledged wrongly.
    pub closed_bad_ack: u64,
    /// Sends refused because this shard's link outboxes were at their
    /// byte bound.
    pub busy_bytes: u64,
    pub accepted: u64,
    pub open_inbound: usize,
    /// Inbound connections still in their handshake.
    pub pending_handshakes: usize,
}

/// The bounds of a shard's links (rules 2 and 6), each with its default in
/// `limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    /// Connection slots per remote node.
    pub slots_per_node: usize,
    /// Messages queued for one node ([`crate::limits::NODE_OUTBOX_MESSAGES_MAX`]).
    pub outbox_messages_max: usize,
    /// Bytes queued for all nodes together (this shard's share of
    /// [`crate::limits::NODE_LINK_OUTBOX_BYTES_MAX`]).
    pub outbox_bytes_max: usize,
    /// Arrivals waiting for a mailbox ([`crate::limits::LINK_INBOUND_MESSAGES_MAX`]).
    pub inbound_messages_max: usize,
    /// Their bytes (this shard's share of [`crate::limits::NODE_LINK_INBOX_BYTES_MAX`]).
    pub inbound_bytes_max: usize,
}

impl LinkLimits {
    /// The smallest bounds: a table that never queues (a standalone node).
    pub fn none() -> LinkLimits {
        LinkLimits { slots_per_node: 1, outbox_messages_max: 1, outbox_bytes_max: 1, inbound_messages_max: 1, inbound_bytes_max: 1 }
    }
}

pub struct RemoteTable {
    pub self_name: Arc<str>,
    pub self_prefix: String,
    nodes: Vec<RemoteNode>,
    by_name: HashMap<Arc<str>, NodeIdx>,
    by_tag: HashMap<u64, NodeIdx>,
    limits: LinkLimits,
    /// Bytes of every message queued or unacknowledged, all nodes, and of
    /// the reserved ones (rule 6).
    queued_bytes: usize,
    reserved_bytes: usize,
    /// Slots that have mail and no connection: the shard opens them.
    pub wanted: Vec<(NodeIdx, usize)>,
    /// Messages read from links, waiting for a mailbox, and their bytes.
    inbound: VecDeque<Message>,
    inbound_bytes: usize,
    /// Readers waiting for room in `inbound`.
    pub inbound_wakers: Vec<Waker>,
    pub counters: LinkCounters,
    /// Warnings about refused connections and frames (remote input).
    pub refusal_log: crate::throttle::Throttle,
    /// Places of inbound connections still in their handshake (link rule 6).
    pub pending: crate::pending::PendingPlaces,
    /// Messages a link gave up on (sent [`crate::limits::LINK_SEND_ATTEMPTS_MAX`]
    /// times unacknowledged), for the shard to dead-letter.
    given_up: Vec<Message>,
}

impl RemoteTable {
    pub fn new(self_name: &str, limits: LinkLimits) -> RemoteTable {
        assert!(limits.slots_per_node > 0 && limits.outbox_messages_max > 0 && limits.inbound_messages_max > 0);
        assert!(limits.outbox_bytes_max > 0 && limits.inbound_bytes_max > 0);
        RemoteTable {
            self_name: self_name.into(),
            self_prefix: crate::names::node_prefix(self_name),
            nodes: Vec::new(),
            by_name: HashMap::new(),
            by_tag: HashMap::new(),
            limits,
            queued_bytes: 0,
            reserved_bytes: 0,
            wanted: Vec::new(),
            inbound: VecDeque::new(),
            inbound_bytes: 0,
            inbound_wakers: Vec::new(),
            counters: LinkCounters::default(),
            refusal_log: Default::default(),
            pending: crate::pending::PendingPlaces::new(crate::pending::PendingLimits { max: 1, per_source_max: 1, reserved: 0 }),
            given_up: Vec::new(),
        }
    }

    /// The table's pool of pending handshakes (link rule 6).
    pub fn with_pending(mut self, limits: crate::pending::PendingLimits) -> RemoteTable {
        assert_eq!(self.pending.held(), 0);
        self.pending = crate::pending::PendingPlaces::new(limits);
        self
    }

    /// Messages a link gave up on, kept until the shard takes them.
    pub fn give_up(&mut self, lost: Vec<Message>) {
        self.given_up.extend(lost);
    }

    pub fn take_given_up(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.given_up)
    }

    /// The table of a node outside any cluster: it knows no other node.
    pub fn standalone() -> RemoteTable {
        RemoteTable::new("", LinkLimits::none())
    }

    pub fn node(&self, n: NodeIdx) -> &RemoteNode {
        &self.nodes[n as usize]
    }

    pub fn node_mut(&mut self, n: NodeIdx) -> &mut RemoteNode {
        &mut self.nodes[n as usize]
    }

    pub fn nodes(&self) -> impl Iterator<Item = (NodeIdx, &RemoteNode)> {
        self.nodes.iter().enumerate().map(|(i, n)| (i as NodeIdx, n))
    }

    /// Learns a node or a change of its state. Returns the messages a node
    /// going down had queued (rule 3), for the caller to count.
    pub fn set_node(&mut self, name: &str, addr: SocketAddr, alive: bool, suspect: bool) -> Vec<Message> {
        if *name == *self.self_name {
            return Vec::new();
        }
        let n = match self.by_name.get(name) {
            Some(&n) => n,
            None => {
                assert!(self.nodes.len() < NodeIdx::MAX as usize, "too many nodes");
                let n = self.nodes.len() as NodeIdx;
                let name: Arc<str> = name.into();
                let slots = (0..self.limits.slots_per_node).map(|_| Slot::new()).collect();
                self.nodes.push(RemoteNode {
                    name: name.clone(),
                    addr,
                    prefix: crate::names::node_prefix(&name),
                    alive,
                    suspect: alive && suspect,
                    queued: 0,
                    reserved: 0,
                    slots,
                    failure_log: Default::default(),
                });
                self.by_name.insert(name.clone(), n);
                self.by_tag.insert(node_tag(&name), n);
                return Vec::new();
            }
        };
        let node = &mut self.nodes[n as usize];
        node.addr = addr;
        node.suspect = alive && suspect;
        let was_alive = std::mem::replace(&mut node.alive, alive);
        let mut lost = Vec::new();
        if was_alive && !alive {
            for slot in &mut node.slots {
                lost.extend(slot.unacked.drain(..));
                lost.extend(slot.queue.drain(..));
                slot.generation += 1;
                slot.state = SlotState::Closed;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
            debug_assert_eq!(lost.len(), node.queued);
            node.queued = 0;
            self.queued_bytes -= lost.iter().map(Message::len).sum::<usize>();
            self.wanted.retain(|&(m, _)| m != n);
        }
        lost
    }

    /// The index of node `name`, if known.
    pub fn node_index(&self, name: &str) -> Option<NodeIdx> {
        self.by_name.get(name).copied()
    }

    /// The node of a node-qualified runtime name (frame rule 3), unless it
    /// is this node.
    pub fn node_of_runtime_name(&self, receiver: &[u8]) -> Option<NodeIdx> {
        let tag = crate::names::tag_of(receiver)?;
        self.by_tag.get(&tag).copied()
    }

    /// Messages waiting for other nodes (queued or unacknowledged).
    pub fn queued(&self) -> usize {
        self.nodes.iter().map(|n| n.queued).sum()
    }

    /// Their bytes.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Other nodes by state: alive, suspect, down.
    pub fn states(&self) -> [usize; 3] {
        let mut c = [0; 3];
        for n in &self.nodes {
            c[if !n.alive {
                2
            } else if n.suspect {
                1
            } else {
                0
            }] += 1;
        }
        c
    }

    /// Room for one more message of `bytes` to `n`? (rules 2, 3 and 6)
    pub fn reserve(&mut self, n: NodeIdx, bytes: usize) -> Result<(), NodeRefusal> {
        let node = &mut self.nodes[n as usize];
        if !node.alive {
            return Err(NodeRefusal::Down);
        }
        if node.queued + node.reserved >= self.limits.outbox_messages_max {
            return Err(NodeRefusal::Full { bytes_bound: false });
        }
        if self.queued_bytes + self.reserved_bytes + bytes > self.limits.outbox_bytes_max {
            self.counters.busy_bytes += 1;
            return Err(NodeRefusal::Full { bytes_bound: true });
        }
        node.reserved += 1;
        self.reserved_bytes += bytes;
        Ok(())
    }

    pub fn cancel(&mut self, n: NodeIdx, bytes: usize) {
        self.nodes[n as usize].reserved -= 1;
        self.reserved_bytes -= bytes;
    }

    /// Queues a reserved message on its slot (rule 1) and wakes its writer,
    /// or asks for a connection. A node that went down since the reserve
    /// hands the message back (rule 3).
    pub fn push(&mut self, n: NodeIdx, message: Message) -> Result<(), Message> {
        self.cancel(n, message.len());
        let node = &mut self.nodes[n as usize];
        if !node.alive {
            return Err(message);
        }
        let key = match message.conversation_id() {
            0 => fnv1a64(message.sender()),
            c => c,
        };
        let s = (key % node.slots.len() as u64) as usize;
        node.queued += 1;
        self.queued_bytes += message.len();
        let slot = &mut node.slots[s];
        slot.queue.push_back(message);
        match slot.state {
            SlotState::Open => {
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
            SlotState::Closed => {
                slot.state = SlotState::Connecting;
                self.wanted.push((n, s));
            }
            SlotState::Connecting => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
