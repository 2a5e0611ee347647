//! An outbound slot's connection (link rules 2, 3 and 5): connect and the
//! client side of the handshake, then write the slot's batches while a
//! second task reads the receiver's acknowledgements; a failure sends the
//! unacknowledged again on the next connection.

use std::future::poll_fn;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use caxton_cluster::session::{self, Opener, Sealer, Session, HANDSHAKE_MESSAGE_BYTES_MAX};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use socket2::SockRef;

use super::frame::ACK_BYTES;
use super::setup::{read_framed, tune, within, LinkSetup};
use super::table::{NodeIdx, SlotState};
use super::Ctx;
use crate::limits::{LINK_RECONNECT_DELAY_MS, LINK_SEND_ATTEMPTS_MAX, LINK_WRITE_BATCH_BYTES_MAX};

/// Client side of the handshake (session rules 1 to 3).
async fn handshake_client(stream: &mut TcpStream, setup: &LinkSetup, expect: &str) -> Result<Session, String> {
    let (pending, hello) = session::client_hello(&setup.keys, setup.mode);
    stream.write_all(&hello).await.map_err(|e| e.to_string())?;
    let answer = read_framed(stream, HANDSHAKE_MESSAGE_BYTES_MAX).await?;
    let (session, confirm) = pending.finish(&answer, expect, &setup.self_name).map_err(|e| e.to_string())?;
    stream.write_all(&confirm).await.map_err(|e| e.to_string())?;
    Ok(session)
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
                {
                    let mut c = ctx.borrow_mut();
                    c.router.remote.counters.connect_failures += 1;
                    // One line an interval for the peer, whatever its slots do.
                    if let Some(suppressed) = c.router.remote.node_mut(n).failure_log.allow() {
                        tracing::warn!(node = %name, error = %e, failures_in_a_row = failures + 1, suppressed, "cannot open a link; retrying while the node is alive");
                    }
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
    let lost_count = lost.len();
    assert!(lost_count <= again, "only unacknowledged messages can be lost");
    assert!(c.router.remote.node(n).slots[s].unacked.is_empty(), "every unacknowledged message is requeued or given up");
    c.router.remote.give_up(lost); // the shard dead-letters them (`link_lost`)
    c.router.remote.counters.resent += (again - lost_count) as u64;
    let node = c.router.remote.node_mut(n);
    node.slots[s].state = SlotState::Connecting;
    // Every failure counts (`caxton_link_connect_failures_total`); one line
    // an interval per peer, with how many it stands for.
    if let Some(suppressed) = node.failure_log.allow() {
        tracing::warn!(node = %name, error, resent = again - lost_count, lost = lost_count, suppressed, "link connection failed; reconnecting, unacknowledged messages go again");
    }
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
