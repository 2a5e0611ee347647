//! An agent's lifecycle through a real `caxton serve`, over its REST API:
//! - deploy to ready (ADR-0017's agent startup): the `PUT` of a module the
//!   node has never seen, its compilation, and the first message answered;
//! - restart to serving with many agents, with the module cache and
//!   without: the node with `count` agents of distinct modules is stopped
//!   (SIGTERM) and started again, once with `--module-cache off` (the
//!   baseline: every module compiled) and once with the cache. Timed from
//!   the spawn to the first `/v1/ready` that answers 200, which comes after
//!   every agent is restored.

use std::time::{Duration, Instant};

use caxton_testkit::node::{Node, NodeSpec};

/// Limits that let 10,000 small agents fit the machine (as the load test's).
const LIMITS: [&str; 8] = ["--agent-memory-max", "1MiB", "--agent-stack-max", "64KiB", "--agent-overhead", "64KiB", "--max-agents", "20000"];

/// An agent's module: each one different (its global), so none is shared.
fn module(i: usize) -> Vec<u8> {
    format!(
        r#"(module (memory (export "memory") 1) (global i32 (i32.const {i}))
            (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))"#
    )
    .into_bytes()
}

/// Deploy to ready, `count` times: each a new echo (a distinct global, so
/// neither the compiler nor the module cache has seen it), timed from the
/// `PUT` to the answer of its first message.
pub fn deploy_to_ready(count: usize) -> hdrhistogram::Histogram<u64> {
    let node = Node::launch(NodeSpec::new(2)).unwrap_or_else(|e| panic!("{e}"));
    let echo = std::fs::read_to_string(crate::routing::agents_dir().join("echo.wat")).unwrap();
    let mut h = crate::histogram();
    for i in 0..count {
        let module = echo.replacen("(memory (export \"memory\") 1)", &format!("(memory (export \"memory\") 1) (global i32 (i32.const {i}))"), 1);
        assert_ne!(module, echo, "the echo's memory line");
        let began = Instant::now();
        let (status, v) = node.put_module(&format!("ready-{i}"), 1, module.as_bytes());
        assert_eq!(status, 201, "{v}");
        let (status, v) = node.post_message(&serde_json::json!({"receiver": format!("ready-{i}"), "content": "first"}), Some(10_000));
        assert_eq!((status, v["content"].as_str()), (200, Some("first")), "{v}");
        h.saturating_record(began.elapsed().as_nanos() as u64);
    }
    h
}

/// Deploy to ready of the Rust SDK's echo, `count` times each:
/// (bytes the node has never seen, compiled at the `PUT`; the same bytes
/// again under another name, compiled already), timed from the `PUT` to
/// the answer of the first message.
pub fn sdk_deploy_to_ready(count: usize) -> (hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>) {
    let node = Node::launch(NodeSpec::new(2)).unwrap_or_else(|e| panic!("{e}"));
    let echo = std::fs::read(caxton_testkit::example_agent("rust-echo")).unwrap();
    let (mut new, mut known) = (crate::histogram(), crate::histogram());
    let ready = |name: &str, wasm: &[u8], h: &mut hdrhistogram::Histogram<u64>| {
        let began = Instant::now();
        let (status, v) = node.put_module(name, 1, wasm);
        assert_eq!(status, 201, "{v}");
        let (status, v) = node.post_message(&serde_json::json!({"receiver": name, "content": "first"}), Some(10_000));
        assert_eq!((status, v["content"].as_str()), (200, Some("first")), "{v}");
        h.saturating_record(began.elapsed().as_nanos() as u64);
    };
    for i in 0..count {
        let wasm = caxton_testkit::with_nonce(&echo, i as u64);
        ready(&format!("sdk-new-{i}"), &wasm, &mut new);
        ready(&format!("sdk-known-{i}"), &wasm, &mut known);
    }
    (new, known)
}

/// Seconds from spawn to serving with `count` trivial agents, each its
/// own module: (with the cache, without it).
pub fn restart_to_serving(count: usize) -> (f64, f64) {
    restart_to_serving_with(count, &LIMITS, module)
}

/// The same with `count` Rust SDK echoes (25 KB), each its own bytes.
pub fn restart_sdk_to_serving(count: usize) -> (f64, f64) {
    let echo = std::fs::read(caxton_testkit::example_agent("rust-echo")).unwrap();
    // A Rust module asks 17 pages (1 MiB of stack in its memory).
    restart_to_serving_with(count, &["--agent-memory-max", "2MiB", "--max-agents", "20000"], move |i| caxton_testkit::with_nonce(&echo, i as u64))
}

/// Seconds from spawn to serving with the `count` agents `module` makes.
fn restart_to_serving_with(count: usize, limits: &[&str], module: impl Fn(usize) -> Vec<u8> + Sync) -> (f64, f64) {
    let mut node = Node::launch(NodeSpec::new(2).args(limits)).unwrap_or_else(|e| panic!("{e}"));
    const CLIENTS: usize = 4;
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let api = node.api();
            let module = &module;
            s.spawn(move || {
                for i in (c..count).step_by(CLIENTS) {
                    let url = format!("http://{api}/v1/agents/r{i}");
                    ureq::put(&url).send_bytes(&module(i)).unwrap_or_else(|e| panic!("deploying r{i}: {e}"));
                }
            });
        }
    });
    let mut timed = |extra: &[&str]| {
        assert!(node.terminate().success());
        let began = Instant::now();
        node.restart_with(extra);
        let took = began.elapsed();
        let (status, v) = node.get("/v1/agents");
        assert_eq!((status, v["agents"].as_array().map(Vec::len)), (200, Some(count)), "every agent restored");
        took
    };
    let uncached = timed(&["--module-cache", "off"]);
    let cached = timed(&[]);
    assert!(cached < uncached + Duration::from_secs(60));
    (cached.as_secs_f64(), uncached.as_secs_f64())
}
