//! The cluster's core, without I/O: SWIM membership (the `foca` crate), the
//! agent registry it disseminates, the keys that encrypt and authenticate
//! every packet and link ([`keyring`], [`session`]), and a seeded simulator
//! that replays a whole cluster in one thread.
//!
//! Design: foca is a sans-IO state machine (packets and timer events in;
//! packets, timers and notifications out). [`membership::Membership`] wraps it
//! with what caxton adds: every packet encrypted and authenticated
//! ([`keyring`]) with a header that makes it useless to replay or redirect
//! ([`freshness`]), key rotation driven by what members report, the
//! registry as foca's custom broadcasts ([`registry`]), and counters;
//! [`view`] keeps what a node knows of its cluster from what it produces. The
//! node drives it over glommio UDP (`src/gossip.rs`); the benchmark drives it
//! with virtual time ([`sim`]). Both see the same code.

pub mod freshness;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod identity;
pub mod keyring;
pub mod membership;
pub mod registry;
pub mod session;
pub mod sim;
pub mod view;

pub use identity::NodeId;
pub use keyring::KeyRing;
pub use membership::{GossipSettings, Membership, PacketError};
pub use registry::{Registry, RouteItem};
