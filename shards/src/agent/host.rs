//! Host functions of ABI version 1 (module `caxton`), and the shard context
//! they reach.
//!
//! Rules:
//! 1. A host function never panics and never traps on bad input from the
//!    agent: it returns a negative code and counts the misuse.
//! 2. Host functions reach the shard's router and store through the shard
//!    context installed for the current thread (`install`). The shard loop
//!    never holds a borrow of that context across a call into WebAssembly.
//! 3. Every pointer and length from the agent is checked against its memory's
//!    current size before use.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use wasmer::{AsStoreMut, FunctionEnvMut, Global, Memory, MemoryView, Value};

use crate::envelope::{decode_header, is_endpoint_name, EnvelopeError, Message};
use crate::limits::{
    ENVELOPE_BYTES_MAX, ENVELOPE_HEADER_BYTES, HOST_CALL_FUEL, NAME_BYTES_MAX, STATE_CALL_FUEL, STATE_KEY_BYTES_MAX, STATE_VALUE_BYTES_MAX,
    STATE_WRITES_PER_HANDLER_MAX,
};
use crate::router::{RouteError, Router};
use crate::storage::ShardStore;

/// ABI result codes.
pub const OK: i32 = 0;
pub const NOT_FOUND: i32 = -1;
pub const BUSY: i32 = -2;
pub const INVALID: i32 = -3;
pub const TOO_LARGE: i32 = -4;
pub const OVER_LIMIT: i32 = -5;
/// The receiver's node is down (cluster): the send fails fast.
pub const UNREACHABLE: i32 = -6;

/// What each instance's host functions know about their caller.
pub struct HostEnv {
    pub memory: Option<Memory>,
    /// The metering middleware's remaining-points global, to charge host calls.
    pub fuel: Option<Global>,
    pub name: Arc<str>,
    pub instance: u32,
}

/// Charges a host call's cost against the caller's fuel. When the fuel is
/// gone, the guest traps at its next metered block and the call is counted
/// as a timeout.
fn charge(data: &HostEnv, store: &mut impl AsStoreMut, points: u64) {
    if let Some(fuel) = &data.fuel {
        if let Value::I64(left) = fuel.get(store) {
            let _ = fuel.set(store, Value::I64(left.saturating_sub(points.min(i64::MAX as u64) as i64).max(0)));
        }
    }
}

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

/// Misuse of the ABI, counted by kind (rule 1).
#[derive(Debug, Default, Clone)]
pub struct AbiCounters {
    pub invalid: u64,
    pub too_large: u64,
    pub over_limit: u64,
}

/// The per-call state of the handler now running.
#[derive(Debug, Default)]
pub struct CallState {
    pub writes: usize,
    /// Conversation of the message being handled (0 in `caxton_init`), for logs.
    pub conversation_id: u64,
}

/// Everything on a shard that host functions touch.
pub struct ShardCtx {
    pub router: Router,
    pub store: ShardStore,
    pub ids: IdGen,
    pub call: CallState,
    pub abi: AbiCounters,
    scratch: Vec<u8>,
}

impl ShardCtx {
    pub fn new(router: Router, store: ShardStore, ids: IdGen) -> ShardCtx {
        ShardCtx { router, store, ids, call: CallState::default(), abi: AbiCounters::default(), scratch: Vec::new() }
    }

    fn refuse(&mut self, code: i32) -> i32 {
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

fn with_ctx<R>(f: impl FnOnce(&mut ShardCtx) -> R) -> R {
    CURRENT.with(|c| {
        let slot = c.borrow();
        let ctx = slot.as_ref().expect("host function called outside a shard");
        let mut ctx = ctx.borrow_mut();
        f(&mut ctx)
    })
}

/// Checks `ptr..ptr+len` lies inside the memory (rule 3).
fn checked(view: &MemoryView, ptr: i32, len: i32) -> Option<(u64, usize)> {
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

pub fn send(mut env: FunctionEnvMut<HostEnv>, ptr: i32, len: i32) -> i32 {
    let (data, mut store) = env.data_and_store_mut();
    charge(data, &mut store, HOST_CALL_FUEL + len.max(0) as u64 / 8);
    let Some(memory) = data.memory.as_ref() else { return INVALID };
    let view = memory.view(&store);
    let name = data.name.clone();
    with_ctx(|ctx| match send_from(ctx, &view, &name, ptr, len) {
        Ok(()) => OK,
        Err(code) => ctx.refuse(code),
    })
}

fn send_from(ctx: &mut ShardCtx, view: &MemoryView, sender: &str, ptr: i32, len: i32) -> Result<(), i32> {
    if len as i64 > ENVELOPE_BYTES_MAX as i64 {
        return Err(TOO_LARGE);
    }
    let (at, len) = checked(view, ptr, len).ok_or(INVALID)?;
    if len < ENVELOPE_HEADER_BYTES {
        return Err(INVALID);
    }
    let mut head = [0u8; ENVELOPE_HEADER_BYTES];
    view.read(at, &mut head).map_err(|_| INVALID)?;
    let (mut header, lengths) = decode_header(&head, len).map_err(map_envelope_error)?;
    let mut receiver = [0u8; NAME_BYTES_MAX];
    let receiver = &mut receiver[..lengths.receiver];
    let receiver_at = at + (ENVELOPE_HEADER_BYTES + lengths.sender) as u64;
    view.read(receiver_at, receiver).map_err(|_| INVALID)?;
    if !is_endpoint_name(receiver) {
        return Err(INVALID);
    }
    let dest = ctx.router.resolve(receiver, header.conversation_id, sender.as_bytes()).map_err(|e| {
        ctx.router.counters.not_found += 1;
        route_code(e)
    })?;
    // The message as it will be: the host's sender name replaces the agent's.
    let bytes = len - lengths.sender + sender.len();
    ctx.router.reserve(dest, bytes).map_err(route_code)?;
    header.message_id = ctx.ids.next_id();
    let content_at = receiver_at + lengths.receiver as u64;
    let built = Message::encode_from_agent(&header, sender.as_bytes(), receiver, lengths.content, |buf| {
        view.read(content_at, buf).map_err(|_| EnvelopeError::Invalid("content outside memory"))
    });
    match built {
        Ok(message) => {
            debug_assert_eq!(message.len(), bytes);
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
fn read_key<'k>(view: &MemoryView, ptr: i32, len: i32, key: &'k mut [u8; STATE_KEY_BYTES_MAX]) -> Result<&'k [u8], i32> {
    if len as i64 > STATE_KEY_BYTES_MAX as i64 {
        return Err(TOO_LARGE);
    }
    let (at, len) = checked(view, ptr, len).ok_or(INVALID)?;
    view.read(at, &mut key[..len]).map_err(|_| INVALID)?;
    Ok(&key[..len])
}

/// The common part of the `state_*` calls: charge, check the key, reach
/// the shard; `op` does the rest and returns the ABI result.
fn state_call(
    env: &mut FunctionEnvMut<HostEnv>,
    key_ptr: i32,
    key_len: i32,
    op: impl FnOnce(&mut ShardCtx, &MemoryView, &HostEnv, &[u8]) -> i32,
) -> i32 {
    let (data, mut store) = env.data_and_store_mut();
    charge(data, &mut store, STATE_CALL_FUEL);
    let Some(memory) = data.memory.as_ref() else { return INVALID };
    let view = memory.view(&store);
    with_ctx(|ctx| {
        let mut key = [0u8; STATE_KEY_BYTES_MAX];
        match read_key(&view, key_ptr, key_len, &mut key) {
            Ok(key) => op(ctx, &view, data, key),
            Err(code) => ctx.refuse(code),
        }
    })
}

fn storage_failed(agent: &str, what: &str, e: rusqlite::Error) -> i32 {
    tracing::error!(agent, error = %e, "{what} failed");
    BUSY
}

pub fn state_get(mut env: FunctionEnvMut<HostEnv>, key_ptr: i32, key_len: i32, buf_ptr: i32, buf_cap: i32) -> i32 {
    state_call(&mut env, key_ptr, key_len, |ctx, view, data, key| {
        let Some((buf_at, buf_cap)) = checked(view, buf_ptr, buf_cap) else { return ctx.refuse(INVALID) };
        let found = ctx.store.get(&data.name, data.instance, key, |value| {
            let n = value.len().min(buf_cap);
            view.write(buf_at, &value[..n]).map(|_| value.len() as i32)
        });
        match found {
            Ok(Some(Ok(len))) => len,
            Ok(None) => NOT_FOUND,
            Ok(Some(Err(_))) => ctx.refuse(INVALID),
            Err(e) => storage_failed(&data.name, "state_get", e),
        }
    })
}

pub fn state_put(mut env: FunctionEnvMut<HostEnv>, key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32) -> i32 {
    state_call(&mut env, key_ptr, key_len, |ctx, view, data, key| {
        if val_len as i64 > STATE_VALUE_BYTES_MAX as i64 {
            return ctx.refuse(TOO_LARGE);
        }
        let Some((val_at, val_len)) = checked(view, val_ptr, val_len) else { return ctx.refuse(INVALID) };
        if ctx.call.writes >= STATE_WRITES_PER_HANDLER_MAX {
            return ctx.refuse(OVER_LIMIT);
        }
        // The scratch buffer is reused: no allocation once it has grown.
        let mut value = std::mem::take(&mut ctx.scratch);
        value.resize(val_len, 0);
        let code = if view.read(val_at, &mut value).is_err() {
            ctx.refuse(INVALID)
        } else {
            match ctx.store.handler_write_begin().and_then(|_| ctx.store.put(&data.name, data.instance, key, &value)) {
                Ok(()) => {
                    ctx.call.writes += 1;
                    OK
                }
                Err(e) => storage_failed(&data.name, "state_put", e),
            }
        };
        ctx.scratch = value;
        code
    })
}

pub fn state_delete(mut env: FunctionEnvMut<HostEnv>, key_ptr: i32, key_len: i32) -> i32 {
    state_call(&mut env, key_ptr, key_len, |ctx, _view, data, key| {
        if ctx.call.writes >= STATE_WRITES_PER_HANDLER_MAX {
            return ctx.refuse(OVER_LIMIT);
        }
        match ctx.store.handler_write_begin().and_then(|_| ctx.store.delete(&data.name, data.instance, key)) {
            Ok(found) => {
                ctx.call.writes += 1;
                if found {
                    OK
                } else {
                    NOT_FOUND
                }
            }
            Err(e) => storage_failed(&data.name, "state_delete", e),
        }
    })
}

pub fn now_micros(_env: FunctionEnvMut<HostEnv>) -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Longest log line kept, in bytes; longer ones are cut.
pub const LOG_LINE_BYTES_MAX: usize = 4096;

pub fn log(mut env: FunctionEnvMut<HostEnv>, level: i32, ptr: i32, len: i32) {
    let (data, mut store) = env.data_and_store_mut();
    charge(data, &mut store, STATE_CALL_FUEL);
    let Some(memory) = data.memory.as_ref() else { return };
    let view = memory.view(&store);
    let Some((at, len)) = checked(&view, ptr, len) else {
        with_ctx(|ctx| ctx.refuse(INVALID));
        return;
    };
    let mut line = vec![0u8; len.min(LOG_LINE_BYTES_MAX)];
    if view.read(at, &mut line).is_err() {
        return;
    }
    let text = String::from_utf8_lossy(&line);
    let (agent, instance) = (&*data.name, data.instance);
    let (shard, conversation) = with_ctx(|ctx| (ctx.router.shard(), ctx.call.conversation_id));
    match level {
        0 => tracing::error!(agent, instance, shard, conversation, "{text}"),
        1 => tracing::warn!(agent, instance, shard, conversation, "{text}"),
        2 => tracing::info!(agent, instance, shard, conversation, "{text}"),
        _ => tracing::debug!(agent, instance, shard, conversation, "{text}"),
    }
}
