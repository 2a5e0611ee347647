//! Settings of the property-based fuzz tests kept beside every decoder of
//! outside bytes (the envelope, wire and link frames, gossip packets and
//! registry items, the config file and REST bodies), shared by the crates.
//!
//! `make test` runs each with a fixed seed and a short budget, so a failure
//! reproduces; `make fuzz` runs them long (`CAXTON_FUZZ_CASES`) from a fresh
//! seed (`CAXTON_FUZZ_SEED=random`, or a number to replay one).

use proptest::test_runner::{Config, RngSeed};

/// The seed of `make test`'s runs.
pub const FIXED_SEED: u64 = 0xca47_0000_0000_0018;

/// A test's settings: `cases` unless `CAXTON_FUZZ_CASES` says otherwise.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("CAXTON_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(cases);
    let rng_seed = match std::env::var("CAXTON_FUZZ_SEED").as_deref() {
        Ok("random") => RngSeed::Random,
        Ok(n) => RngSeed::Fixed(n.parse().unwrap_or(FIXED_SEED)),
        Err(_) => RngSeed::Fixed(FIXED_SEED),
    };
    Config { cases, rng_seed, failure_persistence: None, ..Config::default() }
}
