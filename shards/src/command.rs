//! What the node asks of a shard, over the shard's bounded control channel,
//! and what the shard answers. Answers go through a `Reply` callback so the
//! shard needs no knowledge of the caller's runtime.

use std::sync::Arc;

use crate::agent::CompiledAgent;

use crate::envelope::Message;
pub use crate::restart_policy::RestartPolicy;
use crate::router::RouteError;

pub type Reply<T> = Box<dyn FnOnce(T) + Send>;

pub enum Command {
    /// Adds `name` to the directory and starts the instances placed here.
    /// With `restore`, an instance that fails to start is logged and retried
    /// on its next message instead of failing the deploy (node restart).
    /// With `instances` 0, `name` is a keyed type (`router::keyed`): no
    /// instance is made now; each key's activation is made on demand.
    Deploy {
        name: Arc<str>,
        module: CompiledAgent,
        instances: u32,
        restore: bool,
        policy: RestartPolicy,
        reply: Reply<Result<Vec<InstanceReport>, String>>,
    },
    /// Upgrade, first phase: makes each instance of `name` placed here from
    /// `module` and runs its `caxton_init`, then throws it away, its writes
    /// and sends rolled back. Changes nothing; says whether it would work.
    UpgradePrepare {
        name: Arc<str>,
        module: CompiledAgent,
        reply: Reply<Result<(), String>>,
    },
    /// Upgrade, second phase: each instance of `name` here is made anew
    /// from `module` between two messages; its mailbox, state and timers
    /// stay. Lifts a backoff or quarantine.
    UpgradeCommit {
        name: Arc<str>,
        module: CompiledAgent,
        reply: Reply<Result<(), String>>,
    },
    /// Lifts the backoff or quarantine of `name`'s instances here; answers
    /// how many were lifted.
    Restart {
        name: Arc<str>,
        reply: Reply<usize>,
    },
    /// Deletes the state and timers of one key of a keyed type (`address`
    /// is `TYPE/KEY`, placed on this shard) and passivates it; answers
    /// whether it had state.
    DeleteKey {
        address: Arc<str>,
        reply: Reply<Result<bool, String>>,
    },
    /// What keyed type `name` did on this shard.
    KeyedStats {
        name: Arc<str>,
        reply: Reply<crate::router::keyed::KeyedCounts>,
    },
    /// How many messages the shard still holds, in any queue (a draining
    /// node waits for zero).
    Pending {
        reply: Reply<usize>,
    },
    /// Removes `name`: its instances stop, its mail becomes dead letters, its
    /// state is deleted.
    Undeploy {
        name: Arc<str>,
        reply: Reply<()>,
    },
    /// A message from the API: for an instance on this shard, or on another
    /// node (this shard sends it over its own link).
    Deliver {
        message: Message,
        reply: Reply<Result<(), RouteError>>,
    },
    /// A batch of messages (from the wire listener and the benchmarks): each
    /// goes where its receiver lives, like a `Deliver`. The reply hands back
    /// those refused, with why, for the caller to retry (busy) or report.
    Inject {
        messages: Vec<Message>,
        reply: Reply<Vec<(RouteError, Message)>>,
    },
    AgentStats {
        name: Arc<str>,
        reply: Reply<Vec<InstanceStats>>,
    },
    /// The shard's figures; with `instances_max`, a pass over its instances
    /// too, listing at most that many of them (in the order they were
    /// made). Health checks ask for no pass, stats and metrics for a short
    /// list, so that a shard of 10,000 agents answers in microseconds, not
    /// in tens of milliseconds of its core while messages wait.
    ShardStats {
        instances_max: Option<usize>,
        reply: Reply<ShardStats>,
    },
    /// The last `lines` log lines of agent `name` on this shard.
    AgentLogs {
        name: Arc<str>,
        lines: usize,
        reply: Reply<Vec<crate::agent::agent_log::LogRecord>>,
    },
    /// Changes in the cluster, in order: nodes up and down, and where agent
    /// names live. No answer: the gossip thread is the only sender.
    Cluster {
        updates: Vec<ClusterUpdate>,
    },
    /// Sets the tools agent `name` may call (`tools` rule 1); an empty list
    /// takes every grant away. Sent before its deploy, and at an upgrade
    /// that changes it.
    Grant {
        name: Arc<str>,
        tools: Arc<[Box<str>]>,
        reply: Reply<()>,
    },
    /// Every agent is restored: the node serves, and timers may fire
    /// (`timers` rule 5). Sent once, after the restore.
    Serve {
        reply: Reply<()>,
    },
    /// Fails back what the shard still holds (`node_down` notices), commits,
    /// checkpoints its WAL and stops.
    Stop {
        reply: Reply<()>,
    },
}

/// A change in the cluster a shard applies (`caxton_cluster::view`).
pub use caxton_cluster::view::ClusterUpdate;

#[derive(Debug, Clone)]
pub struct InstanceReport {
    pub instance: u32,
    pub shard: usize,
    pub startup_us: u64,
}

#[derive(Debug, Clone, Default)]
pub struct InstanceStats {
    pub name: Arc<str>,
    pub instance: u32,
    pub shard: usize,
    pub handled: u64,
    pub errors: u64,
    pub crashes: u64,
    pub timeouts: u64,
    pub queued: usize,
    pub memory_bytes: u64,
    /// Bytes of its state (keys and values).
    pub state_bytes: u64,
    /// `state_put`s refused (quota, disk floor) and log lines dropped.
    pub state_refused: u64,
    pub log_dropped: u64,
    pub running: bool,
    /// `running`, `backing_off` or `quarantined` (`shard::supervision`).
    pub standing: &'static str,
    /// Why it is quarantined, when it is.
    pub quarantined_because: Option<Arc<str>>,
    /// Crashes in a row, and restarts its policy made.
    pub crashes_in_a_row: u32,
    pub restarts: u64,
    /// Its handlers' processing latency since it was deployed.
    pub processing: crate::metrics::CompactLatency,
}

#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub shard: usize,
    /// Trace spans queued for export and dropped at a full queue.
    pub spans_queued: u64,
    pub spans_dropped: u64,
    /// Ticks spent in each stage of a message's way, by `stages::Stage::ALL`
    /// (zero unless `ShardTuning::stage_timing`).
    pub stage_ticks: [u64; crate::stages::STAGES],
    pub instances: usize,
    pub queued_messages: usize,
    pub handled: u64,
    pub errors: u64,
    /// Handler calls that trapped.
    pub crashes: u64,
    pub timeouts: u64,
    /// Instances that could not be made again when a message came for them.
    pub restart_failures: u64,
    pub routed_local: u64,
    pub routed_remote: u64,
    pub received_remote: u64,
    pub routed_node: u64,
    pub received_node: u64,
    pub links: crate::link::table::LinkCounters,
    /// Other nodes as this shard sees them: alive, suspect, down.
    pub nodes: [usize; 3],
    /// Messages waiting for other nodes, and arrivals waiting for a mailbox.
    pub link_queued: usize,
    pub link_inbound: usize,
    /// Bytes of messages the shard holds, by queue.
    pub message_bytes: crate::router::MessageBytes,
    pub busy: u64,
    /// Of `busy`: refused at a byte bound.
    pub busy_bytes: u64,
    pub not_found: u64,
    pub dead_letters: Vec<(&'static str, u64)>,
    /// Failure notices sent, by reason, and those dropped (`router::notices`).
    pub notices_sent: Vec<(&'static str, u64)>,
    pub notices_dropped: u64,
    /// Timers waiting in memory to fire (some may be cancelled already).
    pub timers_scheduled: usize,
    /// Restarts made and quarantines entered since the start.
    pub restarts: u64,
    pub quarantines: u64,
    pub abi_invalid: u64,
    pub abi_too_large: u64,
    pub abi_over_limit: u64,
    pub state_refused_quota: u64,
    pub state_refused_disk: u64,
    pub log_dropped: u64,
    pub wakeups: u64,
    pub latencies: crate::metrics::ShardLatencies,
    /// What a pass over its instances found, when one was asked for
    /// (`Command::ShardStats`).
    pub per_instance: Option<InstanceFigures>,
    /// What each keyed type deployed here did.
    pub keyed: Vec<(Arc<str>, crate::router::keyed::KeyedCounts)>,
    /// Tool calls admitted and refused here, and answers taken (`tools`).
    pub tools: crate::tools::ToolCounters,
}

/// What a pass over a shard's instances finds: the only part of a shard's
/// report whose cost grows with its instances (`shard::stats`).
#[derive(Debug, Clone, Default)]
pub struct InstanceFigures {
    /// Instances backing off and quarantined.
    pub backing_off: usize,
    pub quarantined: usize,
    /// Linear memory of all its instances, in bytes.
    pub memory_bytes: u64,
    /// The first instances, as many as asked for...
    pub listed: Vec<InstanceStats>,
    /// ...and how many more there are.
    pub omitted: usize,
}
