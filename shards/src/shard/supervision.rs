//! What a shard does when an instance crashes: its restart policy.
//!
//! Rules:
//! 1. A crash is a trap or a handler past its time slice, or an instance
//!    that fails to start again. Crashes in a row (none handled in between,
//!    each within `window_ms` of the last) are counted; a message handled
//!    normally, or a quiet window, starts the count again.
//! 2. The first `immediate` crashes of a row recreate the instance at
//!    once. After that it backs off: its mailbox is held (it takes mail,
//!    within its bounds, but does not run) for `backoff_ms`, doubling with
//!    each crash up to `backoff_max_ms`; then it is made anew.
//! 3. Past `quarantine_after` crashes in a row the instance is quarantined:
//!    it is not made again, and every message it receives is failed back
//!    (`quarantined`). Only a restart (`caxton agent restart`), an upgrade
//!    or a node restart lifts it.
//! 4. The policy is the agent's, chosen at deploy; its defaults are in
//!    `limits` (`RESTART_*`).

pub use crate::restart_policy::RestartPolicy;

/// Where an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Running,
    /// Held until the clock (`now_ns`) passes this.
    BackingOff {
        until_ns: u64,
    },
    Quarantined,
}

impl Standing {
    pub fn label(self) -> &'static str {
        match self {
            Standing::Running => "running",
            Standing::BackingOff { .. } => "backing_off",
            Standing::Quarantined => "quarantined",
        }
    }
}

/// What to do after a crash (rule 2 or 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    RestartNow,
    BackOff { for_ms: u64 },
    Quarantine,
}

/// One instance's crashes in a row and standing.
#[derive(Debug, Clone, Copy)]
pub struct Supervision {
    pub policy: RestartPolicy,
    pub in_a_row: u32,
    last_crash_ns: u64,
    pub standing: Standing,
    /// Restarts the policy made (at once or after a backoff).
    pub restarts: u64,
}

impl Supervision {
    pub fn new(policy: RestartPolicy) -> Supervision {
        Supervision { policy, in_a_row: 0, last_crash_ns: 0, standing: Standing::Running, restarts: 0 }
    }

    /// A crash at `now`: what the policy says (rules 1 to 3).
    pub fn crashed(&mut self, now: u64) -> AfterCrash {
        assert!(self.standing != Standing::Quarantined, "a quarantined instance does not run");
        if self.in_a_row > 0 && now.saturating_sub(self.last_crash_ns) > self.policy.window_ms * 1_000_000 {
            self.in_a_row = 0;
        }
        self.in_a_row += 1;
        self.last_crash_ns = now;
        let after = if self.in_a_row > self.policy.quarantine_after {
            AfterCrash::Quarantine
        } else if self.in_a_row > self.policy.immediate {
            let doublings = (self.in_a_row - self.policy.immediate - 1).min(32);
            AfterCrash::BackOff { for_ms: self.policy.backoff_ms.saturating_mul(1 << doublings).min(self.policy.backoff_max_ms) }
        } else {
            AfterCrash::RestartNow
        };
        self.standing = match after {
            AfterCrash::RestartNow => Standing::Running,
            AfterCrash::BackOff { for_ms } => Standing::BackingOff { until_ns: now + for_ms * 1_000_000 },
            AfterCrash::Quarantine => Standing::Quarantined,
        };
        after
    }

    /// A message handled normally: the row of crashes ends (rule 1).
    pub fn handled(&mut self) {
        self.in_a_row = 0;
    }

    /// Lifted by a restart or an upgrade (rule 3).
    pub fn lift(&mut self) {
        self.in_a_row = 0;
        self.standing = Standing::Running;
    }

    /// The backoff is over at `now`.
    pub fn backoff_over(&self, now: u64) -> bool {
        matches!(self.standing, Standing::BackingOff { until_ns } if now >= until_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn restarts_at_once_then_backs_off_doubling_then_quarantines() {
        let policy = RestartPolicy { immediate: 2, window_ms: 1000, backoff_ms: 10, backoff_max_ms: 25, quarantine_after: 5 };
        let mut s = Supervision::new(policy);
        let steps: Vec<AfterCrash> = (0..6).map(|i| s.crashed(i * MS)).collect();
        assert_eq!(
            steps,
            vec![
                AfterCrash::RestartNow,
                AfterCrash::RestartNow,
                AfterCrash::BackOff { for_ms: 10 },
                AfterCrash::BackOff { for_ms: 20 },
                AfterCrash::BackOff { for_ms: 25 },
                AfterCrash::Quarantine
            ]
        );
        assert_eq!(s.standing, Standing::Quarantined);
        s.lift();
        assert_eq!((s.standing, s.crashed(10 * MS)), (Standing::Running, AfterCrash::RestartNow), "a lift starts the row again");
    }

    #[test]
    fn a_handled_message_or_a_quiet_window_ends_the_row() {
        let mut s = Supervision::new(RestartPolicy { immediate: 1, window_ms: 100, backoff_ms: 10, backoff_max_ms: 10, quarantine_after: 3 });
        assert_eq!(s.crashed(0), AfterCrash::RestartNow);
        s.handled();
        assert_eq!(s.crashed(MS), AfterCrash::RestartNow);
        assert_eq!(s.crashed(2 * MS), AfterCrash::BackOff { for_ms: 10 });
        assert!(!s.backoff_over(5 * MS) && s.backoff_over(12 * MS));
        assert_eq!(s.crashed(500 * MS), AfterCrash::RestartNow, "more than a window after the last crash");
    }

    #[test]
    fn a_policy_that_cannot_work_is_refused() {
        assert!(RestartPolicy::default().check().is_ok());
        assert!(RestartPolicy { quarantine_after: 1, immediate: 3, ..RestartPolicy::default() }.check().is_err());
        assert!(RestartPolicy { backoff_ms: 0, ..RestartPolicy::default() }.check().is_err());
    }
}
