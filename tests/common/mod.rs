//! What every integration test file shares: the harness of `caxton-testkit`
//! (a real `caxton serve` process per node), and the binary under test.
#![allow(dead_code, unused_imports)]

pub mod cluster;

pub use caxton_testkit::wire;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

pub use caxton_testkit::{answer, answer_or_gone, eventually, example_agent, free_cluster_port, promtool_check, repo_path, with_nonce, Node};

/// The `caxton` binary these tests run (the same one `Node` starts).
pub const BIN: &str = env!("CARGO_BIN_EXE_caxton");

/// The client side of a link handshake with `ring`, as node `127.0.0.9:9`
/// (`caxton_cluster::session`); `forge` alters its first record, which a
/// server must then refuse.
pub fn link_client(addr: &str, ring: &caxton_cluster::KeyRing, forge: bool) -> (std::net::TcpStream, caxton_cluster::session::Session) {
    use caxton_cluster::session;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let (pending, hello) = session::client_hello(ring, session::Mode::Sealed);
    s.write_all(&hello).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut answer = vec![0u8; u16::from_le_bytes(len) as usize];
    s.read_exact(&mut answer).unwrap();
    let (session, mut confirm) = pending.finish(&answer, addr, "127.0.0.9:9").unwrap();
    if forge {
        *confirm.last_mut().unwrap() ^= 1;
    }
    s.write_all(&confirm).unwrap();
    (s, session)
}

/// Tests that time a well-behaved agent beside a hostile one, or load the
/// machine, run one at a time (within their test binary), so that they
/// measure the node, not each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Round trips to `echo` while `feed` keeps the hostile agent busy; returns
/// the sorted round-trip times.
pub fn echo_times_while(node: &Node, hostile: &str, rounds: usize) -> Vec<Duration> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = node.post_message(&json!({"receiver": hostile, "content": "go"}), None);
                if status == 429 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let mut times = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let (status, reply) = node.post_message(&json!({"receiver": "echo", "content": "still here"}), Some(5000));
            times.push(t.elapsed());
            assert_eq!((status, reply["content"].as_str()), (200, Some("still here")));
        }
        stop.store(true, Ordering::Relaxed);
        times.sort();
        times
    })
}

pub fn assert_served(times: &[Duration]) {
    let median = times[times.len() / 2];
    let max = *times.last().unwrap();
    println!("echo round trip beside the hostile agent: median {median:?}, max {max:?}");
    // One execution time slice is 10 ms: a neighbour waits for at most one.
    assert!(median < Duration::from_millis(60), "median echo round trip {median:?}");
    assert!(max < Duration::from_millis(500), "slowest echo round trip {max:?}");
}
