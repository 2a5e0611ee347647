//! Links: how a shard talks to the shards of other nodes, over glommio's
//! io_uring TCP sockets.
//!
//! - [`table`]: what a shard knows of other nodes (alive, queued messages,
//!   connection slots and their acknowledgements), pure data the router
//!   uses;
//! - [`frame`]: frames, and runtime names across nodes;
//! - [`setup`]: a shard's link settings and socket helpers;
//! - [`listener`]: inbound connections: accept, the pending pool, the
//!   server side of the handshake;
//! - [`reader`]: an inbound connection's frames, and the acknowledgements
//!   it writes back;
//! - [`writer`]: an outbound slot's connection: connect, the client side of
//!   the handshake, writing frames and reading acknowledgements.
//!
//! Every shard listens on the node's cluster address (SO_REUSEPORT spreads
//! inbound connections) and opens its own connections to other nodes: a
//! message goes from the sending shard straight to a socket, and from the
//! receiving socket to its instance's shard through the mesh, never through
//! a node-wide thread. The link tasks run on the shard's glommio executor
//! and touch shard state only between ticks (one thread, no `await` inside a
//! tick), through the shard's context; they reach the router's table only,
//! never the router itself (what they give up, the shard dead-letters).
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
//!    pool of pending handshakes (`crate::pending`: per source, with a
//!    share kept for the addresses gossip knows as members), its first
//!    bytes due within [`LINK_FIRST_BYTES_TIMEOUT_MS`] and its whole
//!    handshake within `handshake_timeout`; only an authenticated peer
//!    takes one of the inbound places. Connections past either bound are
//!    closed at once and counted. Warnings about refusals are throttled
//!    (one a second).
//! 7. Every byte after the handshake travels in records of the session
//!    (`caxton_cluster::session`): frames and acknowledgements are sealed by
//!    the task that writes them and opened by the task that reads them, on
//!    this shard. A record that does not open closes its connection,
//!    counted (`closed_tampered`); what it carried unacknowledged goes
//!    again on the next connection. An inbound link whose key is no longer
//!    held (rotation) is closed at its next read, counted
//!    (`closed_retired_key`), and the same holds for what it carried.
//!
//! Steady state allocates nothing but the batch buffer's growth: the
//! writer swaps its queue with the slot's and re-arms one idle timer.
//!
//! [`LINK_SOCKET_BUFFER_BYTES`]: crate::limits::LINK_SOCKET_BUFFER_BYTES
//! [`LINK_WRITE_BATCH_BYTES_MAX`]: crate::limits::LINK_WRITE_BATCH_BYTES_MAX
//! [`LINK_RECONNECT_DELAY_MS`]: crate::limits::LINK_RECONNECT_DELAY_MS
//! [`LINK_FIRST_BYTES_TIMEOUT_MS`]: crate::limits::LINK_FIRST_BYTES_TIMEOUT_MS

pub mod frame;
pub mod listener;
pub mod reader;
pub mod setup;
pub mod table;
pub mod writer;

pub use setup::{LinkSettings, LinkSetup};
pub use table::{NodeIdx, RemoteTable};

type Ctx = std::rc::Rc<std::cell::RefCell<crate::context::ShardCtx>>;
