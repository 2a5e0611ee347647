//! The node under test: a real `caxton serve` started here (or one given
//! with `--target`), its agents deployed over the REST API.

use std::path::{Path, PathBuf};

use caxton_testkit::node::NodeSpec;

/// Per-agent limits the load test's node runs with: the load agents are
/// small, and 10,000 agents at the ADR's default 13 MB each would not fit
/// a 24 GiB machine (docs/LIMITS.md).
pub const NODE_LIMITS: [&str; 8] = ["--agent-memory-max", "1MiB", "--agent-stack-max", "64KiB", "--agent-overhead", "64KiB", "--max-agents", "20000"];

/// The contract-net scenario's node: the node's defaults. Its ~100 agents
/// are Rust SDK modules, whose memory starts at 17 pages (over 1 MiB).
pub const CONTRACT_NET_LIMITS: [&str; 0] = [];

pub struct Node {
    pub api: String,
    pub wire: String,
    pub settings: String,
    /// The process, when the load test started it (the harness of
    /// `caxton-testkit`: free ports, retried if taken, its log on failure).
    process: Option<caxton_testkit::Node>,
}

/// The `caxton` binary beside this one (same target directory).
pub fn default_binary() -> PathBuf {
    caxton_testkit::binary()
}

impl Node {
    /// Starts a node on free loopback ports, with a wire listener and
    /// `limits` (flags).
    pub fn start(binary: &Path, cores: Option<usize>, limits: &[&str]) -> Result<Node, String> {
        let cores = cores.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let spec = NodeSpec { binary: binary.to_path_buf(), wire: true, ..NodeSpec::new(cores).args(limits) };
        let process = caxton_testkit::Node::launch(spec)?;
        let wire = process.wire.clone().expect("asked for a wire listener");
        let settings = format!("--cores {cores} --wire {wire} {}", limits.join(" "));
        Ok(Node { api: process.api(), wire, settings, process: Some(process) })
    }

    /// A node someone else runs: `api` and `wire` addresses.
    pub fn target(api: &str, wire: &str) -> Node {
        Node { api: api.into(), wire: wire.into(), settings: "(not started by the load test)".into(), process: None }
    }

    /// Deploys `count` copies of the hop agent as `lt-0` .. `lt-<count-1>`.
    pub fn deploy(&self, count: usize) -> Result<(), String> {
        let wat = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/hop.wat")).map_err(|e| e.to_string())?;
        self.deploy_as(&(0..count).map(|i| format!("lt-{i}")).collect::<Vec<_>>(), &wat)
    }

    /// Deploys `module` under each of `names` (one instance each), four
    /// clients at a time; a name already there is kept.
    pub fn deploy_as(&self, names: &[String], module: &[u8]) -> Result<(), String> {
        const CLIENTS: usize = 4;
        let errors: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    s.spawn(move || {
                        for name in names.iter().skip(c).step_by(CLIENTS) {
                            let url = format!("http://{}/v1/agents/{name}", self.api);
                            match ureq::put(&url).send_bytes(module) {
                                Ok(_) | Err(ureq::Error::Status(409, _)) => {}
                                Err(e) => return Some(format!("deploying {name}: {e}")),
                            }
                        }
                        None
                    })
                })
                .collect();
            workers.into_iter().filter_map(|w| w.join().unwrap()).collect()
        });
        errors.into_iter().next().map_or(Ok(()), Err)
    }

    /// The resident memory of the node whose API is `api`, from its metrics.
    pub fn resident_of(api: &str) -> Option<f64> {
        let text = ureq::get(&format!("http://{api}/metrics")).call().ok()?.into_string().ok()?;
        text.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")?.parse().ok())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A graceful stop (SIGTERM), so the node commits what it holds.
        if let Some(p) = self.process.as_mut().filter(|p| p.child.is_some()) {
            p.terminate();
        }
    }
}
