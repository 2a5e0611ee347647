//! Messages to the runtime's own names (`@api/<n>`, `@wire/<n>`): handed by
//! the shards to the node's control plane, bounded in bytes node-wide.
//!
//! Rules:
//! 1. Every message in the runtime outbox counts its bytes from the moment
//!    a shard hands it over until the control plane says it is gone
//!    ([`RuntimeOutbox::taken`]: a REST caller got it, a wire connection
//!    wrote it, or it was dropped and counted). The count never exceeds the
//!    budget by more than the messages in flight of one release.
//! 2. An agent's send to a runtime name is refused (-2, busy) when the
//!    outbox has no room for it, so a client that does not read pushes
//!    back on its agents instead of growing the node.
//! 3. This is the one place where shards share a counter: an atomic add
//!    and subtract per message to a runtime name, off the agent-to-agent
//!    path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::envelope::Message;

/// The control plane's side: takes a message or hands it back (full).
pub type Deliver = Box<dyn Fn(Message) -> Result<(), Message> + Send + Sync>;

pub struct RuntimeOutbox {
    deliver: Deliver,
    /// `false` when `deliver` consumes each message at once (benchmarks,
    /// tests): nothing is held, so nothing is counted.
    holds: bool,
    bytes: AtomicUsize,
    bytes_max: usize,
    /// Sends refused for lack of room (rule 2).
    pub refused: AtomicU64,
}

impl RuntimeOutbox {
    pub fn new(bytes_max: usize, deliver: Deliver) -> Arc<RuntimeOutbox> {
        assert!(bytes_max > 0);
        Arc::new(RuntimeOutbox { deliver, holds: true, bytes: AtomicUsize::new(0), bytes_max, refused: AtomicU64::new(0) })
    }

    /// An outbox whose `consume` takes each message for good as it comes:
    /// it never fills.
    pub fn consuming(consume: impl Fn(Message) + Send + Sync + 'static) -> Arc<RuntimeOutbox> {
        let deliver: Deliver = Box::new(move |m| {
            consume(m);
            Ok(())
        });
        Arc::new(RuntimeOutbox { deliver, holds: false, bytes: AtomicUsize::new(0), bytes_max: usize::MAX, refused: AtomicU64::new(0) })
    }

    /// Room for a message of `bytes`? (rule 2)
    pub fn has_room(&self, bytes: usize) -> bool {
        let room = self.bytes.load(Ordering::Relaxed).saturating_add(bytes) <= self.bytes_max;
        if !room {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        room
    }

    /// Hands a message to the control plane; a full one hands it back.
    pub fn send(&self, message: Message) -> Result<(), Message> {
        if !self.holds {
            return (self.deliver)(message);
        }
        let len = message.len();
        self.bytes.fetch_add(len, Ordering::Relaxed);
        (self.deliver)(message).inspect_err(|_| {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
        })
    }

    /// A message of `bytes` left the outbox (rule 1).
    pub fn taken(&self, bytes: usize) {
        let before = self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(before >= bytes, "taken more than was sent");
    }

    /// Wraps a message the control plane took from this outbox: dropping
    /// the wrapper, wherever it happens, says it is gone (rule 1).
    pub fn hold(self: &Arc<Self>, message: Message) -> Held {
        Held { message: Some(message), outbox: self.clone(), also: None }
    }

    /// Counts and holds a message the control plane made itself (a failure
    /// notice to a wire client): small, so it is not refused.
    pub fn admit(self: &Arc<Self>, message: Message) -> Held {
        self.bytes.fetch_add(message.len(), Ordering::Relaxed);
        self.hold(message)
    }

    /// Bytes in the outbox now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }
}

/// A message out of the shards and not yet gone: its bytes count until it
/// is dropped (rule 1).
pub struct Held {
    message: Option<Message>,
    outbox: Arc<RuntimeOutbox>,
    also: Option<Arc<AtomicUsize>>,
}

impl Held {
    pub fn message(&self) -> &Message {
        self.message.as_ref().expect("held until dropped")
    }

    /// Counts the message in `counter` too, until it is dropped (a wire
    /// connection's own share).
    pub fn count_also(&mut self, counter: Arc<AtomicUsize>) {
        debug_assert!(self.also.is_none());
        counter.fetch_add(self.message().len(), Ordering::Relaxed);
        self.also = Some(counter);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let len = self.message.take().map_or(0, |m| m.len());
        self.outbox.taken(len);
        if let Some(c) = &self.also {
            c.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn bytes_count_from_send_until_taken_and_a_full_outbox_refuses() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let inner = seen.clone();
        let outbox = RuntimeOutbox::new(200, Box::new(move |m| Ok(inner.lock().unwrap().push(m))));
        let m = Message::encode(&Default::default(), b"a", b"@api/1", &[0; 100]).unwrap();
        assert!(outbox.has_room(m.len()));
        outbox.send(m.clone()).unwrap();
        assert_eq!(outbox.bytes(), m.len());
        assert!(!outbox.has_room(m.len()), "a second one would be past 200 bytes");
        assert_eq!(outbox.refused.load(Ordering::Relaxed), 1);
        outbox.taken(m.len());
        assert!(outbox.has_room(m.len()));
        outbox.send(m.clone()).unwrap();
        let conn = Arc::new(AtomicUsize::new(0));
        let mut held = outbox.hold(seen.lock().unwrap().pop().unwrap());
        held.count_also(conn.clone());
        assert_eq!((outbox.bytes(), conn.load(Ordering::Relaxed)), (m.len(), m.len()));
        drop(held);
        assert_eq!((outbox.bytes(), conn.load(Ordering::Relaxed)), (0, 0), "dropping it gives the room back");
        let full = RuntimeOutbox::new(200, Box::new(Err));
        assert!(full.send(m).is_err());
        assert_eq!(full.bytes(), 0, "handed back: not counted");
    }
}
