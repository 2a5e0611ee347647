//! The caxton node: what `caxton serve` runs beside its shards, and the
//! CLI's client. The shards themselves are `caxton_shards`; the cluster's
//! core (membership, registry, view) is `caxton_cluster`; the agent ABI is
//! `caxton_abi`.
//!
//! Modules, one concept each, in the order they depend on one another
//! (each uses only those above it):
//! - [`admission`]: ADR-0017's memory formula and the deploy decision;
//! - [`catalog`]: node.db: deployed agents, the route cache;
//! - [`logging`]: the node's log format, and a panic's one record;
//! - [`secret`]: tokens, compared in constant time;
//! - [`tls`]: the API's TLS (certificates, keys, the CLI's CA);
//! - [`otlp`]: trace export (the shards' spans over OTLP);
//! - [`config`]: `caxton serve`'s flags and TOML file, resolved;
//! - [`gossip`]: the gossip pump (membership over UDP);
//! - [`control`]: the control plane: lifecycle, messages, shard commands;
//! - [`api`]: the REST API (HTTP over the control plane);
//! - [`wire`]: the binary data plane (`--wire`);
//! - [`node`]: `caxton serve`, wiring all of the above;
//! - [`client`], [`top`], [`template`], [`backup`]: the CLI's side
//!   (`template`: `caxton agent new`; `backup`: `caxton backup`).

pub mod admission;
pub mod api;
pub mod backup;
pub mod catalog;
pub mod client;
pub mod config;
pub mod control;
pub mod gossip;
pub mod logging;
pub mod module_cache;
pub mod node;
pub mod otlp;
pub mod sd_notify;
pub mod secret;
pub mod template;
pub mod tls;
pub mod tools;
pub mod top;
pub mod wire;
