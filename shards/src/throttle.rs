//! Warnings a remote party can cause, at most one a second.
//!
//! A peer without the key, a client sending garbage or an agent misusing
//! the ABI can do so thousands of times a second; a log line each would let
//! them fill the disk. A [`Throttle`] lets one line through per interval and
//! counts the rest, which the next line reports as `suppressed`. Counters
//! and metrics still see every event.

use std::time::{Duration, Instant};

use crate::limits::WARNING_INTERVAL_MS;

#[derive(Debug)]
pub struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
    interval: Duration,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::every(Duration::from_millis(WARNING_INTERVAL_MS))
    }
}

impl Throttle {
    pub fn every(interval: Duration) -> Throttle {
        Throttle { last: None, suppressed: 0, interval }
    }

    /// `Some(lines suppressed since the last one)` when a line may be
    /// written now; `None` (and one more suppressed) otherwise.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    pub fn allow_at(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < self.interval) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_an_interval_and_the_rest_counted() {
        let mut t = Throttle::every(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.allow_at(t0), Some(0));
        assert_eq!(t.allow_at(t0 + Duration::from_millis(10)), None);
        assert_eq!(t.allow_at(t0 + Duration::from_millis(20)), None);
        assert_eq!(t.allow_at(t0 + Duration::from_millis(1000)), Some(2));
    }
}
