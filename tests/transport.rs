//! Transport security against real `caxton serve` processes (issue 17): a
//! capture of cluster traffic on loopback reveals nothing, altered or
//! replayed link records are refused and counted, a key rotation under
//! traffic loses nothing, API tokens rotate, forwarded requests and the
//! wire listener speak TLS.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caxton_cluster::session::{self, Mode};
use caxton_cluster::KeyRing;
use caxton_shards::envelope::{Header, Message};
use caxton_testkit::node::NodeSpec;
use common::{eventually, free_cluster_port, repo_path, Node};
use serde_json::{json, Value};

const OLD_KEY: &str = "transport-test-key-one-0123456789";
const NEW_KEY: &str = "transport-test-key-two-9876543210";

fn metric(n: &Node, line_prefix: &str) -> f64 {
    n.metrics().lines().filter(|l| l.starts_with(line_prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn link_refused(n: &Node, reason: &str) -> f64 {
    n.metrics()
        .lines()
        .filter(|l| l.starts_with("caxton_link_refused_total{") && l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A member whose keys come from files in its directory, as an operator's
/// would: `key` now, `key-next` during a rotation.
struct Member {
    node: Node,
    cluster: String,
    keys: tempfile::TempDir,
}

impl Member {
    fn start(ip: &str, join: Option<&str>) -> Member {
        Member::start_spec(NodeSpec { ip: ip.into(), ..NodeSpec::new(1) }, join, &[])
    }

    fn start_spec(spec: NodeSpec, join: Option<&str>, extra: &[&str]) -> Member {
        let keys = tempfile::tempdir().unwrap();
        std::fs::write(keys.path().join("key"), OLD_KEY).unwrap();
        let cluster = format!("{}:{}", spec.ip, free_cluster_port(&spec.ip));
        let (key, next) = (keys.path().join("key").display().to_string(), keys.path().join("key-next").display().to_string());
        let mut args = vec!["--listen", &cluster, "--cluster-key-file", &key, "--cluster-key-next-file", &next];
        if let Some(j) = join {
            args.extend(["--join", j]);
        }
        args.extend(extra);
        let node = Node::launch(spec.args(&args)).unwrap_or_else(|e| panic!("{e}"));
        Member { node, cluster, keys }
    }

    fn sighup(&self) {
        let pid = self.node.child.as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) with a pid of a child this test owns.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }

    fn alive(&self) -> usize {
        let (_, v) = self.node.get("/v1/cluster/members");
        v["members"].as_array().map_or(0, |m| m.iter().filter(|m| m["state"] == "alive").count())
    }
}

fn converge(all: &[&Member]) {
    for m in all {
        assert!(eventually(Duration::from_secs(30), || m.alive() == all.len()), "{} does not see every member", m.cluster);
    }
}

fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue, // an acknowledgement still in flight
        }
    }
}

/// One link frame: a message for `receiver`.
fn frame(receiver: &str, content: &[u8]) -> Vec<u8> {
    let m = Message::encode(&Header { message_id: 1, ..Default::default() }, b"prober", receiver.as_bytes(), content).unwrap();
    let mut f = Vec::new();
    caxton_shards::link::frame::push_frame(&mut f, &m);
    f
}

/// A captured TCP or UDP payload: source port, destination port, bytes.
type Packet = (u16, u16, Vec<u8>);

/// Captures every packet on the loopback interface (`AF_PACKET`, root) on
/// a thread until dropped; hands back each one's TCP or UDP payload with
/// its ports.
struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Packet>>>,
}

impl Capture {
    fn start() -> Capture {
        // SAFETY: plain socket calls on a descriptor this function owns;
        // the sockaddr_ll and timeval are initialized before use.
        let fd = unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32);
            assert!(fd >= 0, "a packet socket needs root (CI runs as root): {}", std::io::Error::last_os_error());
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = libc::if_nametoindex(c"lo".as_ptr()) as i32;
            let bound = libc::bind(fd, &sll as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32);
            assert_eq!(bound, 0, "bind to lo: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const _ as *const libc::c_void, std::mem::size_of::<libc::timeval>() as u32);
            // A large buffer: the other tests of this file share `lo`.
            let buffer: libc::c_int = 32 << 20;
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &buffer as *const _ as *const libc::c_void, std::mem::size_of::<libc::c_int>() as u32);
            fd
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut packets = Vec::new();
            let mut buf = vec![0u8; 70_000];
            while !stopped.load(Ordering::Relaxed) {
                // SAFETY: recv into a buffer of the length given.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
                if n > 0 {
                    if let Some(p) = payload(&buf[..n as usize]) {
                        packets.push(p);
                    }
                }
            }
            // SAFETY: closing the descriptor this thread owns.
            unsafe { libc::close(fd) };
            packets
        });
        Capture { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> Vec<Packet> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// An Ethernet frame's IPv4 TCP or UDP payload, with source and
/// destination ports.
fn payload(frame: &[u8]) -> Option<Packet> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 {
        return None;
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let l4 = ip.get(ihl..total.min(ip.len()))?;
    let ports = (u16::from_be_bytes([*l4.first()?, *l4.get(1)?]), u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]));
    let body = match ip[9] {
        6 => l4.get(((l4.get(12)? >> 4) as usize) * 4..)?,
        17 => l4.get(8..)?,
        _ => return None,
    };
    Some((ports.0, ports.1, body.to_vec()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_capture_of_cluster_traffic_on_loopback_shows_no_agent_name_or_content() {
    let capture = Capture::start();
    let a = Member::start("127.0.0.1", None);
    let b = Member::start("127.0.0.2", Some(&a.cluster));
    converge(&[&a, &b]);
    let (name, content) = ("zebra-ledger-keeper", "quartz-payload-7f3a-confidential");
    assert_eq!(b.node.deploy(name, "examples/agents/echo.wat", 1).0, 201);
    let warm = format!("{content}-warm");
    assert!(eventually(Duration::from_secs(10), || a.node.post_message(&json!({ "receiver": name, "content": warm }), Some(3000)).1["content"] == warm));
    let mut replies = 0;
    for i in 0..40 {
        let (status, v) = a.node.post_message(&json!({ "receiver": name, "content": format!("{content}-{i}") }), Some(3000));
        if status == 200 && v["content"] == format!("{content}-{i}") {
            replies += 1;
        }
    }
    assert!(replies >= 30, "messages crossed the link and came back: {replies}");
    std::thread::sleep(Duration::from_millis(500)); // a few gossip rounds more
    let packets = capture.finish();
    let cluster_ports = [a.cluster.rsplit(':').next().unwrap().parse::<u16>().unwrap(), b.cluster.rsplit(':').next().unwrap().parse().unwrap()];
    let on_cluster = |p: &&Packet| cluster_ports.contains(&p.0) || cluster_ports.contains(&p.1);
    let cluster: Vec<&Packet> = packets.iter().filter(on_cluster).collect();
    let all_cluster_bytes: Vec<u8> = cluster.iter().flat_map(|p| p.2.iter().copied()).collect();
    assert!(all_cluster_bytes.len() > 10_000, "the capture saw the cluster's traffic: {} bytes", all_cluster_bytes.len());
    for needle in [name.as_bytes(), content.as_bytes(), b"echo".as_slice()] {
        assert!(!cluster.iter().any(|p| contains(&p.2, needle)), "{:?} in a cluster packet", String::from_utf8_lossy(needle));
        assert!(!contains(&all_cluster_bytes, needle), "{:?} in the cluster stream", String::from_utf8_lossy(needle));
    }
    // The same capture does see the content where it travels in clear: the
    // test's own plain-HTTP requests to node A's loopback API.
    let api_port = a.node.port;
    assert!(packets.iter().any(|p| (p.0 == api_port || p.1 == api_port) && contains(&p.2, content.as_bytes())), "the capture works");
}

#[test]
fn altered_and_replayed_link_records_and_gossip_packets_are_refused_and_counted() {
    let a = Member::start("127.0.0.1", None);
    let ring = KeyRing::new(OLD_KEY.as_bytes(), None).unwrap();
    // A well-formed record is taken and acknowledged, in a record.
    let (mut s, mut keys) = common::link_client(&a.cluster, &ring, false);
    let mut record = Vec::new();
    keys.sealer.seal(&frame("nobody", b"fine"), &mut record);
    s.write_all(&record).unwrap();
    let (mut sealed, mut plain) = (Vec::new(), Vec::new());
    while plain.len() < 8 {
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the node acknowledges");
        sealed.extend_from_slice(&buf[..n]);
        keys.opener.open(&mut sealed, &mut plain).unwrap();
    }
    assert_eq!(u64::from_le_bytes(plain[..8].try_into().unwrap()), 1, "one frame taken");
    // One bit flipped in the next record's ciphertext: refused, closed, counted.
    let mut altered = Vec::new();
    keys.sealer.seal(&frame("nobody", b"altered"), &mut altered);
    altered[10] ^= 0x01;
    s.write_all(&altered).unwrap();
    assert!(closed_by_peer(&mut s));
    assert!(eventually(Duration::from_secs(5), || link_refused(&a.node, "tampered") >= 1.0));
    // A record replayed on its own connection: refused too.
    let (mut s, mut keys) = common::link_client(&a.cluster, &ring, false);
    let mut once = Vec::new();
    keys.sealer.seal(&frame("nobody", b"once"), &mut once);
    s.write_all(&once).unwrap();
    s.write_all(&once).unwrap();
    assert!(closed_by_peer(&mut s));
    assert!(eventually(Duration::from_secs(5), || link_refused(&a.node, "tampered") >= 2.0));
    // Records in clear after a real handshake (a peer that skips sealing).
    let (mut s, _) = common::link_client(&a.cluster, &ring, false);
    let f = frame("nobody", b"in clear");
    let mut clear = (f.len() as u16).to_le_bytes().to_vec();
    clear.extend_from_slice(&f);
    s.write_all(&clear).unwrap();
    assert!(closed_by_peer(&mut s));
    assert!(eventually(Duration::from_secs(5), || link_refused(&a.node, "tampered") >= 3.0));

    // Gossip: a packet sealed with the key, one bit flipped, is refused
    // before it is parsed, and counted.
    let refused = metric(&a.node, "caxton_gossip_refused_total{reason=\"bad_key\"}");
    let udp = UdpSocket::bind("127.0.0.9:0").unwrap();
    let mut packet = vec![0u8; 120];
    ring.seal(&mut packet);
    packet[40] ^= 0x80;
    udp.send_to(&packet, &a.cluster).unwrap();
    assert!(eventually(Duration::from_secs(5), || metric(&a.node, "caxton_gossip_refused_total{reason=\"bad_key\"}") >= refused + 1.0));
    // The node still works: it answers a fresh link with the key.
    let (mut s, mut keys) = common::link_client(&a.cluster, &ring, false);
    let mut record = Vec::new();
    keys.sealer.seal(&frame("nobody", b"after"), &mut record);
    s.write_all(&record).unwrap();
    let mut buf = [0u8; 64];
    assert!(s.read(&mut buf).unwrap() > 0);
}

#[test]
fn a_key_rotation_under_traffic_completes_and_loses_no_message() {
    let a = Member::start("127.0.0.1", None);
    let b = Member::start("127.0.0.2", Some(&a.cluster));
    converge(&[&a, &b]);
    assert_eq!(b.node.deploy("far-echo", "examples/agents/echo.wat", 1).0, 201);
    assert_eq!(a.node.deploy("near-echo", "examples/agents/echo.wat", 1).0, 201);
    // Both names known on both nodes before the traffic starts.
    assert!(eventually(Duration::from_secs(10), || a.node.post_message(&json!({ "receiver": "far-echo", "content": "warm" }), Some(3000)).0 == 200));
    assert!(eventually(Duration::from_secs(10), || b.node.post_message(&json!({ "receiver": "near-echo", "content": "warm" }), Some(3000)).0 == 200));
    // Traffic both ways for the whole rotation: every message must come back.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic: Vec<_> = [(a.node.url(""), a.node.token.clone(), "far-echo"), (b.node.url(""), b.node.token.clone(), "near-echo")]
        .into_iter()
        .map(|(base, token, receiver)| {
            let (stop, sent, lost) = (stop.clone(), sent.clone(), lost.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let content = format!("{receiver}-{i}");
                    let mut req = ureq::post(&format!("{base}/v1/messages?reply_timeout_ms=5000")).timeout(Duration::from_secs(10));
                    if let Some(t) = &token {
                        req = req.set("authorization", &format!("Bearer {t}"));
                    }
                    let (status, v) = common::answer_or_gone(req.send_json(json!({ "receiver": receiver, "content": content }))).unwrap_or((0, Value::Null));
                    sent.fetch_add(1, Ordering::Relaxed);
                    if status != 200 || v["content"] != content.as_str() {
                        lost.fetch_add(1, Ordering::Relaxed);
                        eprintln!("{receiver}: message {i} did not come back: {status} {v}");
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // The operator hands both nodes the next key and signals them.
    for m in [&a, &b] {
        std::fs::write(m.keys.path().join("key-next"), NEW_KEY).unwrap();
        m.sighup();
    }
    let done =
        |m: &Member| metric(&m.node, "caxton_cluster_key_rotation_steps_total{step=\"dropped\"}") == 1.0 && metric(&m.node, "caxton_cluster_keys_held") == 1.0;
    assert!(eventually(Duration::from_secs(30), || done(&a) && done(&b)), "rotation completed:\n{}", a.node.metrics());
    assert_eq!(metric(&a.node, "caxton_cluster_key_rotation_steps_total{step=\"switched\"}"), 1.0);
    let keys = a.node.get("/v1/cluster/members").1["keys"].clone();
    assert_eq!((keys["held"].clone(), keys["sends"].clone()), (json!(1), keys["holds"].clone()), "{keys}");
    std::thread::sleep(Duration::from_millis(1500)); // traffic on the new key only
    stop.store(true, Ordering::Relaxed);
    for t in traffic {
        t.join().unwrap();
    }
    let (sent, lost) = (sent.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
    assert!(sent > 50, "traffic ran through the rotation: {sent}");
    assert_eq!(lost, 0, "{lost} of {sent} messages did not come back");
    assert!(a.node.logs().contains("the old one is no longer accepted"));
    // Links opened under the old key were closed at the drop, and what they
    // carried went again under the new one (counted above as not lost).
    assert!(link_refused(&a.node, "retired_key") + link_refused(&b.node, "retired_key") >= 1.0);
    converge(&[&a, &b]);

    // The old key is refused now: a link handshake with it, and gossip.
    let old = KeyRing::new(OLD_KEY.as_bytes(), None).unwrap();
    let refused = link_refused(&a.node, "bad_key");
    let mut s = TcpStream::connect(&a.cluster).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (_, hello) = session::client_hello(&old, Mode::Sealed);
    s.write_all(&hello).unwrap();
    assert!(closed_by_peer(&mut s));
    assert!(eventually(Duration::from_secs(5), || link_refused(&a.node, "bad_key") > refused));
    // A reload with the operator's files not yet updated does not undo it.
    a.sighup();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(metric(&a.node, "caxton_cluster_keys_held"), 1.0);
    assert_eq!(metric(&a.node, "caxton_cluster_key_rotation_steps_total{step=\"dropped\"}"), 1.0);
}

/// Issue 25, finding 6: whoever holds a leaked old key could stop a
/// rotation forever by gossiping with it. The operator forces the rotation
/// on each node: the members that hold the new key switch and drop the old
/// one without waiting for the holder of the leaked key, which is cut off.
#[test]
fn a_forced_rotation_cuts_off_the_holder_of_a_leaked_key() {
    let a = Member::start("127.0.0.1", None);
    let b = Member::start("127.0.0.2", Some(&a.cluster));
    converge(&[&a, &b]);
    for m in [&a, &b] {
        std::fs::write(m.keys.path().join("key-next"), NEW_KEY).unwrap();
        m.sighup();
    }
    // The leaked key's holder joins with it, and gossips: the rotation
    // cannot take its first step.
    let rogue = Member::start("127.0.0.3", Some(&a.cluster));
    assert!(eventually(Duration::from_secs(30), || a.alive() == 3 && b.alive() == 3), "the rogue got in with the old key");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(metric(&a.node, "caxton_cluster_keys_held"), 2.0, "stuck mid-rotation");
    assert_eq!(metric(&a.node, "caxton_cluster_key_rotation_steps_total{step=\"dropped\"}"), 0.0);
    // Forced on both members.
    for m in [&a, &b] {
        let out = m.node.cli(&["cluster", "force-key-rotation", "--output", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"forced\":true"), "{}", String::from_utf8_lossy(&out.stdout));
    }
    let done =
        |m: &Member| metric(&m.node, "caxton_cluster_keys_held") == 1.0 && metric(&m.node, "caxton_cluster_key_rotation_steps_total{step=\"dropped\"}") == 1.0;
    assert!(eventually(Duration::from_secs(30), || done(&a) && done(&b)), "the old key is dropped:\n{}", a.node.metrics());
    // The rogue is cut off; the members still talk.
    let down = |m: &Member| {
        let (_, v) = m.node.get("/v1/cluster/members");
        v["members"].as_array().unwrap().iter().any(|x| x["node"] == rogue.cluster.as_str() && x["state"] == "down")
    };
    assert!(eventually(Duration::from_secs(60), || down(&a) && down(&b)), "{}", a.node.get("/v1/cluster/members").1);
    assert_eq!(b.node.deploy("echo-b", "examples/agents/echo.wat", 1).0, 201);
    assert!(eventually(Duration::from_secs(10), || a.node.post_message(&json!({ "receiver": "echo-b", "content": "still" }), Some(3000)).0 == 200));
    // Forcing with one key is refused with what to do.
    let out = a.node.cli(&["cluster", "force-key-rotation"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cluster-key-next-file"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn api_tokens_rotate_on_sighup_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (current, next) = (dir.path().join("token"), dir.path().join("token-next"));
    std::fs::write(&current, "first-token-0123456789abcdef01234").unwrap();
    let node = Node::launch(NodeSpec::new(1).args(&["--api-token-file", &current.display().to_string(), "--api-token-next-file", &next.display().to_string()]))
        .unwrap_or_else(|e| panic!("{e}"));
    let status = |token: &str| match ureq::get(&node.url("/v1/agents")).set("authorization", &format!("Bearer {token}")).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("{e}"),
    };
    let pid = node.child.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) with a pid of a child this test owns.
    let sighup = || assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert_eq!((status("first-token-0123456789abcdef01234"), status("second-token-4567890123456789abcd")), (200, 401));
    std::fs::write(&next, "second-token-4567890123456789abcd").unwrap();
    sighup();
    assert!(eventually(Duration::from_secs(5), || status("second-token-4567890123456789abcd") == 200), "the next token is taken");
    assert_eq!(status("first-token-0123456789abcdef01234"), 200, "both during the rotation");
    std::fs::write(&current, "second-token-4567890123456789abcd").unwrap();
    std::fs::remove_file(&next).unwrap();
    sighup();
    assert!(eventually(Duration::from_secs(5), || status("first-token-0123456789abcdef01234") == 401), "the old token is dropped");
    assert_eq!(status("second-token-4567890123456789abcd"), 200);
    // A reload that cannot read the token file changes nothing.
    std::fs::remove_file(&current).unwrap();
    sighup();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status("second-token-4567890123456789abcd"), 200);
    assert!(node.logs().contains("cannot read the secrets again"));
}

#[test]
fn forwarded_deploys_go_over_tls_to_a_member_with_tls_and_the_wire_speaks_tls() {
    let b = Member::start_spec(
        NodeSpec { ip: "127.0.0.2".into(), tls: true, token: Some("forward-token-0123456789abcdef012".into()), wire: true, ..NodeSpec::new(1) },
        None,
        &[],
    );
    let b_ca = b.node.ca.clone().unwrap().display().to_string();
    let a = Member::start_spec(
        NodeSpec { ip: "127.0.0.1".into(), token: Some("forward-token-0123456789abcdef012".into()), ..NodeSpec::new(1) },
        Some(&b.cluster),
        &["--tls-ca", &b_ca],
    );
    converge(&[&a, &b]);
    let (_, view) = a.node.get("/v1/cluster/members");
    let advertised = view["members"].as_array().unwrap().iter().find(|m| m["node"] == b.cluster.as_str()).cloned().unwrap();
    assert_eq!(advertised["api_tls"], json!(true), "{view}");
    let listed = String::from_utf8(a.node.cli(&["cluster", "members"]).stdout).unwrap();
    assert!(listed.contains(&format!("https://{}", b.node.api())), "{listed}");
    let module = std::fs::read(repo_path("examples/agents/echo.wat")).unwrap();
    let (status, v) = common::answer(a.node.request("PUT", &format!("/v1/agents/tls-echo?node={}", b.cluster)).send_bytes(&module));
    assert_eq!(status, 201, "deployed on B through A, over HTTPS: {v}");
    assert!(b.node.logs().contains("agent deployed"));
    assert!(eventually(Duration::from_secs(10), || a.node.post_message(&json!({ "receiver": "tls-echo", "content": "hi" }), Some(3000)).1["content"] == "hi"));
    let (status, _) = common::answer(a.node.request("DELETE", "/v1/agents/tls-echo").call());
    assert_eq!(status, 204, "a stop is forwarded the same way");

    // The wire listener of a node with TLS speaks TLS only.
    let wire = b.node.wire.clone().unwrap();
    let config = caxton::tls::client_config(b.node.ca.as_ref().unwrap()).unwrap();
    let server = rustls::pki_types::ServerName::try_from("127.0.0.2").unwrap();
    let conn = rustls::ClientConnection::new(config, server).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(&wire).unwrap());
    common::wire::write_frame(&mut tls, b"caxton-wire/2 forward-token-0123456789abcdef012").unwrap();
    tls.flush().unwrap();
    let answer = common::wire::read_frame(&mut tls).unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("caxton-wire/2 ok @wire/"), "{}", String::from_utf8_lossy(&answer));
    let refused = metric(&b.node, "caxton_wire_refused_total");
    let mut plain = TcpStream::connect(&wire).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    common::wire::write_frame(&mut plain, b"caxton-wire/2 forward-token-0123456789abcdef012").unwrap();
    let mut buf = [0u8; 64];
    let got = plain.read(&mut buf).unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..got]).contains("ok"), "no hello answered in clear");
    assert!(eventually(Duration::from_secs(5), || metric(&b.node, "caxton_wire_refused_total") > refused));
}
