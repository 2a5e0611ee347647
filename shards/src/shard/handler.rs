//! One call into an agent, atomic: the handler protocol.
//!
//! Rules:
//! 1. Guest code runs only inside a call bracket: [`Shard::call_begin`]
//!    opens it (a mark in the outbox, a fresh write count, the context's
//!    `open` flag) and hands out the [`InCall`] every entry into guest code
//!    needs; [`Shard::call_end`] closes it. Every entry goes through it: a
//!    start (the start function, `caxton_abi_version`, the fixed inbox,
//!    `_initialize`, `caxton_init`) at deploy, restore, upgrade trial and
//!    commit, and recreation after a crash; and each handled message.
//!    Host functions work only inside one (`context` rule 3). Its state
//!    writes are held by the store until it ends, its timer and tool-call
//!    rows sit in a savepoint (`storage` rule 2), and its timer changes in
//!    the call state (`timers` rule 2).
//! 2. A call that traps or runs out of fuel is rolled back whole: its
//!    writes (held ones dropped, the savepoint rolled back) and its sends
//!    (the outbox from the mark). The
//!    instance is dropped and made anew as its restart policy says
//!    (`supervision`); its message is a dead letter. A quarantined
//!    instance's messages are dead letters (`quarantined`), unhandled.
//! 3. A completed call's sends go out at once, unless its instance has
//!    writes not yet committed: then they wait for the tick's commit
//!    (router rule 2).
//! 4. The run queue is round-robin: an instance handles at most
//!    [`INSTANCE_BURST_MESSAGES_MAX`] messages or one slice of wall time
//!    before the next, and a tick ends after [`TICK_MESSAGES_MAX`] messages
//!    or one slice.
//! 5. A call's sends carry the handled message's trace id (a new one if it
//!    had none) and the call's own span id as their parent.
//! 6. A message whose `reply_by` has passed is not handled (`expired`), nor
//!    one a version 1 agent cannot read (`not_understood`): both are dead
//!    letters, and their senders get failure notices. A version 1 agent
//!    gets each message translated to version 1, in a buffer the shard
//!    reuses.
//! 7. Each delivery reads the clock when it starts and after `call_end`:
//!    routing is the message's creation to that start, processing that
//!    start to after its sends are released, on every path alike.
//! 8. When an instance's turn begins the shard prefetches what the next
//!    two in the run queue will touch (`agent::hot`): the record and mailbox of the
//!    one after next, and the instance's hot lines and first message of
//!    the next, whose record came in a delivery ago. With thousands of
//!    agents those are cold, and a handler's run hides their latency.

use crate::agent::{AgentInstance, InCall, Outcome};
use crate::clock::now_ns;
use crate::envelope::{Message, RoutePath};
use crate::limits::{INSTANCE_BURST_MESSAGES_MAX, TICK_MESSAGES_MAX};
use crate::router::{DeadLetter, LocalId};
use crate::stages::{self, Stage};
use crate::timers::TIMER_SENDER;
use crate::trace::{SpanKind, SpanOutcome, SpanRecord};
use caxton_abi::failure::FailureReason;
use caxton_abi::TraceContext;

use super::{Shard, Standing};

/// An open call bracket (rule 1): the instance, the outbox mark to roll
/// back to, and the proof guest code needs.
pub(super) struct OpenCall {
    id: LocalId,
    mark: usize,
    pub(super) in_call: InCall,
}

impl Shard {
    /// Runs ready instances round-robin. An instance's burst ends after
    /// [`INSTANCE_BURST_MESSAGES_MAX`] messages or one tick budget of wall
    /// time, and the tick ends after [`TICK_MESSAGES_MAX`] messages or one
    /// budget: a CPU-hungry agent delays its neighbours by at most one
    /// execution time slice.
    pub(super) fn dispatch(&mut self) -> usize {
        let mut done = 0;
        let budget_ns = self.tick_time_budget.as_nanos() as u64;
        let tick_start = now_ns();
        // The clock is read once per delivery (its end), and reused here.
        let mut now = tick_start;
        while done < TICK_MESSAGES_MAX && now - tick_start < budget_ns {
            if self.ctx.borrow().router.keyed.has_made() {
                self.seat_activations(); // `keyed` rule 5
            }
            let Some(id) = stages::time(Stage::Dequeue, || self.ctx.borrow_mut().router.next_ready()) else { break };
            self.prefetch_next(); // rule 8: once a turn, not once a message of its burst
            let mut burst = 0;
            let burst_start = now;
            while burst < INSTANCE_BURST_MESSAGES_MAX && done < TICK_MESSAGES_MAX && now - burst_start < budget_ns {
                let mut ctx = self.ctx.borrow_mut();
                if ctx.router.is_held(id) {
                    break; // it crashed and backs off (`supervision` rule 2)
                }
                let Some(message) = stages::time(Stage::Dequeue, || ctx.router.pop_message(id)) else { break };
                drop(ctx);
                now = self.deliver(id, message);
                burst += 1;
                done += 1;
            }
            assert!(burst <= INSTANCE_BURST_MESSAGES_MAX, "rule 4");
            stages::time(Stage::Dequeue, || self.ctx.borrow_mut().router.requeue(id));
            if self.ctx.borrow().store.batch_full() {
                self.end_tick();
            }
        }
        assert!(done <= TICK_MESSAGES_MAX, "rule 4");
        done
    }

    /// Rule 8: asks the CPU for the lines of the next two instances to run
    /// while this one runs; reads only what the last call of this brought
    /// in (the next one's record), and never waits.
    fn prefetch_next(&self) {
        let ctx = self.ctx.borrow();
        if let Some(next) = ctx.router.peek_ready(0) {
            if let Some(runtime) = self.agents.get(next as usize).and_then(|a| a.as_ref()).and_then(|a| a.runtime.as_ref()) {
                runtime.hot_lines().prefetch();
            }
            ctx.router.prefetch_mailbox(next, true);
        }
        if let Some(after) = ctx.router.peek_ready(1) {
            if let Some(slot) = self.agents.get(after as usize) {
                crate::agent::hot::prefetch_range(slot as *const Option<super::LocalAgent> as usize, std::mem::size_of_val(slot));
            }
            ctx.router.prefetch_mailbox(after, false);
        }
    }

    /// Opens the call bracket (rule 1) for instance `id`, handling
    /// `message` (none for a start). The call's sends carry the message's
    /// trace, with a span of their own (rule 5).
    pub(super) fn call_begin(&self, id: LocalId, message: Option<&Message>) -> OpenCall {
        let mut ctx = self.ctx.borrow_mut();
        assert!(!ctx.call.open && !ctx.store.in_handler(), "rule 1: calls do not nest");
        assert!(ctx.call.timers_set.is_empty() && ctx.call.timers_cancelled.is_empty(), "the last call's timers were applied or dropped");
        ctx.call.open = true;
        ctx.call.owner = id;
        ctx.call.writes = 0;
        ctx.call.timers_cancelled_pending = 0;
        ctx.call.conversation_id = message.map_or(0, Message::conversation_id);
        let incoming = message.map(Message::trace).unwrap_or_default();
        // `trace`: the sender's span → this message's hop → this call.
        let hop = ctx.spans.child_of(&incoming);
        ctx.call.hop_span = hop.parent_span_id;
        ctx.call.trace = TraceContext { trace_id: hop.trace_id, parent_span_id: ctx.spans.span() };
        OpenCall { id, mark: ctx.router.staged_mark(), in_call: InCall::opened() }
    }

    /// Closes the call bracket: keeps its effects, or rolls them back if it
    /// did not complete normally (a trap, or a failed start). Kept sends go
    /// out at once unless the instance has uncommitted writes (router rule
    /// 2); kept timer changes reach the shard's queue.
    pub(super) fn call_end(&mut self, call: OpenCall, keep: bool) {
        let OpenCall { id, mark, in_call: _ } = call;
        let mut ctx = self.ctx.borrow_mut();
        assert!(ctx.call.open && ctx.call.owner == id, "rule 1: the bracket closed is the one opened");
        assert!(mark <= ctx.router.staged_mark(), "a call's sends are staged after its mark");
        ctx.call.open = false;
        if let Err(e) = ctx.store.handler_end(keep) {
            tracing::error!(shard = self.index, error = %e, "ending a handler's writes failed; the tick will not commit");
        }
        if !ctx.call.timers_set.is_empty() || !ctx.call.timers_cancelled.is_empty() {
            let (mut set, mut cancelled) = (std::mem::take(&mut ctx.call.timers_set), std::mem::take(&mut ctx.call.timers_cancelled));
            if keep && !set.is_empty() {
                // `keyed` rule 10: this type's keys may have timer rows now.
                if let Some(keyed) = self.agents[id as usize].as_ref().filter(|a| a.is_keyed()).and_then(|a| self.keyed_types.get_mut(&a.type_name)) {
                    keyed.has_timers = true;
                }
            }
            if keep {
                for due in set.drain(..) {
                    ctx.timers.insert(due, id);
                }
                for cancelled_id in cancelled.drain(..) {
                    ctx.timers.remove(cancelled_id);
                }
            }
            set.clear();
            cancelled.clear();
            (ctx.call.timers_set, ctx.call.timers_cancelled) = (set, cancelled);
            // keep the allocations
        }
        if !keep {
            ctx.router.rollback_to(mark);
            assert_eq!(ctx.router.staged_mark(), mark, "rule 2: nothing of a failed call stays staged");
            return;
        }
        let commits = ctx.store.commits();
        let agent = self.agents[id as usize].as_mut().expect("live slot");
        if ctx.call.writes > 0 {
            agent.wrote_before_commit = Some(commits);
        }
        let waits_for_commit = ctx.store.dirty() && agent.wrote_before_commit == Some(commits);
        if !waits_for_commit {
            ctx.router.release_from(mark);
            assert_eq!(ctx.router.staged_mark(), mark, "rule 3: a call with nothing uncommitted leaves nothing staged");
        }
    }

    /// Makes an instance from `module` for slot `id` and starts it inside a
    /// call bracket (rule 1): kept if it started, rolled back whole if not,
    /// or always with `trial` (an upgrade's first phase).
    pub(super) fn make_instance(&mut self, id: LocalId, module: &crate::agent::CompiledAgent, trial: bool) -> Result<AgentInstance, String> {
        let agent = self.agents[id as usize].as_ref().expect("live slot");
        let (name, instance, account) = (agent.name.clone(), agent.instance, agent.account.clone());
        let state_bytes = self.ctx.borrow().store.state_bytes(&name, instance).map_err(|e| format!("cannot read the state of {name}[{instance}]: {e}"))?;
        // Instantiation runs no guest code (`instance` rule 3).
        let mut runtime = AgentInstance::new(module, name.clone(), instance, state_bytes, account).map_err(|e| format!("{name}[{instance}]: {e}"))?;
        let call = self.call_begin(id, None);
        let started = runtime.start(&call.in_call);
        self.call_end(call, started.is_ok() && !trial);
        started.map_err(|e| format!("{name}[{instance}]: {e}"))?;
        Ok(runtime)
    }

    /// Instantiates and starts the instance in slot `id`.
    pub(super) fn start_instance(&mut self, id: LocalId) -> Result<(), String> {
        let module = self.agents[id as usize].as_ref().expect("live slot").module.clone();
        let runtime = self.make_instance(id, &module, false)?;
        self.agents[id as usize].as_mut().expect("live slot").runtime = Some(runtime);
        Ok(())
    }

    /// Hands `message` to instance `id`. Returns the clock when the call
    /// ended. Both paths, same shard and cross shard, are timed at the same
    /// points (rule 7): routing ends when this delivery starts (the clock is
    /// read here, not reused from the previous delivery), and processing
    /// ends after `call_end`, which releases the call's sends.
    pub(super) fn deliver(&mut self, id: LocalId, message: Message) -> u64 {
        let started = now_ns();
        let slot = id as usize;
        if message.sender() == TIMER_SENDER.as_bytes() {
            self.timer_consumed(&message);
        } else if crate::tools::tool_of(message.sender()).is_some() {
            self.tool_answer_taken(&message);
        }
        let agent = self.agents[slot].as_ref().expect("live slot");
        if agent.supervision.standing == Standing::Quarantined {
            return self.fail_back(slot, &message, started, DeadLetter::Quarantined);
        }
        // A keyed activation's first delivery makes its instance: timed from
        // here to the start of its handler (`caxton_keyed_activation_seconds`).
        let activating = agent.is_keyed() && agent.runtime.is_none();
        if agent.runtime.is_none() {
            if let Err(e) = self.start_instance(id) {
                tracing::warn!(shard = self.index, error = %e, "instance cannot restart; message failed back");
                let ended = self.fail_back(slot, &message, started, DeadLetter::CrashedHandler);
                self.totals.restart_failures += 1;
                self.crashed(id); // its policy counts it as a crash
                return ended;
            }
        }
        if activating {
            self.latencies.activation.record(now_ns().saturating_sub(started));
        }
        // Rule 6: past its deadline, or unreadable to a version 1 agent, a
        // message is failed back instead of handled.
        if message.reply_by() != 0 && crate::clock::unix_micros() > message.reply_by() {
            return self.fail_back(slot, &message, started, DeadLetter::Expired);
        }
        let mut v1 = std::mem::take(&mut self.v1_envelope);
        let abi_v1 = self.agents[slot].as_ref().unwrap().runtime.as_ref().unwrap().abi_version() == 1;
        if abi_v1 && message.downgrade_into(&mut v1).is_err() {
            self.v1_envelope = v1;
            return self.fail_back(slot, &message, started, DeadLetter::NotUnderstood);
        }
        let call = self.call_begin(id, Some(&message));
        let agent = self.agents[slot].as_mut().unwrap();
        let envelope = if abi_v1 { &v1[..] } else { message.as_bytes() };
        let outcome = stages::time(Stage::GuestCall, || agent.runtime.as_mut().unwrap().deliver(&call.in_call, envelope));
        self.v1_envelope = v1;
        // An exit is a return (wasi rule 5): its effects stay.
        let completed = !matches!(outcome, Outcome::Trap(_) | Outcome::Timeout);
        stages::time(Stage::Release, || self.call_end(call, completed));
        let ended = now_ns();
        assert!(ended >= started, "the clock is monotonic");
        stages::time(Stage::Record, || self.record_latency(&message, started, ended));
        if self.spans.is_some() {
            let span_outcome = match &outcome {
                Outcome::Handled | Outcome::Exited(0) => SpanOutcome::Handled,
                Outcome::AgentError(_) | Outcome::Exited(_) => SpanOutcome::Error,
                Outcome::Trap(_) => SpanOutcome::Crashed,
                Outcome::Timeout => SpanOutcome::TimedOut,
            };
            let (call, hop) = {
                let ctx = self.ctx.borrow();
                (ctx.call.trace, ctx.call.hop_span)
            };
            self.trace_spans(slot, &message, started, Some((call, hop, ended)), span_outcome);
        }
        let agent = self.agents[slot].as_mut().unwrap();
        agent.processing.record(ended - started);
        if agent.is_keyed() {
            self.ctx.borrow_mut().router.keyed.touch(id, ended); // `keyed` rule 7
        }
        if !matches!(outcome, Outcome::Trap(_) | Outcome::Timeout) {
            agent.supervision.handled();
        }
        match outcome {
            Outcome::Handled => {
                agent.handled += 1;
                self.totals.handled += 1;
            }
            Outcome::AgentError(code) => {
                agent.handled += 1;
                agent.errors += 1;
                self.totals.handled += 1;
                self.totals.errors += 1;
                self.handler_failed(slot, &message, code);
            }
            Outcome::Exited(code) => {
                agent.handled += 1;
                self.totals.handled += 1;
                if code != 0 {
                    agent.errors += 1;
                    self.totals.errors += 1;
                }
                agent.runtime = None; // the program has ended: made anew
                tracing::debug!(agent = %agent.name, instance = agent.instance, code, "handler called proc_exit; the instance is made anew");
                if let Err(e) = self.start_instance(id) {
                    tracing::warn!(shard = self.index, error = %e, "restarting an exited instance failed; retrying on its next message");
                }
            }
            Outcome::Trap(_) | Outcome::Timeout => {
                let reason = if let Outcome::Trap(why) = outcome {
                    agent.crashes += 1;
                    self.totals.crashes += 1;
                    tracing::warn!(shard = self.index, agent = %agent.name, instance = agent.instance, conversation = message.conversation_id(), "agent trapped: {why}; recreating it");
                    DeadLetter::CrashedHandler
                } else {
                    agent.timeouts += 1;
                    self.totals.timeouts += 1;
                    tracing::warn!(shard = self.index, agent = %agent.name, instance = agent.instance, conversation = message.conversation_id(), "handler ran past its execution time slice; stopped, recreating the instance");
                    DeadLetter::TimedOut
                };
                self.ctx.borrow_mut().router.dead_letter(reason, &message);
                self.crashed(id); // its restart policy (`supervision`)
            }
        }
        ended
    }

    /// A handler returned an error (issue 29): a sender waiting for a
    /// reply is told at once (`handler_error`) instead of waiting for its
    /// deadline, and the agent's log says so, within the instance's log
    /// budget (a handler failing on every message cannot flood the log).
    /// Only on the error path: it allocates the line.
    fn handler_failed(&mut self, slot: usize, message: &Message, code: i32) {
        let agent = self.agents[slot].as_ref().expect("live slot");
        let text = format!("the handler returned error {code} ({}); the sender is told `handler_error` if it waits for a reply", error_code_name(code));
        let logged = agent.account.log.lock().is_ok_and(|mut budget| budget.take(text.len(), std::time::Instant::now()));
        let mut ctx = self.ctx.borrow_mut();
        ctx.router.notice(FailureReason::HandlerError, message);
        if !logged {
            ctx.abi.log_dropped += 1;
            return;
        }
        let (name, instance, conversation) = (agent.name.clone(), agent.instance, message.conversation_id());
        tracing::warn!(shard = self.index, agent = %name, instance, conversation, source = "node", "{text}");
        let record = crate::agent::agent_log::LogRecord {
            unix_us: crate::clock::unix_micros(),
            level: "warn",
            agent: name,
            instance,
            shard: self.index,
            conversation,
            source: "node",
            text,
        };
        ctx.recent_logs.push(record);
    }

    /// A timer's message is taken from its mailbox: its row goes in the
    /// tick's transaction, the one that commits what its handler does
    /// (`timers` rule 3), so a crash before that commit fires it again.
    fn timer_consumed(&mut self, message: &Message) {
        let mut ctx = self.ctx.borrow_mut();
        assert!(!ctx.store.in_handler(), "outside any handler's savepoint");
        if let Err(e) = ctx.store.timer_fired(message.in_reply_to() as i64) {
            tracing::error!(shard = self.index, error = %e, "cannot remove a fired timer; it may fire again after a restart");
        }
    }

    /// Records one delivery (metrics rule 1: no allocation).
    pub(super) fn record_latency(&mut self, message: &Message, started: u64, ended: u64) {
        let routing = started.saturating_sub(message.sent_ns());
        let processing = ended.saturating_sub(started);
        match message.path() {
            RoutePath::Local => self.latencies.routing_local.record(routing),
            RoutePath::Remote => self.latencies.routing_remote.record(routing),
            RoutePath::Node => self.latencies.routing_node.record(routing),
            RoutePath::Api => {}
        }
        if message.path() != RoutePath::Api {
            self.latencies.end_to_end.record(routing + processing);
            self.alert.record_routing(routing);
        }
        self.latencies.processing.record(processing);
        self.alert.record_processing(processing);
    }

    /// Fails `message` back instead of handling it (rule 6), with its hop
    /// span when traced. Returns the clock.
    fn fail_back(&mut self, slot: usize, message: &Message, started: u64, why: DeadLetter) -> u64 {
        self.ctx.borrow_mut().router.dead_letter(why, message);
        self.trace_spans(slot, message, started, None, SpanOutcome::FailedBack);
        now_ns()
    }

    /// Queues a sampled message's spans (`trace`): its hop, from its send
    /// or arrival to `started`, and with `call` (the call's context, the
    /// hop's span and the end of the call) the handler's call. Never waits:
    /// a full queue drops and counts (`trace` rule 2).
    fn trace_spans(&mut self, slot: usize, message: &Message, started: u64, call: Option<(TraceContext, [u8; 8], u64)>, outcome: SpanOutcome) {
        let Some(out) = self.spans.as_ref() else { return };
        let incoming = message.trace();
        let (trace_id, hop) = match call {
            Some((trace, hop, _)) => (trace.trace_id, hop),
            None => {
                let t = self.ctx.borrow_mut().spans.child_of(&incoming);
                (t.trace_id, t.parent_span_id)
            }
        };
        if !out.sampled(&trace_id) {
            return;
        }
        let agent = self.agents[slot].as_ref().expect("live slot");
        let hop_span = SpanRecord {
            kind: SpanKind::Hop,
            trace_id,
            span_id: hop,
            parent_span_id: incoming.parent_span_id,
            start_ns: message.sent_ns().min(started),
            end_ns: started,
            agent: agent.name.clone(),
            instance: agent.instance,
            shard: self.index as u32,
            performative: message.performative(),
            conversation_id: message.conversation_id(),
            path: message.path(),
            outcome,
        };
        let call_span = call.map(|(trace, hop, ended)| SpanRecord {
            kind: SpanKind::Handle,
            span_id: trace.parent_span_id,
            parent_span_id: hop,
            start_ns: started,
            end_ns: ended,
            ..hop_span.clone()
        });
        for span in std::iter::once(hop_span).chain(call_span) {
            if out.offer(span) {
                self.totals.spans_queued += 1;
            } else {
                self.totals.spans_dropped += 1;
            }
        }
    }
}

/// The ABI's name of a handler's return code (docs/ABI.md).
fn error_code_name(code: i32) -> &'static str {
    match code {
        -1 => "not found",
        -2 => "busy",
        -3 => "invalid",
        -4 => "too large",
        -5 => "over a limit",
        -6 => "unreachable",
        _ => "the agent's own code",
    }
}
