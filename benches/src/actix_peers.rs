//! actix peers of the same shape as each throughput row (issue 26), so that
//! a ratio compares the same work:
//! - the same pinning: one arbiter per core the shards use, its thread
//!   pinned to that core;
//! - the same topology: echo pairs with 64 messages in flight on each core,
//!   or with their two ends on different cores; a blaster flooding a
//!   counting sink on its core or on the other, as fast as the sink's
//!   mailbox takes (the caxton blaster stops at "busy" and goes again);
//! - the same payload: each handled message makes a new message of the
//!   caxton envelope's length (the content copied into a new buffer from
//!   glibc's malloc, freed where it is dropped: the allocator is named in
//!   the rows, caxton's being its per-thread pool);
//! - every handled message counted, on both sides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::agents;
use crate::baselines::pin_to;
use crate::node::BenchNode;

/// Bytes of a caxton envelope of `content` bytes between two short names
/// (its header is 76 bytes): the size of the peer's message in the same row.
pub const fn envelope_bytes(content: usize) -> usize {
    76 + 2 * 10 + content
}

/// Messages in flight per echo pair (the caxton rows' `ECHO_BALLS`).
pub const IN_FLIGHT: usize = 64;

/// The mailbox a sink has (caxton's `MAILBOX_MESSAGES_MAX`).
const SINK_MAILBOX: usize = 1024;

/// A message: its bytes, made anew by each handler that sends one.
#[derive(Message)]
#[rtype(result = "()")]
struct Ball(Vec<u8>);

#[derive(Message)]
#[rtype(result = "()")]
struct SetPeer(Recipient<Ball>);

/// One end of an echo pair: counts each ball and sends a new one back.
struct Echo {
    peer: Option<Recipient<Ball>>,
    handled: Arc<AtomicU64>,
}

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Handler<SetPeer> for Echo {
    type Result = ();
    fn handle(&mut self, msg: SetPeer, _: &mut Context<Self>) {
        self.peer = Some(msg.0);
    }
}

impl Handler<Ball> for Echo {
    type Result = ();
    fn handle(&mut self, ball: Ball, _: &mut Context<Self>) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        if let Some(peer) = &self.peer {
            peer.do_send(Ball(ball.0.as_slice().to_vec()));
        }
    }
}

/// Counts what reaches it.
struct Sink {
    handled: Arc<AtomicU64>,
}

impl Actor for Sink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(SINK_MAILBOX);
    }
}

impl Handler<Ball> for Sink {
    type Result = ();
    fn handle(&mut self, ball: Ball, _: &mut Context<Self>) {
        std::hint::black_box(&ball.0);
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// caxton's blaster, as a task on the arbiter: up to 256 balls to its
/// sink, stopping when the sink's mailbox is full, then a yield and again,
/// until `stop`. (Not an actor sending itself a message: actix handles what
/// reaches a mailbox in a loop that never yields, so the sink on the same
/// arbiter never ran. The task is cheaper than caxton's blaster, whose
/// every round is a handler call.)
async fn blast(sink: Addr<Sink>, payload: Vec<u8>, stop: Arc<std::sync::atomic::AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..256 {
            if sink.try_send(Ball(payload.clone())).is_err() {
                break;
            }
        }
        tokio::task::yield_now().await;
    }
}

/// The shapes of the throughput rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Echo pairs, both ends on one core, one pair per core.
    EchoSameCore,
    /// Echo pairs, the two ends on different cores.
    EchoAcrossCores,
    /// A blaster and its sink on each core.
    FloodSameCore,
    /// A blaster on each core, its sink on the other.
    FloodAcrossCores,
}

/// Messages of `payload_bytes` handled a second (echo: by both ends; flood:
/// by the sinks) over `duration`, after a tenth of it to warm up, on one
/// arbiter per CPU of `cpus`.
pub fn rate(shape: Shape, cpus: &[usize], payload_bytes: usize, duration: Duration) -> f64 {
    assert!(!cpus.is_empty() && payload_bytes > 0);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let cpus = cpus.to_vec();
    let system = std::thread::spawn(move || {
        let sys = System::new();
        sys.block_on(async move {
            let arbiters: Vec<Arbiter> = cpus
                .iter()
                .map(|&cpu| {
                    let a = Arbiter::new();
                    a.spawn_fn(move || pin_to(cpu));
                    a
                })
                .collect();
            let n = arbiters.len();
            let handled = Arc::new(AtomicU64::new(0));
            let payload = vec![7u8; payload_bytes];
            let mut stop: Vec<Box<dyn FnOnce()>> = Vec::new();
            match shape {
                Shape::EchoSameCore | Shape::EchoAcrossCores => {
                    for i in 0..n {
                        let other = if shape == Shape::EchoAcrossCores { (i + 1) % n } else { i };
                        let h = handled.clone();
                        let ping = Echo::start_in_arbiter(&arbiters[i].handle(), move |_| Echo { peer: None, handled: h });
                        let h = handled.clone();
                        let pong = Echo::start_in_arbiter(&arbiters[other].handle(), move |_| Echo { peer: None, handled: h });
                        ping.send(SetPeer(pong.clone().recipient())).await.unwrap();
                        pong.send(SetPeer(ping.clone().recipient())).await.unwrap();
                        for _ in 0..IN_FLIGHT {
                            pong.do_send(Ball(payload.clone()));
                        }
                        stop.push(Box::new(move || drop((ping, pong))));
                    }
                }
                Shape::FloodSameCore | Shape::FloodAcrossCores => {
                    for i in 0..n {
                        let to = if shape == Shape::FloodAcrossCores { (i + 1) % n } else { i };
                        let h = handled.clone();
                        let sink = Sink::start_in_arbiter(&arbiters[to].handle(), move |_| Sink { handled: h });
                        let halt = Arc::new(std::sync::atomic::AtomicBool::new(false));
                        arbiters[i].spawn(blast(sink, payload.clone(), halt.clone()));
                        stop.push(Box::new(move || halt.store(true, Ordering::Relaxed)));
                    }
                }
            }
            actix::clock::sleep(duration / 10).await;
            let before = handled.load(Ordering::Relaxed);
            let t = Instant::now();
            actix::clock::sleep(duration).await;
            let rate = (handled.load(Ordering::Relaxed) - before) as f64 / t.elapsed().as_secs_f64();
            for a in &arbiters {
                a.stop();
            }
            for halt in stop {
                halt();
            }
            tx.send(rate).unwrap();
            System::current().stop();
        });
    });
    let rate = rx.recv().unwrap();
    let _ = system.join();
    rate
}

/// Alternating runs, ours then the peer's, `runs` of each: the medians,
/// and the min and max of their ratios (ours ÷ peer's, run by run).
#[derive(Clone, Copy, Debug)]
pub struct Alternated {
    pub ours: f64,
    pub peer: f64,
    pub ratio_median: f64,
    pub ratio_min: f64,
    pub ratio_max: f64,
}

pub fn alternate(runs: usize, mut ours: impl FnMut() -> f64, mut peer: impl FnMut() -> f64) -> Alternated {
    assert!(runs > 0);
    let (mut o, mut p, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let a = ours();
        let b = peer();
        o.push(a);
        p.push(b);
        ratios.push(a / b);
    }
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    Alternated { ours: crate::median(o), peer: crate::median(p), ratio_median: crate::median(ratios), ratio_min: lo, ratio_max: hi }
}

/// The like-for-like rows: each caxton throughput shape on `node` beside
/// its actix peer on the same CPUs, `runs` alternating runs of `duration`
/// each. Keys: `echo_same`, `echo_cross`, `flood_same`, `flood_cross` (the
/// hand-written WAT agents), `echo_sdk_same` (the Rust SDK's echo) and
/// `echo_4k_same` (4 KiB of content a message).
pub fn compare(node: &BenchNode, runs: usize, duration: Duration) -> Vec<(&'static str, Alternated)> {
    let cpus: Vec<usize> = crate::baselines::node_cpus(node);
    let echo = crate::routing::agents_dir().join("echo.wat");
    let sdk = caxton_testkit::example_agent("rust-echo");
    let small = envelope_bytes(64);
    // The blasters send their sink's name (about 12 bytes) as content.
    let flood = envelope_bytes(12);
    let cpus = &cpus;
    let peer = |shape, bytes| move || rate(shape, cpus, bytes, duration);
    vec![
        ("echo_same", alternate(runs, || agents::echo_pingpong(node, "l4l", &echo, false, duration).handled_per_s, peer(Shape::EchoSameCore, small))),
        ("echo_cross", alternate(runs, || agents::echo_pingpong(node, "l4l", &echo, true, duration).handled_per_s, peer(Shape::EchoAcrossCores, small))),
        ("flood_same", alternate(runs, || crate::routing::blast(node, false, duration), peer(Shape::FloodSameCore, flood))),
        ("flood_cross", alternate(runs, || crate::routing::blast(node, true, duration), peer(Shape::FloodAcrossCores, flood))),
        ("echo_sdk_same", alternate(runs, || agents::echo_pingpong(node, "l4l-sdk", &sdk, false, duration).handled_per_s, peer(Shape::EchoSameCore, small))),
        (
            "echo_4k_same",
            alternate(
                runs,
                || agents::echo_pingpong_sized(node, "l4l-4k", &echo, false, 4096, duration).handled_per_s,
                peer(Shape::EchoSameCore, envelope_bytes(4096)),
            ),
        ),
    ]
}
