//! `GET /metrics`: the ADR-0017 metrics in the Prometheus text format
//! (version 0.0.4), per shard and per agent instance.
//!
//! Latencies are histograms in seconds with cumulative buckets
//! ([`LATENCY_BUCKETS_SECONDS`], exact `_sum` and `_count`), so that
//! `histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))` gives a
//! node-wide or cluster-wide p99; counters end in `_total`; sizes are bytes.
//! Network bandwidth is exposed as byte counters (`rate()` gives the
//! bandwidth), the Prometheus way of keeping a gauge that cannot miss bytes.

use std::fmt::Write;

use caxton_shards::metrics::Latency;
use caxton_shards::ShardStats;

/// Figures of the node process itself.
pub struct NodeFigures {
    pub resident_bytes: u64,
    pub cpu_seconds: f64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    pub api_received_bytes: u64,
    pub api_sent_bytes: u64,
    pub agents: usize,
    pub undeliverable_api: u64,
    pub undeliverable_wire: u64,
    pub wire_received_bytes: u64,
    pub wire_sent_bytes: u64,
    /// Listener bounds: API connections closed by their time bounds,
    /// requests refused as coming from a web page, wire connections refused.
    pub api_closed_header_timeout: u64,
    pub api_closed_idle_timeout: u64,
    /// Connections closed before their first request for want of a pending
    /// place, and for want of one for their source.
    pub api_closed_pending: u64,
    pub api_closed_pending_per_source: u64,
    pub api_refused_browser: u64,
    /// TLS handshakes that failed (a client without TLS, or with bad TLS).
    pub api_tls_refused: u64,
    pub wire_refused: u64,
    /// The runtime outbox (messages to REST callers and wire clients): its
    /// bytes, its bound, and sends refused for lack of room.
    pub runtime_outbox_bytes: u64,
    pub wire_outbox_bytes: u64,
    pub runtime_outbox_refused: u64,
    /// The message budget (`--message-buffer-size`).
    pub message_budget: caxton_shards::limits::MessageBudget,
    /// Each shard: stalled (no tick finished for a while, not parked)?
    /// A stalled shard is not asked: its other series are absent.
    pub shards_stalled: Vec<bool>,
    /// Free space on the data directory's file system, and its floor
    /// (`--disk-free-min`).
    pub disk_free_bytes: u64,
    pub disk_free_min_bytes: u64,
    /// With `--otlp-endpoint`: spans exported, spans whose export failed,
    /// and failed export requests.
    pub traces: Option<(u64, u64, u64)>,
    /// In a cluster: members by state, and gossip traffic.
    pub cluster: Option<ClusterFigures>,
}

pub struct ClusterFigures {
    pub alive: usize,
    pub suspect: usize,
    pub down: usize,
    /// Every other member this node knows, by cluster address, and whether
    /// it is up (alive or suspect) as this node sees it.
    pub members: Vec<(String, bool)>,
    pub gossip: caxton_cluster::membership::GossipStats,
    pub refused_oversized: u64,
    /// Cluster keys held (1, or 2 during a rotation), and whether the next
    /// one is sent with.
    pub keys_held: usize,
    pub key_sending_next: bool,
    /// REST sends and deploys refused because the node was down.
    pub node_unavailable: u64,
}

impl NodeFigures {
    /// Reads resident memory and CPU time of this process from /proc.
    pub fn read_process() -> (u64, f64) {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let rss = std::fs::read_to_string("/proc/self/statm").ok().and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok()).unwrap_or(0) * page;
        // Fields 14 and 15 of /proc/self/stat, after the parenthesised name.
        let cpu = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
            })
            .unwrap_or(0.0);
        (rss, cpu)
    }

    /// When this process started, in seconds since the Unix epoch: field
    /// 22 of /proc/self/stat (clock ticks after boot) and /proc/stat's
    /// `btime`, as Prometheus' process collector reads it.
    pub fn start_time_seconds() -> f64 {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let after_boot = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| s.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse::<f64>().ok())
            .map(|t| t / ticks);
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok()));
        match (boot, after_boot) {
            (Some(b), Some(a)) => b + a,
            _ => 0.0,
        }
    }
}

/// Upper bounds of the latency buckets, in seconds: around ADR-0017's
/// targets (routing p50 100 µs and p99 1 ms, processing p50 1 ms and p99
/// 10 ms, remote routing p50 5 ms and p99 50 ms), each of which is a bound,
/// so an alert on a target reads one bucket. The shards' histograms hold
/// values within 1% (`caxton_shards::metrics`); a value is counted in a
/// bucket by the lowest value its HDR bucket stands for.
pub const LATENCY_BUCKETS_SECONDS: [f64; 21] = [
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
];

/// Cumulative counts of `l` at each of [`LATENCY_BUCKETS_SECONDS`], then
/// the total (`+Inf`): one pass over the recorded values.
pub fn cumulative_buckets(l: &Latency) -> [u64; LATENCY_BUCKETS_SECONDS.len() + 1] {
    let mut counts = [0u64; LATENCY_BUCKETS_SECONDS.len() + 1];
    for v in l.histogram.iter_recorded() {
        let ns = l.histogram.lowest_equivalent(v.value_iterated_to());
        let at = LATENCY_BUCKETS_SECONDS.iter().position(|&b| ns as f64 <= b * 1e9).unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        counts[at] += v.count_at_value();
    }
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    debug_assert_eq!(counts[LATENCY_BUCKETS_SECONDS.len()], l.count(), "+Inf holds every value");
    counts
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn histogram(&mut self, name: &str, labels: &str, l: &Latency) {
        let counts = cumulative_buckets(l);
        let bucket = format!("{name}_bucket");
        for (bound, n) in LATENCY_BUCKETS_SECONDS.iter().zip(counts) {
            self.sample(&bucket, &format!("{labels},le=\"{bound}\""), n);
        }
        self.sample(&bucket, &format!("{labels},le=\"+Inf\""), counts[LATENCY_BUCKETS_SECONDS.len()]);
        self.sample(&format!("{name}_sum"), labels, l.sum_ns as f64 / 1e9);
        self.sample(&format!("{name}_count"), labels, l.count());
    }
}

/// A shard's per-instance figures (every report `/metrics` asks for has
/// them; a missing one reads as none).
fn figures(s: &ShardStats) -> &caxton_shards::InstanceFigures {
    static NONE: std::sync::OnceLock<caxton_shards::InstanceFigures> = std::sync::OnceLock::new();
    s.per_instance.as_ref().unwrap_or_else(|| NONE.get_or_init(Default::default))
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One metric family with one sample per shard or per instance, read off
/// its stats.
struct Family<T> {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    read: fn(&T) -> u64,
}

const fn family<T>(name: &'static str, kind: &'static str, help: &'static str, read: fn(&T) -> u64) -> Family<T> {
    Family { name, kind, help, read }
}

/// A latency family: its paths (label `path`, or none) and their histograms.
type LatencyPaths = fn(&ShardStats) -> Vec<(&'static str, &Latency)>;

pub fn render(shards: &[ShardStats], node: &NodeFigures) -> String {
    let mut o = Out(String::with_capacity(16 * 1024));
    let latency: [(&str, &str, LatencyPaths); 3] = [
        ("caxton_routing_latency_seconds", "Time from an agent's send to the start of the receiving handler.", |s| {
            use caxton_shards::envelope::RoutePath;
            vec![
                (RoutePath::Local.name(), &s.latencies.routing_local),
                (RoutePath::Remote.name(), &s.latencies.routing_remote),
                (RoutePath::Node.name(), &s.latencies.routing_node),
            ]
        }),
        ("caxton_processing_latency_seconds", "Time from dequeue to the handler's return.", |s| vec![("", &s.latencies.processing)]),
        ("caxton_end_to_end_latency_seconds", "Time from an agent's send to the receiving handler's return.", |s| vec![("", &s.latencies.end_to_end)]),
    ];
    for (name, help, pick) in latency {
        o.family(name, "histogram", help);
        for s in shards {
            for (path, l) in pick(s) {
                let labels = if path.is_empty() { format!("shard=\"{}\"", s.shard) } else { format!("shard=\"{}\",path=\"{path}\"", s.shard) };
                o.histogram(name, &labels, l);
            }
        }
    }
    let per_shard: [Family<ShardStats>; 25] = [
        family("caxton_link_queued_messages", "gauge", "Messages waiting for other nodes: queued, being written, or unacknowledged.", |s| s.link_queued as u64),
        family("caxton_link_inbound_messages", "gauge", "Messages from other nodes waiting for room in a mailbox.", |s| s.link_inbound as u64),
        family("caxton_link_resent_total", "counter", "Messages sent again to a live node after their connection failed unacknowledged.", |s| s.links.resent),
        family("caxton_messages_routed_node_total", "counter", "Messages sent to another node over a link.", |s| s.routed_node),
        family("caxton_messages_received_node_total", "counter", "Messages received from another node over a link.", |s| s.received_node),
        family("caxton_link_connects_total", "counter", "Outbound link connections opened (handshake passed).", |s| s.links.connects),
        family("caxton_link_connect_failures_total", "counter", "Outbound link connections that failed to open (retried while the node is alive).", |s| {
            s.links.connect_failures
        }),
        family("caxton_link_connections_open", "gauge", "Inbound link connections open on the shard.", |s| s.links.open_inbound as u64),
        family("caxton_timeout_errors_total", "counter", "Handler calls stopped at their execution time slice; the instance was recreated.", |s| s.timeouts),
        family("caxton_messages_processed_total", "counter", "Messages handed to agent handlers.", |s| s.handled),
        family("caxton_agent_errors_total", "counter", "Handler calls that returned non-zero.", |s| s.errors),
        family("caxton_agent_crashes_total", "counter", "Handler calls that trapped; the instance was recreated.", |s| s.crashes),
        family(
            "caxton_agent_restart_failures_total",
            "counter",
            "Instances that could not be made again when a message came for them (the message failed back).",
            |s| s.restart_failures,
        ),
        family("caxton_messages_routed_local_total", "counter", "Messages routed to an agent on the same shard.", |s| s.routed_local),
        family("caxton_messages_routed_remote_total", "counter", "Messages sent to another shard.", |s| s.routed_remote),
        family("caxton_messages_received_remote_total", "counter", "Messages received from another shard.", |s| s.received_remote),
        family("caxton_shard_wakeups_total", "counter", "Times a parked shard was woken by its doorbell.", |s| s.wakeups),
        family("caxton_routing_busy_total", "counter", "Sends or deliveries refused because the destination had no room.", |s| s.busy),
        family("caxton_failure_notices_dropped_total", "counter", "Failure notices dropped: over the pending bound, or their addressee gone.", |s| {
            s.notices_dropped
        }),
        family("caxton_timers_scheduled", "gauge", "Agent timers waiting to fire on the shard.", |s| s.timers_scheduled as u64),
        family("caxton_agent_restarts_total", "counter", "Crashed instances made anew by their restart policy, at once or after a backoff.", |s| s.restarts),
        family("caxton_agent_quarantines_total", "counter", "Instances quarantined after crashing over and over.", |s| s.quarantines),
        family("caxton_agents_active", "gauge", "Agent instances running on the shard.", |s| s.instances as u64),
        family("caxton_queue_depth_messages", "gauge", "Messages waiting in the shard's mailboxes.", |s| s.queued_messages as u64),
        family("caxton_agent_memory_bytes", "gauge", "Linear memory of the shard's agent instances.", |s| figures(s).memory_bytes),
    ];
    for f in per_shard {
        o.family(f.name, f.kind, f.help);
        for s in shards {
            o.sample(f.name, &format!("shard=\"{}\"", s.shard), (f.read)(s));
        }
    }
    o.family("caxton_routing_errors_total", "counter", "Sends refused by the router, by kind.");
    for s in shards {
        o.sample("caxton_routing_errors_total", &format!("shard=\"{}\",kind=\"busy\"", s.shard), s.busy);
        o.sample("caxton_routing_errors_total", &format!("shard=\"{}\",kind=\"unknown_receiver\"", s.shard), s.not_found);
    }
    o.family("caxton_messages_dropped_total", "counter", "Messages not delivered (dead letters), by reason.");
    for s in shards {
        for (reason, n) in &s.dead_letters {
            o.sample("caxton_messages_dropped_total", &format!("shard=\"{}\",reason=\"{reason}\"", s.shard), n);
        }
    }
    o.family("caxton_agent_instances", "gauge", "Agent instances by standing: running, backing_off (held after crashes), quarantined.");
    for s in shards {
        let f = figures(s);
        let running = s.instances - f.backing_off - f.quarantined;
        for (standing, n) in [("running", running), ("backing_off", f.backing_off), ("quarantined", f.quarantined)] {
            o.sample("caxton_agent_instances", &format!("shard=\"{}\",standing=\"{standing}\"", s.shard), n as u64);
        }
    }
    o.family("caxton_keyed_active", "gauge", "Live activations of a keyed agent (each an instance in memory), by shard.");
    for s in shards {
        for (agent, c) in &s.keyed {
            o.sample("caxton_keyed_active", &format!("shard=\"{}\",agent=\"{}\"", s.shard, label_value(agent)), c.active);
        }
    }
    o.family("caxton_keyed_activations_total", "counter", "Activations of a keyed agent's keys (a message or a timer for a passive key).");
    for s in shards {
        for (agent, c) in &s.keyed {
            o.sample("caxton_keyed_activations_total", &format!("shard=\"{}\",agent=\"{}\"", s.shard, label_value(agent)), c.activations);
        }
    }
    o.family("caxton_keyed_passivations_total", "counter", "Activations dropped, by cause: idle (--keyed-idle), cap (--keyed-active-max), deleted.");
    for s in shards {
        for (agent, c) in &s.keyed {
            for ((_, cause), n) in caxton_shards::router::keyed::Passivation::ALL.iter().zip(c.passivations) {
                o.sample("caxton_keyed_passivations_total", &format!("shard=\"{}\",agent=\"{}\",cause=\"{cause}\"", s.shard, label_value(agent)), n);
            }
        }
    }
    o.family(
        "caxton_keyed_activation_seconds",
        "histogram",
        "Time from the dequeue of a keyed activation's first message to the start of its handler: instantiation and caxton_init.",
    );
    for s in shards {
        o.histogram("caxton_keyed_activation_seconds", &format!("shard=\"{}\"", s.shard), &s.latencies.activation);
    }
    o.family("caxton_failure_notices_total", "counter", "Failure notices sent from @node to the senders of messages that could not be handled, by reason.");
    for s in shards {
        for (reason, n) in &s.notices_sent {
            o.sample("caxton_failure_notices_total", &format!("shard=\"{}\",reason=\"{reason}\"", s.shard), n);
        }
    }
    o.family("caxton_shard_cluster_nodes", "gauge", "Other nodes as each shard sees them (membership reaches every shard), by state.");
    for s in shards {
        for (state, n) in ["alive", "suspect", "down"].iter().zip(s.nodes) {
            o.sample("caxton_shard_cluster_nodes", &format!("shard=\"{}\",state=\"{state}\"", s.shard), n);
        }
    }
    o.family("caxton_link_refused_total", "counter", "Inbound link connections refused or closed, by reason.");
    for s in shards {
        for (reason, n) in [
            ("bad_key", s.links.refused_bad_key),
            ("handshake", s.links.refused_handshake),
            ("pending", s.links.refused_pending),
            ("pending_per_source", s.links.refused_pending_per_source),
            ("too_many", s.links.refused_too_many),
            ("malformed", s.links.closed_malformed),
            ("tampered", s.links.closed_tampered),
            ("retired_key", s.links.closed_retired_key),
            ("bad_ack", s.links.closed_bad_ack),
        ] {
            o.sample("caxton_link_refused_total", &format!("shard=\"{}\",reason=\"{reason}\"", s.shard), n);
        }
    }
    o.family("caxton_abi_refusals_total", "counter", "Host calls refused for bad arguments, by result code.");
    for s in shards {
        for (code, n) in [("invalid", s.abi_invalid), ("too_large", s.abi_too_large), ("over_limit", s.abi_over_limit)] {
            o.sample("caxton_abi_refusals_total", &format!("shard=\"{}\",code=\"{code}\"", s.shard), n);
        }
    }
    let per_instance: [Family<caxton_shards::InstanceStats>; 5] = [
        family("caxton_agent_instance_messages_total", "counter", "Messages handled by one agent instance.", |i| i.handled),
        family("caxton_agent_instance_errors_total", "counter", "Handler errors of one agent instance.", |i| i.errors),
        family("caxton_agent_instance_crashes_total", "counter", "Traps of one agent instance.", |i| i.crashes),
        family("caxton_agent_state_bytes", "gauge", "Bytes of one agent instance's state, keys and values (bounded by --agent-state-max).", |i| i.state_bytes),
        family("caxton_agent_log_dropped_total", "counter", "Log lines of one agent instance dropped past its rate limit.", |i| i.log_dropped),
    ];
    o.family(
        "caxton_metrics_instances_omitted",
        "gauge",
        "Agent instances whose own series this page leaves out (past --metrics-per-agent, 1000 by default; GET /v1/agents/NAME has them).",
    );
    o.sample("caxton_metrics_instances_omitted", "", shards.iter().map(|s| figures(s).omitted as u64).sum::<u64>());
    for f in per_instance {
        o.family(f.name, f.kind, f.help);
        for s in shards {
            for i in &figures(s).listed {
                o.sample(f.name, &format!("agent=\"{}\",agent_instance=\"{}\",shard=\"{}\"", label_value(&i.name), i.instance, s.shard), (f.read)(i));
            }
        }
    }
    o.family(
        "caxton_runtime_undeliverable_total",
        "counter",
        "Messages to runtime names nobody took (a REST caller that stopped waiting, a closed or full wire connection).",
    );
    o.sample("caxton_runtime_undeliverable_total", "kind=\"api\"", node.undeliverable_api);
    o.sample("caxton_runtime_undeliverable_total", "kind=\"wire\"", node.undeliverable_wire);
    o.family("caxton_message_bytes", "gauge", "Bytes of messages the node holds, by queue (each bounded by its share of --message-buffer-size).");
    let link = |f: fn(&ShardStats) -> u64| shards.iter().map(f).sum::<u64>();
    let held = |f: fn(&caxton_shards::router::MessageBytes) -> usize| shards.iter().map(|s| f(&s.message_bytes) as u64).sum::<u64>();
    for (queue, n) in [
        ("mailboxes", held(|b| b.mailboxes)),
        ("mesh", held(|b| b.mesh)),
        ("link_outbox", held(|b| b.link_outbox)),
        ("link_inbox", held(|b| b.link_inbox)),
        ("runtime_outbox", node.runtime_outbox_bytes),
        ("wire_outbox", node.wire_outbox_bytes),
    ] {
        o.sample("caxton_message_bytes", &format!("queue=\"{queue}\""), n);
    }
    o.family("caxton_message_budget_bytes", "gauge", "Each queue's share of --message-buffer-size, node-wide.");
    let b = &node.message_budget;
    for (queue, n) in [
        ("mailboxes", b.mailboxes),
        ("mesh", b.mesh),
        ("link_outbox", b.link_outbox),
        ("link_inbox", b.link_inbox),
        ("runtime_outbox", b.runtime_outbox),
        ("wire_outbox", b.wire_outbox),
        ("wire_ingress", b.wire_ingress),
    ] {
        o.sample("caxton_message_budget_bytes", &format!("queue=\"{queue}\""), n);
    }
    o.family(
        "caxton_message_budget_refusals_total",
        "counter",
        "Sends refused because a queue was at its share of the message budget in bytes (they get -2, 429 or TCP back-pressure).",
    );
    o.sample("caxton_message_budget_refusals_total", "queue=\"shard\"", link(|s| s.busy_bytes));
    o.sample("caxton_message_budget_refusals_total", "queue=\"link_outbox\"", link(|s| s.links.busy_bytes));
    o.sample("caxton_message_budget_refusals_total", "queue=\"runtime_outbox\"", node.runtime_outbox_refused);
    o.family(
        "caxton_api_connections_closed_total",
        "counter",
        "REST connections closed by a time bound: header (no complete request head in time) or idle (keep-alive).",
    );
    o.sample("caxton_api_connections_closed_total", "reason=\"header_timeout\"", node.api_closed_header_timeout);
    o.sample("caxton_api_connections_closed_total", "reason=\"idle_timeout\"", node.api_closed_idle_timeout);
    o.sample("caxton_api_connections_closed_total", "reason=\"pending\"", node.api_closed_pending);
    o.sample("caxton_api_connections_closed_total", "reason=\"pending_per_source\"", node.api_closed_pending_per_source);
    o.family("caxton_api_refused_browser_total", "counter", "REST requests refused as a web page's: a foreign Host or Origin, or a POST that is not JSON.");
    o.sample("caxton_api_refused_browser_total", "", node.api_refused_browser);
    o.family(
        "caxton_api_tls_refused_total",
        "counter",
        "API connections whose TLS handshake failed (plain HTTP to an HTTPS API, an untrusted or broken client).",
    );
    o.sample("caxton_api_tls_refused_total", "", node.api_tls_refused);
    o.family("caxton_wire_refused_total", "counter", "Wire connections refused: over --wire-connections-max, or a wrong or late hello.");
    o.sample("caxton_wire_refused_total", "", node.wire_refused);
    o.family("caxton_shard_stalled", "gauge", "1 when a shard has not finished a tick for ten execution slices while not parked.");
    for (shard, stalled) in node.shards_stalled.iter().enumerate() {
        o.sample("caxton_shard_stalled", &format!("shard=\"{shard}\""), *stalled as u8);
    }
    o.family(
        "caxton_state_writes_refused_total",
        "counter",
        "state_put calls refused: over the instance's --agent-state-max (quota) or below --disk-free-min (disk).",
    );
    for s in shards {
        o.sample("caxton_state_writes_refused_total", &format!("shard=\"{}\",reason=\"quota\"", s.shard), s.state_refused_quota);
        o.sample("caxton_state_writes_refused_total", &format!("shard=\"{}\",reason=\"disk\"", s.shard), s.state_refused_disk);
    }
    o.family("caxton_disk_free_bytes", "gauge", "Free space on the data directory's file system, as the disk floor last saw it.");
    o.sample("caxton_disk_free_bytes", "", node.disk_free_bytes);
    o.family("caxton_disk_free_min_bytes", "gauge", "The floor of free disk space (--disk-free-min): below it, agents' state writes are refused.");
    o.sample("caxton_disk_free_min_bytes", "", node.disk_free_min_bytes);
    o.family("caxton_agents_deployed", "gauge", "Agents deployed on the node.");
    o.sample("caxton_agents_deployed", "", node.agents);
    o.family("caxton_network_bytes_total", "counter", "Bytes the node received and sent: REST API bodies, and wire frames.");
    o.sample("caxton_network_bytes_total", "listener=\"api\",direction=\"received\"", node.api_received_bytes);
    o.sample("caxton_network_bytes_total", "listener=\"api\",direction=\"sent\"", node.api_sent_bytes);
    o.sample("caxton_network_bytes_total", "listener=\"wire\",direction=\"received\"", node.wire_received_bytes);
    o.sample("caxton_network_bytes_total", "listener=\"wire\",direction=\"sent\"", node.wire_sent_bytes);
    o.sample("caxton_network_bytes_total", "listener=\"link\",direction=\"received\"", link(|s| s.links.bytes_in));
    o.sample("caxton_network_bytes_total", "listener=\"link\",direction=\"sent\"", link(|s| s.links.bytes_out));
    if let Some(c) = &node.cluster {
        o.sample("caxton_network_bytes_total", "listener=\"gossip\",direction=\"received\"", c.gossip.bytes_in);
        o.sample("caxton_network_bytes_total", "listener=\"gossip\",direction=\"sent\"", c.gossip.bytes_out);
        o.family("caxton_cluster_members", "gauge", "Members of the cluster this node knows, by state (this node included, as alive).");
        for (state, n) in [("alive", c.alive), ("suspect", c.suspect), ("down", c.down)] {
            o.sample("caxton_cluster_members", &format!("state=\"{state}\""), n);
        }
        o.family(
            "caxton_cluster_member_up",
            "gauge",
            "Each other member this node knows, by its cluster address: 1 while alive or suspect, 0 once down (an alert takes the max over observers: down for every one).",
        );
        for (member, up) in &c.members {
            o.sample("caxton_cluster_member_up", &format!("member=\"{member}\""), u64::from(*up));
        }
        o.family("caxton_gossip_packets_total", "counter", "Gossip packets, by direction.");
        o.sample("caxton_gossip_packets_total", "direction=\"received\"", c.gossip.packets_in);
        o.sample("caxton_gossip_packets_total", "direction=\"sent\"", c.gossip.packets_out);
        o.family("caxton_gossip_refused_total", "counter", "Gossip packets dropped, by reason (bad_key: it did not open under a key this node holds).");
        o.sample("caxton_gossip_refused_total", "reason=\"bad_key\"", c.gossip.refused_bad_tag);
        o.sample("caxton_gossip_refused_total", "reason=\"malformed\"", c.gossip.refused_malformed);
        o.sample("caxton_gossip_refused_total", "reason=\"replay\"", c.gossip.refused_replay);
        o.sample("caxton_gossip_refused_total", "reason=\"wrong_destination\"", c.gossip.refused_wrong_destination);
        o.sample("caxton_gossip_refused_total", "reason=\"oversized\"", c.refused_oversized);
        o.family("caxton_cluster_keys_held", "gauge", "Cluster keys this node accepts: 1, or 2 during a key rotation.");
        o.sample("caxton_cluster_keys_held", "", c.keys_held);
        o.family(
            "caxton_cluster_key_sending_next",
            "gauge",
            "1 while a rotation sends with the next key (every member holds it) and the old one is still accepted.",
        );
        o.sample("caxton_cluster_key_sending_next", "", c.key_sending_next as u64);
        o.family(
            "caxton_cluster_key_rotation_steps_total",
            "counter",
            "Key rotation steps taken: switched (sending with the next key), reverted (a member lacks it: back to the current key), dropped (the old key refused).",
        );
        o.sample("caxton_cluster_key_rotation_steps_total", "step=\"switched\"", c.gossip.key_switches);
        o.sample("caxton_cluster_key_rotation_steps_total", "step=\"dropped\"", c.gossip.key_drops);
        o.sample("caxton_cluster_key_rotation_steps_total", "step=\"reverted\"", c.gossip.key_reverts);
        o.family("caxton_node_unavailable_total", "counter", "REST requests refused (503) because the agent's node is down.");
        o.sample("caxton_node_unavailable_total", "", c.node_unavailable);
    }
    o.family("caxton_trace_spans_total", "counter", "Trace spans of sampled messages: queued for export, or dropped at a full queue (the shard never waits).");
    for s in shards {
        o.sample("caxton_trace_spans_total", &format!("shard=\"{}\",outcome=\"queued\"", s.shard), s.spans_queued);
        o.sample("caxton_trace_spans_total", &format!("shard=\"{}\",outcome=\"dropped\"", s.shard), s.spans_dropped);
    }
    // Zeros without --otlp-endpoint: the series exist on every node, so
    // an alert on them is never about a series that is not there.
    {
        let (exported, failed, failed_requests) = node.traces.unwrap_or_default();
        o.family(
            "caxton_trace_spans_exported_total",
            "counter",
            "Trace spans sent to the OTLP collector, by result (failed: the collector refused or did not answer; dropped).",
        );
        o.sample("caxton_trace_spans_exported_total", "result=\"ok\"", exported);
        o.sample("caxton_trace_spans_exported_total", "result=\"failed\"", failed);
        o.family("caxton_trace_export_failures_total", "counter", "OTLP export requests that failed.");
        o.sample("caxton_trace_export_failures_total", "", failed_requests);
    }
    o.family("process_resident_memory_bytes", "gauge", "Resident memory of the node process.");
    o.sample("process_resident_memory_bytes", "", node.resident_bytes);
    o.family("process_cpu_seconds_total", "counter", "CPU time of the node process, user and system.");
    o.sample("process_cpu_seconds_total", "", node.cpu_seconds);
    o.family("process_start_time_seconds", "gauge", "Start time of the node process since the Unix epoch, in seconds.");
    o.sample("process_start_time_seconds", "", node.start_time_seconds);
    o.family("caxton_build_info", "gauge", "The node's version and the commit it was built from; always 1.");
    o.sample("caxton_build_info", &format!("version=\"{}\",commit=\"{}\"", super::json::VERSION, super::json::COMMIT), 1);
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_a_target_is_its_own_bound() {
        let mut l = Latency::default();
        for ns in [50_000, 100_000, 100_000, 2_000_000, 20_000_000_000] {
            l.record(ns);
        }
        let c = cumulative_buckets(&l);
        let at = |s: f64| c[LATENCY_BUCKETS_SECONDS.iter().position(|&b| b == s).unwrap()];
        assert_eq!(at(0.000_05), 1);
        assert_eq!(at(0.000_1), 3, "values at a bound count in it (le)");
        assert_eq!(at(0.001), 3);
        assert_eq!(at(0.002_5), 4);
        assert_eq!(at(10.0), 4);
        assert_eq!(c[LATENCY_BUCKETS_SECONDS.len()], 5, "+Inf holds all");
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn an_empty_histogram_has_all_buckets_at_zero() {
        assert!(cumulative_buckets(&Latency::default()).iter().all(|&n| n == 0));
    }
}
