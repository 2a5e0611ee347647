//! Routing through real shards: an injected message reaches a `forward`
//! agent, which sends it on to a `sink` on the same shard or the other one;
//! the shards' own histograms time that hop, from `send` to the start of the
//! sink's handler. Throughput: `blaster` agents send as fast as the runtime
//! takes messages.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use caxton_shards::metrics::Latency;

use crate::node::BenchNode;

pub fn agents_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("agents")
}

/// The agents every routing run needs: per shard a forwarder and a sink.
pub struct Cast {
    pub fwd: Vec<String>,
    pub sink: Vec<String>,
}

pub fn deploy(node: &BenchNode) -> Cast {
    let n = node.shards.len();
    let names = |prefix: &str| (0..n).map(|s| node.name_on(prefix, s)).collect::<Vec<_>>();
    let cast = Cast { fwd: names("fwd"), sink: names("sink") };
    for s in 0..n {
        node.deploy(&cast.fwd[s], &agents_dir().join("forward.wat"), 1);
        node.deploy(&cast.sink[s], &agents_dir().join("sink.wat"), 1);
    }
    cast
}

pub struct RoutingRun {
    pub local: Latency,
    pub remote: Latency,
    /// Messages handled per second while it ran (injected and forwarded).
    pub handled_per_s: f64,
}

/// Injects `rate` messages per second for `duration`: half take a local hop,
/// half a cross-shard hop.
pub fn forwarded(node: &BenchNode, cast: &Cast, rate: usize, duration: Duration) -> RoutingRun {
    let n = node.shards.len();
    let before = node.stats();
    let handled_before: u64 = before.iter().map(|s| s.handled).sum();
    let t = Instant::now();
    let per_ms = (rate / 1000).max(1);
    let (_, accepted) = node.drive(per_ms, duration, |i, _| {
        let from = (i as usize) % n;
        let to = if (i / n as u64).is_multiple_of(2) { from } else { (from + 1) % n };
        (from, BenchNode::message("@bench", &cast.fwd[from], cast.sink[to].as_bytes()))
    });
    node.wait_handled(handled_before + 2 * accepted);
    let elapsed = t.elapsed();
    let lat = node.latencies_since(&before);
    let mut local = Latency::default();
    let mut remote = Latency::default();
    for l in &lat {
        local.merge(&l.routing_local);
        remote.merge(&l.routing_remote);
    }
    let handled: u64 = node.handled() - handled_before;
    RoutingRun { local, remote, handled_per_s: handled as f64 / elapsed.as_secs_f64() }
}

/// Messages per second reaching sinks when a blaster on every shard sends
/// to the sink on the other shard (cross-shard) or its own (local). The
/// blasters keep themselves going, so nothing outside the node takes CPU
/// while this is measured.
pub fn blast(node: &BenchNode, cross: bool, duration: Duration) -> f64 {
    let n = node.shards.len();
    let tag = if cross { "cross" } else { "local" };
    let blasters: Vec<String> = (0..n).map(|s| node.name_on(&format!("blaster-{tag}"), s)).collect();
    let sinks: Vec<String> = (0..n).map(|s| node.name_on(&format!("bsink-{tag}"), s)).collect();
    for s in 0..n {
        node.deploy(&blasters[s], &agents_dir().join("blaster.wat"), 1);
        node.deploy(&sinks[s], &agents_dir().join("sink.wat"), 1);
    }
    let sink_handled = |node: &BenchNode| -> u64 {
        node.stats()
            .iter()
            .flat_map(|s| s.per_instance.clone().unwrap_or_default().listed)
            .filter(|i| sinks.iter().any(|n| **n == *i.name))
            .map(|i| i.handled)
            .sum()
    };
    for (from, blaster) in blasters.iter().enumerate() {
        let to = if cross { (from + 1) % n } else { from };
        node.inject(from, vec![BenchNode::message("@bench", blaster, sinks[to].as_bytes())]);
    }
    std::thread::sleep(duration / 10);
    let before = sink_handled(node);
    let t = Instant::now();
    std::thread::sleep(duration);
    let rate = (sink_handled(node) - before) as f64 / t.elapsed().as_secs_f64();
    for s in 0..n {
        node.undeploy(&blasters[s]);
        node.undeploy(&sinks[s]);
    }
    rate
}
