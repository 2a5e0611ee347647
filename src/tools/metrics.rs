//! What the tools runtime counts, per tool: calls by outcome, their time,
//! and whether the tool is up. Atomics, written by the tools thread and
//! read by `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How a call ended: a result (`ok`), or one of the failures agents see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed(caxton_shards::tools::ToolFailure),
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Failed(caxton_shards::tools::ToolFailure::Timeout),
        Outcome::Failed(caxton_shards::tools::ToolFailure::Refused),
        Outcome::Failed(caxton_shards::tools::ToolFailure::ToolError),
        Outcome::Failed(caxton_shards::tools::ToolFailure::TooLarge),
        Outcome::Failed(caxton_shards::tools::ToolFailure::ToolDown),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed(f) => f.as_str(),
        }
    }

    fn index(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).expect("every outcome is listed")
    }
}

/// Upper bounds of the call-time histogram, in seconds (Prometheus `le`).
pub const CALL_SECONDS_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

/// One tool's figures.
#[derive(Debug, Default)]
pub struct ToolMetrics {
    calls: [AtomicU64; Outcome::ALL.len()],
    /// Cumulative counts per bucket, and the `+Inf` bucket last.
    buckets: [AtomicU64; CALL_SECONDS_BUCKETS.len() + 1],
    seconds_sum_us: AtomicU64,
    pub up: AtomicBool,
    /// Times an MCP stdio server was started (the first and every restart).
    pub starts: AtomicU64,
}

impl ToolMetrics {
    pub fn record(&self, outcome: Outcome, seconds: f64) {
        self.calls[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let first = CALL_SECONDS_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(CALL_SECONDS_BUCKETS.len());
        self.buckets[first].fetch_add(1, Ordering::Relaxed);
        self.seconds_sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn calls(&self, outcome: Outcome) -> u64 {
        self.calls[outcome.index()].load(Ordering::Relaxed)
    }

    /// Cumulative bucket counts (`le` order, `+Inf` last), the sum in
    /// seconds and the count.
    pub fn histogram(&self) -> (Vec<u64>, f64, u64) {
        let mut running = 0;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        (cumulative, self.seconds_sum_us.load(Ordering::Relaxed) as f64 / 1e6, running)
    }
}

/// The tools' series in Prometheus text: per tool from the runtime, and
/// the shards' admissions and refusals (`caxton_shards::tools`).
pub fn render(tools: Option<&super::Tools>, shards: &[caxton_shards::ShardStats]) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let entries: Vec<&std::sync::Arc<super::ToolEntry>> = tools.map_or(Vec::new(), |t| t.all().collect());
    family(&mut o, "caxton_tool_up", "gauge", "1 when a tool is up (an MCP server connected and listed, an HTTP tool configured), by tool.");
    for e in &entries {
        let _ = writeln!(o, "caxton_tool_up{{tool=\"{}\"}} {}", e.spec.name, u8::from(e.metrics.up.load(Ordering::Relaxed)));
    }
    family(&mut o, "caxton_tool_starts_total", "counter", "Connections made to an MCP server (the first and every restart), by tool.");
    for e in &entries {
        let _ = writeln!(o, "caxton_tool_starts_total{{tool=\"{}\"}} {}", e.spec.name, e.metrics.starts.load(Ordering::Relaxed));
    }
    family(&mut o, "caxton_tool_calls_total", "counter", "Tool calls answered, by tool and outcome (ok, timeout, refused, tool_error, too_large, tool_down).");
    for e in &entries {
        for outcome in Outcome::ALL {
            let _ = writeln!(o, "caxton_tool_calls_total{{tool=\"{}\",outcome=\"{}\"}} {}", e.spec.name, outcome.name(), e.metrics.calls(outcome));
        }
    }
    family(&mut o, "caxton_tool_call_seconds", "histogram", "Time of a tool call, from the runtime taking it to its result, by tool.");
    for e in &entries {
        let (buckets, sum, count) = e.metrics.histogram();
        for (le, n) in CALL_SECONDS_BUCKETS.iter().zip(&buckets) {
            let _ = writeln!(o, "caxton_tool_call_seconds_bucket{{tool=\"{}\",le=\"{le}\"}} {n}", e.spec.name);
        }
        let _ = writeln!(o, "caxton_tool_call_seconds_bucket{{tool=\"{}\",le=\"+Inf\"}} {count}", e.spec.name);
        let _ = writeln!(o, "caxton_tool_call_seconds_sum{{tool=\"{}\"}} {sum}", e.spec.name);
        let _ = writeln!(o, "caxton_tool_call_seconds_count{{tool=\"{}\"}} {count}", e.spec.name);
    }
    family(
        &mut o,
        "caxton_tool_calls_refused_total",
        "counter",
        "Tool calls refused before they left a shard or at the node's queue, by reason (not_granted, in_flight, queue_full).",
    );
    let sum = |f: fn(&caxton_shards::tools::ToolCounters) -> u64| shards.iter().map(|s| f(&s.tools)).sum::<u64>();
    let _ = writeln!(o, "caxton_tool_calls_refused_total{{reason=\"not_granted\"}} {}", sum(|c| c.refused_not_granted));
    let _ = writeln!(o, "caxton_tool_calls_refused_total{{reason=\"in_flight\"}} {}", sum(|c| c.refused_in_flight));
    let _ = writeln!(o, "caxton_tool_calls_refused_total{{reason=\"queue_full\"}} {}", tools.map_or(0, |t| t.queue_full.load(Ordering::Relaxed)));
    family(&mut o, "caxton_tool_calls_admitted_total", "counter", "Tool calls admitted by the shards (each recorded until its answer is handled).");
    let _ = writeln!(o, "caxton_tool_calls_admitted_total {}", sum(|c| c.admitted));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_count_by_outcome_and_the_histogram_is_cumulative() {
        let m = ToolMetrics::default();
        m.record(Outcome::Ok, 0.0005);
        m.record(Outcome::Ok, 0.02);
        m.record(Outcome::Failed(caxton_shards::tools::ToolFailure::Timeout), 60.0);
        assert_eq!((m.calls(Outcome::Ok), m.calls(Outcome::ALL[1])), (2, 1));
        let (buckets, sum, count) = m.histogram();
        assert_eq!((buckets[0], buckets[4], *buckets.last().unwrap(), count), (1, 2, 3, 3));
        assert!((sum - 60.0205).abs() < 1e-3);
    }
}
