//! A shard's link settings, and what its link tasks share: socket tuning
//! (link rule 1), deadlines, and reading handshake messages.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use caxton_cluster::session::Mode;
use caxton_cluster::KeyRing;
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use socket2::{SockRef, TcpKeepalive};

use crate::limits::{
    LINK_FIRST_BYTES_TIMEOUT_MS, LINK_HANDSHAKE_TIMEOUT_MS, LINK_IDLE_TIMEOUT_MS, LINK_KEEPALIVE_IDLE_S, LINK_KEEPALIVE_INTERVAL_S,
    LINK_PENDING_HANDSHAKES_MAX, LINK_PENDING_PER_SOURCE_MAX, LINK_PENDING_RESERVED_PERMILLE, LINK_SOCKET_BUFFER_BYTES, NODE_LINK_CONNECTIONS_MAX,
    NODE_POOL_CONNECTIONS_MAX,
};
use crate::pending::PendingLimits;

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
    /// from the authenticated ones, shared per source (link rule 6): its
    /// share of `max_pending_handshakes` (default
    /// [`LINK_PENDING_HANDSHAKES_MAX`]), at most
    /// [`LINK_PENDING_PER_SOURCE_MAX`] from one address that is not a
    /// member's, and [`LINK_PENDING_RESERVED_PERMILLE`] of them kept for
    /// members.
    pub pending: PendingLimits,
    /// How long a new inbound connection may stay silent. Default
    /// [`LINK_FIRST_BYTES_TIMEOUT_MS`].
    pub first_bytes_timeout: Duration,
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
            pending: pending_share(settings.pending_handshakes, shards),
            first_bytes_timeout: Duration::from_millis(LINK_FIRST_BYTES_TIMEOUT_MS),
        }
    }

    /// The defaults (ADR-0017's connection limits).
    pub fn with_defaults(listen: SocketAddr, keys: KeyRing, shards: usize) -> LinkSetup {
        LinkSetup::for_shard(listen, keys, shards, LinkSettings::default())
    }
}

/// One shard's share of the node's pending handshakes (link rule 6).
fn pending_share(node_wide: usize, shards: usize) -> PendingLimits {
    let max = (node_wide / shards).max(2);
    let reserved = (max as u64 * LINK_PENDING_RESERVED_PERMILLE / 1000) as usize;
    PendingLimits { max, per_source_max: LINK_PENDING_PER_SOURCE_MAX.min(max), reserved: reserved.min(max - 1) }
}

/// Tunes a link socket (link rule 1).
pub(super) fn tune(stream: &TcpStream) {
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
pub(super) async fn within<T>(limit: Duration, what: &'static str, f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    futures_lite::future::or(f, async move {
        glommio::timer::sleep(limit).await;
        Err(format!("{what} timed out after {} ms", limit.as_millis()))
    })
    .await
}

pub(super) async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), String> {
    stream.read_exact(buf).await.map_err(|e| e.to_string())
}

/// Reads a `u16` length and that many bytes, at most `max`.
pub(super) async fn read_framed(stream: &mut TcpStream, max: usize) -> Result<Vec<u8>, String> {
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
