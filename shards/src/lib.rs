//! Everything that lives on one core of a caxton node.
//!
//! A node runs one shard per core. A shard owns its agents (WebAssembly
//! instances, each with its own store), their mailboxes and run queue, and its
//! own SQLite database. Shards share nothing: the only way between them is a
//! bounded lock-free channel per ordered pair of shards ([`mesh`]), and the
//! only way in from the node is a bounded control channel ([`command`]).
//!
//! Modules, one concept each:
//! - [`limits`]: every limit, with its default, cost and what happens past it;
//! - [`envelope`]: messages, owned and validated (the format is `caxton_abi`'s);
//! - [`buffer_pool`]: message buffers reused on the thread that drops them;
//! - [`names`]: the runtime's own names (`@api/…`, `@wire/…`, `@node/…`);
//! - [`placement`]: which shard hosts which instance or key (a stable hash);
//! - [`restart_policy`]: what an agent's crashes lead to, chosen at deploy;
//! - [`agent`]: the wasmer engine, an instance's lifecycle, the host functions;
//! - [`router`]: directory, mailboxes, run queue and the tick's outbox;
//! - [`runtime_outbox`]: messages to REST callers and wire clients, bounded
//!   in bytes node-wide;
//! - [`pending`]: places for connections not yet authenticated, shared out
//!   per source;
//! - [`throttle`]: warnings caused by remote input, one a second;
//! - [`storage`]: the shard's SQLite and the off-shard checkpointer;
//! - [`timers`]: durable timers, an instance's messages to itself later;
//! - [`tools`]: which agent may call which tool, and a call's admission;
//! - [`context`]: the shard's state (router, store, timers) that host
//!   functions and link tasks reach, so above those three;
//! - [`trace`]: spans of sampled messages, queued for the node's exporter;
//! - [`mesh`]: shard-to-shard channels and doorbells;
//! - [`link`]: shard-to-node TCP links (glommio io_uring sockets);
//! - [`shard`]: the run loop; [`executor`]: starting pinned shards;
//! - [`stages`]: where a message's time goes (off unless a benchmark asks).

pub mod agent;
pub mod buffer_pool;
pub mod clock;
pub mod command;
pub mod context;
pub mod envelope;
pub mod executor;
pub mod limits;
pub mod link;
pub mod mesh;
pub mod metrics;
pub mod names;
pub mod pending;
pub mod placement;
pub mod restart_policy;
pub mod router;
pub mod runtime_outbox;
pub mod shard;
pub mod stages;
pub mod storage;
pub mod throttle;
pub mod timers;
pub mod tools;
pub mod trace;

pub use command::{Command, InstanceFigures, InstanceReport, InstanceStats, ShardStats};
pub use envelope::{Header, Message};
pub use executor::{ShardHandle, ShardSender, ShardsConfig};
