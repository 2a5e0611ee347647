//! The tool-relay's bench mode (`make bench`, issue 28): `{"bench": {"tool",
//! "request", "calls", "concurrency"}}` makes `calls` calls of `request`,
//! `concurrency` at a time, each answer sending the next, and answers the
//! asker with the round trips it timed: from the `send` of each call to the
//! start of the handler that receives its answer, the cost the issue names.
//! Kept in the agent's fields, not its state: a bench measures the call,
//! not SQLite (a restart in the middle loses the run, which then times out).

use std::collections::HashMap;

use caxton_agent::tools::ToolCall;
use caxton_agent::{Context, Message, Outgoing, Performative, Result};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct BenchAsk {
    tool: String,
    request: serde_json::Value,
    calls: u32,
    concurrency: u32,
}

/// A run in progress.
pub struct Bench {
    ask: BenchAsk,
    asker: (String, u64),
    sent: u32,
    sent_at_us: HashMap<ToolCall, i64>,
    round_trips_us: Vec<u32>,
    failures: u32,
    first_failure: Option<String>,
    started_us: i64,
}

impl Bench {
    /// Starts a run: the first `concurrency` calls.
    pub fn start(ctx: &mut Context<'_>, m: &Message<'_>, ask: BenchAsk) -> Result<Bench> {
        assert!(ask.calls > 0 && ask.concurrency > 0, "a bench makes calls");
        let mut bench = Bench {
            asker: (m.sender().to_string(), m.reply_with()),
            sent: 0,
            sent_at_us: HashMap::new(),
            round_trips_us: Vec::with_capacity(ask.calls as usize),
            failures: 0,
            first_failure: None,
            started_us: ctx.now_micros(),
            ask,
        };
        for _ in 0..bench.ask.concurrency.min(bench.ask.calls) {
            bench.send_next(ctx)?;
        }
        Ok(bench)
    }

    fn send_next(&mut self, ctx: &mut Context<'_>) -> Result<()> {
        let at = ctx.now_micros();
        let call = ctx.call_tool(&self.ask.tool, &self.ask.request)?;
        self.sent_at_us.insert(call, at);
        self.sent += 1;
        Ok(())
    }

    /// Takes an answer; true when the run is over (its summary sent).
    pub fn answered(&mut self, ctx: &mut Context<'_>, call: ToolCall, failure: Option<&str>) -> Result<bool> {
        let now = ctx.now_micros();
        let Some(at) = self.sent_at_us.remove(&call) else { return Ok(false) };
        self.round_trips_us.push((now - at).max(0) as u32);
        if let Some(why) = failure {
            self.failures += 1;
            self.first_failure.get_or_insert_with(|| why.to_string());
        }
        if self.sent < self.ask.calls {
            self.send_next(ctx)?;
        }
        if !self.sent_at_us.is_empty() {
            return Ok(false);
        }
        assert_eq!(self.round_trips_us.len(), self.ask.calls as usize, "every call answered once");
        self.round_trips_us.sort_unstable();
        let q = |p: f64| self.round_trips_us[((self.round_trips_us.len() - 1) as f64 * p) as usize];
        let summary = serde_json::json!({
            "calls": self.ask.calls,
            "failures": self.failures,
            "first_failure": self.first_failure,
            "elapsed_us": now - self.started_us,
            "p50_us": q(0.5),
            "p99_us": q(0.99),
            "max_us": q(1.0),
            "mean_us": self.round_trips_us.iter().map(|&us| us as f64).sum::<f64>() / self.round_trips_us.len() as f64,
        });
        let (sender, reply_with) = &self.asker;
        ctx.send_message(Outgoing::new(sender, Performative::Inform, summary.to_string().as_bytes()).in_reply_to(*reply_with))?;
        Ok(true)
    }
}
