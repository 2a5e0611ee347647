//! Durable timers: an agent instance's message to itself, later.
//!
//! Rules:
//! 1. A timer is a row of the shard's SQLite (`timers`), written inside the
//!    handler's savepoint: it exists if and only if the handler that set it
//!    completed, and once its tick commits it survives a restart and a
//!    `kill -9`. Cancelling deletes the row the same way.
//! 2. The queue in memory holds exactly the committed, not yet fired
//!    timers of the shard's instances, ordered by (due, id), with their
//!    owner: a handler's sets and cancels wait in its call state and reach
//!    the queue only if the handler completes (a trap or a failed start
//!    drops them with the rows they stood for); an undeploy removes its
//!    instances' entries; a tick whose commit fails reloads the queue from
//!    the database. So the queue is bounded by [`TIMERS_PER_INSTANCE_MAX`]
//!    per instance, and that bound is counted here, not by scanning rows.
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

use std::collections::{BTreeSet, HashMap};

use crate::router::LocalId;

/// The sender of every timer's message.
pub const TIMER_SENDER: &str = "@timer";

/// A timer in the queue: when it is due (µs since the epoch) and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    pub at_us: u64,
    pub id: i64,
}

/// The shard's pending timers in due order, with their owners (rule 2).
/// Memory: about 80 bytes a timer (an ordered set entry and a map entry).
#[derive(Debug, Default)]
pub struct TimerQueue {
    order: BTreeSet<Due>,
    /// Each timer's due time and owner, by id.
    by_id: HashMap<i64, (u64, LocalId)>,
    /// Timers pending per owner, indexed by its local id.
    per_owner: Vec<u32>,
}

impl TimerQueue {
    /// Adds a committed timer of `owner`. A timer already queued is left
    /// as it is.
    pub fn insert(&mut self, due: Due, owner: LocalId) {
        if self.by_id.contains_key(&due.id) {
            return;
        }
        self.by_id.insert(due.id, (due.at_us, owner));
        self.order.insert(due);
        let slot = owner as usize;
        if self.per_owner.len() <= slot {
            self.per_owner.resize(slot + 1, 0);
        }
        self.per_owner[slot] += 1;
        debug_assert_eq!(self.order.len(), self.by_id.len());
    }

    /// Removes a timer (cancelled, or fired); whether it was queued.
    pub fn remove(&mut self, id: i64) -> bool {
        let Some((at_us, owner)) = self.by_id.remove(&id) else { return false };
        let was = self.order.remove(&Due { at_us, id });
        assert!(was, "the set and the map hold the same timers");
        self.per_owner[owner as usize] -= 1;
        true
    }

    /// Is timer `id` queued?
    pub fn contains(&self, id: i64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Timers `owner` has pending.
    pub fn count_of(&self, owner: LocalId) -> usize {
        self.per_owner.get(owner as usize).copied().unwrap_or(0) as usize
    }

    /// Removes every timer of `owner` (its agent is undeployed).
    pub fn remove_owner(&mut self, owner: LocalId) {
        if self.count_of(owner) == 0 {
            return;
        }
        let ids: Vec<i64> = self.by_id.iter().filter(|(_, &(_, o))| o == owner).map(|(&id, _)| id).collect();
        for id in ids {
            self.remove(id);
        }
        assert_eq!(self.count_of(owner), 0);
    }

    /// Forgets everything (before a reload from the database).
    pub fn clear(&mut self) {
        self.order.clear();
        self.by_id.clear();
        self.per_owner.clear();
    }

    /// When the next timer is due, if any.
    pub fn next_due_us(&self) -> Option<u64> {
        self.order.first().map(|d| d.at_us)
    }

    /// The next timer and its owner, if due at `now_us`; it leaves the queue.
    pub fn pop_due(&mut self, now_us: u64) -> Option<(Due, LocalId)> {
        let due = *self.order.first()?;
        if due.at_us > now_us {
            return None;
        }
        let (_, owner) = self.by_id[&due.id];
        self.remove(due.id);
        Some((due, owner))
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_come_out_in_due_order_and_only_when_due() {
        let mut q = TimerQueue::default();
        for (at_us, id) in [(30, 1), (10, 2), (20, 3), (10, 4)] {
            q.insert(Due { at_us, id }, 0);
        }
        assert_eq!(q.next_due_us(), Some(10));
        assert_eq!(q.pop_due(5), None);
        let fired: Vec<i64> = std::iter::from_fn(|| q.pop_due(25)).map(|(d, _)| d.id).collect();
        assert_eq!(fired, [2, 4, 3]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(u64::MAX).map(|(d, o)| (d.id, o)), Some((1, 0)));
        assert!(q.is_empty());
    }

    #[test]
    fn cancelled_and_undeployed_timers_leave_nothing_behind() {
        let mut q = TimerQueue::default();
        for id in 0..1000 {
            q.insert(Due { at_us: 1_000_000 + id as u64, id }, (id % 3) as LocalId);
            assert!(q.remove(id) || id % 2 == 1);
        }
        // Set then cancelled in a loop: the queue does not grow.
        assert_eq!(q.len(), 0);
        for id in 0..9 {
            q.insert(Due { at_us: 5, id }, (id % 3) as LocalId);
        }
        q.insert(Due { at_us: 5, id: 0 }, 2); // already queued: unchanged
        assert_eq!((q.count_of(0), q.count_of(1), q.count_of(2), q.count_of(7)), (3, 3, 3, 0));
        q.remove_owner(1);
        assert_eq!((q.len(), q.count_of(1)), (6, 0));
        assert!(!q.remove(1), "gone with its owner");
        q.clear();
        assert!(q.is_empty() && q.next_due_us().is_none());
    }
}
