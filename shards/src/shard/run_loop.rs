//! The run loop of a shard, and its parking: the only glommio code of the
//! shard (timers, yields, the doorbell read).
//!
//! Rules:
//! 1. Busy, the loop yields between ticks and never sleeps.
//! 2. Idle, it spins for a while, then parks on its doorbell (mesh rules 2
//!    and 3). The spin adapts, between `spin_before_park` and
//!    `spin_before_park_max`: a shard woken soon after it parked doubles
//!    its spin (traffic is steady, and each wake-up costs tens of
//!    microseconds of latency); one that stayed parked long halves it (the
//!    node is idle, and spinning costs a core).
//! 3. With links, a runnable shard still lets the reactor see socket
//!    completions every [`LINK_POLL_INTERVAL_US`].
//! 4. Spinning idle, it offers its core to the kernel (`sched_yield`)
//!    every [`SPIN_YIELD_EVERY_POLLS`] polls. Alone on its core the call
//!    returns at once and the hop stays a microsecond one; when another
//!    thread waits for that core (another node's shard, a client, the load
//!    generator), that thread runs now instead of after the shard's time
//!    slice (milliseconds).
//!
//! The loop allocates nothing: one timer, re-armed for each poll.

use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;

use crate::clock::now_ns;
use crate::limits::{LINK_POLL_INTERVAL_US, SPIN_YIELD_EVERY_POLLS, STOP_NOTICES_WAIT_MS};

use super::Shard;

impl Shard {
    /// Runs until a `Stop` command. `doorbell` is the reading end of this
    /// shard's doorbell.
    pub async fn run(mut self, mut doorbell: glommio::net::UnixStream) {
        let mut idle_since: Option<Instant> = None;
        let mut wake = [0u8; 64];
        let mut spin = self.spin_before_park;
        crate::stages::set_on(self.stage_timing);
        let mut io_polled = Instant::now();
        let io_poll_every = Duration::from_micros(LINK_POLL_INTERVAL_US);
        // One timer, re-armed for each poll: the loop allocates nothing.
        let mut io_poll = glommio::timer::Timer::new(Duration::from_micros(1));
        let mut idle_polls: u32 = 0;
        loop {
            // Rule 3.
            if self.link.is_some() && io_polled.elapsed() >= io_poll_every {
                // A timer that has not expired leaves nothing runnable, so glommio
                // polls its rings (a zero one would complete without a poll).
                io_poll.reset(Duration::from_micros(1));
                (&mut io_poll).await;
                io_polled = Instant::now();
            }
            let work = self.tick();
            if let Some(reply) = self.stop.take() {
                // Lifecycle rule 4: notices wait for room (a wire client
                // reading them, a link's queue) up to a bound, yielding so
                // this core's link tasks run.
                let mut lost = self.take_everything_held();
                let deadline = Instant::now() + Duration::from_millis(STOP_NOTICES_WAIT_MS);
                while !self.fail_back_some(&mut lost, Instant::now() >= deadline) {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                self.close();
                assert!(!self.ctx.borrow().router.has_staged(), "a stopped shard holds no staged send");
                // The counts of the stop itself (its `stopped` dead letters)
                // come after the last scrape: the log keeps them.
                let last = self.shard_stats(None);
                let nonzero =
                    |counts: &[(&'static str, u64)]| counts.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect::<Vec<_>>().join(",");
                tracing::info!(
                    shard = self.index,
                    messages_handled = last.handled,
                    dead_letters = %nonzero(&last.dead_letters),
                    failure_notices = %nonzero(&last.notices_sent),
                    failure_notices_dropped = last.notices_dropped,
                    "shard stopped; its final counts"
                );
                reply(());
                return;
            }
            if work > 0 {
                idle_since = None;
                futures_lite::future::yield_now().await;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < spin {
                idle_polls = idle_polls.wrapping_add(1);
                if idle_polls.is_multiple_of(SPIN_YIELD_EVERY_POLLS) {
                    // Rule 4. SAFETY: sched_yield(2) takes no arguments and
                    // touches no memory of ours.
                    unsafe { libc::sched_yield() };
                }
                futures_lite::future::yield_now().await;
                continue;
            }
            if self.ctx.borrow().router.has_peer_backlog() {
                // A peer's channel is full: it drains without ringing us.
                glommio::timer::sleep(Duration::from_micros(50)).await;
                continue;
            }
            self.bell.set_parked();
            if self.has_input() {
                self.bell.clear_parked();
                continue;
            }
            let parked_at = Instant::now();
            // Whatever comes first: a timer, a backoff's end, a keyed sweep or
            // a passive key's timer (`keyed` rules 7 and 8).
            let next_timer = [self.next_timer_in(), self.next_backoff_in(), self.next_keyed_work_in(), self.next_tool_replay_in()].into_iter().flatten().min();
            match next_timer {
                None => {
                    let _ = doorbell.read(&mut wake).await;
                }
                // A timer is pending: wake for it if nothing comes first.
                Some(wait) => {
                    let read = async {
                        let _ = doorbell.read(&mut wake).await;
                    };
                    futures_lite::future::or(read, glommio::timer::sleep(wait)).await;
                }
            }
            self.bell.clear_parked();
            self.bell.beat(now_ns());
            idle_since = None;
            let parked_for = parked_at.elapsed();
            spin = if parked_for < 2 * spin {
                (spin * 2).min(self.spin_before_park_max)
            } else if parked_for > 20 * self.spin_before_park_max {
                (spin / 2).max(self.spin_before_park)
            } else {
                spin
            };
            assert!(spin >= self.spin_before_park && spin <= self.spin_before_park_max, "rule 2: the spin stays in its bounds");
        }
    }

    fn has_input(&self) -> bool {
        let ctx = self.ctx.borrow();
        !self.control.is_empty()
            || !self.lifecycle.is_empty()
            || ctx.router.has_ready()
            || ctx.router.has_staged()
            || !ctx.router.notices.is_empty()
            || ctx.timers.next_due_us().is_some_and(|at| at <= crate::clock::unix_micros())
            || self.next_backoff_in().is_some_and(|d| d.is_zero())
            || ctx.router.remote.inbound_len().0 > 0
            || self.inbound.iter().flatten().any(|rx| !rx.is_empty())
    }
}
