//! What a shard reports about itself and its instances (`ShardStats`,
//! `InstanceStats`), read between ticks.
//!
//! A report is one command, so it runs inside one tick: its cost is bounded
//! by what it is asked for. The per-instance part is what grows with the
//! agents (a cold `LocalAgent`, its store and its latency histogram per
//! instance: about 2.5 µs each, 25 ms of the shard's core for 10,000, and
//! every message waiting behind it), so a report carries at most the
//! `instances_max` instances asked for; the shard's own figures are
//! counts and sums.

use crate::command::{InstanceFigures, InstanceStats, ShardStats};
use crate::router::LocalId;

use super::Shard;

impl Shard {
    /// The figures of the instances of agent `name` (every agent's, if
    /// none), of at most `max` of them.
    pub(super) fn agent_stats(&self, name: Option<&str>, max: usize) -> Vec<InstanceStats> {
        let ctx = self.ctx.borrow();
        self.agents
            .iter()
            .enumerate()
            .filter_map(|(id, a)| a.as_ref().filter(|a| name.is_none_or(|n| *a.name == *n)).map(|a| (id, a)))
            .take(max)
            .map(|(id, a)| InstanceStats {
                name: a.name.clone(),
                instance: a.instance,
                shard: self.index,
                handled: a.handled,
                errors: a.errors,
                crashes: a.crashes,
                timeouts: a.timeouts,
                queued: ctx.router.queued_in(id as LocalId),
                memory_bytes: a.runtime.as_ref().map_or(0, |r| r.memory_bytes()),
                state_bytes: match &a.runtime {
                    Some(r) => r.state_bytes(),
                    None => ctx.store.state_bytes(&a.name, a.instance).unwrap_or(0),
                },
                state_refused: a.account.refusals().0,
                log_dropped: a.account.refusals().1,
                running: a.runtime.is_some(),
                standing: a.supervision.standing.label(),
                quarantined_because: a.quarantined_because.clone(),
                crashes_in_a_row: a.supervision.in_a_row,
                restarts: a.supervision.restarts,
                processing: a.processing.clone(),
            })
            .collect()
    }

    /// One pass over the instances: every count and sum, and the figures
    /// of the first `listed_max`.
    fn instance_figures(&self, listed_max: usize) -> InstanceFigures {
        let mut f = InstanceFigures { listed: self.agent_stats(None, listed_max), ..InstanceFigures::default() };
        let mut instances = 0;
        for a in self.agents.iter().flatten() {
            instances += 1;
            f.memory_bytes += a.runtime.as_ref().map_or(0, |r| r.memory_bytes());
            match a.supervision.standing {
                super::Standing::BackingOff { .. } => f.backing_off += 1,
                super::Standing::Quarantined => f.quarantined += 1,
                super::Standing::Running => {}
            }
        }
        assert_eq!(instances, self.live_instances, "the count kept is the count");
        assert!(f.listed.len() <= instances.min(listed_max));
        f.omitted = instances - f.listed.len();
        f
    }

    /// The shard's figures; with `instances_max`, a pass over its
    /// instances too (module doc).
    pub(super) fn shard_stats(&self, instances_max: Option<usize>) -> ShardStats {
        let per_instance = instances_max.map(|max| self.instance_figures(max));
        let ctx = self.ctx.borrow();
        let c = &ctx.router.counters;
        ShardStats {
            shard: self.index,
            stage_ticks: crate::stages::totals(),
            spans_queued: self.totals.spans_queued,
            spans_dropped: self.totals.spans_dropped,
            instances: self.live_instances,
            queued_messages: ctx.router.queued_messages(),
            handled: self.totals.handled,
            errors: self.totals.errors,
            crashes: self.totals.crashes,
            restart_failures: self.totals.restart_failures,
            timeouts: self.totals.timeouts,
            routed_local: c.routed_local,
            routed_remote: c.routed_remote,
            received_remote: c.received_remote,
            routed_node: c.routed_node,
            received_node: c.received_node,
            links: ctx.router.remote.counters.clone(),
            nodes: ctx.router.remote.states(),
            link_queued: ctx.router.remote.queued(),
            link_inbound: ctx.router.remote.inbound_len().0,
            message_bytes: ctx.router.message_bytes(),
            busy: c.busy,
            busy_bytes: c.busy_bytes,
            not_found: c.not_found,
            dead_letters: c.dead_letters.by_label().collect(),
            notices_sent: ctx.router.notices.counts.by_reason().collect(),
            notices_dropped: ctx.router.notices.counts.dropped,
            timers_scheduled: ctx.timers.len(),
            restarts: self.totals.restarts,
            quarantines: self.totals.quarantines,
            abi_invalid: ctx.abi.invalid,
            abi_too_large: ctx.abi.too_large,
            abi_over_limit: ctx.abi.over_limit,
            state_refused_quota: ctx.abi.state_refused_quota,
            state_refused_disk: ctx.abi.state_refused_disk,
            log_dropped: ctx.abi.log_dropped,
            wakeups: self.bell.rings(),
            latencies: self.latencies.clone(),
            per_instance,
            keyed: self.keyed_types.keys().map(|name| (name.clone(), ctx.router.keyed.counts(name))).collect(),
            tools: ctx.grants.counters,
        }
    }
}
