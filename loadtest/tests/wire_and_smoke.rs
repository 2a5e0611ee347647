//! The wire listener against a real `caxton serve`, and the load test's
//! smoke mode end to end.

use caxton_shards::envelope::{Header, Message};
use caxton_testkit::node::{Node, NodeSpec};
use caxton_testkit::wire;

/// A node with a wire listener (the harness of `caxton-testkit`), with
/// `extra` flags.
fn serve(extra: &[&str]) -> Node {
    Node::launch(NodeSpec { wire: true, ..NodeSpec::new(2).args(extra) }).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_wire_carries_envelopes_both_ways_and_explains_refusals() {
    let node = serve(&[]);
    let echo = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/agents/echo.wat")).unwrap();
    ureq::put(&format!("http://{}/v1/agents/echo?instances=2", node.api())).send_bytes(&echo).unwrap();

    let (mut r, mut w, name, _) = wire::connect(node.wire.as_deref().unwrap(), None).unwrap();
    assert!(name.starts_with("@wire/"));
    const N: u64 = 5_000;
    for i in 0..N {
        let h = Header { performative: 0, conversation_id: i % 7, reply_with: i + 1, ..Default::default() };
        w.send(&h, b"echo", &i.to_le_bytes()).unwrap();
    }
    let h = Header { reply_with: 99_999, ..Default::default() };
    w.send(&h, b"nobody", b"x").unwrap();
    w.flush().unwrap();
    let mut seen = vec![false; N as usize];
    let mut failure = None;
    for _ in 0..=N {
        let m = Message::decode(r.envelope().unwrap().unwrap()).unwrap();
        assert_eq!(m.receiver(), name.as_bytes());
        if m.performative() == 9 {
            failure = Some(m);
            continue;
        }
        let i = u64::from_le_bytes(m.content().try_into().unwrap());
        assert_eq!(m.in_reply_to(), i + 1);
        assert!(!seen[i as usize], "duplicate {i}");
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|s| *s), "every message answered");
    let failure = failure.expect("a failure notice for the unknown receiver");
    assert_eq!(failure.sender(), b"@node");
    assert_eq!(failure.in_reply_to(), 99_999);
    assert_eq!(failure.content(), b"unknown_receiver", "a machine-readable reason");
}

#[test]
fn the_wire_checks_its_hello_and_token() {
    let node = serve(&["--api-token", "s3cret-0123456789abcdef0123456789"]);
    let err = wire::connect(node.wire.as_deref().unwrap(), None).err().unwrap().to_string();
    assert!(err.contains("refused"), "{err}");
    let err = wire::connect(node.wire.as_deref().unwrap(), Some("wrong")).err().unwrap().to_string();
    assert!(err.contains("wrong token"), "{err}");
    assert!(wire::connect(node.wire.as_deref().unwrap(), Some("s3cret-0123456789abcdef0123456789")).is_ok());
}

#[test]
fn the_load_test_smoke_mode_runs_every_scenario_losing_nothing() {
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_caxton-loadtest")).args(["--smoke", "--out"]).arg(out.path()).output().unwrap();
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let text = String::from_utf8_lossy(&run.stdout);
    for scenario in [
        "steady_state",
        "peak_load",
        "sustained_load",
        "burst_traffic",
        "contract_net",
        "steady_state_stateful",
        "steady_state_two_nodes",
        "active_conversations",
    ] {
        assert!(text.contains(&format!("== {scenario} ==")), "{text}");
        let dir = out.path().join(scenario);
        let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert!(summary["sent"].as_u64().unwrap() > 1000, "{summary}");
        assert_eq!(summary["lost"], 0, "{scenario}");
        assert_eq!(summary["duplicated"], 0, "{scenario}");
        assert_eq!(summary["answered"], summary["sent"], "{scenario}: every one answered rightly");
        assert_eq!(summary["errors"], 0, "{scenario}");
        for file in ["latency.hlog", "latency_percentiles.svg", "rate_over_time.svg"] {
            assert!(std::fs::metadata(dir.join(file)).unwrap().len() > 100, "{scenario}/{file}");
        }
        let load = &summary["host_load"];
        assert!(load["node_cores"].as_f64().unwrap() > 0.0 && load["cores"].as_u64().unwrap() >= 1, "{scenario}: {load}");
    }
    // The report, written by the load test itself (a smoke run: beside
    // its results, not in docs/), with every run and the host's load.
    let report = std::fs::read_to_string(out.path().join("LOADTEST.md")).unwrap();
    assert!(report.starts_with("# Load test") && report.contains("Written by `caxton-loadtest`"), "{report}");
    assert!(report.contains("### Every run, failed ones kept"));
    assert_eq!(report.matches("| contract_net | 1 | ").count(), 2, "its summary row and its one run:\n{report}");
    assert!(std::fs::metadata(out.path().join("loadtest/peak_load-latency.svg")).is_ok(), "the last run's plots beside the report");
}

#[test]
fn repeated_runs_are_each_reported_and_summed_up() {
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_caxton-loadtest"))
        .args(["--smoke", "--scenario", "steady_state", "--repeat", "2", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let report = std::fs::read_to_string(out.path().join("LOADTEST.md")).unwrap();
    assert!(report.contains("| steady_state | 2 | "), "two runs summed up:\n{report}");
    assert!(report.contains("| steady_state | 1 | ") && report.contains("| steady_state | 2 | "), "each run kept:\n{report}");
    assert!(report.contains("2 runs of each of 1 scenario"), "{report}");
}
