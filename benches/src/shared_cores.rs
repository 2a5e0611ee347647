//! REST round trips when nodes share cores (issue 19): `nodes` real
//! single-core `caxton serve` processes in a cluster on one machine, more
//! shards than cores: node `i` may use CPU `i % cpus` alone (`taskset`), so
//! it pins its shard there and the nodes spread over the cores. A client
//! asks an echo on the node it talks to, and one on another node; the
//! same round trip to the local echo is the baseline.

use std::time::{Duration, Instant};

use caxton_testkit::node::{Node, NodeSpec};
use hdrhistogram::Histogram;

const KEY: &str = "caxton-bench-shared-cores-key-0123";

/// (local, remote) round trips through node A's API, `rounds` each.
pub fn round_trips(nodes: usize, rounds: usize) -> (Histogram<u64>, Histogram<u64>) {
    assert!(nodes >= 2);
    let mut members: Vec<Node> = Vec::new();
    let mut first = String::new();
    for i in 0..nodes {
        let ip = format!("127.0.0.{}", i + 1);
        let listen = format!("{ip}:{}", caxton_testkit::free_cluster_port(&ip));
        let mut args = vec!["--listen", listen.as_str(), "--cluster-key", KEY];
        if i > 0 {
            args.extend(["--join", first.as_str()]);
        }
        let cpus = caxton_shards::executor::allowed_cpus();
        let wrap = vec!["taskset".to_string(), "-c".to_string(), cpus[i % cpus.len()].to_string()];
        members.push(Node::launch(NodeSpec { ip: ip.clone(), wrap, ..NodeSpec::new(1).args(&args) }).unwrap_or_else(|e| panic!("{e}")));
        if i == 0 {
            first = listen;
        }
    }
    let echo = std::fs::read(crate::routing::agents_dir().join("echo.wat")).unwrap();
    assert_eq!(members[0].put_module("echo-near", 1, &echo).0, 201);
    assert_eq!(members[1].put_module("echo-far", 1, &echo).0, 201);
    let ask = |receiver: &str| members[0].post_message(&serde_json::json!({"receiver": receiver, "content": "x"}), Some(5000)).0 == 200;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ask("echo-far") {
        assert!(Instant::now() < deadline, "echo-far never became reachable");
        std::thread::sleep(Duration::from_millis(50));
    }
    let time = |receiver: &str| {
        let mut h = crate::histogram();
        for _ in 0..rounds {
            let t = Instant::now();
            assert!(ask(receiver));
            h.saturating_record(t.elapsed().as_nanos() as u64);
            std::thread::sleep(Duration::from_millis(2)); // a request every few ms: idle, not a flood
        }
        h
    };
    let _ = time("echo-far"); // warm the link
    let remote = time("echo-far");
    let local = time("echo-near");
    (local, remote)
}
