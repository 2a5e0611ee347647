//! The control plane: what the REST API asks of the node. It keeps the
//! catalog, compiles modules (once per node), and talks to shards only
//! through their bounded control channels.
//!
//! Rules:
//! 1. A full control channel is answered at once (503), never awaited.
//! 2. Lifecycle operations (deploy, undeploy, restore, stop) run one at a
//!    time, over each shard's lifecycle queue, which only they use. Before
//!    sending, an operation checks every shard has room; then every send
//!    succeeds. So a deploy or undeploy reaches every shard or none, and a
//!    shard that stopped taking commands is a 503 with nothing half-done.
//! 3. A deploy is all or nothing: if any shard fails to start an instance,
//!    the shards that started theirs drop them (and are awaited), and the
//!    catalog forgets the agent.
//! 4. Replies addressed to `@api/<n>` reach the waiting request through a
//!    bounded channel, and only if they answer it: their `in_reply_to` is
//!    the request's `reply_with`, which is random (53 bits) unless the
//!    caller chose it. Anything else to `@api/<n>` is counted as
//!    undeliverable and dropped. Every message out of the shards is
//!    [`Held`] until it is gone, so the runtime outbox counts its bytes
//!    wherever it is dropped.
//! 5. Every wait on a shard has a deadline (`--control-timeout-ms`): past
//!    it the caller gets 503 naming the shard, and a lifecycle operation is
//!    settled (finished or undone) by a task that keeps the lifecycle lock
//!    until the late shard answers. A shard that has not finished a tick
//!    for [`SHARD_STALL_SLICES`] slices is reported stalled, and
//!    `/v1/health` does not wait for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caxton_shards::context::{IdGen, API_ORIGIN};
use caxton_shards::agent::{compile, to_wasm_binary, AgentLimits, CompiledAgent};
use caxton_shards::command::Reply;
use caxton_shards::envelope::{is_agent_name, Header};
use caxton_cluster::view::RemoteRoute;
use caxton_shards::limits::AGENT_INSTANCES_MAX;
use caxton_shards::names::{node_prefix, wire_id, API_NAME_PREFIX};
use caxton_shards::placement::{instance_for, shard_of};
use caxton_shards::router::RouteError;
use caxton_shards::limits::{SHARD_STALL_SLICES, WIRE_OUTBOX_BYTES_MAX, WIRE_OUTBOX_MESSAGES_MAX};
use caxton_shards::router::ApiSink;
use caxton_shards::runtime_outbox::Held;
use caxton_shards::{Command, InstanceReport, InstanceStats, Message, ShardHandle, ShardSender, ShardStats};
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

/// A wire connection's outbox: messages to `@wire/<id>`, and their bytes.
#[derive(Clone)]
pub struct WireOutbox {
    pub tx: mpsc::Sender<Held>,
    pub bytes: Arc<std::sync::atomic::AtomicUsize>,
}

pub struct Control {
    shards: Vec<ShardSender>,
    /// The shards' threads (kept, not joined: a stop waits for answers).
    _handles: Vec<ShardHandle>,
    /// One lifecycle operation at a time (rule 2).
    lifecycle: Arc<tokio::sync::Mutex<()>>,
    /// How long to wait for a shard (rule 5), and after how long without a
    /// tick a shard is stalled.
    timeout: Duration,
    stall_after: Duration,
    /// Messages out of the shards to runtime names (rule 4).
    pub outbox: ApiSink,
    /// The free-space floor, for metrics (`None` in tests).
    pub disk: Option<Arc<caxton_shards::storage::DiskFloor>>,
    /// The message budget, by queue (for metrics).
    pub budget: caxton_shards::limits::MessageBudget,
    /// Bytes in every wire connection's outbox, and what one may hold.
    pub wire_bytes: Arc<std::sync::atomic::AtomicUsize>,
    wire_connection_bytes_max: usize,
    limits: AgentLimits,
    admission: Mutex<Admission>,
    catalog: Mutex<Catalog>,
    agents: Mutex<HashMap<String, AgentRecord>>,
    /// REST callers waiting for a reply, by their `@api/<n>` name: the
    /// `reply_with` a reply must answer, and where it goes (rule 4).
    waiters: Mutex<HashMap<String, (u64, oneshot::Sender<Held>)>>,
    api_ids: Mutex<IdGen>,
    next_api_name: AtomicU64,
    /// Open wire connections, by id: where messages to `@wire/<id>` go.
    wires: Mutex<HashMap<u64, WireOutbox>>,
    /// Messages to runtime names that no one took (gone or full), by kind.
    pub undeliverable_api: AtomicU64,
    pub undeliverable_wire: AtomicU64,
    /// Wire connections refused (over the cap, or a wrong or late hello).
    pub wire_refused: AtomicU64,
    /// Bytes of wire frames, in and out.
    pub wire_received_bytes: AtomicU64,
    pub wire_sent_bytes: AtomicU64,
    /// Membership and registry, in a cluster (`gossip.rs`).
    pub cluster: Option<Cluster>,
    /// REST sends refused because the receiver's node is down.
    pub node_unavailable: AtomicU64,
}

/// A random, non-zero 53-bit id (JSON clients hold numbers as doubles), from
/// the kernel's CSPRNG: a REST request's `reply_with` (rule 4).
fn unguessable_id() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom(2) writes at most `bytes.len()` bytes into a buffer we own.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr() as *mut libc::c_void, bytes.len(), 0) };
    assert_eq!(n, 8, "the kernel's random source answers");
    (u64::from_le_bytes(bytes) & ((1 << 53) - 1)).max(1)
}

/// Whether a failed lifecycle operation is settled (nothing of it stays)
/// or a background task settles it when a late shard answers (rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Now,
    Later,
}

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
    /// `shards` reach each shard; `handles` keep their threads.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shards: Vec<ShardSender>,
        handles: Vec<ShardHandle>,
        outbox: ApiSink,
        budget: caxton_shards::limits::MessageBudget,
        limits: AgentLimits,
        admission: Admission,
        catalog: Catalog,
        boot_epoch: u64,
        cluster: Option<Cluster>,
    ) -> Control {
        assert!(!shards.is_empty() && (handles.is_empty() || handles.len() == shards.len()));
        Control {
            shards,
            _handles: handles,
            lifecycle: Arc::new(tokio::sync::Mutex::new(())),
            timeout: Duration::from_millis(caxton_shards::limits::CONTROL_TIMEOUT_MS),
            stall_after: Duration::from_millis(SHARD_STALL_SLICES * limits.execution_time_slice_ms),
            outbox,
            disk: None,
            budget,
            wire_bytes: Default::default(),
            wire_connection_bytes_max: WIRE_OUTBOX_BYTES_MAX.min(budget.wire_outbox as usize / 4).max(caxton_shards::limits::ENVELOPE_BYTES_MAX),
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
            wire_refused: AtomicU64::new(0),
            wire_received_bytes: AtomicU64::new(0),
            wire_sent_bytes: AtomicU64::new(0),
            cluster,
            node_unavailable: AtomicU64::new(0),
        }
    }

    /// The deadline of every wait on a shard (rule 5). Default
    /// [`caxton_shards::limits::CONTROL_TIMEOUT_MS`].
    pub fn with_timeout(mut self, timeout: Duration) -> Control {
        self.timeout = timeout;
        self
    }

    /// The disk floor the shards write under, for `/metrics`.
    pub fn with_disk(mut self, disk: Arc<caxton_shards::storage::DiskFloor>) -> Control {
        self.disk = Some(disk);
        self
    }

    /// The disk floor the shards write under (metrics).
    pub fn disk_free_bytes(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| d.free_bytes())
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn register_wire(&self) -> (u64, WireOutbox, mpsc::Receiver<Held>) {
        let id = self.next_api_name.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(WIRE_OUTBOX_MESSAGES_MAX);
        let outbox = WireOutbox { tx, bytes: Default::default() };
        self.wires.lock().unwrap().insert(id, outbox.clone());
        (id, outbox, rx)
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
            (None, Some(RemoteRoute { alive: true, .. })) => None,
            (None, Some(RemoteRoute { node, alive: false, .. })) => return Err((header, format!("receiver {receiver} is on node {node}, which is down"))),
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

    /// A shard's answer, within the control deadline (rule 5).
    async fn answer<T>(&self, shard: usize, rx: oneshot::Receiver<T>) -> Result<T, ApiError> {
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(answer) => answer.map_err(|_| ApiError::internal(format!("shard {shard} stopped"))),
            Err(_) => Err(self.late(shard)),
        }
    }

    fn late(&self, shard: usize) -> ApiError {
        let stalled = if self.stalled(shard) { " (it is stalled)" } else { "" };
        ApiError::busy(format!("shard {shard} did not answer within {} ms{stalled}", self.timeout.as_millis()))
    }

    /// Sends a command to one shard and waits for its answer.
    async fn ask<T: Send + 'static>(&self, shard: usize, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
        self.answer(shard, self.submit(shard, make)?).await
    }

    /// Sends a command to every shard, then waits for all the answers.
    async fn ask_all<T: Send + 'static>(&self, make: impl Fn(Reply<T>) -> Command) -> Result<Vec<T>, ApiError> {
        let waits = (0..self.shards.len()).map(|shard| self.submit(shard, &make)).collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(waits.len());
        for (shard, rx) in waits.into_iter().enumerate() {
            out.push(self.answer(shard, rx).await?);
        }
        Ok(out)
    }

    /// Has shard `shard` not finished a tick for [`SHARD_STALL_SLICES`]
    /// execution slices, while not parked? (rule 5)
    pub fn stalled(&self, shard: usize) -> bool {
        self.shards[shard].stalled(self.stall_after)
    }

    /// Asks every shard that is not stalled for its figures; a stalled or
    /// late one is `None`, and nobody waits on it.
    pub async fn shard_stats_partial(&self) -> Vec<Option<ShardStats>> {
        let waits: Vec<_> = (0..self.shards.len()).map(|shard| (!self.stalled(shard)).then(|| self.submit(shard, |reply| Command::ShardStats { reply }).ok()).flatten()).collect();
        let mut out = Vec::with_capacity(waits.len());
        for (shard, rx) in waits.into_iter().enumerate() {
            out.push(match rx {
                Some(rx) => self.answer(shard, rx).await.ok(),
                None => None,
            });
        }
        out
    }

    /// The lifecycle lock (rule 2), within the control deadline: a previous
    /// operation still finishing on a shard that does not answer holds it.
    async fn lifecycle_lock(&self) -> Result<tokio::sync::OwnedMutexGuard<()>, ApiError> {
        tokio::time::timeout(self.timeout, self.lifecycle.clone().lock_owned())
            .await
            .map_err(|_| ApiError::busy("a previous deploy or undeploy is still finishing on a shard that does not answer; retry later"))
    }

    /// Sends a lifecycle command to the shards `to` (rule 2): all of them
    /// or, when one has no room, none. Call with the lifecycle lock held.
    fn lifecycle_to<T: Send + 'static>(&self, to: &[usize], make: impl Fn(Reply<T>) -> Command) -> Result<Vec<(usize, oneshot::Receiver<T>)>, ApiError> {
        if let Some(&full) = to.iter().find(|&&i| !self.shards[i].lifecycle_room(1)) {
            return Err(ApiError::busy(format!("shard {full} is not taking commands (its lifecycle queue is full); nothing was changed")));
        }
        let mut waits = Vec::with_capacity(to.len());
        for &shard in to {
            let (tx, rx) = oneshot::channel();
            let sent = self.shards[shard].send_lifecycle(make(Box::new(move |v| {
                let _ = tx.send(v);
            })));
            // The only producer, under the lock, after the room check.
            assert!(sent.is_ok(), "lifecycle queue of shard {shard} filled after its room was checked");
            waits.push((shard, rx));
        }
        Ok(waits)
    }

    fn all_shards(&self) -> Vec<usize> {
        (0..self.shards.len()).collect()
    }

    fn record_for(&self, name: &str, instances: u32, charge_each: u64) -> AgentRecord {
        AgentRecord { instances, charge_each, shards: (0..instances).map(|i| shard_of(name.as_bytes(), i, self.shards.len())).collect() }
    }

    /// Deploys a module under `name` (rules 2 and 3).
    pub async fn deploy(self: &Arc<Self>, name: &str, instances: u32, body: Vec<u8>) -> Result<DeployReport, ApiError> {
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
            Some(RemoteRoute { node, alive: true, .. }) => return Err(ApiError::conflict(format!("an agent named {name:?} is deployed on node {node}"))),
            // Its node is down: the name moves here (a newer registry version).
            Some(RemoteRoute { node, alive: false, .. }) => tracing::warn!(agent = name, %node, "redeploying an agent whose node is down; it moves to this node"),
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
        let lifecycle = self.lifecycle_lock().await?;
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
        match self.start_everywhere(lifecycle, name, module, instances, false).await {
            Ok(reports) => {
                if let Some(c) = &self.cluster {
                    c.publish(name, true);
                }
                Ok(DeployReport { record, instances: reports, compile_ms, total_ms: started.elapsed().as_secs_f64() * 1e3 })
            }
            Err((e, Settled::Now)) => {
                self.forget_record(name);
                Err(e)
            }
            Err((e, Settled::Later)) => Err(e), // the background task forgets it
        }
    }

    /// Starts `name` on every shard or on none (rules 2, 3 and 5), holding
    /// the lifecycle lock. A shard late past the deadline makes it a 503;
    /// a task of its own then waits for every answer, undoes the deploy
    /// where it was done, forgets the name and only then lets the lock go.
    async fn start_everywhere(
        self: &Arc<Self>,
        lifecycle: tokio::sync::OwnedMutexGuard<()>,
        name: &str,
        module: CompiledAgent,
        instances: u32,
        restore: bool,
    ) -> Result<Vec<InstanceReport>, (ApiError, Settled)> {
        let shared: Arc<str> = name.into();
        let waits = self
            .lifecycle_to(&self.all_shards(), |reply| Command::Deploy { name: shared.clone(), module: module.clone(), instances, restore, reply })
            .map_err(|e| (e, Settled::Now))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut waits = std::collections::VecDeque::from(waits);
        let (mut reports, mut started, mut failure) = (Vec::new(), Vec::new(), None);
        while let Some((shard, mut rx)) = waits.pop_front() {
            match tokio::time::timeout_at(deadline, &mut rx).await {
                Ok(Ok(Ok(mut rs))) => {
                    reports.append(&mut rs);
                    started.push(shard);
                }
                Ok(Ok(Err(e))) => failure = Some(ApiError::bad_request("init_failed", e)),
                Ok(Err(_)) => failure = Some(ApiError::internal(format!("shard {shard} stopped"))),
                Err(_) => {
                    waits.push_front((shard, rx));
                    let late = self.late(shard);
                    let this = self.clone();
                    tokio::spawn(async move {
                        for (_, rx) in waits {
                            if let Ok(Ok(_)) = rx.await {
                                started.push(shard);
                            }
                        }
                        if let Err(e) = this.stop_on_now(&started, &shared).await {
                            tracing::error!(agent = %shared, "undoing a late deploy failed: {}", e.message);
                        }
                        this.forget_record(&shared);
                        drop(lifecycle);
                    });
                    let message = format!("{}: the deploy is undone as soon as it answers", late.message);
                    return Err((ApiError { message, ..late }, Settled::Later));
                }
            }
        }
        if let Some(e) = failure {
            // The shards that started the agent drop it again, and we wait
            // for them: nothing of it stays anywhere.
            self.stop_on_now(&started, &shared).await.map_err(|e| (e, Settled::Now))?;
            return Err((e, Settled::Now));
        }
        reports.sort_by_key(|r| r.instance);
        assert_eq!(reports.len(), instances as usize, "every instance is placed on exactly one shard");
        Ok(reports)
    }

    /// Undeploys `name` from the shards `to` and waits for each, however
    /// long (undoing: nothing may stay half-done). Call with the lifecycle
    /// lock held.
    async fn stop_on_now(&self, to: &[usize], name: &Arc<str>) -> Result<(), ApiError> {
        let waits = self.lifecycle_to(to, |reply| Command::Undeploy { name: name.clone(), reply })?;
        for (shard, rx) in waits {
            rx.await.map_err(|_| ApiError::internal(format!("shard {shard} stopped")))?;
        }
        Ok(())
    }

    /// Forgets a name in the catalog, the records and admission.
    fn forget_record(&self, name: &str) {
        if let Err(e) = self.catalog.lock().unwrap().remove(name) {
            tracing::error!(agent = name, error = %e, "cannot remove an agent from the catalog; it comes back at the next start");
        }
        if let Some(r) = self.agents.lock().unwrap().remove(name) {
            self.admission.lock().unwrap().release(r.instances, r.charge_each);
        }
    }

    /// Stops `name` on every shard, then forgets it (rule 2): if a shard
    /// cannot take the command, nothing changes and the caller gets 503. A
    /// shard late past the deadline is a 503 too; the undeploy completes in
    /// the background when it answers.
    pub async fn undeploy(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let lifecycle = self.lifecycle_lock().await?;
        if !self.agents.lock().unwrap().contains_key(name) {
            return Err(ApiError::not_found(format!("no agent named {name:?}")));
        }
        let shared: Arc<str> = name.into();
        let waits = self.lifecycle_to(&self.all_shards(), |reply| Command::Undeploy { name: shared.clone(), reply })?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut waits = std::collections::VecDeque::from(waits);
        while let Some((shard, mut rx)) = waits.pop_front() {
            if tokio::time::timeout_at(deadline, &mut rx).await.is_err() {
                waits.push_front((shard, rx));
                let late = self.late(shard);
                let this = self.clone();
                tokio::spawn(async move {
                    for (_, rx) in waits {
                        let _ = rx.await;
                    }
                    this.forgotten(&shared);
                    drop(lifecycle);
                });
                return Err(ApiError { message: format!("{}: the undeploy completes when it answers", late.message), ..late });
            }
        }
        self.forgotten(name);
        Ok(())
    }

    /// An undeploy reached every shard: forget the name and say so.
    fn forgotten(&self, name: &str) {
        self.forget_record(name);
        if let Some(c) = &self.cluster {
            c.publish(name, false);
        }
    }

    /// Brings back the agents of the catalog after a restart.
    pub async fn restore(self: &Arc<Self>) -> Result<usize, String> {
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
            let lifecycle = self.lifecycle_lock().await.map_err(|e| e.message)?;
            self.start_everywhere(lifecycle, &agent.name, module, agent.instances, true).await.map_err(|(e, _)| format!("agent {}: {}", agent.name, e.message))?;
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
    pub async fn send(&self, out: Outgoing, wait: Option<Duration>) -> Result<(u64, Option<Held>), ApiError> {
        let local = self.agents.lock().unwrap().get(&out.receiver).map(|r| r.instances);
        let instances = match local {
            Some(n) => Some(n),
            None => {
                let remote = self.cluster.as_ref().and_then(|c| c.view.lock().unwrap().remote_route(&out.receiver));
                match remote {
                    None => return Err(ApiError::not_found(format!("no agent named {:?}", out.receiver))),
                    Some(RemoteRoute { node, alive: false, .. }) => {
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
        // Rule 4: a reply must name this request, and no agent can guess it.
        let reply_with = if out.reply_with == 0 && wait.is_some() { unguessable_id() } else { out.reply_with };
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
            self.waiters.lock().unwrap().insert(sender.clone(), (reply_with, tx));
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
            if let Some(id) = wire_id(receiver) {
                let wire = self.wires.lock().unwrap().get(&id).cloned();
                // Past its own share or the wire outboxes' share, a client
                // that does not read loses its own replies, counted
                // (docs/WIRE.md); the runtime outbox, and REST callers, are
                // never held up by it.
                let len = held.message().len();
                let room = |w: &WireOutbox| {
                    w.bytes.load(Ordering::Relaxed) + len <= self.wire_connection_bytes_max && self.wire_bytes.load(Ordering::Relaxed) + len <= self.budget.wire_outbox as usize
                };
                match wire.filter(room) {
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
        let route = self.cluster.as_ref()?.view.lock().unwrap().remote_route(name)?;
        Some(route.node.to_string())
    }

    /// Sends a request to another member's API (`--node` deploys, stops of
    /// agents hosted there) and hands back its status and body.
    pub async fn forward(&self, node: &str, method: &'static str, path: String, body: Vec<u8>, authorization: Option<String>) -> Result<(u16, Vec<u8>), ApiError> {
        let cluster = self.cluster.as_ref().ok_or_else(|| ApiError::bad_request("not_clustered", "this node is not in a cluster (--listen): there is no other node"))?;
        let api = {
            let view = cluster.view.lock().unwrap();
            let m = view.member_by_name(node).ok_or_else(|| ApiError::not_found(format!("no member named {node:?} (see GET /v1/cluster/members)")))?;
            if m.state == caxton_cluster::view::MemberState::Down {
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

    /// Stops every shard; each answers once it has committed what it holds.
    pub async fn stop(&self) {
        let Ok(_lifecycle) = self.lifecycle_lock().await else {
            tracing::error!("stopping without the lifecycle lock: an operation is still finishing");
            return;
        };
        match self.lifecycle_to(&self.all_shards(), |reply| Command::Stop { reply }) {
            Ok(waits) => {
                for (shard, rx) in waits {
                    if let Err(e) = self.answer(shard, rx).await {
                        tracing::error!("shard {shard} did not stop in time: {}", e.message);
                    }
                }
            }
            Err(e) => tracing::error!("cannot stop the shards: {}", e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    use caxton_shards::limits::LIFECYCLE_COMMANDS_MAX;
    use caxton_shards::runtime_outbox::RuntimeOutbox;

    /// What a fake shard did, and how it answers deploys.
    struct FakeShard {
        seen: Arc<Mutex<Vec<&'static str>>>,
        stop: Arc<AtomicUsize>,
    }

    /// Plays shard `index` of `count`: answers lifecycle commands, deploys
    /// with `deploy_ok`, until the test ends.
    fn fake_shard(index: usize, count: usize, lifecycle: crossbeam_channel::Receiver<Command>, deploy_ok: bool) -> FakeShard {
        slow_fake_shard(index, count, lifecycle, deploy_ok, Duration::ZERO)
    }

    /// A fake shard that takes `delay` to answer a deploy (a stuck one).
    fn slow_fake_shard(index: usize, count: usize, lifecycle: crossbeam_channel::Receiver<Command>, deploy_ok: bool, delay: Duration) -> FakeShard {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicUsize::new(0));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while st.load(Ordering::Relaxed) == 0 {
                let Ok(c) = lifecycle.recv_timeout(Duration::from_millis(10)) else { continue };
                match c {
                    Command::Deploy { name, instances, reply, .. } => {
                        std::thread::sleep(delay);
                        s.lock().unwrap().push("deploy");
                        let here = (0..instances).filter(|&i| shard_of(name.as_bytes(), i, count) == index);
                        reply(if deploy_ok { Ok(here.map(|instance| InstanceReport { instance, shard: index, startup_us: 0 }).collect()) } else { Err("caxton_init returned 1".into()) })
                    }
                    Command::Undeploy { reply, .. } => {
                        s.lock().unwrap().push("undeploy");
                        reply(())
                    }
                    Command::Stop { reply } => {
                        s.lock().unwrap().push("stop");
                        reply(())
                    }
                    _ => {}
                }
            }
        });
        FakeShard { seen, stop }
    }

    impl Drop for FakeShard {
        fn drop(&mut self) {
            self.stop.store(1, Ordering::Relaxed);
        }
    }

    fn control(dir: &std::path::Path, senders: Vec<ShardSender>) -> Control {
        // (tests of deploys through `Arc<Control>`, as the API holds it)
        let n = senders.len();
        let (catalog, boot) = Catalog::open(dir, n).unwrap();
        let memory = crate::admission::MemoryLimits { base_memory: 0, agent_heap_size: 1, agent_stack_size: 1, per_agent_overhead: 1, message_buffer_size: 0 };
        let budget = caxton_shards::limits::MessageBudget::split(caxton_shards::limits::MESSAGE_BUFFER_BYTES).unwrap();
        Control::new(senders, Vec::new(), RuntimeOutbox::consuming(drop), budget, AgentLimits::default(), Admission::new(memory, u64::MAX, 1000), catalog, boot, None)
    }

    fn module() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agents/small.wat")).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_deploy_one_shard_refuses_is_undone_on_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (s0, _, l0) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
        let (s1, _, l1) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
        let (ok, refusing) = (fake_shard(0, 2, l0, true), fake_shard(1, 2, l1, false));
        let c = Arc::new(control(dir.path(), vec![s0, s1]));
        let err = runtime().block_on(c.deploy("agent", 10, module())).err().unwrap();
        assert_eq!(err.code, "init_failed", "{}", err.message);
        assert_eq!(*ok.seen.lock().unwrap(), ["deploy", "undeploy"], "undone where it was done, and awaited");
        assert_eq!(*refusing.seen.lock().unwrap(), ["deploy"]);
        assert!(c.list().is_empty());
        assert!(c.catalog.lock().unwrap().agents().unwrap().is_empty(), "the catalog forgot it");
    }

    #[test]
    fn a_shard_that_takes_no_commands_gets_nothing_and_the_caller_503() {
        let dir = tempfile::tempdir().unwrap();
        let (s0, _, l0) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
        let (s1, _, l1) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
        let zero = fake_shard(0, 2, l0, true);
        // Shard 1 is stuck: its lifecycle queue is full.
        for _ in 0..LIFECYCLE_COMMANDS_MAX {
            assert!(s1.send_lifecycle(Command::Stop { reply: Box::new(|_| {}) }).is_ok());
        }
        let c = Arc::new(control(dir.path(), vec![s0, s1.clone()]));
        let rt = runtime();
        let err = rt.block_on(c.deploy("agent", 2, module())).err().unwrap();
        assert_eq!((err.status.as_u16(), err.message.contains("shard 1")), (503, true), "{}", err.message);
        assert!(zero.seen.lock().unwrap().is_empty(), "nothing sent to any shard");
        assert!(c.list().is_empty() && c.catalog.lock().unwrap().agents().unwrap().is_empty());
        // Unstuck, the same deploy goes through; stuck again, an undeploy
        // changes nothing either.
        let one = fake_shard(1, 2, l1.clone(), true); // (l1 kept: the queue stays open)
        assert!(rt.block_on(c.deploy("agent", 2, module())).is_ok());
        one.stop.store(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
        while s1.lifecycle_room(1) {
            assert!(s1.send_lifecycle(Command::Stop { reply: Box::new(|_| {}) }).is_ok());
        }
        let before = zero.seen.lock().unwrap().len();
        assert_eq!(rt.block_on(c.undeploy("agent")).unwrap_err().status.as_u16(), 503);
        assert_eq!(zero.seen.lock().unwrap().len(), before, "shard 0 kept the agent: all or nothing");
        assert_eq!(c.list().len(), 1, "still deployed");
    }

    #[test]
    fn a_shard_late_past_the_deadline_is_a_503_and_the_deploy_is_undone_when_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (s0, _, l0) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
        let (s1, _, l1) = ShardSender::detached(LIFECYCLE_COMMANDS_MAX);
        let quick = fake_shard(0, 2, l0, true);
        let stuck = slow_fake_shard(1, 2, l1, true, Duration::from_millis(800));
        let c = Arc::new(control(dir.path(), vec![s0, s1]).with_timeout(Duration::from_millis(200)));
        let rt = runtime();
        let started = Instant::now();
        let err = rt.block_on(c.deploy("agent", 2, module())).err().unwrap();
        assert!(started.elapsed() < Duration::from_millis(700), "answered at the deadline, not when the shard did");
        assert_eq!(err.status.as_u16(), 503);
        assert!(err.message.contains("shard 1") && err.message.contains("undone"), "{}", err.message);
        // A second lifecycle call waits for the first to settle: the late
        // shard answers, the deploy is undone on both, the name forgotten.
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !c.list().is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert!(c.list().is_empty(), "forgotten once settled");
        assert_eq!(*quick.seen.lock().unwrap(), ["deploy", "undeploy"]);
        assert_eq!(*stuck.seen.lock().unwrap(), ["deploy", "undeploy"]);
        assert!(c.catalog.lock().unwrap().agents().unwrap().is_empty());
    }
}
