//! The load test: ADR-0017's four scenarios against a real `caxton serve`,
//! open loop, with coordinated-omission-free latency, loss and duplicate
//! counts, memory growth, burst recovery, and plots.

pub mod node;
pub mod report;
pub mod run;
pub mod scenario;

/// The wire client (`caxton-testkit`'s, shared with the tests).
pub use caxton_testkit::wire;
