//! Durable timers: an agent instance's message to itself, later.
//!
//! Rules:
//! 1. A timer is a row of the shard's SQLite (`timers`), written inside the
//!    handler's savepoint: it exists if and only if the handler that set it
//!    completed, and once its tick commits it survives a restart and a
//!    `kill -9`. Cancelling deletes the row the same way.
//! 2. The queue in memory orders timers by (due, id). It may hold entries
//!    whose rows are gone (cancelled, rolled back, undeployed): a firing
//!    reads the row and skips an entry that no longer matches it. So the
//!    queue never has to be rolled back with a handler.
//! 3. Firing puts an `inform` from [`TIMER_SENDER`], `in_reply_to` the
//!    timer's id and its content, in the mailbox of the instance that set
//!    it; a full mailbox makes it wait for the next tick. The row stays.
//!    When the message is taken from the mailbox to be handled, its row is
//!    deleted in the tick's transaction, the one that commits what the
//!    handler does: a crash before that commit (the message still queued,
//!    or handled but not committed) fires it again after the restart. At
//!    least once, never lost.
//! 4. An instance has at most [`TIMERS_PER_INSTANCE_MAX`] pending, delays
//!    are at most [`TIMER_DELAY_MS_MAX`], contents [`TIMER_CONTENT_BYTES_MAX`].
//!
//! [`TIMERS_PER_INSTANCE_MAX`]: crate::limits::TIMERS_PER_INSTANCE_MAX
//! [`TIMER_DELAY_MS_MAX`]: crate::limits::TIMER_DELAY_MS_MAX
//! [`TIMER_CONTENT_BYTES_MAX`]: crate::limits::TIMER_CONTENT_BYTES_MAX

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The sender of every timer's message.
pub const TIMER_SENDER: &str = "@timer";

/// A timer in the queue: when it is due (µs since the epoch) and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    pub at_us: u64,
    pub id: i64,
}

/// The shard's timers in due order (rule 2).
#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<Due>>,
}

impl TimerQueue {
    pub fn push(&mut self, due: Due) {
        self.heap.push(Reverse(due));
    }

    /// When the next timer is due, if any.
    pub fn next_due_us(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(d)| d.at_us)
    }

    /// The next timer, if due at `now_us`.
    pub fn pop_due(&mut self, now_us: u64) -> Option<Due> {
        if self.next_due_us()? > now_us {
            return None;
        }
        let Reverse(due) = self.heap.pop().expect("peeked");
        debug_assert!(due.at_us <= now_us);
        Some(due)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_come_out_in_due_order_and_only_when_due() {
        let mut q = TimerQueue::default();
        for (at_us, id) in [(30, 1), (10, 2), (20, 3), (10, 4)] {
            q.push(Due { at_us, id });
        }
        assert_eq!(q.next_due_us(), Some(10));
        assert_eq!(q.pop_due(5), None);
        let fired: Vec<i64> = std::iter::from_fn(|| q.pop_due(25)).map(|d| d.id).collect();
        assert_eq!(fired, [2, 4, 3]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(u64::MAX).map(|d| d.id), Some(1));
        assert!(q.is_empty());
    }
}
