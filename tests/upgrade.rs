//! A rolling upgrade of a 2-node cluster between two different builds
//! (issue 29): both nodes start on the baseline build (the commit in
//! `tests/upgrade-baseline`, built by `scripts/build-baseline.sh`), hold
//! agents, state, keys and a durable timer, and exchange messages; then
//! each in turn is stopped (SIGTERM, a drain) and started on this build on
//! the same data dir and addresses. In the mixed cluster and after it,
//! every path must still work: membership, messages both ways over the
//! links, agent-to-agent relays, keyed agents reached from the other node,
//! state and timers written by the old build, and the catalog's versions.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::{members, state_and_boot as state_of};
use common::{eventually, example_agent, free_cluster_port, Node};
use serde_json::json;

const KEY: &str = "upgrade-test-key-0123456789";

struct Member {
    node: Node,
    cluster: String,
}

fn start(ip: &str, join: Option<&str>, binary: PathBuf) -> Member {
    let cluster = format!("{ip}:{}", free_cluster_port(ip));
    let mut args = vec!["--listen", &cluster, "--cluster-key", KEY];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    let spec = caxton_testkit::node::NodeSpec { binary, ip: ip.into(), ..caxton_testkit::node::NodeSpec::new(2).args(&args) };
    Member { node: Node::launch(spec).unwrap_or_else(|e| panic!("{e}")), cluster }
}

fn ask(from: &Node, receiver: &str, content: &str) -> (u16, String) {
    let (status, v) = from.post_message(&json!({ "receiver": receiver, "content": content }), Some(5000));
    (status, v["content"].as_str().unwrap_or(&v.to_string()).to_string())
}

fn count(from: &Node, counter: &str) -> u64 {
    let (status, content) = ask(from, counter, "x");
    assert_eq!(status, 200, "{counter} from {}: {content}", from.api());
    content.parse().unwrap_or_else(|_| panic!("{counter} answered {content:?}"))
}

fn commit_of(n: &Node) -> String {
    n.health()["commit"].as_str().unwrap().to_string()
}

/// Both see both alive, `a` on boot `a_boot` and `b` on `b_boot`.
fn converged(a: &Member, b: &Member, a_boot: u64, b_boot: u64) {
    for m in [a, b] {
        let seen = |n: &Member| state_of(&m.node, &n.cluster);
        let ok = eventually(Duration::from_secs(30), || seen(a) == ("alive".into(), a_boot) && seen(b) == ("alive".into(), b_boot));
        assert!(ok, "{} sees {:?}", m.cluster, members(&m.node));
    }
}

/// Every path across the two nodes, with the counters' expected values
/// before: each counter answers one more than it did.
fn every_path_works(a: &Member, b: &Member, counts: &mut (u64, u64)) {
    // Names spread after a (re)start: wait until each side routes to the other.
    assert!(eventually(Duration::from_secs(15), || ask(&a.node, "relay-b", "relay-a") == (200, "done".into())));
    assert!(eventually(Duration::from_secs(15), || ask(&b.node, "relay-a", "relay-b") == (200, "done".into())));
    // State written by whichever build ran before, read and advanced now.
    assert_eq!(count(&a.node, "count-b"), counts.1 + 1, "count-b from A");
    assert_eq!(count(&b.node, "count-a"), counts.0 + 1, "count-a from B");
    assert_eq!(count(&a.node, "count-a"), counts.0 + 2, "count-a from A");
    *counts = (counts.0 + 2, counts.1 + 1);
    // A keyed type on B, its keys reached from A: the value put before.
    assert_eq!(ask(&a.node, "kv/alice", "get"), (200, "alice: blue".into()));
    assert_eq!(ask(&b.node, "kv/bob", "get"), (200, "bob: green".into()));
}

/// Stops `m` with SIGTERM (its drain), then starts `binary` on its data
/// dir and addresses, while `other` keeps serving its own agents: every
/// request `other` answered meanwhile came back, in order, none lost.
fn upgrade(m: &mut Member, other: &Member, binary: PathBuf) {
    let url = other.node.url("/v1/messages?reply_timeout_ms=5000");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let local = if other.cluster.starts_with("127.0.0.1") { "echo-a" } else { "echo-b" };
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut answered = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({ "receiver": local, "content": format!("n{answered}") });
                let (status, v) = common::answer(ureq::post(&url).send_json(body));
                assert_eq!((status, v["content"].as_str()), (200, Some(format!("n{answered}").as_str())), "{v}");
                answered += 1;
            }
            answered
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let status = m.node.terminate();
    assert!(status.success(), "the drain ends with success: {status}");
    // While it is away, a message to its agents fails at once, never hangs.
    let started = Instant::now();
    let (status, _) = ask(&other.node, if m.cluster.starts_with("127.0.0.1") { "count-a" } else { "count-b" }, "x");
    assert_ne!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    m.node.set_binary(binary);
    m.node.restart();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = load.join().expect("every request to the other node was answered");
    assert!(answered > 10, "{answered} requests during the upgrade");
}

#[test]
fn a_two_node_cluster_upgrades_node_by_node_to_this_build() {
    let baseline = caxton_testkit::baseline_binary();
    let old_commit: String = std::fs::read_to_string(common::repo_path("target/baseline/commit")).unwrap().trim().chars().take(12).collect();
    let new_commit = env!("CAXTON_COMMIT");
    // (Equal only in a checkout of the baseline itself with changes not yet
    // committed: the commit naming a baseline is always a later one.)

    let mut a = start("127.0.0.1", None, baseline.clone());
    let mut b = start("127.0.0.2", Some(&a.cluster), baseline);
    converged(&a, &b, 1, 1);
    assert_eq!((commit_of(&a.node), commit_of(&b.node)), (old_commit.clone(), old_commit.clone()));

    for (m, side) in [(&a, "a"), (&b, "b")] {
        for (kind, file) in [("count", "examples/agents/counter.wat"), ("relay", "examples/agents/relay.wat"), ("echo", "examples/agents/echo.wat")] {
            let (status, v) = m.node.deploy(&format!("{kind}-{side}"), file, 1);
            assert_eq!(status, 201, "{v}");
        }
    }
    let kv = std::fs::read(example_agent("rust-kv")).unwrap();
    assert_eq!(common::answer(b.node.request("PUT", "/v1/agents/kv?keyed=true").send_bytes(&kv)).0, 201);
    // A keyed timer on A that, when it fires 2 s on, sends to `counter` on B.
    let timer = std::fs::read(common::repo_path("tests/agents/timer_relay.wat")).unwrap();
    assert_eq!(common::answer(a.node.request("PUT", "/v1/agents/relay?keyed=true").send_bytes(&timer)).0, 201);
    assert_eq!(b.node.deploy("counter", "examples/agents/counter.wat", 1).0, 201);
    let hash_before = a.node.agent("count-a")["module_hash"].clone();

    let mut counts = (0, 0);
    assert!(eventually(Duration::from_secs(15), || ask(&a.node, "kv/alice", "put blue") == (200, "alice: ok".into())));
    assert_eq!(ask(&b.node, "kv/bob", "put green"), (200, "bob: ok".into()));
    every_path_works(&a, &b, &mut counts);

    // A goes first, with a durable timer of the old build due while it is away.
    assert_eq!(a.node.post_message(&json!({ "receiver": "relay/r1", "content": "" }), None).0, 202);
    upgrade(&mut a, &b, caxton_testkit::binary());
    assert_eq!((commit_of(&a.node), commit_of(&b.node)), (new_commit.to_string(), old_commit.clone()), "a mixed cluster");
    converged(&a, &b, 2, 1);
    every_path_works(&a, &b, &mut counts);
    let fired = eventually(Duration::from_secs(10), || b.node.agent("counter")["messages_handled"] == 1);
    assert!(fired, "the old build's timer fired once on the new one: {}", b.node.agent("counter"));

    // Then B.
    upgrade(&mut b, &a, caxton_testkit::binary());
    assert_eq!((commit_of(&a.node), commit_of(&b.node)), (new_commit.to_string(), new_commit.to_string()));
    converged(&a, &b, 2, 2);
    every_path_works(&a, &b, &mut counts);
    assert_eq!(count(&a.node, "counter"), 2, "the timer's message counted once, across B's upgrade too");
    // The catalog the old build wrote: the same agents, versions and modules.
    let agent = a.node.agent("count-a");
    assert_eq!((agent["version"].as_u64(), agent["module_hash"].clone()), (Some(1), hash_before));
    let listed = a.node.get("/v1/agents?cluster=true").1;
    let names: Vec<&str> = listed["agents"].as_array().unwrap().iter().filter_map(|x| x["name"].as_str()).collect();
    for name in ["count-a", "relay-a", "echo-a", "count-b", "relay-b", "echo-b", "kv", "relay", "counter"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}
