//! Resource limits and isolation, against real `caxton serve` processes:
//! hostile agents run beside a well-behaved one on the same shard, and the
//! well-behaved one keeps being served.
//!
//! The latency bounds here are loose on purpose (these machines have rare
//! stalls of tens of milliseconds): they catch a shard held for seconds by a
//! hostile agent, not a slow day. Exact figures are the benchmarks' job.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{assert_served, echo_times_while, eventually, serial, Node};
use serde_json::json;

fn one_shard_with(hostile: &str, file: &str) -> Node {
    let node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert_eq!(node.deploy(hostile, file, 1).0, 201);
    node
}

#[test]
fn an_infinite_loop_is_stopped_at_its_time_slice_and_counted_as_a_timeout() {
    let _serial = serial();
    let node = one_shard_with("spinner", "tests/agents/spinner.wat");
    let times = echo_times_while(&node, "spinner", 30);
    assert_served(&times);
    let v = node.agent("spinner");
    assert_eq!(v["messages_handled"], 0);
    let health = node.health();
    let timeouts = health["shards"][0]["agent_timeouts"].as_u64().unwrap();
    assert!(timeouts > 0, "{health}");
    assert_eq!(health["shards"][0]["dead_letters"]["timed_out"].as_u64(), Some(timeouts));
    assert!(node.metrics().contains("caxton_timeout_errors_total{shard=\"0\"} "));
    // Its restart policy (the default) recreated it at once after the first
    // timeouts, then backed off, and past ten in a row quarantined it.
    let i = &v["instance_stats"][0];
    assert!(i["restarts"].as_u64().unwrap() >= 3.min(timeouts), "recreated after its first timeouts: {i}");
    assert_eq!(i["crashes_in_a_row"].as_u64(), Some(timeouts), "every timeout counts in the row: {i}");
    assert_eq!(i["standing"] == "quarantined", timeouts > 10, "quarantined past ten in a row: {i}");
}

#[test]
fn a_memory_bomb_stops_at_the_memory_limit_inside_the_agent() {
    let _serial = serial();
    let node = one_shard_with("bomb", "tests/agents/memory_bomb.wat");
    let times = echo_times_while(&node, "bomb", 20);
    assert_served(&times);
    let v = node.agent("bomb");
    assert!(v["messages_handled"].as_u64().unwrap() > 0);
    assert_eq!(v["errors"], 0, "growth stopped at or below 10 MB: {v}");
    assert_eq!(v["crashes"], 0);
    let memory = v["instance_stats"][0]["memory_bytes"].as_u64().unwrap();
    assert!(memory <= 10_000_000 && memory > 9_000_000, "{memory}");
}

#[test]
fn a_table_bomb_stops_at_the_table_limit_inside_the_agent() {
    let _serial = serial();
    let node = one_shard_with("tables", "tests/agents/table_bomb.wat");
    let times = echo_times_while(&node, "tables", 20);
    assert_served(&times);
    let v = node.agent("tables");
    assert!(v["messages_handled"].as_u64().unwrap() > 0);
    assert_eq!((v["errors"].as_u64(), v["crashes"].as_u64()), (Some(0), Some(0)), "{v}");
}

#[test]
fn unbounded_recursion_traps_the_agent_not_the_node() {
    let _serial = serial();
    let node = one_shard_with("deep", "tests/agents/recursion.wat");
    let times = echo_times_while(&node, "deep", 20);
    assert_served(&times);
    let v = node.agent("deep");
    assert!(v["crashes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["messages_handled"], 0);
    assert!(node.logs().contains("call stack exhausted"), "the trap names the cause");
}

#[test]
fn a_flood_of_sends_to_a_slow_receiver_is_pushed_back_while_neighbours_are_served() {
    let _serial = serial();
    let node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert_eq!(node.deploy("slow", "tests/agents/slow.wat", 1).0, 201);
    assert_eq!(node.deploy("flooder", "tests/agents/flooder.wat", 1).0, 201);
    let stop = AtomicBool::new(false);
    let times = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                node.post_message(&json!({"receiver": "flooder", "content": "slow"}), None);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let (status, _) = node.post_message(&json!({"receiver": "echo", "content": "x"}), Some(5000));
            assert_eq!(status, 200);
            times.push(t.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
        times.sort();
        times
    });
    assert_served(&times);
    let health = node.health();
    assert!(health["shards"][0]["busy"].as_u64().unwrap() > 0, "the flood met back-pressure");
}

#[test]
fn hostile_modules_are_refused_at_deploy_with_the_reason() {
    let _serial = serial();
    let node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let cases = [
        ("loops", "tests/agents/start_loops.wat", "its start function ran past its execution time slice"),
        ("bigdata", "tests/agents/data_too_big.wat", "instantiation failed"),
        ("bigmem", "tests/agents/huge_memory.wat", "over the agent memory limit"),
        ("bigtable", "tests/agents/huge_table.wat", "over the agent limit of 10000"),
    ];
    for (name, file, why) in cases {
        let t = Instant::now();
        let (status, v) = node.deploy(name, file, 1);
        assert_eq!(status, 400, "{name}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{name}: {v}");
        assert!(t.elapsed() < Duration::from_secs(10), "refused promptly");
        let (status, reply) = node.post_message(&json!({"receiver": "echo", "content": "ok"}), Some(5000));
        assert_eq!((status, reply["content"].as_str()), (200, Some("ok")));
    }
    let (_, list) = node.get("/v1/agents");
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);
}

#[test]
fn admission_refuses_past_the_memory_budget_and_max_agents_naming_the_setting() {
    let _serial = serial();
    // 600 MB of base and buffers, plus 3 agents of 10 MB + 1 MiB + 2 MB
    // (13.05 MB each) fit in 650 MB; a fourth does not.
    let node = Node::start_with(1, &["--memory-budget", "650MB", "--max-agents", "5"]);
    for i in 0..3 {
        assert_eq!(node.deploy(&format!("a{i}"), "tests/agents/small.wat", 1).0, 201);
    }
    let (status, v) = node.deploy("a3", "tests/agents/small.wat", 1);
    assert_eq!((status, v["error"]["code"].as_str()), (507, Some("over_capacity")), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("--memory-budget") && message.contains("--agent-memory-max"), "{message}");
    // A module that declares a 1-page maximum is charged 64 KiB, not 10 MB:
    // two of them (3.1 MB each) still fit.
    let one_page = "(module (memory (export \"memory\") 1 1)
        (func (export \"caxton_alloc\") (param i32) (result i32) (i32.const 1024))
        (func (export \"caxton_handle\") (param i32 i32) (result i32) (i32.const 0)))";
    assert_eq!(node.put_module("tiny", 2, one_page.as_bytes()).0, 201);
    let (status, v) = node.put_module("tiny2", 1, one_page.as_bytes());
    assert_eq!(status, 507);
    assert!(v["error"]["message"].as_str().unwrap().contains("--max-agents"), "{v}");
    // Stopping an agent gives its charge back.
    assert_eq!(node.delete("/v1/agents/a0").0, 204);
    assert_eq!(node.deploy("a3", "tests/agents/small.wat", 1).0, 201);
}

#[test]
fn the_config_file_sets_limits_and_bad_settings_are_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caxton.toml");
    std::fs::write(&path, "memory_budget = \"640MB\"\nmax_agents = 2\n").unwrap();
    let node = Node::start_with(1, &["--config", path.to_str().unwrap()]);
    assert_eq!(node.deploy("a", "tests/agents/small.wat", 2).0, 201);
    assert_eq!(node.deploy("b", "tests/agents/small.wat", 1).0, 507);
    std::fs::write(&path, "max_agent = 2\n").unwrap();
    let out = std::process::Command::new(common::BIN).args(["serve", "--config", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_agent"));
    let out = std::process::Command::new(common::BIN).args(["serve", "--agent-memory-max", "10 furlongs"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn connections_past_max_connections_get_503_at_once() {
    let _serial = serial();
    let node = Node::start_with(1, &["--max-connections", "3"]);
    let idle: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(node.api()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let (status, v) = common::answer(ureq::get(&node.url("/v1/agents")).call());
    assert_eq!((status, v["error"]["code"].as_str()), (503, Some("unavailable")), "{v}");
    assert!(t.elapsed() < Duration::from_secs(2), "refused, not hung");
    drop(idle);
    assert!(eventually(Duration::from_secs(5), || node.get("/v1/agents").0 == 200));
}

#[test]
fn ten_thousand_agents_fit_on_one_node() {
    let _serial = serial();
    // The ADR's 10 MB memory limit per agent, and a budget that admits
    // 10,000 such agents: memories are bounds-checked "dynamic" ones, so no
    // agent reserves its maximum.
    let node = Node::start_with(2, &["--memory-budget", "200GB"]);
    let rss = |node: &Node| {
        let m = node.metrics();
        m.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")?.parse::<f64>().ok()).unwrap()
    };
    let before = rss(&node);
    let body = std::fs::read(common::repo_path("tests/agents/small.wat")).unwrap();
    const AGENTS: usize = 10_000;
    const CLIENTS: usize = 4;
    let started = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let (node, body) = (&node, &body);
            s.spawn(move || {
                for i in (c..AGENTS).step_by(CLIENTS) {
                    let (status, v) = node.put_module(&format!("agent-{i}"), 1, body);
                    assert_eq!(status, 201, "agent-{i}: {v}");
                }
            });
        }
    });
    let deploy_time = started.elapsed();
    let (_, list) = node.get("/v1/agents");
    assert_eq!(list["agents"].as_array().unwrap().len(), AGENTS);
    // Every agent answers: message a sample of them.
    for i in (0..AGENTS).step_by(997) {
        assert_eq!(node.post_message(&json!({"receiver": format!("agent-{i}"), "content": "x"}), None).0, 202);
    }
    let after = rss(&node);
    let per_agent = (after - before) / AGENTS as f64;
    println!(
        "10,000 agents: deployed in {deploy_time:?}; resident {:.0} MiB before, {:.0} MiB after, {:.1} KiB per agent",
        before / 1048576.0,
        after / 1048576.0,
        per_agent / 1024.0
    );
    // The per-agent overhead we charge by default (2 MB) must cover what an
    // agent really costs.
    assert!(per_agent < caxton_shards::limits::AGENT_OVERHEAD_BYTES as f64, "{per_agent} bytes per agent");
}

#[test]
fn bulk_memory_loops_are_stopped_at_their_slice_and_no_call_hangs() {
    let _serial = serial();
    // One bulk spinner per shard, once enough to wedge the whole node: every
    // REST call hung, `GET /v1/agents/NAME` included.
    let node = Node::start(2);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 2).0, 201);
    assert_eq!(node.deploy("bulk", "tests/agents/bulk_spinner.wat", 4).0, 201);
    let stop = AtomicBool::new(false);
    let times = std::thread::scope(|s| {
        for c in 0..2u64 {
            let (node, stop) = (&node, &stop);
            s.spawn(move || {
                let mut conversation = c;
                while !stop.load(Ordering::Relaxed) {
                    conversation += 2;
                    let (status, _) = node.post_message(&json!({"receiver": "bulk", "content": "go", "conversation_id": conversation}), None);
                    if status == 429 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut times = Vec::new();
        for i in 0..30u64 {
            let t = Instant::now();
            let (status, reply) = node.post_message(&json!({"receiver": "echo", "content": "still here", "conversation_id": i}), Some(5000));
            times.push(t.elapsed());
            assert_eq!((status, reply["content"].as_str()), (200, Some("still here")));
            let t = Instant::now();
            assert_eq!(node.get("/v1/agents/bulk").0, 200);
            assert!(t.elapsed() < Duration::from_secs(2), "GET /v1/agents/bulk took {:?}", t.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
        times.sort();
        times
    });
    assert_served(&times);
    let v = node.agent("bulk");
    assert!(v["timeouts"].as_u64().unwrap() > 0, "stopped at the slice and counted as timeouts: {v}");
    assert_eq!(v["messages_handled"], 0);
    let health = node.health();
    assert_eq!(health["status"], "ok", "{health}");
}

#[test]
fn a_state_quota_bounds_what_an_agent_stores_and_the_disk_floor_refuses_writes() {
    let _serial = serial();
    let node = Node::start_with(1, &["--agent-state-max", "4MiB"]);
    assert_eq!(node.deploy("hog", "tests/agents/state_hog.wat", 1).0, 201);
    let size = |dir: &std::path::Path| std::fs::read_dir(dir).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum::<u64>();
    let before = size(&node.dir.path().join("data"));
    for round in 0..4 {
        let (status, v) = node.post_message(&json!({"receiver": "hog", "content": "fill"}), Some(20_000));
        assert_eq!(status, 200, "round {round}: {v}");
        let counts = base64_or_text(&v);
        let (ok, over) = (u32::from_le_bytes(counts[..4].try_into().unwrap()), u32::from_le_bytes(counts[4..8].try_into().unwrap()));
        assert!(ok <= 4, "at most 4 values of 1 MiB fit a 4 MiB quota: {ok}");
        assert!(over + ok >= 99, "the rest was refused with -5: ok {ok}, over {over}");
    }
    let grown = size(&node.dir.path().join("data")) - before;
    println!("data dir grew by {} KiB", grown / 1024);
    assert!(grown < 64 * 1024 * 1024, "grew by {grown} bytes for a 4 MiB quota");
    let v = node.agent("hog");
    let held = v["instance_stats"][0]["state_bytes"].as_u64().unwrap();
    assert!(held <= 4 * 1024 * 1024 && held > 0, "{v}");
    assert!(v["instance_stats"][0]["state_writes_refused"].as_u64().unwrap() > 0);
    let m = node.metrics();
    assert!(m.contains("caxton_agent_state_bytes{agent=\"hog\",agent_instance=\"0\",shard=\"0\"} "), "{m}");
    assert!(m.lines().any(|l| l.starts_with("caxton_state_writes_refused_total{shard=\"0\",reason=\"quota\"}") && !l.ends_with(" 0")));
    common::promtool_check(&m);
    drop(node);
    // A node whose disk is "full": every write is refused, and it says so.
    let full = Node::start_with(1, &["--disk-free-min", "1000000GB"]);
    assert_eq!(full.deploy("hog", "tests/agents/state_hog.wat", 1).0, 201);
    let (status, v) = full.post_message(&json!({"receiver": "hog", "content": "fill"}), Some(20_000));
    assert_eq!(status, 200, "{v}");
    let counts = base64_or_text(&v);
    assert_eq!(u32::from_le_bytes(counts[..4].try_into().unwrap()), 0, "nothing stored");
    assert!(full.metrics().lines().any(|l| l.starts_with("caxton_state_writes_refused_total{shard=\"0\",reason=\"disk\"}") && !l.ends_with(" 0")));
    assert!(full.logs().contains("below --disk-free-min"), "a clear log line");
}

/// The bytes of a reply's content (`content` as text, or `content_b64`).
fn base64_or_text(v: &serde_json::Value) -> Vec<u8> {
    match (v["content"].as_str(), v["content_b64"].as_str()) {
        (Some(t), _) => t.as_bytes().to_vec(),
        (None, Some(b)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b).unwrap()
        }
        _ => panic!("no content: {v}"),
    }
}

#[test]
fn an_agents_log_is_bounded_and_cannot_forge_records() {
    let _serial = serial();
    let node = Node::start_with(1, &["--log-format", "json"]);
    assert_eq!(node.deploy("flood", "tests/agents/log_flood.wat", 1).0, 201);
    let log_size = || node.logs().len();
    let before = log_size();
    let t = Instant::now();
    for _ in 0..4 {
        node.post_message(&json!({"receiver": "flood", "content": "go"}), None);
    }
    // Let the handlers run (each tries 100,000 lines).
    assert!(eventually(Duration::from_secs(30), || node.agent("flood")["messages_handled"].as_u64().unwrap()
        + node.agent("flood")["timeouts"].as_u64().unwrap()
        >= 4));
    let elapsed = t.elapsed().as_secs_f64();
    let grown = log_size() - before;
    let (lines, agent_text) = (node.logs().lines().count(), node.logs().lines().filter(|l| l.contains("\"level\":\"ERROR\"")).map(str::len).sum::<usize>());
    println!("log grew by {} KiB in {elapsed:.1} s: {lines} lines, {} KiB of them the agent's", grown / 1024, agent_text / 1024);
    // The burst (640 KiB of text) plus 64 KiB/s, escaped (each newline
    // becomes two bytes) and wrapped in JSON records: a few MiB at most,
    // where 105 MB were written before.
    assert!(grown < 4 * 1024 * 1024, "log grew by {grown} bytes");
    let logs = node.logs();
    let mut agent_lines = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON record ({e}): {line:.200}"));
        assert_ne!(record["fields"]["message"], "forged", "a forged record: {line:.200}");
        if record["fields"]["agent"] == "flood" && record["level"] == "ERROR" {
            agent_lines += 1;
            assert_eq!(record["fields"]["instance"], 0, "every line names its agent and instance");
        }
    }
    assert!(agent_lines > 0, "the agent's lines are there, escaped");
    let dropped: f64 = node
        .metrics()
        .lines()
        .filter(|l| l.starts_with("caxton_agent_log_dropped_total{agent=\"flood\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(dropped > 1000.0, "dropped lines are counted: {dropped}");
}

#[test]
fn only_the_reply_to_a_request_reaches_its_rest_caller() {
    let _serial = serial();
    let node = Node::start(1);
    assert_eq!(node.deploy("silent", "tests/agents/small.wat", 1).0, 201);
    assert_eq!(node.deploy("forger", "tests/agents/reply_forger.wat", 1).0, 201);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let answers = std::thread::scope(|s| {
        let waiting: Vec<_> = (0..5).map(|_| s.spawn(|| node.post_message(&json!({"receiver": "silent", "content": "anyone?"}), Some(2000)))).collect();
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..3 {
            assert_eq!(node.post_message(&json!({"receiver": "forger", "content": "go"}), None).0, 202);
            std::thread::sleep(Duration::from_millis(100));
        }
        waiting.into_iter().map(|w| w.join().unwrap()).collect::<Vec<_>>()
    });
    for (status, v) in answers {
        assert_eq!(status, 504, "a forged reply reached a caller: {v}");
    }
    let (status, v) = node.post_message(&json!({"receiver": "echo", "content": "real"}), Some(5000));
    assert_eq!((status, v["content"].as_str()), (200, Some("real")), "{v}");
    let undeliverable: f64 = node.metrics().lines().find_map(|l| l.strip_prefix("caxton_runtime_undeliverable_total{kind=\"api\"} ")?.parse().ok()).unwrap();
    assert!(undeliverable >= 3000.0, "the forgeries were counted and dropped: {undeliverable}");
}

#[test]
fn a_fixed_inbox_takes_messages_without_caxton_alloc_and_one_past_memory_is_refused() {
    let _serial = serial();
    let node = Node::start(1);
    assert_eq!(node.deploy("inbox", "tests/agents/inbox.wat", 1).0, 201);
    for _ in 0..3 {
        assert_eq!(node.post_message(&serde_json::json!({"receiver": "inbox", "content": "fits"}), None).0, 202);
    }
    assert!(common::eventually(std::time::Duration::from_secs(5), || node.agent("inbox")["messages_handled"] == 3), "{}", node.agent("inbox"));
    assert_eq!(node.agent("inbox")["crashes"], 0, "caxton_alloc was never called, and each envelope was at the inbox");
    // Larger than the inbox: caxton_alloc is called (and traps, here).
    let big = "x".repeat(300);
    let (status, v) = node.post_message(&serde_json::json!({"receiver": "inbox", "content": big}), Some(5000));
    assert_eq!((status, v["content"].as_str()), (200, Some("crashed_handler")), "{v}");
    let (status, v) = node.deploy("bad-inbox", "tests/agents/bad_inbox.wat", 1);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("fixed inbox"), "{v}");
}
