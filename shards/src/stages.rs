//! Where a message's time goes, stage by stage: the per-stage cost table of
//! docs/BENCHMARKS.md, measured inside the real shards while they run.
//!
//! Rules:
//! 1. Off (the default, [`ShardTuning::stage_timing`]), a stage costs one
//!    thread-local load and a branch; nothing is read or added.
//! 2. On, a stage reads the CPU's time-stamp counter ([`clock::ticks`]) at
//!    its start and end and adds the difference to its total on this
//!    thread (each shard owns its totals: no atomics, no sharing).
//! 3. Stages nest where the code does: a host `send` runs inside a guest
//!    call, so [`Stage::GuestCall`] includes [`Stage::HostSend`]; readers
//!    subtract (the table does).
//! 4. Totals are ticks; the reader converts them with the tick rate it
//!    measures over the same run (the counter is constant-rate and shared
//!    by all cores wherever it is used as a clock).
//!
//! [`ShardTuning::stage_timing`]: crate::shard::ShardTuning::stage_timing
//! [`clock::ticks`]: crate::clock::ticks

use std::cell::Cell;

use crate::clock::ticks;

/// A stage of a message's way through a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Taking messages from other shards' channels into mailboxes.
    Receive,
    /// Picking the next ready instance and popping its message.
    Dequeue,
    /// The call into the guest's `caxton_handle` (host calls included).
    GuestCall,
    /// A guest's `send`: checks, resolve, reserve, encode, stage.
    HostSend,
    /// After the call: releasing its sends to mailboxes and peer channels.
    Release,
    /// Recording the message's latencies.
    Record,
}

pub const STAGES: usize = 6;

impl Stage {
    pub const ALL: [Stage; STAGES] = [Stage::Receive, Stage::Dequeue, Stage::GuestCall, Stage::HostSend, Stage::Release, Stage::Record];
}

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static TOTALS: Cell<[u64; STAGES]> = const { Cell::new([0; STAGES]) };
}

/// Turns timing on or off for the calling thread (a shard's, at its start).
pub fn set_on(on: bool) {
    ON.with(|o| o.set(on));
}

/// Runs `f` as `stage` (rule 2).
#[inline]
pub fn time<R>(stage: Stage, f: impl FnOnce() -> R) -> R {
    if !ON.with(Cell::get) {
        return f();
    }
    let start = ticks();
    let result = f();
    let spent = ticks().wrapping_sub(start);
    TOTALS.with(|t| {
        let mut totals = t.get();
        totals[stage as usize] = totals[stage as usize].wrapping_add(spent);
        t.set(totals);
    });
    result
}

/// This thread's totals, in ticks, by [`Stage::ALL`] order.
pub fn totals() -> [u64; STAGES] {
    TOTALS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_adds_nothing_and_on_adds_to_its_stage_only() {
        set_on(false);
        time(Stage::HostSend, || std::hint::black_box(1));
        assert_eq!(totals(), [0; STAGES]);
        set_on(true);
        time(Stage::Release, || std::thread::sleep(std::time::Duration::from_millis(1)));
        let t = totals();
        assert!(t[Stage::Release as usize] > 0, "a millisecond took some ticks");
        assert_eq!(t.iter().enumerate().filter(|&(i, &v)| i != Stage::Release as usize && v > 0).count(), 0);
        set_on(false);
    }
}
