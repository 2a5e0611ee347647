//! Metrics, alerts, logs and `caxton top`, against real `caxton serve` processes.

mod common;

use std::time::Duration;

use caxton_shards::placement::shard_of;
use common::{eventually, Node};
use serde_json::json;

/// The value of one sample line `name{labels} value` of a scrape.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
}

fn sum_of(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_count_known_traffic_and_pass_promtool() {
    let node = Node::start(2);
    // Two relays on different shards, and an echo.
    let a = (0..).map(|i| format!("a{i}")).find(|n| shard_of(n.as_bytes(), 0, 2) == 0).unwrap();
    let b = (0..).map(|i| format!("b{i}")).find(|n| shard_of(n.as_bytes(), 0, 2) == 1).unwrap();
    for name in [&a, &b] {
        assert_eq!(node.deploy(name, "examples/agents/relay.wat", 1).0, 201);
    }
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert_eq!(node.deploy("crashy", "tests/agents/crashy.wat", 1).0, 201);
    for _ in 0..10 {
        let (status, _) = node.post_message(&json!({"receiver": a, "content": b}), Some(5000));
        assert_eq!(status, 200);
    }
    for _ in 0..7 {
        assert_eq!(node.post_message(&json!({"receiver": "echo", "content": "x"}), Some(5000)).0, 200);
    }
    assert_eq!(node.post_message(&json!({"receiver": "crashy", "content": "crash"}), None).0, 202);
    assert_eq!(node.post_message(&json!({"receiver": "crashy", "content": "fail"}), None).0, 202);
    assert!(eventually(Duration::from_secs(5), || node.agent("crashy")["crashes"] == 1 && node.agent("crashy")["errors"] == 1));

    let m = node.metrics();
    // 10 requests to a, 10 forwards to b, 7 echoes, 2 to crashy (one trapped).
    assert_eq!(sum_of(&m, "caxton_messages_processed_total"), 28.0, "{m}");
    assert_eq!(sum_of(&m, "caxton_messages_routed_remote_total"), 10.0);
    assert_eq!(sum_of(&m, "caxton_agent_crashes_total"), 1.0);
    assert_eq!(sum_of(&m, "caxton_agent_errors_total"), 1.0);
    let remote_count = sum_of(&m, "caxton_routing_latency_seconds_count");
    assert_eq!(remote_count, 10.0, "routing is recorded for agent-to-agent hops only");
    let shard_b = shard_of(b.as_bytes(), 0, 2);
    assert_eq!(sample(&m, &format!("caxton_routing_latency_seconds_count{{shard=\"{shard_b}\",path=\"remote\"}}")), Some(10.0));
    assert!(sample(&m, &format!("caxton_routing_latency_seconds{{shard=\"{shard_b}\",path=\"remote\",quantile=\"0.5\"}}")).unwrap() > 0.0);
    assert_eq!(sample(&m, &format!("caxton_agent_instance_messages_total{{agent=\"{b}\",instance=\"0\",shard=\"{shard_b}\"}}")), Some(10.0));
    assert_eq!(sum_of(&m, "caxton_messages_dropped_total"), 1.0, "the trapped message is a dead letter");
    assert_eq!(sample(&m, "caxton_agents_deployed"), Some(4.0));
    assert!(sample(&m, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&m, "caxton_network_bytes_total{listener=\"api\",direction=\"received\"}").unwrap() > 0.0);

    common::promtool_check(&m);
}

#[test]
fn a_p99_over_target_is_warned_once_per_window_naming_figure_and_target() {
    let node = Node::start_with(1, &["--alert-window-ms", "300", "--execution-time-slice-ms", "2000"]);
    assert_eq!(node.deploy("sluggish", "tests/agents/sluggish.wat", 1).0, 201);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    for _ in 0..5 {
        assert_eq!(node.post_message(&json!({"receiver": "sluggish", "content": "x"}), None).0, 202);
    }
    assert!(eventually(Duration::from_secs(10), || node.agent("sluggish")["messages_handled"] == 5));
    std::thread::sleep(Duration::from_millis(400));
    // Any tick after the window closes runs the check.
    assert_eq!(node.post_message(&json!({"receiver": "echo", "content": "x"}), Some(5000)).0, 200);
    assert!(eventually(Duration::from_secs(5), || node.logs().contains("processing p99 over its ADR-0017 target")), "{}", node.logs());
    let logs = node.logs();
    let line = logs.lines().find(|l| l.contains("processing p99 over")).unwrap();
    assert!(line.contains("processing_p99_us") && line.contains("target_us") && line.contains("10000"), "{line}");
    assert_eq!(logs.matches("processing p99 over").count(), 1, "once per window, not per message");
}

#[test]
fn json_logs_carry_agent_shard_and_conversation() {
    let node = Node::start_with(1, &["--log-format", "json"]);
    assert_eq!(node.deploy("crashy", "tests/agents/crashy.wat", 1).0, 201);
    assert_eq!(node.post_message(&json!({"receiver": "crashy", "content": "crash", "conversation_id": 4242}), None).0, 202);
    assert!(eventually(Duration::from_secs(5), || node.logs().contains("trapped")));
    let logs = node.logs();
    let line = logs.lines().find(|l| l.contains("trapped")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
    assert_eq!(v["fields"]["agent"], "crashy");
    assert_eq!(v["fields"]["shard"], 0);
    assert_eq!(v["fields"]["conversation"], 4242);
    assert_eq!(v["level"], "WARN");
}

#[test]
fn caxton_top_shows_every_shard_with_rates_and_latencies() {
    let node = Node::start(2);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 2).0, 201);
    let sender = std::thread::scope(|s| {
        let h = s.spawn(|| {
            for _ in 0..200 {
                node.post_message(&json!({"receiver": "echo", "content": "x"}), None);
            }
        });
        let out = node.cli(&["top", "--frames", "2"]);
        h.join().unwrap();
        out
    });
    assert!(sender.status.success(), "{}", String::from_utf8_lossy(&sender.stderr));
    let text = String::from_utf8_lossy(&sender.stdout);
    assert!(text.contains("msg/s") && text.contains("route p99") && text.contains("proc p50"), "{text}");
    let rows = text.lines().filter(|l| l.trim_start().starts_with("0 ") || l.trim_start().starts_with("1 ")).count();
    assert_eq!(rows, 4, "two shards, two frames: {text}");
}
