//! A call's way through the tools runtime: from the queue to its answer.
//!
//! Rules:
//! 1. Bounds are checked in this order, and each refusal is the call's
//!    answer (`refused`, with the bound named): the tool exists; the node
//!    runs fewer than [`TOOL_CALLS_NODE_MAX`] calls; the agent is within
//!    [`TOOL_CALLS_PER_AGENT_PER_S`] (a token bucket per address). A call
//!    that finds the node full first lets every task already woken run
//!    (one yield): an answer a shard has taken gives its permit back in
//!    such a task, and the handler that took it may already have sent the
//!    next call, which must not be refused for its predecessor's permit.
//! 2. A call runs until its `reply_by` (if it has one) and never longer
//!    than its tool's `timeout_ms`; past it the call is dropped (the
//!    connection or request goes with it) and answered `timeout`.
//! 3. The answer is handed to the receiver's shard until one takes it:
//!    "no room" is tried again every [`TOOL_ANSWER_RETRY_MS`]; only an
//!    agent that is gone (undeployed) loses its answer, logged. The call
//!    keeps its node permit until then, so answers waiting are bounded too.
//! 4. One log record per call (agent, tool, duration, outcome, bytes), with
//!    its arguments only if the tool's config says `log_arguments`.
//! 5. A call in a sampled trace gets a span of its own (`call @tool/NAME`,
//!    a child of the calling handler's span), and the tool gets that span
//!    as its parent: the `traceparent` header, or MCP's `_meta`. A call in
//!    a trace that is not sampled still carries the handler's context.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_shards::envelope::RoutePath;
use caxton_shards::limits::{TOOL_ANSWER_RETRY_MS, TOOL_CALLS_NODE_MAX, TOOL_CALLS_PER_AGENT_PER_S};
use caxton_shards::runtime_outbox::Held;
use caxton_shards::tools::{tool_of, ToolFailure};
use caxton_shards::trace::{SpanKind, SpanOutcome, SpanOutput, SpanRecord};
use caxton_shards::Message;
use tokio::sync::{mpsc, Semaphore};

use super::metrics::Outcome;
use super::{answer, CallFailure, CallMeta, Tools};

/// Where answers go: the control plane, which knows the shards.
#[async_trait::async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// Hands `answer` to its receiver's shard.
    async fn deliver(&self, answer: Message) -> Delivery;
    /// A message id for an answer (the node's own origin).
    fn next_message_id(&self) -> u64;
}

pub enum Delivery {
    Taken,
    /// The shard had no room (a full mailbox or control queue): try again.
    NoRoom(Message),
    /// The receiver is gone; why.
    Gone(String),
}

/// Per-address token buckets (rule 1), pruned when they grow.
#[derive(Default)]
struct Rates {
    buckets: HashMap<Box<[u8]>, (f64, Instant)>,
}

/// Addresses kept before idle, full buckets are pruned.
const RATE_BUCKETS_PRUNE_AT: usize = 16_384;

impl Rates {
    fn take(&mut self, sender: &[u8], now: Instant) -> bool {
        let per_s = TOOL_CALLS_PER_AGENT_PER_S as f64;
        if self.buckets.len() >= RATE_BUCKETS_PRUNE_AT {
            self.buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(1));
        }
        let (tokens, at) = self.buckets.entry(sender.into()).or_insert((per_s, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_s).min(per_s);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The W3C `traceparent` naming `span` in a call's trace, if it has one.
fn traceparent(m: &Message, span: [u8; 8]) -> Option<String> {
    let t = m.trace();
    if t.is_none() {
        return None;
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Some(format!("00-{}-{}-01", hex(&t.trace_id), hex(&span)))
}

/// Rule 5: a new span id, when the call's trace is sampled.
fn call_span(m: &Message, spans: Option<&SpanOutput>) -> Option<[u8; 8]> {
    let t = m.trace();
    if t.is_none() || !spans?.sampled(&t.trace_id) {
        return None;
    }
    let mut id = [0u8; 8];
    // SAFETY: getrandom(2) writes at most `id.len()` bytes into a buffer we own.
    let n = unsafe { libc::getrandom(id.as_mut_ptr() as *mut libc::c_void, id.len(), 0) };
    assert_eq!(n, 8, "the kernel's random source answers");
    Some(id)
}

/// How long a call may run (rule 2); zero if its deadline passed.
fn time_allowed(reply_by_us: u64, timeout_ms: u64) -> Duration {
    let most = Duration::from_millis(timeout_ms);
    if reply_by_us == 0 {
        return most;
    }
    let now_us = caxton_shards::clock::unix_micros();
    Duration::from_micros(reply_by_us.saturating_sub(now_us)).min(most)
}

/// Takes calls off the queue for the node's life.
pub async fn run(tools: Arc<Tools>, mut calls: mpsc::Receiver<Held>, install_id: u64, deliver: Arc<dyn Deliver>, spans: Option<SpanOutput>) {
    let permits = Arc::new(Semaphore::new(TOOL_CALLS_NODE_MAX));
    let mut rates = Rates::default();
    while let Some(held) = calls.recv().await {
        let call = held.message();
        let name = String::from_utf8_lossy(tool_of(call.receiver()).unwrap_or_default()).into_owned();
        let Some(entry) = tools.get(&name).cloned() else {
            let refused = CallFailure::new(ToolFailure::Refused, format!("the node has no tool named {name:?}"));
            tokio::spawn(finish(deliver.clone(), held, Err(refused), None));
            continue;
        };
        let mut permit = permits.clone().try_acquire_owned();
        if permit.is_err() {
            // Rule 1: answers already taken give their permits back first.
            tokio::task::yield_now().await;
            permit = permits.clone().try_acquire_owned();
        }
        let admitted = match permit {
            Err(_) => Err(CallFailure::new(ToolFailure::Refused, format!("the node runs {TOOL_CALLS_NODE_MAX} tool calls already"))),
            Ok(_) if !rates.take(call.sender(), Instant::now()) => {
                Err(CallFailure::new(ToolFailure::Refused, format!("over {TOOL_CALLS_PER_AGENT_PER_S} tool calls a second for this agent")))
            }
            Ok(permit) => Ok(permit),
        };
        let permit = match admitted {
            Ok(p) => p,
            Err(refused) => {
                entry.metrics.record(Outcome::Failed(ToolFailure::Refused), 0.0);
                tokio::spawn(finish(deliver.clone(), held, Err(refused), None));
                continue;
            }
        };
        let span = call_span(call, spans.as_ref());
        let parent = span.unwrap_or(call.trace().parent_span_id);
        let meta = CallMeta { idempotency_key: format!("caxton-{install_id:016x}-{:x}", call.message_id()), traceparent: traceparent(call, parent) };
        let spans = spans.clone();
        let allowed = time_allowed(call.reply_by(), entry.spec.timeout_ms);
        let deliver = deliver.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let started_ns = caxton_shards::clock::now_ns();
            let call = held.message();
            let result = match tokio::time::timeout(allowed, entry.call(call.content(), &meta)).await {
                Ok(r) => r,
                Err(_) => Err(CallFailure::new(ToolFailure::Timeout, format!("no result within {} ms", allowed.as_millis()))),
            };
            let seconds = started.elapsed().as_secs_f64();
            let outcome = result.as_ref().map_or_else(|f| Outcome::Failed(f.reason), |_| Outcome::Ok);
            entry.metrics.record(outcome, seconds);
            let agent = String::from_utf8_lossy(call.sender());
            let response_bytes = result.as_ref().map_or(0, |r| r.len());
            if entry.spec.log_arguments {
                let arguments = String::from_utf8_lossy(call.content());
                tracing::info!(target: "caxton::tools", %agent, tool = entry.spec.name, duration_ms = seconds * 1e3, outcome = outcome.name(), request_bytes = call.content().len(), response_bytes, %arguments, "tool call");
            } else {
                tracing::info!(target: "caxton::tools", %agent, tool = entry.spec.name, duration_ms = seconds * 1e3, outcome = outcome.name(), request_bytes = call.content().len(), response_bytes, "tool call");
            }
            if let Err(f) = &result {
                tracing::debug!(target: "caxton::tools", %agent, tool = entry.spec.name, detail = f.detail, "tool call failed");
            }
            if let (Some(out), Some(span_id)) = (&spans, span) {
                let trace = call.trace();
                let outcome = if result.is_ok() { SpanOutcome::Handled } else { SpanOutcome::Error };
                let record = SpanRecord {
                    kind: SpanKind::ToolCall,
                    trace_id: trace.trace_id,
                    span_id,
                    parent_span_id: trace.parent_span_id,
                    start_ns: started_ns,
                    end_ns: caxton_shards::clock::now_ns(),
                    agent: format!("{}{}", caxton_shards::tools::TOOL_NAME_PREFIX, entry.spec.name).into(),
                    instance: 0,
                    shard: 0,
                    performative: call.performative(),
                    conversation_id: call.conversation_id(),
                    path: RoutePath::Api,
                    outcome,
                };
                let _ = out.offer(record); // a full queue drops it (trace rule 2)
            }
            finish(deliver, held, result, Some(permit)).await;
        });
    }
}

/// Rule 3: hands the answer over until a shard takes it; only then are the
/// call's bytes (`held`) and its permit given back.
pub(crate) async fn finish(deliver: Arc<dyn Deliver>, held: Held, result: Result<Vec<u8>, CallFailure>, permit: Option<tokio::sync::OwnedSemaphorePermit>) {
    let mut message = answer(held.message(), deliver.next_message_id(), &result);
    loop {
        match deliver.deliver(message).await {
            Delivery::Taken => break,
            Delivery::NoRoom(m) => {
                message = m;
                tokio::time::sleep(Duration::from_millis(TOOL_ANSWER_RETRY_MS)).await;
            }
            Delivery::Gone(why) => {
                tracing::info!(target: "caxton::tools", agent = %String::from_utf8_lossy(held.message().sender()), why, "a tool call's answer has no receiver any more; dropped");
                break;
            }
        }
    }
    drop(permit);
    drop(held);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_gets_its_rate_and_no_more_and_the_bucket_refills() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let granted = (0..TOOL_CALLS_PER_AGENT_PER_S * 2).filter(|_| r.take(b"a", t0)).count();
        assert_eq!(granted, TOOL_CALLS_PER_AGENT_PER_S as usize);
        assert!(r.take(b"b", t0), "another agent has its own bucket");
        assert!(r.take(b"a", t0 + Duration::from_millis(10)), "10 ms refills two tokens");
    }

    #[test]
    fn a_deadline_shortens_the_call_and_a_past_one_leaves_nothing() {
        assert_eq!(time_allowed(0, 500), Duration::from_millis(500));
        let soon = caxton_shards::clock::unix_micros() + 100_000;
        assert!(time_allowed(soon, 500) <= Duration::from_millis(100));
        assert_eq!(time_allowed(1, 500), Duration::ZERO);
    }
}
