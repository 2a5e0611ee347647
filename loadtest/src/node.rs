//! The node under test: a real `caxton serve` started here (or one given
//! with `--target`), its agents deployed over the REST API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Per-agent limits the load test's node runs with: the load agents are
/// small, and 10,000 agents at the ADR's default 13 MB each would not fit
/// a 24 GiB machine (docs/LIMITS.md).
pub const NODE_LIMITS: [&str; 8] = ["--agent-memory-max", "1MiB", "--agent-stack-max", "64KiB", "--agent-overhead", "64KiB", "--max-agents", "20000"];

pub struct Node {
    pub api: String,
    pub wire: String,
    pub settings: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `caxton` binary beside this one (same target directory).
pub fn default_binary() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| Some(p.parent()?.join("caxton"))).filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("caxton"))
}

impl Node {
    /// Starts a node on free loopback ports. A port taken between our probe
    /// and the node's bind (another process's connection) is retried with
    /// new ports; any other failure is reported with the node's log.
    pub fn start(binary: &Path, cores: Option<usize>) -> Result<Node, String> {
        const ATTEMPTS: usize = 3;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match Node::start_once(binary, cores) {
                Ok(node) => return Ok(node),
                Err((e, log)) if log.contains("cannot bind") => last = format!("{e}: {}", log.trim()),
                Err((e, log)) => return Err(format!("{e}; its log:\n{}", log.trim())),
            }
        }
        Err(last)
    }

    fn start_once(binary: &Path, cores: Option<usize>) -> Result<Node, (String, String)> {
        let dir = tempfile::tempdir().map_err(|e| (e.to_string(), String::new()))?;
        let (api, wire) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
        let mut args: Vec<String> = vec!["serve".into(), "--api".into(), api.clone(), "--wire".into(), wire.clone()];
        args.push("--data-dir".into());
        args.push(dir.path().join("data").display().to_string());
        if let Some(c) = cores {
            args.push("--cores".into());
            args.push(c.to_string());
        }
        args.extend(NODE_LIMITS.iter().map(|s| s.to_string()));
        let log_path = dir.path().join("node.log");
        let log = std::fs::File::create(&log_path).map_err(|e| (e.to_string(), String::new()))?;
        let child = Command::new(binary)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| (format!("cannot start {}: {e} (build it with `cargo build --release`, or pass --caxton)", binary.display()), String::new()))?;
        let settings = args[1..].join(" ");
        let mut node = Node { api, wire, settings, child: Some(child), _dir: Some(dir) };
        match node.wait_healthy() {
            Ok(()) => Ok(node),
            Err(e) => Err((e, std::fs::read_to_string(&log_path).unwrap_or_default())),
        }
    }

    /// A node someone else runs: `api` and `wire` addresses.
    pub fn target(api: &str, wire: &str) -> Node {
        Node { api: api.into(), wire: wire.into(), settings: "(not started by the load test)".into(), child: None, _dir: None }
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ureq::get(&format!("http://{}/v1/health", self.api)).call().is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("caxton serve exited with {status}"));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("caxton serve did not become healthy in 30 s".into())
    }

    /// Deploys `count` copies of the hop agent as `lt-0` .. `lt-<count-1>`.
    pub fn deploy(&self, count: usize) -> Result<(), String> {
        let wat = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/hop.wat")).map_err(|e| e.to_string())?;
        const CLIENTS: usize = 4;
        let errors: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let wat = &wat;
                    s.spawn(move || {
                        for i in (c..count).step_by(CLIENTS) {
                            let url = format!("http://{}/v1/agents/lt-{i}", self.api);
                            match ureq::put(&url).send_bytes(wat) {
                                Ok(_) | Err(ureq::Error::Status(409, _)) => {}
                                Err(e) => return Some(format!("deploying lt-{i}: {e}")),
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
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
