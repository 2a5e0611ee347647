//! A shard's own measurements: HDR histograms and counters, recorded with no
//! locks and no shared atomics (each shard owns its copy); the node merges
//! snapshots when asked.
//!
//! Rules:
//! 1. Recording allocates nothing: histograms are sized once, up front.
//! 2. Latencies are nanoseconds from 1 ns to 60 s at
//!    [`LATENCY_SIGNIFICANT_DIGITS`] significant digits; larger values
//!    saturate at the top bucket.
//! 3. Once per window, a shard whose windowed routing or processing p99
//!    exceeds its ADR-0017 target logs one warning naming both figures.

use hdrhistogram::Histogram;

/// ADR-0017 `local_routing_p99`: 1 ms.
pub const ROUTING_P99_TARGET_NS: u64 = 1_000_000;
/// ADR-0017 `message_processing_p99`: 10 ms.
pub const PROCESSING_P99_TARGET_NS: u64 = 10_000_000;
/// Length of a p99 alert window, in milliseconds.
pub use crate::limits::ALERT_WINDOW_MS;

use crate::limits::LATENCY_NS_MAX;

/// Precision of every latency histogram: 2 significant digits, a value is
/// known within 1%. Each histogram costs about 28 KiB (3 digits: about
/// 220 KiB, and a shard records five per message: the larger ones did not
/// stay in cache, and recording cost 6% of a message's time).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;

/// A latency histogram with its exact sum (a Prometheus summary needs both).
#[derive(Clone, Debug)]
pub struct Latency {
    pub histogram: Histogram<u64>,
    pub sum_ns: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency { histogram: Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS).expect("valid bounds"), sum_ns: 0 }
    }
}

impl Latency {
    pub fn record(&mut self, ns: u64) {
        self.histogram.saturating_record(ns.max(1));
        self.sum_ns = self.sum_ns.wrapping_add(ns);
    }

    pub fn merge(&mut self, other: &Latency) {
        self.histogram.add(&other.histogram).expect("same bounds");
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.histogram.is_empty() {
            0
        } else {
            self.histogram.value_at_quantile(q)
        }
    }

    /// What was recorded since `earlier`, a snapshot of this same latency.
    pub fn since(&self, earlier: &Latency) -> Latency {
        let mut histogram = self.histogram.clone();
        histogram.subtract(&earlier.histogram).expect("an earlier snapshot of the same histogram");
        Latency { histogram, sum_ns: self.sum_ns.wrapping_sub(earlier.sum_ns) }
    }

    pub fn reset(&mut self) {
        self.histogram.reset();
        self.sum_ns = 0;
    }
}

/// One instance's processing latency, small enough to keep for 10,000
/// instances (484 bytes): log-linear buckets, four per power of two from
/// 128 ns to 2^37 ns (about 137 s), so a quantile is known within 25%
/// (reported as its bucket's upper bound). For `caxton top`'s per-agent
/// view; the shard-wide HDR histograms above are the precise ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactLatency {
    counts: [u32; COMPACT_BUCKETS],
}

/// Buckets of a [`CompactLatency`]: one below 128 ns, then 4 per octave.
pub const COMPACT_BUCKETS: usize = 121;
const COMPACT_FIRST_OCTAVE: u32 = 7;

impl Default for CompactLatency {
    fn default() -> Self {
        CompactLatency { counts: [0; COMPACT_BUCKETS] }
    }
}

impl CompactLatency {
    fn bucket(ns: u64) -> usize {
        if ns < 1 << COMPACT_FIRST_OCTAVE {
            return 0;
        }
        let octave = 63 - ns.leading_zeros();
        let sub = (ns >> (octave - 2)) & 3;
        (1 + (octave - COMPACT_FIRST_OCTAVE) as usize * 4 + sub as usize).min(COMPACT_BUCKETS - 1)
    }

    /// The largest value bucket `i` holds.
    fn upper_ns(i: usize) -> u64 {
        if i == 0 {
            return (1 << COMPACT_FIRST_OCTAVE) - 1;
        }
        let octave = COMPACT_FIRST_OCTAVE + (i as u32 - 1) / 4;
        let sub = (i as u64 - 1) % 4;
        (1u64 << octave) + ((sub + 1) << (octave - 2)) - 1
    }

    /// Records one value; no allocation, counts saturate.
    pub fn record(&mut self, ns: u64) {
        let b = &mut self.counts[Self::bucket(ns)];
        *b = b.saturating_add(1);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&c| c as u64).sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0 when empty).
    pub fn quantile_ns(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c as u64;
            if seen >= rank {
                return Self::upper_ns(i);
            }
        }
        unreachable!("the last bucket reaches the total")
    }
}

/// Everything a shard measures about its messages.
#[derive(Clone, Debug, Default)]
pub struct ShardLatencies {
    /// From `send` to the start of the receiving handler, same shard.
    pub routing_local: Latency,
    /// The same across shards.
    pub routing_remote: Latency,
    /// From arrival over a link (another node) to the start of the handler.
    /// (The hop itself is measured by the remote routing benchmark: two
    /// nodes share no clock.)
    pub routing_node: Latency,
    /// From dequeue to handler return.
    pub processing: Latency,
    /// From `send` to the receiving handler's return.
    pub end_to_end: Latency,
    /// From the dequeue of a keyed activation's first message to the start
    /// of its handler: instantiation and `caxton_init` (the wait in the
    /// mailbox is routing's).
    pub activation: Latency,
}

/// The p99 alert of rule 3.
pub struct P99Alert {
    window_ns: u64,
    window_end_ns: u64,
    routing: Latency,
    processing: Latency,
}

impl P99Alert {
    pub fn new(now_ns: u64, window_ms: u64) -> P99Alert {
        let window_ns = window_ms.max(1) * 1_000_000;
        P99Alert { window_ns, window_end_ns: now_ns + window_ns, routing: Latency::default(), processing: Latency::default() }
    }

    pub fn record_routing(&mut self, ns: u64) {
        self.routing.record(ns);
    }

    pub fn record_processing(&mut self, ns: u64) {
        self.processing.record(ns);
    }

    /// At a window's end, returns the warnings to log and starts a new window.
    pub fn check(&mut self, now_ns: u64) -> Option<(Option<u64>, Option<u64>)> {
        if now_ns < self.window_end_ns {
            return None;
        }
        self.window_end_ns = now_ns + self.window_ns;
        let routing = self.routing.quantile_ns(0.99);
        let processing = self.processing.quantile_ns(0.99);
        self.routing.reset();
        self.processing.reset();
        let over = (routing > ROUTING_P99_TARGET_NS).then_some(routing);
        let over_p = (processing > PROCESSING_P99_TARGET_NS).then_some(processing);
        (over.is_some() || over_p.is_some()).then_some((over, over_p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_buckets_hold_their_values_within_a_quarter() {
        for ns in [1u64, 127, 128, 129, 1_000, 4_095, 4_096, 999_999, 1_000_000, 60_000_000_000] {
            let i = CompactLatency::bucket(ns);
            let upper = CompactLatency::upper_ns(i);
            assert!(ns <= upper, "{ns} is at most its bucket's bound {upper}");
            if i > 0 {
                assert!(ns > CompactLatency::upper_ns(i - 1), "{ns} is above the bucket before");
                assert!((upper - ns) as f64 <= 0.25 * ns as f64, "{ns} within 25% of {upper}");
            }
        }
        assert_eq!(CompactLatency::bucket(u64::MAX), COMPACT_BUCKETS - 1, "huge values saturate");
        let mut l = CompactLatency::default();
        assert_eq!(l.quantile_ns(0.99), 0);
        for _ in 0..99 {
            l.record(1_000);
        }
        l.record(10_000_000);
        assert_eq!(l.count(), 100);
        assert!((1_000..1_250).contains(&l.quantile_ns(0.99)), "99 of 100 at 1 µs");
        assert!((10_000_000..12_500_000).contains(&l.quantile_ns(1.0)));
    }

    #[test]
    fn latencies_merge_and_keep_exact_sums() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for ns in [100, 200, 300] {
            a.record(ns);
        }
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 4);
        assert_eq!(a.sum_ns, 1_000_600);
        assert!(a.quantile_ns(1.0) >= 999_000);
        a.record(u64::MAX / 2); // saturates, never panics
        assert_eq!(a.count(), 5);
    }

    #[test]
    fn the_alert_fires_once_per_window_and_only_over_target() {
        let mut alert = P99Alert::new(0, ALERT_WINDOW_MS);
        for _ in 0..100 {
            alert.record_routing(2 * ROUTING_P99_TARGET_NS);
            alert.record_processing(1_000);
        }
        assert_eq!(alert.check(1), None, "not before the window ends");
        let window = ALERT_WINDOW_MS * 1_000_000;
        let (routing, processing) = alert.check(window).unwrap();
        assert!(routing.unwrap() >= 2 * ROUTING_P99_TARGET_NS - 2_000);
        assert_eq!(processing, None);
        assert_eq!(alert.check(window + 1), None, "once per window");
        alert.record_routing(1_000);
        assert_eq!(alert.check(3 * window), None, "within target");
    }
}
