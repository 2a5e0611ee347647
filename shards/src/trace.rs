//! Trace spans of messages, recorded on the shard and exported elsewhere.
//!
//! Each sampled message handed to a handler makes two spans: its hop, from
//! its `send` (or its arrival from another node or the API) to the start of
//! the handler, a child of the sender's span; and the handler's call, a
//! child of the hop. The handler's sends carry the call's span as their
//! parent (ABI version 2's trace context), so a conversation across agents,
//! shards and nodes is one trace.
//!
//! Rules:
//! 1. A trace is sampled or not by its id alone ([`SpanOutput::sampled`]):
//!    every shard and node with the same ratio decides the same, so a trace
//!    is whole or absent, never cut at a hop.
//! 2. A shard never waits on export: a span goes into the shard's bounded
//!    queue ([`TRACE_SPANS_QUEUED_MAX`]) with `try_send`, and one that does
//!    not fit is dropped and counted. A slow or dead collector costs counted
//!    drops, never latency.
//! 3. Recording allocates nothing but the span's slot in the queue: names
//!    are shared (`Arc<str>`), times are monotonic nanoseconds turned into
//!    wall-clock time by the exporter ([`unix_ns`]).
//! 4. Span ids come from the shard's own generator; a hop's id is drawn
//!    when its handler starts, so ids never cross threads.

use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use crate::envelope::RoutePath;
pub use crate::limits::TRACE_SPANS_QUEUED_MAX;

/// Which of a message's two spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Queued: from send or arrival to the start of the handler.
    Hop,
    /// The handler's call.
    Handle,
    /// A tool call, from the tools runtime taking it to its result; its
    /// `agent` is the tool's runtime name (`@tool/NAME`), its parent the
    /// calling handler's span.
    ToolCall,
}

/// How the message ended, on its handler span (and its hop's, when no
/// handler ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanOutcome {
    Handled,
    /// The handler returned non-zero (or exited with a non-zero code).
    Error,
    Crashed,
    TimedOut,
    /// Not handled: failed back to its sender (quarantine, deadline,
    /// unreadable to a version 1 agent, an instance that cannot start).
    FailedBack,
}

impl SpanOutcome {
    pub fn name(self) -> &'static str {
        match self {
            SpanOutcome::Handled => "handled",
            SpanOutcome::Error => "error",
            SpanOutcome::Crashed => "crashed",
            SpanOutcome::TimedOut => "timed_out",
            SpanOutcome::FailedBack => "failed_back",
        }
    }
}

/// One finished span, as a shard hands it to the exporter.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub kind: SpanKind,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero for a root (a message that started its trace).
    pub parent_span_id: [u8; 8],
    /// Monotonic nanoseconds ([`crate::clock::now_ns`]).
    pub start_ns: u64,
    pub end_ns: u64,
    pub agent: Arc<str>,
    pub instance: u32,
    pub shard: u32,
    pub performative: u8,
    pub conversation_id: u64,
    pub path: RoutePath,
    pub outcome: SpanOutcome,
}

/// Where a shard's spans go (rule 2), and which traces it samples.
#[derive(Clone)]
pub struct SpanOutput {
    /// Traces whose id's last 8 bytes, as a little-endian number, are
    /// below this are sampled (rule 1): `ratio × 2^64`.
    threshold: u64,
    queue: Sender<SpanRecord>,
}

impl SpanOutput {
    /// `ratio` in [0, 1] of traces sampled.
    pub fn new(ratio: f64, queue: Sender<SpanRecord>) -> SpanOutput {
        assert!((0.0..=1.0).contains(&ratio), "a sampling ratio is a fraction");
        let threshold = if ratio >= 1.0 { u64::MAX } else { (ratio * 2f64.powi(64)) as u64 };
        SpanOutput { threshold, queue }
    }

    /// Is trace `trace_id` sampled? (rule 1)
    pub fn sampled(&self, trace_id: &[u8; 16]) -> bool {
        let low = u64::from_le_bytes(trace_id[8..].try_into().expect("8 bytes"));
        self.threshold == u64::MAX || low < self.threshold
    }

    /// Queues `span`; false if the queue was full (rule 2: the caller counts it).
    pub fn offer(&self, span: SpanRecord) -> bool {
        match self.queue.try_send(span) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch of monotonic time
/// `mono_ns` (rule 3): the offset between the two clocks, read once.
pub fn unix_ns(mono_ns: u64) -> u64 {
    static OFFSET: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    let offset = *OFFSET.get_or_init(|| {
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        unix - crate::clock::now_ns() as i128
    });
    (mono_ns as i128 + offset).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(low: u64) -> [u8; 16] {
        let mut t = [7u8; 16];
        t[8..].copy_from_slice(&low.to_le_bytes());
        t
    }

    #[test]
    fn sampling_is_a_function_of_the_trace_id() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let none = SpanOutput::new(0.0, tx.clone());
        let all = SpanOutput::new(1.0, tx.clone());
        let half = SpanOutput::new(0.5, tx);
        for low in [0, 1, u64::MAX / 2 - 1, u64::MAX / 2 + 1, u64::MAX] {
            assert!(!none.sampled(&trace(low)));
            assert!(all.sampled(&trace(low)));
            assert_eq!(half.sampled(&trace(low)), low < u64::MAX / 2, "{low}");
        }
    }

    #[test]
    fn a_full_queue_refuses_without_waiting() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let out = SpanOutput::new(1.0, tx);
        let span = SpanRecord {
            kind: SpanKind::Hop,
            trace_id: trace(1),
            span_id: [1; 8],
            parent_span_id: [0; 8],
            start_ns: 1,
            end_ns: 2,
            agent: "a".into(),
            instance: 0,
            shard: 0,
            performative: 0,
            conversation_id: 0,
            path: RoutePath::Local,
            outcome: SpanOutcome::Handled,
        };
        assert!(out.offer(span.clone()));
        assert!(!out.offer(span.clone()), "full: refused at once");
        drop(rx);
        assert!(!out.offer(span), "no exporter: refused");
    }

    #[test]
    fn wall_clock_time_follows_the_monotonic_clock() {
        let now = crate::clock::now_ns();
        let a = unix_ns(now);
        assert_eq!(unix_ns(now + 1_000), a + 1_000);
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        assert!(wall.abs_diff(a) < 1_000_000_000, "within a second of the wall clock");
    }
}
