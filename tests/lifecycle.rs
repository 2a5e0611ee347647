//! An agent's lifecycle against real nodes: upgrade in place under a
//! stream (refused upgrades change nothing, a rollback returns), restart
//! policies (backoff, quarantine, a restart that lifts it), SIGTERM during
//! a stream, and restarts that take compiled modules from the cache.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use caxton_abi::{Envelope, Header, Performative};
use caxton_testkit::node::NodeSpec;
use common::{eventually, repo_path, wire, Node};
use serde_json::{json, Value};

fn with_wire(cores: usize, extra: &[&str]) -> Node {
    Node::launch(NodeSpec { wire: true, ..NodeSpec::new(cores).args(extra) }).unwrap_or_else(|e| panic!("{e}"))
}

/// The counter of examples/agents, and a second version of it that
/// answers `agree` where the first answers `inform`: which version handled
/// a message shows in its reply.
fn counters() -> (Vec<u8>, Vec<u8>) {
    let v1 = std::fs::read_to_string(repo_path("examples/agents/counter.wat")).unwrap();
    let marker = "(i32.store8 offset=1 (local.get $out) (i32.const 1))";
    assert!(v1.contains(marker), "the counter's performative store");
    let v2 = v1.replace(marker, "(i32.store8 offset=1 (local.get $out) (i32.const 7))");
    (v1.into_bytes(), v2.into_bytes())
}

fn upgrade(node: &Node, name: &str, module: &[u8]) -> (u16, Value) {
    common::answer(node.request("PUT", &format!("/v1/agents/{name}?upgrade=true")).send_bytes(module))
}

fn post(node: &Node, path: &str) -> (u16, Value) {
    common::answer(node.request("POST", path).send_json(json!({})))
}

/// (performative, count) of the counter's answer to one message.
fn count(node: &Node) -> (String, u64) {
    let (status, v) = node.post_message(&json!({"receiver": "counter", "content": ""}), Some(5000));
    assert_eq!(status, 200, "{v}");
    (v["performative"].as_str().unwrap().to_string(), v["content"].as_str().unwrap().parse().unwrap())
}

#[test]
fn an_upgrade_under_a_stream_keeps_the_count_and_the_queue_and_a_refused_one_changes_nothing() {
    let mut node = with_wire(2, &[]);
    let (v1, v2) = counters();
    let (status, v) = node.put_module("counter", 1, &v1);
    assert_eq!((status, v["version"].as_u64()), (201, Some(1)), "{v}");
    let hash_v1 = node.agent("counter")["module_hash"].as_str().unwrap().to_string();

    // A steady stream through the wire; the upgrade lands in its middle.
    const N: u64 = 3000;
    let (mut r, mut w, _, _) = wire::connect(node.wire.as_deref().unwrap(), None).unwrap();
    let writer = std::thread::spawn(move || {
        for i in 1..=N {
            w.send(&Header { reply_with: i, ..Header::default() }, b"counter", b"").unwrap();
            if i % 50 == 0 {
                w.flush().unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        w.flush().unwrap();
        w
    });
    let mut answers: BTreeMap<u64, (Performative, u64)> = BTreeMap::new();
    let mut upgraded = None;
    while answers.len() < N as usize {
        let bytes = r.envelope().unwrap().expect("the node closed the wire");
        let e = Envelope::parse(&bytes).unwrap();
        let n: u64 = std::str::from_utf8(e.content()).unwrap().parse().unwrap();
        assert!(answers.insert(e.header().in_reply_to, (e.performative(), n)).is_none(), "one answer per message");
        if answers.len() == N as usize / 3 && upgraded.is_none() {
            upgraded = Some(upgrade(&node, "counter", &v2));
        }
    }
    let _w = writer.join().unwrap();
    let (status, v) = upgraded.unwrap();
    assert_eq!((status, v["version"].as_u64(), v["previous_version"].as_u64()), (200, Some(2), Some(1)), "{v}");
    // One instance, one connection: handled in order, each exactly once,
    // the count going on across the switch, and the switch happening once.
    let mut switched_at = None;
    for (k, (performative, n)) in &answers {
        assert_eq!(*n, *k, "message {k} was the {k}th handled, never lost or handled twice");
        match (performative, switched_at) {
            (Performative::Inform, None) => {}
            (Performative::Agree, None) => switched_at = Some(*k),
            (Performative::Agree, Some(_)) => {}
            (other, _) => panic!("message {k} answered {other:?} after the switch at {switched_at:?}"),
        }
    }
    let switched_at = switched_at.expect("the new version handled the rest");
    assert!(switched_at > 1 && switched_at < N, "the switch came between two messages of the stream ({switched_at})");
    let agent = node.agent("counter");
    assert_eq!(agent["version"], 2);
    assert_ne!(agent["module_hash"].as_str().unwrap(), hash_v1);

    // Refused upgrades: nothing changes.
    let (status, v) = upgrade(&node, "counter", &std::fs::read(repo_path("tests/agents/init_fails.wat")).unwrap());
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("upgrade_refused")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("caxton_init"), "{v}");
    let (status, v) = upgrade(&node, "counter", b"(module (func $oops");
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_module")), "{v}");
    assert_eq!(upgrade(&node, "nobody", &v2).0, 404);
    assert_eq!(node.agent("counter")["version"], 2);
    assert_eq!(count(&node), ("agree".into(), N + 1), "still version 2, the count going on");

    // Rollback, then through the CLI, then a kill -9: the catalog keeps it.
    let (status, v) = post(&node, "/v1/agents/counter/rollback");
    assert_eq!((status, v["version"].as_u64(), v["previous_version"].as_u64()), (200, Some(1), Some(2)), "{v}");
    assert_eq!(count(&node), ("inform".into(), N + 2));
    assert_eq!(post(&node, "/v1/agents/counter/rollback").0, 409, "no version before 1");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counter2.wat");
    std::fs::write(&file, &v2).unwrap();
    let out = node.cli(&["agent", "upgrade", "counter", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("from version 1 to version 3"), "{}", String::from_utf8_lossy(&out.stdout));
    node.kill9_and_restart();
    assert_eq!(node.agent("counter")["version"], 3);
    assert_eq!(count(&node), ("agree".into(), N + 3), "the upgraded module and the state came back");
}

fn metric(node: &Node, prefix: &str) -> f64 {
    node.metrics().lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn handled(node: &Node, name: &str) -> u64 {
    node.agent(name)["messages_handled"].as_u64().unwrap()
}

#[test]
fn a_crash_loop_backs_off_then_is_quarantined_and_a_restart_lifts_it() {
    let node = Node::start(1);
    let body = std::fs::read(repo_path("tests/agents/crashy.wat")).unwrap();
    let policy = "restart_immediate=2&restart_backoff_ms=100&restart_backoff_max_ms=200&quarantine_after=5&restart_window_ms=60000";
    let (status, v) = common::answer(node.request("PUT", &format!("/v1/agents/crashy?{policy}")).send_bytes(&body));
    assert_eq!(status, 201, "{v}");
    assert_eq!(node.agent("crashy")["restart_policy"]["quarantine_after"], 5);
    let bad = common::answer(node.request("PUT", "/v1/agents/other?quarantine_after=1&restart_immediate=3").send_bytes(&body));
    assert_eq!((bad.0, bad.1["error"]["code"].as_str()), (400, Some("invalid_policy")), "{}", bad.1);

    let crash = || node.post_message(&json!({"receiver": "crashy", "content": "crash"}), Some(10_000));
    let reason = |a: &(u16, Value)| a.1["content"].as_str().unwrap_or("").to_string();
    for i in 1..=2 {
        assert_eq!(reason(&crash()), "crashed_handler", "crash {i}: recreated at once");
    }
    // The third crash backs off: a message sent meanwhile waits, then runs.
    assert_eq!(reason(&crash()), "crashed_handler");
    let standing = node.agent("crashy")["instance_stats"][0]["standing"].as_str().unwrap().to_string();
    assert_eq!(standing, "backing_off");
    let (status, _) = node.post_message(&json!({"receiver": "crashy", "content": "hello"}), None);
    assert_eq!(status, 202, "a backing-off agent still takes mail");
    assert!(eventually(Duration::from_secs(5), || handled(&node, "crashy") == 1), "handled after its backoff");
    // That message ended the row of crashes (supervision rule 1). A new
    // row: 2 at once, 3 backing off longer each, and the 6th is too many.
    for _ in 1..=6 {
        assert_eq!(reason(&crash()), "crashed_handler");
    }
    let agent = node.agent("crashy");
    assert_eq!((agent["quarantined"].as_bool(), agent["instance_stats"][0]["standing"].as_str()), (Some(true), Some("quarantined")), "{agent}");
    let began = Instant::now();
    let failed = node.post_message(&json!({"receiver": "crashy", "content": "hello"}), Some(10_000));
    assert_eq!((failed.1["performative"].as_str(), reason(&failed)), (Some("failure"), "quarantined".to_string()), "{}", failed.1);
    assert!(began.elapsed() < Duration::from_secs(5), "failed back at once");
    assert_eq!(handled(&node, "crashy"), 1, "a quarantined agent handles nothing");
    assert_eq!(metric(&node, "caxton_agent_instances{shard=\"0\",standing=\"quarantined\"}"), 1.0);
    assert_eq!(metric(&node, "caxton_agent_quarantines_total"), 1.0);
    assert!(metric(&node, "caxton_agent_restarts_total") >= 4.0);
    assert_eq!(metric(&node, "caxton_failure_notices_total{shard=\"0\",reason=\"quarantined\"}"), 1.0);

    let out = node.cli(&["agent", "restart", "crashy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 instance(s) lifted"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(node.agent("crashy")["instance_stats"][0]["standing"], "running");
    assert_eq!(node.post_message(&json!({"receiver": "crashy", "content": "hello"}), None).0, 202);
    assert!(eventually(Duration::from_secs(5), || handled(&node, "crashy") == 2), "handled again after the restart");
    assert_eq!(reason(&crash()), "crashed_handler", "a fresh row of crashes");
    assert_eq!(node.agent("crashy")["instance_stats"][0]["standing"], "running");
}

#[test]
fn sigterm_during_a_stream_handles_or_fails_back_every_accepted_message_and_exits_0() {
    let mut node = with_wire(2, &["--drain-timeout", "700ms"]);
    let (v1, _) = counters();
    assert_eq!(node.put_module("counter", 1, &v1).0, 201);
    assert_eq!(node.deploy("molasses", "tests/agents/molasses.wat", 1).0, 201);

    // Slow work through the wire: more than the drain can finish.
    const SLOW: u64 = 1000; // about 2 s of work
    let (mut r, mut w, _, _) = wire::connect(node.wire.as_deref().unwrap(), None).unwrap();
    for i in 1..=SLOW {
        w.send(&Header { reply_with: i, ..Header::default() }, b"molasses", b"").unwrap();
    }
    w.flush().unwrap();
    // The client reads its notices as they come, as a client must: one that
    // does not stops the node's reads of its socket (TCP back-pressure), and
    // frames unread at the stop are not taken.
    let notices = std::thread::spawn(move || {
        let mut failed = Vec::new();
        while let Ok(Some(bytes)) = r.envelope() {
            let e = Envelope::parse(&bytes).unwrap();
            assert_eq!((e.performative(), e.content()), (Performative::Failure, &b"node_down"[..]));
            failed.push(e.header().in_reply_to);
        }
        failed
    });
    // Fast work through REST, fire and forget, until the node stops taking it.
    let api = node.api();
    let stream = std::thread::spawn(move || {
        let (mut accepted, mut refused) = (0u64, Vec::new());
        loop {
            let r = ureq::post(&format!("http://{api}/v1/messages")).send_json(json!({"receiver": "counter", "content": ""}));
            match common::answer_or_gone(r) {
                Some((202, _)) => accepted += 1,
                Some((status, v)) => refused.push((status, v["error"]["code"].as_str().unwrap_or("").to_string())),
                None => return (accepted, refused),
            }
        }
    });
    std::thread::sleep(Duration::from_millis(400));
    let began = Instant::now();
    let status = node.terminate();
    let took = began.elapsed();
    assert!(status.success(), "exit 0 after a drain: {status}");
    assert!(took < Duration::from_secs(8), "within the drain timeout and its grace: {took:?}");
    let (accepted, refused) = stream.join().unwrap();
    assert!(accepted > 0, "the stream ran");
    assert!(refused.iter().all(|(s, code)| *s == 503 && code == "shutting_down"), "while draining, new work is refused: {refused:?}");

    // The slow messages: a prefix handled, the rest failed back, in order.
    let mut failed = notices.join().unwrap();
    assert!(!failed.is_empty() && (failed.len() as u64) < SLOW, "some handled, some failed back: {} failed", failed.len());
    failed.sort_unstable();
    let first = failed[0];
    assert_eq!(failed, (first..=SLOW).collect::<Vec<_>>(), "every message after the last handled is failed back, each once");
    // No scrape sees the stop's own counts: each shard's last line does, and
    // together they count every message failed back.
    let logs = node.logs();
    let finals: Vec<&str> = logs.lines().filter(|l| l.contains("shard stopped; its final counts")).collect();
    assert_eq!(finals.len(), 2, "one line a shard: {logs}");
    let stopped: u64 = finals
        .iter()
        .filter_map(|l| l.split("node_stopped=").nth(1))
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(stopped, failed.len() as u64, "{finals:?}");

    // Every accepted REST message was handled (and committed).
    let wal: u64 = (0..2).map(|s| std::fs::metadata(node.dir.path().join(format!("data/shard-{s}.db-wal"))).map_or(0, |m| m.len())).sum();
    assert_eq!(wal, 0, "the WAL was checkpointed and truncated");
    node.restart();
    assert_eq!(count(&node), ("inform".into(), accepted + 1), "each of the {accepted} accepted messages was handled once");
}

#[test]
fn a_restart_takes_compiled_modules_from_the_cache_and_off_compiles_them() {
    let mut node = Node::start_with(1, &["--log-format", "json"]);
    for i in 0..12 {
        // Twelve different modules (a different constant each).
        let wat = format!(
            r#"(module (memory (export "memory") 1) (global i32 (i32.const {i}))
            (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))"#
        );
        assert_eq!(node.put_module(&format!("m{i}"), 1, wat.as_bytes()).0, 201);
    }
    let restored = |node: &Node| -> (u64, u64) {
        let line = node
            .logs()
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["fields"]["message"] == "agents restored")
            .expect("a restore line");
        (line["fields"]["modules_cached"].as_u64().unwrap(), line["fields"]["modules_compiled"].as_u64().unwrap())
    };
    node.terminate();
    node.restart();
    assert_eq!(restored(&node), (12, 0), "every module from the cache");
    let entries = std::fs::read_dir(node.dir.path().join("data/modules")).unwrap().count();
    assert_eq!(entries, 12);
    node.terminate();
    node.restart_with(&["--module-cache", "off"]);
    assert_eq!(restored(&node), (0, 12), "off: every module compiled");
    node.terminate();
    // A torn or corrupted entry is compiled again, never loaded.
    let entry = std::fs::read_dir(node.dir.path().join("data/modules")).unwrap().next().unwrap().unwrap().path();
    let len = std::fs::metadata(&entry).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&entry).unwrap().set_len(len / 2).unwrap();
    node.restart_with(&[]);
    assert_eq!(restored(&node), (11, 1));
    for i in 0..12 {
        assert_eq!(node.post_message(&json!({"receiver": format!("m{i}"), "content": ""}), None).0, 202, "m{i} serves");
    }
}

#[test]
fn in_a_cluster_an_upgrade_rollback_and_restart_go_to_the_agents_node() {
    const KEY: &str = "lifecycle-test-key-0123456789";
    let start = |ip: &str, join: Option<&str>| {
        let cluster = format!("{ip}:{}", common::free_cluster_port(ip));
        let mut args = vec!["--listen", cluster.as_str(), "--cluster-key", KEY];
        if let Some(j) = join {
            args.extend(["--join", j]);
        }
        (Node::start_on(ip, 1, &args), cluster)
    };
    let (a, a_cluster) = start("127.0.0.1", None);
    let (b, _) = start("127.0.0.2", Some(&a_cluster));
    let (v1, v2) = counters();
    assert_eq!(b.put_module("counter", 1, &v1).0, 201);
    assert!(
        eventually(Duration::from_secs(30), || a.post_message(&json!({"receiver": "counter", "content": ""}), Some(5000)).0 == 200),
        "A routes to B's counter"
    );

    let (status, v) = upgrade(&a, "counter", &v2);
    assert_eq!((status, v["version"].as_u64()), (200, Some(2)), "forwarded to B: {v}");
    assert_eq!(b.agent("counter")["version"], 2);
    assert_eq!(count(&a).0, "agree", "B runs the new version");
    let (status, v) = post(&a, "/v1/agents/counter/rollback");
    assert_eq!((status, v["version"].as_u64()), (200, Some(1)), "{v}");
    let (status, v) = post(&a, "/v1/agents/counter/restart");
    assert_eq!((status, v["instances_lifted"].as_u64()), (200, Some(0)), "{v}");
    assert_eq!(count(&a).0, "inform");
}

/// An upgrade says what the module changes, and a change of ABI version
/// needs `force` (issue 29): the hand-written echo speaks version 1, the
/// Rust SDK's version 2.
#[test]
fn an_upgrade_shows_what_changes_and_an_abi_change_needs_force() {
    let node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let sdk_echo = std::fs::read(common::example_agent("rust-echo")).unwrap();
    let (status, v) = upgrade(&node, "echo", &sdk_echo);
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("abi_change")), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("ABI version 2") && message.contains("version 1") && message.contains("force"), "{message}");
    assert_eq!(node.agent("echo")["version"], 1, "nothing changed");
    let answer = |text: &str| node.post_message(&json!({"receiver": "echo", "content": text}), Some(5_000)).1["content"].clone();
    assert_eq!(answer("still one"), "still one");

    let (status, v) = common::answer(node.request("PUT", "/v1/agents/echo?upgrade=true&force=true").send_bytes(&sdk_echo));
    assert_eq!(status, 200, "{v}");
    let changes = &v["changes"];
    assert_eq!((changes["abi_version"]["from"].as_u64(), changes["abi_version"]["to"].as_u64()), (Some(1), Some(2)), "{changes}");
    let names = |key: &str| changes[key].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(names("exports_added").contains(&"caxton_abi_version".to_string()), "{changes}");
    assert!(
        !names("exports_added").iter().chain(&names("exports_removed")).any(|n| n.starts_with("wasmer_") || n.starts_with("caxton:")),
        "the node's own exports are not the module's: {changes}"
    );
    assert_eq!(answer("now two"), "now two");

    // The CLI: refused without --force (exit 1, the reason said), then taken
    // with it, the changes listed.
    let wat = common::repo_path("examples/agents/echo.wat");
    let out = node.cli(&["agent", "upgrade", "echo", wat.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = node.cli(&["agent", "upgrade", "echo", wat.to_str().unwrap(), "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ABI version 2 -> 1") && stdout.contains("- export caxton_abi_version"), "{stdout}");
    assert_eq!(answer("one again"), "one again");
}

/// Issue 29: `caxton backup` copies a running node's data while an agent
/// writes its state, and a node started from the copy has the agents, the
/// per-instance and per-key state and the versions as they were at the
/// backup, not what came after.
#[test]
fn a_node_restored_from_a_backup_taken_while_it_ran_has_what_it_had() {
    let mut node = Node::start(2);
    assert_eq!(node.deploy("counter", "examples/agents/counter.wat", 1).0, 201);
    assert_eq!(node.deploy("busy", "examples/agents/counter.wat", 1).0, 201);
    let kv = std::fs::read(caxton_testkit::example_agent("rust-kv")).unwrap();
    assert_eq!(caxton_testkit::answer(node.request("PUT", "/v1/agents/kv?keyed=true").send_bytes(&kv)).0, 201);
    let ask = |node: &Node, to: &str, content: &str| {
        node.post_message(&json!({ "receiver": to, "content": content }), Some(5000)).1["content"].as_str().unwrap_or("").to_string()
    };
    for _ in 0..5 {
        ask(&node, "counter", "x");
    }
    assert_eq!(ask(&node, "kv/alice", "put blue"), "alice: ok");

    // The backup runs while `busy` writes its state as fast as it can.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, url) = (stop.clone(), node.url("/v1/messages?reply_timeout_ms=5000"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = ureq::post(&url).set("content-type", "application/json").send_json(json!({ "receiver": "busy", "content": "x" }));
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let backup = node.dir.path().join("backup");
    let data = node.dir.path().join("data");
    let out = std::process::Command::new(common::BIN).args(["backup", "--data-dir"]).arg(&data).arg("--to").arg(&backup).output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("backed up 3 agent(s)") && said.contains("node.db") && said.contains("shard-1.db"), "{said}");
    assert!(written > 10, "busy was written to during the backup: {written}");

    // After the backup: more counts and another value, then kill -9.
    for _ in 0..3 {
        ask(&node, "counter", "x");
    }
    assert_eq!(ask(&node, "kv/alice", "put red"), "alice: ok");
    let busy_after = ask(&node, "busy", "x").parse::<u64>().unwrap();
    node.kill9();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&backup, &data).unwrap();
    node.restart();

    assert_eq!(ask(&node, "counter", "x"), "6", "five counted before the backup, none after");
    assert_eq!(ask(&node, "kv/alice", "get"), "alice: blue");
    let busy = ask(&node, "busy", "x").parse::<u64>().unwrap();
    assert!(busy >= 1 && busy < busy_after, "busy's count is one of the backup's moment: {busy} (it had reached {busy_after})");
    assert_eq!(node.get("/v1/agents").1["agents"].as_array().unwrap().len(), 3);
}
