//! Routing on one shard: where a message goes, and the room it needs there.
//!
//! - [`directory`]: agent names, their instances, and names on other nodes;
//! - [`mailboxes`]: the local instances' mailboxes and the run queue;
//! - [`outbox`]: the tick's staged messages and the backlogs to peer shards;
//! - [`keyed`]: the live activations of keyed agents;
//! - [`notices`]: failure notices waiting to be sent.
//!
//! The protocol every send follows: **reserve → stage → release**. A send
//! reserves room at its destination, stages the message in the tick's
//! outbox, and the message is released to its destination when its
//! handler's effects may be seen (rule 2).
//!
//! Rules:
//! 1. Every queue is bounded, in count and in bytes. A send is admitted only
//!    if its destination has room reserved for it (a mailbox slot and its
//!    bytes, or a place in the peer outbox), so an admitted message is never
//!    dropped for lack of room later.
//! 2. Messages a handler sends are staged. Those of a handler whose instance
//!    has state writes not yet committed are released only by
//!    [`Router::flush`], after the tick's commit: no one sees an effect whose
//!    cause could still be lost. Those of any other handler are released as
//!    soon as it returns ([`Router::release_from`]).
//! 3. Staged messages keep their order, and each shard pair has one FIFO
//!    channel, so one sender's messages to one receiver arrive in order.
//! 4. A message that cannot be delivered is counted as a dead letter with its
//!    reason, never dropped silently.
//!
//! Steady state allocates nothing here: mailboxes, the run queue, the
//! outbox and the release buffer are reused `VecDeque`/`Vec`s; only the
//! messages themselves are buffers.

use std::sync::Arc;

use caxton_abi::failure::FailureReason;

use crate::envelope::Message;
use crate::limits::RUNTIME_NAME_PREFIX;
use crate::link::table::NodeRefusal;
use crate::link::{NodeIdx, RemoteTable};
use crate::mesh::{Doorbell, MeshEnds, MeshReceiver};
use crate::placement::{instance_for, key_shard, shard_of};
use crate::runtime_outbox::RuntimeOutbox;

pub mod directory;
pub mod keyed;
pub mod mailboxes;
pub mod notices;
pub mod outbox;

use directory::{DirEntry, Directory};
use keyed::{Activations, Passivation};
use mailboxes::{Full, Mailboxes};
use notices::Notices;
use outbox::{PeerOutbox, Staged};

/// Index of a local instance's mailbox (and of its agent slot in the shard).
pub type LocalId = u32;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Local(LocalId),
    Peer(usize),
    /// Another node (`link`): its outbox on this shard.
    Node(NodeIdx),
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No agent of that name (ABI -1).
    UnknownReceiver,
    /// The destination has no room now (ABI -2).
    Busy,
    /// The receiver's node is down (ABI -6).
    Unreachable,
}

/// Why a message was not delivered (rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetter {
    UnknownReceiver,
    CrashedHandler,
    Undeployed,
    ApiUnavailable,
    TimedOut,
    /// Queued for a node that went down, or sent to one that is down.
    NodeDown,
    /// Sent to a live node and never acknowledged, after every attempt.
    LinkLost,
    /// Its `reply_by` passed before a handler could start on it.
    Expired,
    /// A performative its version 1 receiver cannot read.
    NotUnderstood,
    /// Its receiver is quarantined after crashing over and over.
    Quarantined,
    /// Still held when the node stopped, past its drain timeout.
    Stopped,
}

impl DeadLetter {
    /// Every reason, in the order of [`DeadLetters`], with its metric label.
    pub const ALL: [(DeadLetter, &'static str); 11] = [
        (DeadLetter::UnknownReceiver, "unknown_receiver"),
        (DeadLetter::CrashedHandler, "crashed_handler"),
        (DeadLetter::Undeployed, "undeployed"),
        (DeadLetter::ApiUnavailable, "api_unavailable"),
        (DeadLetter::TimedOut, "timed_out"),
        (DeadLetter::NodeDown, "node_down"),
        (DeadLetter::LinkLost, "link_lost"),
        (DeadLetter::Expired, "expired"),
        (DeadLetter::NotUnderstood, "not_understood"),
        (DeadLetter::Quarantined, "quarantined"),
        (DeadLetter::Stopped, "node_stopped"),
    ];

    /// The failure notice its sender gets, if any: a message to a runtime
    /// endpoint that is gone has no one to blame but the endpoint.
    pub fn notice(self) -> Option<FailureReason> {
        Some(match self {
            DeadLetter::UnknownReceiver => FailureReason::UnknownReceiver,
            DeadLetter::CrashedHandler => FailureReason::CrashedHandler,
            DeadLetter::Undeployed => FailureReason::Undeployed,
            DeadLetter::ApiUnavailable => return None,
            DeadLetter::TimedOut => FailureReason::TimedOut,
            DeadLetter::NodeDown => FailureReason::NodeDown,
            DeadLetter::LinkLost => FailureReason::LinkLost,
            DeadLetter::Expired => FailureReason::Expired,
            DeadLetter::NotUnderstood => FailureReason::NotUnderstood,
            DeadLetter::Quarantined => FailureReason::Quarantined,
            DeadLetter::Stopped => FailureReason::NodeDown,
        })
    }

    fn index(self) -> usize {
        DeadLetter::ALL.iter().position(|(r, _)| *r == self).expect("every reason is listed")
    }
}

/// Dead letters counted by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetters([u64; DeadLetter::ALL.len()]);

impl DeadLetters {
    pub fn add(&mut self, reason: DeadLetter, n: u64) {
        self.0[reason.index()] += n;
    }

    pub fn get(&self, reason: DeadLetter) -> u64 {
        self.0[reason.index()]
    }

    /// (label, count) for every reason.
    pub fn by_label(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DeadLetter::ALL.iter().map(|(r, label)| (*label, self.get(*r)))
    }
}

/// Hands messages addressed to runtime names (`@api/...`, `@wire/...`) to
/// the node's control plane, bounded in bytes ([`RuntimeOutbox`]).
pub type ApiSink = Arc<RuntimeOutbox>;

#[derive(Debug, Default, Clone)]
pub struct RouterCounters {
    pub routed_local: u64,
    pub routed_remote: u64,
    pub received_remote: u64,
    /// Messages sent to other nodes, and received from them.
    pub routed_node: u64,
    pub received_node: u64,
    pub busy: u64,
    /// Of `busy`: refused because a byte bound was reached (rule 1).
    pub busy_bytes: u64,
    /// Sends refused because no agent has the receiver's name.
    pub not_found: u64,
    pub dead_letters: DeadLetters,
}

/// The bounds a router enforces (rule 1), derived from the node's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterLimits {
    /// Room of each mailbox.
    pub mailbox_messages_max: usize,
    pub mailbox_bytes_max: usize,
    /// Messages queued in all of this shard's mailboxes, and their bytes.
    pub shard_queued_messages_max: usize,
    pub shard_queued_bytes_max: usize,
    /// Messages in transit to one peer shard, and their bytes.
    pub peer_in_flight_messages_max: usize,
    pub peer_in_flight_bytes_max: usize,
}

/// Node-wide queue bounds, each with its default in `limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeQueueLimits {
    pub mailbox_messages_max: usize,
    pub mailbox_bytes_max: usize,
    pub queued_messages_max: usize,
    pub queued_bytes_max: u64,
    pub in_flight_messages_max: usize,
    pub in_flight_bytes_max: u64,
}

impl RouterLimits {
    /// Splits the node-wide bounds evenly between `shards` shards.
    pub fn for_node(shards: usize, node: NodeQueueLimits) -> RouterLimits {
        assert!(shards > 0);
        let pairs = (shards * (shards - 1)).max(1);
        RouterLimits {
            mailbox_messages_max: node.mailbox_messages_max.max(1),
            mailbox_bytes_max: node.mailbox_bytes_max.max(1),
            shard_queued_messages_max: (node.queued_messages_max / shards).max(1),
            shard_queued_bytes_max: (node.queued_bytes_max / shards as u64).max(1) as usize,
            peer_in_flight_messages_max: (node.in_flight_messages_max / pairs).max(1),
            peer_in_flight_bytes_max: (node.in_flight_bytes_max / pairs as u64).max(1) as usize,
        }
    }
}

/// Bytes of messages a shard holds, by queue (for metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageBytes {
    pub mailboxes: usize,
    pub mesh: usize,
    pub link_outbox: usize,
    pub link_inbox: usize,
}

pub struct Router {
    shard: usize,
    shards: usize,
    limits: RouterLimits,
    directory: Directory,
    mailboxes: Mailboxes,
    staged: Staged,
    /// Reused by each release, so that releasing allocates nothing.
    releasing: Vec<(Dest, Message)>,
    peers: Vec<Option<PeerOutbox>>,
    bells: Vec<Arc<Doorbell>>,
    api: ApiSink,
    /// Other nodes: their names, state and outboxes (`link::table`).
    pub remote: RemoteTable,
    pub counters: RouterCounters,
    /// Failure notices waiting to be sent (`notices`).
    pub notices: Notices,
    /// Live activations of keyed agents (`keyed`).
    pub keyed: Activations,
}

impl Router {
    /// Takes the sending ends of the mesh; returns the receiving ends.
    pub fn new(shard: usize, mesh: MeshEnds, api: ApiSink, limits: RouterLimits, remote: RemoteTable) -> (Router, Vec<Option<MeshReceiver>>) {
        let shards = mesh.to.len();
        assert!(shard < shards && mesh.bells.len() == shards);
        assert!(limits.mailbox_messages_max > 0 && limits.shard_queued_messages_max > 0);
        let router = Router {
            shard,
            shards,
            limits,
            directory: Directory::default(),
            mailboxes: Mailboxes::new(),
            staged: Staged::default(),
            releasing: Vec::new(),
            peers: mesh.to.into_iter().map(|tx| tx.map(PeerOutbox::new)).collect(),
            bells: mesh.bells,
            api,
            remote,
            counters: RouterCounters::default(),
            notices: Notices::default(),
            keyed: Activations::default(),
        };
        (router, mesh.from)
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Counts a message not delivered, and answers its sender if it asked
    /// for a reply (`notices` rule 1).
    pub fn dead_letter(&mut self, reason: DeadLetter, message: &Message) {
        self.dead_letters(reason, 1);
        if let Some(notice) = reason.notice() {
            self.notices.offer(notice, message);
        }
        tracing::debug!(shard = self.shard, ?reason, ?message, "dead letter");
    }

    /// Tells `message`'s sender that no reply will come, for a `reason`
    /// that is not a dead letter (the message was handled).
    pub fn notice(&mut self, reason: FailureReason, message: &Message) {
        self.notices.offer(reason, message);
    }

    /// Counts `n` dead letters at once (a lost link batch).
    pub fn dead_letters(&mut self, reason: DeadLetter, n: u64) {
        self.counters.dead_letters.add(reason, n);
    }

    // ------------------------------------------------------------ directory

    /// Adds a name to the directory; returns the mailboxes made for the
    /// instances placed on this shard, as (instance, id). A name already
    /// here is refused (the control plane's mistake, never a panic).
    pub fn add_agent(&mut self, name: &str, instances: u32) -> Result<Vec<(u32, LocalId)>, String> {
        assert!(instances > 0);
        if self.directory.contains(name) {
            return Err(format!("agent {name} is already on shard {}", self.shard));
        }
        let mut local = vec![None; instances as usize].into_boxed_slice();
        let mut made = Vec::new();
        for i in 0..instances {
            if shard_of(name.as_bytes(), i, self.shards) == self.shard {
                let id = self.mailboxes.open();
                local[i as usize] = Some(id);
                made.push((i, id));
            }
        }
        self.directory.add(name, DirEntry { instances, local, keyed: false })?;
        Ok(made)
    }

    /// Adds a keyed type: no mailbox until a key is sent to (`keyed`).
    pub fn add_keyed_type(&mut self, name: &str) -> Result<(), String> {
        if self.directory.contains(name) {
            return Err(format!("agent {name} is already on shard {}", self.shard));
        }
        self.directory.add(name, DirEntry { instances: 0, local: Box::new([]), keyed: true })
    }

    /// Is `name` a keyed type of this node?
    pub fn is_keyed_type(&self, name: &[u8]) -> bool {
        self.directory.get(name).is_some_and(|e| e.keyed)
    }

    /// The mailbox of the live activation of `address` (`TYPE/KEY`, placed
    /// on this shard), made now if the key is passive (keyed rule 3).
    pub fn activate(&mut self, type_name: &Arc<str>, address: &str) -> LocalId {
        assert_eq!(key_shard(address.as_bytes(), self.shards), self.shard, "keyed rule 1");
        if let Some(id) = self.keyed.get(address.as_bytes()) {
            return id;
        }
        let id = self.mailboxes.open();
        self.keyed.insert(type_name, address, id, crate::clock::now_ns());
        id
    }

    /// Passivates activation `id` if its mailbox holds and expects nothing
    /// (keyed rule 4); returns its address if it did.
    pub fn passivate(&mut self, id: LocalId, why: Passivation) -> Option<Arc<str>> {
        if !self.mailboxes.is_idle(id) {
            return None;
        }
        let address = self.keyed.remove(id, why);
        let left = self.mailboxes.close(id);
        assert!(left.is_empty(), "an idle mailbox is empty");
        Some(address)
    }

    /// The mailbox of instance `instance` of `name`, if it lives here.
    pub fn local_instance(&self, name: &str, instance: u32) -> Option<LocalId> {
        match self.directory.get(name.as_bytes()) {
            Some(entry) => entry.local.get(instance as usize).copied().flatten(),
            None => self.keyed.get(name.as_bytes()).filter(|_| instance == 0),
        }
    }

    /// Puts a message in one instance's mailbox (a timer's: placement
    /// does not choose the instance). `Err(Busy)` hands it back.
    pub fn accept_at(&mut self, id: LocalId, message: Message) -> Result<(), (RouteError, Message)> {
        if let Err(full) = self.mailboxes.room(id, message.len(), &self.limits) {
            return Err((self.busy(full == Full::Bytes), message));
        }
        self.mailboxes.push(id, message);
        Ok(())
    }

    /// Is `name` in the directory?
    pub fn has_agent(&self, name: &str) -> bool {
        self.directory.contains(name)
    }

    /// Removes a name; its queued messages become dead letters. Returns the
    /// ids of its local instances (none if the name was not here).
    pub fn remove_agent(&mut self, name: &str) -> Vec<LocalId> {
        assert!(self.staged.is_empty(), "undeploy inside a tick");
        let Some(entry) = self.directory.remove(name) else { return Vec::new() };
        let mut ids: Vec<LocalId> = entry.local.iter().flatten().copied().collect();
        if entry.keyed {
            ids = self.keyed.of_type(name).collect();
            for &id in &ids {
                self.keyed.remove(id, Passivation::Deleted);
            }
            self.keyed.forget_type(name);
        }
        for &id in &ids {
            for m in self.mailboxes.close(id) {
                self.dead_letter(DeadLetter::Undeployed, &m);
            }
        }
        ids
    }

    /// `agent` lives on node `node` (by name), or nowhere known, as gossip
    /// says. A node must be known to the remote table first.
    pub fn set_route(&mut self, agent: &str, node: Option<&str>) {
        self.directory.set_remote(agent, node.and_then(|n| self.remote.node_index(n)));
    }

    // ------------------------------------------------------------ resolve and stage

    /// Where a message to `receiver` goes (placement rules of `placement`).
    /// A keyed address whose key is passive and placed here gets its
    /// mailbox now (keyed rule 3).
    pub fn resolve(&mut self, receiver: &[u8], conversation_id: u64, sender: &[u8]) -> Result<Dest, RouteError> {
        if receiver.first() == Some(&RUNTIME_NAME_PREFIX) {
            // `@node/<tag>/...`: a runtime name of another node (names rule
            // 2). `@api/...`, `@wire/...`: the control plane's.
            return Ok(self.remote.node_of_runtime_name(receiver).map_or(Dest::Api, Dest::Node));
        }
        let Some(entry) = self.directory.get(receiver) else {
            if let Some(id) = self.keyed.get(receiver) {
                return Ok(Dest::Local(id));
            }
            return self.resolve_keyed(receiver);
        };
        if entry.keyed {
            return Err(RouteError::UnknownReceiver); // a keyed type is addressed by its keys
        }
        let instance = instance_for(conversation_id, sender, entry.instances);
        match entry.local[instance as usize] {
            Some(id) => Ok(Dest::Local(id)),
            None => Ok(Dest::Peer(shard_of(receiver, instance, self.shards))),
        }
    }

    /// A receiver not in the directory: a key of a keyed type of this node
    /// (keyed rules 1 and 3) or of another, or a name on another node.
    #[cold]
    fn resolve_keyed(&mut self, receiver: &[u8]) -> Result<Dest, RouteError> {
        let Some((type_name, _key)) = caxton_abi::split_keyed(receiver) else {
            return self.directory.remote(receiver).map(Dest::Node).ok_or(RouteError::UnknownReceiver);
        };
        if !self.is_keyed_type(type_name) {
            return self.directory.remote(type_name).map(Dest::Node).ok_or(RouteError::UnknownReceiver);
        }
        let shard = key_shard(receiver, self.shards);
        if shard != self.shard {
            return Ok(Dest::Peer(shard));
        }
        if !self.keyed.has_room() {
            return Err(self.busy(false)); // keyed rule 5
        }
        let type_name: Arc<str> = Arc::from(std::str::from_utf8(type_name).expect("an agent name is ASCII"));
        let address = std::str::from_utf8(receiver).expect("split_keyed checked the key's UTF-8");
        Ok(Dest::Local(self.activate(&type_name, address)))
    }

    fn busy(&mut self, bytes_bound: bool) -> RouteError {
        self.counters.busy += 1;
        if bytes_bound {
            self.counters.busy_bytes += 1;
        }
        RouteError::Busy
    }

    /// Reserves room for a message of `bytes` at `dest` (rule 1).
    pub fn reserve(&mut self, dest: Dest, bytes: usize) -> Result<(), RouteError> {
        match dest {
            Dest::Local(id) => match self.mailboxes.room(id, bytes, &self.limits) {
                Ok(()) => self.mailboxes.reserve(id, bytes),
                Err(full) => return Err(self.busy(full == Full::Bytes)),
            },
            Dest::Peer(p) => {
                let peer = self.peers[p].as_mut().expect("no channel to this shard itself");
                match peer.room(bytes, self.limits.peer_in_flight_messages_max, self.limits.peer_in_flight_bytes_max) {
                    Ok(()) => peer.reserve(bytes),
                    Err(bytes_bound) => return Err(self.busy(bytes_bound)),
                }
            }
            Dest::Node(n) => match self.remote.reserve(n, bytes) {
                Ok(()) => {}
                Err(NodeRefusal::Down) => return Err(RouteError::Unreachable),
                Err(NodeRefusal::Full { bytes_bound }) => return Err(self.busy(bytes_bound)),
            },
            Dest::Api => {
                if !self.api.has_room(bytes) {
                    return Err(self.busy(true));
                }
            }
        }
        Ok(())
    }

    /// Gives back room that `reserve` granted for a message never staged.
    pub fn cancel_reservation(&mut self, dest: Dest, bytes: usize) {
        match dest {
            Dest::Local(id) => self.mailboxes.cancel(id, bytes),
            Dest::Peer(p) => self.peers[p].as_mut().expect("reserved before").cancel(bytes),
            Dest::Node(n) => self.remote.cancel(n, bytes),
            Dest::Api => {}
        }
    }

    /// Stages a message whose room `reserve` granted (rule 2).
    pub fn stage(&mut self, dest: Dest, message: Message) {
        self.staged.push(dest, message);
    }

    /// Position in the outbox, to roll a trapped handler's sends back to.
    pub fn staged_mark(&self) -> usize {
        self.staged.mark()
    }

    /// Drops what a trapped handler staged after `mark`.
    pub fn rollback_to(&mut self, mark: usize) {
        drop(self.take_staged_from(mark));
    }

    /// Takes the messages staged after `mark` out of the outbox, giving
    /// their room back.
    pub fn take_staged_from(&mut self, mark: usize) -> Vec<Message> {
        let mut taken = Vec::new();
        self.staged.take_from(mark, &mut taken);
        taken
            .into_iter()
            .map(|(dest, m)| {
                self.cancel_reservation(dest, m.len());
                m
            })
            .collect()
    }

    /// Releases every staged message (after the tick's commit, rule 2) and
    /// pushes waiting ones to peer shards. Returns how many moved.
    pub fn flush(&mut self) -> usize {
        self.release_from(0)
    }

    /// Releases the messages staged after `mark` (those of a handler that
    /// has nothing uncommitted, rule 2). Returns how many moved.
    pub fn release_from(&mut self, mark: usize) -> usize {
        let mut releasing = std::mem::take(&mut self.releasing);
        debug_assert!(releasing.is_empty());
        self.staged.take_from(mark, &mut releasing);
        let moved = releasing.len();
        for (dest, message) in releasing.drain(..) {
            if let Dest::Node(n) = dest {
                self.counters.routed_node += 1;
                if let Err(m) = self.remote.push(n, message) {
                    self.dead_letter(DeadLetter::NodeDown, &m);
                }
                continue;
            }
            self.cancel_reservation(dest, message.len());
            match dest {
                Dest::Local(id) => {
                    self.counters.routed_local += 1;
                    self.mailboxes.push(id, message);
                }
                Dest::Peer(p) => self.peers[p].as_mut().expect("reserved before").push(message),
                Dest::Node(_) => unreachable!("handled above"),
                Dest::Api => {
                    if let Err(m) = self.api.send(message) {
                        self.dead_letter(DeadLetter::ApiUnavailable, &m);
                    }
                }
            }
        }
        self.releasing = releasing; // keep the allocation
        moved + self.pump_peers()
    }

    fn pump_peers(&mut self) -> usize {
        let mut moved = 0;
        for p in 0..self.shards {
            let Some(peer) = self.peers[p].as_mut().filter(|peer| peer.has_backlog()) else { continue };
            let pumped = peer.pump();
            if pumped.lost > 0 {
                self.dead_letters(DeadLetter::UnknownReceiver, pumped.lost);
            }
            if pumped.moved > 0 {
                moved += pumped.moved;
                self.counters.routed_remote += pumped.moved as u64;
                self.bells[p].ring_if_parked();
            }
        }
        moved
    }

    /// Are messages waiting for room in a peer's channel?
    pub fn has_peer_backlog(&self) -> bool {
        self.peers.iter().flatten().any(PeerOutbox::has_backlog)
    }

    // ------------------------------------------------------------ arrivals

    /// Takes a message from a peer shard or the API into a local mailbox.
    /// `Err(Busy)` hands it back: the caller keeps it and retries (rule 1).
    pub fn accept(&mut self, message: Message) -> Result<(), (RouteError, Message)> {
        let dest = match self.resolve(message.receiver(), message.conversation_id(), message.sender()) {
            Ok(d) => d,
            Err(e) => return Err((e, message)),
        };
        let Dest::Local(id) = dest else {
            // Placement disagrees (the name was redeployed meanwhile).
            return Err((RouteError::UnknownReceiver, message));
        };
        if let Err(full) = self.mailboxes.room(id, message.len(), &self.limits) {
            return Err((self.busy(full == Full::Bytes), message));
        }
        self.mailboxes.push(id, message);
        Ok(())
    }

    /// Takes a message from the API or from another node wherever it goes:
    /// a local mailbox, a peer shard, or (with `to_nodes`) another node. A
    /// message from a node never goes on to a third (no forwarding loops).
    /// `Err` hands it back with why (busy: retry; else: refused).
    pub fn forward(&mut self, message: Message, to_nodes: bool) -> Result<(), (RouteError, Message)> {
        let dest = match self.resolve(message.receiver(), message.conversation_id(), message.sender()) {
            Ok(d) => d,
            Err(e) => return Err((e, message)),
        };
        match dest {
            Dest::Local(_) => self.accept(message),
            Dest::Node(_) if !to_nodes => Err((RouteError::UnknownReceiver, message)),
            Dest::Peer(_) | Dest::Node(_) => {
                if let Err(e) = self.reserve(dest, message.len()) {
                    return Err((e, message));
                }
                let mark = self.staged_mark();
                self.stage(dest, message);
                self.release_from(mark);
                Ok(())
            }
            Dest::Api => {
                if self.reserve(dest, message.len()).is_err() {
                    return Err((RouteError::Busy, message));
                }
                self.api.send(message).map_err(|m| (RouteError::Busy, m))
            }
        }
    }

    // ------------------------------------------------------------ run queue

    /// The next instance with mail.
    pub fn next_ready(&mut self) -> Option<LocalId> {
        self.mailboxes.next_ready()
    }

    pub fn pop_message(&mut self, id: LocalId) -> Option<Message> {
        self.mailboxes.pop(id)
    }

    /// Puts an instance back in the run queue if it still has mail.
    pub fn requeue(&mut self, id: LocalId) {
        self.mailboxes.requeue(id)
    }

    /// Keeps an instance from running (backing off after crashes); its
    /// mailbox still takes mail, within its bounds.
    pub fn hold(&mut self, id: LocalId) {
        self.mailboxes.hold(id)
    }

    /// Lets a held instance run again.
    pub fn release_hold(&mut self, id: LocalId) {
        self.mailboxes.release(id)
    }

    pub fn is_held(&self, id: LocalId) -> bool {
        self.mailboxes.is_held(id)
    }

    /// Fails back everything the shard still holds for its agents and for
    /// other nodes (a stop past its drain): dead letters `Stopped`, whose
    /// senders get notices. Returns how many.
    /// Takes every message this shard holds for delivery (mailboxes, link
    /// queues), for a stopping shard to fail back (`DeadLetter::Stopped`).
    pub fn take_everything(&mut self) -> Vec<Message> {
        let mut lost = self.mailboxes.take_all();
        let nodes: Vec<(Arc<str>, std::net::SocketAddr)> = self.remote.nodes().map(|(_, n)| (n.name.clone(), n.addr)).collect();
        for (name, addr) in nodes {
            lost.extend(self.remote.set_node(&name, addr, false, false));
        }
        assert_eq!(self.mailboxes.queued(), 0, "nothing is left in a mailbox");
        lost
    }

    pub fn has_ready(&self) -> bool {
        self.mailboxes.has_ready()
    }

    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    pub fn queued_in(&self, id: LocalId) -> usize {
        self.mailboxes.queued_in(id)
    }

    /// Messages waiting in all local mailboxes.
    pub fn queued_messages(&self) -> usize {
        self.mailboxes.queued()
    }

    /// Bytes of message memory this shard holds now: mailboxes, outboxes
    /// to peer shards and to other nodes, arrivals from other nodes.
    pub fn message_bytes(&self) -> MessageBytes {
        MessageBytes {
            mailboxes: self.mailboxes.bytes(),
            mesh: self.peers.iter().flatten().map(PeerOutbox::in_flight_bytes).sum(),
            link_outbox: self.remote.queued_bytes(),
            link_inbox: self.remote.inbound_len().1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Header;
    use crate::limits::{MAILBOX_BYTES_MAX, MAILBOX_MESSAGES_MAX};
    use crate::mesh::build_mesh;
    use std::sync::Mutex;

    fn node_limits(queued: usize, queued_bytes: u64) -> NodeQueueLimits {
        NodeQueueLimits {
            mailbox_messages_max: MAILBOX_MESSAGES_MAX,
            mailbox_bytes_max: MAILBOX_BYTES_MAX,
            queued_messages_max: queued,
            queued_bytes_max: queued_bytes,
            in_flight_messages_max: 100_000,
            in_flight_bytes_max: 1 << 30,
        }
    }

    fn limits(n: usize) -> RouterLimits {
        RouterLimits::for_node(n, node_limits(1_000_000, 1 << 30))
    }

    fn sink(seen: Arc<Mutex<Vec<Message>>>) -> ApiSink {
        RuntimeOutbox::new(
            1 << 20,
            Box::new(move |m| {
                seen.lock().unwrap().push(m);
                Ok(())
            }),
        )
    }

    fn one_router(limits: RouterLimits) -> Router {
        let bells: Vec<_> = (0..1).map(|_| Doorbell::new().unwrap().0).collect();
        let ends = build_mesh(&bells).pop().unwrap();
        Router::new(0, ends, sink(Default::default()), limits, RemoteTable::standalone()).0
    }

    fn reserve_stage(r: &mut Router, dest: Dest, m: Message) {
        r.reserve(dest, m.len()).unwrap();
        r.stage(dest, m);
    }

    #[test]
    fn node_bounds_split_evenly_and_bind_a_shard() {
        let l = RouterLimits::for_node(2, NodeQueueLimits { in_flight_messages_max: 8, ..node_limits(6, 1000) });
        assert_eq!((l.shard_queued_messages_max, l.peer_in_flight_messages_max, l.shard_queued_bytes_max), (3, 4, 500));
        let mut r = one_router(RouterLimits::for_node(1, node_limits(3, 1 << 20)));
        r.add_agent("a", 1).unwrap();
        r.add_agent("b", 1).unwrap();
        r.accept(msg("a", 0)).unwrap();
        r.accept(msg("b", 0)).unwrap();
        let dest = r.resolve(b"a", 0, b"s").unwrap();
        r.reserve(dest, 1).unwrap();
        assert_eq!(r.reserve(dest, 1), Err(RouteError::Busy), "the shard's queue bound, not the mailbox's");
        assert_eq!(r.accept(msg("b", 0)).unwrap_err().0, RouteError::Busy);
    }

    /// Keyed rules 1, 3, 4 and 5 on one shard: a key's messages share one
    /// mailbox, made when its first is routed; an activation with mail is
    /// never passivated; past the bound a new key is refused busy, and a
    /// passivation makes room.
    #[test]
    fn keys_get_a_mailbox_each_on_demand_within_a_bound() {
        let mut r = one_router(limits(1));
        r.add_keyed_type("kv").unwrap();
        r.keyed.set_live_max(2);
        assert_eq!(r.resolve(b"kv", 0, b"s"), Err(RouteError::UnknownReceiver), "a type is addressed by its keys");
        r.accept(msg("kv/a", 0)).unwrap();
        r.accept(msg("kv/a", 0)).unwrap();
        r.accept(msg("kv/b/c", 0)).unwrap();
        let (a, b) = (r.keyed.get(b"kv/a").unwrap(), r.keyed.get(b"kv/b/c").unwrap());
        assert_ne!(a, b);
        assert_eq!((r.queued_in(a), r.queued_in(b)), (2, 1), "one mailbox a key");
        assert_eq!(r.accept(msg("kv/new", 0)).unwrap_err().0, RouteError::Busy, "rule 5: two is the bound");
        assert!(r.accept(msg("kv/a", 0)).is_ok(), "a live key still takes mail");
        assert_eq!(r.passivate(b, keyed::Passivation::Idle), None, "rule 4: it has mail");
        while r.pop_message(b).is_some() {}
        assert_eq!(r.passivate(b, keyed::Passivation::Idle).as_deref(), Some("kv/b/c"));
        assert!(r.accept(msg("kv/new", 0)).is_ok(), "room again");
        assert_eq!(r.resolve(b"kv/", 0, b"s"), Err(RouteError::UnknownReceiver), "an empty key is no address");
        assert_eq!(r.resolve(b"nokv/a", 0, b"s"), Err(RouteError::UnknownReceiver));
        let c = r.keyed.counts("kv");
        assert_eq!((c.active, c.activations, c.passivations[0]), (2, 3, 1));
    }

    #[test]
    fn mailboxes_and_shards_are_bounded_in_bytes_too() {
        let one = msg("a", 0).len();
        let mut r = one_router(RouterLimits { mailbox_bytes_max: 2 * one, shard_queued_bytes_max: 3 * one, ..limits(1) });
        r.add_agent("a", 1).unwrap();
        r.add_agent("b", 1).unwrap();
        r.accept(msg("a", 0)).unwrap();
        let dest = r.resolve(b"a", 0, b"s").unwrap();
        reserve_stage(&mut r, dest, msg("a", 0));
        assert_eq!(r.reserve(dest, one), Err(RouteError::Busy), "a's mailbox holds two");
        assert_eq!(r.accept(msg("b", 0)), Ok(()));
        assert_eq!(r.accept(msg("b", 0)).unwrap_err().0, RouteError::Busy, "the shard holds three");
        assert_eq!(r.counters.busy_bytes, 2);
        r.flush();
        assert_eq!(r.message_bytes().mailboxes, 3 * one);
        let id = r.next_ready().unwrap();
        r.pop_message(id).unwrap();
        assert!(r.accept(msg("b", 0)).is_ok(), "room again after a pop");
    }

    /// Each shard's mesh ends, by sending shard.
    type MeshEnds = Vec<Vec<Option<MeshReceiver>>>;

    fn routers(n: usize) -> (Vec<Router>, MeshEnds, Arc<Mutex<Vec<Message>>>) {
        let bells: Vec<_> = (0..n).map(|_| Doorbell::new().unwrap().0).collect();
        let api_seen = Arc::new(Mutex::new(Vec::new()));
        let mut rs = Vec::new();
        let mut rx = Vec::new();
        for (i, ends) in build_mesh(&bells).into_iter().enumerate() {
            let (r, from) = Router::new(i, ends, sink(api_seen.clone()), limits(n), RemoteTable::standalone());
            rs.push(r);
            rx.push(from);
        }
        (rs, rx, api_seen)
    }

    fn msg(to: &str, conversation: u64) -> Message {
        Message::encode(&Header { conversation_id: conversation, ..Default::default() }, b"s", to.as_bytes(), b"x").unwrap()
    }

    #[test]
    fn staged_messages_wait_for_flush_then_reach_their_mailbox() {
        let (mut rs, _rx, _) = routers(1);
        let r = &mut rs[0];
        let ids = r.add_agent("a", 1).unwrap();
        assert_eq!(ids.len(), 1);
        assert!(r.add_agent("a", 1).is_err(), "twice is refused, not a panic");
        let dest = r.resolve(b"a", 0, b"s").unwrap();
        assert_eq!(dest, Dest::Local(ids[0].1));
        reserve_stage(r, dest, msg("a", 0));
        assert!(!r.has_ready(), "rule 2: nothing before flush");
        assert_eq!(r.flush(), 1);
        let id = r.next_ready().unwrap();
        assert!(r.pop_message(id).is_some());
        r.requeue(id);
        assert!(!r.has_ready());
    }

    #[test]
    fn a_full_mailbox_refuses_with_busy_and_loses_nothing() {
        let (mut rs, _rx, _) = routers(1);
        let r = &mut rs[0];
        r.add_agent("a", 1).unwrap();
        let dest = r.resolve(b"a", 0, b"s").unwrap();
        for _ in 0..MAILBOX_MESSAGES_MAX {
            reserve_stage(r, dest, msg("a", 0));
        }
        assert_eq!(r.reserve(dest, 1), Err(RouteError::Busy));
        assert_eq!(r.accept(msg("a", 0)).unwrap_err().0, RouteError::Busy);
        r.flush();
        assert_eq!(r.queued_messages(), MAILBOX_MESSAGES_MAX);
    }

    #[test]
    fn rollback_returns_the_reserved_room() {
        let (mut rs, _rx, _) = routers(1);
        let r = &mut rs[0];
        r.add_agent("a", 1).unwrap();
        let dest = r.resolve(b"a", 0, b"s").unwrap();
        let mark = r.staged_mark();
        for _ in 0..MAILBOX_MESSAGES_MAX {
            reserve_stage(r, dest, msg("a", 0));
        }
        r.rollback_to(mark);
        assert_eq!(r.flush(), 0);
        assert!(r.reserve(dest, 1).is_ok());
    }

    #[test]
    fn cross_shard_messages_travel_in_order_and_unknown_names_are_refused() {
        let (mut rs, mut rx, api) = routers(2);
        // Find a name whose only instance lives on shard 1.
        let name = (0..).map(|i| format!("n{i}")).find(|n| shard_of(n.as_bytes(), 0, 2) == 1).unwrap();
        for r in rs.iter_mut() {
            r.add_agent(&name, 1).unwrap();
        }
        assert_eq!(rs[0].resolve(b"nobody", 0, b"s"), Err(RouteError::UnknownReceiver));
        let dest = rs[0].resolve(name.as_bytes(), 0, b"s").unwrap();
        assert_eq!(dest, Dest::Peer(1));
        for c in 1..=3 {
            reserve_stage(&mut rs[0], dest, msg(&name, c));
        }
        reserve_stage(&mut rs[0], Dest::Api, msg("@api/1", 0));
        rs[0].flush();
        assert_eq!(api.lock().unwrap().len(), 1);
        assert_eq!(rs[0].message_bytes().mesh, 3 * msg(&name, 1).len());
        let from0 = rx[1][0].as_mut().unwrap();
        for c in 1..=3 {
            let m = from0.try_recv().unwrap();
            assert_eq!(m.conversation_id(), c);
            rs[1].accept(m).unwrap();
        }
        from0.publish();
        assert_eq!(rs[0].message_bytes().mesh, 0, "taken and published");
        assert_eq!(rs[1].queued_messages(), 3);
    }

    #[test]
    fn undeploy_turns_queued_mail_into_dead_letters() {
        let (mut rs, _rx, _) = routers(1);
        let r = &mut rs[0];
        r.add_agent("a", 2).unwrap();
        r.accept(msg("a", 0)).unwrap();
        r.accept(msg("a", 1)).unwrap();
        assert_eq!(r.remove_agent("a").len(), 2);
        assert_eq!(r.counters.dead_letters.get(DeadLetter::Undeployed), 2);
        assert_eq!(r.message_bytes().mailboxes, 0);
        assert!(!r.has_ready());
        assert_eq!(r.resolve(b"a", 0, b"s"), Err(RouteError::UnknownReceiver));
        assert!(r.remove_agent("a").is_empty(), "twice is a no-op");
    }
}
