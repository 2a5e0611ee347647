//! `caxton serve` settings: flags, a TOML file (`--config`) with the same
//! keys (dashes become underscores), and defaults, in that order of
//! precedence. Sizes accept a unit: B, KiB, MiB, GiB (binary) or KB, MB, GB
//! (decimal); a bare number is bytes.

mod args;
mod cluster;
pub mod tools;
mod units;

use args::read_file;
pub use args::ServeArgs;
pub use cluster::ClusterConfig;
pub use units::{parse_duration, parse_size, Size};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use caxton_shards::agent::AgentLimits;
use caxton_shards::limits;
use caxton_shards::metrics::ALERT_WINDOW_MS;
use caxton_shards::shard::ShardTuning;
use caxton_shards::storage::StorageConfig;

use crate::admission::{self, MemoryLimits};
use crate::secret;
use caxton_shards::limits::MessageBudget;
use caxton_shards::router::NodeQueueLimits;

impl ServeArgs {
    /// Flags over the file over the defaults.
    pub fn resolve(self) -> Result<(ServeConfig, String), String> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => ServeArgs::default(),
        };
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                self.$field.clone().or(file.$field.clone()).unwrap_or_else(|| $default)
            };
        }
        let memory_max = pick!(agent_memory_max, limits::AGENT_MEMORY_BYTES_MAX as u64);
        let stack_max = pick!(agent_stack_max, limits::AGENT_STACK_BYTES_MAX as u64);
        let overhead = pick!(agent_overhead, admission::AGENT_OVERHEAD_BYTES);
        if memory_max < limits::WASM_PAGE_BYTES as u64 {
            return Err(format!("--agent-memory-max must be at least one WebAssembly page (64KiB), got {memory_max} bytes"));
        }
        if stack_max < 64 * 1024 {
            return Err(format!("--agent-stack-max must be at least 64KiB, got {stack_max} bytes"));
        }
        let agent = AgentLimits {
            memory_bytes_max: memory_max as usize,
            stack_bytes_max: stack_max as usize,
            table_elements_max: pick!(agent_table_elements_max, limits::AGENT_TABLE_ELEMENTS_MAX),
            execution_time_slice_ms: pick!(execution_time_slice_ms, limits::EXECUTION_TIME_SLICE_MS).max(1),
            meter_bulk: true,
            state_bytes_max: pick!(agent_state_max, limits::AGENT_STATE_BYTES_MAX),
            log: caxton_shards::agent::agent_log::LogLimits {
                lines_per_s: pick!(agent_log_lines_per_s, limits::AGENT_LOG_LINES_PER_S).max(1),
                bytes_per_s: pick!(agent_log_bytes_per_s, limits::AGENT_LOG_BYTES_PER_S as u64).clamp(limits::LOG_LINE_BYTES_MAX as u64, u32::MAX as u64)
                    as u32,
                burst_s: limits::AGENT_LOG_BURST_SECONDS,
            },
        };
        let budget_bytes = pick!(message_buffer_size, limits::MESSAGE_BUFFER_BYTES);
        let budget = limits::MessageBudget::split(budget_bytes)?;
        let defaults = ShardTuning::with_budget(&budget);
        let tuning = ShardTuning {
            spin_before_park: Duration::from_micros(pick!(spin_before_park_us, limits::SPIN_BEFORE_PARK_US)),
            spin_before_park_max: Duration::from_micros(pick!(spin_before_park_max_us, limits::SPIN_BEFORE_PARK_MAX_US)),
            alert_window_ms: pick!(alert_window_ms, ALERT_WINDOW_MS).max(1),
            queues: NodeQueueLimits {
                mailbox_messages_max: pick!(mailbox_messages_max, limits::MAILBOX_MESSAGES_MAX).max(1),
                queued_messages_max: pick!(max_message_queue_depth, limits::NODE_QUEUED_MESSAGES_MAX).max(1),
                in_flight_messages_max: pick!(max_concurrent_messages, limits::NODE_IN_FLIGHT_MESSAGES_MAX).max(1),
                ..defaults.queues
            },
            tick_time_budget: Duration::from_millis(agent.execution_time_slice_ms),
            keyed_idle: pick!(keyed_idle, Duration::from_millis(limits::KEYED_IDLE_MS)),
            keyed_active_max: pick!(keyed_active_max, limits::KEYED_ACTIVE_MAX).max(1),
            ..defaults
        };
        let memory = MemoryLimits {
            base_memory: admission::BASE_MEMORY_BYTES,
            agent_heap_size: memory_max,
            agent_stack_size: stack_max,
            per_agent_overhead: overhead,
            message_buffer_size: budget_bytes,
        };
        // Secrets: each from one place (`secret` rule 1).
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        // A next secret has no flag of its own: its value comes from the environment.
        let env = |name: &secret::SecretName| std::env::var(name.env).ok();
        let source = |name, given, file_flag: &Option<PathBuf>, in_file: &Option<PathBuf>| {
            secret::pick_source(name, given, file_flag.clone().or(in_file.clone()).as_deref(), credentials.as_deref())
        };
        let sources = secret::SecretSources {
            api_token: source(&secret::API_TOKEN, self.api_token.clone(), &self.api_token_file, &file.api_token_file)?,
            api_token_next: source(&secret::API_TOKEN_NEXT, env(&secret::API_TOKEN_NEXT), &self.api_token_next_file, &file.api_token_next_file)?,
            cluster_key: source(&secret::CLUSTER_KEY, self.cluster_key.clone(), &self.cluster_key_file, &file.cluster_key_file)?,
            cluster_key_next: source(&secret::CLUSTER_KEY_NEXT, env(&secret::CLUSTER_KEY_NEXT), &self.cluster_key_next_file, &file.cluster_key_next_file)?,
        };
        let (secrets, secret_warnings) = sources.read_all()?;
        let cluster = self.cluster(&file, secrets.cluster_key.as_deref(), secrets.cluster_key_next.as_deref())?;
        let tls = match (self.tls_cert.clone().or(file.tls_cert.clone()), self.tls_key.clone().or(file.tls_key.clone())) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => return Err("--tls-cert and --tls-key come together".into()),
        };
        let cores = self.cores.or(file.cores);
        check_cores(cores, &caxton_shards::executor::allowed_cpus())?;
        let config = ServeConfig {
            cores,
            data_dir: pick!(data_dir, PathBuf::from("caxton-data")),
            api: pick!(api, "127.0.0.1:7070".parse().unwrap()),
            api_tokens: secret::ApiTokens::new(secrets.api_token, secrets.api_token_next),
            secrets: sources,
            tls,
            tls_ca: self.tls_ca.clone().or(file.tls_ca.clone()),
            warnings: secret_warnings,
            wire: self.wire.or(file.wire),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            cluster,
            tuning,
            storage: StorageConfig {
                page_cache_kib: (pick!(sqlite_page_cache, limits::SQLITE_PAGE_CACHE_KIB as u64 * 1024) / 1024).max(1) as i64,
                statement_cache: pick!(sqlite_statement_cache, limits::SQLITE_STATEMENT_CACHE),
                checkpoint_interval_ms: pick!(wal_checkpoint_interval_ms, limits::WAL_CHECKPOINT_INTERVAL_MS).max(1),
                wal_size_bytes_max: pick!(wal_size_max, limits::WAL_SIZE_BYTES_MAX),
                synchronous_full: pick!(sqlite_synchronous, "normal".to_string()) == "full",
            },
            limits: agent,
            memory,
            memory_budget: pick!(memory_budget, admission::machine_memory_bytes()),
            max_agents: pick!(max_agents, admission::AGENTS_MAX),
            max_connections: pick!(max_connections, limits::API_CONNECTIONS_MAX).max(1),
            metrics_instances_max: match self.metrics_per_agent.clone().or(file.metrics_per_agent.clone()).as_deref() {
                None => limits::METRICS_INSTANCES_MAX,
                Some("off") => 0,
                Some(n) => n.parse().map_err(|_| format!("--metrics-per-agent is off or a number of instances, not {n:?}"))?,
            },
            disk_free_min: pick!(disk_free_min, limits::DISK_FREE_BYTES_MIN),
            control_timeout: Duration::from_millis(pick!(control_timeout_ms, limits::CONTROL_TIMEOUT_MS).max(1)),
            drain_timeout: pick!(drain_timeout, Duration::from_millis(limits::DRAIN_TIMEOUT_MS)),
            module_cache: pick!(module_cache, "on".to_string()) == "on",
            module_cache_max: pick!(module_cache_max, limits::MODULE_CACHE_BYTES_MAX),
            listeners: ListenerLimits {
                api_header_timeout: Duration::from_millis(pick!(api_header_timeout_ms, limits::API_HEADER_TIMEOUT_MS).max(1)),
                api_idle_timeout: Duration::from_millis(pick!(api_idle_timeout_ms, limits::API_IDLE_TIMEOUT_MS).max(1)),
                api_hosts: if self.api_hosts.is_empty() { file.api_hosts.clone() } else { self.api_hosts.clone() },
                wire_hello_timeout: Duration::from_millis(pick!(wire_hello_timeout_ms, limits::WIRE_HELLO_TIMEOUT_MS).max(1)),
                wire_connections_max: pick!(wire_connections_max, limits::WIRE_CONNECTIONS_MAX).max(1),
            },
            budget,
            traces: None,
            tools: tools::resolve(&file.tools)?,
        };
        let log_format = pick!(log_format, "human".to_string());
        let traces = match self.otlp_endpoint.clone().or(file.otlp_endpoint.clone()) {
            None => None,
            Some(endpoint) => {
                let ratio = pick!(otlp_sampling_ratio, crate::otlp::SAMPLING_RATIO_DEFAULT);
                Some(crate::otlp::TraceConfig::new(&endpoint, ratio)?)
            }
        };
        if log_format != "human" && log_format != "json" {
            return Err(format!("--log-format is human or json, not {log_format:?}"));
        }
        Ok((ServeConfig { traces, ..config }, log_format))
    }
}

/// Everything `caxton serve` runs with; `config::ServeArgs::resolve` fills
/// it from flags, the config file and the defaults.
#[derive(Debug)]
pub struct ServeConfig {
    pub cores: Option<usize>,
    pub data_dir: PathBuf,
    pub api: SocketAddr,
    /// The tokens the API and wire listeners accept (none: no token).
    pub api_tokens: secret::ApiTokens,
    /// Where the secrets came from, to read them again on SIGHUP.
    pub secrets: secret::SecretSources,
    /// The wire listener (`wire.rs`), if any.
    pub wire: Option<SocketAddr>,
    /// The metrics listener (`--metrics-listen`), if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Cluster membership and links (`--listen`), if any.
    pub cluster: Option<crate::config::ClusterConfig>,
    pub tuning: ShardTuning,
    pub storage: StorageConfig,
    pub limits: AgentLimits,
    pub memory: MemoryLimits,
    pub memory_budget: u64,
    pub max_agents: usize,
    pub max_connections: usize,
    /// `--metrics-per-agent`: instances with series of their own (0: off).
    pub metrics_instances_max: usize,
    /// `--disk-free-min`: the free-space floor for agents' state writes.
    pub disk_free_min: u64,
    /// `--control-timeout-ms`: how long the API waits for a shard.
    pub control_timeout: Duration,
    /// `--drain-timeout`: how long a SIGTERM lets the shards finish.
    pub drain_timeout: Duration,
    /// `--module-cache`: keep compiled modules on disk.
    pub module_cache: bool,
    /// `--module-cache-max`: the bytes it may hold.
    pub module_cache_max: u64,
    /// Time and count bounds of the API and wire listeners.
    pub listeners: ListenerLimits,
    /// The message budget (`--message-buffer-size`), split by queue.
    pub budget: MessageBudget,
    /// `--otlp-endpoint` and `--otlp-sampling-ratio`: trace export, if on.
    pub traces: Option<crate::otlp::TraceConfig>,
    /// The `[tools.NAME]` sections, checked (`config::tools`).
    pub tools: Vec<tools::ToolSpec>,
    /// `--tls-cert` and `--tls-key`: the API and wire listeners speak TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--tls-ca`: what members' API certificates are checked against.
    pub tls_ca: Option<PathBuf>,
    /// What resolving found worth a warning (secret files others may read),
    /// logged once logging is up.
    pub warnings: Vec<String>,
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
            api_header_timeout: Duration::from_millis(limits::API_HEADER_TIMEOUT_MS),
            api_idle_timeout: Duration::from_millis(limits::API_IDLE_TIMEOUT_MS),
            api_hosts: Vec::new(),
            wire_hello_timeout: Duration::from_millis(limits::WIRE_HELLO_TIMEOUT_MS),
            wire_connections_max: limits::WIRE_CONNECTIONS_MAX,
        }
    }
}

/// `--cores` against the CPUs this process may run on (its affinity, as
/// systemd's `CPUAffinity=` or `taskset` set it): checked when the
/// configuration is resolved, so that `--check-config` refuses what `serve`
/// would, and a unit does not loop on restarts (issue 29).
pub fn check_cores(cores: Option<usize>, allowed: &[usize]) -> Result<(), String> {
    let most = allowed.len().min(caxton_shards::limits::SHARDS_MAX);
    match cores {
        Some(n) if n == 0 || n > most => Err(format!(
            "--cores {n}: this process may run on {} CPUs ({allowed:?}, its affinity), and a node has at most {} shards; choose 1 to {most}, or leave --cores out to use them all",
            allowed.len(),
            caxton_shards::limits::SHARDS_MAX
        )),
        _ => Ok(()),
    }
}

/// What `--check-config` prints: the settings that shape a node, never a
/// secret.
pub fn summary(c: &ServeConfig) -> String {
    format!(
        "config ok: cores={} data_dir={} api={} wire={} cluster={} drain_timeout={:?} module_cache={} api_token={} traces={}",
        c.cores.map_or("all".to_string(), |n| n.to_string()),
        c.data_dir.display(),
        c.api,
        c.wire.map_or("off".to_string(), |w| w.to_string()),
        c.cluster.as_ref().map_or("off".to_string(), |k| k.listen.to_string()),
        c.drain_timeout,
        if c.module_cache { "on" } else { "off" },
        if c.api_tokens.required() { "set" } else { "none" },
        c.traces.as_ref().map_or("off".to_string(), |t| format!("{} (ratio {})", t.endpoint, t.sampling_ratio)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_config_is_read_whole() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/caxton.toml");
        let args = ServeArgs { config: Some(path), ..ServeArgs::default() };
        let (c, _) = args.resolve().unwrap();
        assert_eq!((c.cores, c.drain_timeout, c.module_cache), (Some(2), Duration::from_secs(10), true));
        assert_eq!(c.data_dir, std::path::PathBuf::from("/var/lib/caxton"));
        assert!(summary(&c).contains("api_token=none"));
        assert_eq!(parse_duration("700ms").unwrap(), Duration::from_millis(700));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("10 parsecs").is_err());
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("10 parsecs").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caxton.toml");
        std::fs::write(&path, "agent_memory_max = \"2MiB\"\nmax_agents = 50\nagent_overhead = 300000\nmailbox_messages_max = 7\n").unwrap();
        let args = ServeArgs { config: Some(path.clone()), max_agents: Some(60), ..Default::default() };
        let (c, _) = args.resolve().unwrap();
        assert_eq!(c.limits.memory_bytes_max, 2 << 20);
        assert_eq!(c.max_agents, 60);
        assert_eq!(c.memory.per_agent_overhead, 300_000);
        assert_eq!(c.tuning.queues.mailbox_messages_max, 7);
        assert_eq!(c.limits.stack_bytes_max, limits::AGENT_STACK_BYTES_MAX);
        assert_eq!(c.storage.page_cache_kib, limits::SQLITE_PAGE_CACHE_KIB, "ADR-0017's 50 MB by default");
        // The checkpointer's interval is ours (100 ms), not ADR-0017's 10 s:
        // limits.rs says why.
        assert_eq!((c.storage.statement_cache, c.storage.checkpoint_interval_ms), (100, limits::WAL_CHECKPOINT_INTERVAL_MS));
        assert_eq!(limits::WAL_CHECKPOINT_INTERVAL_MS, 100);
        let err = ServeArgs { listen: Some("127.0.0.1:7946".parse().unwrap()), ..Default::default() }.resolve().unwrap_err();
        assert!(err.contains("CAXTON_CLUSTER_KEY"), "{err}");
        let err = ServeArgs { join: vec!["127.0.0.1:7946".into()], ..Default::default() }.resolve().unwrap_err();
        assert!(err.contains("--listen"), "{err}");
        let args = ServeArgs {
            listen: Some("127.0.0.1:7946".parse().unwrap()),
            cluster_key: Some("00112233445566778899aabbccddeeff".into()),
            join: vec!["127.0.0.2:7946".into()],
            ..Default::default()
        };
        let cluster = args.resolve().unwrap().0.cluster.unwrap();
        assert_eq!((cluster.gossip.interval_ms, cluster.gossip.fanout, cluster.gossip.packet_bytes_max), (200, 3, 1400));
        std::fs::write(&path, "agent_memroy_max = 1").unwrap();
        let err = ServeArgs { config: Some(path), ..Default::default() }.resolve().unwrap_err();
        assert!(err.contains("agent_memroy_max"), "{err}");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Lines of a config file: known keys with values of any type, and
        /// unknown keys.
        fn line() -> impl Strategy<Value = String> {
            let key = prop_oneof![
                Just("agent_memory_max"),
                Just("max_agents"),
                Just("cores"),
                Just("api"),
                Just("join"),
                Just("message_buffer_size"),
                Just("api_header_timeout_ms"),
                Just("wire_connections_max"),
                Just("log_format"),
                Just("api_host"),
                Just("no_such_key"),
            ];
            let value = prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                "[a-zA-Z0-9 .:]{0,20}".prop_map(|s| format!("{s:?}")),
                Just("[1, 2]".to_string()),
                Just("true".to_string()),
                "[^\n]{0,20}",
            ];
            (key, value).prop_map(|(k, v)| format!("{k} = {v}"))
        }

        proptest! {
            #![proptest_config(caxton_cluster::fuzz::config(512))]

            /// Any config text: settings or an error naming why, never a panic.
            #[test]
            fn any_config_file_resolves_or_is_refused(lines in prop::collection::vec(line(), 0..6), raw in "[^\u{0}]{0,80}") {
                let dir = tempfile::tempdir().unwrap();
                for text in [lines.join("\n"), raw] {
                    let path = dir.path().join("caxton.toml");
                    std::fs::write(&path, &text).unwrap();
                    if let Err(e) = (ServeArgs { config: Some(path), ..Default::default() }).resolve() {
                        prop_assert!(!e.is_empty());
                    }
                }
            }
        }
    }
}
