//! A shard's run-time knobs, each with its default (`limits`).

use std::time::Duration;

use crate::limits::{
    MessageBudget, EXECUTION_TIME_SLICE_MS, KEYED_ACTIVE_MAX, KEYED_IDLE_MS, LINK_INBOUND_MESSAGES_MAX, MAILBOX_BYTES_MAX, MAILBOX_MESSAGES_MAX,
    MESSAGE_BUFFER_BYTES, NODE_IN_FLIGHT_MESSAGES_MAX, NODE_OUTBOX_MESSAGES_MAX, NODE_QUEUED_MESSAGES_MAX, SPIN_BEFORE_PARK_MAX_US, SPIN_BEFORE_PARK_US,
};
use crate::link::table::LinkLimits;
use crate::metrics::ALERT_WINDOW_MS;
use crate::router::{NodeQueueLimits, RouterLimits};

/// A shard's run-time knobs, each with its default.
#[derive(Debug, Clone, Copy)]
pub struct ShardTuning {
    /// Shortest idle polling before parking. Default [`SPIN_BEFORE_PARK_US`].
    pub spin_before_park: Duration,
    /// Longest idle polling before parking, reached under steady traffic.
    /// Default [`SPIN_BEFORE_PARK_MAX_US`].
    pub spin_before_park_max: Duration,
    /// Window of the p99 alert. Default [`ALERT_WINDOW_MS`] (10 s).
    pub alert_window_ms: u64,
    /// Node-wide bounds of mailboxes and of messages between shards, in
    /// count and bytes. Defaults: [`MAILBOX_MESSAGES_MAX`],
    /// [`MAILBOX_BYTES_MAX`], [`NODE_QUEUED_MESSAGES_MAX`],
    /// [`NODE_IN_FLIGHT_MESSAGES_MAX`], and the mailbox and mesh shares of
    /// [`MESSAGE_BUFFER_BYTES`].
    pub queues: NodeQueueLimits,
    /// Bytes of messages waiting for other nodes, and of arrivals from them,
    /// node-wide. Defaults: the link shares of [`MESSAGE_BUFFER_BYTES`].
    pub link_outbox_bytes_max: u64,
    pub link_inbox_bytes_max: u64,
    /// Wall time a tick may spend dispatching before it yields, and one
    /// instance's share of a tick. Default [`EXECUTION_TIME_SLICE_MS`].
    pub tick_time_budget: Duration,
    /// Times each stage of a message's way (`stages`): for the benchmarks'
    /// per-stage table. Default off (on, a stage costs two counter reads).
    pub stage_timing: bool,
    /// How long a keyed activation stays with no message before it is
    /// passivated. Default [`KEYED_IDLE_MS`] (2 minutes).
    pub keyed_idle: Duration,
    /// Live keyed activations, node-wide (each shard keeps its share).
    /// Default [`KEYED_ACTIVE_MAX`] (10,000).
    pub keyed_active_max: usize,
}

impl ShardTuning {
    /// A shard's share of [`ShardTuning::keyed_active_max`] (at least one).
    pub fn keyed_active_max_per_shard(&self, shards: usize) -> usize {
        assert!(shards > 0);
        self.keyed_active_max.div_ceil(shards).max(1)
    }

    /// Activations a shard may hold, live or waiting for their first
    /// delivery (`router::keyed` rule 5): twice its share of the cap, and
    /// at least that share plus a tick's messages.
    pub fn keyed_live_max_per_shard(&self, shards: usize) -> usize {
        let share = self.keyed_active_max_per_shard(shards);
        share + share.max(crate::limits::TICK_MESSAGES_MAX)
    }

    pub fn router_limits(&self, shards: usize) -> RouterLimits {
        RouterLimits::for_node(shards, self.queues)
    }

    /// The bounds of one of `shards` shards' links (`pool` connections to
    /// each node).
    pub fn link_limits(&self, shards: usize, pool: usize) -> LinkLimits {
        assert!(shards > 0);
        LinkLimits {
            slots_per_node: pool,
            outbox_messages_max: NODE_OUTBOX_MESSAGES_MAX,
            outbox_bytes_max: (self.link_outbox_bytes_max / shards as u64).max(1) as usize,
            inbound_messages_max: LINK_INBOUND_MESSAGES_MAX,
            inbound_bytes_max: (self.link_inbox_bytes_max / shards as u64).max(1) as usize,
        }
    }

    /// The defaults, with the message budget split from `budget`.
    pub fn with_budget(budget: &MessageBudget) -> ShardTuning {
        ShardTuning {
            spin_before_park: Duration::from_micros(SPIN_BEFORE_PARK_US),
            spin_before_park_max: Duration::from_micros(SPIN_BEFORE_PARK_MAX_US),
            alert_window_ms: ALERT_WINDOW_MS,
            queues: NodeQueueLimits {
                mailbox_messages_max: MAILBOX_MESSAGES_MAX,
                mailbox_bytes_max: MAILBOX_BYTES_MAX,
                queued_messages_max: NODE_QUEUED_MESSAGES_MAX,
                queued_bytes_max: budget.mailboxes,
                in_flight_messages_max: NODE_IN_FLIGHT_MESSAGES_MAX,
                in_flight_bytes_max: budget.mesh,
            },
            link_outbox_bytes_max: budget.link_outbox,
            link_inbox_bytes_max: budget.link_inbox,
            tick_time_budget: Duration::from_millis(EXECUTION_TIME_SLICE_MS),
            stage_timing: false,
            keyed_idle: Duration::from_millis(KEYED_IDLE_MS),
            keyed_active_max: KEYED_ACTIVE_MAX,
        }
    }
}

impl Default for ShardTuning {
    fn default() -> Self {
        ShardTuning::with_budget(&MessageBudget::split(MESSAGE_BUFFER_BYTES).expect("the default budget splits"))
    }
}
