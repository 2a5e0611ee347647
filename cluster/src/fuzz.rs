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

/// `bytes` as a stream's reads: successive pieces cut at the lengths in
/// `cuts`, taken in turn and again from the start, the last piece short.
/// The generator of every "any stream, cut anywhere" test of a decoder.
pub fn reads<'a>(bytes: &'a [u8], cuts: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    assert!(!cuts.is_empty() && cuts.iter().all(|&c| c > 0), "every read takes a byte");
    let mut at = 0;
    cuts.iter().cycle().map_while(move |&cut| {
        let end = (at + cut).min(bytes.len());
        let read = (at < bytes.len()).then(|| &bytes[at..end]);
        at = end;
        read
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_cover_the_bytes_in_order_at_the_cuts() {
        let bytes: Vec<u8> = (0..10).collect();
        let reads: Vec<&[u8]> = super::reads(&bytes, &[3, 1]).collect();
        assert_eq!(reads, [&[0, 1, 2][..], &[3], &[4, 5, 6], &[7], &[8, 9]]);
        assert_eq!(super::reads(&[], &[5]).count(), 0);
    }
}
