//! A graceful stop (SIGTERM): stop taking work, let the shards finish what
//! they hold within a deadline, and tell the senders of whatever is left.
//!
//! Rules:
//! 1. Draining starts by refusing new work: the API answers 503
//!    `shutting_down` (health and metrics still answer); a wire frame is
//!    answered with a `node_down` notice (if it asked for a reply) instead
//!    of being taken. Replies still flow to those waiting for them; wire
//!    connections close once the node has stopped.
//! 2. The shards keep running until none holds a message in any queue
//!    (mailboxes, channels between shards, link queues, notices), seen
//!    [`QUIET_ROUNDS`] times in a row, or until `--drain-timeout`.
//! 3. Then each shard stops: it fails back what it still holds (notices
//!    `node_down` to senders that asked for a reply), commits, and
//!    checkpoints its WAL. Nothing accepted is dropped silently.
//! 4. The API waits for the replies and notices still due to its callers
//!    (at most [`REPLIES_GRACE`]) before it closes: until no REST caller
//!    waits and the runtime outbox is empty, so that every notice is in a
//!    wire connection's outbox before the connections flush and close.

use std::time::Duration;

use caxton_shards::Command;

use super::{Control, Phase};

/// Rounds in a row with nothing pending that end a drain (rule 2): a
/// message between two shards' counts is seen on the next round.
pub const QUIET_ROUNDS: u32 = 3;
/// Between two rounds.
const ROUND_INTERVAL: Duration = Duration::from_millis(5);
/// Longest wait for the last replies to REST callers (rule 4).
pub const REPLIES_GRACE: Duration = Duration::from_secs(1);

/// What a drain saw.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    /// Everything was handled before the deadline.
    pub quiet: bool,
    /// Messages still held at the deadline (failed back by the stop).
    pub left: usize,
}

impl Control {
    /// Rule 1.
    pub fn begin_drain(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Release);
        self.phase.send_replace(Phase::Draining);
    }

    /// The shards have stopped and the last replies are out: wire
    /// connections flush what they hold and close.
    pub fn set_stopped(&self) {
        self.phase.send_replace(Phase::Stopped);
    }

    /// Waits until every wire connection has closed, or the grace.
    pub async fn wires_closed(&self) {
        let deadline = tokio::time::Instant::now() + REPLIES_GRACE;
        while tokio::time::Instant::now() < deadline && !self.wires.lock().unwrap().is_empty() {
            tokio::time::sleep(ROUND_INTERVAL).await;
        }
    }

    /// Rule 2: waits until the shards hold nothing, or `timeout`.
    pub async fn drain(&self, timeout: Duration) -> Drained {
        assert!(self.draining(), "rule 1 first: nothing new may come in");
        let deadline = tokio::time::Instant::now() + timeout;
        let mut quiet_rounds = 0;
        let mut left = 0;
        while tokio::time::Instant::now() < deadline {
            left = 0;
            for shard in 0..self.shards.len() {
                // A late shard holds something, as far as we know.
                left += self.ask(shard, |reply| Command::Pending { reply }).await.unwrap_or(1);
            }
            quiet_rounds = if left == 0 { quiet_rounds + 1 } else { 0 };
            if quiet_rounds >= QUIET_ROUNDS {
                return Drained { quiet: true, left: 0 };
            }
            tokio::time::sleep(ROUND_INTERVAL).await;
        }
        Drained { quiet: false, left }
    }

    /// Rule 4: waits until no REST caller waits for a reply and the runtime
    /// outbox is empty (every notice the stopped shards sent is in its
    /// REST caller's or wire connection's hands), or the grace.
    pub async fn replies_delivered(&self) {
        let deadline = tokio::time::Instant::now() + REPLIES_GRACE;
        while tokio::time::Instant::now() < deadline && (!self.waiters.lock().unwrap().is_empty() || self.outbox.bytes() > 0) {
            tokio::time::sleep(ROUND_INTERVAL).await;
        }
    }
}
