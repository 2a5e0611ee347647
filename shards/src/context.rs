//! The shard context: everything on one shard that its agents' host
//! functions and its link tasks reach, between and during calls.
//!
//! Rules:
//! 1. One context per shard, on the shard's thread only (an `Rc<RefCell>`):
//!    the run loop, the host functions and the link tasks take turns, and
//!    none holds a borrow across an `await` or a call into WebAssembly.
//! 2. Host functions find it through a thread-local installed when the
//!    shard opens ([`install`]), since wasmer calls them with the instance's
//!    own environment only.
//! 3. Host functions reach it only while a call bracket is open
//!    ([`CallState::open`], set by the shard's `call_begin` and cleared by
//!    its `call_end`): [`with_call`] gives nothing otherwise (no shard on
//!    this thread, no call open, or the context already borrowed), and the
//!    host function refuses. Nothing an agent does can reach a shard
//!    outside its call, or make a borrow fail with a panic.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use caxton_abi::code::{INVALID, OVER_LIMIT, TOO_LARGE};
use caxton_abi::TraceContext;

use crate::router::Router;
use crate::storage::{DiskFloor, ShardStore};
use crate::timers::TimerQueue;

/// Message ids: 8 bits of boot epoch, 8 bits of origin (shard index, or 255
/// for the API), 37 bits of counter: 53 bits in all, so an id survives JSON
/// clients that hold numbers as doubles. Unique per node until the counter
/// wraps (1.4e11 messages from one origin in one boot) or across 256 boots.
#[derive(Debug, Clone)]
pub struct IdGen {
    prefix: u64,
    counter: u64,
}

pub const API_ORIGIN: u8 = 255;

impl IdGen {
    pub fn new(boot_epoch: u64, origin: u8) -> IdGen {
        IdGen { prefix: ((boot_epoch & 0xFF) << 45) | ((origin as u64) << 37), counter: 0 }
    }

    pub fn next_id(&mut self) -> u64 {
        self.counter = (self.counter + 1) & ((1 << 37) - 1);
        let id = self.prefix | self.counter;
        debug_assert!(id < 1 << 53);
        id
    }
}

/// Misuse of the ABI, counted by kind (rule 1), and what limits refused.
#[derive(Debug, Default, Clone)]
pub struct AbiCounters {
    pub invalid: u64,
    pub too_large: u64,
    pub over_limit: u64,
    /// `state_put`s refused by an instance's quota, and by the disk floor.
    pub state_refused_quota: u64,
    pub state_refused_disk: u64,
    /// Log lines dropped by instances' budgets.
    pub log_dropped: u64,
    /// Host calls refused because no call bracket was open (rule 3): none
    /// unless the shard itself has a bug.
    pub outside_call: u64,
}

/// The per-call state of the handler now running.
#[derive(Debug, Default)]
pub struct CallState {
    /// Is a call bracket open (rule 3)? Host functions work only then.
    pub open: bool,
    /// The instance called.
    pub owner: crate::router::LocalId,
    pub writes: usize,
    /// Timers the call set and cancelled, applied to the shard's queue only
    /// if the call completes (`timers` rule 2); each bounded by the call's
    /// writes.
    pub timers_set: Vec<crate::timers::Due>,
    pub timers_cancelled: Vec<i64>,
    /// Of those cancelled, how many were pending (queued, or set by this
    /// call): the instance's count of pending timers is the queue's, plus
    /// those set, less these.
    pub timers_cancelled_pending: usize,
    /// Conversation of the message being handled (0 in `caxton_init`), for logs.
    pub conversation_id: u64,
    /// The trace context the call's sends carry: the handled message's
    /// trace, with this call's span as their parent.
    pub trace: TraceContext,
    /// The span of the handled message's hop, the call span's parent
    /// (`trace`: sender's span → hop → call).
    pub hop_span: [u8; 8],
}

/// Span and trace ids: xorshift64* seeded from the kernel once per shard.
/// Unique enough to tell spans apart; not secrets.
#[derive(Debug)]
pub struct SpanIds(u64);

impl SpanIds {
    pub fn new() -> SpanIds {
        let mut seed = [0u8; 8];
        // SAFETY: getrandom(2) writes at most 8 bytes into `seed`, which we own.
        let n = unsafe { libc::getrandom(seed.as_mut_ptr() as *mut libc::c_void, seed.len(), 0) };
        assert_eq!(n, 8, "the kernel's random source answers");
        SpanIds(u64::from_le_bytes(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A new span id.
    pub fn span(&mut self) -> [u8; 8] {
        self.next().to_le_bytes()
    }

    /// The trace context of a call handling a message of trace `incoming`:
    /// its trace (a new one if it had none) and a new span.
    pub fn child_of(&mut self, incoming: &TraceContext) -> TraceContext {
        let trace_id = if incoming.is_none() {
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&self.next().to_le_bytes());
            t[8..].copy_from_slice(&self.next().to_le_bytes());
            t
        } else {
            incoming.trace_id
        };
        let span = self.next().to_le_bytes();
        let trace = TraceContext { trace_id, parent_span_id: span };
        debug_assert!(!trace.is_none());
        trace
    }
}

impl Default for SpanIds {
    fn default() -> Self {
        SpanIds::new()
    }
}

/// Everything on a shard that host functions touch.
pub struct ShardCtx {
    pub router: Router,
    pub store: ShardStore,
    pub ids: IdGen,
    pub call: CallState,
    pub abi: AbiCounters,
    /// The node's free-space floor (rule 4).
    pub disk: Arc<DiskFloor>,
    /// A buffer host calls reuse (state values), so they allocate nothing
    /// once it has grown.
    pub(crate) scratch: Vec<u8>,
    pub spans: SpanIds,
    /// The shard's timers in due order (`timers` rule 2).
    pub timers: TimerQueue,
    /// Its agents' recent log lines (`agent_log` rule 4).
    pub recent_logs: crate::agent::agent_log::RecentLines,
    /// Which agent may call which tool (`tools` rule 1).
    pub grants: crate::tools::Grants,
}

impl ShardCtx {
    pub fn new(router: Router, store: ShardStore, ids: IdGen, disk: Arc<DiskFloor>) -> ShardCtx {
        ShardCtx {
            router,
            store,
            ids,
            call: CallState::default(),
            abi: AbiCounters::default(),
            disk,
            scratch: Vec::new(),
            spans: SpanIds::new(),
            timers: TimerQueue::default(),
            recent_logs: Default::default(),
            grants: Default::default(),
        }
    }

    /// Counts a refused host call by its result code; returns the code.
    pub(crate) fn refuse(&mut self, code: i32) -> i32 {
        match code {
            INVALID => self.abi.invalid += 1,
            TOO_LARGE => self.abi.too_large += 1,
            OVER_LIMIT => self.abi.over_limit += 1,
            _ => {}
        }
        code
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<ShardCtx>>>> = const { RefCell::new(None) };
}

/// Makes `ctx` the context of host calls on this thread (rule 2).
pub fn install(ctx: Rc<RefCell<ShardCtx>>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(ctx));
}

/// Runs `f` with this thread's context, if the thread is a shard's (for
/// what is only reported, such as a log line's shard).
pub(crate) fn try_with_ctx<R>(f: impl FnOnce(&mut ShardCtx) -> R) -> Option<R> {
    CURRENT.with(|c| {
        let slot = c.borrow();
        let ctx = slot.as_ref()?;
        let mut ctx = ctx.try_borrow_mut().ok()?;
        Some(f(&mut ctx))
    })
}

/// Is a call bracket open on this thread (rule 3)? Counts a refusal when
/// a shard's context is here but no call is open.
pub(crate) fn call_open() -> bool {
    CURRENT.with(|c| {
        let slot = c.borrow();
        let Some(ctx) = slot.as_ref() else { return false };
        let Ok(mut ctx) = ctx.try_borrow_mut() else { return false };
        if !ctx.call.open {
            ctx.abi.outside_call += 1;
        }
        ctx.call.open
    })
}

/// Runs `f` with this thread's context if a call bracket is open (rules 2
/// and 3); `None` otherwise, and the host function refuses.
pub(crate) fn with_call<R>(f: impl FnOnce(&mut ShardCtx) -> R) -> Option<R> {
    CURRENT.with(|c| {
        let slot = c.borrow();
        let mut ctx = slot.as_ref()?.try_borrow_mut().ok()?;
        if !ctx.call.open {
            ctx.abi.outside_call += 1;
            return None;
        }
        Some(f(&mut ctx))
    })
}
