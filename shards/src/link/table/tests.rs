//! The table's queues, bounds and acknowledgements.

use super::*;
use crate::envelope::Header;

fn msg(conversation_id: u64) -> Message {
    Message::encode(&Header { conversation_id, ..Default::default() }, b"a", b"far", b"x").unwrap()
}

fn limits(slots: usize, outbox: usize) -> LinkLimits {
    LinkLimits { slots_per_node: slots, outbox_messages_max: outbox, outbox_bytes_max: 1 << 30, inbound_messages_max: 10, inbound_bytes_max: 1 << 20 }
}

fn queue(t: &mut RemoteTable, n: NodeIdx, m: Message) {
    t.reserve(n, m.len()).unwrap();
    t.push(n, m).unwrap();
}

/// Writes everything handed so far, as the writer task does.
fn write_all(t: &mut RemoteTable, n: NodeIdx, s: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    t.hand_over(n, s);
    while !t.all_written(n, s) {
        t.next_frames(n, s, &mut wire, 64);
    }
    wire
}

#[test]
fn a_conversation_keeps_to_one_slot_and_the_outbox_is_bounded() {
    let mut t = RemoteTable::new("127.0.0.1:7000", limits(4, 3));
    t.set_node("127.0.0.2:7000", "127.0.0.2:7000".parse().unwrap(), true, false);
    let n = t.node_index("127.0.0.2:7000").unwrap();
    for _ in 0..3 {
        queue(&mut t, n, msg(6));
    }
    assert_eq!(t.reserve(n, 1), Err(NodeRefusal::Full { bytes_bound: false }));
    assert_eq!(t.node(n).slots[2].queue.len(), 3, "conversation 6 mod 4 slots");
    assert_eq!(t.wanted, vec![(n, 2)], "one connection asked for");
    // Written, then acknowledged: only then is there room again.
    let generation = t.node(n).slots[2].generation;
    let conn = t.connected(n, 2);
    write_all(&mut t, n, 2);
    assert_eq!(t.reserve(n, 1), Err(NodeRefusal::Full { bytes_bound: false }), "unacknowledged still count");
    t.acknowledged(n, 2, generation, conn, 2).unwrap();
    assert!(t.reserve(n, 1).is_ok());
    t.cancel(n, 1);
    assert_eq!(t.node(n).slots[2].unacked.len(), 1);
    assert_eq!(t.queued_bytes(), msg(6).len());
}

#[test]
fn the_outbox_is_bounded_in_bytes_across_nodes() {
    let one = msg(1).len();
    let mut t = RemoteTable::new("a:1", LinkLimits { outbox_bytes_max: 3 * one, ..limits(1, 100) });
    t.set_node("b:1", "127.0.0.2:7000".parse().unwrap(), true, false);
    t.set_node("c:1", "127.0.0.3:7000".parse().unwrap(), true, false);
    queue(&mut t, 0, msg(1));
    queue(&mut t, 1, msg(1));
    t.reserve(0, one).unwrap();
    assert_eq!(t.reserve(1, one), Err(NodeRefusal::Full { bytes_bound: true }), "the bound is the shard's, all nodes together");
    assert_eq!(t.counters.busy_bytes, 1);
    t.cancel(0, one);
    assert!(t.reserve(1, one).is_ok());
}

#[test]
fn acknowledgements_may_come_mid_batch_and_bad_ones_are_refused() {
    let mut t = RemoteTable::new("a:1", limits(1, 100));
    t.set_node("b:1", "127.0.0.2:7000".parse().unwrap(), true, false);
    for c in 1..=4 {
        queue(&mut t, 0, msg(c));
    }
    let conn = t.connected(0, 0);
    assert_eq!(t.hand_over(0, 0), 4);
    let mut wire = Vec::new();
    assert_eq!(t.next_frames(0, 0, &mut wire, 1), 1, "at least one frame a write");
    assert_eq!(t.acknowledged(0, 0, 0, conn, 2), Err(AckError::PastWritten { written: 1, total: 2 }));
    t.acknowledged(0, 0, 0, conn, 1).unwrap(); // before the batch's other writes
    assert_eq!(t.next_frames(0, 0, &mut wire, 1 << 20), 3);
    t.acknowledged(0, 0, 0, conn, 3).unwrap();
    assert_eq!(t.acknowledged(0, 0, 0, conn, 2), Err(AckError::Backwards { acked: 3, total: 2 }));
    t.acknowledged(0, 0, 0, conn + 7, 99).unwrap(); // another connection's: ignored
    assert_eq!(t.node(0).queued, 1);
}

#[test]
fn a_failed_connection_sends_its_unacknowledged_again_first() {
    let mut t = RemoteTable::new("a:1", limits(1, 100));
    t.set_node("b:1", "127.0.0.2:7000".parse().unwrap(), true, false);
    for c in 1..=3 {
        queue(&mut t, 0, msg(c));
    }
    let conn = t.connected(0, 0);
    write_all(&mut t, 0, 0);
    queue(&mut t, 0, msg(4));
    t.acknowledged(0, 0, 0, conn, 1).unwrap();
    t.acknowledged(0, 0, 0, conn - 1, 3).unwrap(); // an old connection's ack: ignored
    t.broke(0, 0, 0, conn);
    assert!(t.node(0).slots[0].broken);
    assert!(t.requeue_unacked(0, 0, 5).is_empty());
    let order: Vec<u64> = t.node(0).slots[0].queue.iter().map(|m| m.conversation_id()).collect();
    assert_eq!(order, vec![2, 3, 4], "resent first, in order");
    assert_eq!(t.node(0).queued, 3);
    t.connected(0, 0);
    write_all(&mut t, 0, 0);
    assert_eq!(t.requeue_unacked(0, 0, 2).len(), 3, "sent twice without an ack: given up");
    assert_eq!((t.node(0).queued, t.queued_bytes()), (0, 0));
}

#[test]
fn a_node_going_down_fails_its_queue_and_later_sends_fast() {
    // (unacknowledged messages are lost with it too: set_node drains both)
    let mut t = RemoteTable::new("a:1", limits(2, 100));
    let addr = "127.0.0.2:7000".parse().unwrap();
    t.set_node("b:1", addr, true, false);
    t.set_node("a:1", addr, true, false);
    assert_eq!(t.nodes().count(), 1, "never itself");
    queue(&mut t, 0, msg(1));
    assert!(t.set_node("b:1", addr, true, true).is_empty(), "a suspect keeps its queue");
    assert_eq!(t.states(), [0, 1, 0]);
    assert!(t.reserve(0, 1).is_ok(), "and stays routable");
    t.cancel(0, 1);
    let lost = t.set_node("b:1", addr, false, false);
    assert_eq!(lost.len(), 1);
    assert_eq!((t.node(0).queued, t.queued_bytes()), (0, 0));
    assert_eq!(t.reserve(0, 1), Err(NodeRefusal::Down));
    assert_eq!(t.states(), [0, 0, 1]);
    assert!(t.set_node("b:1", addr, true, false).is_empty());
    assert!(t.reserve(0, 1).is_ok());
    assert_eq!(t.node_of_runtime_name(format!("{}api/3", t.node(0).prefix).as_bytes()), Some(0));
}

#[test]
fn inbound_is_bounded_by_count_and_bytes() {
    let one = msg(1).len();
    let mut t = RemoteTable::new("a:1", LinkLimits { inbound_messages_max: 3, inbound_bytes_max: 2 * one, ..limits(1, 1) });
    t.push_inbound(msg(1));
    assert!(t.inbound_has_room());
    t.push_inbound(msg(2));
    assert!(!t.inbound_has_room(), "bytes bind first");
    let m = t.pop_inbound().unwrap();
    assert!(t.inbound_has_room());
    t.unpop_inbound(m);
    assert_eq!(t.inbound_len(), (2, 2 * one));
}
