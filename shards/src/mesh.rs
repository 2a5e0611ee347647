//! The only path between shards: bounded lock-free channels, one per ordered
//! pair of shards, and a doorbell per shard to wake it when it has parked.
//!
//! Rules:
//! 1. Every channel is single-producer (one sending shard) and bounded at
//!    [`MESH_CHANNEL_MESSAGES_MAX`]; a full channel is never awaited (that can
//!    deadlock two shards): the sender keeps the message in its outbox.
//! 2. A shard spins on its queues while it has recently had work and parks
//!    only after [`SPIN_BEFORE_PARK_US`](crate::limits::SPIN_BEFORE_PARK_US)
//!    idle. Under load, a hop costs a queue push and pop (sub-microsecond);
//!    only a parked shard pays the wake-up.
//! 3. No lost wake-up: the parker sets `parked`, fences, then re-checks its
//!    queues; a sender pushes, fences, then reads `parked`. One of them sees
//!    the other (Dekker's pattern with SeqCst fences).
//! 4. A channel is bounded in bytes too. The sender counts the bytes it
//!    sent; the receiver publishes the bytes it took, once per drain (one
//!    relaxed-enough store, so the hot path shares no counter per message).
//!    Bytes in flight are `sent - taken`: the sender may see a stale
//!    `taken` and so overestimate, never underestimate.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::envelope::Message;
use crate::limits::MESH_CHANNEL_MESSAGES_MAX;

/// Wakes a parked shard from any thread, and tells any thread when the
/// shard last finished a tick.
#[derive(Debug)]
pub struct Doorbell {
    parked: AtomicBool,
    writer: UnixStream,
    rings: AtomicU64,
    /// When the shard last finished a tick (`clock::now_ns`), on a cache
    /// line of its own: the shard writes it every tick, senders read
    /// `parked` on every message.
    pulse: Pulse,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Pulse(AtomicU64);

impl Doorbell {
    /// Makes a doorbell and the reading end for the shard that parks on it.
    pub fn new() -> std::io::Result<(Arc<Doorbell>, UnixStream)> {
        let (writer, reader) = UnixStream::pair()?;
        writer.set_nonblocking(true)?;
        reader.set_nonblocking(true)?;
        Ok((
            Arc::new(Doorbell { parked: AtomicBool::new(false), writer, rings: AtomicU64::new(0), pulse: Pulse(AtomicU64::new(crate::clock::now_ns())) }),
            reader,
        ))
    }

    /// Called by a producer after it made work visible (rule 3).
    pub fn ring_if_parked(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            // Woken now: its stall clock starts here, not when it parked.
            self.beat(crate::clock::now_ns());
            self.rings.fetch_add(1, Ordering::Relaxed);
            // A full socket buffer means wake-ups are already pending: fine.
            let _ = (&self.writer).write(&[1]);
        }
    }

    /// Called by the shard before its last look at its queues (rule 3).
    pub fn set_parked(&self) {
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    pub fn clear_parked(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    /// The shard finished a tick at `now_ns`.
    pub fn beat(&self, now_ns: u64) {
        self.pulse.0.store(now_ns, Ordering::Relaxed);
    }

    /// Has the shard, while not parked, gone `after` without finishing a
    /// tick? (A parked shard has nothing to do: never stalled.)
    pub fn stalled(&self, after: std::time::Duration) -> bool {
        !self.parked.load(Ordering::Relaxed) && crate::clock::now_ns().saturating_sub(self.pulse.0.load(Ordering::Relaxed)) > after.as_nanos() as u64
    }

    /// How many times the shard was woken from parking.
    pub fn rings(&self) -> u64 {
        self.rings.load(Ordering::Relaxed)
    }
}

/// The sending end of one shard-to-shard channel (rules 1 and 4).
pub struct MeshSender {
    tx: Sender<Message>,
    /// Bytes sent so far (this shard's own count).
    sent: u64,
    /// Bytes the receiver took so far (published by it).
    taken: Arc<AtomicU64>,
}

impl MeshSender {
    pub fn try_send(&mut self, m: Message) -> Result<(), TrySendError<Message>> {
        let len = m.len() as u64;
        self.tx.try_send(m)?;
        self.sent += len;
        Ok(())
    }

    /// Messages in the channel now.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// Bytes in the channel, at most (rule 4).
    pub fn bytes_in_flight(&self) -> u64 {
        let taken = self.taken.load(Ordering::Acquire);
        debug_assert!(taken <= self.sent);
        self.sent - taken
    }
}

/// The receiving end of one shard-to-shard channel (rule 4).
pub struct MeshReceiver {
    rx: Receiver<Message>,
    taken: u64,
    published: Arc<AtomicU64>,
}

impl MeshReceiver {
    pub fn try_recv(&mut self) -> Option<Message> {
        let m = self.rx.try_recv().ok()?;
        self.taken += m.len() as u64;
        Some(m)
    }

    /// Tells the sender what was taken (once per drain).
    pub fn publish(&self) {
        self.publish_holding(0);
    }

    /// Tells the sender what was taken, less `held_bytes` of it that still
    /// wait with the receiver: those still count as in flight (rule 4).
    pub fn publish_holding(&self, held_bytes: u64) {
        debug_assert!(held_bytes <= self.taken);
        self.published.store(self.taken - held_bytes, Ordering::Release);
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// One shard's ends of the mesh.
pub struct MeshEnds {
    /// `to[p]`: channel to shard `p` (`None` for itself).
    pub to: Vec<Option<MeshSender>>,
    /// `from[p]`: channel from shard `p` (`None` for itself).
    pub from: Vec<Option<MeshReceiver>>,
    /// Every shard's doorbell, by index.
    pub bells: Vec<Arc<Doorbell>>,
}

/// Builds the full mesh of `bells.len()` shards.
pub fn build_mesh(bells: &[Arc<Doorbell>]) -> Vec<MeshEnds> {
    let n = bells.len();
    let mut ends: Vec<MeshEnds> =
        (0..n).map(|_| MeshEnds { to: (0..n).map(|_| None).collect(), from: (0..n).map(|_| None).collect(), bells: bells.to_vec() }).collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (tx, rx) = bounded(MESH_CHANNEL_MESSAGES_MAX);
                let taken = Arc::new(AtomicU64::new(0));
                ends[from].to[to] = Some(MeshSender { tx, sent: 0, taken: taken.clone() });
                ends[to].from[from] = Some(MeshReceiver { rx, taken: 0, published: taken });
            }
        }
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_parked_shard_is_rung_once_and_an_awake_one_never() {
        let (bell, mut reader) = Doorbell::new().unwrap();
        bell.ring_if_parked();
        let mut buf = [0u8; 8];
        assert!(reader.read(&mut buf).is_err(), "not parked: no byte");
        bell.set_parked();
        bell.ring_if_parked();
        bell.ring_if_parked();
        assert_eq!(reader.read(&mut buf).unwrap(), 1);
        assert_eq!(bell.rings(), 1);
    }

    #[test]
    fn the_mesh_connects_every_ordered_pair() {
        let bells: Vec<_> = (0..3).map(|_| Doorbell::new().unwrap().0).collect();
        let mut ends = build_mesh(&bells);
        for (i, e) in ends.iter().enumerate() {
            assert!(e.to[i].is_none() && e.from[i].is_none());
            assert_eq!(e.to.iter().flatten().count(), 2);
        }
        let m = Message::encode(&Default::default(), b"a", b"b", b"x").unwrap();
        ends[0].to[2].as_mut().unwrap().try_send(m.clone()).unwrap();
        ends[0].to[2].as_mut().unwrap().try_send(m.clone()).unwrap();
        assert_eq!(ends[0].to[2].as_ref().unwrap().bytes_in_flight(), 2 * m.len() as u64);
        let rx = ends[2].from[0].as_mut().unwrap();
        assert_eq!(rx.try_recv().unwrap(), m);
        assert_eq!(ends[0].to[2].as_ref().unwrap().bytes_in_flight(), 2 * m.len() as u64, "not published yet: an overestimate");
        ends[2].from[0].as_ref().unwrap().publish();
        assert_eq!(ends[0].to[2].as_ref().unwrap().bytes_in_flight(), m.len() as u64);
    }
}
