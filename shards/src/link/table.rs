//! What one shard knows of the other nodes: who they are, whether they are
//! alive, which agent names they host, and the messages queued for them.
//! Pure data, no I/O: the router reads and fills it inside a tick, the link
//! tasks (`io`) drain and fill it between ticks, on the same thread.
//!
//! Rules:
//! 1. Each remote node has `slots` connection slots on this shard. A message
//!    goes to slot `conversation_id mod slots` (or a hash of its sender
//!    without one), so one conversation keeps to one connection and its
//!    order holds across the hop.
//! 2. Messages queued for a node (in slots, or in a writer's batch) are at
//!    most `outbox_messages_max`; past it, sends get busy (router rule 1).
//! 3. A node marked down loses its queued messages as dead letters
//!    (`node_down`) at once, and sends to it fail fast (`Unreachable`).
//! 4. A written message stays in its slot's `unacked` until the receiving
//!    node acknowledges it (frame rule 4). If the connection fails while
//!    the node is alive, the unacknowledged go back to the front of the
//!    queue and are sent again on the next connection: nothing sent to a
//!    live node is lost, and order holds; a message the receiver took but
//!    could not acknowledge arrives twice (at-least-once, in that case only).

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

pub struct Slot {
    pub queue: VecDeque<Message>,
    /// Written on the current connection, not yet acknowledged (rule 4).
    pub unacked: VecDeque<Message>,
    /// Messages the receiver acknowledged on the current connection.
    pub acked: u64,
    /// Connections opened for this slot; an ack reader of an older one is
    /// ignored.
    pub connection: u64,
    /// The current connection failed (seen by its ack reader).
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
        Slot { queue: VecDeque::new(), unacked: VecDeque::new(), acked: 0, connection: 0, broken: false, attempts: 0, state: SlotState::Closed, waker: None, generation: 0 }
    }
}

pub struct RemoteNode {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub prefix: String,
    pub alive: bool,
    /// Alive, but SWIM suspects it (informational: still routable).
    pub suspect: bool,
    /// Messages queued in slots, in writers' batches, or unacknowledged
    /// (rule 2).
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
    pub closed_malformed: u64,
    pub accepted: u64,
    pub open_inbound: usize,
}

pub struct RemoteTable {
    pub self_name: Arc<str>,
    pub self_prefix: String,
    nodes: Vec<RemoteNode>,
    by_name: HashMap<Arc<str>, NodeIdx>,
    by_tag: HashMap<u64, NodeIdx>,
    routes: HashMap<Box<str>, NodeIdx>,
    slots_per_node: usize,
    outbox_messages_max: usize,
    /// Slots that have mail and no connection: the shard opens them.
    pub wanted: Vec<(NodeIdx, usize)>,
    /// Messages read from links, waiting for a mailbox.
    pub inbound: VecDeque<Message>,
    pub inbound_max: usize,
    /// Readers waiting for room in `inbound`.
    pub inbound_wakers: Vec<Waker>,
    pub counters: LinkCounters,
}

impl RemoteTable {
    pub fn new(self_name: &str, slots_per_node: usize, outbox_messages_max: usize, inbound_max: usize) -> RemoteTable {
        assert!(slots_per_node > 0 && outbox_messages_max > 0 && inbound_max > 0);
        RemoteTable {
            self_name: self_name.into(),
            self_prefix: super::frame::node_prefix(self_name),
            nodes: Vec::new(),
            by_name: HashMap::new(),
            by_tag: HashMap::new(),
            routes: HashMap::new(),
            slots_per_node,
            outbox_messages_max,
            wanted: Vec::new(),
            inbound: VecDeque::new(),
            inbound_max,
            inbound_wakers: Vec::new(),
            counters: LinkCounters::default(),
        }
    }

    /// The table of a node outside any cluster: it knows no other node.
    pub fn standalone() -> RemoteTable {
        RemoteTable::new("", 1, 1, 1)
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
                let slots = (0..self.slots_per_node).map(|_| Slot::new()).collect();
                self.nodes.push(RemoteNode { name: name.clone(), addr, prefix: super::frame::node_prefix(&name), alive, suspect: alive && suspect, queued: 0, reserved: 0, slots });
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
            node.queued = 0;
            self.wanted.retain(|&(m, _)| m != n);
        }
        lost
    }

    pub fn set_route(&mut self, agent: &str, node: Option<&str>) {
        match node.and_then(|name| self.by_name.get(name).copied()) {
            Some(n) => {
                self.routes.insert(agent.into(), n);
            }
            None => {
                self.routes.remove(agent);
            }
        }
    }

    /// The node hosting `agent`, if it is remote.
    pub fn route(&self, agent: &str) -> Option<NodeIdx> {
        self.routes.get(agent).copied()
    }

    /// The node of a node-qualified runtime name (frame rule 3), unless it
    /// is this node.
    pub fn node_of_runtime_name(&self, receiver: &[u8]) -> Option<NodeIdx> {
        let tag = super::frame::tag_of(receiver)?;
        self.by_tag.get(&tag).copied()
    }

    /// Messages waiting for other nodes (queued, in batches, unacknowledged).
    pub fn queued(&self) -> usize {
        self.nodes.iter().map(|n| n.queued).sum()
    }

    /// Other nodes by state: alive, suspect, down.
    pub fn states(&self) -> [usize; 3] {
        let mut c = [0; 3];
        for n in &self.nodes {
            c[if !n.alive { 2 } else if n.suspect { 1 } else { 0 }] += 1;
        }
        c
    }

    /// Room for one more message to `n`? (rules 2 and 3)
    pub fn reserve(&mut self, n: NodeIdx) -> Result<(), crate::router::RouteError> {
        let max = self.outbox_messages_max;
        let node = &mut self.nodes[n as usize];
        if !node.alive {
            return Err(crate::router::RouteError::Unreachable);
        }
        if node.queued + node.reserved >= max {
            return Err(crate::router::RouteError::Busy);
        }
        node.reserved += 1;
        Ok(())
    }

    pub fn cancel(&mut self, n: NodeIdx) {
        self.nodes[n as usize].reserved -= 1;
    }

    /// Queues a reserved message on its slot (rule 1) and wakes its writer,
    /// or asks for a connection. A node that went down since the reserve
    /// hands the message back (rule 3).
    pub fn push(&mut self, n: NodeIdx, message: Message) -> Result<(), Message> {
        let node = &mut self.nodes[n as usize];
        debug_assert!(node.reserved > 0);
        node.reserved -= 1;
        if !node.alive {
            return Err(message);
        }
        let key = match message.conversation_id() {
            0 => fnv1a64(message.sender()),
            c => c,
        };
        let s = (key % node.slots.len() as u64) as usize;
        node.queued += 1;
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
        debug_assert!(slot.unacked.is_empty(), "requeued before reconnecting");
        slot.connection += 1;
        slot.acked = 0;
        slot.broken = false;
        slot.state = SlotState::Open;
        slot.connection
    }

    /// The writer of `connection` wrote `batch`: it waits for its ack (rule 4).
    pub fn written(&mut self, n: NodeIdx, s: usize, generation: u64, batch: &mut VecDeque<Message>) {
        let slot = &mut self.nodes[n as usize].slots[s];
        if slot.generation == generation {
            slot.unacked.append(batch);
        } else {
            batch.clear(); // counted as lost when the node went down
        }
    }

    /// The receiver acknowledged `total` messages on `connection` so far.
    pub fn acknowledged(&mut self, n: NodeIdx, s: usize, generation: u64, connection: u64, total: u64) {
        let node = &mut self.nodes[n as usize];
        let slot = &mut node.slots[s];
        if slot.generation != generation || slot.connection != connection || total <= slot.acked {
            return;
        }
        let newly = (total - slot.acked) as usize;
        assert!(newly <= slot.unacked.len(), "acknowledged more than was written");
        slot.unacked.drain(..newly);
        slot.acked = total;
        slot.attempts = 0;
        node.queued -= newly;
    }

    /// `connection` failed (its ack reader saw it): wake the writer.
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
    /// the queue, in order (rule 4). Past `attempts_max` sends without an
    /// ack, they are handed back instead, for the caller to count as lost.
    pub fn requeue_unacked(&mut self, n: NodeIdx, s: usize, attempts_max: u32) -> Vec<Message> {
        let node = &mut self.nodes[n as usize];
        let slot = &mut node.slots[s];
        if slot.unacked.is_empty() {
            return Vec::new();
        }
        slot.attempts += 1;
        if slot.attempts >= attempts_max {
            slot.attempts = 0;
            let lost: Vec<Message> = slot.unacked.drain(..).collect();
            node.queued -= lost.len();
            return lost;
        }
        while let Some(m) = slot.unacked.pop_back() {
            slot.queue.push_front(m);
        }
        Vec::new()
    }

    /// Is there room to read more from links? Readers wait otherwise.
    pub fn inbound_has_room(&self) -> bool {
        self.inbound.len() < self.inbound_max
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
    use crate::router::RouteError;

    fn msg(conversation_id: u64) -> Message {
        Message::encode(&Header { conversation_id, ..Default::default() }, b"a", b"far", b"x").unwrap()
    }

    #[test]
    fn a_conversation_keeps_to_one_slot_and_the_outbox_is_bounded() {
        let mut t = RemoteTable::new("127.0.0.1:7000", 4, 3, 10);
        t.set_node("127.0.0.2:7000", "127.0.0.2:7000".parse().unwrap(), true, false);
        t.set_route("far", Some("127.0.0.2:7000"));
        let n = t.route("far").unwrap();
        for _ in 0..3 {
            t.reserve(n).unwrap();
            t.push(n, msg(6)).unwrap();
        }
        assert_eq!(t.reserve(n), Err(RouteError::Busy));
        assert_eq!(t.node(n).slots[2].queue.len(), 3, "conversation 6 mod 4 slots");
        assert_eq!(t.wanted, vec![(n, 2)], "one connection asked for");
        // Written, then acknowledged: only then is there room again.
        let generation = t.node(n).slots[2].generation;
        let conn = t.connected(n, 2);
        let mut batch: VecDeque<Message> = t.node_mut(n).slots[2].queue.drain(..).collect();
        t.written(n, 2, generation, &mut batch);
        assert_eq!(t.reserve(n), Err(RouteError::Busy), "unacknowledged still count");
        t.acknowledged(n, 2, generation, conn, 2);
        assert!(t.reserve(n).is_ok());
        t.cancel(n);
        assert_eq!(t.node(n).slots[2].unacked.len(), 1);
    }

    #[test]
    fn a_failed_connection_sends_its_unacknowledged_again_first() {
        let mut t = RemoteTable::new("a:1", 1, 100, 10);
        t.set_node("b:1", "127.0.0.2:7000".parse().unwrap(), true, false);
        for c in 1..=4 {
            t.reserve(0).unwrap();
            t.push(0, msg(c)).unwrap();
        }
        let conn = t.connected(0, 0);
        let mut batch: VecDeque<Message> = t.node_mut(0).slots[0].queue.drain(..3).collect();
        t.written(0, 0, 0, &mut batch);
        t.acknowledged(0, 0, 0, conn, 1);
        t.acknowledged(0, 0, 0, conn - 1, 3); // an old connection's ack: ignored
        t.broke(0, 0, 0, conn);
        assert!(t.node(0).slots[0].broken);
        assert!(t.requeue_unacked(0, 0, 5).is_empty());
        let order: Vec<u64> = t.node(0).slots[0].queue.iter().map(|m| m.conversation_id()).collect();
        assert_eq!(order, vec![2, 3, 4], "resent first, in order");
        assert_eq!(t.node(0).queued, 3);
        t.connected(0, 0);
        let mut batch: VecDeque<Message> = t.node_mut(0).slots[0].queue.drain(..).collect();
        t.written(0, 0, 0, &mut batch);
        assert_eq!(t.requeue_unacked(0, 0, 2).len(), 3, "sent twice without an ack: given up");
        assert_eq!(t.node(0).queued, 0);
    }

    #[test]
    fn a_node_going_down_fails_its_queue_and_later_sends_fast() {
        // (unacknowledged messages are lost with it too: set_node drains both)
        let mut t = RemoteTable::new("a:1", 2, 100, 10);
        let addr = "127.0.0.2:7000".parse().unwrap();
        t.set_node("b:1", addr, true, false);
        t.set_node("a:1", addr, true, false);
        assert_eq!(t.nodes().count(), 1, "never itself");
        t.reserve(0).unwrap();
        t.push(0, msg(1)).unwrap();
        assert!(t.set_node("b:1", addr, true, true).is_empty(), "a suspect keeps its queue");
        assert_eq!(t.states(), [0, 1, 0]);
        assert!(t.reserve(0).is_ok(), "and stays routable");
        t.cancel(0);
        let lost = t.set_node("b:1", addr, false, false);
        assert_eq!(lost.len(), 1);
        assert_eq!(t.node(0).queued, 0);
        assert_eq!(t.reserve(0), Err(RouteError::Unreachable));
        assert_eq!(t.states(), [0, 0, 1]);
        assert!(t.set_node("b:1", addr, true, false).is_empty());
        assert!(t.reserve(0).is_ok());
        assert_eq!(t.node_of_runtime_name(format!("{}api/3", t.node(0).prefix).as_bytes()), Some(0));
    }
}
