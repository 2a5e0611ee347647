//! What one shard knows of the other nodes: who they are, whether they are
//! alive, and the messages queued for them (which names they host is
//! routing: `router::directory`).
//! Pure data, no I/O: the router reads and fills it inside a tick, the link
//! tasks (`io`) drain and fill it between ticks, on the same thread.
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

/// Why an acknowledgement was refused (rule 4): the peer broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// The running count went down.
    Backwards { acked: u64, total: u64 },
    /// The count names messages the writer has not started to write.
    PastWritten { written: u64, total: u64 },
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::Backwards { acked, total } => write!(f, "acknowledgement went back from {acked} to {total}"),
            AckError::PastWritten { written, total } => write!(f, "acknowledged {total} messages, only {written} were written"),
        }
    }
}

pub struct Slot {
    /// Waiting for a connection's writer.
    pub queue: VecDeque<Message>,
    /// Handed to the current connection (written, or being written), not
    /// yet acknowledged (rule 4). Its front is message number `acked` of
    /// the connection.
    pub unacked: VecDeque<Message>,
    /// Messages the receiver acknowledged on the current connection.
    pub acked: u64,
    /// Messages of the current connection whose bytes the writer has
    /// started to write: acknowledgements may reach this far, no further.
    pub written: u64,
    /// Connections opened for this slot; an ack reader of an older one is
    /// ignored.
    pub connection: u64,
    /// The current connection failed (seen by its ack reader, or a bad ack).
    pub broken: bool,
    /// Times the oldest unacknowledged message was sent without an ack.
    pub attempts: u32,
    pub state: SlotState,
    /// The writer waiting for messages.
    pub waker: Option<Waker>,
    /// Bumped when the node goes down: a writer of an older generation stops.
    pub generation: u64,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            queue: VecDeque::new(),
            unacked: VecDeque::new(),
            acked: 0,
            written: 0,
            connection: 0,
            broken: false,
            attempts: 0,
            state: SlotState::Closed,
            waker: None,
            generation: 0,
        }
    }

    /// Messages handed to the current connection so far.
    fn handed(&self) -> u64 {
        self.acked + self.unacked.len() as u64
    }
}

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

    /// A new connection of slot `s` is open: returns its number.
    pub fn connected(&mut self, n: NodeIdx, s: usize) -> u64 {
        let slot = &mut self.nodes[n as usize].slots[s];
        assert!(slot.unacked.is_empty(), "requeued before reconnecting");
        slot.connection += 1;
        slot.acked = 0;
        slot.written = 0;
        slot.broken = false;
        slot.state = SlotState::Open;
        slot.connection
    }

    /// The writer takes what is queued on its slot: it moves to `unacked`
    /// before a byte of it is written (rule 4). Returns how many moved.
    pub fn hand_over(&mut self, n: NodeIdx, s: usize) -> usize {
        let slot = &mut self.nodes[n as usize].slots[s];
        let moved = slot.queue.len();
        if slot.unacked.is_empty() {
            std::mem::swap(&mut slot.queue, &mut slot.unacked); // keeps both allocations
        } else {
            slot.unacked.append(&mut slot.queue);
        }
        moved
    }

    /// Appends to `buf` the frames of the next handed messages not yet
    /// written, until it holds `bytes_max` (at least one frame), and counts
    /// them as written (rule 4). Returns how many frames it appended.
    pub fn next_frames(&mut self, n: NodeIdx, s: usize, buf: &mut Vec<u8>, bytes_max: usize) -> usize {
        let slot = &mut self.nodes[n as usize].slots[s];
        debug_assert!(slot.written >= slot.acked && slot.written <= slot.handed());
        let mut i = (slot.written - slot.acked) as usize;
        let mut frames = 0;
        while let Some(m) = slot.unacked.get(i) {
            if frames > 0 && buf.len() + super::frame::FRAME_PREFIX_BYTES + m.len() > bytes_max {
                break;
            }
            super::frame::push_frame(buf, m);
            i += 1;
            frames += 1;
        }
        slot.written += frames as u64;
        frames
    }

    /// Has the writer written everything it took?
    pub fn all_written(&self, n: NodeIdx, s: usize) -> bool {
        let slot = &self.nodes[n as usize].slots[s];
        slot.written == slot.handed()
    }

    /// The receiver acknowledged `total` messages on `connection` so far.
    /// News about an older connection or generation is ignored; a count
    /// that goes back or past what was written is the peer's fault (rule 4).
    pub fn acknowledged(&mut self, n: NodeIdx, s: usize, generation: u64, connection: u64, total: u64) -> Result<(), AckError> {
        let node = &mut self.nodes[n as usize];
        let slot = &mut node.slots[s];
        if slot.generation != generation || slot.connection != connection {
            return Ok(());
        }
        if total < slot.acked {
            return Err(AckError::Backwards { acked: slot.acked, total });
        }
        if total > slot.written {
            return Err(AckError::PastWritten { written: slot.written, total });
        }
        let newly = (total - slot.acked) as usize;
        assert!(newly <= slot.unacked.len(), "written messages are in unacked");
        let bytes: usize = slot.unacked.drain(..newly).map(|m| m.len()).sum();
        slot.acked = total;
        if newly > 0 {
            slot.attempts = 0;
        }
        node.queued -= newly;
        self.queued_bytes -= bytes;
        Ok(())
    }

    /// `connection` failed (its ack reader saw it, or it broke the
    /// protocol): wake the writer.
    pub fn broke(&mut self, n: NodeIdx, s: usize, generation: u64, connection: u64) {
        let slot = &mut self.nodes[n as usize].slots[s];
        if slot.generation == generation && slot.connection == connection {
            slot.broken = true;
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// After a failed connection: the unacknowledged go back to the front of
    /// the queue, in order (rule 5). Past `attempts_max` sends without an
    /// ack, they are handed back instead, for the caller to count as lost.
    pub fn requeue_unacked(&mut self, n: NodeIdx, s: usize, attempts_max: u32) -> Vec<Message> {
        let node = &mut self.nodes[n as usize];
        let slot = &mut node.slots[s];
        if slot.unacked.is_empty() {
            return Vec::new();
        }
        // Only a message whose bytes went out counts as a try.
        if slot.written > slot.acked {
            slot.attempts += 1;
        }
        slot.written = slot.acked;
        if slot.attempts >= attempts_max {
            slot.attempts = 0;
            let lost: Vec<Message> = slot.unacked.drain(..).collect();
            node.queued -= lost.len();
            self.queued_bytes -= lost.iter().map(Message::len).sum::<usize>();
            return lost;
        }
        while let Some(m) = slot.unacked.pop_back() {
            slot.queue.push_front(m);
        }
        Vec::new()
    }

    // ------------------------------------------------------------ arrivals

    /// Is there room to read more from links? Readers wait otherwise.
    pub fn inbound_has_room(&self) -> bool {
        self.inbound.len() < self.limits.inbound_messages_max && self.inbound_bytes < self.limits.inbound_bytes_max
    }

    /// Takes an arrival (one read may go past the bounds by what it held).
    pub fn push_inbound(&mut self, m: Message) {
        self.inbound_bytes += m.len();
        self.inbound.push_back(m);
    }

    pub fn pop_inbound(&mut self) -> Option<Message> {
        let m = self.inbound.pop_front()?;
        self.inbound_bytes -= m.len();
        Some(m)
    }

    /// Puts back an arrival that found no room yet (it keeps its place).
    pub fn unpop_inbound(&mut self, m: Message) {
        self.inbound_bytes += m.len();
        self.inbound.push_front(m);
    }

    /// Arrivals waiting for a mailbox, and their bytes.
    pub fn inbound_len(&self) -> (usize, usize) {
        (self.inbound.len(), self.inbound_bytes)
    }

    /// Wakes readers once `inbound` has room again.
    pub fn wake_readers(&mut self) {
        if self.inbound_has_room() {
            for w in self.inbound_wakers.drain(..) {
                w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Header;

    fn msg(conversation_id: u64) -> Message {
        Message::encode(&Header { conversation_id, ..Default::default() }, b"a", b"far", b"x").unwrap()
    }

    fn limits(slots: usize, outbox: usize) -> LinkLimits {
        LinkLimits { slots_per_node: slots, outbox_messages_max: outbox, outbox_bytes_max: 1 << 30, inbound_messages_max: 10, inbound_bytes_max: 1 << 20 }
    }

    fn queue(t: &mut RemoteTable, n: NodeIdx, m: Message) {
        t.reserve(n, m.len()).unwrap();
        t.push(n, m).unwrap();
    }

    /// Writes everything handed so far, as the writer task does.
    fn write_all(t: &mut RemoteTable, n: NodeIdx, s: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        t.hand_over(n, s);
        while !t.all_written(n, s) {
            t.next_frames(n, s, &mut wire, 64);
        }
        wire
    }

    #[test]
    fn a_conversation_keeps_to_one_slot_and_the_outbox_is_bounded() {
        let mut t = RemoteTable::new("127.0.0.1:7000", limits(4, 3));
        t.set_node("127.0.0.2:7000", "127.0.0.2:7000".parse().unwrap(), true, false);
        let n = t.node_index("127.0.0.2:7000").unwrap();
        for _ in 0..3 {
            queue(&mut t, n, msg(6));
        }
        assert_eq!(t.reserve(n, 1), Err(NodeRefusal::Full { bytes_bound: false }));
        assert_eq!(t.node(n).slots[2].queue.len(), 3, "conversation 6 mod 4 slots");
        assert_eq!(t.wanted, vec![(n, 2)], "one connection asked for");
        // Written, then acknowledged: only then is there room again.
        let generation = t.node(n).slots[2].generation;
        let conn = t.connected(n, 2);
        write_all(&mut t, n, 2);
        assert_eq!(t.reserve(n, 1), Err(NodeRefusal::Full { bytes_bound: false }), "unacknowledged still count");
        t.acknowledged(n, 2, generation, conn, 2).unwrap();
        assert!(t.reserve(n, 1).is_ok());
        t.cancel(n, 1);
        assert_eq!(t.node(n).slots[2].unacked.len(), 1);
        assert_eq!(t.queued_bytes(), msg(6).len());
    }

    #[test]
    fn the_outbox_is_bounded_in_bytes_across_nodes() {
        let one = msg(1).len();
        let mut t = RemoteTable::new("a:1", LinkLimits { outbox_bytes_max: 3 * one, ..limits(1, 100) });
        t.set_node("b:1", "127.0.0.2:7000".parse().unwrap(), true, false);
        t.set_node("c:1", "127.0.0.3:7000".parse().unwrap(), true, false);
        queue(&mut t, 0, msg(1));
        queue(&mut t, 1, msg(1));
        t.reserve(0, one).unwrap();
        assert_eq!(t.reserve(1, one), Err(NodeRefusal::Full { bytes_bound: true }), "the bound is the shard's, all nodes together");
        assert_eq!(t.counters.busy_bytes, 1);
        t.cancel(0, one);
        assert!(t.reserve(1, one).is_ok());
    }

    #[test]
    fn acknowledgements_may_come_mid_batch_and_bad_ones_are_refused() {
        let mut t = RemoteTable::new("a:1", limits(1, 100));
        t.set_node("b:1", "127.0.0.2:7000".parse().unwrap(), true, false);
        for c in 1..=4 {
            queue(&mut t, 0, msg(c));
        }
        let conn = t.connected(0, 0);
        assert_eq!(t.hand_over(0, 0), 4);
        let mut wire = Vec::new();
        assert_eq!(t.next_frames(0, 0, &mut wire, 1), 1, "at least one frame a write");
        assert_eq!(t.acknowledged(0, 0, 0, conn, 2), Err(AckError::PastWritten { written: 1, total: 2 }));
        t.acknowledged(0, 0, 0, conn, 1).unwrap(); // before the batch's other writes
        assert_eq!(t.next_frames(0, 0, &mut wire, 1 << 20), 3);
        t.acknowledged(0, 0, 0, conn, 3).unwrap();
        assert_eq!(t.acknowledged(0, 0, 0, conn, 2), Err(AckError::Backwards { acked: 3, total: 2 }));
        t.acknowledged(0, 0, 0, conn + 7, 99).unwrap(); // another connection's: ignored
        assert_eq!(t.node(0).queued, 1);
    }

    #[test]
    fn a_failed_connection_sends_its_unacknowledged_again_first() {
        let mut t = RemoteTable::new("a:1", limits(1, 100));
        t.set_node("b:1", "127.0.0.2:7000".parse().unwrap(), true, false);
        for c in 1..=3 {
            queue(&mut t, 0, msg(c));
        }
        let conn = t.connected(0, 0);
        write_all(&mut t, 0, 0);
        queue(&mut t, 0, msg(4));
        t.acknowledged(0, 0, 0, conn, 1).unwrap();
        t.acknowledged(0, 0, 0, conn - 1, 3).unwrap(); // an old connection's ack: ignored
        t.broke(0, 0, 0, conn);
        assert!(t.node(0).slots[0].broken);
        assert!(t.requeue_unacked(0, 0, 5).is_empty());
        let order: Vec<u64> = t.node(0).slots[0].queue.iter().map(|m| m.conversation_id()).collect();
        assert_eq!(order, vec![2, 3, 4], "resent first, in order");
        assert_eq!(t.node(0).queued, 3);
        t.connected(0, 0);
        write_all(&mut t, 0, 0);
        assert_eq!(t.requeue_unacked(0, 0, 2).len(), 3, "sent twice without an ack: given up");
        assert_eq!((t.node(0).queued, t.queued_bytes()), (0, 0));
    }

    #[test]
    fn a_node_going_down_fails_its_queue_and_later_sends_fast() {
        // (unacknowledged messages are lost with it too: set_node drains both)
        let mut t = RemoteTable::new("a:1", limits(2, 100));
        let addr = "127.0.0.2:7000".parse().unwrap();
        t.set_node("b:1", addr, true, false);
        t.set_node("a:1", addr, true, false);
        assert_eq!(t.nodes().count(), 1, "never itself");
        queue(&mut t, 0, msg(1));
        assert!(t.set_node("b:1", addr, true, true).is_empty(), "a suspect keeps its queue");
        assert_eq!(t.states(), [0, 1, 0]);
        assert!(t.reserve(0, 1).is_ok(), "and stays routable");
        t.cancel(0, 1);
        let lost = t.set_node("b:1", addr, false, false);
        assert_eq!(lost.len(), 1);
        assert_eq!((t.node(0).queued, t.queued_bytes()), (0, 0));
        assert_eq!(t.reserve(0, 1), Err(NodeRefusal::Down));
        assert_eq!(t.states(), [0, 0, 1]);
        assert!(t.set_node("b:1", addr, true, false).is_empty());
        assert!(t.reserve(0, 1).is_ok());
        assert_eq!(t.node_of_runtime_name(format!("{}api/3", t.node(0).prefix).as_bytes()), Some(0));
    }

    #[test]
    fn inbound_is_bounded_by_count_and_bytes() {
        let one = msg(1).len();
        let mut t = RemoteTable::new("a:1", LinkLimits { inbound_messages_max: 3, inbound_bytes_max: 2 * one, ..limits(1, 1) });
        t.push_inbound(msg(1));
        assert!(t.inbound_has_room());
        t.push_inbound(msg(2));
        assert!(!t.inbound_has_room(), "bytes bind first");
        let m = t.pop_inbound().unwrap();
        assert!(t.inbound_has_room());
        t.unpop_inbound(m);
        assert_eq!(t.inbound_len(), (2, 2 * one));
    }
}
