//! Why the cross-shard p99 under load is what it is: counts how often the
//! shard threads are preempted (involuntary context switches) while the
//! load generator, which shares their two cores, drives 100,000 msg/s.
//!
//! Run: `cargo run --release -p caxton-benches --bin preemption_probe`.

use std::time::Duration;

use caxton_benches::{node::BenchNode, routing};

fn shard_switches() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string();
        if comm.starts_with("shard-") {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let n = status.lines().find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:")).map_or(0, |v| v.trim().parse().unwrap_or(0));
            out.push((comm, n));
        }
    }
    out.sort();
    out
}

fn main() {
    let node = BenchNode::start(2);
    let cast = routing::deploy(&node);
    let secs = 5;
    let before = shard_switches();
    let run = routing::forwarded(&node, &cast, 50_000, Duration::from_secs(secs));
    let after = shard_switches();
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        println!("{name}: {} involuntary context switches per second", (a - b) / secs);
    }
    println!(
        "cross shard p50 {:.1} µs p99 {:.1} µs; load {:.0} msg/s",
        run.remote.quantile_ns(0.5) as f64 / 1e3,
        run.remote.quantile_ns(0.99) as f64 / 1e3,
        run.handled_per_s
    );
}
