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
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use caxton_shards::agent::AgentLimits;
use caxton_shards::command::Reply;
use caxton_shards::context::{IdGen, API_ORIGIN};
use caxton_shards::envelope::Protocol;
use caxton_shards::limits::{SHARD_STALL_SLICES, WIRE_OUTBOX_BYTES_MAX};
use caxton_shards::router::ApiSink;
use caxton_shards::runtime_outbox::Held;
use caxton_shards::{Command, InstanceReport, InstanceStats, ShardHandle, ShardSender, ShardStats};
use tokio::sync::{mpsc, oneshot};

mod drain;
mod error;
pub mod keyed;
mod lifecycle;
mod messages;
#[cfg(test)]
mod tests;
pub mod tools;
mod upgrade;

pub use error::{ControlError, ErrorKind};
pub use lifecycle::{parse_policy, policy_query};
pub use upgrade::UpgradeReport;

use crate::admission::Admission;
use crate::gossip::Cluster;

use crate::catalog::Catalog;

#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub instances: u32,
    /// The module's current version (catalog), and the restart policy.
    pub version: crate::catalog::Version,
    pub policy: caxton_shards::command::RestartPolicy,
    /// Memory charged per instance by admission control.
    pub charge_each: u64,
    /// Shard of each instance, by instance index.
    pub shards: Vec<usize>,
    /// The tools it may call (`tools` rule 1).
    pub tools: Vec<String>,
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
    /// Instances whose own series `/metrics` and `caxton top --agents`
    /// carry, node-wide (`--metrics-per-agent`; 0 is off).
    pub metrics_instances_max: usize,
    /// Messages out of the shards to runtime names (rule 4).
    pub outbox: ApiSink,
    /// The free-space floor, for metrics (`None` in tests).
    pub disk: Option<Arc<caxton_shards::storage::DiskFloor>>,
    /// Each shard's database, for read-only scans (`keyed` rule 1).
    pub shard_dbs: Vec<std::path::PathBuf>,
    /// The trace exporter's counters, when traces are exported.
    pub trace_counters: Option<Arc<crate::otlp::ExportCounters>>,
    /// The message budget, by queue (for metrics).
    pub budget: caxton_shards::limits::MessageBudget,
    /// Bytes in every wire connection's outbox, and what one may hold.
    pub wire_bytes: Arc<std::sync::atomic::AtomicUsize>,
    wire_connection_bytes_max: usize,
    limits: AgentLimits,
    admission: Mutex<Admission>,
    catalog: Mutex<Catalog>,
    /// Read by every message from outside (the receiver's instance count)
    /// and written only by deploys and undeploys: readers never wait on
    /// each other, so a listing of 10,000 agents holds no message up.
    agents: RwLock<HashMap<String, AgentRecord>>,
    /// Agents of the catalog that could not be restored at start (their
    /// module no longer compiles, or no shard took them), with why: kept in
    /// the catalog, served by no shard, removed by an undeploy.
    pub(super) unrestored: Mutex<std::collections::BTreeMap<String, String>>,
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
    /// The HTTP client of forwarded requests: HTTPS to members whose API
    /// has TLS, their certificates checked against `--tls-ca` (default: the
    /// public roots).
    pub forward_agent: ureq::Agent,
    /// Compiled modules, on disk and for this start (`module_cache`).
    modules: crate::module_cache::ModuleCache,
    /// Running, draining (SIGTERM: the API answers 503, wire frames are
    /// refused) or stopped (wire connections close): `drain`.
    phase: tokio::sync::watch::Sender<Phase>,
    /// `phase` past running, read on every wire frame and API request
    /// without the watch's lock.
    draining: std::sync::atomic::AtomicBool,
    /// Every stored agent is back (`restore` has returned): until then the
    /// API answers only its probes and metrics (`GET /v1/ready`: 503).
    restored: std::sync::atomic::AtomicBool,
    /// This start's epoch (`catalog`): a node's identity between restarts
    /// is its cluster address; the epoch tells its starts apart.
    pub boot_epoch: u64,
    /// The tools runtime (`control::tools`), set once at start.
    tools: std::sync::OnceLock<Arc<crate::tools::Tools>>,
}

/// What `GET /v1/ready` says: may a load balancer send this node work?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Started, still restoring its agents.
    Starting,
    Ready,
    /// SIGTERM: draining, then stopping.
    Draining,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Starting => "starting",
            Readiness::Ready => "ready",
            Readiness::Draining => "draining",
        }
    }
}

/// Where a node is in its life (`drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Draining,
    Stopped,
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
    /// A keyed type's figures.
    pub keyed: Option<keyed::KeyedSummary>,
}

/// A message the API was asked to send.
pub struct Outgoing {
    pub receiver: String,
    pub performative: u8,
    pub content: Vec<u8>,
    pub conversation_id: u64,
    pub reply_with: u64,
    pub reply_by: u64,
    pub protocol: Protocol,
    /// The trace it joins (a REST `traceparent`), or none.
    pub trace: caxton_abi::TraceContext,
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
            metrics_instances_max: caxton_shards::limits::METRICS_INSTANCES_MAX,
            outbox,
            disk: None,
            shard_dbs: Vec::new(),
            trace_counters: None,
            budget,
            wire_bytes: Default::default(),
            wire_connection_bytes_max: WIRE_OUTBOX_BYTES_MAX.min(budget.wire_outbox as usize / 4).max(caxton_shards::limits::ENVELOPE_BYTES_MAX),
            limits,
            admission: Mutex::new(admission),
            catalog: Mutex::new(catalog),
            agents: RwLock::new(HashMap::new()),
            unrestored: Mutex::new(Default::default()),
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
            forward_agent: ureq::Agent::new(),
            modules: crate::module_cache::ModuleCache::new(None, 0).expect("no directory to make"),
            phase: tokio::sync::watch::channel(Phase::Running).0,
            draining: std::sync::atomic::AtomicBool::new(false),
            restored: std::sync::atomic::AtomicBool::new(false),
            boot_epoch,
            tools: std::sync::OnceLock::new(),
        }
    }

    /// Where compiled modules are kept (default: nowhere, compile each).
    pub fn with_module_cache(mut self, modules: crate::module_cache::ModuleCache) -> Control {
        self.modules = modules;
        self
    }

    /// Is the node draining or stopped (SIGTERM)?
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Has `restore` brought every stored agent back?
    pub fn restored(&self) -> bool {
        self.restored.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `GET /v1/ready`.
    pub fn readiness(&self) -> Readiness {
        if self.draining() {
            Readiness::Draining
        } else if self.restored() {
            Readiness::Ready
        } else {
            Readiness::Starting
        }
    }

    /// Follows the node's phase (wire connections close when it stops).
    pub fn phase(&self) -> tokio::sync::watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// The deadline of every wait on a shard (rule 5). Default
    /// [`caxton_shards::limits::CONTROL_TIMEOUT_MS`].
    pub fn with_timeout(mut self, timeout: Duration) -> Control {
        self.timeout = timeout;
        self
    }

    /// `--metrics-per-agent`. Default
    /// [`caxton_shards::limits::METRICS_INSTANCES_MAX`].
    pub fn with_metrics_instances_max(mut self, instances: usize) -> Control {
        self.metrics_instances_max = instances;
        self
    }

    /// The client forwarded requests go through (`--tls-ca`).
    pub fn with_forward_agent(mut self, agent: ureq::Agent) -> Control {
        self.forward_agent = agent;
        self
    }

    /// The trace exporter's counters, for `/metrics` (`--otlp-endpoint`).
    pub fn with_trace_counters(mut self, counters: Option<Arc<crate::otlp::ExportCounters>>) -> Control {
        self.trace_counters = counters;
        self
    }

    /// The disk floor the shards write under, for `/metrics`.
    pub fn with_shard_dbs(mut self, paths: Vec<std::path::PathBuf>) -> Control {
        assert_eq!(paths.len(), self.shards.len(), "one database a shard");
        self.shard_dbs = paths;
        self
    }

    pub fn with_disk(mut self, disk: Arc<caxton_shards::storage::DiskFloor>) -> Control {
        self.disk = Some(disk);
        self
    }

    /// The disk floor the shards write under (metrics).
    pub fn disk_free_bytes(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| d.free_bytes())
    }

    /// `--disk-free-min` (metrics: the alert compares the two).
    pub fn disk_free_min_bytes(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| d.floor_bytes())
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Queues a command for one shard; its answer arrives on the receiver.
    /// A full control queue is answered at once (rule 1).
    fn submit<T: Send + 'static>(&self, shard: usize, make: impl FnOnce(Reply<T>) -> Command) -> Result<oneshot::Receiver<T>, ControlError> {
        let (tx, rx) = oneshot::channel();
        let command = make(Box::new(move |v| {
            let _ = tx.send(v);
        }));
        self.shards[shard].send(command).map_err(|_| ControlError::busy(format!("shard {shard}'s control queue is full")))?;
        Ok(rx)
    }

    /// A shard's answer, within the control deadline (rule 5).
    async fn answer<T>(&self, shard: usize, rx: oneshot::Receiver<T>) -> Result<T, ControlError> {
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(answer) => answer.map_err(|_| ControlError::internal(format!("shard {shard} stopped"))),
            Err(_) => Err(self.late(shard)),
        }
    }

    fn late(&self, shard: usize) -> ControlError {
        let stalled = if self.stalled(shard) { " (it is stalled)" } else { "" };
        ControlError::busy(format!("shard {shard} did not answer within {} ms{stalled}", self.timeout.as_millis()))
    }

    /// Sends a command to one shard and waits for its answer.
    async fn ask<T: Send + 'static>(&self, shard: usize, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ControlError> {
        self.answer(shard, self.submit(shard, make)?).await
    }

    /// Sends a command to every shard, then waits for all the answers.
    async fn ask_all<T: Send + 'static>(&self, make: impl Fn(Reply<T>) -> Command) -> Result<Vec<T>, ControlError> {
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

    /// Asks every shard that is not stalled for its figures, with a pass
    /// over its instances listing at most `instances_max` node-wide
    /// (shared evenly), if asked (`Command::ShardStats`); a
    /// stalled one is `None`, and nobody waits on it; one that has not
    /// answered within `wait` (all shards together, at most the control
    /// timeout) is `None` too.
    pub async fn shard_stats_partial(&self, instances_max: Option<usize>, wait: Duration) -> Vec<Option<ShardStats>> {
        let deadline = tokio::time::Instant::now() + wait.min(self.timeout);
        let instances_max = self.instances_per_shard(instances_max);
        let waits: Vec<_> = (0..self.shards.len())
            .map(|shard| (!self.stalled(shard)).then(|| self.submit(shard, |reply| Command::ShardStats { instances_max, reply }).ok()).flatten())
            .collect();
        let mut out = Vec::with_capacity(waits.len());
        for rx in waits {
            out.push(match rx {
                Some(rx) => tokio::time::timeout_at(deadline, rx).await.ok().and_then(Result::ok),
                None => None,
            });
        }
        out
    }

    /// Every shard's figures, with a pass over its instances listing at
    /// most `instances_max` node-wide (shared evenly), if asked.
    pub async fn shard_stats(&self, instances_max: Option<usize>) -> Result<Vec<ShardStats>, ControlError> {
        let instances_max = self.instances_per_shard(instances_max);
        self.ask_all(|reply| Command::ShardStats { instances_max, reply }).await
    }

    /// A node-wide count of instances, shared evenly between the shards.
    fn instances_per_shard(&self, instances_max: Option<usize>) -> Option<usize> {
        instances_max.map(|max| max.div_ceil(self.shards.len().max(1)))
    }
}
