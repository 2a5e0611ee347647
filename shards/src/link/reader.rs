//! An inbound link's reader: frames in records (link rule 7), into the
//! shard's link inbox within its bounds (link rule 4), and the running
//! count of frames taken written back as acknowledgements (frame rule 4).

use std::future::poll_fn;
use std::task::Poll;

use caxton_cluster::session::{Session, RECORD_TAG_BYTES};
use caxton_cluster::KeyRing;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::frame::{take_frames, ACK_BYTES};
use super::Ctx;
use crate::envelope::RoutePath;
use crate::limits::LINK_READ_CHUNK_BYTES;
use crate::mesh::Doorbell;
use crate::names::rewrite_on_arrival;

/// Reads frames from an authenticated connection until it ends (link
/// rules 4 and 7), acknowledging what the shard took.
pub(super) async fn read_frames(ctx: &Ctx, bell: &Doorbell, stream: &mut TcpStream, from: &str, session: Session, keys: &KeyRing) {
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
