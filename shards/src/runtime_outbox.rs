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
//! 4. A call to a tool (`@tool/NAME`) goes from the shard straight into the
//!    tools runtime's queue once that is set ([`RuntimeOutbox::route_tools`]),
//!    one thread hop fewer than through the control plane, counted the same
//!    way (it is [`Held`]). A full queue hands it to the control plane
//!    instead, which answers it `refused`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::envelope::Message;

/// The control plane's side: takes a message or hands it back (full).
pub type Deliver = Box<dyn Fn(Message) -> Result<(), Message> + Send + Sync>;

/// The tools runtime's queue: takes a call or hands it back (full; rule 4).
pub type ToolsRoute = Box<dyn Fn(Held) -> Result<(), Held> + Send + Sync>;

pub struct RuntimeOutbox {
    deliver: Deliver,
    /// `false` when `deliver` consumes each message at once (benchmarks,
    /// tests): nothing is held, so nothing is counted.
    holds: bool,
    bytes: Arc<AtomicUsize>,
    bytes_max: usize,
    /// Sends refused for lack of room (rule 2).
    pub refused: AtomicU64,
    tools: OnceLock<ToolsRoute>,
}

impl RuntimeOutbox {
    pub fn new(bytes_max: usize, deliver: Deliver) -> Arc<RuntimeOutbox> {
        assert!(bytes_max > 0);
        Arc::new(RuntimeOutbox { deliver, holds: true, bytes: Default::default(), bytes_max, refused: AtomicU64::new(0), tools: OnceLock::new() })
    }

    /// An outbox whose `consume` takes each message for good as it comes:
    /// it never fills.
    pub fn consuming(consume: impl Fn(Message) + Send + Sync + 'static) -> Arc<RuntimeOutbox> {
        let deliver: Deliver = Box::new(move |m| {
            consume(m);
            Ok(())
        });
        Arc::new(RuntimeOutbox { deliver, holds: false, bytes: Default::default(), bytes_max: usize::MAX, refused: AtomicU64::new(0), tools: OnceLock::new() })
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
        let message = match self.tools.get().filter(|_| crate::tools::tool_of(message.receiver()).is_some()) {
            None => message,
            Some(route) => match route(Held { message: Some(message), counters: vec![self.bytes.clone()] }) {
                Ok(()) => return Ok(()),
                Err(mut held) => {
                    // Back to the control plane, still counted (rule 4).
                    held.counters.clear();
                    held.message.take().expect("held until dropped")
                }
            },
        };
        (self.deliver)(message).inspect_err(|_| {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
        })
    }

    /// Rule 4: tool calls go to `route` from now on. Set once.
    pub fn route_tools(&self, route: ToolsRoute) {
        assert!(self.holds, "an outbox that counts what it holds");
        assert!(self.tools.set(route).is_ok(), "the tools route is set once");
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

    #[test]
    fn tool_calls_go_straight_to_the_tools_queue_counted_and_a_full_one_falls_back_to_the_control_plane() {
        let control = Arc::new(Mutex::new(Vec::new()));
        let inner = control.clone();
        let outbox = RuntimeOutbox::new(
            1_000,
            Box::new(move |m| {
                let _: () = inner.lock().unwrap().push(m);
                Ok(())
            }),
        );
        let queue = Arc::new(Mutex::new(Vec::new()));
        let (q, room) = (queue.clone(), Arc::new(AtomicUsize::new(1)));
        let r = room.clone();
        outbox.route_tools(Box::new(move |held| {
            if r.load(Ordering::Relaxed) == 0 {
                return Err(held);
            }
            r.fetch_sub(1, Ordering::Relaxed);
            q.lock().unwrap().push(held);
            Ok(())
        }));
        let call = Message::encode(&Default::default(), b"a", b"@tool/calc", &[0; 100]).unwrap();
        let reply = Message::encode(&Default::default(), b"a", b"@api/1", &[0; 100]).unwrap();
        outbox.send(call.clone()).unwrap();
        outbox.send(reply.clone()).unwrap();
        assert_eq!((queue.lock().unwrap().len(), control.lock().unwrap().len()), (1, 1), "the call to the tools queue, the reply to the control plane");
        assert_eq!(outbox.bytes(), call.len() + reply.len(), "both counted (rule 1)");
        outbox.send(call.clone()).unwrap();
        assert_eq!(control.lock().unwrap().len(), 2, "a full tools queue hands the call to the control plane (rule 4)");
        assert_eq!(outbox.bytes(), 2 * call.len() + reply.len(), "still counted once");
        queue.lock().unwrap().clear();
        assert_eq!(outbox.bytes(), call.len() + reply.len(), "a held call dropped gives its room back");
    }
}
