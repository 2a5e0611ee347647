//! The cost of a tool call (issue 28): an agent's call through a real
//! `caxton serve` to a local MCP server, beside a direct `rmcp` client
//! calling the same server program in the same run.
//!
//! - **Round trip**: the tool-relay agent's bench mode times each call from
//!   its `send` to the start of the handler that receives the answer (the
//!   agent's own clock), one call at a time. The direct client times
//!   `peer.call_tool` the same way. Both reach a fresh copy of
//!   tests/tools/mcp_server.py on stdio (Python's `mcp` package), calling
//!   `add`; each side its own server process, started the same way (the
//!   node's `connect`, an empty environment).
//! - **Calls a second**: many calls at once. The node: [`RATE_KEYS`] keys
//!   of a keyed tool-relay, each making [`RATE_CALLS_PER_KEY`] calls
//!   [`RATE_CONCURRENCY_PER_KEY`] at a time (a key is an agent address,
//!   with its own in-flight bound of 64 and rate of 200 a second: within
//!   both, so nothing is refused). The direct client: the same number of
//!   calls, the same total in flight, over one connection.
//!
//! The runs alternate (node, direct, node, ...), and the ratio is taken run
//! by run. The node's side pays, per call: the call's record in SQLite with
//! its handler's commit, the hop to the tools thread and back, the answer's
//! handler, the JSON of the `_meta` the node adds; and its shards spin
//! before parking on the cores the Python server also needs.

use std::time::{Duration, Instant};

use caxton::tools::mcp::{connect, Endpoint};
use caxton_testkit::{eventually, example_agent, repo_path, Node};
use hdrhistogram::Histogram;
use rmcp::model::CallToolRequestParams;
use serde_json::{json, Value};

/// Keys of the keyed relay that make calls at once in the rate rows.
pub const RATE_KEYS: usize = 16;
/// Calls each key makes in a rate run: within a key's burst of 200.
pub const RATE_CALLS_PER_KEY: u32 = 190;
/// Calls each key keeps in flight: 16 × 64 = the node's 1,024.
pub const RATE_CONCURRENCY_PER_KEY: u32 = 64;
/// Calls one key times one at a time (within its burst of 200).
const LATENCY_CALLS_PER_KEY: u32 = 150;

/// One alternating run's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct ToolRun {
    pub node_p50_us: f64,
    pub node_p99_us: f64,
    pub direct_p50_us: f64,
    pub direct_p99_us: f64,
    pub node_calls_per_s: f64,
    pub direct_calls_per_s: f64,
    /// Means of the same round trips, and the part of the node's spent in
    /// its tools runtime (`caxton_tool_call_seconds`: rmcp, the server, the
    /// `_meta` it adds); the rest is the node's way to and from it.
    pub node_mean_us: f64,
    pub node_runtime_mean_us: f64,
    pub direct_mean_us: f64,
}

/// The Python with `mcp` that scripts/setup.sh installs, if it is there.
pub fn python() -> Option<String> {
    let p = repo_path("tests/tools/.venv/bin/python");
    p.exists().then(|| p.display().to_string())
}

fn server_command(python: &str) -> Vec<String> {
    vec![python.to_string(), repo_path("tests/tools/mcp_server.py").display().to_string(), "stdio".to_string()]
}

fn add_request() -> Value {
    json!({ "name": "add", "arguments": { "a": 40, "b": 2 } })
}

/// The node with the MCP server as tool `calc` and a keyed relay granted it.
pub struct ToolNode {
    node: Node,
    next_key: std::sync::atomic::AtomicUsize,
}

impl ToolNode {
    pub fn start(python: &str) -> ToolNode {
        let dir = tempfile::tempdir().unwrap().keep();
        let config = dir.join("caxton.toml");
        let command = server_command(python).iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ");
        std::fs::write(&config, format!("[tools.calc]\nkind = \"mcp-stdio\"\ncommand = [{command}]\n")).unwrap();
        let node = Node::start_with(2, &["--config", config.to_str().unwrap()]);
        assert!(
            eventually(Duration::from_secs(30), || node.get("/v1/tools").1["tools"][0]["up"] == json!(true)),
            "the MCP server never came up: {}",
            node.logs()
        );
        let body = std::fs::read(example_agent("rust-tool_relay")).unwrap();
        let (status, v) = caxton_testkit::answer(node.request("PUT", "/v1/agents/toolbench?keyed=true&tools=calc").send_bytes(&body));
        assert_eq!(status, 201, "{v}");
        ToolNode { node, next_key: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// A key no run has used: its rate bucket is full.
    fn fresh_key(&self) -> String {
        let k = self.next_key.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("toolbench/k{k}")
    }

    /// One bench request to a fresh key; its summary.
    fn bench(&self, key: &str, calls: u32, concurrency: u32) -> Value {
        let ask = json!({ "bench": { "tool": "calc", "request": add_request(), "calls": calls, "concurrency": concurrency } });
        let (status, v) = self.node.post_message(&json!({ "receiver": key, "content": ask.to_string() }), Some(60_000));
        assert_eq!(status, 200, "{v}");
        let summary: Value = serde_json::from_str(v["content"].as_str().unwrap_or_else(|| panic!("no summary: {v}"))).unwrap();
        assert_eq!(summary["failures"], json!(0), "no call may fail in a bench: {summary}");
        summary
    }

    /// The tools runtime's time so far: (seconds, calls), from `/metrics`.
    fn runtime_time(&self) -> (f64, f64) {
        let metrics = self.node.metrics();
        let read = |name: &str| {
            let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing"));
            line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        };
        (read("caxton_tool_call_seconds_sum{tool=\"calc\"}"), read("caxton_tool_call_seconds_count{tool=\"calc\"}"))
    }

    /// Round trips, one call at a time, over `keys` keys' runs: p50 (the
    /// median of their p50s), p99 (the largest of theirs), the mean, and
    /// the mean time of those calls in the tools runtime, all in µs.
    pub fn round_trips(&self, keys: usize) -> [f64; 4] {
        let (seconds_before, calls_before) = self.runtime_time();
        let runs: Vec<Value> = (0..keys).map(|_| self.bench(&self.fresh_key(), LATENCY_CALLS_PER_KEY, 1)).collect();
        let (seconds_after, calls_after) = self.runtime_time();
        assert_eq!(calls_after - calls_before, (keys as u32 * LATENCY_CALLS_PER_KEY) as f64, "every call went through the tools runtime once");
        let p50 = crate::median(runs.iter().map(|s| s["p50_us"].as_f64().unwrap()).collect());
        let p99 = runs.iter().map(|s| s["p99_us"].as_f64().unwrap()).fold(0.0, f64::max);
        let mean = runs.iter().map(|s| s["mean_us"].as_f64().unwrap()).sum::<f64>() / keys as f64;
        let runtime_mean = (seconds_after - seconds_before) * 1e6 / (calls_after - calls_before);
        [p50, p99, mean, runtime_mean]
    }

    /// Calls a second with [`RATE_KEYS`] keys at once.
    pub fn calls_per_s(&self) -> f64 {
        let keys: Vec<String> = (0..RATE_KEYS).map(|_| self.fresh_key()).collect();
        let began = Instant::now();
        std::thread::scope(|s| {
            for key in &keys {
                s.spawn(move || self.bench(key, RATE_CALLS_PER_KEY, RATE_CONCURRENCY_PER_KEY));
            }
        });
        (RATE_KEYS as u32 * RATE_CALLS_PER_KEY) as f64 / began.elapsed().as_secs_f64()
    }
}

/// The direct client: rmcp over the node's own `connect`, on a runtime of
/// its own (as the node's tools thread is).
pub struct DirectClient {
    // Dropped in this order: the session, its server (killed), the runtime.
    client: caxton::tools::mcp::Client,
    _server: Option<tokio::process::Child>,
    runtime: tokio::runtime::Runtime,
}

impl DirectClient {
    pub fn start(python: &str) -> DirectClient {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let endpoint = Endpoint::Stdio { command: server_command(python), env: Default::default(), cwd: None };
        let (client, server) = runtime.block_on(connect(&endpoint, "calc")).expect("the MCP server starts");
        DirectClient { client, _server: server, runtime }
    }

    fn params() -> CallToolRequestParams {
        serde_json::from_value(add_request()).unwrap()
    }

    /// Round trips of `calls` calls, one at a time: p50, p99 and mean in µs.
    pub fn round_trips(&self, calls: usize) -> [f64; 3] {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let peer = self.client.peer().clone();
        self.runtime.block_on(async {
            for _ in 0..calls {
                let t = Instant::now();
                let result = peer.call_tool(Self::params()).await.expect("a direct call");
                assert_ne!(result.is_error, Some(true), "{result:?}");
                h.record(t.elapsed().as_micros().max(1) as u64).unwrap();
            }
        });
        [h.value_at_quantile(0.5) as f64, h.value_at_quantile(0.99) as f64, h.mean()]
    }

    /// Calls a second: the rate rows' calls, as many in flight.
    pub fn calls_per_s(&self) -> f64 {
        let total = RATE_KEYS * RATE_CALLS_PER_KEY as usize;
        let in_flight = RATE_KEYS * RATE_CONCURRENCY_PER_KEY as usize;
        let peer = self.client.peer().clone();
        let began = Instant::now();
        let next = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let workers = tokio::task::LocalSet::new();
        for _ in 0..in_flight {
            let (peer, next) = (peer.clone(), next.clone());
            workers.spawn_local(async move {
                while next.get() < total {
                    next.set(next.get() + 1);
                    peer.call_tool(Self::params()).await.expect("a direct call");
                }
            });
        }
        self.runtime.block_on(workers);
        assert_eq!(next.get(), total);
        total as f64 / began.elapsed().as_secs_f64()
    }
}

/// `runs` alternating runs (node, then direct); `keys` keys of round trips
/// per node run and as many calls for the direct client.
pub fn compare(runs: usize, keys: usize) -> Option<Vec<ToolRun>> {
    let python = python()?;
    let node = ToolNode::start(&python);
    let direct = DirectClient::start(&python);
    // Warm both: the first calls pay for imports and connection set-up.
    node.bench(&node.fresh_key(), 20, 1);
    direct.round_trips(20);
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let [node_p50_us, node_p99_us, node_mean_us, node_runtime_mean_us] = node.round_trips(keys);
        let [direct_p50_us, direct_p99_us, direct_mean_us] = direct.round_trips(keys * LATENCY_CALLS_PER_KEY as usize);
        let node_calls_per_s = node.calls_per_s();
        let direct_calls_per_s = direct.calls_per_s();
        out.push(ToolRun {
            node_p50_us,
            node_p99_us,
            direct_p50_us,
            direct_p99_us,
            node_calls_per_s,
            direct_calls_per_s,
            node_mean_us,
            node_runtime_mean_us,
            direct_mean_us,
        });
    }
    Some(out)
}
