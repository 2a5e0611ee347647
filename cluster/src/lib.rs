//! The cluster's core, without I/O: SWIM membership (the `foca` crate), the
//! agent registry it disseminates, the authentication of every packet and
//! handshake, and a seeded simulator that replays a whole cluster in one
//! thread.
//!
//! Design: foca is a sans-IO state machine (packets and timer events in;
//! packets, timers and notifications out). [`membership::Membership`] wraps it
//! with what caxton adds: an HMAC tag on every packet ([`auth`]) over a
//! header that makes it useless to replay or redirect ([`freshness`]), the
//! registry as foca's custom broadcasts ([`registry`]), and counters;
//! [`view`] keeps what a node knows of its cluster from what it produces. The
//! node drives it over glommio UDP (`src/gossip.rs`); the benchmark drives it
//! with virtual time ([`sim`]). Both see the same code.

pub mod auth;
pub mod freshness;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod identity;
pub mod membership;
pub mod registry;
pub mod sim;
pub mod view;

pub use auth::ClusterKey;
pub use identity::NodeId;
pub use membership::{GossipSettings, Membership, PacketError};
pub use registry::{Registry, RouteItem};
