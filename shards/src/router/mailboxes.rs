//! The mailboxes of a shard's instances, and the run queue of those with
//! mail.
//!
//! Rules:
//! 1. Every mailbox is bounded in count and in bytes, and so are all of the
//!    shard's together; room is reserved for a staged message before it is
//!    staged (router rule 1), and counted until it arrives or is cancelled.
//! 2. An instance is in the run queue at most once, and only while its
//!    mailbox is not empty (`queued` marks it).
//! 3. Counts are kept, not recomputed: `queued`/`bytes` always equal the
//!    sums over open mailboxes (checked in debug builds).
//! 4. A held mailbox (its instance backing off after crashes) takes mail
//!    but is not in the run queue; released, it rejoins it if it has mail.
//!
//! Steady state allocates nothing: mailboxes and the run queue are reused
//! `VecDeque`s, and closed ids are reused.

use std::collections::VecDeque;

use crate::envelope::Message;

use super::{LocalId, RouterLimits};

struct Mailbox {
    queue: VecDeque<Message>,
    /// Bytes of `queue`.
    bytes: usize,
    /// Slots and bytes promised to staged messages (rule 1).
    reserved: usize,
    reserved_bytes: usize,
    /// Is this id in the run queue? (rule 2)
    queued: bool,
    /// Kept out of the run queue (rule 4).
    held: bool,
    open: bool,
}

/// Why there is no room (for the counters: a count or a byte bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Count,
    Bytes,
}

pub struct Mailboxes {
    boxes: Vec<Mailbox>,
    free_ids: Vec<LocalId>,
    run_queue: VecDeque<LocalId>,
    /// Messages and bytes in all mailboxes, and reserved in them (rule 3).
    queued: usize,
    queued_bytes: usize,
    reserved: usize,
    reserved_bytes: usize,
}

impl Default for Mailboxes {
    fn default() -> Self {
        Self::new()
    }
}

impl Mailboxes {
    pub fn new() -> Mailboxes {
        Mailboxes { boxes: Vec::new(), free_ids: Vec::new(), run_queue: VecDeque::new(), queued: 0, queued_bytes: 0, reserved: 0, reserved_bytes: 0 }
    }

    pub fn open(&mut self) -> LocalId {
        let mailbox = Mailbox { queue: VecDeque::new(), bytes: 0, reserved: 0, reserved_bytes: 0, queued: false, held: false, open: true };
        match self.free_ids.pop() {
            Some(id) => {
                assert!(!self.boxes[id as usize].open, "a free id is closed");
                self.boxes[id as usize] = mailbox;
                id
            }
            None => {
                self.boxes.push(mailbox);
                (self.boxes.len() - 1) as LocalId
            }
        }
    }

    /// Closes a mailbox; hands back what it held (for dead letters).
    pub fn close(&mut self, id: LocalId) -> Vec<Message> {
        let mailbox = &mut self.boxes[id as usize];
        assert!(mailbox.open, "closed twice");
        debug_assert_eq!(mailbox.reserved, 0, "nothing staged, so nothing reserved");
        let dropped: Vec<Message> = mailbox.queue.drain(..).collect();
        self.queued -= dropped.len();
        self.queued_bytes -= mailbox.bytes;
        mailbox.bytes = 0;
        mailbox.open = false;
        if std::mem::take(&mut mailbox.queued) {
            self.run_queue.retain(|&r| r != id);
        }
        self.free_ids.push(id);
        dropped
    }

    /// Does mailbox `id` hold and expect nothing: no message queued, no
    /// room reserved for a staged one? (keyed rule 4)
    pub fn is_idle(&self, id: LocalId) -> bool {
        let m = &self.boxes[id as usize];
        m.open && m.queue.is_empty() && m.reserved == 0
    }

    /// Is there room for a message of `bytes` in mailbox `id` and in the
    /// shard? (rule 1)
    pub fn room(&self, id: LocalId, bytes: usize, limits: &RouterLimits) -> Result<(), Full> {
        let m = &self.boxes[id as usize];
        debug_assert!(m.open);
        if self.queued + self.reserved >= limits.shard_queued_messages_max || m.queue.len() + m.reserved >= limits.mailbox_messages_max {
            return Err(Full::Count);
        }
        if self.queued_bytes + self.reserved_bytes + bytes > limits.shard_queued_bytes_max || m.bytes + m.reserved_bytes + bytes > limits.mailbox_bytes_max {
            return Err(Full::Bytes);
        }
        Ok(())
    }

    pub fn reserve(&mut self, id: LocalId, bytes: usize) {
        let m = &mut self.boxes[id as usize];
        m.reserved += 1;
        m.reserved_bytes += bytes;
        self.reserved += 1;
        self.reserved_bytes += bytes;
    }

    pub fn cancel(&mut self, id: LocalId, bytes: usize) {
        let m = &mut self.boxes[id as usize];
        m.reserved -= 1;
        m.reserved_bytes -= bytes;
        self.reserved -= 1;
        self.reserved_bytes -= bytes;
    }

    /// Puts a message in mailbox `id` and its instance in the run queue.
    pub fn push(&mut self, id: LocalId, message: Message) {
        let m = &mut self.boxes[id as usize];
        debug_assert!(m.open);
        m.bytes += message.len();
        self.queued_bytes += message.len();
        m.queue.push_back(message);
        self.queued += 1;
        if !m.queued && !m.held {
            m.queued = true;
            self.run_queue.push_back(id);
        }
    }

    /// The next instance with mail.
    pub fn next_ready(&mut self) -> Option<LocalId> {
        let id = self.run_queue.pop_front()?;
        debug_assert!(self.boxes[id as usize].queued && !self.boxes[id as usize].held);
        Some(id)
    }

    /// Keeps `id` out of the run queue until [`Mailboxes::release`] (rule
    /// 4). Called while it is being dispatched (taken from the run queue).
    pub fn hold(&mut self, id: LocalId) {
        let m = &mut self.boxes[id as usize];
        assert!(m.open, "only an open mailbox is held");
        m.held = true;
        if m.queued {
            m.queued = false;
            self.run_queue.retain(|&r| r != id);
        }
    }

    /// Ends a hold: the instance runs again if it has mail (rule 4).
    pub fn release(&mut self, id: LocalId) {
        let m = &mut self.boxes[id as usize];
        if !m.open || !m.held {
            return;
        }
        m.held = false;
        if !m.queue.is_empty() && !m.queued {
            m.queued = true;
            self.run_queue.push_back(id);
        }
    }

    /// Empties every mailbox (a stopping shard fails their mail back);
    /// they stay open.
    pub fn take_all(&mut self) -> Vec<Message> {
        let mut all = Vec::with_capacity(self.queued);
        for m in self.boxes.iter_mut().filter(|m| m.open) {
            all.extend(m.queue.drain(..));
            m.bytes = 0;
            m.queued = false;
        }
        self.run_queue.clear();
        assert_eq!(all.len(), self.queued, "rule 3");
        self.queued = 0;
        self.queued_bytes = 0;
        all
    }

    pub fn is_held(&self, id: LocalId) -> bool {
        self.boxes[id as usize].held
    }

    pub fn pop(&mut self, id: LocalId) -> Option<Message> {
        let m = &mut self.boxes[id as usize];
        let message = m.queue.pop_front()?;
        m.bytes -= message.len();
        self.queued_bytes -= message.len();
        self.queued -= 1;
        Some(message)
    }

    /// Puts an instance back in the run queue if it still has mail (rule 2).
    pub fn requeue(&mut self, id: LocalId) {
        let m = &mut self.boxes[id as usize];
        if m.held {
            return; // hold took it out of the run queue already
        }
        if m.queue.is_empty() {
            m.queued = false;
        } else {
            self.run_queue.push_back(id);
        }
    }

    pub fn has_ready(&self) -> bool {
        !self.run_queue.is_empty()
    }

    /// The instance `n` places after the next in the run queue (0: the
    /// next one), without taking it.
    pub fn peek_ready(&self, n: usize) -> Option<LocalId> {
        self.run_queue.get(n).copied()
    }

    /// Prefetches `id`'s mailbox (`agent::hot` rule 4): its record, or
    /// with `front` where its first message is kept, which reads the
    /// record (so asked for the instance whose record was prefetched a
    /// delivery ago).
    pub fn prefetch(&self, id: LocalId, front: bool) {
        let Some(m) = self.boxes.get(id as usize) else { return };
        if front {
            if let Some(message) = m.queue.front() {
                crate::agent::hot::prefetch(message as *const Message as usize);
            }
        } else {
            crate::agent::hot::prefetch_range(m as *const Mailbox as usize, std::mem::size_of::<Mailbox>());
        }
    }

    pub fn queued_in(&self, id: LocalId) -> usize {
        self.boxes[id as usize].queue.len()
    }

    /// Messages in all mailboxes (rule 3).
    pub fn queued(&self) -> usize {
        debug_assert_eq!(self.queued, self.boxes.iter().filter(|m| m.open).map(|m| m.queue.len()).sum::<usize>());
        self.queued
    }

    /// Their bytes (rule 3).
    pub fn bytes(&self) -> usize {
        debug_assert_eq!(self.queued_bytes, self.boxes.iter().filter(|m| m.open).map(|m| m.bytes).sum::<usize>());
        self.queued_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Header;

    fn msg() -> Message {
        Message::encode(&Header::default(), b"s", b"a", b"x").unwrap()
    }

    fn limits(count: usize, bytes: usize) -> RouterLimits {
        RouterLimits {
            mailbox_messages_max: count,
            mailbox_bytes_max: bytes,
            shard_queued_messages_max: 100,
            shard_queued_bytes_max: 1 << 20,
            peer_in_flight_messages_max: 1,
            peer_in_flight_bytes_max: 1,
        }
    }

    #[test]
    fn room_counts_what_is_queued_and_reserved_and_ids_are_reused() {
        let mut b = Mailboxes::new();
        let id = b.open();
        let one = msg().len();
        let l = limits(2, 10 * one);
        b.reserve(id, one);
        b.push(id, msg());
        assert_eq!(b.room(id, one, &l), Err(Full::Count), "one queued and one reserved fill two");
        b.cancel(id, one);
        assert_eq!(b.room(id, one, &l), Ok(()));
        assert_eq!(b.room(id, 10 * one, &limits(5, 10 * one)), Err(Full::Bytes));
        assert_eq!(b.next_ready(), Some(id));
        assert!(b.pop(id).is_some());
        b.requeue(id);
        assert!(!b.has_ready());
        b.push(id, msg());
        assert_eq!(b.close(id).len(), 1);
        assert_eq!((b.queued(), b.bytes()), (0, 0));
        assert_eq!(b.open(), id, "reused");
        assert!(!b.has_ready(), "a closed mailbox leaves the run queue");
    }
}
