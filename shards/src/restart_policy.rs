//! An agent's restart policy: what its instances' crashes lead to (the
//! rules are `shard::supervision`'s, which applies it). Chosen at deploy and
//! carried by `command::Command::Deploy`, so it lives below both.

use crate::limits::{RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MS, RESTART_IMMEDIATE, RESTART_QUARANTINE_AFTER, RESTART_WINDOW_MS};

/// An agent's restart policy (rules 2 to 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Crashes in a row recreated at once.
    pub immediate: u32,
    /// Crashes further apart than this are not in a row, in ms.
    pub window_ms: u64,
    /// The first backoff, in ms; it doubles with each crash.
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    /// Crashes in a row past which the instance is quarantined.
    pub quarantine_after: u32,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            immediate: RESTART_IMMEDIATE,
            window_ms: RESTART_WINDOW_MS,
            backoff_ms: RESTART_BACKOFF_MS,
            backoff_max_ms: RESTART_BACKOFF_MAX_MS,
            quarantine_after: RESTART_QUARANTINE_AFTER,
        }
    }
}

impl RestartPolicy {
    /// Why a policy cannot work, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.quarantine_after < self.immediate {
            return Err(format!("quarantine_after ({}) must be at least restart_immediate ({})", self.quarantine_after, self.immediate));
        }
        if self.backoff_ms == 0 || self.backoff_max_ms < self.backoff_ms {
            return Err(format!("restart_backoff_ms ({}) must be at least 1 and at most restart_backoff_max_ms ({})", self.backoff_ms, self.backoff_max_ms));
        }
        if self.window_ms == 0 {
            return Err("restart_window_ms must be at least 1".into());
        }
        Ok(())
    }
}
