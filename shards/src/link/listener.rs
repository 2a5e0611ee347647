//! Inbound links: this shard's acceptor, the pool of connections still in
//! their handshake (link rule 6), and the server side of the handshake
//! (session rules 1 to 3). An authenticated connection goes on to its
//! reader.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use caxton_cluster::session::{self, Session, SessionError, HANDSHAKE_MESSAGE_BYTES_MAX, HELLO_HEAD_BYTES};
use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};

use super::reader::read_frames;
use super::setup::{read_exact, read_framed, tune, within, LinkSetup};
use super::Ctx;
use crate::limits::LINK_RECONNECT_DELAY_MS;
use crate::mesh::Doorbell;
use crate::pending::NoPlace;

/// Why a handshake failed when the peer's proof did not verify.
const BAD_KEY: &str = "bad_key";

/// Server side of the handshake (session rules 1 to 3). Returns the
/// session and the client's name.
async fn handshake_server(stream: &mut TcpStream, setup: &LinkSetup) -> Result<(Session, String), String> {
    let refused = |e: SessionError| match e {
        SessionError::BadKey | SessionError::Tampered => BAD_KEY.to_string(),
        other => other.to_string(),
    };
    // Link rule 6: a connection that stays silent frees its place fast.
    let mut head = [0u8; HELLO_HEAD_BYTES];
    within(setup.first_bytes_timeout, "a link's first bytes", read_exact(stream, &mut head)).await?;
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

/// Is `source` the address of a node gossip knows as a member (link rule
/// 6)? Members may use the places kept for them.
fn is_member(ctx: &Ctx, source: IpAddr) -> bool {
    ctx.borrow().router.remote.nodes().any(|(_, node)| node.addr.ip() == source)
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
            // Rule 6: a connection that has not proved the key waits in a
            // bounded handshake pool, shared per source, apart from the
            // authenticated ones, so that it can never take their places.
            let Ok(peer) = stream.peer_addr() else { continue };
            let member = is_member(&ctx, peer.ip());
            {
                let mut c = ctx.borrow_mut();
                let remote = &mut c.router.remote;
                if let Err(refusal) = remote.pending.take(peer.ip(), member) {
                    match refusal {
                        NoPlace::Full => remote.counters.refused_pending += 1,
                        NoPlace::PerSource => remote.counters.refused_pending_per_source += 1,
                    }
                    if let Some(suppressed) = remote.refusal_log.allow() {
                        tracing::warn!(%peer, reason = refusal.label(), suppressed, "link refused before its handshake: no pending place for it");
                    }
                    continue; // dropping `stream` closes it
                }
                remote.counters.pending_handshakes = remote.pending.held();
            }
            glommio::spawn_local(serve_inbound(ctx.clone(), setup.clone(), bell.clone(), stream, peer.ip(), member)).detach();
        }
    })
    .detach();
    Ok(())
}

async fn serve_inbound(ctx: Ctx, setup: Rc<LinkSetup>, bell: Arc<Doorbell>, mut stream: TcpStream, source: IpAddr, member: bool) {
    tune(&stream);
    let peer = stream.peer_addr().ok();
    let shaken = within(setup.handshake_timeout, "link handshake", handshake_server(&mut stream, &setup)).await;
    let (session, from) = {
        let mut c = ctx.borrow_mut();
        let shard = c.router.shard();
        let remote = &mut c.router.remote;
        remote.pending.give_back(source, member);
        remote.counters.pending_handshakes = remote.pending.held();
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
