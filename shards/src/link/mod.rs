//! Links: how a shard talks to the shards of other nodes, over glommio's
//! io_uring TCP sockets.
//!
//! - [`table`]: what a shard knows of other nodes (alive, the names they
//!   host, queued messages), pure data the router uses;
//! - [`frame`]: handshake, frames, and runtime names across nodes;
//! - [`io`]: the glommio tasks (acceptor, readers, connector-writers).
//!
//! Every shard listens on the node's cluster address (SO_REUSEPORT spreads
//! inbound connections) and opens its own connections to other nodes: a
//! message goes from the sending shard straight to a socket, and from the
//! receiving socket to its instance's shard through the mesh, never through
//! a node-wide thread.

pub mod frame;
pub mod io;
pub mod table;

pub use io::LinkSetup;
pub use table::{NodeIdx, RemoteTable};
