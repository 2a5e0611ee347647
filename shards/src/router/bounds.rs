//! The bounds a router enforces (router rule 1), split from the node's,
//! and what it counts.

use super::DeadLetters;

#[derive(Debug, Default, Clone)]
pub struct RouterCounters {
    pub routed_local: u64,
    pub routed_remote: u64,
    pub received_remote: u64,
    /// Messages sent to other nodes, and received from them.
    pub routed_node: u64,
    pub received_node: u64,
    pub busy: u64,
    /// Of `busy`: refused because a byte bound was reached (rule 1).
    pub busy_bytes: u64,
    /// Sends refused because no agent has the receiver's name.
    pub not_found: u64,
    pub dead_letters: DeadLetters,
}

/// The bounds a router enforces (rule 1), derived from the node's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterLimits {
    /// Room of each mailbox.
    pub mailbox_messages_max: usize,
    pub mailbox_bytes_max: usize,
    /// Messages queued in all of this shard's mailboxes, and their bytes.
    pub shard_queued_messages_max: usize,
    pub shard_queued_bytes_max: usize,
    /// Messages in transit to one peer shard, and their bytes.
    pub peer_in_flight_messages_max: usize,
    pub peer_in_flight_bytes_max: usize,
}

/// Node-wide queue bounds, each with its default in `limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeQueueLimits {
    pub mailbox_messages_max: usize,
    pub mailbox_bytes_max: usize,
    pub queued_messages_max: usize,
    pub queued_bytes_max: u64,
    pub in_flight_messages_max: usize,
    pub in_flight_bytes_max: u64,
}

impl RouterLimits {
    /// Splits the node-wide bounds evenly between `shards` shards.
    pub fn for_node(shards: usize, node: NodeQueueLimits) -> RouterLimits {
        assert!(shards > 0);
        let pairs = (shards * (shards - 1)).max(1);
        RouterLimits {
            mailbox_messages_max: node.mailbox_messages_max.max(1),
            mailbox_bytes_max: node.mailbox_bytes_max.max(1),
            shard_queued_messages_max: (node.queued_messages_max / shards).max(1),
            shard_queued_bytes_max: (node.queued_bytes_max / shards as u64).max(1) as usize,
            peer_in_flight_messages_max: (node.in_flight_messages_max / pairs).max(1),
            peer_in_flight_bytes_max: (node.in_flight_bytes_max / pairs as u64).max(1) as usize,
        }
    }
}

/// Bytes of messages a shard holds, by queue (for metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageBytes {
    pub mailboxes: usize,
    pub mesh: usize,
    pub link_outbox: usize,
    pub link_inbox: usize,
}
