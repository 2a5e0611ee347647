//! Messages: from REST callers and wire clients into the shards, and the
//! messages the shards address to runtime names back to them (control
//! rules 1 and 4).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use caxton_abi::failure::FailureReason;
use caxton_cluster::view::RemoteRoute;
use caxton_shards::envelope::Header;
use caxton_shards::names::{node_prefix, wire_id, API_NAME_PREFIX};
use caxton_shards::placement::{instance_for, key_shard, shard_of};
use caxton_shards::router::RouteError;
use caxton_shards::runtime_outbox::Held;
use caxton_shards::{Command, Message};
use tokio::sync::{mpsc, oneshot};

use caxton_shards::limits::WIRE_OUTBOX_MESSAGES_MAX;

use super::{unguessable_id, Control, ControlError, Outgoing, WireOutbox};

/// The name a receiver is deployed under: a keyed address's type, or the
/// receiver itself.
pub fn deployed_name(receiver: &str) -> &str {
    match caxton_abi::split_keyed(receiver.as_bytes()) {
        Some((type_name, _)) => std::str::from_utf8(type_name).expect("an agent name is ASCII"),
        None => receiver,
    }
}

impl Control {
    /// How `receiver` is placed on this node: `Some(n)` for an agent of `n`
    /// instances, `Some(0)` for a key of a keyed type (`TYPE/KEY`), `None`
    /// if it is not here. A keyed type's bare name addresses nothing.
    pub fn local_instances(&self, receiver: &str) -> Option<u32> {
        let agents = self.agents.read().unwrap();
        match caxton_abi::split_keyed(receiver.as_bytes()) {
            Some(_) => agents.get(deployed_name(receiver)).filter(|r| r.instances == 0).map(|_| 0),
            None => agents.get(receiver).filter(|r| r.instances > 0).map(|r| r.instances),
        }
    }

    /// The shard a message from `sender` to a local `receiver` goes to.
    pub(super) fn local_shard(&self, receiver: &str, instances: u32, conversation_id: u64, sender: &[u8]) -> usize {
        if instances == 0 {
            return key_shard(receiver.as_bytes(), self.shards.len());
        }
        shard_of(receiver.as_bytes(), instance_for(conversation_id, sender, instances), self.shards.len())
    }

    /// The error for a receiver that is neither here nor on a known node.
    fn no_such_receiver(&self, receiver: &str) -> ControlError {
        if self.agents.read().unwrap().get(receiver).is_some_and(|r| r.instances == 0) {
            return ControlError::not_found(format!("{receiver:?} is a keyed agent: address one of its keys, as {receiver}/KEY"));
        }
        ControlError::not_found(format!("no agent named {receiver:?}"))
    }

    pub fn register_wire(&self) -> (u64, WireOutbox, mpsc::Receiver<Held>) {
        let id = self.next_api_name.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(WIRE_OUTBOX_MESSAGES_MAX);
        let outbox = WireOutbox { tx, bytes: Default::default() };
        let earlier = self.wires.lock().unwrap().insert(id, outbox.clone());
        assert!(earlier.is_none(), "runtime names are never reused");
        (id, outbox, rx)
    }

    /// Has wire connection `w` room for a message of `len` bytes, within
    /// its own bound and the wire outboxes' share of the message budget?
    pub fn wire_has_room(&self, w: &WireOutbox, len: usize) -> bool {
        w.bytes.load(Ordering::Relaxed) + len <= self.wire_connection_bytes_max
            && self.wire_bytes.load(Ordering::Relaxed) + len <= self.budget.wire_outbox as usize
    }

    pub fn unregister_wire(&self, id: u64) {
        self.wires.lock().unwrap().remove(&id);
    }

    /// Checks a wire frame and readies it for its shard: sender `from`, a new
    /// id. Errors carry the frame's header (if it had one) and the reason.
    /// The refusal is boxed: it is rare, and a header is 128 bytes.
    pub fn wire_message(&self, from: &str, frame: Vec<u8>) -> Result<(usize, Message), Box<(Header, String)>> {
        let m = Message::decode(frame).map_err(|e| Box::new((Header::default(), format!("invalid_envelope: {e}"))))?;
        let mut header = m.header();
        if self.draining() {
            return Err(Box::new((header, FailureReason::NodeDown.as_str().to_string())));
            // drain rule 1
        }
        let receiver = std::str::from_utf8(m.receiver()).unwrap_or("");
        let local = self.local_instances(receiver);
        let remote = || self.cluster.as_ref().and_then(|c| c.view.lock().unwrap().remote_route(deployed_name(receiver)));
        let instances = match (local, local.is_none().then(remote).flatten()) {
            (Some(n), _) => Some(n),
            (None, Some(RemoteRoute { alive: true, .. })) => None,
            (None, Some(RemoteRoute { alive: false, .. })) => return Err(Box::new((header, FailureReason::NodeDown.as_str().to_string()))),
            (None, None) => return Err(Box::new((header, FailureReason::UnknownReceiver.as_str().to_string()))),
        };
        header.message_id = self.api_ids.lock().unwrap().next_id();
        let m = Message::encode(&header, from.as_bytes(), m.receiver(), m.content()).map_err(|e| Box::new((header, e.to_string())))?;
        let shard = match instances {
            Some(instances) => self.local_shard(receiver, instances, header.conversation_id, from.as_bytes()),
            // Remote: one conversation keeps to one shard, so to one link.
            None => {
                (if header.conversation_id != 0 { header.conversation_id } else { caxton_shards::placement::fnv1a64(from.as_bytes()) }
                    % self.shards.len() as u64) as usize
            }
        };
        assert!(shard < self.shards.len());
        Ok((shard, m))
    }

    /// Hands a batch to a shard; the refused come back with why. A full
    /// control queue hands the whole batch back.
    pub async fn inject(&self, shard: usize, messages: Vec<Message>) -> Result<Vec<(RouteError, Message)>, Vec<Message>> {
        assert!(shard < self.shards.len() && !messages.is_empty(), "a batch goes to a shard that exists");
        let (tx, rx) = oneshot::channel();
        let command = Command::Inject {
            messages,
            reply: Box::new(move |v| {
                let _ = tx.send(v);
            }),
        };
        match self.shards[shard].send(command) {
            Ok(()) => Ok(rx.await.unwrap_or_default()),
            Err(Command::Inject { messages, .. }) => Err(messages),
            Err(_) => unreachable!("the command handed back is the one sent"),
        }
    }

    /// Sends a message from the API; with `wait`, waits for its reply (rule 3).
    pub async fn send(&self, out: Outgoing, wait: Option<Duration>) -> Result<(u64, Option<Held>), ControlError> {
        let instances = match self.local_instances(&out.receiver) {
            Some(n) => Some(n),
            None => {
                let remote = self.cluster.as_ref().and_then(|c| c.view.lock().unwrap().remote_route(deployed_name(&out.receiver)));
                match remote {
                    None => return Err(self.no_such_receiver(&out.receiver)),
                    Some(RemoteRoute { node, alive: false, .. }) => {
                        self.node_unavailable.fetch_add(1, Ordering::Relaxed);
                        let why = self.cluster.as_ref().map_or("down", |c| c.view.lock().unwrap().why_unreachable(node));
                        return Err(ControlError::node_unavailable(format!("agent {:?} is on node {node}, which is {why}", out.receiver)));
                    }
                    Some(_) => None, // any shard sends it over its own link
                }
            }
        };
        let sender = format!("{API_NAME_PREFIX}{}", self.next_api_name.fetch_add(1, Ordering::Relaxed));
        let message_id = self.api_ids.lock().unwrap().next_id();
        // Rule 4: a reply must name this request, and no agent can guess it.
        let reply_with = if out.reply_with == 0 && wait.is_some() { unguessable_id() } else { out.reply_with };
        let header = Header {
            performative: out.performative,
            message_id,
            conversation_id: out.conversation_id,
            reply_with,
            reply_by: out.reply_by,
            protocol: out.protocol,
            trace: out.trace,
            ..Header::default()
        };
        let message = Message::encode(&header, sender.as_bytes(), out.receiver.as_bytes(), &out.content)
            .map_err(|e| ControlError::bad_request("invalid_message", e.to_string()))?;
        let shard = match instances {
            Some(instances) => self.local_shard(&out.receiver, instances, out.conversation_id, sender.as_bytes()),
            // Remote: a conversation keeps to one shard, so to one link
            // connection, and its order holds across the hop.
            None => (if out.conversation_id != 0 { out.conversation_id } else { message_id } % self.shards.len() as u64) as usize,
        };
        assert!(shard < self.shards.len());
        assert!(wait.is_none() || reply_with != 0, "rule 4: a waited-on request names its reply");
        let waiter = wait.map(|_| {
            let (tx, rx) = oneshot::channel();
            let earlier = self.waiters.lock().unwrap().insert(sender.clone(), (reply_with, tx));
            assert!(earlier.is_none(), "runtime names are never reused");
            rx
        });
        let delivered = self.ask(shard, |reply| Command::Deliver { message, reply }).await;
        let refused = match delivered {
            Ok(Ok(())) => None,
            Ok(Err(RouteError::Busy)) => Some(ControlError::too_many(if instances == Some(0) {
                format!(
                    "{:?} cannot take a message now: its mailbox is full, or its shard holds all the keyed activations it may (--keyed-active-max)",
                    out.receiver
                )
            } else {
                format!("the mailbox of {:?} is full", out.receiver)
            })),
            Ok(Err(RouteError::UnknownReceiver)) => Some(ControlError::not_found(format!("no agent named {:?}", out.receiver))),
            Ok(Err(RouteError::Unreachable)) => {
                self.node_unavailable.fetch_add(1, Ordering::Relaxed);
                Some(ControlError::node_unavailable(format!("the node of agent {:?} is down", out.receiver)))
            }
            Err(e) => Some(e),
        };
        if let Some(e) = refused {
            self.waiters.lock().unwrap().remove(&sender);
            return Err(e);
        }
        let (Some(rx), Some(wait)) = (waiter, wait) else { return Ok((message_id, None)) };
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(reply)) => {
                // Paired with dispatch_replies: only the reply to this request.
                assert_eq!(reply.message().in_reply_to(), reply_with, "rule 4");
                Ok((message_id, Some(reply)))
            }
            _ => {
                self.waiters.lock().unwrap().remove(&sender);
                Err(ControlError::timeout(format!("no reply from {:?} within {} ms", out.receiver, wait.as_millis())))
            }
        }
    }

    /// Hands messages to runtime names to their REST waiters and wire
    /// connections (rule 3).
    pub async fn dispatch_replies(self: Arc<Self>, mut replies: mpsc::Receiver<Message>) {
        // `@node/<this node's tag>/api/7` is `@api/7` here (a reply that went
        // round other nodes and came back through an agent on this one).
        let own_prefix = self.cluster.as_ref().map(|c| node_prefix(&c.view.lock().unwrap().me.name()));
        while let Some(message) = replies.recv().await {
            let held = self.outbox.hold(message);
            let receiver = std::str::from_utf8(held.message().receiver()).unwrap_or("");
            let local;
            let receiver = match own_prefix.as_deref().and_then(|p| receiver.strip_prefix(p)) {
                Some(rest) => {
                    local = format!("@{rest}");
                    local.as_str()
                }
                None => receiver,
            };
            if caxton_shards::tools::tool_of(receiver.as_bytes()).is_some() {
                self.submit_tool_call(held);
                continue;
            }
            if let Some(id) = wire_id(receiver) {
                let wire = self.wires.lock().unwrap().get(&id).cloned();
                // Past its own share or the wire outboxes' share, a client
                // that does not read loses its own replies, counted
                // (docs/WIRE.md); the runtime outbox, and REST callers, are
                // never held up by it.
                let len = held.message().len();
                match wire.filter(|w| self.wire_has_room(w, len)) {
                    Some(w) => {
                        let mut held = held;
                        held.move_to(vec![w.bytes.clone(), self.wire_bytes.clone()]);
                        if w.tx.try_send(held).is_err() {
                            self.undeliverable_wire.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        self.undeliverable_wire.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            // Rule 4: only the reply to the request the caller waits on.
            let waiter = {
                let mut waiters = self.waiters.lock().unwrap();
                match waiters.get(receiver) {
                    Some((reply_with, _)) if *reply_with == held.message().in_reply_to() => waiters.remove(receiver),
                    _ => None,
                }
            };
            match waiter {
                Some((_, tx)) => {
                    let _ = tx.send(held);
                }
                None => {
                    self.undeliverable_api.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(receiver, in_reply_to = held.message().in_reply_to(), "message to a runtime name that answers no waiting request: dropped");
                }
            }
        }
    }
}
