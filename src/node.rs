//! `caxton serve`: wires a node together.
//!
//! Order of start-up, each step failing with a clear message:
//! 1. check the API address (a non-loopback one needs a token) and bind it;
//! 2. open the catalog (pins the shard count of the data dir);
//! 3. start one pinned shard per core, each opening its own SQLite;
//! 4. start the checkpointer thread;
//! 5. in a cluster (`--listen`), start the gossip thread (shards already
//!    listen for links);
//! 6. restore the catalog's agents (and publish them to the registry); then
//!    serve the API until SIGINT/SIGTERM, when the node leaves the cluster,
//!    and shards commit what they hold and stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use caxton_shards::agent::AgentLimits;
use caxton_shards::executor::{self, allowed_cpus};
use caxton_shards::limits::{MessageBudget, API_HEADER_TIMEOUT_MS, API_IDLE_TIMEOUT_MS, API_REPLIES_MAX, WIRE_CONNECTIONS_MAX, WIRE_HELLO_TIMEOUT_MS};
use caxton_shards::runtime_outbox::RuntimeOutbox;
use std::time::Duration;
use caxton_shards::shard::ShardTuning;

use crate::admission::{Admission, MemoryLimits};
use caxton_shards::storage::{shard_db_path, Checkpointer, DiskFloor, StorageConfig};
use caxton_shards::ShardsConfig;

use crate::api::{self, Api};
use crate::catalog::{Catalog, RouteCache};
use crate::gossip::Cluster;
use caxton_shards::link::LinkSetup;
use crate::control::Control;

/// Everything `caxton serve` runs with; `config::ServeArgs::resolve` fills
/// it from flags, the config file and the defaults.
#[derive(Debug)]
pub struct ServeConfig {
    pub cores: Option<usize>,
    pub data_dir: PathBuf,
    pub api: SocketAddr,
    pub api_token: Option<String>,
    /// The wire listener (`wire.rs`), if any.
    pub wire: Option<SocketAddr>,
    /// Cluster membership and links (`--listen`), if any.
    pub cluster: Option<crate::config::ClusterConfig>,
    pub tuning: ShardTuning,
    pub storage: StorageConfig,
    pub limits: AgentLimits,
    pub memory: MemoryLimits,
    pub memory_budget: u64,
    pub max_agents: usize,
    pub max_connections: usize,
    /// `--disk-free-min`: the free-space floor for agents' state writes.
    pub disk_free_min: u64,
    /// `--control-timeout-ms`: how long the API waits for a shard.
    pub control_timeout: Duration,
    /// Time and count bounds of the API and wire listeners.
    pub listeners: ListenerLimits,
    /// The message budget (`--message-buffer-size`), split by queue.
    pub budget: MessageBudget,
}

/// Bounds on the API and wire listeners before and after authentication,
/// each with its default in `caxton_shards::limits`.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// `--api-header-timeout-ms`, default [`API_HEADER_TIMEOUT_MS`].
    pub api_header_timeout: Duration,
    /// `--api-idle-timeout-ms`, default [`API_IDLE_TIMEOUT_MS`].
    pub api_idle_timeout: Duration,
    /// `--api-host`: names the Host header may carry besides the address.
    pub api_hosts: Vec<String>,
    /// `--wire-hello-timeout-ms`, default [`WIRE_HELLO_TIMEOUT_MS`].
    pub wire_hello_timeout: Duration,
    /// `--wire-connections-max`, default [`WIRE_CONNECTIONS_MAX`].
    pub wire_connections_max: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            api_header_timeout: Duration::from_millis(API_HEADER_TIMEOUT_MS),
            api_idle_timeout: Duration::from_millis(API_IDLE_TIMEOUT_MS),
            api_hosts: Vec::new(),
            wire_hello_timeout: Duration::from_millis(WIRE_HELLO_TIMEOUT_MS),
            wire_connections_max: WIRE_CONNECTIONS_MAX,
        }
    }
}

pub fn serve(config: ServeConfig) -> Result<(), String> {
    if !config.api.ip().is_loopback() && config.api_token.is_none() {
        return Err(format!(
            "refusing to serve the API on non-loopback address {} without a token: set --api-token or CAXTON_API_TOKEN",
            config.api
        ));
    }
    let allowed = allowed_cpus();
    let cores = config.cores.unwrap_or(allowed.len());
    if cores == 0 || cores > allowed.len() || cores > 255 {
        return Err(format!("--cores {cores}: this process may run on {} cores ({allowed:?}); choose 1 to {}", allowed.len(), allowed.len().min(255)));
    }
    let cpus = allowed[..cores].to_vec();
    raise_open_files_limit(config.max_connections);
    std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    if let Some(wire) = config.wire.filter(|w| !w.ip().is_loopback()) {
        if config.api_token.is_none() {
            return Err(format!("refusing to serve the wire listener on non-loopback address {wire} without a token: set --api-token or CAXTON_API_TOKEN"));
        }
    }
    let listener = std::net::TcpListener::bind(config.api).map_err(|e| format!("cannot bind the API to {}: {e}", config.api))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let wire_listener = match config.wire {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(|e| format!("cannot bind the wire listener to {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        }
        None => None,
    };
    let (catalog, boot_epoch) = Catalog::open(&config.data_dir, cores)?;
    let disk = DiskFloor::watch(&config.data_dir, config.disk_free_min).map_err(|e| format!("cannot start the disk watcher: {e}"))?;
    tracing::info!(
        memory_budget_bytes = config.memory_budget,
        charge_per_agent_bytes = config.memory.per_agent(),
        agents_that_fit = config.memory.max_agents_for_memory(config.memory_budget).min(config.max_agents),
        max_agents = config.max_agents,
        "admission control"
    );

    let (replies_tx, replies_rx) = tokio::sync::mpsc::channel(API_REPLIES_MAX);
    let sink = RuntimeOutbox::new(config.budget.runtime_outbox as usize, Box::new(move |m| replies_tx.try_send(m).map_err(|e| e.into_inner())));
    let shards = executor::start(
        ShardsConfig {
            cpus: cpus.clone(),
            data_dir: config.data_dir.clone(),
            storage: config.storage.clone(),
            boot_epoch,
            tuning: config.tuning,
            link: config.cluster.as_ref().map(|c| LinkSetup::for_shard(c.listen, c.key.clone(), cores, c.links)),
            disk: disk.clone(),
        },
        sink.clone(),
    )?;
    let paths = (0..cores).map(|i| shard_db_path(&config.data_dir, i)).collect();
    Checkpointer::spawn(paths, config.storage.clone()).map_err(|e| format!("cannot start the checkpointer: {e}"))?;

    let cluster = match config.cluster.clone() {
        Some(c) => {
            let cache = RouteCache::open(&config.data_dir)?;
            let senders = shards.iter().map(|s| s.sender()).collect();
            let (listen, seeds) = (c.listen, c.join.clone());
            let cluster = Cluster::start(c, config.api, boot_epoch, cache, senders)?;
            tracing::info!(%listen, ?seeds, "cluster: gossip and links listening");
            Some(cluster)
        }
        None => None,
    };
    let control = Arc::new(Control::new(shards.iter().map(|s| s.sender()).collect(), shards, sink, config.budget, config.limits, Admission::new(config.memory, config.memory_budget, config.max_agents), catalog, boot_epoch, cluster).with_timeout(config.control_timeout).with_disk(disk));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start the API runtime: {e}"))?;
    runtime.block_on(async move {
        tokio::spawn(control.clone().dispatch_replies(replies_rx));
        let restored = control.restore().await?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        tracing::info!(api = %config.api, cores, ?cpus, data_dir = %config.data_dir.display(), restored_agents = restored, "caxton node serving");
        if let Some(l) = wire_listener {
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
            tracing::info!(wire = %l.local_addr().map_err(|e| e.to_string())?, "wire listener serving");
            let limits = crate::wire::WireLimits {
                hello_timeout: config.listeners.wire_hello_timeout,
                connections_max: config.listeners.wire_connections_max,
                ingress_bytes: config.budget.wire_ingress as usize,
            };
            tokio::spawn(crate::wire::serve(control.clone(), l, config.api_token.clone(), limits));
        }
        let api = Arc::new(Api::new(control.clone(), config.api_token, config.api, &config.listeners, config.max_connections));
        let server = tokio::spawn(api::serve(api, listener));
        wait_for_signal().await;
        tracing::info!("stopping: shards commit and stop");
        server.abort();
        if let Some(c) = &control.cluster {
            c.leave().await;
        }
        control.stop().await;
        Ok::<(), String>(())
    })
}

/// Raises the open-files soft limit to the hard one: every API connection
/// is a file descriptor.
fn raise_open_files_limit(max_connections: usize) {
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    let soft = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    if (soft as usize) < max_connections + 256 {
        tracing::warn!(open_files_limit = soft, max_connections, "the open-files limit is below --max-connections; connections past it will fail to be accepted (raise `ulimit -n`)");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
