//! Host functions of ABI version 1 (module `caxton`). They reach the shard
//! through its context (`crate::context`).
//!
//! Rules:
//! 1. A host function never panics and never traps on bad input from the
//!    agent: it returns a negative code and counts the misuse.
//! 2. Host functions reach the shard's router and store through the shard
//!    context installed for the current thread (`context::install`). The
//!    shard loop never holds a borrow of that context across a call into
//!    WebAssembly.
//! 3. Every pointer and length from the agent is checked against its memory's
//!    current size before use.
//! 4. An instance's state is bounded in bytes (keys and values, its quota)
//!    and by the node's disk floor; a `state_put` past either returns -5
//!    and is counted. Deletes are never refused for space.
//! 5. A host call is charged fuel for the work it causes, before it does
//!    it: a base price, plus the bytes it moves and the lines it writes
//!    (docs/LIMITS.md, "What each host call costs"). A call the fuel left
//!    cannot pay for does nothing, and the handler is stopped at its next
//!    metered block. Work whose size only the store knows (the value
//!    `state_get` reads, the one `state_put` replaces or `state_delete`
//!    frees) is charged as soon as it is known, before anything is copied
//!    into the guest: a call past its fuel overruns by one value at most.
//! 6. A host function works only inside a call bracket, which the shard
//!    opens around every entry into guest code (`shard::handler` rule 1).
//!    Outside one it does nothing and returns -3 (WASI: `EINVAL`), counted
//!    (`outside_call`). Paying ([`charge`]) is where this is checked, so no
//!    host function can skip it: each pays before it works; one that
//!    reaches the shard only through [`with_call`], which checks the
//!    bracket, pays with [`charge_fuel`] instead.
//! 7. Log lines (`log`, and WASI standard output and error) are paid for
//!    one by one: every line a write ends costs [`LOG_LINE_FUEL`], and one
//!    that the instance's log budget lets through costs
//!    [`LOG_WRITTEN_LINE_FUEL`] more, before it is written.

use std::sync::Arc;

use wasmer::{FunctionEnvMut, Memory, MemoryView};

use super::hot::FuelCell;

use super::agent_log::{self, LogBudget, LogLimits};
use crate::context::{call_open, try_with_ctx, with_call, ShardCtx};
use crate::envelope::{decode_header, is_endpoint_name, EnvelopeError, Header, Lengths, Message, Protocol};
use crate::limits::{
    ADDRESS_BYTES_MAX, BULK_FUEL_PER_KIB, ENVELOPE_BYTES_MAX, ENVELOPE_HEADER_BYTES, HOST_CALL_FUEL, LOG_LINE_BYTES_MAX, LOG_LINE_FUEL, LOG_WRITTEN_LINE_FUEL,
    PROTOCOL_BYTES_MAX, SEND_CALL_FUEL, STATE_CALL_FUEL, STATE_FREE_FUEL_PER_KIB, STATE_FUEL_PER_KIB, STATE_KEY_BYTES_MAX, STATE_READ_FUEL_PER_KIB,
    STATE_VALUE_BYTES_MAX, STATE_WRITES_PER_HANDLER_MAX,
};
use crate::router::{Dest, RouteError};

pub use caxton_abi::code::{BUSY, INVALID, NOT_FOUND, OK, OVER_LIMIT, TOO_LARGE, UNREACHABLE};

/// What each instance's host functions know about their caller.
pub struct HostEnv {
    pub memory: Option<Memory>,
    /// The metering middleware's remaining-points global, by address
    /// (`hot`), to charge host calls.
    pub fuel: Option<FuelCell>,
    pub name: Arc<str>,
    pub instance: u32,
    /// Bytes of state (keys and values) the instance holds, and its quota
    /// (rule 4).
    pub state_bytes: u64,
    pub state_max: u64,
    /// What outlives one runtime of the instance (a trap recreates it).
    pub account: Arc<InstanceAccount>,
    /// Standard output and error: the line being written (`wasi` rule 1).
    output: [Vec<u8>; 2],
    /// `fd_write`'s list of buffers, kept to allocate nothing per call.
    pub(super) iovecs: Vec<(u64, u64)>,
    /// The code the program gave `proc_exit` (`wasi` rule 5).
    pub exit_code: Option<i32>,
}

/// The standard streams a WASI program writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// An instance's budgets and refusals, kept across its recreations: a
/// crashing agent must not get a fresh log budget each time.
#[derive(Debug)]
pub struct InstanceAccount {
    /// `agent_log` rule 1.
    pub log: std::sync::Mutex<LogBudget>,
    /// `state_put`s refused by the quota or the disk floor.
    pub state_refused: std::sync::atomic::AtomicU64,
}

impl InstanceAccount {
    pub fn new(log: LogLimits) -> Arc<InstanceAccount> {
        Arc::new(InstanceAccount { log: std::sync::Mutex::new(LogBudget::new(log)), state_refused: Default::default() })
    }

    fn refused(&self) {
        self.state_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// `state_put`s refused, and log lines dropped, so far.
    pub fn refusals(&self) -> (u64, u64) {
        (self.state_refused.load(std::sync::atomic::Ordering::Relaxed), self.log.lock().unwrap().dropped)
    }
}

impl HostEnv {
    pub fn new(name: Arc<str>, instance: u32, state_bytes: u64, state_max: u64, account: Arc<InstanceAccount>) -> HostEnv {
        HostEnv { memory: None, fuel: None, name, instance, state_bytes, state_max, account, output: Default::default(), iovecs: Vec::new(), exit_code: None }
    }

    /// Takes bytes a program wrote to `stream`, writing each line they end
    /// (`wasi` rule 1). A line is written in pieces of at most
    /// [`LOG_LINE_BYTES_MAX`] bytes. Each line ended is paid for first
    /// (rule 7) with `pay`; when it cannot be paid, nothing more is taken
    /// and `false` is returned.
    pub fn write_output(&mut self, stream: Stream, mut bytes: &[u8], now: std::time::Instant, pay: &mut impl FnMut(u64) -> bool) -> bool {
        while !bytes.is_empty() {
            let (taken, ended) = agent_log::take_line(&mut self.output[stream as usize], bytes, LOG_LINE_BYTES_MAX);
            bytes = &bytes[taken..];
            if ended && !self.flush_stream(stream, now, pay) {
                return false;
            }
        }
        true
    }

    /// Writes what is left of unfinished lines (at the end of each call):
    /// at most one line a stream, paid for with `pay`.
    pub fn flush_output(&mut self, pay: &mut impl FnMut(u64) -> bool) {
        // The clock only when there is a line: this runs after every call.
        if self.output.iter().all(Vec::is_empty) {
            return;
        }
        let now = std::time::Instant::now();
        self.flush_stream(Stream::Stdout, now, pay);
        self.flush_stream(Stream::Stderr, now, pay);
    }

    fn flush_stream(&mut self, stream: Stream, now: std::time::Instant, pay: &mut impl FnMut(u64) -> bool) -> bool {
        let mut line = std::mem::take(&mut self.output[stream as usize]);
        let mut paid = true;
        if !line.is_empty() {
            let level = if stream == Stream::Stdout { LEVEL_INFO } else { LEVEL_WARN };
            paid = self.log_line(level, stream.name(), &line, now, pay);
            line.clear();
        }
        debug_assert!(self.output[stream as usize].is_empty());
        self.output[stream as usize] = line; // keep the allocation
        paid
    }

    /// Writes one line of the agent's to the node's log, within its budget
    /// (`agent_log` rules 1 to 3), paid for first (rule 7); `source` says
    /// which call wrote it. `false` when `pay` refused: nothing was done.
    fn log_line(&self, level: i32, source: &'static str, line: &[u8], now: std::time::Instant, pay: &mut impl FnMut(u64) -> bool) -> bool {
        assert!(line.len() <= LOG_LINE_BYTES_MAX);
        if !pay(LOG_LINE_FUEL) {
            return false;
        }
        // The budget's lock is the node's only one on this path, never
        // contended: the instance lives on this shard's thread.
        let Ok(mut budget) = self.account.log.lock() else { return true };
        if !budget.take(line.len(), now) {
            drop(budget);
            try_with_ctx(|ctx| ctx.abi.log_dropped += 1);
            return true;
        }
        drop(budget);
        if !pay(LOG_WRITTEN_LINE_FUEL) {
            return false;
        }
        let text = agent_log::escape(line);
        let (agent, instance) = (&*self.name, self.instance);
        let (shard, conversation) = try_with_ctx(|ctx| (ctx.router.shard(), ctx.call.conversation_id)).unwrap_or((usize::MAX, 0));
        let level_name = match level {
            LEVEL_ERROR => "error",
            LEVEL_WARN => "warn",
            LEVEL_INFO => "info",
            _ => "debug",
        };
        let record = agent_log::LogRecord {
            unix_us: crate::clock::unix_micros(),
            level: level_name,
            agent: self.name.clone(),
            instance,
            shard,
            conversation,
            source,
            text: text.clone().into_owned(),
        };
        try_with_ctx(|ctx| ctx.recent_logs.push(record));
        match level {
            LEVEL_ERROR => tracing::error!(agent, instance, shard, conversation, source, "{text}"),
            LEVEL_WARN => tracing::warn!(agent, instance, shard, conversation, source, "{text}"),
            LEVEL_INFO => tracing::info!(agent, instance, shard, conversation, source, "{text}"),
            _ => tracing::debug!(agent, instance, shard, conversation, source, "{text}"),
        }
        true
    }
}

/// `log`'s levels.
const LEVEL_ERROR: i32 = 0;
const LEVEL_WARN: i32 = 1;
const LEVEL_INFO: i32 = 2;

/// Fuel for moving `bytes` at `per_kib` points a KiB (at least one point).
pub fn bytes_fuel(bytes: usize, per_kib: u64) -> u64 {
    (bytes as u64).saturating_mul(per_kib) / 1024 + 1
}

/// Takes `points` from `fuel` (rule 5): `false` when what is left cannot
/// pay, and then all of it is taken and one point more, so the guest traps
/// at its next fuel check (`fuel` rule 4; counted as a timeout).
pub(super) fn take_fuel(fuel: FuelCell, points: u64) -> bool {
    let left = fuel.get();
    let points = points.min(i64::MAX as u64) as i64;
    let paid = left >= points;
    fuel.set(if paid { left - points } else { left.min(0) - 1 });
    paid
}

/// Why a host call did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unpaid {
    /// No call bracket is open (rule 6).
    OutsideCall,
    /// The fuel left cannot pay (rule 5).
    NoFuel,
}

impl Unpaid {
    /// The ABI result code (rules 5 and 6).
    pub(super) fn code(self) -> i32 {
        match self {
            Unpaid::OutsideCall => INVALID,
            Unpaid::NoFuel => OVER_LIMIT,
        }
    }
}

/// Charges a host call's price against the caller's fuel, inside a call
/// only (rules 5 and 6). On `Err` the call must do nothing.
pub(super) fn charge(data: &HostEnv, points: u64) -> Result<(), Unpaid> {
    if !call_open() {
        return Err(Unpaid::OutsideCall);
    }
    charge_fuel(data, points)
}

/// [`charge`] for a host function that reaches the shard next through
/// [`with_call`], which checks the call bracket itself (rule 6): one look
/// at the thread's context a call instead of two. Outside a bracket the
/// fuel taken is no one's.
pub(super) fn charge_fuel(data: &HostEnv, points: u64) -> Result<(), Unpaid> {
    let Some(fuel) = data.fuel else { return Err(Unpaid::OutsideCall) };
    if take_fuel(fuel, points) {
        Ok(())
    } else {
        Err(Unpaid::NoFuel)
    }
}

/// Checks `ptr..ptr+len` lies inside the memory (rule 3).
pub(super) fn checked(view: &MemoryView<'_>, ptr: i32, len: i32) -> Option<(u64, usize)> {
    if ptr < 0 || len < 0 {
        return None;
    }
    let end = ptr as u64 + len as u64;
    (end <= view.data_size()).then_some((ptr as u64, len as usize))
}

fn map_envelope_error(e: EnvelopeError) -> i32 {
    match e {
        EnvelopeError::Invalid(_) => INVALID,
        EnvelopeError::TooLarge => TOO_LARGE,
    }
}

pub fn send(mut env: FunctionEnvMut<'_, HostEnv>, ptr: i32, len: i32) -> i32 {
    let (data, store) = env.data_and_store_mut();
    if let Err(e) = charge_fuel(data, SEND_CALL_FUEL + bytes_fuel(len.max(0) as usize, BULK_FUEL_PER_KIB)) {
        return e.code();
    }
    let Some(memory) = data.memory.as_ref() else { return INVALID };
    let view = memory.view(&store);
    let name = data.name.clone();
    with_call(|ctx| match crate::stages::time(crate::stages::Stage::HostSend, || send_from(ctx, &view, &name, ptr, len)) {
        Ok(()) => OK,
        Err(code) => ctx.refuse(code),
    })
    .unwrap_or(INVALID)
}

/// Where an agent's envelope keeps its parts, read from its header.
struct AgentEnvelope {
    header: Header,
    lengths: Lengths,
    receiver_at: u64,
    content_at: u64,
}

/// Reads the header of the envelope at `at` in the guest's memory: version
/// 2, or version 1 (which has no deadline, trace or protocol).
fn read_envelope_header(view: &MemoryView<'_>, at: u64, len: usize) -> Result<AgentEnvelope, i32> {
    let mut version = [0u8; 1];
    view.read(at, &mut version).map_err(|_| INVALID)?;
    if version[0] == caxton_abi::v1::VERSION {
        let mut head = [0u8; caxton_abi::v1::HEADER_BYTES];
        if len < head.len() {
            return Err(INVALID);
        }
        view.read(at, &mut head).map_err(|_| INVALID)?;
        let (header, lengths) = caxton_abi::v1::decode_header(&head, len).map_err(map_envelope_error)?;
        let receiver_at = at + (head.len() + lengths.sender) as u64;
        return Ok(AgentEnvelope { header, lengths, receiver_at, content_at: receiver_at + lengths.receiver as u64 });
    }
    let mut head = [0u8; ENVELOPE_HEADER_BYTES];
    if len < head.len() {
        return Err(INVALID);
    }
    view.read(at, &mut head).map_err(|_| INVALID)?;
    let (mut header, lengths) = decode_header(&head, len).map_err(map_envelope_error)?;
    let receiver_at = at + (ENVELOPE_HEADER_BYTES + lengths.sender) as u64;
    let protocol_at = receiver_at + lengths.receiver as u64;
    let mut protocol = [0u8; PROTOCOL_BYTES_MAX];
    let protocol = &mut protocol[..lengths.protocol];
    view.read(protocol_at, protocol).map_err(|_| INVALID)?;
    header.protocol = Protocol::new(protocol).map_err(map_envelope_error)?;
    Ok(AgentEnvelope { header, lengths, receiver_at, content_at: protocol_at + lengths.protocol as u64 })
}

fn send_from(ctx: &mut ShardCtx, view: &MemoryView<'_>, sender: &str, ptr: i32, len: i32) -> Result<(), i32> {
    if len as i64 > ENVELOPE_BYTES_MAX as i64 {
        return Err(TOO_LARGE);
    }
    let (at, len) = checked(view, ptr, len).ok_or(INVALID)?;
    let AgentEnvelope { mut header, lengths, receiver_at, content_at } = read_envelope_header(view, at, len)?;
    let mut receiver = [0u8; ADDRESS_BYTES_MAX];
    let receiver = &mut receiver[..lengths.receiver];
    view.read(receiver_at, receiver).map_err(|_| INVALID)?;
    // Only a receiver the directory does not hold needs its bytes checked:
    // every name there is valid (directory rule 4).
    let dest = match ctx.router.resolve(receiver, header.conversation_id, sender.as_bytes()) {
        Ok(dest @ (Dest::Local(_) | Dest::Peer(_))) => dest,
        _ if !is_endpoint_name(receiver) => return Err(INVALID),
        Ok(dest) => dest,
        Err(e) => {
            ctx.router.counters.not_found += 1;
            return Err(route_code(e));
        }
    };
    // The message as it will be (version 2): the host's sender name replaces
    // the agent's, and it carries the trace of the message being handled.
    let bytes = ENVELOPE_HEADER_BYTES + sender.len() + lengths.receiver + lengths.protocol + lengths.content;
    let tool_call = dest == Dest::Api && crate::tools::tool_of(receiver).is_some();
    if tool_call {
        let in_flight = ctx.store.tool_calls_of(sender);
        crate::tools::admit(&mut ctx.grants, sender, receiver, header.reply_with, in_flight)?;
        if ctx.call.writes >= STATE_WRITES_PER_HANDLER_MAX {
            return Err(OVER_LIMIT); // a call is a write (`tools` rule 4)
        }
    }
    ctx.router.reserve(dest, bytes).map_err(route_code)?;
    header.message_id = ctx.ids.next_id();
    header.trace = ctx.call.trace;
    let built = Message::encode_from_agent(&header, sender.as_bytes(), receiver, lengths.content, |buf| {
        view.read(content_at, buf).map_err(|_| EnvelopeError::Invalid("content outside memory"))
    });
    match built {
        Ok(message) => {
            debug_assert_eq!(message.len(), bytes);
            if tool_call {
                // `tools` rule 4: recorded with the handler's writes, sent
                // after their commit.
                let recorded = ctx.store.handler_write_begin().and_then(|_| ctx.store.tool_call_insert(sender, header.reply_with, message.as_bytes()));
                if let Err(e) = recorded {
                    tracing::error!(agent = sender, error = %e, "cannot record a tool call; refused");
                    ctx.router.cancel_reservation(dest, bytes);
                    return Err(OVER_LIMIT);
                }
                ctx.call.writes += 1;
                ctx.grants.counters.admitted += 1;
            }
            ctx.router.stage(dest, message);
            Ok(())
        }
        Err(e) => {
            ctx.router.cancel_reservation(dest, bytes);
            Err(map_envelope_error(e))
        }
    }
}

fn route_code(e: RouteError) -> i32 {
    // (Busy is counted by the router itself.)
    match e {
        RouteError::UnknownReceiver => NOT_FOUND,
        RouteError::Busy => BUSY,
        RouteError::Unreachable => UNREACHABLE,
    }
}

/// Reads a state key out of guest memory into `key`.
fn read_key<'k>(view: &MemoryView<'_>, ptr: i32, len: i32, key: &'k mut [u8; STATE_KEY_BYTES_MAX]) -> Result<&'k [u8], i32> {
    if len as i64 > STATE_KEY_BYTES_MAX as i64 {
        return Err(TOO_LARGE);
    }
    let (at, len) = checked(view, ptr, len).ok_or(INVALID)?;
    view.read(at, &mut key[..len]).map_err(|_| INVALID)?;
    Ok(&key[..len])
}

/// The calling instance's memory and fuel during a host call: a view of
/// the memory is made for each use; paying writes the fuel global by
/// address (`hot`), without the store.
pub(super) struct Guest<'s> {
    store: wasmer::StoreMut<'s>,
    memory: Memory,
    fuel: FuelCell,
}

impl Guest<'_> {
    pub(super) fn view(&self) -> MemoryView<'_> {
        self.memory.view(&self.store)
    }

    /// Pays for work as it becomes known (rule 5).
    pub(super) fn pay(&mut self, points: u64) -> bool {
        take_fuel(self.fuel, points)
    }
}

/// The common part of the `state_*` calls: charge `points` (rule 5), check
/// the key, reach the shard; `op` does the rest, paying through the
/// [`Guest`] for what only the store can size, and returns the ABI result.
fn state_call(
    env: &mut FunctionEnvMut<'_, HostEnv>,
    points: u64,
    key_ptr: i32,
    key_len: i32,
    op: impl FnOnce(&mut ShardCtx, &mut Guest<'_>, &mut HostEnv, &[u8]) -> i32,
) -> i32 {
    let (data, store) = env.data_and_store_mut();
    if let Err(e) = charge_fuel(data, points) {
        return e.code();
    }
    let (Some(memory), Some(fuel)) = (data.memory.clone(), data.fuel) else { return INVALID };
    let mut guest = Guest { store, memory, fuel };
    with_call(|ctx| {
        let mut key = [0u8; STATE_KEY_BYTES_MAX];
        let read = read_key(&guest.view(), key_ptr, key_len, &mut key);
        match read {
            Ok(key) => op(ctx, &mut guest, data, key),
            Err(code) => ctx.refuse(code),
        }
    })
    .unwrap_or(INVALID)
}

pub(super) fn storage_failed(agent: &str, what: &str, e: rusqlite::Error) -> i32 {
    tracing::error!(agent, error = %e, "{what} failed");
    BUSY
}

/// `state_get(key, buf, cap) -> length`: copies up to `cap` bytes of the
/// value into `buf` and returns its whole length. Priced as the value
/// SQLite reads, whatever `cap` is (rule 5).
pub fn state_get(mut env: FunctionEnvMut<'_, HostEnv>, key_ptr: i32, key_len: i32, buf_ptr: i32, buf_cap: i32) -> i32 {
    state_call(&mut env, STATE_CALL_FUEL, key_ptr, key_len, |ctx, guest, data, key| {
        let Some((buf_at, buf_cap)) = checked(&guest.view(), buf_ptr, buf_cap) else { return ctx.refuse(INVALID) };
        let found = ctx.store.get(&data.name, data.instance, key, |value| {
            if !guest.pay(bytes_fuel(value.len(), STATE_READ_FUEL_PER_KIB)) {
                return Err(OVER_LIMIT);
            }
            let n = value.len().min(buf_cap);
            guest.view().write(buf_at, &value[..n]).map(|_| value.len() as i32).map_err(|_| INVALID)
        });
        match found {
            Ok(Some(Ok(length))) => length,
            Ok(None) => NOT_FOUND,
            Ok(Some(Err(code))) => ctx.refuse(code),
            Err(e) => storage_failed(&data.name, "state_get", e),
        }
    })
}

/// `state_put(key, value) -> 0`. Priced by the bytes it stores, and by
/// those of the value it replaces, which SQLite frees (rule 5).
pub fn state_put(mut env: FunctionEnvMut<'_, HostEnv>, key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32) -> i32 {
    state_call(&mut env, STATE_CALL_FUEL, key_ptr, key_len, |ctx, guest, data, key| {
        if val_len as i64 > STATE_VALUE_BYTES_MAX as i64 {
            return ctx.refuse(TOO_LARGE);
        }
        let Some((val_at, val_len)) = checked(&guest.view(), val_ptr, val_len) else { return ctx.refuse(INVALID) };
        if ctx.call.writes >= STATE_WRITES_PER_HANDLER_MAX {
            return ctx.refuse(OVER_LIMIT);
        }
        // Rule 4: the disk floor, then the quota (what the key held before
        // is given back).
        if !ctx.disk.allows_writes() {
            ctx.abi.state_refused_disk += 1;
            data.account.refused();
            return OVER_LIMIT;
        }
        let before = match ctx.store.record_bytes(&data.name, data.instance, key) {
            Ok(b) => b.unwrap_or(0),
            Err(e) => return storage_failed(&data.name, "state_put", e),
        };
        let after = data.state_bytes.saturating_sub(before) + (key.len() + val_len) as u64;
        if after > data.state_max && after > data.state_bytes {
            ctx.abi.state_refused_quota += 1;
            data.account.refused();
            return OVER_LIMIT;
        }
        // Only a put that will be stored pays for its bytes: a refused one
        // costs what refusing costs.
        let price = bytes_fuel(key.len() + val_len, STATE_FUEL_PER_KIB) + bytes_fuel(before as usize, STATE_FREE_FUEL_PER_KIB);
        if !guest.pay(price) {
            return OVER_LIMIT;
        }
        // The scratch buffer is reused: no allocation once it has grown.
        let mut value = std::mem::take(&mut ctx.scratch);
        value.resize(val_len, 0);
        let code = if guest.view().read(val_at, &mut value).is_err() {
            ctx.refuse(INVALID)
        } else {
            ctx.store.handler_put(&data.name, data.instance, key, &value);
            ctx.call.writes += 1;
            data.state_bytes = data.state_bytes.saturating_sub(before) + (key.len() + val_len) as u64;
            OK
        };
        ctx.scratch = value;
        code
    })
}

/// `state_delete(key) -> 0`, or -1 if absent. Priced by the bytes it frees
/// (rule 5), charged once the store says how many: a delete past the fuel
/// left frees one value more than it paid for, at most.
pub fn state_delete(mut env: FunctionEnvMut<'_, HostEnv>, key_ptr: i32, key_len: i32) -> i32 {
    state_call(&mut env, STATE_CALL_FUEL, key_ptr, key_len, |ctx, guest, data, key| {
        if ctx.call.writes >= STATE_WRITES_PER_HANDLER_MAX {
            return ctx.refuse(OVER_LIMIT);
        }
        match ctx.store.handler_delete(&data.name, data.instance, key) {
            Ok(freed) => {
                ctx.call.writes += 1;
                match freed {
                    Some(bytes) => {
                        data.state_bytes = data.state_bytes.saturating_sub(bytes);
                        guest.pay(bytes_fuel(bytes as usize, STATE_FREE_FUEL_PER_KIB));
                        OK
                    }
                    None => NOT_FOUND,
                }
            }
            Err(e) => storage_failed(&data.name, "state_delete", e),
        }
    })
}

pub fn now_micros(env: FunctionEnvMut<'_, HostEnv>) -> i64 {
    let data = env.data();
    if let Err(e) = charge(data, HOST_CALL_FUEL) {
        return e.code() as i64;
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// `self_name(ptr, cap)`: writes the instance's own address into
/// `ptr..ptr+cap` and returns its length: the agent's name, or for an
/// activation of a keyed agent `TYPE/KEY` (the key is what follows the
/// first `/`). `TOO_LARGE` if `cap` is shorter, `INVALID` outside memory.
/// Added in ABI version 2 for keyed agents; any module may import it.
pub fn self_name(mut env: FunctionEnvMut<'_, HostEnv>, ptr: i32, cap: i32) -> i32 {
    let (data, store) = env.data_and_store_mut();
    if let Err(e) = charge(data, HOST_CALL_FUEL) {
        return e.code();
    }
    let name = data.name.clone();
    assert!(name.len() <= ADDRESS_BYTES_MAX, "an address fits its length byte");
    if (cap.max(0) as usize) < name.len() {
        return TOO_LARGE;
    }
    let Some(memory) = data.memory.clone() else { return INVALID };
    let view = memory.view(&store);
    let Some((at, _)) = checked(&view, ptr, name.len() as i32) else {
        with_call(|ctx| ctx.refuse(INVALID));
        return INVALID;
    };
    if view.write(at, name.as_bytes()).is_err() {
        return INVALID;
    }
    name.len() as i32
}

/// `log(level, text)`: one line (rule 7), cut at [`LOG_LINE_BYTES_MAX`].
pub fn log(mut env: FunctionEnvMut<'_, HostEnv>, level: i32, ptr: i32, len: i32) {
    let (data, store) = env.data_and_store_mut();
    let copied = (len.max(0) as usize).min(LOG_LINE_BYTES_MAX);
    if charge(data, HOST_CALL_FUEL + bytes_fuel(copied, BULK_FUEL_PER_KIB)).is_err() {
        return;
    }
    let (Some(memory), Some(fuel)) = (data.memory.clone(), data.fuel) else { return };
    let mut line = [0u8; LOG_LINE_BYTES_MAX];
    let line = {
        let view = memory.view(&store);
        let Some((at, len)) = checked(&view, ptr, len) else {
            with_call(|ctx| ctx.refuse(INVALID));
            return;
        };
        let line = &mut line[..len.min(LOG_LINE_BYTES_MAX)];
        if view.read(at, line).is_err() {
            return;
        }
        line
    };
    data.log_line(level, "log", line, std::time::Instant::now(), &mut |points| take_fuel(fuel, points));
}
