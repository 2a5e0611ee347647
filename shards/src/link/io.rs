//! The link tasks of one shard, on its glommio executor: an acceptor and a
//! reader per inbound connection, a connector-writer per outbound slot.
//! They touch shard state only between ticks (one thread, no `await` inside
//! a tick), through the shard's context.
//!
//! Rules:
//! 1. Every socket is tuned with socket2: no-delay, keepalive, buffers of
//!    [`LINK_SOCKET_BUFFER_BYTES`].
//! 2. A writer takes its slot's whole queue at once (into `unacked`, before
//!    a byte is written: table rule 4) and writes it as frames, up to
//!    [`LINK_WRITE_BATCH_BYTES_MAX`] a write: frames are batched per tick.
//! 3. An outbound slot keeps its messages while it cannot connect to a live
//!    node and retries every [`LINK_RECONNECT_DELAY_MS`]; written ones wait
//!    for the receiver's acknowledgement and go again on the next connection
//!    if this one fails (table rule 5). Only the node going down (table
//!    rule 3) loses them, counted. A bad acknowledgement closes the
//!    connection, counted (`closed_bad_ack`).
//! 4. A reader stops reading while the shard's link inbox is full, in count
//!    or bytes (TCP backpressure); a malformed frame closes its connection
//!    only.
//! 5. A slot's task belongs to one generation of its node: once the node
//!    goes down (the generation moves on), the task ends and never touches
//!    the slot's state again.
//! 6. Before the key is proved, a connection holds a place in a bounded
//!    pool of pending handshakes (`pending_handshakes_max`), for at most
//!    `handshake_timeout`; only an authenticated peer takes one of the
//!    inbound places. Connections past either bound are closed at once and
//!    counted. Warnings about refusals are throttled (one a second).
//! 7. Every byte after the handshake travels in records of the session
//!    (`caxton_cluster::session`): frames and acknowledgements are sealed by
//!    the task that writes them and opened by the task that reads them, on
//!    this shard. A record that does not open closes its connection,
//!    counted (`closed_tampered`); what it carried unacknowledged goes
//!    again on the next connection. An inbound link whose key is no longer
//!    held (rotation) is closed at its next read, counted
//!    (`closed_retired_key`), and the same holds for what it carried.
//!
//! Steady state allocates nothing here but the batch buffer's growth: the
//! writer swaps its queue with the slot's and re-arms one idle timer.

use std::cell::RefCell;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use caxton_cluster::session::{self, Mode, Opener, Sealer, Session, SessionError, HANDSHAKE_MESSAGE_BYTES_MAX, HELLO_HEAD_BYTES, RECORD_TAG_BYTES};
use caxton_cluster::KeyRing;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use socket2::{SockRef, TcpKeepalive};

use super::frame::{take_frames, ACK_BYTES};
use super::table::{NodeIdx, SlotState};
use crate::context::ShardCtx;
use crate::envelope::RoutePath;
use crate::limits::{
    LINK_HANDSHAKE_TIMEOUT_MS, LINK_IDLE_TIMEOUT_MS, LINK_KEEPALIVE_IDLE_S, LINK_KEEPALIVE_INTERVAL_S, LINK_PENDING_HANDSHAKES_MAX, LINK_READ_CHUNK_BYTES,
    LINK_RECONNECT_DELAY_MS, LINK_SEND_ATTEMPTS_MAX, LINK_SOCKET_BUFFER_BYTES, LINK_WRITE_BATCH_BYTES_MAX, NODE_LINK_CONNECTIONS_MAX,
    NODE_POOL_CONNECTIONS_MAX,
};
use crate::mesh::Doorbell;
use crate::names::rewrite_on_arrival;
use crate::router::DeadLetter;

/// Why a handshake failed when the peer's proof did not verify.
const BAD_KEY: &str = "bad_key";

/// How a shard takes part in the cluster's data plane.
#[derive(Clone)]
pub struct LinkSetup {
    /// Cluster address: every shard listens here (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// This node's name (its cluster address as text).
    pub self_name: String,
    /// The cluster's keys, shared with the gossip thread (rotation).
    pub keys: KeyRing,
    /// Records encrypted ([`Mode::Sealed`], the default and the node's
    /// only choice) or in clear after an authenticated handshake
    /// ([`Mode::Plain`], for benchmarks that measure encryption's cost).
    pub mode: Mode,
    /// Inbound connections this shard accepts at once: its share of
    /// `max_connections_per_node` (default [`NODE_LINK_CONNECTIONS_MAX`]).
    pub inbound_connections_max: usize,
    /// Outbound connections this shard may open to one node: its share of
    /// `connection_pool_size` (default [`NODE_POOL_CONNECTIONS_MAX`]).
    pub pool_connections: usize,
    /// An outbound connection unused this long closes. Default
    /// [`LINK_IDLE_TIMEOUT_MS`] (60 s).
    pub idle_timeout: Duration,
    /// Longest a connect plus handshake may take, either way. Default
    /// [`LINK_HANDSHAKE_TIMEOUT_MS`].
    pub handshake_timeout: Duration,
    /// Inbound connections this shard lets into a handshake at once, apart
    /// from the authenticated ones: its share of
    /// `max_pending_handshakes` (default [`LINK_PENDING_HANDSHAKES_MAX`]).
    pub pending_handshakes_max: usize,
}

/// The node-wide link settings a [`LinkSetup`] is derived from, each with
/// its default in `limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSettings {
    /// Inbound link connections of the node (ADR `max_connections_per_node`).
    pub connections_per_node: usize,
    /// Outbound connections to one node (ADR `connection_pool_size`).
    pub pool_size: usize,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Inbound connections in their handshake at once, node-wide.
    pub pending_handshakes: usize,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            connections_per_node: NODE_LINK_CONNECTIONS_MAX,
            pool_size: NODE_POOL_CONNECTIONS_MAX,
            idle_timeout: Duration::from_millis(LINK_IDLE_TIMEOUT_MS),
            handshake_timeout: Duration::from_millis(LINK_HANDSHAKE_TIMEOUT_MS),
            pending_handshakes: LINK_PENDING_HANDSHAKES_MAX,
        }
    }
}

impl LinkSetup {
    /// The settings of one of `shards` shards of a node listening on
    /// `listen`, from the node-wide figures.
    pub fn for_shard(listen: SocketAddr, keys: KeyRing, shards: usize, settings: LinkSettings) -> LinkSetup {
        assert!(shards > 0);
        LinkSetup {
            listen,
            self_name: listen.to_string(),
            keys,
            mode: Mode::Sealed,
            inbound_connections_max: (settings.connections_per_node / shards).max(1),
            pool_connections: (settings.pool_size / shards).max(1),
            idle_timeout: settings.idle_timeout,
            handshake_timeout: settings.handshake_timeout,
            pending_handshakes_max: (settings.pending_handshakes / shards).max(1),
        }
    }

    /// The defaults (ADR-0017's connection limits).
    pub fn with_defaults(listen: SocketAddr, keys: KeyRing, shards: usize) -> LinkSetup {
        LinkSetup::for_shard(listen, keys, shards, LinkSettings::default())
    }
}

type Ctx = Rc<RefCell<ShardCtx>>;

fn tune(stream: &TcpStream) {
    // SAFETY: the descriptor belongs to `stream`, which outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let sock = SockRef::from(&fd);
    let keepalive = TcpKeepalive::new().with_time(Duration::from_secs(LINK_KEEPALIVE_IDLE_S)).with_interval(Duration::from_secs(LINK_KEEPALIVE_INTERVAL_S));
    let results = [
        sock.set_tcp_nodelay(true),
        sock.set_tcp_keepalive(&keepalive),
        sock.set_send_buffer_size(LINK_SOCKET_BUFFER_BYTES),
        sock.set_recv_buffer_size(LINK_SOCKET_BUFFER_BYTES),
    ];
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        tracing::debug!(error = %e, "a link socket option was refused");
    }
}

/// Runs `f`, or fails after `limit`.
async fn within<T>(limit: Duration, what: &'static str, f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    futures_lite::future::or(f, async move {
        glommio::timer::sleep(limit).await;
        Err(format!("{what} timed out after {} ms", limit.as_millis()))
    })
    .await
}

async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), String> {
    stream.read_exact(buf).await.map_err(|e| e.to_string())
}

/// Reads a `u16` length and that many bytes, at most `max`.
async fn read_framed(stream: &mut TcpStream, max: usize) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 2];
    read_exact(stream, &mut len).await?;
    let len = u16::from_le_bytes(len) as usize;
    if len > max {
        return Err(format!("a handshake message of {len} bytes, over {max}"));
    }
    let mut body = vec![0u8; len];
    read_exact(stream, &mut body).await?;
    Ok(body)
}

/// Client side of the handshake (session rules 1 to 3).
async fn handshake_client(stream: &mut TcpStream, setup: &LinkSetup, expect: &str) -> Result<Session, String> {
    let (pending, hello) = session::client_hello(&setup.keys, setup.mode);
    stream.write_all(&hello).await.map_err(|e| e.to_string())?;
    let answer = read_framed(stream, HANDSHAKE_MESSAGE_BYTES_MAX).await?;
    let (session, confirm) = pending.finish(&answer, expect, &setup.self_name).map_err(|e| e.to_string())?;
    stream.write_all(&confirm).await.map_err(|e| e.to_string())?;
    Ok(session)
}

/// Server side of the handshake (session rules 1 to 3). Returns the
/// session and the client's name.
async fn handshake_server(stream: &mut TcpStream, setup: &LinkSetup) -> Result<(Session, String), String> {
    let refused = |e: SessionError| match e {
        SessionError::BadKey | SessionError::Tampered => BAD_KEY.to_string(),
        other => other.to_string(),
    };
    let mut head = [0u8; HELLO_HEAD_BYTES];
    read_exact(stream, &mut head).await?;
    let (id, mode, len) = session::read_hello_head(&head).map_err(refused)?;
    if len > HANDSHAKE_MESSAGE_BYTES_MAX {
        return Err(format!("a hello of {len} bytes"));
    }
    let mut hello = vec![0u8; len];
    read_exact(stream, &mut hello).await?;
    let (pending, answer) = session::server_answer(&setup.keys, setup.mode, id, mode, &hello, &setup.self_name).map_err(refused)?;
    stream.write_all(&answer).await.map_err(|e| e.to_string())?;
    let confirm = read_framed(stream, HANDSHAKE_MESSAGE_BYTES_MAX).await?;
    pending.finish(&confirm).map_err(refused)
}

/// Binds this shard's listener and starts accepting.
pub fn start_acceptor(ctx: Ctx, setup: Rc<LinkSetup>, bell: Arc<Doorbell>) -> Result<(), String> {
    let listener = TcpListener::bind(setup.listen).map_err(|e| format!("cannot listen for links on {}: {e}", setup.listen))?;
    glommio::spawn_local(async move {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a link failed");
                    glommio::timer::sleep(Duration::from_millis(LINK_RECONNECT_DELAY_MS)).await;
                    continue;
                }
            };
            {
                // Rule 6: a connection that has not proved the key waits in
                // a bounded handshake pool, apart from the authenticated
                // ones, so that it can never take their places.
                let mut c = ctx.borrow_mut();
                let counters = &mut c.router.remote.counters;
                if counters.pending_handshakes >= setup.pending_handshakes_max {
                    counters.refused_pending += 1;
                    continue; // dropping `stream` closes it
                }
                counters.pending_handshakes += 1;
            }
            glommio::spawn_local(serve_inbound(ctx.clone(), setup.clone(), bell.clone(), stream)).detach();
        }
    })
    .detach();
    Ok(())
}

async fn serve_inbound(ctx: Ctx, setup: Rc<LinkSetup>, bell: Arc<Doorbell>, mut stream: TcpStream) {
    tune(&stream);
    let peer = stream.peer_addr().ok();
    let shaken = within(setup.handshake_timeout, "link handshake", handshake_server(&mut stream, &setup)).await;
    let (session, from) = {
        let mut c = ctx.borrow_mut();
        let shard = c.router.shard();
        let remote = &mut c.router.remote;
        remote.counters.pending_handshakes -= 1;
        match shaken {
            Ok((_, from)) if remote.counters.open_inbound >= setup.inbound_connections_max => {
                remote.counters.refused_too_many += 1;
                if let Some(suppressed) = remote.refusal_log.allow() {
                    tracing::warn!(shard, ?peer, node = from, suppressed, "link refused: this shard holds its share of --max-connections-per-node");
                }
                return;
            }
            Ok(shaken) => {
                remote.counters.open_inbound += 1;
                remote.counters.accepted += 1;
                shaken
            }
            Err(e) => {
                let bad_key = e == BAD_KEY;
                if bad_key {
                    remote.counters.refused_bad_key += 1;
                } else {
                    remote.counters.refused_handshake += 1;
                }
                if let Some(suppressed) = remote.refusal_log.allow() {
                    match bad_key {
                        true => tracing::warn!(shard, ?peer, suppressed, "link refused: the peer did not prove the cluster key"),
                        false => tracing::warn!(shard, ?peer, error = %e, suppressed, "link refused: the handshake did not complete"),
                    }
                }
                return;
            }
        }
    };
    read_frames(&ctx, &bell, &mut stream, &from, session, &setup.keys).await;
    ctx.borrow_mut().router.remote.counters.open_inbound -= 1;
}

async fn read_frames(ctx: &Ctx, bell: &Doorbell, stream: &mut TcpStream, from: &str, session: Session, keys: &KeyRing) {
    let Session { mut sealer, mut opener, key } = session;
    let mut removals = keys.removals();
    let from_prefix = crate::names::node_prefix(from);
    let mut chunk = vec![0u8; LINK_READ_CHUNK_BYTES];
    let mut sealed = Vec::with_capacity(LINK_READ_CHUNK_BYTES);
    let mut buf = Vec::with_capacity(LINK_READ_CHUNK_BYTES);
    let mut ack = Vec::with_capacity(ACK_BYTES + RECORD_TAG_BYTES + 2);
    let mut frames = Vec::new();
    let (mut taken, mut acked) = (0u64, 0u64);
    loop {
        // Rule 4: wait for room before reading more.
        poll_fn(|cx| {
            let mut c = ctx.borrow_mut();
            if c.router.remote.inbound_has_room() {
                Poll::Ready(())
            } else {
                c.router.remote.inbound_wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let n = match stream.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(from, error = %e, "link read failed");
                return;
            }
        };
        // Rule 7 and keyring rule 5: a link keyed with a key no longer held
        // ends here; its sender sends again under a held one.
        if keys.removals() != removals {
            removals = keys.removals();
            if keys.find(key).is_none() {
                ctx.borrow_mut().router.remote.counters.closed_retired_key += 1;
                tracing::info!(from, %key, "closing a link opened with a cluster key no longer held");
                return;
            }
        }
        sealed.extend_from_slice(&chunk[..n]);
        if let Err(e) = opener.open(&mut sealed, &mut buf) {
            let mut c = ctx.borrow_mut();
            let remote = &mut c.router.remote;
            remote.counters.closed_tampered += 1;
            if let Some(suppressed) = remote.refusal_log.allow() {
                tracing::warn!(from, error = %e, suppressed, "link record refused: closing this connection");
            }
            return;
        }
        let parsed = take_frames(&mut buf, &mut frames);
        {
            let mut c = ctx.borrow_mut();
            let remote = &mut c.router.remote;
            remote.counters.bytes_in += n as u64;
            remote.counters.frames_in += frames.len() as u64;
            taken += frames.len() as u64;
            for m in frames.drain(..) {
                let mut m = match rewrite_on_arrival(&m, &from_prefix, &remote.self_prefix) {
                    Ok(Some(rewritten)) => rewritten,
                    Ok(None) => m,
                    Err(_) => m, // unreachable in practice: names were valid
                };
                m.set_path(RoutePath::Node);
                remote.push_inbound(m);
            }
            if let Err(e) = parsed {
                remote.counters.closed_malformed += 1;
                if let Some(suppressed) = remote.refusal_log.allow() {
                    tracing::warn!(from, error = %e, suppressed, "malformed link frame: closing this connection");
                }
            }
        }
        bell.ring_if_parked();
        if parsed.is_err() {
            return;
        }
        // Frame rule 4: acknowledge what the shard has taken.
        if taken != acked {
            acked = taken;
            ack.clear();
            sealer.seal(&acked.to_le_bytes(), &mut ack);
            if stream.write_all(&ack).await.is_err() {
                return;
            }
        }
    }
}

/// Opens the slots that have mail and no connection (table's `wanted`).
/// Called by the shard after each tick that queued remote mail.
pub fn open_wanted(ctx: &Ctx, setup: &Rc<LinkSetup>) {
    let wanted = std::mem::take(&mut ctx.borrow_mut().router.remote.wanted);
    for (n, s) in wanted {
        glommio::spawn_local(run_slot(ctx.clone(), setup.clone(), n, s)).detach();
    }
}

enum WriterEnd {
    /// Nothing to write, and everything acknowledged, for the idle timeout.
    Idle,
    /// The node went down (generation changed).
    Gone,
    /// A write failed, or the ack reader saw the connection end.
    Failed(String),
}

/// Connects slot `s` of node `n` and writes its mail until idle (rule 3).
async fn run_slot(ctx: Ctx, setup: Rc<LinkSetup>, n: NodeIdx, s: usize) {
    let (addr, name, generation) = {
        let c = ctx.borrow();
        let node = c.router.remote.node(n);
        (node.addr, node.name.clone(), node.slots[s].generation)
    };
    let current = |ctx: &Ctx| {
        let c = ctx.borrow();
        let node = c.router.remote.node(n);
        node.alive && node.slots[s].generation == generation
    };
    let mut failures = 0u32;
    while current(&ctx) {
        let connected = within(setup.handshake_timeout, "link connect", async {
            let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            tune(&stream);
            let session = handshake_client(&mut stream, &setup, &name).await?;
            Ok((stream, session))
        })
        .await;
        let (stream, session) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                ctx.borrow_mut().router.remote.counters.connect_failures += 1;
                if failures.is_multiple_of(50) {
                    tracing::warn!(node = %name, error = %e, "cannot open a link; retrying while the node is alive");
                }
                failures += 1;
                glommio::timer::sleep(Duration::from_millis(LINK_RECONNECT_DELAY_MS)).await;
                continue;
            }
        };
        failures = 0;
        if !current(&ctx) {
            break; // the node went down (and maybe up) while we connected
        }
        // A descriptor of our own for the socket, so that the writer can
        // end the ack reader's half whatever became of the stream.
        // SAFETY: `stream` owns this descriptor and is alive for the borrow.
        let control = match unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "cannot duplicate a link socket; reconnecting");
                glommio::timer::sleep(Duration::from_millis(LINK_RECONNECT_DELAY_MS)).await;
                continue;
            }
        };
        let connection = {
            let mut c = ctx.borrow_mut();
            c.router.remote.counters.connects += 1;
            c.router.remote.connected(n, s)
        };
        let (acks, writer) = futures_lite::io::split(stream);
        let Session { sealer, opener, .. } = session;
        glommio::spawn_local(read_acks(ctx.clone(), n, s, generation, connection, acks, opener)).detach();
        let end = write_batches(&ctx, n, s, generation, writer, sealer, setup.idle_timeout).await;
        // Ends the ack reader too (shutdown acts on the socket, not the fd).
        let _ = SockRef::from(&control).shutdown(std::net::Shutdown::Both);
        drop(control);
        match end {
            WriterEnd::Gone => return,
            WriterEnd::Idle => {
                let mut c = ctx.borrow_mut();
                let slot = &mut c.router.remote.node_mut(n).slots[s];
                if slot.queue.is_empty() {
                    slot.state = SlotState::Closed;
                    return;
                }
                slot.state = SlotState::Connecting; // mail came as it closed
            }
            WriterEnd::Failed(error) => {
                requeue_after_failure(&ctx, n, s, &name, &error);
                glommio::timer::sleep(Duration::from_millis(LINK_RECONNECT_DELAY_MS)).await;
            }
        }
    }
    let mut c = ctx.borrow_mut();
    let slot = &mut c.router.remote.node_mut(n).slots[s];
    if slot.generation == generation {
        slot.state = SlotState::Closed;
    }
}

/// A connection failed: what it wrote but was not acknowledged goes again
/// on the next one, unless it has been tried [`LINK_SEND_ATTEMPTS_MAX`]
/// times (dead-lettered as `link_lost`).
fn requeue_after_failure(ctx: &Ctx, n: NodeIdx, s: usize, name: &str, error: &str) {
    let mut c = ctx.borrow_mut();
    let again = c.router.remote.node(n).slots[s].unacked.len();
    let lost = c.router.remote.requeue_unacked(n, s, LINK_SEND_ATTEMPTS_MAX);
    assert!(lost.len() <= again, "only unacknowledged messages can be lost");
    assert!(c.router.remote.node(n).slots[s].unacked.is_empty(), "every unacknowledged message is requeued or dead");
    for m in &lost {
        c.router.dead_letter(DeadLetter::LinkLost, m);
    }
    c.router.remote.counters.resent += (again - lost.len()) as u64;
    c.router.remote.node_mut(n).slots[s].state = SlotState::Connecting;
    tracing::warn!(node = %name, error, resent = again - lost.len(), lost = lost.len(), "link connection failed; reconnecting, unacknowledged messages go again");
}

/// Reads the receiver's acknowledgements of `connection` (frame rule 4),
/// in records (rule 7). One the table refuses (table rule 4), or a record
/// that does not open, closes the connection, counted.
async fn read_acks(ctx: Ctx, n: NodeIdx, s: usize, generation: u64, connection: u64, mut acks: futures_lite::io::ReadHalf<TcpStream>, mut opener: Opener) {
    let mut chunk = [0u8; 256];
    let (mut sealed, mut plain) = (Vec::with_capacity(512), Vec::with_capacity(64));
    loop {
        let read = match acks.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(read) => Some(read),
        };
        let mut c = ctx.borrow_mut();
        let remote = &mut c.router.remote;
        let Some(read) = read else {
            remote.broke(n, s, generation, connection);
            return;
        };
        sealed.extend_from_slice(&chunk[..read]);
        if let Err(e) = opener.open(&mut sealed, &mut plain) {
            remote.counters.closed_tampered += 1;
            let node = remote.node(n).name.clone();
            remote.broke(n, s, generation, connection);
            tracing::warn!(%node, error = %e, "a link acknowledgement did not open: closing this connection");
            return;
        }
        let whole = plain.len() / ACK_BYTES * ACK_BYTES;
        for total in plain[..whole].chunks_exact(ACK_BYTES) {
            if let Err(e) = remote.acknowledged(n, s, generation, connection, u64::from_le_bytes(total.try_into().unwrap())) {
                remote.counters.closed_bad_ack += 1;
                let node = remote.node(n).name.clone();
                remote.broke(n, s, generation, connection);
                tracing::warn!(%node, error = %e, "a link peer broke the acknowledgement protocol: closing this connection");
                return;
            }
        }
        plain.drain(..whole);
    }
}

async fn write_batches(
    ctx: &Ctx,
    n: NodeIdx,
    s: usize,
    generation: u64,
    mut stream: futures_lite::io::WriteHalf<TcpStream>,
    mut sealer: Sealer,
    idle_after: Duration,
) -> WriterEnd {
    let mut buf = Vec::with_capacity(LINK_WRITE_BATCH_BYTES_MAX);
    let mut sealed = Vec::with_capacity(sealer.sealed_len(LINK_WRITE_BATCH_BYTES_MAX));
    let mut idle_timer = glommio::timer::Timer::new(idle_after);
    loop {
        let work = poll_fn(|cx| {
            let mut c = ctx.borrow_mut();
            let remote = &mut c.router.remote;
            let slot = &mut remote.node_mut(n).slots[s];
            if slot.generation != generation {
                return Poll::Ready(Some(WriterEnd::Gone));
            }
            if slot.broken {
                return Poll::Ready(Some(WriterEnd::Failed("the connection was closed".into())));
            }
            if !slot.queue.is_empty() {
                let moved = remote.hand_over(n, s); // table rule 4: unacked before written
                let slot = &remote.node(n).slots[s];
                assert!(moved > 0 && slot.queue.is_empty() && slot.unacked.len() >= moved, "table rule 4: all handed over");
                return Poll::Ready(None);
            }
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        });
        idle_timer.reset(idle_after);
        let idle = async {
            (&mut idle_timer).await;
            Some(WriterEnd::Idle)
        };
        match futures_lite::future::or(work, idle).await {
            Some(WriterEnd::Idle) if !ctx.borrow().router.remote.node(n).slots[s].unacked.is_empty() => continue, // acks still due
            Some(end) => return end,
            None => {}
        }
        // Write what was handed over, a bounded chunk at a time. The slot
        // may be failed or gone between chunks: then stop.
        loop {
            let frames = {
                let mut c = ctx.borrow_mut();
                let remote = &mut c.router.remote;
                let slot = &remote.node(n).slots[s];
                if slot.generation != generation {
                    return WriterEnd::Gone;
                }
                if slot.broken {
                    return WriterEnd::Failed("the connection was closed".into());
                }
                buf.clear();
                let frames = remote.next_frames(n, s, &mut buf, LINK_WRITE_BATCH_BYTES_MAX);
                // A batch is bounded, unless its one frame is larger.
                assert!(frames <= 1 || buf.len() <= LINK_WRITE_BATCH_BYTES_MAX, "batch over its bound");
                assert_eq!(frames == 0, buf.is_empty());
                frames
            };
            if frames == 0 {
                assert!(ctx.borrow().router.remote.all_written(n, s), "nothing handed is left unwritten");
                break;
            }
            sealed.clear();
            sealer.seal(&buf, &mut sealed);
            debug_assert_eq!(sealed.len(), sealer.sealed_len(buf.len()));
            if let Err(e) = stream.write_all(&sealed).await {
                return WriterEnd::Failed(e.to_string());
            }
            let mut c = ctx.borrow_mut();
            c.router.remote.counters.frames_out += frames as u64;
            c.router.remote.counters.bytes_out += sealed.len() as u64;
        }
        if buf.capacity() > 4 * LINK_WRITE_BATCH_BYTES_MAX {
            buf = Vec::with_capacity(LINK_WRITE_BATCH_BYTES_MAX); // a 1 MiB frame grew it
            sealed = Vec::with_capacity(sealer.sealed_len(LINK_WRITE_BATCH_BYTES_MAX));
        }
    }
}
