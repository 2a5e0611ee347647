//! The cluster benchmarks.
//!
//! - Gossip convergence (ADR-0017's fourth benchmark): a seeded simulation
//!   of N real `Membership`s (foca, sealed packets) with virtual time, so
//!   1000 nodes fit in one process. Figures beside the ADR's formulas.
//! - Remote routing: two in-process nodes, one shard each on its own core,
//!   linked over loopback TCP by the real link code (no gossip: membership
//!   is not on the message path). A message's round trip, API to an `echo`
//!   on the other node and back, beside the same round trip to an `echo` on
//!   the same node and a raw loopback TCP ping-pong.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caxton_cluster::session::Mode;
use caxton_cluster::sim::{measure_convergence, Convergence};
use caxton_cluster::{GossipSettings, KeyRing};
use caxton_shards::clock::now_ns;
use caxton_shards::command::ClusterUpdate;
use caxton_shards::executor::allowed_cpus;
use caxton_shards::limits::{GOSSIP_FANOUT, GOSSIP_INTERVAL_MS, GOSSIP_PACKET_BYTES_MAX};
use caxton_shards::link::LinkSetup;
use caxton_shards::runtime_outbox::RuntimeOutbox;
use hdrhistogram::Histogram;

use crate::histogram;
use crate::node::BenchNode;
use crate::routing::agents_dir;

pub fn gossip_settings() -> GossipSettings {
    GossipSettings {
        interval_ms: GOSSIP_INTERVAL_MS,
        fanout: GOSSIP_FANOUT,
        packet_bytes_max: GOSSIP_PACKET_BYTES_MAX,
        cluster_size_hint: 100,
        periodic_gossip: true,
    }
}

/// Join, failure and bandwidth figures for a simulated cluster of `n`.
pub fn convergence(n: usize, seed: u64) -> Convergence {
    measure_convergence(n, gossip_settings(), seed).unwrap_or_else(|e| panic!("convergence of {n} nodes: {e}"))
}

/// ADR-0017's cluster-wide capacity, the registry's part: `n` simulated
/// nodes deploy `per_node` agents each at once; until every node routes
/// every name (the production gossip settings, virtual time).
pub fn registry_spread(n: usize, per_node: usize, seed: u64) -> caxton_cluster::sim::RegistrySpread {
    caxton_cluster::sim::measure_registry_spread(n, per_node, gossip_settings(), seed, 600).unwrap_or_else(|e| panic!("registry of {n} nodes: {e}"))
}

/// The baseline: the same cluster without SWIM's gossip rounds, updates
/// riding only on probes and their acks (the original SWIM piggybacking).
pub fn convergence_piggyback_only(n: usize, seed: u64) -> Convergence {
    let settings = GossipSettings { periodic_gossip: false, ..gossip_settings() };
    measure_convergence(n, settings, seed).unwrap_or_else(|e| panic!("convergence of {n} nodes, piggyback only: {e}"))
}

/// SWIM's bound on noticing a crash, in ms: a probe period to pick the dead
/// node, the probe's round trip, then the suspicion timeout (foca's LAN
/// profile for a cluster of `n`).
pub fn detection_bound_ms(n: usize) -> f64 {
    let c = GossipSettings { cluster_size_hint: n as u32, ..gossip_settings() }.foca_config();
    (c.probe_period + c.probe_rtt + c.suspect_to_down_after).as_secs_f64() * 1e3
}

/// ADR-0017: `gossip_interval × ceil(log2 N)`, in ms.
pub fn adr_convergence_ms(n: usize) -> f64 {
    GOSSIP_INTERVAL_MS as f64 * (n as f64).log2().ceil()
}

/// ADR-0017: `(1000 / interval_ms) × packet × fanout × 2` bytes per second.
pub fn adr_bandwidth_bytes_s() -> f64 {
    1000.0 / GOSSIP_INTERVAL_MS as f64 * GOSSIP_PACKET_BYTES_MAX as f64 * GOSSIP_FANOUT as f64 * 2.0
}

/// What one core does to a link's bytes with encryption on: seal them into
/// records and open them again (64 KiB batches, as a link writes them), in
/// MB/s, beside the same bytes copied into and out of clear records.
pub fn record_throughput(bytes_total: usize) -> (f64, f64) {
    use caxton_cluster::session;
    let run = |mode: Mode| {
        let ring = KeyRing::new(b"benchmark cluster key", None).unwrap();
        let (client, hello) = session::client_hello(&ring, mode);
        let head: [u8; session::HELLO_HEAD_BYTES] = hello[..session::HELLO_HEAD_BYTES].try_into().unwrap();
        let (id, theirs, _) = session::read_hello_head(&head).unwrap();
        let (server, answer) = session::server_answer(&ring, mode, id, theirs, &hello[session::HELLO_HEAD_BYTES..], "b").unwrap();
        let (mut tx, confirm) = client.finish(&answer[2..], "b", "a").unwrap();
        let (mut rx, _) = server.finish(&confirm[2..]).unwrap();
        let batch = vec![0x5au8; 64 * 1024];
        let (mut sealed, mut plain) = (Vec::with_capacity(80 * 1024), Vec::with_capacity(80 * 1024));
        let t = Instant::now();
        let mut done = 0;
        while done < bytes_total {
            sealed.clear();
            plain.clear();
            tx.sealer.seal(&batch, &mut sealed);
            rx.opener.open(&mut sealed, &mut plain).unwrap();
            assert_eq!(plain.len(), batch.len());
            done += batch.len();
        }
        done as f64 / t.elapsed().as_secs_f64() / 1e6
    };
    (run(Mode::Sealed), run(Mode::Plain))
}

/// Round trips of 8 bytes over loopback TCP between two threads: the floor
/// under any message between two nodes of one host.
pub fn loopback_tcp_ping_pong(rounds: usize) -> Histogram<u64> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 8];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).unwrap();
        }
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let mut h = histogram();
    let mut buf = [0u8; 8];
    for i in 0..rounds {
        let t = Instant::now();
        c.write_all(&(i as u64).to_le_bytes()).unwrap();
        c.read_exact(&mut buf).unwrap();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    drop(c);
    server.join().unwrap();
    h
}

/// Two nodes linked over loopback; node A's runtime names lead back here.
pub struct LinkedPair {
    pub a: BenchNode,
    pub b: BenchNode,
    b_name: String,
    round_trips: Arc<Mutex<Histogram<u64>>>,
    replies: Arc<AtomicU64>,
}

fn free_port(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), caxton_testkit::free_cluster_port(ip))
}

impl LinkedPair {
    /// Two nodes whose links encrypt, as every node's do.
    pub fn start() -> LinkedPair {
        LinkedPair::start_with(Mode::Sealed)
    }

    /// Two nodes whose link records are sealed, or in clear after the same
    /// authenticated handshake (`Mode::Plain`: the baseline of encryption's
    /// cost; a node never runs it).
    pub fn start_with(mode: Mode) -> LinkedPair {
        let cpus = allowed_cpus();
        let (addr_a, addr_b) = (free_port("127.0.0.1"), free_port("127.0.0.2"));
        let link = |addr: SocketAddr| LinkSetup { mode, ..LinkSetup::with_defaults(addr, KeyRing::new(b"benchmark cluster key", None).unwrap(), 1) };
        let round_trips = Arc::new(Mutex::new(histogram()));
        let replies = Arc::new(AtomicU64::new(0));
        let (rt, n) = (round_trips.clone(), replies.clone());
        // A reply's content is the request's: the clock reading at its making.
        let sink = RuntimeOutbox::consuming(move |m| {
            if let Some(sent) = m.content().get(..8) {
                let took = now_ns().saturating_sub(u64::from_le_bytes(sent.try_into().unwrap()));
                let _ = rt.lock().unwrap().record(took.max(1));
            }
            n.fetch_add(1, Ordering::Relaxed);
        });
        let a = BenchNode::start_linked(vec![cpus[0]], link(addr_a), sink);
        let b = BenchNode::start_linked(vec![cpus[1 % cpus.len()]], link(addr_b), RuntimeOutbox::consuming(drop));
        a.cluster(vec![ClusterUpdate::Node { name: addr_b.to_string().into(), addr: addr_b, alive: true, suspect: false }]);
        b.cluster(vec![ClusterUpdate::Node { name: addr_a.to_string().into(), addr: addr_a, alive: true, suspect: false }]);
        LinkedPair { a, b, b_name: addr_b.to_string(), round_trips, replies }
    }

    /// Deploys `wat` as `name` on node B, and tells A where it lives.
    pub fn deploy_on_b(&self, name: &str, wat: &std::path::Path) {
        self.b.deploy(name, wat, 1);
        self.a.cluster(vec![ClusterUpdate::Route { agent: name.into(), node: Some(self.b_name.as_str().into()) }]);
    }

    /// Sends `rate` requests a second from A's API side to `receiver` for
    /// `duration`; returns the round trips and the replies per second.
    pub fn round_trips(&self, receiver: &str, rate: usize, duration: Duration) -> (Histogram<u64>, f64) {
        self.round_trips.lock().unwrap().reset();
        let before = self.replies.load(Ordering::Relaxed);
        let t = Instant::now();
        // Stamped with its scheduled time, not its build time (issue 19, 7).
        let (_, accepted) = self.a.drive((rate / 1000).max(1), duration, |_, scheduled| (0, BenchNode::message("@bench", receiver, &scheduled.to_le_bytes())));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.replies.load(Ordering::Relaxed) - before < accepted && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let rate = (self.replies.load(Ordering::Relaxed) - before) as f64 / t.elapsed().as_secs_f64();
        (self.round_trips.lock().unwrap().clone(), rate)
    }

    /// Messages per second a `blaster` on A pushes into a `sink` on B.
    pub fn blast(&self, duration: Duration) -> f64 {
        self.a.deploy("blaster", &agents_dir().join("blaster.wat"), 1);
        self.deploy_on_b("far-sink", &agents_dir().join("sink.wat"));
        self.a.inject(0, vec![BenchNode::message("@bench", "blaster", b"far-sink")]);
        std::thread::sleep(duration / 10);
        let before = self.b.handled();
        let t = Instant::now();
        std::thread::sleep(duration);
        let rate = (self.b.handled() - before) as f64 / t.elapsed().as_secs_f64();
        self.a.undeploy("blaster");
        rate
    }
}

/// Round trips of 8 bytes over loopback TCP between two glommio executors
/// on two cores, each parking when idle (a request every 1 ms): the floor
/// of any glommio-based link at low load, set by its wake-up path.
pub fn glommio_tcp_ping_pong(rounds: usize) -> Histogram<u64> {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::{LocalExecutorBuilder, Placement};
    let cpus = allowed_cpus();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = LocalExecutorBuilder::new(Placement::Fixed(cpus[1 % cpus.len()]))
        .spawn(move || async move {
            let l = glommio::net::TcpListener::bind(addr).unwrap();
            ready_tx.send(()).unwrap();
            let mut s = l.accept().await.unwrap();
            let mut buf = [0u8; 8];
            while s.read_exact(&mut buf).await.is_ok() {
                if s.write_all(&buf).await.is_err() {
                    break;
                }
            }
        })
        .unwrap();
    ready_rx.recv().unwrap();
    let client = LocalExecutorBuilder::new(Placement::Fixed(cpus[0]))
        .spawn(move || async move {
            let mut s = glommio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut h = histogram();
            let mut buf = [0u8; 8];
            for i in 0..rounds as u64 {
                let t = Instant::now();
                s.write_all(&i.to_le_bytes()).await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
                h.record(t.elapsed().as_nanos() as u64).unwrap();
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            h
        })
        .unwrap();
    let h = client.join().unwrap();
    server.join().unwrap();
    h
}
