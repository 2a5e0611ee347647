//! Real caxton nodes for tests, benchmarks and the load test, in one place:
//! - [`node`]: a `caxton serve` process on free loopback ports, its REST
//!   API, its logs, and its lifecycle (`kill -9`, restart, SIGTERM);
//! - [`wire`]: a blocking client of the wire listener;
//! - [`http_server`]: a real HTTP server on loopback that records what it
//!   is asked (the tool tests' good and hostile HTTP tools);
//! - [`contract_net`]: who should win a round of the example bidders.

pub mod child;
pub mod contract_net;
pub mod http_server;
pub mod node;
pub mod tls;
pub mod wire;

pub use child::ChildGuard;
pub use node::{answer, answer_or_gone, baseline_binary, binary, eventually, example_agent, free_cluster_port, promtool_check, repo_path, with_nonce, Node};
