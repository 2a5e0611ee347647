//! The per-stage cost table: where a message's time goes inside the real
//! shards. The pipelined echo pairs of `agents::echo_pingpong` run with
//! stage timing on (`caxton_shards::stages`), and each stage's ticks are
//! divided by the messages handled. The echoes keep both shards busy all
//! the time, so a message's whole cost is the shards' wall time divided by
//! the messages; what no stage holds (the run loop, clock reads, polls) is
//! the rest.

use std::time::{Duration, Instant};

use caxton_shards::clock::{now_ns, ticks};
use caxton_shards::shard::ShardTuning;
use caxton_shards::stages::{Stage, STAGES};

use crate::node::BenchNode;
use crate::{agents, routing};

/// The table's rows, in the order of [`StageCosts::ns`].
pub const ROW_NAMES: [&str; 7] = [
    "receive from other shards' channels",
    "pick the next instance, pop its message",
    "guest call: entry, handler, return (host sends excluded)",
    "host send: check, resolve, reserve, encode, stage",
    "release sends to mailboxes and peer channels",
    "record the latencies (5 histograms)",
    "the rest: run loop, clock reads, timing itself",
];

pub struct StageCosts {
    /// Nanoseconds per message handled, by row of [`StageCosts::rows`].
    pub ns: Vec<(&'static str, f64)>,
    /// All of a message's cost: shards × wall time ÷ messages handled.
    pub total_ns: f64,
    /// Messages handled a second with timing on (it costs two counter
    /// reads a stage).
    pub timed_rate: f64,
}

/// Runs the echo pairs (`cross`: split across shards) for `duration` with
/// every stage timed.
pub fn measure(cross: bool, duration: Duration) -> StageCosts {
    let tuning = ShardTuning { stage_timing: true, ..ShardTuning::default() };
    let node = BenchNode::start_tuned(2, tuning);
    let shards = node.shards.len() as f64;
    let before = node.stats();
    let (t0, n0, wall) = (ticks(), now_ns(), Instant::now());
    let timed_rate = agents::echo_pingpong(&node, "staged", &routing::agents_dir().join("echo.wat"), cross, duration).handled_per_s;
    let after = node.stats();
    let (t1, n1) = (ticks(), now_ns());
    let elapsed_ns = wall.elapsed().as_nanos() as f64;
    assert!(t1 > t0 && n1 > n0, "the counter and the clock move");
    let ns_per_tick = (n1 - n0) as f64 / (t1 - t0) as f64;
    let handled: u64 = after.iter().map(|s| s.handled).sum::<u64>() - before.iter().map(|s| s.handled).sum::<u64>();
    assert!(handled > 0, "the blast handled messages");
    let mut stage_ns = [0f64; STAGES];
    for (a, b) in after.iter().zip(&before) {
        for (ns, (now, then)) in stage_ns.iter_mut().zip(a.stage_ticks.iter().zip(&b.stage_ticks)) {
            *ns += (now - then) as f64 * ns_per_tick / handled as f64;
        }
    }
    let at = |s: Stage| stage_ns[s as usize];
    // The run's set-up falls in the window too (deploys, then one tenth of
    // its duration warming up, handling messages).
    let total_ns = shards * elapsed_ns / handled as f64;
    let staged =
        [at(Stage::Receive), at(Stage::Dequeue), at(Stage::GuestCall) - at(Stage::HostSend), at(Stage::HostSend), at(Stage::Release), at(Stage::Record)];
    let rest = (total_ns - staged.iter().sum::<f64>()).max(0.0);
    let ns = ROW_NAMES.iter().copied().zip(staged.into_iter().chain([rest])).collect();
    StageCosts { ns, total_ns, timed_rate }
}
