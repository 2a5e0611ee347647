//! The settings of `caxton serve` as written: one field per flag, the same
//! keys in the `--config` file (dashes become underscores). Nothing here
//! has a default; `ServeArgs::resolve` (the module root) applies them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::tools;
use super::units::{duration_opt, parse_duration, parse_size, size_opt};

/// Every setting of `caxton serve`, as flags (see `caxton serve --help`) and
/// as keys of the `--config` file.
#[derive(clap::Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these settings (flags win).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Read and check the settings (flags, file, defaults), print the main
    /// ones (never a secret) and exit, without starting.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
    /// Shards to run, one pinned per core [default: every core this process may use].
    #[arg(long)]
    pub cores: Option<usize>,
    /// Where the node keeps its catalog and each shard's SQLite database [default: caxton-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the REST API; a non-loopback one requires --api-token [default: 127.0.0.1:7070].
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// Address of the wire listener (binary envelope stream, docs/WIRE.md) [default: off].
    #[arg(long)]
    pub wire: Option<SocketAddr>,
    /// A listener of its own for Prometheus, serving only `GET /metrics`
    /// and `GET /v1/health`; the API's token and TLS apply to it as to the
    /// API [default: off: metrics are on the API].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Cluster address: gossip (UDP) and links (TCP) share this port. Joins
    /// a cluster; requires --cluster-key [default: off, a standalone node].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Cluster addresses of members to join through, comma-separated
    /// (HOST:PORT,...). Any one alive is enough.
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub join: Vec<String>,
    /// Shared secret of the cluster (at least 16 bytes): authenticates gossip
    /// packets and link handshakes.
    #[arg(long, env = "CAXTON_CLUSTER_KEY", hide_env_values = true)]
    #[serde(skip)]
    pub cluster_key: Option<String>,
    /// A file holding the cluster key (instead of --cluster-key, which
    /// every local user can read in /proc); systemd's credential
    /// `cluster-key` is read too.
    #[arg(long)]
    pub cluster_key_file: Option<PathBuf>,
    /// During a key rotation, a file holding the next cluster key (or
    /// CAXTON_CLUSTER_KEY_NEXT, or the systemd credential
    /// `cluster-key-next`). The node accepts both keys, sends with the next
    /// once every member has it, and drops the old once every member sends
    /// with it. Read again on SIGHUP; a missing file means no rotation
    /// [default: none].
    #[arg(long)]
    pub cluster_key_next_file: Option<PathBuf>,
    /// How long a member stays listed once down before this node forgets
    /// it (its names then route nowhere), e.g. 24h, 30m; 0 never
    /// (`caxton cluster forget` does it at once) [default: 24h].
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_opt")]
    pub cluster_reap_after: Option<Duration>,
    /// Between two gossip rounds, in ms [default: 200].
    #[arg(long)]
    pub gossip_interval_ms: Option<u64>,
    /// Members each gossip round goes to [default: 3].
    #[arg(long)]
    pub gossip_fanout: Option<usize>,
    /// Outbound link connections to one other node, all shards together [default: 100].
    #[arg(long)]
    pub connection_pool_size: Option<usize>,
    /// Inbound link connections the node accepts; the next is closed at once [default: 1000].
    #[arg(long)]
    pub max_connections_per_node: Option<usize>,
    /// An outbound link connection unused this long closes, in ms [default: 60000].
    #[arg(long)]
    pub idle_connection_timeout_ms: Option<u64>,
    /// Longest a link connect and handshake may take, in ms [default: 2000].
    #[arg(long)]
    pub link_handshake_timeout_ms: Option<u64>,
    /// Inbound link connections in their handshake at once, apart from the
    /// authenticated ones; the next is closed [default: 64].
    #[arg(long)]
    pub max_pending_handshakes: Option<usize>,
    /// Bearer token the API requires (`Authorization: Bearer TOKEN`).
    #[arg(long, env = "CAXTON_API_TOKEN", hide_env_values = true)]
    #[serde(skip)]
    pub api_token: Option<String>,
    /// The API's TLS certificate chain (PEM, the node's certificate first);
    /// with --tls-key, the API speaks HTTPS. Required on a non-loopback --api.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// A file holding the API token (instead of --api-token, which every
    /// local user can read in /proc); systemd's credential `api-token` is
    /// read too.
    #[arg(long)]
    pub api_token_file: Option<PathBuf>,
    /// During a token rotation, a file holding the next API token (or
    /// CAXTON_API_TOKEN_NEXT, or the systemd credential `api-token-next`):
    /// both are accepted. Read again on SIGHUP, with --api-token-file; a
    /// missing file means no rotation [default: none].
    #[arg(long)]
    pub api_token_next_file: Option<PathBuf>,
    /// Certificates (PEM) that members' API certificates are checked
    /// against when this node forwards a request to them over HTTPS
    /// [default: the public roots].
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Linear memory one agent instance may grow to [default: 10MB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub agent_memory_max: Option<u64>,
    /// WebAssembly stack of a handler call, also charged per agent [default: 1MB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub agent_stack_max: Option<u64>,
    /// Memory charged per agent instance beyond heap and stack [default: 2MB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub agent_overhead: Option<u64>,
    /// Memory the node may plan for (ADR-0017 formula) [default: the machine's memory].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub memory_budget: Option<u64>,
    /// Agent instances the node may hold [default: 10000].
    #[arg(long)]
    pub max_agents: Option<usize>,
    /// Table elements one agent may have [default: 10000].
    #[arg(long)]
    pub agent_table_elements_max: Option<u32>,
    /// CPU one handler call may use, in ms of metered work [default: 10].
    #[arg(long)]
    pub execution_time_slice_ms: Option<u64>,
    /// State one agent instance may hold, keys and values [default: 64MiB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub agent_state_max: Option<u64>,
    /// Free disk space below which agents' state writes are refused [default: 1GiB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub disk_free_min: Option<u64>,
    /// Log lines one agent instance may write per second [default: 100].
    #[arg(long)]
    pub agent_log_lines_per_s: Option<u32>,
    /// Log bytes one agent instance may write per second [default: 64KiB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub agent_log_bytes_per_s: Option<u64>,
    /// Longest the API waits for a shard to answer, in ms; past it, 503 naming the shard [default: 5000].
    #[arg(long)]
    pub control_timeout_ms: Option<u64>,
    /// On SIGTERM, how long the shards may take to finish the messages they hold before the rest are failed back (`10s`, `500ms`) [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_opt")]
    pub drain_timeout: Option<Duration>,
    /// When a shard's commit is durable: `normal` (against a killed process; the WAL is synced at checkpoints) or `full` (against a power loss too; the WAL is synced at every commit, see docs/BENCHMARKS.md for the cost) [default: normal].
    #[arg(long, value_parser = ["normal", "full"])]
    pub sqlite_synchronous: Option<String>,
    /// Keep compiled modules in <data-dir>/modules, so a restart does not compile them again: on or off [default: on].
    #[arg(long, value_parser = ["on", "off"])]
    pub module_cache: Option<String>,
    /// Most bytes the module cache holds; past it the entries used least recently go [default: 2GiB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub module_cache_max: Option<u64>,
    /// Messages each agent instance's mailbox holds [default: 1024].
    #[arg(long)]
    pub mailbox_messages_max: Option<usize>,
    /// Messages queued in all mailboxes of the node [default: 1000000].
    #[arg(long)]
    pub max_message_queue_depth: Option<usize>,
    /// Messages in transit between shards [default: 100000].
    #[arg(long)]
    pub max_concurrent_messages: Option<usize>,
    /// Per-agent series on /metrics and in `caxton top --agents`: `off`, or
    /// the most instances that get them, node-wide (the first made on each
    /// shard, shared evenly); 5 series each [default: 1000].
    #[arg(long)]
    pub metrics_per_agent: Option<String>,
    /// Open API connections; the next one gets 503 and is closed [default: 10000].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Longest a REST client may take to send a request's headers, in ms [default: 10000].
    #[arg(long)]
    pub api_header_timeout_ms: Option<u64>,
    /// Longest a REST connection may sit idle between requests, in ms [default: 30000].
    #[arg(long)]
    pub api_idle_timeout_ms: Option<u64>,
    /// A host name the API answers to besides its address (repeatable; the
    /// Host header is checked against DNS rebinding).
    #[arg(long = "api-host")]
    #[serde(default, rename = "api_host")]
    pub api_hosts: Vec<String>,
    /// Longest a wire client may take to send its hello, in ms [default: 5000].
    #[arg(long)]
    pub wire_hello_timeout_ms: Option<u64>,
    /// Open wire connections; the next one is refused [default: 256].
    #[arg(long)]
    pub wire_connections_max: Option<usize>,
    /// Message memory of the node: every queue holding messages has a share
    /// of it (ADR-0017 message_buffer_size) [default: 500MB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub message_buffer_size: Option<u64>,
    /// Shortest time an idle shard polls its queues before it parks, in µs [default: 100].
    #[arg(long)]
    pub spin_before_park_us: Option<u64>,
    /// Longest idle polling, reached under steady traffic, in µs; 0 keeps the spin fixed [default: 2000].
    #[arg(long)]
    pub spin_before_park_max_us: Option<u64>,
    /// Window of the p99 alert, in ms [default: 10000].
    #[arg(long)]
    pub alert_window_ms: Option<u64>,
    /// How long a keyed agent's activation stays with no message before it
    /// is passivated (its state stays on disk), e.g. 2m, 30s [default: 2m].
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_opt")]
    pub keyed_idle: Option<Duration>,
    /// Live keyed activations on the node, split evenly over its shards;
    /// past it the least recently used are passivated [default: 10000].
    #[arg(long)]
    pub keyed_active_max: Option<usize>,
    /// SQLite page cache per shard [default: 50MB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub sqlite_page_cache: Option<u64>,
    /// Prepared statements cached per shard connection [default: 100].
    #[arg(long)]
    pub sqlite_statement_cache: Option<usize>,
    /// Interval between WAL checkpoints (off the shards), in ms [default: 100].
    #[arg(long)]
    pub wal_checkpoint_interval_ms: Option<u64>,
    /// WAL size limit per shard [default: 100MB].
    #[arg(long, value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub wal_size_max: Option<u64>,
    /// Log format: human or json [default: human].
    #[arg(long)]
    pub log_format: Option<String>,
    /// Export trace spans over OTLP (HTTP, protobuf) to this collector, e.g.
    /// `http://127.0.0.1:4318` (`/v1/traces` is added unless the path ends
    /// with it) [default: off].
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Fraction of traces exported, decided by trace id (the same on every
    /// node), 0 to 1 [default: 0.01].
    #[arg(long)]
    pub otlp_sampling_ratio: Option<f64>,
    /// The tools agents may be granted: `[tools.NAME]` sections of the
    /// config file only (`config::tools`).
    #[arg(skip)]
    #[serde(default)]
    pub tools: std::collections::BTreeMap<String, tools::ToolSection>,
}

pub(super) fn read_file(path: &Path) -> Result<ServeArgs, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
}
