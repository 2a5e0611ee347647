//! The wire listener against a real `caxton serve`, and the load test's
//! smoke mode end to end.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use caxton_loadtest::wire;
use caxton_shards::envelope::{Header, Message};

fn bin(name: &str) -> PathBuf {
    // Test binaries live in target/<profile>/deps; the crates' binaries one up.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A node: its process, API and wire addresses, and its data dir (kept
/// until the node is gone).
struct Serve(Child, String, String, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(extra: &[&str]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let (api, wire) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let child = Command::new(bin("caxton"))
        .args(["serve", "--cores", "2", "--api", &api, "--wire", &wire, "--data-dir"])
        .arg(dir.path())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("caxton is built beside this test");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("http://{api}/v1/health")).call().is_err() {
        assert!(Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Serve(child, api, wire, dir)
}

#[test]
fn the_wire_carries_envelopes_both_ways_and_explains_refusals() {
    let node = serve(&[]);
    let echo = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/agents/echo.wat")).unwrap();
    ureq::put(&format!("http://{}/v1/agents/echo?instances=2", node.1)).send_bytes(&echo).unwrap();

    let (mut r, mut w, name, _) = wire::connect(&node.2, None).unwrap();
    assert!(name.starts_with("@wire/"));
    const N: u64 = 5_000;
    for i in 0..N {
        let h = Header { performative: 0, conversation_id: i % 7, reply_with: i + 1, ..Default::default() };
        w.send(&Message::encode(&h, b"", b"echo", &i.to_le_bytes()).unwrap()).unwrap();
    }
    let h = Header { reply_with: 99_999, ..Default::default() };
    w.send(&Message::encode(&h, b"", b"nobody", b"x").unwrap()).unwrap();
    w.flush().unwrap();
    let mut seen = vec![false; N as usize];
    let mut failure = None;
    for _ in 0..=N {
        let m = r.message().unwrap().unwrap();
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
    assert!(String::from_utf8_lossy(failure.content()).contains("unknown receiver nobody"));
}

#[test]
fn the_wire_checks_its_hello_and_token() {
    let node = serve(&["--api-token", "s3cret"]);
    let err = wire::connect(&node.2, None).err().unwrap().to_string();
    assert!(err.contains("refused"), "{err}");
    let err = wire::connect(&node.2, Some("wrong")).err().unwrap().to_string();
    assert!(err.contains("wrong token"), "{err}");
    assert!(wire::connect(&node.2, Some("s3cret")).is_ok());
}

#[test]
fn the_load_test_smoke_mode_runs_all_four_scenarios_losing_nothing() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(bin("caxton-loadtest")).args(["--smoke", "--out"]).arg(out.path()).output().unwrap();
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let text = String::from_utf8_lossy(&run.stdout);
    for scenario in ["steady_state", "peak_load", "sustained_load", "burst_traffic"] {
        assert!(text.contains(&format!("== {scenario} ==")), "{text}");
        let dir = out.path().join(scenario);
        let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert!(summary["sent"].as_u64().unwrap() > 1000, "{summary}");
        assert_eq!(summary["lost"], 0, "{scenario}");
        assert_eq!(summary["duplicated"], 0, "{scenario}");
        assert_eq!(summary["answered"], summary["sent"], "{scenario}");
        for file in ["latency.hlog", "latency_percentiles.svg", "rate_over_time.svg"] {
            assert!(std::fs::metadata(dir.join(file)).unwrap().len() > 100, "{scenario}/{file}");
        }
    }
}
