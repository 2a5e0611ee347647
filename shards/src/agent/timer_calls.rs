//! The host functions of timers (`timer_set`, `timer_cancel`): an agent
//! schedules a message to itself (`crate::timers`). Like `state_put`, each
//! is a write of the handler: inside its savepoint, counted against
//! [`STATE_WRITES_PER_HANDLER_MAX`], refused below the disk floor, charged
//! fuel before it works, every pointer checked. What it does to the
//! shard's queue of due timers waits in the call's state until the call
//! completes (`timers` rule 2).

use wasmer::FunctionEnvMut;

use super::host::{bytes_fuel, charge_fuel, checked, storage_failed, HostEnv, INVALID, NOT_FOUND, OK, OVER_LIMIT, TOO_LARGE};
use crate::context::with_call;
use crate::limits::{STATE_CALL_FUEL, STATE_FUEL_PER_KIB, STATE_WRITES_PER_HANDLER_MAX, TIMERS_PER_INSTANCE_MAX, TIMER_CONTENT_BYTES_MAX, TIMER_DELAY_MS_MAX};
use crate::timers::Due;

/// `timer_set(delay_ms, content_ptr, content_len) -> id`: after `delay_ms`
/// the instance gets `inform` from `@timer` with `in_reply_to` = the id
/// and this content. Negative: -3 a bad delay or pointer, -4 content over
/// its limit, -5 over the instance's timers, the handler's writes or the
/// disk floor.
pub fn timer_set(mut env: FunctionEnvMut<'_, HostEnv>, delay_ms: i64, ptr: i32, len: i32) -> i64 {
    let (data, store) = env.data_and_store_mut();
    if let Err(e) = charge_fuel(data, STATE_CALL_FUEL + bytes_fuel(len.max(0) as usize, STATE_FUEL_PER_KIB)) {
        return e.code() as i64;
    }
    let Some(memory) = data.memory.as_ref() else { return INVALID as i64 };
    let view = memory.view(&store);
    let name = data.name.clone();
    let instance = data.instance;
    with_call(|ctx| {
        if !(0..=TIMER_DELAY_MS_MAX as i64).contains(&delay_ms) {
            return ctx.refuse(INVALID) as i64;
        }
        if len as i64 > TIMER_CONTENT_BYTES_MAX as i64 {
            return ctx.refuse(TOO_LARGE) as i64;
        }
        let Some((at, len)) = checked(&view, ptr, len) else { return ctx.refuse(INVALID) as i64 };
        if ctx.call.writes >= STATE_WRITES_PER_HANDLER_MAX || !ctx.disk.allows_writes() {
            return ctx.refuse(OVER_LIMIT) as i64;
        }
        // Counted in memory (`timers` rule 2), never by scanning rows.
        let pending = ctx.timers.count_of(ctx.call.owner) + ctx.call.timers_set.len() - ctx.call.timers_cancelled_pending;
        if pending >= TIMERS_PER_INSTANCE_MAX {
            return ctx.refuse(OVER_LIMIT) as i64;
        }
        let mut content = std::mem::take(&mut ctx.scratch);
        content.resize(len, 0);
        if view.read(at, &mut content).is_err() {
            ctx.scratch = content;
            return ctx.refuse(INVALID) as i64;
        }
        let due_us = crate::clock::unix_micros() + delay_ms as u64 * 1000;
        let stored = ctx.store.handler_write_begin().and_then(|_| ctx.store.timer_insert(&name, instance, due_us, &content));
        ctx.scratch = content;
        match stored {
            Ok(id) => {
                assert!(id > 0, "SQLite row ids are positive");
                ctx.call.writes += 1;
                ctx.call.timers_set.push(Due { at_us: due_us, id });
                id
            }
            Err(e) => storage_failed(&name, "timer_set", e) as i64,
        }
    })
    .unwrap_or(INVALID as i64)
}

/// `timer_cancel(id) -> 0`, or -1 if this instance has no such timer
/// pending (fired, cancelled, or another's).
pub fn timer_cancel(env: FunctionEnvMut<'_, HostEnv>, id: i64) -> i32 {
    let data = env.data();
    if let Err(e) = charge_fuel(data, STATE_CALL_FUEL) {
        return e.code();
    }
    let name = data.name.clone();
    let instance = data.instance;
    with_call(|ctx| {
        if ctx.call.writes >= STATE_WRITES_PER_HANDLER_MAX {
            return ctx.refuse(OVER_LIMIT);
        }
        match ctx.store.handler_write_begin().and_then(|_| ctx.store.timer_delete(id, &name, instance)) {
            Ok(true) => {
                ctx.call.writes += 1;
                // Ids grow (AUTOINCREMENT): one at or past the first this
                // call set, and this instance's, is one this call set.
                let set_here = ctx.call.timers_set.first().is_some_and(|d| id >= d.id);
                if set_here || ctx.timers.contains(id) {
                    ctx.call.timers_cancelled_pending += 1;
                }
                ctx.call.timers_cancelled.push(id);
                OK
            }
            Ok(false) => NOT_FOUND,
            Err(e) => storage_failed(&name, "timer_cancel", e),
        }
    })
    .unwrap_or(INVALID)
}
