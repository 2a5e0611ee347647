//! A real `caxton serve` process: started on a free loopback port with its
//! own data dir, killed (or stopped) at the end. The one process harness of
//! the integration tests, the benchmarks and the load test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `caxton` binary: `CAXTON_BIN` if set, else the one built beside
/// the running executable (`target/<profile>/caxton`, for a binary there
/// or a test in `target/<profile>/deps`).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CAXTON_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the running executable's path");
    exe.ancestors().skip(1).take(2).map(|dir| dir.join("caxton")).find(|p| p.exists()).unwrap_or_else(|| PathBuf::from("caxton"))
}

/// A path in the repository (this crate lives one level down).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

pub struct Node {
    pub child: Option<Child>,
    /// Loopback address of every listener (127.0.0.x).
    pub ip: String,
    pub port: u16,
    /// The wire listener's address, if it was asked for.
    pub wire: Option<String>,
    pub dir: tempfile::TempDir,
    pub cores: usize,
    extra: Vec<String>,
    /// Flags added since the start (`restart_with`).
    restart_extra: Vec<String>,
    /// `spawn` returns once the node is ready (`false`: at once).
    wait_ready: bool,
    /// Command the node runs under (such as `ip netns exec NS`).
    wrap: Vec<String>,
    /// Bearer token of its API, if it needs one (given to the node and the
    /// CLI in the environment, `CAXTON_API_TOKEN`: never on a command line).
    pub token: Option<String>,
    /// More environment of the node process.
    env: Vec<(String, String)>,
    /// With TLS: the test CA's certificate file (for `--ca`) and a client
    /// that trusts it.
    pub ca: Option<PathBuf>,
    tls_agent: Option<ureq::Agent>,
    /// The port is the caller's: a bind failure is not retried elsewhere.
    fixed_port: bool,
    binary: PathBuf,
}

fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// A port free for both TCP and UDP on `ip` (a cluster address uses both).
pub fn free_cluster_port(ip: &str) -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind((ip, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// How to start a node; [`Node::launch`] starts it.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The `caxton` binary. Default [`binary()`].
    pub binary: PathBuf,
    /// The loopback address its listeners use.
    pub ip: String,
    pub cores: usize,
    /// More `caxton serve` flags.
    pub extra: Vec<String>,
    /// A command prefix, such as `ip netns exec NS`.
    pub wrap: Vec<String>,
    /// The API's port; default a free one (retried if taken meanwhile).
    pub api_port: Option<u16>,
    pub token: Option<String>,
    /// Open a wire listener on a free port too.
    pub wire: bool,
    /// More environment of the node process (such as `CREDENTIALS_DIRECTORY`).
    pub env: Vec<(String, String)>,
    /// Serve the API over TLS, with a certificate for `ip` from a test CA
    /// made for this node.
    pub tls: bool,
}

impl NodeSpec {
    pub fn new(cores: usize) -> NodeSpec {
        NodeSpec {
            binary: binary(),
            ip: "127.0.0.1".into(),
            cores,
            extra: Vec::new(),
            wrap: Vec::new(),
            api_port: None,
            token: None,
            wire: false,
            env: Vec::new(),
            tls: false,
        }
    }

    pub fn args(mut self, extra: &[&str]) -> NodeSpec {
        self.extra.extend(extra.iter().map(|s| s.to_string()));
        self
    }
}

impl Node {
    pub fn start(cores: usize) -> Node {
        Node::start_with(cores, &[])
    }

    pub fn start_with(cores: usize, extra: &[&str]) -> Node {
        Node::start_on("127.0.0.1", cores, extra)
    }

    /// Starts a node whose API listens on `ip` (any 127.0.0.x).
    pub fn start_on(ip: &str, cores: usize, extra: &[&str]) -> Node {
        Node::launch(NodeSpec { ip: ip.into(), ..NodeSpec::new(cores).args(extra) }).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a node under `wrap` (a command prefix, such as `ip netns exec
    /// NS`), its API on `ip:port`, guarded by `token` if given.
    pub fn start_wrapped(wrap: &[&str], ip: &str, port: u16, token: Option<&str>, cores: usize, extra: &[&str]) -> Node {
        let spec = NodeSpec {
            ip: ip.into(),
            wrap: wrap.iter().map(|s| s.to_string()).collect(),
            api_port: Some(port),
            token: token.map(str::to_string),
            ..NodeSpec::new(cores).args(extra)
        };
        Node::launch(spec).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a node as `spec` says; its log on failure.
    pub fn launch(spec: NodeSpec) -> Result<Node, String> {
        let mut node = Node {
            child: None,
            port: spec.api_port.unwrap_or_else(|| free_port_on(&spec.ip)),
            wire: spec.wire.then(|| format!("{}:{}", spec.ip, free_port_on(&spec.ip))),
            ip: spec.ip,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            cores: spec.cores,
            extra: spec.extra,
            restart_extra: Vec::new(),
            wait_ready: true,
            wrap: spec.wrap,
            token: spec.token,
            env: spec.env,
            ca: None,
            tls_agent: None,
            fixed_port: spec.api_port.is_some(),
            binary: spec.binary,
        };
        if spec.tls {
            let tls = crate::tls::TestPki::for_ip(&node.ip, node.dir.path())?;
            node.extra.extend(["--tls-cert".to_string(), tls.cert.display().to_string(), "--tls-key".to_string(), tls.key.display().to_string()]);
            node.tls_agent = Some(tls.agent());
            node.ca = Some(tls.ca);
        }
        node.spawn()?;
        Ok(node)
    }

    /// A request to the node's API, with its token if it has one.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        let req = match &self.tls_agent {
            Some(agent) => agent.request(method, &self.url(path)),
            None => ureq::request(method, &self.url(path)),
        }
        .timeout(Duration::from_secs(30));
        match &self.token {
            Some(t) => req.set("authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// The value given after `flag` when the node was started.
    pub fn extra_arg(&self, flag: &str) -> String {
        let i = self.extra.iter().position(|a| a == flag).unwrap_or_else(|| panic!("started without {flag}"));
        self.extra[i + 1].clone()
    }

    pub fn api(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls_agent.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}{path}", self.ip, self.port)
    }

    /// Starts the process. A port taken between our probe and the node's
    /// bind (another process's connection) is retried with a new one; any
    /// other failure is an error with the node's log.
    fn spawn(&mut self) -> Result<(), String> {
        for _ in 0..3 {
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let log_path = self.dir.path().join(format!("node-{stamp}.log"));
            let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
            let bin = self.binary.display().to_string();
            let (program, prefix) = match self.wrap.split_first() {
                Some((p, rest)) => (p.clone(), rest.iter().cloned().chain([bin]).collect()),
                None => (bin, Vec::new()),
            };
            let child = Command::new(&program)
                .args(prefix)
                .args(["serve", "--cores", &self.cores.to_string(), "--api", &self.api()])
                .arg("--data-dir")
                .arg(self.dir.path().join("data"))
                .args(self.wire.iter().flat_map(|w| ["--wire", w.as_str()]))
                .args(&self.extra)
                .args(&self.restart_extra)
                .envs(self.token.iter().map(|t| ("CAXTON_API_TOKEN", t.as_str())))
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("CAXTON_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start {program}: {e} (build it with `cargo build --release`)"))?;
            self.child = Some(child);
            if !self.wait_ready {
                return Ok(());
            }
            let status = match self.wait_healthy() {
                Ok(()) => return Ok(()),
                Err(Some(status)) => status,
                Err(None) => return Err(format!("caxton serve did not become ready in 30 s:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default())),
            };
            self.child = None;
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if self.fixed_port || !log.contains("cannot bind") {
                return Err(format!("caxton serve exited with {status} while starting:\n{log}"));
            }
            self.port = free_port_on(&self.ip);
            if self.wire.is_some() {
                self.wire = Some(format!("{}:{}", self.ip, free_port_on(&self.ip)));
            }
        }
        Err("caxton serve could not bind free ports in 3 tries".into())
    }

    /// Waits until the node is ready (`GET /v1/ready` 200: every stored
    /// agent restored). `Err(Some(status))`: it exited; `Err(None)`: it
    /// never was.
    fn wait_healthy(&mut self) -> Result<(), Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = self.request("GET", "/v1/ready").call() {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(Some(status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(None)
    }

    /// `kill -9` then start again on the same data dir and port.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// Starts again after `kill9` or `terminate`, same data dir and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts again, with `extra` flags instead of those of an earlier
    /// `restart_with` (the start's own flags stay).
    pub fn restart_with(&mut self, extra: &[&str]) {
        assert!(self.child.is_none());
        self.restart_extra = extra.iter().map(|s| s.to_string()).collect();
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts again with `extra` flags (as [`Node::restart_with`]) and
    /// returns at once, before the node is ready: to watch it start.
    pub fn restart_unready_with(&mut self, extra: &[&str]) {
        assert!(self.child.is_none());
        self.restart_extra = extra.iter().map(|s| s.to_string()).collect();
        self.wait_ready = false;
        let started = self.spawn();
        self.wait_ready = true;
        started.unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGTERM: the node drains and stops gracefully (commits, leaves its
    /// cluster). Returns how it exited.
    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node runs").id()
    }

    /// Runs `binary` from the next start on (same data dir, ports and
    /// flags): the new build of a binary upgrade.
    pub fn set_binary(&mut self, binary: PathBuf) {
        assert!(self.child.is_none(), "stop the node before its binary changes");
        self.binary = binary;
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    pub fn deploy(&self, name: &str, file: &str, instances: u32) -> (u16, Value) {
        let body = std::fs::read(repo_path(file)).unwrap();
        self.put_module(name, instances, &body)
    }

    pub fn put_module(&self, name: &str, instances: u32, body: &[u8]) -> (u16, Value) {
        answer(self.request("PUT", &format!("/v1/agents/{name}?instances={instances}")).send_bytes(body))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        answer(self.request("GET", path).call())
    }

    /// `GET /v1/health` once every shard has answered with its figures:
    /// the probe waits only briefly for a shard busy with a long handler
    /// (`HEALTH_SHARD_WAIT_MS`) and lists it unanswered, which a test that
    /// reads the counters must not take for a zero.
    pub fn health(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, health) = self.get("/v1/health");
            assert_eq!(status, 200, "{health}");
            let answered = health["shards"].as_array().is_some_and(|s| s.iter().all(|s| s["answered"] == true));
            if answered || Instant::now() > deadline {
                return health;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        answer(self.request("DELETE", path).call())
    }

    pub fn post_message(&self, body: &Value, wait_ms: Option<u64>) -> (u16, Value) {
        let path = match wait_ms {
            Some(ms) => format!("/v1/messages?reply_timeout_ms={ms}"),
            None => "/v1/messages".into(),
        };
        answer(self.request("POST", &path).send_json(body.clone()))
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .args(["--api", &self.api()])
            .args(self.ca.iter().flat_map(|ca| [std::ffi::OsStr::new("--ca"), ca.as_os_str()]))
            .envs(self.token.iter().map(|t| ("CAXTON_API_TOKEN", t.as_str())))
            .output()
            .unwrap()
    }

    /// Everything the node processes (this one and earlier ones on the same
    /// data dir) wrote to their logs.
    /// Every log the node wrote, its starts in order.
    pub fn logs(&self) -> String {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(self.dir.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("node-")).map(|e| e.path()).collect();
        files.sort(); // node-<nanoseconds>.log: by start
        files.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
    }

    pub fn metrics(&self) -> String {
        self.request("GET", "/metrics").call().unwrap().into_string().unwrap()
    }

    pub fn agent(&self, name: &str) -> Value {
        let (status, v) = self.get(&format!("/v1/agents/{name}"));
        assert_eq!(status, 200, "{v}");
        v
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Status and JSON body of an answer, whatever the status.
pub fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Like [`answer`], but `None` when the node is not there (the connection
/// was refused or closed): a node that stopped.
pub fn answer_or_gone(result: Result<ureq::Response, ureq::Error>) -> Option<(u16, Value)> {
    match result {
        Err(ureq::Error::Transport(_)) => None,
        other => Some(answer(other)),
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Fails unless `promtool check metrics` accepts the exposition `text`.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus; scripts/setup.sh installs it)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// An example agent built by `scripts/build-agents.sh` (`make agents`):
/// `target/agents/<name>.wasm`. Builds them all once if it is missing, so
/// that `cargo test` alone works; a toolchain that is not installed fails
/// the build with its own message.
/// `wasm` with a custom section holding `nonce`: different bytes (so
/// neither a node's compiled modules nor its module cache know them), the
/// same code.
pub fn with_nonce(wasm: &[u8], nonce: u64) -> Vec<u8> {
    assert_eq!(&wasm[..4], b"\0asm", "a binary module");
    let name = b"caxton-test-nonce";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&nonce.to_le_bytes());
    assert!(section.len() < 128, "one LEB128 byte of size");
    let mut out = wasm.to_vec();
    out.extend_from_slice(&[0, section.len() as u8]);
    out.extend_from_slice(&section);
    out
}

/// The node built at the rolling upgrade's baseline commit
/// (`tests/upgrade-baseline`), built by `scripts/build-baseline.sh` if it
/// is not yet (`make test` builds it first).
pub fn baseline_binary() -> PathBuf {
    static BUILT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let status = Command::new(repo_path("scripts/build-baseline.sh")).status().expect("scripts/build-baseline.sh runs");
    assert!(status.success(), "scripts/build-baseline.sh failed ({status})");
    repo_path("target/baseline/caxton")
}

pub fn example_agent(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let path = repo_path(&format!("target/agents/{name}.wasm"));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() && !*built {
        let status = std::process::Command::new(repo_path("scripts/build-agents.sh")).status().expect("scripts/build-agents.sh runs");
        assert!(status.success(), "scripts/build-agents.sh failed ({status}); scripts/setup.sh installs the toolchains");
        *built = true;
    }
    assert!(path.exists(), "no example agent {name} in target/agents");
    path
}
