//! Restart to serving with many agents, with the module cache and without
//! (issue 15): a real `caxton serve` with `count` agents of distinct
//! modules is stopped (SIGTERM) and started again, once with
//! `--module-cache off` (the baseline: every module compiled) and once
//! with the cache. Timed from the spawn to the first `/v1/health` that
//! answers, which comes after every agent is restored.

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

/// Seconds from spawn to serving: (with the cache, without it).
pub fn restart_to_serving(count: usize) -> (f64, f64) {
    let mut node = Node::launch(NodeSpec::new(2).args(&LIMITS)).unwrap_or_else(|e| panic!("{e}"));
    const CLIENTS: usize = 4;
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let api = node.api();
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
