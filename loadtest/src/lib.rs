//! The load test: ADR-0017's four scenarios, and contract-net rounds as a
//! fifth, against a real `caxton serve`,
//! open loop, with coordinated-omission-free latency, loss and duplicate
//! counts, memory growth, burst recovery, and plots.

pub mod contract_net;
pub mod doc;
pub mod host_load;
pub mod node;
pub mod report;
pub mod run;
pub mod scenario;
pub mod workload;

/// The wire client (`caxton-testkit`'s, shared with the tests).
pub use caxton_testkit::wire;
