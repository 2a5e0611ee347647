//! Routing on one shard: where a message goes, and the room it needs there.
//!
//! - [`directory`]: agent names, their instances, and names on other nodes;
//! - [`mailboxes`]: the local instances' mailboxes and the run queue;
//! - [`outbox`]: the tick's staged messages and the backlogs to peer shards;
//! - [`keyed`]: the live activations of keyed agents;
//! - [`notices`]: failure notices waiting to be sent;
//! - [`dead_letter`]: why a message was not delivered, counted by reason;
//! - [`bounds`]: the bounds a router enforces (rule 1) and what it counts.
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

pub mod bounds;
pub mod dead_letter;
pub mod directory;
pub mod keyed;
pub mod mailboxes;
pub mod notices;
pub mod outbox;

pub use bounds::{MessageBytes, NodeQueueLimits, RouterCounters, RouterLimits};
pub use dead_letter::{DeadLetter, DeadLetters};
use directory::{DirEntry, Directory, LocalIds};
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

/// Hands messages addressed to runtime names (`@api/...`, `@wire/...`) to
/// the node's control plane, bounded in bytes ([`RuntimeOutbox`]).
pub type ApiSink = Arc<RuntimeOutbox>;

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
        self.directory.add(name, DirEntry { instances, local: LocalIds::from(local), keyed: false })?;
        Ok(made)
    }

    /// Adds a keyed type: no mailbox until a key is sent to (`keyed`).
    pub fn add_keyed_type(&mut self, name: &str) -> Result<(), String> {
        if self.directory.contains(name) {
            return Err(format!("agent {name} is already on shard {}", self.shard));
        }
        self.directory.add(name, DirEntry { instances: 0, local: LocalIds::from(Box::<[Option<LocalId>]>::default()), keyed: true })
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

    /// A mailbox no address leads to, for a trial instance (`shard::keyed`
    /// rule 9); closed again by [`Router::close_scratch_mailbox`].
    pub fn open_scratch_mailbox(&mut self) -> LocalId {
        self.mailboxes.open()
    }

    pub fn close_scratch_mailbox(&mut self, id: LocalId) {
        assert!(self.keyed.address_of(id).is_none(), "not an activation's");
        let left = self.mailboxes.close(id);
        assert!(left.is_empty(), "no address leads to a scratch mailbox");
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
            Some(entry) => entry.local.get(instance as usize),
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
        let mut ids: Vec<LocalId> = entry.local.iter().collect();
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
        assert!((instance as usize) < entry.local.len(), "instance_for picks one of its instances");
        match entry.local.get(instance as usize) {
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

    /// The instance `n` places after the next in the run queue.
    pub fn peek_ready(&self, n: usize) -> Option<LocalId> {
        self.mailboxes.peek_ready(n)
    }

    /// Prefetches `id`'s mailbox record, or with `front` its first message
    /// (`Mailboxes::prefetch`).
    pub fn prefetch_mailbox(&self, id: LocalId, front: bool) {
        self.mailboxes.prefetch(id, front)
    }

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
mod tests;
