//! A cluster of real `caxton serve` processes on 127.0.0.x: membership,
//! routing across nodes, node failure and return, and the cluster key.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use caxton_cluster::session::Session;
use caxton_cluster::KeyRing;
use common::cluster::{members, state_and_boot as state_of};
use common::{eventually, free_cluster_port, repo_path, Node};
use serde_json::{json, Value};

const KEY: &str = "cluster-test-key-0123456789";

struct Member {
    node: Node,
    /// Cluster address (gossip and links), also the node's name.
    cluster: String,
}

/// Shards of each member.
const SHARDS: usize = 2;

fn start_member(ip: &str, join: Option<&str>, key: &str) -> Member {
    start_member_with(ip, join, key, &[])
}

fn start_member_with(ip: &str, join: Option<&str>, key: &str, extra: &[&str]) -> Member {
    let cluster = format!("{ip}:{}", free_cluster_port(ip));
    let mut args = vec!["--listen", &cluster, "--cluster-key", key];
    args.extend(extra);
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    Member { node: Node::start_on(ip, SHARDS, &args), cluster }
}

fn alive(n: &Node) -> usize {
    members(n).iter().filter(|m| m["state"] == "alive").count()
}

fn metric(n: &Node, line_prefix: &str) -> f64 {
    n.metrics().lines().filter(|l| l.starts_with(line_prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn send(from: &Node, receiver: &str, content: &str) -> (u16, Value) {
    from.post_message(&json!({ "receiver": receiver, "content": content }), Some(3000))
}

fn converge(all: &[&Member]) {
    for m in all {
        assert!(eventually(Duration::from_secs(30), || alive(&m.node) == all.len()), "{} sees {:?}", m.cluster, members(&m.node));
    }
}

#[test]
fn three_nodes_join_route_fail_fast_and_rejoin() {
    let a = start_member("127.0.0.1", None, KEY);
    let mut b = start_member("127.0.0.2", Some(&a.cluster), KEY);
    let c = start_member("127.0.0.3", Some(&a.cluster), KEY);
    converge(&[&a, &b, &c]);
    // Membership reaches every shard of every node.
    for m in [&a, &b, &c] {
        assert!(eventually(Duration::from_secs(5), || metric(&m.node, "caxton_shard_cluster_nodes{shard=\"0\",state=\"alive\"}") == 2.0
            && metric(&m.node, "caxton_shard_cluster_nodes{shard=\"1\",state=\"alive\"}") == 2.0));
    }
    let listed = String::from_utf8(a.node.cli(&["cluster", "members"]).stdout).unwrap();
    for m in [&a, &b, &c] {
        assert!(listed.contains(&m.cluster), "{listed}");
    }

    // Deploys: where the request lands, or on the node `--node` names.
    assert_eq!(b.node.deploy("echo", "examples/agents/echo.wat", 2).0, 201);
    assert_eq!(b.node.deploy("relay-b", "examples/agents/relay.wat", 1).0, 201);
    assert_eq!(b.node.deploy("moved", "examples/agents/echo.wat", 1).0, 201);
    assert_eq!(c.node.deploy("echo-c", "examples/agents/echo.wat", 1).0, 201);
    let relay = repo_path("examples/agents/relay.wat");
    let out = a.node.cli(&["agent", "deploy", relay.to_str().unwrap(), "--name", "relay-c", "--node", &c.cluster]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(c.node.get("/v1/agents/relay-c").0 == 200, "deployed on C, not on A");
    let local = |n: &Node| n.get("/v1/agents").1["agents"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(!local(&a.node).contains(&"relay-c".to_string()));
    // Any node answers for any agent: its detail and logs are read on its
    // node (issue 29), and the cluster's list names every agent's node.
    assert!(eventually(Duration::from_secs(10), || a.node.get("/v1/agents/relay-c").0 == 200));
    let (status, detail) = a.node.get("/v1/agents/relay-c");
    assert_eq!((status, detail["name"].as_str(), detail["instances"].as_u64()), (200, Some("relay-c"), Some(1)), "{detail}");
    assert_eq!(a.node.get("/v1/agents/relay-c/logs?lines=5").0, 200);
    let out = a.node.cli(&["agent", "get", "relay-c"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(a.node.get("/v1/agents/nobody").0, 404);
    assert!(eventually(Duration::from_secs(10), || {
        let all = a.node.get("/v1/agents?cluster=true").1;
        let node_of = |name: &str| all["agents"].as_array().unwrap().iter().find(|x| x["name"] == name).map(|x| x["node"].clone());
        node_of("echo") == Some(json!(b.cluster)) && node_of("relay-c") == Some(json!(c.cluster)) && node_of("echo-c") == Some(json!(c.cluster))
    }));
    let listed = String::from_utf8(a.node.cli(&["agent", "list", "--cluster"]).stdout).unwrap();
    assert!(listed.lines().any(|l| l.starts_with("relay-c ") && l.contains(&c.cluster) && l.contains("alive")), "{listed}");

    // A message to any name, from any node, once the registry has spread.
    assert!(eventually(Duration::from_secs(10), || send(&a.node, "echo", "ping").0 == 200));
    assert_eq!(send(&a.node, "echo", "ping").1["content"], "ping");
    assert!(eventually(Duration::from_secs(10), || send(&c.node, "echo", "from c").1["content"] == "from c"));
    // Agent to agent across three nodes: A's API -> relay-b (B) -> relay-c (C) -> back to A.
    assert!(eventually(Duration::from_secs(10), || send(&a.node, "relay-b", "relay-c").1["content"] == "done"));
    // The registry is cached in A's SQLite.
    let db = rusqlite::Connection::open(a.node.dir.path().join("data/node.db")).unwrap();
    let node: String = db.query_row("SELECT node FROM routes WHERE agent = 'echo' AND present", [], |r| r.get(0)).unwrap();
    assert_eq!(node, b.cluster);
    assert!(metric(&a.node, "caxton_messages_routed_node_total") >= 3.0, "two to echo, one to relay-b");
    assert!(metric(&b.node, "caxton_messages_received_node_total") >= 3.0);

    // kill -9 B: marked down everywhere, its agents fail fast.
    let link_failures = |n: &Node| n.logs().lines().filter(|l| l.contains("link connection failed") || l.contains("cannot open a link")).count();
    let failures_before = link_failures(&a.node);
    let killed = Instant::now();
    b.node.kill9();
    for m in [&a, &c] {
        assert!(eventually(Duration::from_secs(40), || state_of(&m.node, &b.cluster).0 == "down"), "{:?}", members(&m.node));
        assert!(eventually(Duration::from_secs(5), || metric(&m.node, "caxton_shard_cluster_nodes{shard=\"1\",state=\"down\"}") == 1.0));
        // Named, for the alert that says which member is down.
        let down = format!("caxton_cluster_member_up{{member=\"{}\"}} 0", b.cluster);
        assert!(m.node.metrics().contains(&down), "{down}");
    }
    // Its links failed on every slot, again and again until it was down:
    // each shard logs that at most once a second for the peer, with a count.
    let failures = link_failures(&a.node) - failures_before;
    let most = SHARDS * (killed.elapsed().as_secs() as usize + 1);
    assert!(failures <= most, "{failures} link failure lines in {:?}, at most {most}", killed.elapsed());
    let started = Instant::now();
    let (status, v) = send(&a.node, "echo", "anyone?");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "node_unavailable");
    assert!(started.elapsed() < Duration::from_secs(1), "fails fast, not at the reply timeout");
    assert!(metric(&a.node, "caxton_node_unavailable_total") >= 1.0);
    // Live nodes are not affected.
    assert_eq!(send(&a.node, "echo-c", "still here").1["content"], "still here");
    // A deploy aimed at the down node is refused at once.
    let echo = repo_path("examples/agents/echo.wat");
    let out = a.node.cli(&["agent", "deploy", echo.to_str().unwrap(), "--name", "late", "--node", &b.cluster]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is down"), "{}", String::from_utf8_lossy(&out.stderr));
    // A name whose node is down may be deployed elsewhere; it moves there.
    assert_eq!(c.node.deploy("moved", "examples/agents/echo.wat", 1).0, 201);
    assert!(eventually(Duration::from_secs(10), || send(&a.node, "moved", "to c").1["content"] == "to c"));

    // Stopping an agent from another node is forwarded to its node, and
    // the undeploy reaches every node: the name is gone everywhere.
    let out = a.node.cli(&["agent", "stop", "echo-c"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.node.get("/v1/agents/echo-c").0, 404);
    assert!(eventually(Duration::from_secs(10), || send(&a.node, "echo-c", "gone?").0 == 404));

    // B comes back (same data dir): it rejoins, its agents are routable again.
    b.node.restart();
    assert!(eventually(Duration::from_secs(30), || state_of(&a.node, &b.cluster) == ("alive".into(), 2)), "{:?}", members(&a.node));
    assert!(eventually(Duration::from_secs(10), || send(&a.node, "echo", "welcome back").1["content"] == "welcome back"));
    assert!(eventually(Duration::from_secs(10), || send(&c.node, "relay-b", "relay-c").1["content"] == "done"));
    // The returning node's older copy of `moved` does not take the name back.
    let handled = |n: &Node| n.agent("moved")["messages_handled"].as_u64().unwrap();
    let before = handled(&c.node);
    assert_eq!(send(&a.node, "moved", "still c").1["content"], "still c");
    assert_eq!(handled(&c.node), before + 1);
    assert_eq!(handled(&b.node), 0);
}

/// Issue 29: a member gone for good stops being listed (and its alert
/// series goes), on the operator's word or after the reap time, with the
/// names it hosted; a late broadcast does not bring them back, and the node
/// is heard again when it does come back.
#[test]
fn a_member_gone_for_good_is_forgotten_everywhere_until_it_comes_back() {
    let a = start_member("127.0.0.1", None, KEY);
    let mut b = start_member("127.0.0.2", Some(&a.cluster), KEY);
    // C reaps a member down for a second; A keeps the default (24 h).
    let c = start_member_with("127.0.0.3", Some(&a.cluster), KEY, &["--cluster-reap-after", "1s"]);
    converge(&[&a, &b, &c]);
    assert_eq!(b.node.deploy("far", "examples/agents/echo.wat", 1).0, 201);
    assert!(eventually(Duration::from_secs(10), || send(&a.node, "far", "ping").1["content"] == "ping"));

    // A live member is not forgotten.
    let out = a.node.cli(&["cluster", "forget", &b.cluster, "--here-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is alive"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(a.node.delete(&format!("/v1/cluster/members/{}", "127.0.0.9:1")).0, 404, "an unknown node");
    assert_eq!(a.node.delete("/v1/cluster/members/not-an-address").0, 400);

    b.node.kill9();
    assert!(eventually(Duration::from_secs(40), || state_of(&a.node, &b.cluster).0 == "down"), "{:?}", members(&a.node));
    // C reaps it by itself, a second after it saw it down.
    assert!(eventually(Duration::from_secs(40), || state_of(&c.node, &b.cluster).0 == "absent"), "{:?}", members(&c.node));
    assert!(c.node.logs().contains("down for --cluster-reap-after"));
    assert_eq!(send(&c.node, "far", "anyone?").0, 404, "its names route nowhere");
    let series = format!("caxton_cluster_member_up{{member=\"{}\"}}", b.cluster);
    assert!(a.node.metrics().contains(&series));

    // The operator forgets it through A: on A and on every member A lists.
    let out = a.node.cli(&["cluster", "forget", &b.cluster]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("forgot {} (1 agent name routed there)", b.cluster)), "{stdout}");
    assert!(stdout.contains("nothing to forget"), "C had reaped it: {stdout}");
    assert_eq!(state_of(&a.node, &b.cluster).0, "absent");
    assert!(!a.node.metrics().contains(&series), "no series names it");
    let (status, v) = send(&a.node, "far", "anyone?");
    assert_eq!(status, 404, "not node_unavailable any more: {v}");
    let db = rusqlite::Connection::open(a.node.dir.path().join("data/node.db")).unwrap();
    let cached: i64 = db.query_row("SELECT count(*) FROM routes WHERE node = ?1", [&b.cluster], |r| r.get(0)).unwrap();
    assert_eq!(cached, 0, "nor does the route cache");
    // Nothing brings it back while it is away (gossip passes items on for
    // a few rounds, and members resync).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((state_of(&a.node, &b.cluster).0, send(&a.node, "far", "?").0), ("absent".to_string(), 404));

    // Back (same data dir): heard again, its names with it, on both.
    b.node.restart();
    for m in [&a, &c] {
        assert!(eventually(Duration::from_secs(30), || state_of(&m.node, &b.cluster).0 == "alive"), "{:?}", members(&m.node));
        assert!(eventually(Duration::from_secs(10), || send(&m.node, "far", "back").1["content"] == "back"));
    }
}

#[test]
fn a_node_that_leaves_gracefully_is_gone_from_every_view_within_two_seconds() {
    let a = start_member("127.0.0.1", None, KEY);
    let b = start_member("127.0.0.2", Some(&a.cluster), KEY);
    let mut c = start_member("127.0.0.3", Some(&b.cluster), KEY);
    converge(&[&a, &b, &c]);
    let started = Instant::now();
    c.node.terminate();
    let gone = |n: &Node| state_of(n, &c.cluster).0 != "alive";
    assert!(eventually(Duration::from_secs(5), || gone(&a.node) && gone(&b.node)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // It asked to leave: being counted down is no news worth a warning.
    assert!(!c.node.logs().contains("declared this node down"), "{}", c.node.logs());
}

fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn a_node_or_connection_without_the_key_is_refused_and_counted() {
    let a = start_member("127.0.0.1", None, KEY);
    let b = start_member("127.0.0.2", Some(&a.cluster), KEY);
    converge(&[&a, &b]);
    let intruder = start_member("127.0.0.4", Some(&a.cluster), "not-the-cluster-key-at-all");
    assert!(eventually(Duration::from_secs(10), || metric(&a.node, "caxton_gossip_refused_total{reason=\"bad_key\"}") >= 2.0));
    assert_eq!(state_of(&a.node, &intruder.cluster).0, "absent");
    assert_eq!(alive(&intruder.node), 1, "it sees no one: {:?}", members(&intruder.node));
    // Neither side is silent about it: the member names the address it
    // refuses, the intruder says no one answers (after its first 5 s).
    assert!(eventually(Duration::from_secs(5), || a.node.logs().contains("gossip refused: sealed with a key this node does not hold")), "{}", a.node.logs());
    assert!(a.node.logs().contains("127.0.0.4"), "the sender named");
    assert!(eventually(Duration::from_secs(15), || intruder.node.logs().contains("no member of the cluster answers")), "{}", intruder.node.logs());

    // A link handshake with a forged first record is closed and counted.
    let right = KeyRing::new(KEY.as_bytes(), None).unwrap();
    let (mut forged, _) = common::link_client(&a.cluster, &right, true);
    assert!(closed_by_peer(&mut forged));
    assert!(eventually(Duration::from_secs(5), || metric(&a.node, "caxton_link_refused_total{shard=\"0\",reason=\"bad_key\"}")
        + metric(&a.node, "caxton_link_refused_total{shard=\"1\",reason=\"bad_key\"}")
        >= 1.0));

    // A malformed frame, sealed as it should be, closes that connection only.
    let (mut garbled, mut keys) = common::link_client(&a.cluster, &right, false);
    let mut record = Vec::new();
    keys.sealer.seal(&[9, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &mut record);
    garbled.write_all(&record).unwrap();
    assert!(closed_by_peer(&mut garbled));
    assert!(eventually(Duration::from_secs(5), || metric(&a.node, "caxton_link_refused_total{") >= 2.0));
    assert_eq!(a.node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert!(eventually(Duration::from_secs(10), || send(&b.node, "echo", "fine").1["content"] == "fine"), "links still work");
    let m = a.node.metrics();
    assert!(m.contains("caxton_cluster_members{state=\"alive\"} 2"), "{m}");
    assert!(m.contains(&format!("caxton_cluster_member_up{{member=\"{}\"}} 1", b.cluster)), "each member by address: {m}");
    common::promtool_check(&m);
}

/// A network namespace joined to this one by a veth pair, removed on drop.
/// The host side is `10.213.<n>.1`, the namespace side `10.213.<n>.2`.
struct Netns {
    name: String,
    host_if: String,
    subnet: u32,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("iproute2's `ip` (scripts/setup.sh installs it)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id();
        let n = Netns { name: format!("cxt-{id}"), host_if: format!("cxh{}", id % 100_000), subnet: id % 250 + 1 };
        let peer = format!("cxn{}", id % 100_000);
        ip(&["netns", "add", &n.name]);
        ip(&["link", "add", &n.host_if, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &n.name]);
        ip(&["addr", "add", &format!("{}/24", n.host_addr()), "dev", &n.host_if]);
        ip(&["link", "set", &n.host_if, "up"]);
        ip(&["netns", "exec", &n.name, "ip", "addr", "add", &format!("{}/24", n.inner_addr()), "dev", &peer]);
        ip(&["netns", "exec", &n.name, "ip", "link", "set", &peer, "up"]);
        ip(&["netns", "exec", &n.name, "ip", "link", "set", "lo", "up"]);
        n
    }

    fn host_addr(&self) -> String {
        format!("10.213.{}.1", self.subnet)
    }

    fn inner_addr(&self) -> String {
        format!("10.213.{}.2", self.subnet)
    }

    /// Cuts (`false`) or restores (`true`) the link between the two sides.
    fn set_connected(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

#[test]
fn a_cut_network_marks_the_far_node_down_and_healing_brings_it_back() {
    let ns = Netns::create();
    let a_cluster = format!("{}:{}", ns.host_addr(), free_cluster_port(&ns.host_addr()));
    let a = Node::start_on("127.0.0.1", 1, &["--listen", &a_cluster, "--cluster-key", KEY]);
    // B lives in the namespace; its API is reached over the veth, with a token.
    let b_cluster = format!("{}:7946", ns.inner_addr());
    // (A non-loopback API needs TLS as well: the test CA's.)
    let b = Node::launch(caxton_testkit::node::NodeSpec {
        wrap: ["ip", "netns", "exec", &ns.name].iter().map(|s| s.to_string()).collect(),
        ip: ns.inner_addr(),
        api_port: Some(7070),
        token: Some("partition-test-token-0123456789ab".into()),
        tls: true,
        ..caxton_testkit::node::NodeSpec::new(1).args(&["--listen", &b_cluster, "--join", &a_cluster, "--cluster-key", KEY])
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(eventually(Duration::from_secs(30), || alive(&a) == 2 && alive(&b) == 2), "{:?}", members(&a));
    assert_eq!(b.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert!(eventually(Duration::from_secs(10), || send(&a, "echo", "over the veth").1["content"] == "over the veth"));

    ns.set_connected(false);
    assert!(eventually(Duration::from_secs(40), || state_of(&a, &b_cluster).0 == "down"), "{:?}", members(&a));
    let (status, v) = send(&a, "echo", "cut off");
    assert_eq!(status, 503, "{v}");

    ns.set_connected(true);
    assert!(eventually(Duration::from_secs(40), || state_of(&a, &b_cluster).0 == "alive"), "{:?}", members(&a));
    assert!(eventually(Duration::from_secs(10), || send(&a, "echo", "healed").1["content"] == "healed"));
    assert!(eventually(Duration::from_secs(10), || state_of(&b, &a_cluster).0 == "alive"), "{:?}", members(&b));
}

fn wire_frame(s: &mut TcpStream, bytes: &[u8]) {
    common::wire::write_frame(s, bytes).unwrap();
}

fn read_wire_frame(s: &mut TcpStream) -> Vec<u8> {
    common::wire::read_frame(s).expect("a frame within the read timeout (a message lost?)").expect("a frame, not the end")
}

/// Node A (2 shards, with a wire listener) and member B hosting `echo`
/// with `instances`, and a wire client on A past its hello.
fn wire_client_to_echo_on_b(instances: u32, read_timeout: Duration) -> (Node, Member, TcpStream) {
    let wire = format!("127.0.0.1:{}", free_cluster_port("127.0.0.1"));
    let a_cluster = format!("127.0.0.1:{}", free_cluster_port("127.0.0.1"));
    let a = Node::start_on("127.0.0.1", 2, &["--listen", &a_cluster, "--cluster-key", KEY, "--wire", &wire]);
    let b = start_member("127.0.0.2", Some(&a_cluster), KEY);
    assert!(eventually(Duration::from_secs(30), || alive(&a) == 2 && alive(&b.node) == 2));
    assert_eq!(b.node.deploy("echo", "examples/agents/echo.wat", instances).0, 201);
    assert!(eventually(Duration::from_secs(10), || send(&a, "echo", "ready").0 == 200));
    let mut s = TcpStream::connect(&wire).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    wire_frame(&mut s, b"caxton-wire/1");
    let hello = String::from_utf8(read_wire_frame(&mut s)).unwrap();
    assert!(hello.starts_with("caxton-wire/1 ok"), "{hello}");
    (a, b, s)
}

#[test]
fn one_conversation_keeps_its_order_across_nodes() {
    // A wire client on A sends one conversation to `echo` on B; the replies
    // come back over the other link, in the order sent.
    let (_a, _b, mut s) = wire_client_to_echo_on_b(3, Duration::from_secs(20));
    const N: u32 = 2_000;
    let header = caxton_shards::Header { conversation_id: 77, ..Default::default() };
    for i in 0..N {
        let m = caxton_shards::Message::encode(&header, b"", b"echo", &i.to_le_bytes()).unwrap();
        wire_frame(&mut s, m.as_bytes());
    }
    for i in 0..N {
        let reply = caxton_shards::Message::decode(read_wire_frame(&mut s)).unwrap();
        assert_eq!(reply.content(), i.to_le_bytes(), "reply {i} out of order");
        assert_eq!(reply.conversation_id(), 77);
    }
}

/// Kills both ends of every established TCP connection to `addr` (`ss -K`,
/// iproute2; needs root), so bytes not yet read on either side are gone.
fn kill_connections_to(addr: &str) {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    for (host, side) in [("dst", "dport"), ("src", "sport")] {
        let out = std::process::Command::new("ss").args(["-K", "state", "established", host, ip, side, "=", port]).output().expect("iproute2's `ss`");
        assert!(out.status.success(), "ss -K: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn connections_broken_between_live_nodes_lose_nothing_and_keep_order() {
    // A generous read timeout: on a loaded machine the stream may pause
    // (reconnects back off); the test is about nothing lost, not speed.
    let (a, b, mut s) = wire_client_to_echo_on_b(1, Duration::from_secs(60));
    let a_cluster = a.extra_arg("--listen");
    // Fewer than a node's outbox holds (16,384 per shard), so that no send
    // is refused as busy: then every one must arrive.
    const N: u32 = 12_000;
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let header = caxton_shards::Header { conversation_id: 5, ..Default::default() };
        for i in 0..N {
            let m = caxton_shards::Message::encode(&header, b"", b"echo", &i.to_le_bytes()).unwrap();
            wire_frame(&mut w, m.as_bytes());
            if i % 1_000 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    // Freeze B so that frames pile up unacknowledged in both socket buffers,
    // then break the links both ways (the buffered bytes are gone), then
    // let B go on: A must send the unacknowledged again.
    let connects_before = metric(&a, "caxton_link_connects_total") + metric(&b.node, "caxton_link_connects_total");
    let b_pid = b.node.child.as_ref().unwrap().id() as i32;
    let (to_b, to_a) = (b.cluster.clone(), a_cluster.clone());
    let breaker = std::thread::spawn(move || {
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: kill(2) on a child process of this test.
            unsafe { libc::kill(b_pid, libc::SIGSTOP) };
            std::thread::sleep(Duration::from_millis(300));
            kill_connections_to(&to_b);
            kill_connections_to(&to_a);
            // SAFETY: as above.
            unsafe { libc::kill(b_pid, libc::SIGCONT) };
        }
    });
    let mut seen = vec![false; N as usize];
    let (mut first_seen, mut last_first) = (0u32, None::<u32>);
    // On a failure, say what each node was doing, or that it was gone: a
    // diagnostic that itself fails hides the cause.
    let diagnose = |a: &Node, b: &Node| {
        let m = |n: &Node| match n.request("GET", "/metrics").timeout(Duration::from_secs(5)).call().map(|r| r.into_string().unwrap_or_default()) {
            Ok(text) => text
                .lines()
                .filter(|l| l.contains("link_") || l.contains("node_total") || l.contains("queue_depth") || l.contains("processed") || l.contains("busy"))
                .map(String::from)
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("(no metrics: {e})"),
        };
        let logs = |n: &Node| {
            n.logs()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("member") || l.contains("panicked") || l.contains("abort"))
                .map(String::from)
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!("A metrics:\n{}\nB metrics:\n{}\nA logs:\n{}\nB logs:\n{}", m(a), m(b), logs(a), logs(b))
    };
    while first_seen < N {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            panic!("no reply within 60 s after {first_seen} of {N}:\n{}", diagnose(&a, &b.node));
        }
        let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut frame).unwrap();
        let reply = caxton_shards::Message::decode(frame).unwrap();
        let i = u32::from_le_bytes(reply.content().try_into().unwrap());
        if !std::mem::replace(&mut seen[i as usize], true) {
            assert!(last_first.is_none_or(|l| i > l), "first arrivals keep the order sent: {i} after {last_first:?}");
            last_first = Some(i);
            first_seen += 1;
        }
    }
    writer.join().unwrap();
    breaker.join().unwrap();
    let reconnects = metric(&a, "caxton_link_connects_total") + metric(&b.node, "caxton_link_connects_total") - connects_before;
    assert!(reconnects >= 2.0, "the links were broken and reopened mid-stream ({reconnects} reconnects)");
    assert_eq!(
        metric(&b.node, "caxton_messages_dropped_total{shard=\"0\",reason=\"link_lost\"}")
            + metric(&b.node, "caxton_messages_dropped_total{shard=\"1\",reason=\"link_lost\"}"),
        0.0
    );
    assert_eq!(
        metric(&a, "caxton_messages_dropped_total{shard=\"0\",reason=\"link_lost\"}")
            + metric(&a, "caxton_messages_dropped_total{shard=\"1\",reason=\"link_lost\"}"),
        0.0
    );
}

#[test]
fn idle_links_close_and_reopen_and_inbound_links_are_capped() {
    let a_cluster = format!("127.0.0.1:{}", free_cluster_port("127.0.0.1"));
    let a = Node::start_on(
        "127.0.0.1",
        2,
        &["--listen", &a_cluster, "--cluster-key", KEY, "--idle-connection-timeout-ms", "1000", "--max-connections-per-node", "2"],
    );
    let b = start_member("127.0.0.2", Some(&a_cluster), KEY);
    assert!(eventually(Duration::from_secs(30), || alive(&a) == 2 && alive(&b.node) == 2));
    assert_eq!(b.node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let ask = || a.post_message(&json!({ "receiver": "echo", "content": "hi", "conversation_id": 9 }), Some(3000));
    assert!(eventually(Duration::from_secs(10), || ask().0 == 200));
    let connects = || metric(&a, "caxton_link_connects_total");
    let opened = connects();
    assert_eq!(ask().0, 200);
    assert_eq!(connects(), opened, "a busy connection stays open");
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(ask().0, 200);
    assert_eq!(connects(), opened + 1.0, "closed after 1 s idle, reopened by the next message");

    // 2 inbound links per node (1 per shard): authenticated connections
    // past that are closed at once and counted.
    let right = KeyRing::new(KEY.as_bytes(), None).unwrap();
    let linked: Vec<(TcpStream, Session)> = (0..6).map(|_| common::link_client(&a_cluster, &right, false)).collect();
    assert!(eventually(Duration::from_secs(5), || metric(&a, "caxton_link_refused_total{shard=\"0\",reason=\"too_many\"}")
        + metric(&a, "caxton_link_refused_total{shard=\"1\",reason=\"too_many\"}")
        >= 4.0));
    drop(linked);
}
