//! Peers without the key or token cannot deny service (issue 25, finding
//! 5), against real `caxton serve` processes. The attacker connects from a
//! loopback address of its own (`127.0.0.50` and up), holds silent
//! connections and reopens them as fast as they close; a real peer or
//! client from the nodes' addresses must still get in.

mod common;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{alive, connect_from, members, metric, start_member};
use common::{eventually, free_cluster_port, Node};
use serde_json::json;

const KEY: &str = "keyless-peers-test-key-0123";

/// Sets its flag when dropped: the attackers stop even when an assertion
/// of the test fails inside their scope.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Holds up to `count` silent connections from `from` to `to`, reopening
/// them as they close, until `stop`. Returns how many connects it made.
fn hold_silent(from: &str, to: &str, count: usize, stop: &AtomicBool) -> usize {
    let mut held: Vec<TcpStream> = Vec::new();
    let mut made = 0;
    while !stop.load(Ordering::Relaxed) {
        // Drop the ones the node closed (a read of 0 or an error).
        held.retain(|s| {
            let _ = s.set_nonblocking(true);
            let mut b = [0u8; 1];
            matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        while held.len() < count {
            match connect_from(from, to) {
                Ok(s) => {
                    made += 1;
                    held.push(s);
                }
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    made
}

#[test]
fn silent_keyless_connections_cannot_lock_a_member_out_of_the_link_listener() {
    let a = start_member("127.0.0.1", KEY, None, &["--max-pending-handshakes", "64"]);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // The attack of the finding: silent connections, more than the
        // pool, reopened as soon as any closes, so the pool stays full.
        let attacker = s.spawn(|| hold_silent("127.0.0.50", &a.cluster, 200, &stop));
        std::thread::sleep(Duration::from_millis(500));
        // A real member joins meanwhile, and its links to A must open.
        let b = start_member("127.0.0.2", KEY, Some(&a.cluster), &[]);
        assert!(eventually(Duration::from_secs(30), || alive(&a.node) == 2 && alive(&b.node) == 2), "{:?}", members(&a.node));
        assert_eq!(a.node.deploy("echo", "examples/agents/echo.wat", 2).0, 201);
        let ask = |conversation: u64| b.node.post_message(&json!({"receiver": "echo", "content": "through", "conversation_id": conversation}), Some(10_000));
        assert!(eventually(Duration::from_secs(10), || ask(0).0 == 200), "B learns where echo is and reaches it");
        for conversation in 1..=20 {
            let (status, v) = ask(conversation);
            assert_eq!((status, v["content"].as_str()), (200, Some("through")), "conversation {conversation}: {v}");
        }
        drop(_stop);
        let made = attacker.join().unwrap();
        assert!(made >= 64, "the attacker held its connections ({made} made)");
    });
    let per_source = metric(&a.node, "caxton_link_refused_total{shard=\"0\",reason=\"pending_per_source\"}")
        + metric(&a.node, "caxton_link_refused_total{shard=\"1\",reason=\"pending_per_source\"}");
    assert!(per_source >= 1.0, "the attacker met its source's share");
}

#[test]
fn silent_connections_cannot_hold_the_wire_listeners_places() {
    let wire = format!("127.0.0.1:{}", free_cluster_port("127.0.0.1"));
    let node = Node::start_with(1, &["--wire", &wire]);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // More silent connections than --wire-connections-max (256), from
        // several sources.
        for from in ["127.0.0.51", "127.0.0.52", "127.0.0.53"] {
            s.spawn(|| hold_silent(from, &wire, 100, &stop));
        }
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..10 {
            let t = Instant::now();
            let (mut rd, mut wr, _name, _handle) = common::wire::connect(&wire, None).expect("a real client gets a place and its hello answered");
            wr.send(&caxton_abi::Header::default(), b"echo", b"served").unwrap();
            wr.flush().unwrap();
            let reply = rd.envelope().unwrap().unwrap();
            assert_eq!(caxton_abi::Envelope::parse(&reply).unwrap().content(), b"served");
            assert!(t.elapsed() < Duration::from_secs(3), "promptly: {:?}", t.elapsed());
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    assert!(metric(&node, "caxton_wire_refused_total") >= 1.0);
}

#[test]
fn silent_connections_cannot_hold_the_apis_places() {
    let node = Node::start_with(1, &["--max-connections", "400"]);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let api = node.api();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // Past --max-connections, from several sources, silent.
        for from in ["127.0.0.54", "127.0.0.55", "127.0.0.56", "127.0.0.57", "127.0.0.58", "127.0.0.59"] {
            s.spawn(|| hold_silent(from, &api, 100, &stop));
        }
        std::thread::sleep(Duration::from_millis(500));
        for i in 0..10 {
            let t = Instant::now();
            let (status, v) = node.post_message(&json!({"receiver": "echo", "content": format!("up {i}")}), Some(5000));
            assert_eq!((status, v["content"].as_str()), (200, Some(format!("up {i}").as_str())), "{v}");
            assert!(t.elapsed() < Duration::from_secs(3), "promptly: {:?}", t.elapsed());
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let closed = metric(&node, "caxton_api_connections_closed_total{reason=\"pending_per_source\"}")
        + metric(&node, "caxton_api_connections_closed_total{reason=\"header_timeout\"}");
    assert!(closed >= 1.0, "silent connections were closed or refused");
}
