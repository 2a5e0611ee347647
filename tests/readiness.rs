//! The probes, against real `caxton serve` processes (issue 29): a load
//! balancer asks `GET /v1/ready` whether to send work, an orchestrator asks
//! `GET /v1/health` whether the process is alive. While the node restores
//! its agents and while it drains, it is alive and not ready; only then does
//! work reach it.

mod common;

use std::time::{Duration, Instant};

use common::{answer_or_gone, example_agent, Node};
use serde_json::{json, Value};

/// `GET path` on `api`, or `None` while nothing listens there.
fn probe(api: &str, path: &str) -> Option<(u16, Value)> {
    answer_or_gone(ureq::get(&format!("http://{api}{path}")).timeout(Duration::from_secs(5)).call())
}

/// The Rust SDK's echo, new bytes for each `nonce`: a restart without the
/// module cache compiles each one again.
fn sdk_echo(nonce: u32) -> Vec<u8> {
    common::with_nonce(&std::fs::read(example_agent("rust-echo")).unwrap(), nonce.into())
}

#[test]
fn a_starting_node_is_alive_not_ready_and_takes_no_work_until_its_agents_are_back() {
    let mut node = Node::start_with(2, &["--agent-memory-max", "2MiB"]);
    const AGENTS: u32 = 60;
    for i in 0..AGENTS {
        assert_eq!(node.put_module(&format!("e{i}"), 1, &sdk_echo(i)).0, 201);
    }
    let (status, health) = node.get("/v1/health");
    assert_eq!((status, health["node"]["readiness"].as_str()), (200, Some("ready")), "{health}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["commit"].as_str().is_some_and(|c| !c.is_empty()), "{health}");
    assert!(health["node"]["boot_epoch"].as_u64().is_some(), "{health}");
    assert!(node.terminate().success());

    // Without the module cache every agent is compiled again (about 55 ms
    // each): the probes answer meanwhile.
    node.restart_unready_with(&["--module-cache", "off"]);
    let api = node.api();
    let began = Instant::now();
    let (mut starting, mut refused_work) = (0, 0);
    loop {
        assert!(began.elapsed() < Duration::from_secs(60), "never ready");
        let Some((ready, body)) = probe(&api, "/v1/ready") else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if ready == 200 {
            assert_eq!(body["status"], "ready");
            break;
        }
        assert_eq!((ready, body["status"].as_str()), (503, Some("starting")), "{body}");
        starting += 1;
        let (alive, health) = probe(&api, "/v1/health").expect("the API listens");
        // Alive while starting; it may have become ready since the probe above.
        let readiness = health["node"]["readiness"].as_str();
        assert!(alive == 200 && matches!(readiness, Some("starting" | "ready")), "alive while starting: {health}");
        // Work is refused with its reason, not queued behind the restore.
        if let Some((status, v)) = probe(&api, "/v1/agents") {
            if status == 503 {
                assert_eq!(v["error"]["code"], "starting", "{v}");
                refused_work += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(starting > 0 && refused_work > 0, "the start was seen: {starting} not-ready answers, {refused_work} refusals");
    // Ready means every agent is back and answers.
    let (status, v) = node.get("/v1/agents");
    assert_eq!((status, v["agents"].as_array().map(Vec::len)), (200, Some(AGENTS as usize)));
    let (status, v) = node.post_message(&json!({"receiver": "e7", "content": "back"}), Some(5_000));
    assert_eq!((status, v["content"].as_str()), (200, Some("back")), "{v}");
}

#[test]
fn a_draining_node_is_alive_and_not_ready_until_it_stops() {
    let mut node = Node::start_with(1, &["--drain-timeout", "1500ms", "--execution-time-slice-ms", "2000"]);
    // Tens of ms a message: 100 of them are seconds of work, more than the
    // drain may take, so the drain lasts its whole timeout.
    assert_eq!(node.deploy("sluggish", "tests/agents/sluggish.wat", 1).0, 201);
    for _ in 0..100 {
        assert_eq!(node.post_message(&json!({"receiver": "sluggish", "content": ""}), None).0, 202);
    }
    let api = node.api();
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        // Until the node is gone: a pair cut by the exit keeps its
        // readiness answer (and no liveness one).
        while let Some((ready, body)) = probe(&api, "/v1/ready") {
            let alive = probe(&api, "/v1/health").map(|(alive, _)| alive);
            seen.push((ready, body["status"].as_str().unwrap_or("").to_string(), alive));
            if alive.is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(node.terminate().success());
    let seen = watcher.join().unwrap();
    let first_not_ready = seen.iter().position(|(ready, _, _)| *ready != 200).unwrap_or_else(|| panic!("not ready before it stopped: {seen:?}"));
    assert!(seen[..first_not_ready].iter().all(|s| s.1 == "ready"), "{seen:?}");
    // From the SIGTERM on: 503 "draining", alive, never ready again.
    let draining = &seen[first_not_ready..];
    // The liveness probe waits at most `HEALTH_SHARD_WAIT_MS` for the
    // busy shard, so the drain is watched several times on a quiet machine;
    // on a loaded one, at least once.
    assert!(!draining.is_empty(), "the drain was watched: {seen:?}");
    assert!(draining.iter().all(|(ready, status, alive)| (*ready, status.as_str()) == (503, "draining") && alive.is_none_or(|a| a == 200)), "{seen:?}");
}

/// The next sd_notify message on `socket`, within `secs`.
fn notification(socket: &std::os::unix::net::UnixDatagram, secs: u64) -> String {
    socket.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notification in {secs} s: {e}"));
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Under systemd's `Type=notify` (packaging/caxton.service): `READY=1`
/// only once the node is ready (its agents restored, every listener
/// serving), `RELOADING=1` then `READY=1` around a SIGHUP, `STOPPING=1`
/// when the drain begins (issue 29: `systemctl start` returned before the
/// API listened). The socket is the test's own, as systemd's would be.
#[test]
fn systemd_hears_ready_only_once_the_node_is_ready_and_stopping_when_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let mut spec = caxton_testkit::node::NodeSpec::new(2).args(&["--agent-memory-max", "2MiB"]);
    spec.env.push(("NOTIFY_SOCKET".into(), path.display().to_string()));
    let mut node = Node::launch(spec).unwrap();
    let first = notification(&socket, 30);
    assert!(first.starts_with("READY=1\nSTATUS=serving "), "{first}");
    const AGENTS: u32 = 20;
    for i in 0..AGENTS {
        assert_eq!(node.put_module(&format!("e{i}"), 1, &sdk_echo(1000 + i)).0, 201);
    }
    assert!(node.terminate().success());
    assert!(notification(&socket, 5).starts_with("STOPPING=1\n"));

    // A restart that compiles every agent again: READY comes after them.
    node.restart_unready_with(&["--module-cache", "off"]);
    let api = node.api();
    socket.set_nonblocking(true).unwrap();
    let began = Instant::now();
    let mut buf = [0u8; 1024];
    let mut starting_seen = 0;
    let ready_message = loop {
        assert!(began.elapsed() < Duration::from_secs(60), "no READY=1 in 60 s");
        if let Ok(n) = socket.recv(&mut buf) {
            break String::from_utf8(buf[..n].to_vec()).unwrap();
        }
        if let Some((503, _)) = probe(&api, "/v1/ready") {
            starting_seen += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    socket.set_nonblocking(false).unwrap();
    assert!(ready_message.starts_with("READY=1\n") && ready_message.contains(&format!("serving {AGENTS} restored agents")), "{ready_message}");
    // Sent only once ready: a probe right after it says so, and every agent is back.
    assert_eq!(probe(&api, "/v1/ready").map(|(s, _)| s), Some(200), "READY=1 came before the node was ready");
    assert!(starting_seen > 0, "the restore was slow enough to watch");
    assert_eq!(node.get("/v1/agents").1["agents"].as_array().map(Vec::len), Some(AGENTS as usize));

    // SIGHUP reads the secrets again: RELOADING=1, then READY=1.
    // SAFETY: kill(2) on the test's own child.
    unsafe { libc::kill(node.pid() as i32, libc::SIGHUP) };
    let reloading = notification(&socket, 10);
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
    assert!(notification(&socket, 10).starts_with("READY=1\n"));
    assert!(node.terminate().success());
    assert!(notification(&socket, 5).starts_with("STOPPING=1\n"));
}
