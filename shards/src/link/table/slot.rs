//! A connection slot of a remote node: its queue, what the current
//! connection was handed and has acknowledged (table rules 4 and 5).

use std::collections::VecDeque;
use std::task::Waker;

use super::{NodeIdx, RemoteTable, SlotState};
use crate::envelope::Message;

/// Why an acknowledgement was refused (rule 4): the peer broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// The running count went down.
    Backwards { acked: u64, total: u64 },
    /// The count names messages the writer has not started to write.
    PastWritten { written: u64, total: u64 },
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::Backwards { acked, total } => write!(f, "acknowledgement went back from {acked} to {total}"),
            AckError::PastWritten { written, total } => write!(f, "acknowledged {total} messages, only {written} were written"),
        }
    }
}

pub struct Slot {
    /// Waiting for a connection's writer.
    pub queue: VecDeque<Message>,
    /// Handed to the current connection (written, or being written), not
    /// yet acknowledged (rule 4). Its front is message number `acked` of
    /// the connection.
    pub unacked: VecDeque<Message>,
    /// Messages the receiver acknowledged on the current connection.
    pub acked: u64,
    /// Messages of the current connection whose bytes the writer has
    /// started to write: acknowledgements may reach this far, no further.
    pub written: u64,
    /// Connections opened for this slot; an ack reader of an older one is
    /// ignored.
    pub connection: u64,
    /// The current connection failed (seen by its ack reader, or a bad ack).
    pub broken: bool,
    /// Times the oldest unacknowledged message was sent without an ack.
    pub attempts: u32,
    pub state: SlotState,
    /// The writer waiting for messages.
    pub waker: Option<Waker>,
    /// Bumped when the node goes down: a writer of an older generation stops.
    pub generation: u64,
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot {
            queue: VecDeque::new(),
            unacked: VecDeque::new(),
            acked: 0,
            written: 0,
            connection: 0,
            broken: false,
            attempts: 0,
            state: SlotState::Closed,
            waker: None,
            generation: 0,
        }
    }

    /// Messages handed to the current connection so far.
    fn handed(&self) -> u64 {
        self.acked + self.unacked.len() as u64
    }
}

impl RemoteTable {
    /// A new connection of slot `s` is open: returns its number.
    pub fn connected(&mut self, n: NodeIdx, s: usize) -> u64 {
        let slot = &mut self.nodes[n as usize].slots[s];
        assert!(slot.unacked.is_empty(), "requeued before reconnecting");
        slot.connection += 1;
        slot.acked = 0;
        slot.written = 0;
        slot.broken = false;
        slot.state = SlotState::Open;
        slot.connection
    }

    /// The writer takes what is queued on its slot: it moves to `unacked`
    /// before a byte of it is written (rule 4). Returns how many moved.
    pub fn hand_over(&mut self, n: NodeIdx, s: usize) -> usize {
        let slot = &mut self.nodes[n as usize].slots[s];
        let moved = slot.queue.len();
        if slot.unacked.is_empty() {
            std::mem::swap(&mut slot.queue, &mut slot.unacked); // keeps both allocations
        } else {
            slot.unacked.append(&mut slot.queue);
        }
        moved
    }

    /// Appends to `buf` the frames of the next handed messages not yet
    /// written, until it holds `bytes_max` (at least one frame), and counts
    /// them as written (rule 4). Returns how many frames it appended.
    pub fn next_frames(&mut self, n: NodeIdx, s: usize, buf: &mut Vec<u8>, bytes_max: usize) -> usize {
        let slot = &mut self.nodes[n as usize].slots[s];
        debug_assert!(slot.written >= slot.acked && slot.written <= slot.handed());
        let mut i = (slot.written - slot.acked) as usize;
        let mut frames = 0;
        while let Some(m) = slot.unacked.get(i) {
            if frames > 0 && buf.len() + crate::link::frame::FRAME_PREFIX_BYTES + m.len() > bytes_max {
                break;
            }
            crate::link::frame::push_frame(buf, m);
            i += 1;
            frames += 1;
        }
        slot.written += frames as u64;
        frames
    }

    /// Has the writer written everything it took?
    pub fn all_written(&self, n: NodeIdx, s: usize) -> bool {
        let slot = &self.nodes[n as usize].slots[s];
        slot.written == slot.handed()
    }

    /// The receiver acknowledged `total` messages on `connection` so far.
    /// News about an older connection or generation is ignored; a count
    /// that goes back or past what was written is the peer's fault (rule 4).
    pub fn acknowledged(&mut self, n: NodeIdx, s: usize, generation: u64, connection: u64, total: u64) -> Result<(), AckError> {
        let node = &mut self.nodes[n as usize];
        let slot = &mut node.slots[s];
        if slot.generation != generation || slot.connection != connection {
            return Ok(());
        }
        if total < slot.acked {
            return Err(AckError::Backwards { acked: slot.acked, total });
        }
        if total > slot.written {
            return Err(AckError::PastWritten { written: slot.written, total });
        }
        let newly = (total - slot.acked) as usize;
        assert!(newly <= slot.unacked.len(), "written messages are in unacked");
        let bytes: usize = slot.unacked.drain(..newly).map(|m| m.len()).sum();
        slot.acked = total;
        if newly > 0 {
            slot.attempts = 0;
        }
        node.queued -= newly;
        self.queued_bytes -= bytes;
        Ok(())
    }

    /// `connection` failed (its ack reader saw it, or it broke the
    /// protocol): wake the writer.
    pub fn broke(&mut self, n: NodeIdx, s: usize, generation: u64, connection: u64) {
        let slot = &mut self.nodes[n as usize].slots[s];
        if slot.generation == generation && slot.connection == connection {
            slot.broken = true;
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// After a failed connection: the unacknowledged go back to the front of
    /// the queue, in order (rule 5). Past `attempts_max` sends without an
    /// ack, they are handed back instead, for the caller to count as lost.
    pub fn requeue_unacked(&mut self, n: NodeIdx, s: usize, attempts_max: u32) -> Vec<Message> {
        let node = &mut self.nodes[n as usize];
        let slot = &mut node.slots[s];
        if slot.unacked.is_empty() {
            return Vec::new();
        }
        // Only a message whose bytes went out counts as a try.
        if slot.written > slot.acked {
            slot.attempts += 1;
        }
        slot.written = slot.acked;
        if slot.attempts >= attempts_max {
            slot.attempts = 0;
            let lost: Vec<Message> = slot.unacked.drain(..).collect();
            node.queued -= lost.len();
            self.queued_bytes -= lost.iter().map(Message::len).sum::<usize>();
            return lost;
        }
        while let Some(m) = slot.unacked.pop_back() {
            slot.queue.push_front(m);
        }
        Vec::new()
    }
}
