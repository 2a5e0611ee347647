//! The router's unit tests: its rules, one test or more each.
use super::*;
use crate::envelope::Header;
use crate::limits::{MAILBOX_BYTES_MAX, MAILBOX_MESSAGES_MAX};
use crate::mesh::build_mesh;
use std::sync::Mutex;

fn node_limits(queued: usize, queued_bytes: u64) -> NodeQueueLimits {
    NodeQueueLimits {
        mailbox_messages_max: MAILBOX_MESSAGES_MAX,
        mailbox_bytes_max: MAILBOX_BYTES_MAX,
        queued_messages_max: queued,
        queued_bytes_max: queued_bytes,
        in_flight_messages_max: 100_000,
        in_flight_bytes_max: 1 << 30,
    }
}

fn limits(n: usize) -> RouterLimits {
    RouterLimits::for_node(n, node_limits(1_000_000, 1 << 30))
}

fn sink(seen: Arc<Mutex<Vec<Message>>>) -> ApiSink {
    RuntimeOutbox::new(
        1 << 20,
        Box::new(move |m| {
            seen.lock().unwrap().push(m);
            Ok(())
        }),
    )
}

fn one_router(limits: RouterLimits) -> Router {
    let bells: Vec<_> = (0..1).map(|_| Doorbell::new().unwrap().0).collect();
    let ends = build_mesh(&bells).pop().unwrap();
    Router::new(0, ends, sink(Default::default()), limits, RemoteTable::standalone()).0
}

fn reserve_stage(r: &mut Router, dest: Dest, m: Message) {
    r.reserve(dest, m.len()).unwrap();
    r.stage(dest, m);
}

#[test]
fn node_bounds_split_evenly_and_bind_a_shard() {
    let l = RouterLimits::for_node(2, NodeQueueLimits { in_flight_messages_max: 8, ..node_limits(6, 1000) });
    assert_eq!((l.shard_queued_messages_max, l.peer_in_flight_messages_max, l.shard_queued_bytes_max), (3, 4, 500));
    let mut r = one_router(RouterLimits::for_node(1, node_limits(3, 1 << 20)));
    r.add_agent("a", 1).unwrap();
    r.add_agent("b", 1).unwrap();
    r.accept(msg("a", 0)).unwrap();
    r.accept(msg("b", 0)).unwrap();
    let dest = r.resolve(b"a", 0, b"s").unwrap();
    r.reserve(dest, 1).unwrap();
    assert_eq!(r.reserve(dest, 1), Err(RouteError::Busy), "the shard's queue bound, not the mailbox's");
    assert_eq!(r.accept(msg("b", 0)).unwrap_err().0, RouteError::Busy);
}

/// Keyed rules 1, 3, 4 and 5 on one shard: a key's messages share one
/// mailbox, made when its first is routed; an activation with mail is
/// never passivated; past the bound a new key is refused busy, and a
/// passivation makes room.
#[test]
fn keys_get_a_mailbox_each_on_demand_within_a_bound() {
    let mut r = one_router(limits(1));
    r.add_keyed_type("kv").unwrap();
    r.keyed.set_live_max(2);
    assert_eq!(r.resolve(b"kv", 0, b"s"), Err(RouteError::UnknownReceiver), "a type is addressed by its keys");
    r.accept(msg("kv/a", 0)).unwrap();
    r.accept(msg("kv/a", 0)).unwrap();
    r.accept(msg("kv/b/c", 0)).unwrap();
    let (a, b) = (r.keyed.get(b"kv/a").unwrap(), r.keyed.get(b"kv/b/c").unwrap());
    assert_ne!(a, b);
    assert_eq!((r.queued_in(a), r.queued_in(b)), (2, 1), "one mailbox a key");
    assert_eq!(r.accept(msg("kv/new", 0)).unwrap_err().0, RouteError::Busy, "rule 5: two is the bound");
    assert!(r.accept(msg("kv/a", 0)).is_ok(), "a live key still takes mail");
    assert_eq!(r.passivate(b, keyed::Passivation::Idle), None, "rule 4: it has mail");
    while r.pop_message(b).is_some() {}
    assert_eq!(r.passivate(b, keyed::Passivation::Idle).as_deref(), Some("kv/b/c"));
    assert!(r.accept(msg("kv/new", 0)).is_ok(), "room again");
    assert_eq!(r.resolve(b"kv/", 0, b"s"), Err(RouteError::UnknownReceiver), "an empty key is no address");
    assert_eq!(r.resolve(b"nokv/a", 0, b"s"), Err(RouteError::UnknownReceiver));
    let c = r.keyed.counts("kv");
    assert_eq!((c.active, c.activations, c.passivations[0]), (2, 3, 1));
}

#[test]
fn mailboxes_and_shards_are_bounded_in_bytes_too() {
    let one = msg("a", 0).len();
    let mut r = one_router(RouterLimits { mailbox_bytes_max: 2 * one, shard_queued_bytes_max: 3 * one, ..limits(1) });
    r.add_agent("a", 1).unwrap();
    r.add_agent("b", 1).unwrap();
    r.accept(msg("a", 0)).unwrap();
    let dest = r.resolve(b"a", 0, b"s").unwrap();
    reserve_stage(&mut r, dest, msg("a", 0));
    assert_eq!(r.reserve(dest, one), Err(RouteError::Busy), "a's mailbox holds two");
    assert_eq!(r.accept(msg("b", 0)), Ok(()));
    assert_eq!(r.accept(msg("b", 0)).unwrap_err().0, RouteError::Busy, "the shard holds three");
    assert_eq!(r.counters.busy_bytes, 2);
    r.flush();
    assert_eq!(r.message_bytes().mailboxes, 3 * one);
    let id = r.next_ready().unwrap();
    r.pop_message(id).unwrap();
    assert!(r.accept(msg("b", 0)).is_ok(), "room again after a pop");
}

/// Each shard's mesh ends, by sending shard.
type MeshEnds = Vec<Vec<Option<MeshReceiver>>>;

fn routers(n: usize) -> (Vec<Router>, MeshEnds, Arc<Mutex<Vec<Message>>>) {
    let bells: Vec<_> = (0..n).map(|_| Doorbell::new().unwrap().0).collect();
    let api_seen = Arc::new(Mutex::new(Vec::new()));
    let mut rs = Vec::new();
    let mut rx = Vec::new();
    for (i, ends) in build_mesh(&bells).into_iter().enumerate() {
        let (r, from) = Router::new(i, ends, sink(api_seen.clone()), limits(n), RemoteTable::standalone());
        rs.push(r);
        rx.push(from);
    }
    (rs, rx, api_seen)
}

fn msg(to: &str, conversation: u64) -> Message {
    Message::encode(&Header { conversation_id: conversation, ..Default::default() }, b"s", to.as_bytes(), b"x").unwrap()
}

#[test]
fn staged_messages_wait_for_flush_then_reach_their_mailbox() {
    let (mut rs, _rx, _) = routers(1);
    let r = &mut rs[0];
    let ids = r.add_agent("a", 1).unwrap();
    assert_eq!(ids.len(), 1);
    assert!(r.add_agent("a", 1).is_err(), "twice is refused, not a panic");
    let dest = r.resolve(b"a", 0, b"s").unwrap();
    assert_eq!(dest, Dest::Local(ids[0].1));
    reserve_stage(r, dest, msg("a", 0));
    assert!(!r.has_ready(), "rule 2: nothing before flush");
    assert_eq!(r.flush(), 1);
    let id = r.next_ready().unwrap();
    assert!(r.pop_message(id).is_some());
    r.requeue(id);
    assert!(!r.has_ready());
}

#[test]
fn a_full_mailbox_refuses_with_busy_and_loses_nothing() {
    let (mut rs, _rx, _) = routers(1);
    let r = &mut rs[0];
    r.add_agent("a", 1).unwrap();
    let dest = r.resolve(b"a", 0, b"s").unwrap();
    for _ in 0..MAILBOX_MESSAGES_MAX {
        reserve_stage(r, dest, msg("a", 0));
    }
    assert_eq!(r.reserve(dest, 1), Err(RouteError::Busy));
    assert_eq!(r.accept(msg("a", 0)).unwrap_err().0, RouteError::Busy);
    r.flush();
    assert_eq!(r.queued_messages(), MAILBOX_MESSAGES_MAX);
}

#[test]
fn rollback_returns_the_reserved_room() {
    let (mut rs, _rx, _) = routers(1);
    let r = &mut rs[0];
    r.add_agent("a", 1).unwrap();
    let dest = r.resolve(b"a", 0, b"s").unwrap();
    let mark = r.staged_mark();
    for _ in 0..MAILBOX_MESSAGES_MAX {
        reserve_stage(r, dest, msg("a", 0));
    }
    r.rollback_to(mark);
    assert_eq!(r.flush(), 0);
    assert!(r.reserve(dest, 1).is_ok());
}

#[test]
fn cross_shard_messages_travel_in_order_and_unknown_names_are_refused() {
    let (mut rs, mut rx, api) = routers(2);
    // Find a name whose only instance lives on shard 1.
    let name = (0..).map(|i| format!("n{i}")).find(|n| shard_of(n.as_bytes(), 0, 2) == 1).unwrap();
    for r in rs.iter_mut() {
        r.add_agent(&name, 1).unwrap();
    }
    assert_eq!(rs[0].resolve(b"nobody", 0, b"s"), Err(RouteError::UnknownReceiver));
    let dest = rs[0].resolve(name.as_bytes(), 0, b"s").unwrap();
    assert_eq!(dest, Dest::Peer(1));
    for c in 1..=3 {
        reserve_stage(&mut rs[0], dest, msg(&name, c));
    }
    reserve_stage(&mut rs[0], Dest::Api, msg("@api/1", 0));
    rs[0].flush();
    assert_eq!(api.lock().unwrap().len(), 1);
    assert_eq!(rs[0].message_bytes().mesh, 3 * msg(&name, 1).len());
    let from0 = rx[1][0].as_mut().unwrap();
    for c in 1..=3 {
        let m = from0.try_recv().unwrap();
        assert_eq!(m.conversation_id(), c);
        rs[1].accept(m).unwrap();
    }
    from0.publish();
    assert_eq!(rs[0].message_bytes().mesh, 0, "taken and published");
    assert_eq!(rs[1].queued_messages(), 3);
}

#[test]
fn undeploy_turns_queued_mail_into_dead_letters() {
    let (mut rs, _rx, _) = routers(1);
    let r = &mut rs[0];
    r.add_agent("a", 2).unwrap();
    r.accept(msg("a", 0)).unwrap();
    r.accept(msg("a", 1)).unwrap();
    assert_eq!(r.remove_agent("a").len(), 2);
    assert_eq!(r.counters.dead_letters.get(DeadLetter::Undeployed), 2);
    assert_eq!(r.message_bytes().mailboxes, 0);
    assert!(!r.has_ready());
    assert_eq!(r.resolve(b"a", 0, b"s"), Err(RouteError::UnknownReceiver));
    assert!(r.remove_agent("a").is_empty(), "twice is a no-op");
}
