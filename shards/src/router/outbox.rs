//! What a shard's handlers sent and the tick has not released yet (the
//! staged outbox), and what waits for room in a channel to a peer shard.
//!
//! Rules:
//! 1. Staged messages keep their order; a handler's sends are a stretch of
//!    the outbox from a mark, so a trapped handler's are taken back whole.
//! 2. Room towards a peer shard is reserved at send time, in count and in
//!    bytes (messages in the channel, waiting in the backlog, reserved).
//! 3. The backlog towards a peer drains into its channel in order; a full
//!    channel is never awaited (mesh rule 1): the rest waits for the next
//!    pump.

use std::collections::VecDeque;

use crossbeam_channel::TrySendError;

use crate::envelope::Message;
use crate::mesh::MeshSender;

use super::Dest;

/// What a shard holds in transit to one peer shard.
pub struct PeerOutbox {
    tx: MeshSender,
    /// Waiting for room in the channel, and their bytes.
    backlog: VecDeque<Message>,
    backlog_bytes: usize,
    /// Promised to staged messages (rule 2).
    reserved: usize,
    reserved_bytes: usize,
}

/// What a pump moved, and what it found gone (a stopped peer).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pumped {
    pub moved: usize,
    pub lost: u64,
}

impl PeerOutbox {
    pub fn new(tx: MeshSender) -> PeerOutbox {
        PeerOutbox { tx, backlog: VecDeque::new(), backlog_bytes: 0, reserved: 0, reserved_bytes: 0 }
    }

    /// Is there room for one more message of `bytes`? `Err(true)` when a
    /// byte bound refuses it, `Err(false)` a count bound (rule 2).
    pub fn room(&self, bytes: usize, messages_max: usize, bytes_max: usize) -> Result<(), bool> {
        if self.backlog.len() + self.reserved + self.tx.len() >= messages_max {
            return Err(false);
        }
        if self.in_flight_bytes() + self.reserved_bytes + bytes > bytes_max {
            return Err(true);
        }
        Ok(())
    }

    pub fn reserve(&mut self, bytes: usize) {
        self.reserved += 1;
        self.reserved_bytes += bytes;
    }

    pub fn cancel(&mut self, bytes: usize) {
        self.reserved -= 1;
        self.reserved_bytes -= bytes;
    }

    pub fn push(&mut self, message: Message) {
        self.backlog_bytes += message.len();
        self.backlog.push_back(message);
    }

    /// Moves the backlog into the channel, in order, until it is full
    /// (rule 3).
    pub fn pump(&mut self) -> Pumped {
        let mut p = Pumped::default();
        while let Some(m) = self.backlog.pop_front() {
            let len = m.len();
            match self.tx.try_send(m) {
                Ok(()) => {
                    self.backlog_bytes -= len;
                    p.moved += 1;
                }
                Err(TrySendError::Full(m)) => {
                    self.backlog.push_front(m);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    // The peer shard stopped (node shutdown).
                    self.backlog_bytes -= len;
                    p.lost += 1;
                }
            }
        }
        p
    }

    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Bytes in the channel (at most) and the backlog.
    pub fn in_flight_bytes(&self) -> usize {
        self.backlog_bytes + self.tx.bytes_in_flight() as usize
    }
}

/// The tick's staged messages (rule 1).
#[derive(Default)]
pub struct Staged {
    messages: Vec<(Dest, Message)>,
}

impl Staged {
    pub fn push(&mut self, dest: Dest, message: Message) {
        self.messages.push((dest, message));
    }

    /// Position in the outbox, to roll a trapped handler's sends back to.
    pub fn mark(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Takes the messages staged after `mark`, in order, into `out`
    /// (reusing its allocation).
    pub fn take_from(&mut self, mark: usize, out: &mut Vec<(Dest, Message)>) {
        assert!(mark <= self.messages.len(), "a mark past the end");
        out.extend(self.messages.drain(mark..));
    }
}
