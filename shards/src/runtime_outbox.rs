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
    bytes: Arc<AtomicUsize>,
    bytes_max: usize,
    /// Sends refused for lack of room (rule 2).
    pub refused: AtomicU64,
}

impl RuntimeOutbox {
    pub fn new(bytes_max: usize, deliver: Deliver) -> Arc<RuntimeOutbox> {
        assert!(bytes_max > 0);
        Arc::new(RuntimeOutbox { deliver, holds: true, bytes: Default::default(), bytes_max, refused: AtomicU64::new(0) })
    }

    /// An outbox whose `consume` takes each message for good as it comes:
    /// it never fills.
    pub fn consuming(consume: impl Fn(Message) + Send + Sync + 'static) -> Arc<RuntimeOutbox> {
        let deliver: Deliver = Box::new(move |m| {
            consume(m);
            Ok(())
        });
        Arc::new(RuntimeOutbox { deliver, holds: false, bytes: Default::default(), bytes_max: usize::MAX, refused: AtomicU64::new(0) })
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
        Held { message: Some(message), counters: vec![self.bytes.clone()] }
    }

    /// Bytes in the outbox now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }
}

/// A message out of the shards and not yet gone: its bytes count, in every
/// counter it holds, until it is dropped (rule 1).
pub struct Held {
    message: Option<Message>,
    counters: Vec<Arc<AtomicUsize>>,
}

impl Held {
    /// Holds `message`, counting it in `counters` (a message the control
    /// plane made itself, such as a failure notice).
    pub fn counted(message: Message, counters: Vec<Arc<AtomicUsize>>) -> Held {
        for c in &counters {
            c.fetch_add(message.len(), Ordering::Relaxed);
        }
        Held { message: Some(message), counters }
    }

    pub fn message(&self) -> &Message {
        self.message.as_ref().expect("held until dropped")
    }

    /// Takes the message back out; its bytes stop counting.
    pub fn into_message(mut self) -> Message {
        let message = self.message.take().expect("held until dropped");
        for c in &self.counters {
            c.fetch_sub(message.len(), Ordering::Relaxed);
        }
        self.counters.clear();
        message
    }

    /// Counts the message in `counters` from now on instead (it moved to a
    /// wire connection's outbox, with budgets of its own).
    pub fn move_to(&mut self, counters: Vec<Arc<AtomicUsize>>) {
        let len = self.message().len();
        for c in &counters {
            c.fetch_add(len, Ordering::Relaxed);
        }
        for c in std::mem::replace(&mut self.counters, counters) {
            c.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let len = self.message.take().map_or(0, |m| m.len());
        for c in &self.counters {
            let before = c.fetch_sub(len, Ordering::Relaxed);
            debug_assert!(before >= len, "released more than was held");
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
        let outbox = RuntimeOutbox::new(
            200,
            Box::new(move |m| {
                let _: () = inner.lock().unwrap().push(m);
                Ok(())
            }),
        );
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
        held.move_to(vec![conn.clone()]);
        assert_eq!((outbox.bytes(), conn.load(Ordering::Relaxed)), (0, m.len()), "moved to the connection's count");
        drop(held);
        assert_eq!((outbox.bytes(), conn.load(Ordering::Relaxed)), (0, 0), "dropping it gives the room back");
        let full = RuntimeOutbox::new(200, Box::new(Err));
        assert!(full.send(m).is_err());
        assert_eq!(full.bytes(), 0, "handed back: not counted");
    }
}
