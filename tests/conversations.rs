//! Conversations that end, against real nodes: failure notices from
//! `@node` for a trap, an unknown receiver, a deadline passed, an undeploy
//! and a killed node, seen by an agent, a REST caller and a wire client;
//! durable timers through `kill -9`; ABI v1 agents beside v2; the trace
//! a handler's sends inherit; and a contract-net round over two nodes.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use caxton_abi::{encode_into, encoded_len, v1, Envelope, Header, Performative, TraceContext};
use caxton_testkit::contract_net::price;
use caxton_testkit::node::NodeSpec;
use common::{eventually, example_agent, free_cluster_port, wire, Node};
use serde_json::{json, Value};

/// Long enough never to be what ends a call: a notice must come first.
const PATIENCE_MS: u64 = 30_000;

fn with_wire(cores: usize, extra: &[&str]) -> Node {
    Node::launch(NodeSpec { wire: true, ..NodeSpec::new(cores).args(extra) }).unwrap_or_else(|e| panic!("{e}"))
}

fn deploy_file(node: &Node, name: &str, path: &std::path::Path, instances: u32) {
    let (status, v) = node.put_module(name, instances, &std::fs::read(path).unwrap());
    assert_eq!(status, 201, "{name}: {v}");
}

fn deploy(node: &Node, name: &str, file: &str) {
    let (status, v) = node.deploy(name, file, 1);
    assert_eq!(status, 201, "{name}: {v}");
}

fn post(node: &Node, body: Value) -> (u16, Value) {
    node.post_message(&body, Some(PATIENCE_MS))
}

/// (status, performative, sender, content) of a REST call that waited.
fn outcome(answer: &(u16, Value)) -> (u16, String, String, String) {
    let v = &answer.1;
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    (answer.0, s("performative"), s("sender"), s("content"))
}

fn failure(reason: &str) -> (u16, String, String, String) {
    (200, "failure".into(), "@node".into(), reason.into())
}

/// What the asker agent tells its REST caller about a request it made.
fn ask_through_agent(node: &Node, target: &str, timeout_ms: u64, content: &str) -> String {
    let (status, v) = post(node, json!({"receiver": "asker", "content": format!("{target} {timeout_ms} {content}")}));
    assert_eq!(status, 200, "{v}");
    v["content"].as_str().unwrap().to_string()
}

fn metric_sum(node: &Node, prefix: &str) -> f64 {
    node.metrics().lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Reads envelopes until `done` says so; panics on a closed connection.
fn read_until(r: &mut wire::WireReader, mut done: impl FnMut(Envelope<'_>) -> bool) {
    loop {
        let bytes = r.envelope().unwrap().expect("the node closed the wire connection");
        if done(Envelope::parse(&bytes).unwrap()) {
            return;
        }
    }
}

#[test]
fn a_trap_an_unknown_receiver_a_passed_deadline_and_an_old_agent_are_answered_to_rest_agents_and_wire() {
    let node = with_wire(2, &[]);
    deploy(&node, "crashy", "tests/agents/crashy.wat");
    deploy(&node, "echo", "examples/agents/echo.wat"); // an ABI version 1 module
    deploy_file(&node, "asker", &example_agent("rust-asker"), 1);

    // A REST caller: the failure comes at once, not after its patience.
    let began = Instant::now();
    assert_eq!(outcome(&post(&node, json!({"receiver": "crashy", "content": "crash"}))), failure("crashed_handler"));
    assert!(began.elapsed() < Duration::from_millis(PATIENCE_MS / 3), "answered by the notice, not the time-out");
    assert_eq!(outcome(&post(&node, json!({"receiver": "echo", "content": "late", "reply_by": 1}))), failure("expired"));
    deploy(&node, "spinner", "tests/agents/spinner.wat"); // loops until its time slice ends
    assert_eq!(outcome(&post(&node, json!({"receiver": "spinner", "content": "spin"}))), failure("timed_out"));
    assert_eq!(outcome(&post(&node, json!({"receiver": "echo", "performative": "cfp", "content": "x"}))), failure("not_understood"));
    let (status, v) = post(&node, json!({"receiver": "nobody", "content": "x"}));
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("not_found")), "refused at send, synchronously: {v}");
    // The version 1 echo still answers, its reply upgraded.
    let (status, v) = post(&node, json!({"receiver": "echo", "content": "old", "conversation_id": 5}));
    assert_eq!((status, v["content"].as_str(), v["conversation_id"].as_u64()), (200, Some("old"), Some(5)), "{v}");

    // An agent (the SDK's Request): the same notices reach it.
    assert_eq!(ask_through_agent(&node, "crashy", PATIENCE_MS, "crash"), "failed crashed_handler");
    assert_eq!(ask_through_agent(&node, "echo", PATIENCE_MS, "hi"), "replied inform hi");
    assert_eq!(ask_through_agent(&node, "nobody", PATIENCE_MS, "x"), "refused_at_send host call refused: not found");
    // crashy's error (it returns 7) is answered at once, not at the deadline.
    assert_eq!(ask_through_agent(&node, "crashy", 300, "fail"), "failed handler_error", "a handler's error is answered before the deadline (issue 29)");

    // A wire client speaking version 2.
    let (mut r, mut w, _, _) = wire::connect(node.wire.as_deref().unwrap(), None).unwrap();
    let trace = TraceContext { trace_id: *b"0123456789abcdef", parent_span_id: *b"span-001" };
    let h = |reply_with: u64| Header { reply_with, ..Header::default() };
    w.send(&Header { reply_with: 0, ..h(0) }, b"crashy", b"crash no reply asked").unwrap();
    w.send(&h(11), b"crashy", b"crash").unwrap();
    w.send(&h(12), b"nobody", b"x").unwrap();
    w.send(&Header { reply_by: 1, ..h(13) }, b"echo", b"late").unwrap();
    w.send(&Header { performative: Performative::Cfp.code(), ..h(14) }, b"echo", b"x").unwrap();
    w.send(&Header { trace, ..h(15) }, b"echo", b"traced").unwrap();
    w.flush().unwrap();
    let mut seen = HashMap::new();
    read_until(&mut r, |e| {
        let hd = e.header();
        assert!(seen.insert(hd.in_reply_to, (e.performative(), e.sender().to_vec(), e.content().to_vec())).is_none(), "one answer each");
        if hd.in_reply_to == 15 {
            assert_eq!(hd.trace.trace_id, trace.trace_id, "the reply is in the trace of the message handled");
            assert!(hd.trace.parent_span_id != trace.parent_span_id && hd.trace.parent_span_id != [0; 8], "with the handler's own span");
        }
        seen.len() == 5
    });
    for (id, reason) in [(11, "crashed_handler"), (12, "unknown_receiver"), (13, "expired"), (14, "not_understood")] {
        assert_eq!(seen[&id], (Performative::Failure, b"@node".to_vec(), reason.as_bytes().to_vec()), "wire message {id}");
    }
    assert_eq!(seen[&15], (Performative::Inform, b"echo".to_vec(), b"traced".to_vec()));
    assert!(!seen.contains_key(&0), "no reply asked, no notice");

    // A version 1 wire client: version 1 envelopes both ways.
    let mut s = TcpStream::connect(node.wire.as_deref().unwrap()).unwrap();
    wire::write_frame(&mut s, b"caxton-wire/1").unwrap();
    let hello = wire::read_frame(&mut s).unwrap().unwrap();
    assert!(hello.starts_with(b"caxton-wire/1 ok @wire/"), "{}", String::from_utf8_lossy(&hello));
    let header = Header { reply_with: 21, conversation_id: 9, ..Header::default() };
    let mut v2 = vec![0u8; encoded_len(&header, b"", b"echo", b"from v1")];
    encode_into(&mut v2, &header, b"", b"echo", b"from v1").unwrap();
    let e = Envelope::parse(&v2).unwrap();
    let mut old = vec![0u8; v1::downgraded_len(&e)];
    v1::downgrade_into(&e, &mut old).unwrap();
    wire::write_frame(&mut s, &old).unwrap();
    s.flush().unwrap();
    let reply = wire::read_frame(&mut s).unwrap().unwrap();
    let (hd, lengths) = v1::parse(&reply, false).expect("a version 1 reply");
    assert_eq!((hd.in_reply_to, hd.conversation_id), (21, 9));
    assert_eq!(&reply[reply.len() - lengths.content..], b"from v1", "content last");

    // Counted by reason, on whichever shard made them; never a notice
    // about a notice. (Unknown receivers are refused at send, not noticed.)
    let notices = |reason: &str| (0..2).map(|s| metric_sum(&node, &format!("caxton_failure_notices_total{{shard=\"{s}\",reason=\"{reason}\"}}"))).sum::<f64>();
    assert_eq!((notices("crashed_handler"), notices("expired"), notices("not_understood")), (3.0, 2.0, 2.0));
    common::promtool_check(&node.metrics());
}

#[test]
fn an_undeploy_fails_back_every_message_its_mailboxes_held() {
    let node = with_wire(1, &[]);
    deploy(&node, "molasses", "tests/agents/molasses.wat"); // ~2 ms a message, answers nothing
    deploy_file(&node, "asker", &example_agent("rust-asker"), 1);
    let (mut r, mut w, _, _) = wire::connect(node.wire.as_deref().unwrap(), None).unwrap();
    const SENT: u64 = 800; // about 1.6 s of work, within a mailbox
    for i in 1..=SENT {
        w.send(&Header { reply_with: i, ..Header::default() }, b"molasses", &i.to_le_bytes()).unwrap();
    }
    w.flush().unwrap();
    let n = node.api();
    let rest = std::thread::spawn(move || testkit_post(&n, json!({"receiver": "molasses", "content": "rest"})));
    let n = node.api();
    let agent = std::thread::spawn(move || testkit_post(&n, json!({"receiver": "asker", "content": format!("molasses {PATIENCE_MS} queued")})));
    std::thread::sleep(Duration::from_millis(200));
    let (status, v) = node.delete("/v1/agents/molasses");
    assert_eq!(status, 204, "{v}");

    assert_eq!(outcome(&rest.join().unwrap()), failure("undeployed"), "the REST caller waiting on it");
    let (status, v) = agent.join().unwrap();
    assert_eq!((status, v["content"].as_str()), (200, Some("failed undeployed")), "the agent waiting on it: {v}");
    // Handled (by the one instance, in order) or failed back; nothing else.
    let handled_total = metric_sum(&node, "caxton_messages_processed_total") as u64;
    let asker_handled = node.agent("asker")["messages_handled"].as_u64().unwrap();
    let handled = handled_total - asker_handled;
    assert!(handled < SENT, "the undeploy came while messages waited ({handled} handled)");
    let mut failed = HashSet::new();
    read_until(&mut r, |e| {
        assert_eq!((e.performative(), e.content()), (Performative::Failure, &b"undeployed"[..]));
        let id = e.header().in_reply_to;
        assert!(id > handled && id <= SENT, "only messages not handled are failed back ({id}, {handled} handled)");
        assert!(failed.insert(id), "once each");
        failed.len() as u64 == SENT - handled
    });
    assert_eq!(metric_sum(&node, "caxton_messages_dropped_total{shard=\"0\",reason=\"undeployed\"}") as u64, SENT - handled + 2);
}

/// POST to a node's API by address (from a thread that holds no `Node`).
fn testkit_post(api: &str, body: Value) -> (u16, Value) {
    caxton_testkit::answer(ureq::post(&format!("http://{api}/v1/messages?reply_timeout_ms={PATIENCE_MS}")).send_json(body))
}

struct Member {
    node: Node,
    cluster: String,
}

const KEY: &str = "conversations-test-key-0123";

fn member(ip: &str, cores: usize, join: Option<&str>) -> Member {
    let cluster = format!("{ip}:{}", free_cluster_port(ip));
    let mut args = vec!["--listen", &cluster, "--cluster-key", KEY];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    let node = Node::launch(NodeSpec { ip: ip.into(), wire: true, ..NodeSpec::new(cores).args(&args) }).unwrap_or_else(|e| panic!("{e}"));
    Member { node, cluster }
}

/// Waits until `from` routes to `agent` on another node: the probe answers.
fn route_known(from: &Node, agent: &str, probe: Value) {
    assert!(eventually(Duration::from_secs(30), || from.post_message(&probe, Some(5000)).0 == 200), "{agent} never became reachable from {}", from.api());
}

#[test]
fn a_killed_node_fails_back_what_was_sent_to_it() {
    let a = member("127.0.0.1", 1, None);
    let mut b = member("127.0.0.2", 1, Some(&a.cluster));
    deploy(&b.node, "far-echo", "examples/agents/echo.wat");
    deploy_file(&a.node, "asker", &example_agent("rust-asker"), 1);
    route_known(&a.node, "far-echo", json!({"receiver": "far-echo", "content": "probe"}));
    // B must know where the asker lives for echo's reply to find it.
    route_known(&b.node, "asker", json!({"receiver": "asker", "content": "nobody 100 probe"}));
    assert_eq!(ask_through_agent(&a.node, "far-echo", PATIENCE_MS, "hi"), "replied inform hi");

    b.node.kill9();
    let began = Instant::now();
    let (mut r, mut w, _, _) = wire::connect(a.node.wire.as_deref().unwrap(), None).unwrap();
    w.send(&Header { reply_with: 31, ..Header::default() }, b"far-echo", b"x").unwrap();
    w.flush().unwrap();
    let n = a.node.api();
    let rest = std::thread::spawn(move || testkit_post(&n, json!({"receiver": "far-echo", "content": "x"})));
    let told = ask_through_agent(&a.node, "far-echo", PATIENCE_MS, "x");

    let down = ["node_down", "link_lost"];
    assert!(
        down.iter().any(|d| told == format!("failed {d}")) || told == "refused_at_send host call refused: the receiver's node is down",
        "the agent is told: {told}"
    );
    let (status, v) = rest.join().unwrap();
    let rest_told = (status == 200 && v["performative"] == "failure" && down.contains(&v["content"].as_str().unwrap_or("")))
        || (status == 503 && v["error"]["code"] == "node_unavailable");
    assert!(rest_told, "the REST caller is told: {status} {v}");
    read_until(&mut r, |e| {
        assert_eq!((e.header().in_reply_to, e.performative()), (31, Performative::Failure));
        assert!(down.iter().any(|d| d.as_bytes() == e.content()), "{:?}", String::from_utf8_lossy(e.content()));
        true
    });
    assert!(began.elapsed() < Duration::from_millis(PATIENCE_MS), "by the failure detector, not a time-out");
    drop(a);
}

#[test]
fn timers_survive_kill_9_fire_in_order_and_are_bounded_per_instance() {
    let mut node = with_wire(1, &[]);
    deploy_file(&node, "reminder", &example_agent("rust-reminder"), 1);
    let say = |node: &Node, text: &str| {
        let (status, v) = post(node, json!({"receiver": "reminder", "content": text}));
        assert_eq!(status, 200, "{text}: {v}");
        (v["performative"].as_str().unwrap().to_string(), v["content"].as_str().unwrap().to_string())
    };
    let set = |node: &Node, text: &str| say(node, text).1.strip_prefix("set ").expect("set").to_string();
    set(&node, "remind 2500 b");
    set(&node, "remind 2000 a");
    let never = set(&node, "remind 600000 never");
    assert_eq!(say(&node, &format!("cancel {never}")).1, "cancelled");
    set(&node, "remind 1500 c");
    // Each "set" was answered after its commit: kill -9 now loses nothing.
    node.kill9_and_restart();
    assert!(eventually(Duration::from_secs(20), || say(&node, "list").1 == "c,a,b"), "fired in due order after the restart: {:?}", say(&node, "list"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(say(&node, "list").1, "c,a,b", "each once, the cancelled one never");

    // The bound: TIMERS_PER_INSTANCE_MAX pending, then refused.
    const TIMERS_MAX: u64 = 1024;
    let (mut r, mut w, _, _) = wire::connect(node.wire.as_deref().unwrap(), None).unwrap();
    for i in 1..=TIMERS_MAX + 1 {
        w.send(&Header { reply_with: i, ..Header::default() }, b"reminder", b"remind 600000 later").unwrap();
    }
    w.flush().unwrap();
    let (mut set_count, mut refused) = (0, Vec::new());
    let mut answered = 0;
    read_until(&mut r, |e| {
        match e.performative() {
            Performative::Inform => set_count += 1,
            Performative::Refuse => refused.push(String::from_utf8_lossy(e.content()).into_owned()),
            other => panic!("{other:?}"),
        }
        answered += 1;
        answered == TIMERS_MAX + 1
    });
    assert_eq!((set_count, refused), (TIMERS_MAX, vec!["host call refused: over a limit".to_string()]));
    assert!(metric_sum(&node, "caxton_timers_scheduled") >= TIMERS_MAX as f64);
    node.kill9_and_restart();
    assert_eq!(say(&node, "remind 1 more").0, "refuse", "the pending timers came back with the restart, and with them the bound");
}

#[test]
fn a_contract_net_over_two_nodes_ends_every_round_with_the_right_winner() {
    let a = member("127.0.0.1", 2, None);
    let b = member("127.0.0.2", 2, Some(&a.cluster));
    let bidder = example_agent("rust-bidder");
    let mut bidders: Vec<String> = (0..18).map(|i| format!("bidder-{i:02}")).collect();
    bidders.extend(["bidder-crash".to_string(), "bidder-late".to_string()]);
    for (i, name) in bidders.iter().enumerate() {
        let on_b = name == "bidder-crash" || (name != "bidder-late" && i % 2 == 1);
        let node = if on_b { &b.node } else { &a.node };
        if name == "bidder-crash" {
            // It crashes on every cfp: a policy that restarts it at once each
            // time, so that every round sees its crash (not a backoff or a
            // quarantine, which tests/lifecycle.rs covers).
            let body = std::fs::read(&bidder).unwrap();
            let path = format!("/v1/agents/{name}?restart_immediate=10000&quarantine_after=10000");
            assert_eq!(common::answer(node.request("PUT", &path).send_bytes(&body)).0, 201);
            continue;
        }
        deploy_file(node, name, &bidder, 1);
    }
    deploy_file(&a.node, "manager", &example_agent("rust-manager"), 1);
    let shards: HashSet<u64> = bidders.iter().filter_map(|n| a.node.get(&format!("/v1/agents/{n}")).1["shards"][0].as_u64()).collect();
    assert_eq!(shards.len(), 2, "the bidders on one node are spread over its shards");
    for name in bidders.iter().filter(|n| !n.starts_with("bidder-crash") && !n.starts_with("bidder-late")) {
        route_known(&a.node, name, json!({"receiver": name, "performative": "cfp", "content": "probe"}));
    }
    route_known(&a.node, "bidder-crash", json!({"receiver": "bidder-crash", "performative": "cfp", "content": "probe"}));
    // And B knows where the manager lives, for its bidders' answers.
    route_known(&b.node, "manager", json!({"receiver": "manager", "content": "probe 100 "}));

    let normal: Vec<&String> = bidders.iter().filter(|n| n.starts_with("bidder-0") || n.starts_with("bidder-1")).collect();
    let expected = |task: &str| {
        let (p, w) = normal.iter().map(|n| (price(n, task), n.as_str())).min().unwrap();
        format!("winner={w} price={p} result=done by {w} failed=bidder-crash:crashed_handler late=bidder-late")
    };
    let list = bidders.join(",");
    const DEADLINE_MS: u64 = 1500;
    let rounds: Vec<_> = (0..6)
        .map(|k| {
            let (api, list) = (a.node.api(), list.clone());
            std::thread::spawn(move || {
                let task = format!("task-{k}");
                let began = Instant::now();
                let answer = testkit_post(&api, json!({"receiver": "manager", "content": format!("{task} {DEADLINE_MS} {list}"), "conversation_id": 100 + k}));
                (task, answer, began.elapsed())
            })
        })
        .collect();
    for round in rounds {
        let (task, (status, v), took) = round.join().unwrap();
        assert_eq!((status, v["content"].as_str().unwrap_or("")), (200, expected(&task).as_str()), "{task}: {v}");
        assert!(took < Duration::from_millis(PATIENCE_MS / 3), "{task} ended by its deadline, took {took:?}");
    }

    // From a wire client: one answer per round, never two.
    let (mut r, mut w, _, _) = wire::connect(a.node.wire.as_deref().unwrap(), None).unwrap();
    for k in 0..4u64 {
        let content = format!("wire-{k} {DEADLINE_MS} {list}");
        w.send(&Header { reply_with: 500 + k, conversation_id: 500 + k, ..Header::default() }, b"manager", content.as_bytes()).unwrap();
    }
    w.flush().unwrap();
    let mut answered = HashSet::new();
    read_until(&mut r, |e| {
        let k = e.header().in_reply_to - 500;
        assert_eq!(String::from_utf8_lossy(e.content()), expected(&format!("wire-{k}")));
        assert!(answered.insert(k), "round {k} answered twice");
        answered.len() == 4
    });
    assert!(metric_sum(&b.node, "caxton_failure_notices_total") >= 10.0, "the crashing bidder's failures were sent from its node");
}

#[test]
fn a_handler_error_is_answered_at_once_and_logged_within_the_log_budget() {
    let node = Node::start_with(1, &["--agent-log-lines-per-s", "1"]);
    deploy(&node, "crashy", "tests/agents/crashy.wat");
    // Its handler returns 7 for "fail": the waiting caller hears so at once,
    // not at its deadline.
    let began = std::time::Instant::now();
    assert_eq!(outcome(&post(&node, json!({"receiver": "crashy", "content": "fail"}))), failure("handler_error"));
    assert!(began.elapsed() < std::time::Duration::from_secs(5), "answered, not timed out: {:?}", began.elapsed());
    // A flood of failures: every caller is told, the log keeps to its budget.
    for _ in 0..50 {
        assert_eq!(outcome(&post(&node, json!({"receiver": "crashy", "content": "fail"}))), failure("handler_error"));
    }
    let (status, logs) = node.get("/v1/agents/crashy/logs?lines=1000");
    assert_eq!(status, 200);
    let lines: Vec<&Value> = logs["lines"].as_array().unwrap().iter().filter(|l| l["source"] == "node").collect();
    assert!(!lines.is_empty() && lines.len() <= 25, "logged within the budget (a burst of 10, a line a second): {} lines", lines.len());
    assert!(lines[0]["text"].as_str().unwrap().contains("returned error 7"), "{}", lines[0]);
    assert_eq!(metric_sum(&node, "caxton_failure_notices_total{shard=\"0\",reason=\"handler_error\"}"), 51.0);
    // The CLI exits 1 on it, saying who failed and why.
    let out = node.cli(&["message", "send", "--to", "crashy", "--content", "fail", "--wait-reply", "5000"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("failure from @node: handler_error"), "{out:?}");
    // A message that asked for no reply gets no notice.
    assert_eq!(node.post_message(&json!({"receiver": "crashy", "content": "fail"}), None).0, 202);
    assert!(common::eventually(std::time::Duration::from_secs(5), || node.agent("crashy")["errors"] == 53), "{}", node.agent("crashy"));
}
