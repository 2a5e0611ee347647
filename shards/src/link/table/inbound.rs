//! Arrivals from other nodes waiting for room in a mailbox, bounded in
//! count and bytes (table rule 6): readers stop reading while it is full.

use crate::envelope::Message;

use super::RemoteTable;

impl RemoteTable {
    /// Is there room to read more from links? Readers wait otherwise.
    pub fn inbound_has_room(&self) -> bool {
        self.inbound.len() < self.limits.inbound_messages_max && self.inbound_bytes < self.limits.inbound_bytes_max
    }

    /// Takes an arrival (one read may go past the bounds by what it held).
    pub fn push_inbound(&mut self, m: Message) {
        self.inbound_bytes += m.len();
        self.inbound.push_back(m);
    }

    pub fn pop_inbound(&mut self) -> Option<Message> {
        let m = self.inbound.pop_front()?;
        self.inbound_bytes -= m.len();
        Some(m)
    }

    /// Puts back an arrival that found no room yet (it keeps its place).
    pub fn unpop_inbound(&mut self, m: Message) {
        self.inbound_bytes += m.len();
        self.inbound.push_front(m);
    }

    /// Arrivals waiting for a mailbox, and their bytes.
    pub fn inbound_len(&self) -> (usize, usize) {
        (self.inbound.len(), self.inbound_bytes)
    }

    /// Wakes readers once `inbound` has room again.
    pub fn wake_readers(&mut self) {
        if self.inbound_has_room() {
            for w in self.inbound_wakers.drain(..) {
                w.wake();
            }
        }
    }
}
