//! The control plane: what the REST API asks of the node. It keeps the
//! catalog, compiles modules (once per node), and talks to shards only
//! through their bounded control channels.
//!
//! Rules:
//! 1. A full control channel is answered at once (503), never awaited.
//! 2. A deploy is all or nothing: if any shard fails to start an instance,
//!    every shard drops the agent and the catalog forgets it.
//! 3. Replies addressed to `@api/<n>` reach the waiting request through a
//!    bounded channel; one nobody waits for is a dead letter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caxton_shards::agent::host::{IdGen, API_ORIGIN};
use caxton_shards::agent::{compile, to_wasm_binary, AgentLimits, CompiledAgent};
use caxton_shards::command::Reply;
use caxton_shards::envelope::{is_agent_name, Header};
use caxton_shards::limits::{AGENT_INSTANCES_MAX, API_NAME_PREFIX};
use caxton_shards::placement::{instance_for, shard_of};
use caxton_shards::router::RouteError;
use caxton_shards::{Command, InstanceReport, InstanceStats, Message, ShardHandle, ShardStats};
use tokio::sync::{mpsc, oneshot};

use crate::admission::Admission;
use crate::gossip::Cluster;
use crate::api::error::ApiError;
use crate::catalog::Catalog;

#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub instances: u32,
    /// Memory charged per instance by admission control.
    pub charge_each: u64,
    /// Shard of each instance, by instance index.
    pub shards: Vec<usize>,
}

pub struct Control {
    shards: Vec<ShardHandle>,
    limits: AgentLimits,
    admission: Mutex<Admission>,
    catalog: Mutex<Catalog>,
    agents: Mutex<HashMap<String, AgentRecord>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    api_ids: Mutex<IdGen>,
    next_api_name: AtomicU64,
    /// Open wire connections, by id: where messages to `@wire/<id>` go.
    wires: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    /// Messages to runtime names that no one took (gone or full), by kind.
    pub undeliverable_api: AtomicU64,
    pub undeliverable_wire: AtomicU64,
    /// Bytes of wire frames, in and out.
    pub wire_received_bytes: AtomicU64,
    pub wire_sent_bytes: AtomicU64,
    /// Membership and registry, in a cluster (`gossip.rs`).
    pub cluster: Option<Cluster>,
    /// REST sends refused because the receiver's node is down.
    pub node_unavailable: AtomicU64,
}

/// Messages queued for one wire connection's writer.
pub const WIRE_OUTBOX_MESSAGES_MAX: usize = 65_536;

pub struct DeployReport {
    pub record: AgentRecord,
    pub instances: Vec<InstanceReport>,
    pub compile_ms: f64,
    pub total_ms: f64,
}

pub struct AgentDetail {
    pub record: AgentRecord,
    pub instances: Vec<InstanceStats>,
}

/// A message the API was asked to send.
pub struct Outgoing {
    pub receiver: String,
    pub performative: u8,
    pub content: Vec<u8>,
    pub conversation_id: u64,
    pub reply_with: u64,
}

impl Control {
    pub fn new(shards: Vec<ShardHandle>, limits: AgentLimits, admission: Admission, catalog: Catalog, boot_epoch: u64, cluster: Option<Cluster>) -> Control {
        Control {
            shards,
            limits,
            admission: Mutex::new(admission),
            catalog: Mutex::new(catalog),
            agents: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            api_ids: Mutex::new(IdGen::new(boot_epoch, API_ORIGIN)),
            next_api_name: AtomicU64::new(1),
            wires: Mutex::new(HashMap::new()),
            undeliverable_api: AtomicU64::new(0),
            undeliverable_wire: AtomicU64::new(0),
            wire_received_bytes: AtomicU64::new(0),
            wire_sent_bytes: AtomicU64::new(0),
            cluster,
            node_unavailable: AtomicU64::new(0),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn register_wire(&self) -> (u64, mpsc::Receiver<Message>) {
        let id = self.next_api_name.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(WIRE_OUTBOX_MESSAGES_MAX);
        self.wires.lock().unwrap().insert(id, tx);
        (id, rx)
    }

    pub fn wire_sender(&self, id: u64) -> Option<mpsc::Sender<Message>> {
        self.wires.lock().unwrap().get(&id).cloned()
    }

    pub fn unregister_wire(&self, id: u64) {
        self.wires.lock().unwrap().remove(&id);
    }

    /// Checks a wire frame and readies it for its shard: sender `from`, a new
    /// id. Errors carry the frame's header (if it had one) and the reason.
    pub fn wire_message(&self, from: &str, frame: Vec<u8>) -> Result<(usize, Message), (Header, String)> {
        let m = Message::decode(frame).map_err(|e| (Header::default(), e.to_string()))?;
        let mut header = m.header();
        let receiver = std::str::from_utf8(m.receiver()).unwrap_or("");
        let local = self.agents.lock().unwrap().get(receiver).map(|r| r.instances);
        let remote = || self.cluster.as_ref().and_then(|c| c.view.lock().unwrap().remote_route(receiver));
        let instances = match (local, local.is_none().then(remote).flatten()) {
            (Some(n), _) => Some(n),
            (None, Some((_, _, true))) => None,
            (None, Some((node, _, false))) => return Err((header, format!("receiver {receiver} is on node {node}, which is down"))),
            (None, None) => return Err((header, format!("unknown receiver {receiver}"))),
        };
        header.message_id = self.api_ids.lock().unwrap().next_id();
        let m = Message::encode(&header, from.as_bytes(), m.receiver(), m.content()).map_err(|e| (header, e.to_string()))?;
        let shard = match instances {
            Some(instances) => shard_of(m.receiver(), instance_for(header.conversation_id, from.as_bytes(), instances), self.shards.len()),
            // Remote: one conversation keeps to one shard, so to one link.
            None => (if header.conversation_id != 0 { header.conversation_id } else { caxton_shards::placement::fnv1a64(from.as_bytes()) } % self.shards.len() as u64) as usize,
        };
        Ok((shard, m))
    }

    /// Hands a batch to a shard; the refused come back with why. A full
    /// control queue hands the whole batch back.
    pub async fn inject(&self, shard: usize, messages: Vec<Message>) -> Result<Vec<(RouteError, Message)>, Vec<Message>> {
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

    /// Queues a command for one shard; its answer arrives on the receiver.
    /// A full control queue is answered at once (rule 1).
    fn submit<T: Send + 'static>(&self, shard: usize, make: impl FnOnce(Reply<T>) -> Command) -> Result<oneshot::Receiver<T>, ApiError> {
        let (tx, rx) = oneshot::channel();
        let command = make(Box::new(move |v| {
            let _ = tx.send(v);
        }));
        self.shards[shard].send(command).map_err(|_| ApiError::busy(format!("shard {shard}'s control queue is full")))?;
        Ok(rx)
    }

    async fn answer<T>(shard: usize, rx: oneshot::Receiver<T>) -> Result<T, ApiError> {
        rx.await.map_err(|_| ApiError::internal(format!("shard {shard} stopped")))
    }

    /// Sends a command to one shard and waits for its answer.
    async fn ask<T: Send + 'static>(&self, shard: usize, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
        Self::answer(shard, self.submit(shard, make)?).await
    }

    /// Sends a command to every shard, then waits for all the answers.
    async fn ask_all<T: Send + 'static>(&self, make: impl Fn(Reply<T>) -> Command) -> Result<Vec<T>, ApiError> {
        let waits = (0..self.shards.len()).map(|shard| self.submit(shard, &make)).collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(waits.len());
        for (shard, rx) in waits.into_iter().enumerate() {
            out.push(Self::answer(shard, rx).await?);
        }
        Ok(out)
    }

    fn record_for(&self, name: &str, instances: u32, charge_each: u64) -> AgentRecord {
        AgentRecord { instances, charge_each, shards: (0..instances).map(|i| shard_of(name.as_bytes(), i, self.shards.len())).collect() }
    }

    /// Deploys a module under `name` (rule 2).
    pub async fn deploy(&self, name: &str, instances: u32, body: Vec<u8>) -> Result<DeployReport, ApiError> {
        let started = Instant::now();
        if !is_agent_name(name.as_bytes()) {
            return Err(ApiError::bad_request("invalid_name", format!("invalid agent name {name:?}: use 1 to 64 bytes of [a-z0-9._-]")));
        }
        if instances == 0 || instances > AGENT_INSTANCES_MAX {
            return Err(ApiError::bad_request("invalid_instances", format!("instances must be 1 to {AGENT_INSTANCES_MAX}, got {instances}")));
        }
        if self.agents.lock().unwrap().contains_key(name) {
            return Err(ApiError::conflict(format!("an agent named {name:?} is already deployed")));
        }
        match self.cluster.as_ref().and_then(|c| c.view.lock().unwrap().remote_route(name)) {
            Some((node, _, true)) => return Err(ApiError::conflict(format!("an agent named {name:?} is deployed on node {node}"))),
            // Its node is down: the name moves here (a newer registry version).
            Some((node, _, false)) => tracing::warn!(agent = name, %node, "redeploying an agent whose node is down; it moves to this node"),
            None => {}
        }
        let limits = self.limits;
        let compiled = tokio::task::spawn_blocking(move || {
            let wasm = to_wasm_binary(&body)?.into_owned();
            compile(&wasm, &limits).map(|m| (m, wasm))
        })
        .await
        .map_err(|e| ApiError::internal(format!("compiler task failed: {e}")))?;
        let (module, wasm) = compiled.map_err(|e| ApiError::bad_request("invalid_module", e.0))?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let each = self.admission.lock().unwrap().charge_per_instance(module.declared_memory_max);
        let record = self.record_for(name, instances, each);
        {
            let mut agents = self.agents.lock().unwrap();
            if agents.contains_key(name) {
                return Err(ApiError::conflict(format!("an agent named {name:?} is already deployed")));
            }
            self.admission.lock().unwrap().admit(name, instances, each).map_err(ApiError::over_capacity)?;
            if let Err(e) = self.catalog.lock().unwrap().insert(name, instances, &wasm) {
                self.admission.lock().unwrap().release(instances, each);
                return Err(ApiError::internal(format!("catalog write failed: {e}")));
            }
            agents.insert(name.to_string(), record.clone());
        }
        match self.start_everywhere(name, module, instances, false).await {
            Ok(reports) => {
                if let Some(c) = &self.cluster {
                    c.publish(name, true);
                }
                Ok(DeployReport { record, instances: reports, compile_ms, total_ms: started.elapsed().as_secs_f64() * 1e3 })
            }
            Err(e) => {
                self.forget(name).await;
                Err(e)
            }
        }
    }

    async fn start_everywhere(&self, name: &str, module: CompiledAgent, instances: u32, restore: bool) -> Result<Vec<InstanceReport>, ApiError> {
        let name: Arc<str> = name.into();
        let results = self
            .ask_all(|reply| Command::Deploy { name: name.clone(), module: module.clone(), instances, restore, reply })
            .await?;
        let mut reports = Vec::new();
        let mut failure = None;
        for r in results {
            match r {
                Ok(mut rs) => reports.append(&mut rs),
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            return Err(ApiError::bad_request("init_failed", e));
        }
        reports.sort_by_key(|r| r.instance);
        assert_eq!(reports.len(), instances as usize);
        Ok(reports)
    }

    /// Removes an agent from every shard and the catalog.
    async fn forget(&self, name: &str) {
        let shared: Arc<str> = name.into();
        let _ = self.ask_all(|reply| Command::Undeploy { name: shared.clone(), reply }).await;
        let _ = self.catalog.lock().unwrap().remove(name);
        if let Some(r) = self.agents.lock().unwrap().remove(name) {
            self.admission.lock().unwrap().release(r.instances, r.charge_each);
        }
    }

    pub async fn undeploy(&self, name: &str) -> Result<(), ApiError> {
        if !self.agents.lock().unwrap().contains_key(name) {
            return Err(ApiError::not_found(format!("no agent named {name:?}")));
        }
        self.forget(name).await;
        if let Some(c) = &self.cluster {
            c.publish(name, false);
        }
        Ok(())
    }

    /// Brings back the agents of the catalog after a restart.
    pub async fn restore(&self) -> Result<usize, String> {
        let stored = self.catalog.lock().unwrap().agents().map_err(|e| format!("cannot read the catalog: {e}"))?;
        let count = stored.len();
        for agent in stored {
            let module = compile(&agent.wasm, &self.limits).map_err(|e| format!("agent {}: stored module no longer compiles: {e}", agent.name))?;
            let each = self.admission.lock().unwrap().charge_per_instance(module.declared_memory_max);
            if let Err(e) = self.admission.lock().unwrap().admit(&agent.name, agent.instances, each) {
                // Admitted before the restart: keep it, but say the node is over.
                tracing::warn!(agent = agent.name, "restored agent is over the node's limits: {e}");
                let mut a = self.admission.lock().unwrap();
                a.agents += agent.instances as usize;
                a.charged += agent.instances as u64 * each;
            }
            self.agents.lock().unwrap().insert(agent.name.clone(), self.record_for(&agent.name, agent.instances, each));
            self.start_everywhere(&agent.name, module, agent.instances, true).await.map_err(|e| format!("agent {}: {}", agent.name, e.message))?;
        }
        if let Some(c) = &self.cluster {
            c.sync_own(self.agents.lock().unwrap().keys().cloned().collect());
        }
        Ok(count)
    }

    pub fn list(&self) -> Vec<(String, AgentRecord)> {
        let mut all: Vec<_> = self.agents.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub async fn agent(&self, name: &str) -> Result<AgentDetail, ApiError> {
        let record = self.agents.lock().unwrap().get(name).cloned().ok_or_else(|| ApiError::not_found(format!("no agent named {name:?}")))?;
        let shared: Arc<str> = name.into();
        let mut instances: Vec<InstanceStats> = self.ask_all(|reply| Command::AgentStats { name: shared.clone(), reply }).await?.into_iter().flatten().collect();
        instances.sort_by_key(|i| i.instance);
        Ok(AgentDetail { record, instances })
    }

    pub async fn shard_stats(&self) -> Result<Vec<ShardStats>, ApiError> {
        self.ask_all(|reply| Command::ShardStats { reply }).await
    }

    /// Sends a message from the API; with `wait`, waits for its reply (rule 3).
    pub async fn send(&self, out: Outgoing, wait: Option<Duration>) -> Result<(u64, Option<Message>), ApiError> {
        let local = self.agents.lock().unwrap().get(&out.receiver).map(|r| r.instances);
        let instances = match local {
            Some(n) => Some(n),
            None => {
                let remote = self.cluster.as_ref().and_then(|c| c.view.lock().unwrap().remote_route(&out.receiver));
                match remote {
                    None => return Err(ApiError::not_found(format!("no agent named {:?}", out.receiver))),
                    Some((node, _, false)) => {
                        self.node_unavailable.fetch_add(1, Ordering::Relaxed);
                        let why = self.cluster.as_ref().map_or("down", |c| c.view.lock().unwrap().why_unreachable(node));
                        return Err(ApiError::node_unavailable(format!("agent {:?} is on node {node}, which is {why}", out.receiver)));
                    }
                    Some(_) => None, // any shard sends it over its own link
                }
            }
        };
        let sender = format!("{API_NAME_PREFIX}{}", self.next_api_name.fetch_add(1, Ordering::Relaxed));
        let message_id = self.api_ids.lock().unwrap().next_id();
        let reply_with = if out.reply_with == 0 && wait.is_some() { message_id } else { out.reply_with };
        let header = Header { performative: out.performative, message_id, conversation_id: out.conversation_id, reply_with, in_reply_to: 0 };
        let message = Message::encode(&header, sender.as_bytes(), out.receiver.as_bytes(), &out.content).map_err(|e| ApiError::bad_request("invalid_message", e.to_string()))?;
        let shard = match instances {
            Some(instances) => shard_of(out.receiver.as_bytes(), instance_for(out.conversation_id, sender.as_bytes(), instances), self.shards.len()),
            // Remote: a conversation keeps to one shard, so to one link
            // connection, and its order holds across the hop.
            None => (if out.conversation_id != 0 { out.conversation_id } else { message_id } % self.shards.len() as u64) as usize,
        };
        let waiter = wait.map(|_| {
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().unwrap().insert(sender.clone(), tx);
            rx
        });
        let delivered = self.ask(shard, |reply| Command::Deliver { message, reply }).await;
        let refused = match delivered {
            Ok(Ok(())) => None,
            Ok(Err(RouteError::Busy)) => Some(ApiError::too_many(format!("the mailbox of {:?} is full", out.receiver))),
            Ok(Err(RouteError::UnknownReceiver)) => Some(ApiError::not_found(format!("no agent named {:?}", out.receiver))),
            Ok(Err(RouteError::Unreachable)) => {
                self.node_unavailable.fetch_add(1, Ordering::Relaxed);
                Some(ApiError::node_unavailable(format!("the node of agent {:?} is down", out.receiver)))
            }
            Err(e) => Some(e),
        };
        if let Some(e) = refused {
            self.waiters.lock().unwrap().remove(&sender);
            return Err(e);
        }
        let (Some(rx), Some(wait)) = (waiter, wait) else { return Ok((message_id, None)) };
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(reply)) => Ok((message_id, Some(reply))),
            _ => {
                self.waiters.lock().unwrap().remove(&sender);
                Err(ApiError::timeout(format!("no reply from {:?} within {} ms", out.receiver, wait.as_millis())))
            }
        }
    }

    /// Hands messages to runtime names to their REST waiters and wire
    /// connections (rule 3).
    pub async fn dispatch_replies(self: Arc<Self>, mut replies: mpsc::Receiver<Message>) {
        // `@node/<this node's tag>/api/7` is `@api/7` here (a reply that went
        // round other nodes and came back through an agent on this one).
        let own_prefix = self.cluster.as_ref().map(|c| caxton_shards::link::frame::node_prefix(&c.view.lock().unwrap().me.name()));
        while let Some(message) = replies.recv().await {
            let receiver = std::str::from_utf8(message.receiver()).unwrap_or("");
            let local;
            let receiver = match own_prefix.as_deref().and_then(|p| receiver.strip_prefix(p)) {
                Some(rest) => {
                    local = format!("@{rest}");
                    local.as_str()
                }
                None => receiver,
            };
            if let Some(id) = receiver.strip_prefix("@wire/").and_then(|n| n.parse::<u64>().ok()) {
                let tx = self.wires.lock().unwrap().get(&id).cloned();
                if tx.is_none_or(|tx| tx.try_send(message).is_err()) {
                    self.undeliverable_wire.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let waiter = self.waiters.lock().unwrap().remove(receiver);
            match waiter {
                Some(tx) => {
                    let _ = tx.send(message);
                }
                None => {
                    self.undeliverable_api.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(receiver, "message for a runtime name no one waits on");
                }
            }
        }
    }

    /// Deploys on another node of the cluster (`--node`): forwards the
    /// request to that node's API, with the caller's credentials.
    pub async fn deploy_on(&self, node: &str, name: &str, instances: u32, body: Vec<u8>, authorization: Option<String>) -> Result<(u16, Vec<u8>), ApiError> {
        self.forward(node, "PUT", format!("/v1/agents/{name}?instances={instances}"), body, authorization).await
    }

    /// The node hosting `name`, if another node of the cluster does.
    pub fn remote_node_of(&self, name: &str) -> Option<String> {
        if self.agents.lock().unwrap().contains_key(name) {
            return None;
        }
        let (node, _, _) = self.cluster.as_ref()?.view.lock().unwrap().remote_route(name)?;
        Some(node.to_string())
    }

    /// Sends a request to another member's API (`--node` deploys, stops of
    /// agents hosted there) and hands back its status and body.
    pub async fn forward(&self, node: &str, method: &'static str, path: String, body: Vec<u8>, authorization: Option<String>) -> Result<(u16, Vec<u8>), ApiError> {
        let cluster = self.cluster.as_ref().ok_or_else(|| ApiError::bad_request("not_clustered", "this node is not in a cluster (--listen): there is no other node"))?;
        let api = {
            let view = cluster.view.lock().unwrap();
            let m = view.member_by_name(node).ok_or_else(|| ApiError::not_found(format!("no member named {node:?} (see GET /v1/cluster/members)")))?;
            if m.state == crate::gossip::MemberState::Down {
                self.node_unavailable.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::node_unavailable(format!("node {node} is down")));
            }
            m.id.api
        };
        let url = format!("http://{api}{path}");
        let forwarded = tokio::task::spawn_blocking(move || {
            let mut req = ureq::request(method, &url).timeout(Duration::from_secs(60));
            if let Some(a) = authorization {
                req = req.set("authorization", &a);
            }
            match req.send_bytes(&body) {
                Ok(r) => Ok(r),
                Err(ureq::Error::Status(_, r)) => Ok(r),
                Err(e) => Err(e.to_string()),
            }
            .and_then(|r| {
                let status = r.status();
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut r.into_reader(), &mut out).map_err(|e| e.to_string())?;
                Ok((status, out))
            })
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
        forwarded.map_err(|e| ApiError::bad_gateway(format!("forwarding to node {node} ({api}) failed: {e}")))
    }

    /// Stops every shard, committing what they hold.
    pub async fn stop(&self) {
        let _ = self.ask_all(|reply| Command::Stop { reply }).await;
    }
}
