//! What every integration test file shares: the harness of `caxton-testkit`
//! (a real `caxton serve` process per node), and the binary under test.
#![allow(dead_code, unused_imports)]

pub use caxton_testkit::wire;
pub use caxton_testkit::{answer, answer_or_gone, eventually, example_agent, free_cluster_port, promtool_check, repo_path, Node};

/// The `caxton` binary these tests run (the same one `Node` starts).
pub const BIN: &str = env!("CARGO_BIN_EXE_caxton");
