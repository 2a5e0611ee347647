//! Keyed agents against real nodes (issue 27): one activation per key,
//! made on demand, passivated when idle or past the cap, its state its own
//! and kept through passivation, kill -9 and upgrades.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use caxton_abi::{Envelope, Header, Performative};
use caxton_testkit::node::NodeSpec;
use common::{eventually, repo_path, wire, Node};
use serde_json::{json, Value};

fn with_wire(cores: usize, extra: &[&str]) -> Node {
    Node::launch(NodeSpec { wire: true, ..NodeSpec::new(cores).args(extra) }).unwrap_or_else(|e| panic!("{e}"))
}

fn deploy_keyed(node: &Node, name: &str, file: &str) -> (u16, Value) {
    let body = std::fs::read(repo_path(file)).unwrap();
    common::answer(node.request("PUT", &format!("/v1/agents/{name}?keyed=true")).send_bytes(&body))
}

/// Sends to `receiver` and waits for the reply's content.
fn ask(node: &Node, receiver: &str) -> String {
    let (status, v) = node.post_message(&json!({"receiver": receiver, "content": ""}), Some(5000));
    assert_eq!(status, 200, "{receiver}: {v}");
    v["content"].as_str().unwrap().to_string()
}

fn count(node: &Node, receiver: &str) -> u64 {
    ask(node, receiver).parse().unwrap()
}

fn keyed(node: &Node, name: &str) -> Value {
    node.agent(name)["keyed"].clone()
}

#[test]
fn a_key_is_its_own_activation_with_its_own_state_and_init_sees_its_key() {
    let node = Node::start(2);
    assert_eq!(deploy_keyed(&node, "counter", "examples/agents/counter.wat").0, 201);
    assert_eq!(deploy_keyed(&node, "teller", "tests/agents/key_teller.wat").0, 201);
    // A key is any UTF-8 up to 128 bytes, '/' included.
    for key in ["a", "user/42", "é", &"k".repeat(128)] {
        let address = format!("teller/{key}");
        if address.len() <= 64 {
            // (A version 1 agent reads names of at most 64 bytes.)
            assert_eq!(ask(&node, &address), address, "caxton_init saw its own key, and its state is its own");
        }
    }
    for _ in 0..3 {
        count(&node, "counter/a");
    }
    assert_eq!(count(&node, "counter/b"), 1, "key b does not see key a's count");
    assert_eq!(count(&node, "counter/a"), 4);
    // Deleting a key deletes its state only.
    let (status, v) = node.delete("/v1/agents/counter/keys/a");
    assert_eq!((status, v["had_state"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(count(&node, "counter/a"), 1, "a fresh key");
    assert_eq!(count(&node, "counter/b"), 2, "the other key kept its state");

    // Addresses that are not keys are refused with the reason.
    let long = format!("counter/{}", "k".repeat(129));
    assert_eq!(node.post_message(&json!({"receiver": long, "content": ""}), None).0, 400);
    let (status, v) = node.post_message(&json!({"receiver": "counter", "content": ""}), None);
    assert!(status == 404 && v["error"]["message"].as_str().unwrap().contains("counter/KEY"), "{status} {v}");
    assert_eq!(node.post_message(&json!({"receiver": "nobody/a", "content": ""}), None).0, 404);

    // What the node says about them.
    let k = keyed(&node, "counter");
    assert_eq!((k["active_keys"].as_u64(), k["keys_with_state"].as_u64(), k["activations"].as_u64()), (Some(2), Some(2), Some(3)), "{k}");
    assert_eq!(k["passivations"]["deleted"], 1, "{k}");
    let (status, v) = node.get("/v1/agents/teller/keys?prefix=user%2F&limit=10");
    assert_eq!((status, v["keys"].clone()), (200, json!(["user/42"])), "{v}");
    let m = node.metrics();
    assert!(m.contains("caxton_keyed_active{shard=\"0\",agent=\"counter\"}") && m.contains("caxton_keyed_activation_seconds_count"), "{m}");
    common::promtool_check(&m);
    let out = node.cli(&["agent", "keys", "teller", "--prefix", "a"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "a");
}

#[test]
fn two_callers_on_one_key_always_agree() {
    let node = Node::start(2);
    assert_eq!(deploy_keyed(&node, "counter", "examples/agents/counter.wat").0, 201);
    const EACH: u64 = 100;
    let seen: Vec<u64> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..2).map(|_| s.spawn(|| (0..EACH).map(|_| count(&node, "counter/shared")).collect::<Vec<u64>>())).collect();
        callers.into_iter().flat_map(|c| c.join().unwrap()).collect()
    });
    let seen: BTreeSet<u64> = seen.into_iter().collect();
    assert_eq!(seen, (1..=2 * EACH).collect::<BTreeSet<_>>(), "one activation: every count once, none lost or doubled");
}

/// Streams to 50 keys round robin through the wire with 2 live activations
/// a shard at most: keys are passivated all the time while their mail
/// flows. Every message is answered once, in order per key, and each
/// key's count runs on through its passivations.
#[test]
fn passivation_under_the_cap_loses_nothing_while_messages_stream_to_the_keys_dropped() {
    let node = with_wire(2, &["--keyed-active-max", "4"]);
    assert_eq!(deploy_keyed(&node, "counter", "examples/agents/counter.wat").0, 201);
    const KEYS: u64 = 50;
    const ROUNDS: u64 = 40;
    let (mut r, mut w, _, _) = wire::connect(node.wire.as_deref().unwrap(), None).unwrap();
    let reader = std::thread::spawn(move || {
        let mut replies = BTreeMap::new();
        while replies.len() < (KEYS * ROUNDS) as usize {
            let Ok(Some(bytes)) = r.envelope() else { break };
            let e = Envelope::parse(&bytes).unwrap();
            assert_eq!(e.performative(), Performative::Inform, "{:?}", String::from_utf8_lossy(e.content()));
            let count: u64 = std::str::from_utf8(e.content()).unwrap().parse().unwrap();
            assert!(replies.insert(e.header().in_reply_to, count).is_none(), "each message answered once");
        }
        replies
    });
    for round in 0..ROUNDS {
        for key in 0..KEYS {
            let id = round * KEYS + key + 1;
            w.send(&Header { reply_with: id, ..Header::default() }, format!("counter/k{key}").as_bytes(), b"").unwrap();
        }
    }
    w.flush().unwrap();
    let replies = reader.join().unwrap();
    assert_eq!(replies.len() as u64, KEYS * ROUNDS, "every message answered");
    for (id, count) in replies {
        let round = (id - 1) / KEYS;
        assert_eq!(count, round + 1, "message {id}: in order, and the count kept through passivations");
    }
    let k = keyed(&node, "counter");
    assert!(k["active_keys"].as_u64().unwrap() <= 4, "{k}");
    assert!(k["passivations"]["cap"].as_u64().unwrap() > KEYS, "the cap passivated all along: {k}");
    assert_eq!(k["keys_with_state"], KEYS, "{k}");
}

#[test]
fn a_timer_due_for_a_passive_key_activates_it() {
    let node = Node::start_with(2, &["--keyed-idle", "200ms"]);
    assert_eq!(node.deploy("counter", "examples/agents/counter.wat", 1).0, 201);
    // timer_relay sets a 2-s timer; when it fires it sends to `counter`.
    assert_eq!(deploy_keyed(&node, "relay", "tests/agents/timer_relay.wat").0, 201);
    assert_eq!(node.post_message(&json!({"receiver": "relay/r1", "content": ""}), None).0, 202);
    assert!(eventually(Duration::from_secs(3), || keyed(&node, "relay")["passivations"]["idle"] == 1), "idle: {}", keyed(&node, "relay"));
    assert_eq!(keyed(&node, "relay")["active_keys"], 0, "passive while its timer waits");
    assert!(eventually(Duration::from_secs(5), || node.agent("counter")["messages_handled"] == 1), "the timer fired in a new activation");
    assert_eq!(keyed(&node, "relay")["activations"], 2, "{}", keyed(&node, "relay"));
}

#[test]
fn an_upgrade_reaches_live_and_passive_keys_and_keeps_their_state() {
    let node = Node::start_with(2, &["--keyed-idle", "200ms"]);
    let v1 = std::fs::read_to_string(repo_path("examples/agents/counter.wat")).unwrap();
    let marker = "(i32.store8 offset=1 (local.get $out) (i32.const 1))";
    let v2 = v1.replace(marker, "(i32.store8 offset=1 (local.get $out) (i32.const 7))"); // agree
    assert_eq!(deploy_keyed(&node, "counter", "examples/agents/counter.wat").0, 201);
    for key in ["p", "q"] {
        count(&node, &format!("counter/{key}"));
    }
    assert!(eventually(Duration::from_secs(3), || keyed(&node, "counter")["active_keys"] == 0), "passive: {}", keyed(&node, "counter"));
    count(&node, "counter/live"); // one live activation during the upgrade
    let (status, v) = common::answer(node.request("PUT", "/v1/agents/counter?upgrade=true").send_bytes(v2.as_bytes()));
    assert_eq!(status, 200, "{v}");
    // A new version whose init fails is refused even with no key live on
    // a shard: it is tried on a scratch activation there.
    assert!(eventually(Duration::from_secs(3), || keyed(&node, "counter")["active_keys"] == 0), "passive again");
    let broken = std::fs::read(repo_path("tests/agents/init_fails.wat")).unwrap();
    let (status, v) = common::answer(node.request("PUT", "/v1/agents/counter?upgrade=true").send_bytes(&broken));
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("upgrade_refused")), "{v}");
    for (key, want) in [("p", 2), ("q", 2), ("live", 2), ("new", 1)] {
        let (status, v) = node.post_message(&json!({"receiver": format!("counter/{key}"), "content": ""}), Some(5000));
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (v["performative"].as_str(), v["content"].as_str()),
            (Some("agree"), Some(want.to_string().as_str())),
            "{key}: the new version, the old state"
        );
    }
}

#[test]
fn a_hundred_thousand_keys_survive_kill_9_and_cost_no_memory_while_passive() {
    let mut node = with_wire(2, &["--keyed-active-max", "2000"]);
    assert_eq!(deploy_keyed(&node, "counter", "examples/agents/counter.wat").0, 201);
    const KEYS: u64 = 100_000;
    let (mut r, mut w, _, _) = wire::connect(node.wire.as_deref().unwrap(), None).unwrap();
    let reader = std::thread::spawn(move || {
        let mut answered = 0u64;
        while answered < KEYS {
            let Ok(Some(bytes)) = r.envelope() else { break };
            assert_eq!(Envelope::parse(&bytes).unwrap().content(), b"1");
            answered += 1;
        }
        answered
    });
    let began = Instant::now();
    for key in 0..KEYS {
        w.send(&Header { reply_with: key + 1, ..Header::default() }, format!("counter/user-{key}").as_bytes(), b"").unwrap();
    }
    w.flush().unwrap();
    assert_eq!(reader.join().unwrap(), KEYS, "every key answered (its state committed first)");
    eprintln!("{KEYS} activations in {:?}", began.elapsed());
    let k = keyed(&node, "counter");
    assert!(k["active_keys"].as_u64().unwrap() <= 2000, "the cap holds: {k}");
    node.kill9_and_restart();
    let k = keyed(&node, "counter");
    assert_eq!((k["keys_with_state"].as_u64(), k["active_keys"].as_u64()), (Some(KEYS), Some(0)), "every key's state, none in memory: {k}");
    for key in [0, 4_242, KEYS - 1] {
        assert_eq!(count(&node, &format!("counter/user-{key}")), 2, "user-{key}");
    }
}

/// A keyed type deploys without running any code (there is no key yet), so
/// an init that fails shows at activation: each message to the key is
/// answered by a `crashed_handler` failure notice, counted, and the key's
/// restart policy quarantines it; other types' keys are served meanwhile.
#[test]
fn an_activation_that_cannot_start_is_a_failure_notice_and_its_key_is_quarantined() {
    let node = Node::start(2);
    let body = std::fs::read(repo_path("tests/agents/init_fails.wat")).unwrap();
    let (status, v) = common::answer(node.request("PUT", "/v1/agents/broken?keyed=true&restart_immediate=3&quarantine_after=3").send_bytes(&body));
    assert_eq!(status, 201, "{v}");
    assert_eq!(deploy_keyed(&node, "counter", "examples/agents/counter.wat").0, 201);
    for _ in 0..3 {
        let (status, v) = node.post_message(&json!({"receiver": "broken/k", "content": ""}), Some(5000));
        assert_eq!((status, v["performative"].as_str(), v["content"].as_str()), (200, Some("failure"), Some("crashed_handler")), "{v}");
        let before = count(&node, "counter/k");
        assert_eq!(count(&node, "counter/k"), before + 1, "the node serves other keys");
    }
    let quarantined = (0..10).any(|_| {
        let (status, v) = node.post_message(&json!({"receiver": "broken/k", "content": ""}), Some(5000));
        assert_eq!((status, v["performative"].as_str()), (200, Some("failure")), "{v}");
        v["content"] == "quarantined"
    });
    assert!(quarantined, "its crashes in a row quarantine the key");
    assert!(node.logs().contains("instance quarantined"), "the key's policy quarantined it");
    let (status, v) = node.post_message(&json!({"receiver": "broken/other", "content": ""}), Some(5000));
    assert_eq!((status, v["content"].as_str()), (200, Some("crashed_handler")), "another key has its own standing: {v}");
}

/// A keyed type lives on the node it is deployed to; any member messages
/// its keys (over the link, the key's shard chosen there), and a REST
/// call on the other node reaches them too.
#[test]
fn in_a_cluster_any_node_messages_the_keys_of_a_type_on_another() {
    let (a, b) = common::cluster::pair("keyed-cluster-key-0123456789abcdef");
    assert_eq!(deploy_keyed(&a.node, "counter", "examples/agents/counter.wat").0, 201);
    assert!(
        eventually(Duration::from_secs(10), || b.node.post_message(&json!({"receiver": "counter/x", "content": ""}), Some(5000)).0 == 200),
        "the type's route reached b"
    );
    assert_eq!(count(&b.node, "counter/x"), 2, "from b, the same activation as before");
    assert_eq!(count(&a.node, "counter/x"), 3, "and from a");
    assert_eq!(count(&b.node, "counter/y"), 1);
    assert_eq!(keyed(&a.node, "counter")["keys_with_state"], 2);
}

/// A passive key's timer outlives kill -9: after the restart no key is
/// live, and the timer, due meanwhile, still activates its key.
#[test]
fn a_passive_keys_timer_fires_after_kill_9() {
    let mut node = Node::start(2);
    assert_eq!(node.deploy("counter", "examples/agents/counter.wat", 1).0, 201);
    assert_eq!(deploy_keyed(&node, "relay", "tests/agents/timer_relay.wat").0, 201);
    for key in ["a", "b"] {
        assert_eq!(node.post_message(&json!({"receiver": format!("relay/{key}"), "content": ""}), None).0, 202);
    }
    assert!(eventually(Duration::from_secs(3), || node.agent("relay")["messages_handled"] == 2), "both timers set");
    node.kill9_and_restart();
    assert_eq!(keyed(&node, "relay")["active_keys"], 0, "nothing live after a restart");
    assert!(eventually(Duration::from_secs(6), || node.agent("counter")["messages_handled"] == 2), "each key's timer fired: {}", node.agent("counter"));
    assert_eq!(keyed(&node, "relay")["activations"], 2, "{}", keyed(&node, "relay"));
}
