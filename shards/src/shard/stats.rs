//! What a shard reports about itself and its instances (`ShardStats`,
//! `InstanceStats`), read between ticks.

use crate::command::{InstanceStats, ShardStats};
use crate::router::LocalId;

use super::Shard;

impl Shard {
    pub(super) fn agent_stats(&self, name: Option<&str>) -> Vec<InstanceStats> {
        let ctx = self.ctx.borrow();
        self.agents
            .iter()
            .enumerate()
            .filter_map(|(id, a)| a.as_ref().filter(|a| name.is_none_or(|n| *a.name == *n)).map(|a| (id, a)))
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

    pub(super) fn shard_stats(&self) -> ShardStats {
        let ctx = self.ctx.borrow();
        let c = &ctx.router.counters;
        ShardStats {
            shard: self.index,
            stage_ticks: crate::stages::totals(),
            spans_queued: self.totals.spans_queued,
            spans_dropped: self.totals.spans_dropped,
            instances: self.agents.iter().flatten().count(),
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
            instances_backing_off: self.agents.iter().flatten().filter(|a| matches!(a.supervision.standing, super::Standing::BackingOff { .. })).count(),
            instances_quarantined: self.agents.iter().flatten().filter(|a| a.supervision.standing == super::Standing::Quarantined).count(),
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
            instance_stats: self.agent_stats(None),
        }
    }
}
