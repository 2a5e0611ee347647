//! `caxton top`: a live view of a running node, one row per shard, redrawn
//! every second from `GET /v1/stats`. Message rates are the difference of
//! two samples; latencies are the node's cumulative quantiles.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{Client, Failure};

fn render(now: &Value, before: Option<(&Value, Duration)>) -> String {
    let mut out = String::new();
    let mib = |b: f64| b / (1024.0 * 1024.0);
    out.push_str(&format!("caxton top — resident {:.1} MiB\n", mib(now["resident_bytes"].as_f64().unwrap_or(0.0))));
    out.push_str(&format!(
        "{:>5} {:>10} {:>11} {:>11} {:>11} {:>11} {:>8} {:>7} {:>10}\n",
        "shard", "msg/s", "route p50", "route p99", "proc p50", "proc p99", "queued", "agents", "mem MiB"
    ));
    for (i, s) in now["shards"].as_array().into_iter().flatten().enumerate() {
        let rate = before.map_or(0.0, |(b, dt)| {
            let prev = b["shards"][i]["messages_handled"].as_f64().unwrap_or(0.0);
            (s["messages_handled"].as_f64().unwrap_or(0.0) - prev) / dt.as_secs_f64()
        });
        let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
        out.push_str(&format!(
            "{:>5} {:>10.0} {:>9.1}µs {:>9.1}µs {:>9.1}µs {:>9.1}µs {:>8} {:>7} {:>10.1}\n",
            s["shard"].as_u64().unwrap_or(0),
            rate,
            f("routing_p50_us"),
            f("routing_p99_us"),
            f("processing_p50_us"),
            f("processing_p99_us"),
            s["queued_messages"].as_u64().unwrap_or(0),
            s["instances"].as_u64().unwrap_or(0),
            mib(f("agent_memory_bytes"))
        ));
    }
    out
}

/// Runs until interrupted; with `frames`, stops after that many refreshes.
pub fn run(client: &Client, frames: Option<u64>) -> Result<(), Failure> {
    let mut previous: Option<(Value, Instant)> = None;
    let mut shown = 0;
    loop {
        let now = client.stats()?;
        let at = Instant::now();
        if previous.is_some() || frames.is_none() {
            let frame = render(&now, previous.as_ref().map(|(v, t)| (v, at - *t)));
            if frames.is_none() {
                print!("\x1b[2J\x1b[H");
            }
            print!("{frame}");
            shown += 1;
            if frames.is_some_and(|f| shown >= f) {
                return Ok(());
            }
        }
        previous = Some((now, at));
        std::thread::sleep(Duration::from_secs(1));
    }
}
