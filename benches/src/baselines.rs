//! The baselines every figure is measured beside, in the same run:
//! - the floor: two spinning threads pinned to two cores, ping-ponging over
//!   a lock-free queue (one way = half the round trip), and a plain call;
//! - the channel the design rejected: glommio's `shared_channel` between two
//!   pinned executors with default parking;
//! - a native actor runtime a user might pick instead: actix actors on two
//!   arbiters (threads), with native handlers (the peer's best case).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::histogram;

/// The CPUs `node`'s shards are pinned to (one each, in order), for a
/// peer that must run on the same ones.
pub fn node_cpus(node: &crate::node::BenchNode) -> Vec<usize> {
    caxton_shards::executor::allowed_cpus().into_iter().take(node.shards.len()).collect()
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; we pass its true size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One-way latency (half the round trip) of two spinning, pinned threads
/// over bounded lock-free channels.
pub fn spinning_ping_pong(rounds: usize) -> Histogram<u64> {
    let (to_b, from_a) = crossbeam_channel::bounded::<u64>(1024);
    let (to_a, from_b) = crossbeam_channel::bounded::<u64>(1024);
    let cpus = caxton_shards::executor::allowed_cpus();
    let (cpu_a, cpu_b) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    let echo = std::thread::spawn(move || {
        pin_to(cpu_b);
        for _ in 0..rounds {
            let v = loop {
                if let Ok(v) = from_a.try_recv() {
                    break v;
                }
                std::hint::spin_loop();
            };
            to_a.send(v).unwrap();
        }
    });
    // Pin a thread of its own, never the caller's: it goes on to start shards.
    let pinger = std::thread::spawn(move || {
        pin_to(cpu_a);
        let mut h = histogram();
        for i in 0..rounds {
            let t = Instant::now();
            to_b.send(i as u64).unwrap();
            loop {
                if from_b.try_recv().is_ok() {
                    break;
                }
                std::hint::spin_loop();
            }
            h.saturating_record((t.elapsed().as_nanos() as u64 / 2).max(1));
        }
        h
    });
    echo.join().unwrap();
    pinger.join().unwrap()
}

/// One-way latency of glommio's `shared_channel` between two pinned
/// executors with default parking (the design's rejected channel).
pub fn glommio_ping_pong(rounds: usize) -> Histogram<u64> {
    use glommio::channels::shared_channel;
    use glommio::{LocalExecutorBuilder, Placement};
    let cpus = caxton_shards::executor::allowed_cpus();
    let (cpu_a, cpu_b) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    let (ab_tx, ab_rx) = shared_channel::new_bounded::<u64>(16);
    let (ba_tx, ba_rx) = shared_channel::new_bounded::<u64>(16);
    let io = caxton_shards::executor::GLOMMIO_IO_MEMORY_BYTES_MIN;
    let b = LocalExecutorBuilder::new(Placement::Fixed(cpu_b))
        .io_memory(io)
        .spawn(move || async move {
            let rx = ab_rx.connect().await;
            let tx = ba_tx.connect().await;
            for _ in 0..rounds {
                let v = rx.recv().await.unwrap();
                tx.send(v).await.unwrap();
            }
        })
        .unwrap();
    let a = LocalExecutorBuilder::new(Placement::Fixed(cpu_a))
        .io_memory(io)
        .spawn(move || async move {
            let tx = ab_tx.connect().await;
            let rx = ba_rx.connect().await;
            let mut h = histogram();
            for i in 0..rounds {
                let t = Instant::now();
                tx.send(i as u64).await.unwrap();
                rx.recv().await.unwrap();
                h.saturating_record((t.elapsed().as_nanos() as u64 / 2).max(1));
            }
            h
        })
        .unwrap();
    let h = a.join().unwrap();
    b.join().unwrap();
    h
}

/// Nanoseconds per call of a plain function that does what a trivial
/// handler does (look at a message and return 0).
pub fn plain_call_ns(calls: u64) -> f64 {
    #[inline(never)]
    fn handle(envelope: &[u8]) -> i32 {
        (envelope[0] == 0) as i32
    }
    let envelope = [1u8; 64];
    let t = Instant::now();
    let mut acc = 0i32;
    for _ in 0..calls {
        acc += handle(std::hint::black_box(&envelope));
    }
    std::hint::black_box(acc);
    t.elapsed().as_nanos() as f64 / calls as f64
}

mod actors {
    use actix::prelude::*;

    #[derive(Message)]
    #[rtype(result = "()")]
    pub struct Ping(pub u64, pub Recipient<Pong>);

    #[derive(Message)]
    #[rtype(result = "()")]
    pub struct Pong(pub u64);

    pub struct Ponger;
    impl Actor for Ponger {
        type Context = Context<Self>;
    }
    impl Handler<Ping> for Ponger {
        type Result = ();
        fn handle(&mut self, msg: Ping, _: &mut Context<Self>) {
            msg.1.do_send(Pong(msg.0));
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    pub struct Count;

    pub struct Counter(pub std::sync::Arc<std::sync::atomic::AtomicU64>);
    impl Actor for Counter {
        type Context = Context<Self>;
    }
    impl Handler<Count> for Counter {
        type Result = ();
        fn handle(&mut self, _: Count, _: &mut Context<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// One-way latency between two actix actors on two arbiters (threads), and
/// their pipelined throughput (messages per second) from one to the other.
pub fn actix(rounds: usize, pipelined: u64) -> (Histogram<u64>, f64) {
    use crate::baselines::actors::{Count, Counter, Ping, Pong, Ponger};
    use actix::prelude::*;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let system = std::thread::spawn(move || {
        let sys = System::new();
        sys.block_on(async move {
            let arbiter = Arbiter::new();
            let ponger = Ponger::start_in_arbiter(&arbiter.handle(), |_| Ponger);
            // The pinger side: a small actor that receives Pongs into a channel.
            struct Catcher(tokio::sync::mpsc::UnboundedSender<u64>);
            impl Actor for Catcher {
                type Context = Context<Self>;
            }
            impl Handler<Pong> for Catcher {
                type Result = ();
                fn handle(&mut self, msg: Pong, _: &mut Context<Self>) {
                    let _ = self.0.send(msg.0);
                }
            }
            let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel();
            let catcher = Catcher(pong_tx).start().recipient();
            let mut h = histogram();
            for i in 0..rounds as u64 {
                let t = Instant::now();
                ponger.do_send(Ping(i, catcher.clone()));
                pong_rx.recv().await.unwrap();
                h.saturating_record((t.elapsed().as_nanos() as u64 / 2).max(1));
            }
            let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counter_count = count.clone();
            let counter = Counter::start_in_arbiter(&arbiter.handle(), move |_| Counter(counter_count));
            let start = Instant::now();
            for _ in 0..pipelined {
                counter.do_send(Count);
            }
            while count.load(Ordering::Relaxed) < pipelined {
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            let rate = pipelined as f64 / start.elapsed().as_secs_f64();
            arbiter.stop();
            tx.send((h, rate)).unwrap();
            System::current().stop();
        });
    });
    let result = rx.recv().unwrap();
    let _ = system.join();
    result
}

/// One-way latency over glommio's `shared_channel` between two pinned
/// executors, open loop: the sender sends `rate` messages a second on
/// schedule whatever the receiver does, each stamped when it is sent (the
/// shards' routing rows time from the send too), and the receiver times
/// each from there. The executors spin `spin`
/// before they park, the budget the shards get (`--spin-before-park-max-us`):
/// the baseline runs under the conditions of the row it divides.
pub fn glommio_open_loop(rate: u64, duration: Duration, spin: Duration) -> Histogram<u64> {
    use glommio::channels::shared_channel;
    use glommio::{LocalExecutorBuilder, Placement};
    let cpus = caxton_shards::executor::allowed_cpus();
    let (cpu_a, cpu_b) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    let (tx, rx) = shared_channel::new_bounded::<u64>(8192);
    let io = caxton_shards::executor::GLOMMIO_IO_MEMORY_BYTES_MIN;
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let receiver = LocalExecutorBuilder::new(Placement::Fixed(cpu_b))
        .io_memory(io)
        .spin_before_park(spin)
        .spawn(move || async move {
            let rx = rx.connect().await;
            let mut h = histogram();
            for _ in 0..total {
                let scheduled = rx.recv().await.unwrap();
                h.saturating_record(caxton_shards::clock::now_ns().saturating_sub(scheduled).max(1));
            }
            h
        })
        .unwrap();
    let sender = LocalExecutorBuilder::new(Placement::Fixed(cpu_a))
        .io_memory(io)
        .spin_before_park(spin)
        .spawn(move || async move {
            let tx = tx.connect().await;
            let start = caxton_shards::clock::now_ns();
            let mut sent = 0u64;
            while sent < total {
                let due = ((caxton_shards::clock::now_ns() - start) as u128 * rate as u128 / 1_000_000_000) as u64;
                while sent < due.min(total) {
                    tx.send(caxton_shards::clock::now_ns()).await.unwrap();
                    sent += 1;
                }
                glommio::timer::sleep(Duration::from_micros(crate::node::INJECT_INTERVAL_US)).await;
            }
        })
        .unwrap();
    sender.join().unwrap();
    receiver.join().unwrap()
}

/// One-way latency between two actix actors on two arbiters, open loop at
/// `rate` messages a second, each timed from its send to its handler (the
/// same points and conditions as the shards' loaded rows).
pub fn actix_open_loop(rate: u64, duration: Duration) -> Histogram<u64> {
    use actix::prelude::*;
    struct Timer(std::sync::Arc<std::sync::Mutex<Histogram<u64>>>);
    impl Actor for Timer {
        type Context = Context<Self>;
    }
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Stamp(u64);
    impl Handler<Stamp> for Timer {
        type Result = ();
        fn handle(&mut self, msg: Stamp, _: &mut Context<Self>) {
            self.0.lock().unwrap().saturating_record(caxton_shards::clock::now_ns().saturating_sub(msg.0).max(1));
        }
    }
    let h = std::sync::Arc::new(std::sync::Mutex::new(histogram()));
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let kept = h.clone();
    let system = std::thread::spawn(move || {
        let sys = System::new();
        sys.block_on(async move {
            let arbiter = Arbiter::new();
            let timer = Timer::start_in_arbiter(&arbiter.handle(), move |_| Timer(kept));
            let start = caxton_shards::clock::now_ns();
            let mut sent = 0u64;
            while sent < total {
                let due = ((caxton_shards::clock::now_ns() - start) as u128 * rate as u128 / 1_000_000_000) as u64;
                while sent < due.min(total) {
                    timer.do_send(Stamp(caxton_shards::clock::now_ns()));
                    sent += 1;
                }
                tokio::time::sleep(Duration::from_micros(crate::node::INJECT_INTERVAL_US)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            arbiter.stop();
            System::current().stop();
        });
    });
    let _ = system.join();
    let h = h.lock().unwrap().clone();
    h
}
