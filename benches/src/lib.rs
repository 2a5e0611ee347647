//! Shared pieces of the benchmarks: latency summaries and the result table.
//! Every figure is printed beside a baseline measured in the same run.

pub mod actix_peers;
pub mod agents;
pub mod baselines;
pub mod cluster;
pub mod host_prices;
pub mod keyed;
pub mod lifecycle;
pub mod node;
pub mod report;
pub mod routing;
pub mod scale;
pub mod shared_cores;
pub mod stages;
pub mod storage;
pub mod tools;

use hdrhistogram::Histogram;

/// A latency histogram in nanoseconds, 1 ns to 10 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds")
}

/// p50, p99, p99.9 and max of a histogram, in microseconds.
pub fn summary_us(h: &Histogram<u64>) -> [f64; 4] {
    [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.value_at_quantile(0.999), h.max()].map(|ns| ns as f64 / 1e3)
}

/// The median of several runs' figures.
pub fn median(mut xs: Vec<f64>) -> f64 {
    assert!(!xs.is_empty());
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// Small mode: `CAXTON_BENCH_SMALL=1` (used by `make test`) shrinks every
/// benchmark so that it only checks that it still runs.
pub fn small() -> bool {
    std::env::var_os("CAXTON_BENCH_SMALL").is_some()
}
