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
    /// A second node in a cluster with the first (`start_pair`): agents are
    /// split between the two, the generator talks to the first.
    peer: Option<caxton_testkit::Node>,
}

/// The cluster key of the two-node variants (loopback only).
const PAIR_KEY: &str = "caxton-loadtest-pair-key-0123456789";

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
        Ok(Node { api: process.api(), wire, settings, process: Some(process), peer: None })
    }

    /// Two single-core nodes in a cluster on 127.0.0.1 and 127.0.0.2 (the
    /// two-node variants); the generator's wire connects to the first. Each
    /// node gets a core of its own (`taskset`), as docs/OPERATING.md asks of
    /// a host: a node pins its shards to the first cores it may use, so
    /// two nodes left to themselves would share one.
    pub fn start_pair(binary: &Path, limits: &[&str]) -> Result<Node, String> {
        let cpus = caxton_shards::executor::allowed_cpus();
        let cpu = |i: usize| cpus[i % cpus.len()].to_string();
        let (cpu_a, cpu_b) = (cpu(0), cpu(1));
        let listen_a = format!("127.0.0.1:{}", caxton_testkit::free_cluster_port("127.0.0.1"));
        let listen_b = format!("127.0.0.2:{}", caxton_testkit::free_cluster_port("127.0.0.2"));
        let a_args: Vec<&str> = limits.iter().copied().chain(["--listen", &listen_a, "--cluster-key", PAIR_KEY]).collect();
        let a = caxton_testkit::Node::launch(NodeSpec {
            binary: binary.to_path_buf(),
            wire: true,
            wrap: vec!["taskset".into(), "-c".into(), cpu_a.clone()],
            ..NodeSpec::new(1).args(&a_args)
        })?;
        let b_args: Vec<&str> = limits.iter().copied().chain(["--listen", &listen_b, "--cluster-key", PAIR_KEY, "--join", &listen_a]).collect();
        let b = caxton_testkit::Node::launch(NodeSpec {
            binary: binary.to_path_buf(),
            ip: "127.0.0.2".into(),
            wrap: vec!["taskset".into(), "-c".into(), cpu_b.clone()],
            ..NodeSpec::new(1).args(&b_args)
        })?;
        let wire = a.wire.clone().expect("asked for a wire listener");
        let settings = format!(
            "two nodes of --cores 1 in a cluster, on CPU {cpu_a} and CPU {cpu_b} (127.0.0.1, 127.0.0.2), the generator on the first's --wire {wire}; {}",
            limits.join(" ")
        );
        Ok(Node { api: a.api(), wire, settings, process: Some(a), peer: Some(b) })
    }

    /// The API of the node that hosts agent number `i`: with a peer, odd
    /// numbers live there.
    fn api_for(&self, i: usize) -> String {
        match &self.peer {
            Some(p) if i % 2 == 1 => p.api(),
            _ => self.api.clone(),
        }
    }

    /// Waits until every node knows where all `count` agents live.
    pub fn wait_for_routes(&self, count: usize) -> Result<(), String> {
        let apis: Vec<String> = std::iter::once(self.api.clone()).chain(self.peer.as_ref().map(|p| p.api())).collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        for api in apis {
            loop {
                let known = ureq::get(&format!("http://{api}/v1/cluster/members"))
                    .call()
                    .ok()
                    .and_then(|r| r.into_json::<serde_json::Value>().ok())
                    .and_then(|v| v["registry_agents"].as_u64())
                    .unwrap_or(0);
                if known as usize >= count {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("{api} knows {known} of {count} agents after 60 s"));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// A node someone else runs: `api` and `wire` addresses.
    pub fn target(api: &str, wire: &str) -> Node {
        Node { api: api.into(), wire: wire.into(), settings: "(not started by the load test)".into(), process: None, peer: None }
    }

    /// Deploys `count` copies of a hop agent (`agents/<agent>.wat`) as
    /// `lt-0` .. `lt-<count-1>` (split between the nodes of a pair).
    /// Deploys `agents/<agent>.wat` as keyed type `name`.
    pub fn deploy_keyed(&self, name: &str, agent: &str) -> Result<(), String> {
        let wat = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("agents/{agent}.wat"))).map_err(|e| format!("agents/{agent}.wat: {e}"))?;
        match ureq::put(&format!("http://{}/v1/agents/{name}?keyed=true", self.api)).send_bytes(&wat) {
            Ok(_) | Err(ureq::Error::Status(409, _)) => Ok(()),
            Err(e) => Err(format!("deploying keyed {name}: {e}")),
        }
    }

    /// The `keyed` figures of `GET /v1/agents/NAME`.
    pub fn keyed_figures(&self, name: &str) -> Option<serde_json::Value> {
        let v: serde_json::Value = ureq::get(&format!("http://{}/v1/agents/{name}", self.api)).call().ok()?.into_json().ok()?;
        Some(v["keyed"].clone())
    }

    pub fn deploy(&self, count: usize, agent: &str) -> Result<(), String> {
        let wat = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("agents/{agent}.wat"))).map_err(|e| format!("agents/{agent}.wat: {e}"))?;
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
                        for (i, name) in names.iter().enumerate().skip(c).step_by(CLIENTS) {
                            let url = format!("http://{}/v1/agents/{name}", self.api_for(i));
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

    /// The processes under test, when the load test started them.
    pub fn pids(&self) -> Vec<u32> {
        self.process.iter().chain(self.peer.iter()).filter_map(|p| p.child.as_ref().map(|c| c.id())).collect()
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
        for p in self.process.iter_mut().chain(self.peer.iter_mut()).filter(|p| p.child.is_some()) {
            p.terminate();
        }
    }
}
