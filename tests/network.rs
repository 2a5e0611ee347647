//! Hardening against the network, against real `caxton serve` processes:
//! what a hostile peer, client or packet can do, and what the node does
//! about it. Each test reproduces an attack that once crashed, wedged or
//! cut off a node.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::cluster::{alive, members, metric, state_of, Member};
use common::{eventually, free_cluster_port, Node};
use serde_json::json;

const KEY: &str = "network-test-key-0123456789";

fn start_member(ip: &str, join: Option<&str>, extra: &[&str]) -> Member {
    common::cluster::start_member(ip, KEY, join, extra)
}

fn pair() -> (Member, Member) {
    common::cluster::pair(KEY)
}

fn no_panic_in_logs(n: &Node) {
    let logs = n.logs();
    assert!(!logs.contains("panicked"), "a thread of the node panicked:\n{logs}");
}

#[test]
fn a_fan_out_of_one_mebibyte_messages_to_another_node_arrives_whole() {
    // One handler sends 8 messages of 1 MiB to an agent on another node:
    // the link writes them in several socket writes while acknowledgements
    // come back. Once, an acknowledgement that came before the end of the
    // batch panicked the sending shard.
    let (a, b) = pair();
    assert_eq!(b.node.deploy("big-sink", "tests/agents/big_sink.wat", 1).0, 201);
    assert_eq!(a.node.deploy("fanout", "tests/agents/fanout.wat", 2).0, 201);
    assert!(eventually(Duration::from_secs(10), || a.node.post_message(&json!({"receiver": "fanout", "content": "nobody-yet"}), Some(3000)).0 == 200));
    let rounds = 6;
    let mut accepted = 0;
    for round in 0..rounds {
        let (status, v) = a.node.post_message(&json!({"receiver": "fanout", "content": "big-sink", "conversation_id": round + 1}), Some(10_000));
        assert_eq!(status, 200, "round {round}: {v}");
        accepted += v["content"].as_str().unwrap().parse::<u64>().unwrap();
    }
    assert!(accepted >= 8, "most sends were accepted ({accepted})");
    let handled = || b.node.agent("big-sink")["messages_handled"].as_u64().unwrap();
    assert!(eventually(Duration::from_secs(30), || handled() == accepted), "{} of {accepted} arrived", handled());
    // Both nodes still do everything they did: no shard is gone.
    assert_eq!(a.node.deploy("echo", "examples/agents/echo.wat", 2).0, 201);
    let ask = |conversation: u64| b.node.post_message(&json!({"receiver": "echo", "content": "still whole", "conversation_id": conversation}), Some(5000));
    assert!(eventually(Duration::from_secs(10), || ask(1).0 == 200), "the registry spread");
    for conversation in 1..=4 {
        let (status, v) = ask(conversation);
        assert_eq!((status, v["content"].as_str()), (200, Some("still whole")), "{v}");
    }
    no_panic_in_logs(&a.node);
    no_panic_in_logs(&b.node);
}

/// Captures loopback traffic (an `AF_PACKET` socket on `lo`; needs root).
struct Capture(std::os::fd::OwnedFd);

impl Capture {
    fn lo() -> Capture {
        use std::os::fd::FromRawFd;
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, proto) };
        assert!(fd >= 0, "AF_PACKET needs root: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_ll is valid; if_nametoindex reads a C string.
        unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto as u16;
            sll.sll_ifindex = libc::if_nametoindex(c"lo".as_ptr()) as i32;
            let r = libc::bind(fd, &sll as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32);
            assert_eq!(r, 0, "bind to lo: {}", std::io::Error::last_os_error());
        }
        // Only UDP over IPv4 reaches the socket (a classic BPF filter), into
        // a large buffer: the other tests of this file flood `lo` with TCP
        // in parallel, which overran the default buffer and lost every
        // gossip packet now and then.
        let mut program = [
            libc::sock_filter { code: 0x28, jt: 0, jf: 0, k: 12 },     // ldh [12]: ethertype
            libc::sock_filter { code: 0x15, jt: 0, jf: 3, k: 0x800 },  // IPv4?
            libc::sock_filter { code: 0x30, jt: 0, jf: 0, k: 23 },     // ldb [23]: protocol
            libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: 17 },     // UDP?
            libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0xffff }, // accept
            libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 },      // drop
        ];
        let filter = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
        let buffer: libc::c_int = 32 << 20;
        // SAFETY: setsockopt(2) reads the structs we own for their sizes;
        // the kernel copies the filter program.
        unsafe {
            let r = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &filter as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::sock_fprog>() as u32,
            );
            assert_eq!(r, 0, "attach the UDP filter: {}", std::io::Error::last_os_error());
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &buffer as *const _ as *const libc::c_void, std::mem::size_of::<libc::c_int>() as u32);
        }
        Capture(owned)
    }

    /// UDP payloads captured from `from` (ip:port), with their destination,
    /// for `window`.
    fn udp_from(&self, from: &str, window: Duration) -> Vec<(String, Vec<u8>)> {
        use std::os::fd::AsRawFd;
        let from: std::net::SocketAddrV4 = from.parse().unwrap();
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        let mut frame = vec![0u8; 65_536];
        while Instant::now() < deadline {
            // SAFETY: reads into a buffer we own, at most its length.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), frame.as_mut_ptr() as *mut libc::c_void, frame.len(), 0) };
            if n <= 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let f = &frame[..n as usize];
            // Ethernet (14 bytes, zero addresses on lo), IPv4, UDP.
            if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
                continue;
            }
            let ihl = (f[14] & 0x0f) as usize * 4;
            let ip = &f[14..];
            let udp = &ip[ihl..];
            let src = std::net::SocketAddrV4::new([ip[12], ip[13], ip[14], ip[15]].into(), u16::from_be_bytes([udp[0], udp[1]]));
            let dst = std::net::SocketAddrV4::new([ip[16], ip[17], ip[18], ip[19]].into(), u16::from_be_bytes([udp[2], udp[3]]));
            if src == from && udp.len() > 8 {
                out.push((dst.to_string(), udp[8..].to_vec()));
            }
        }
        out
    }
}

#[test]
fn replayed_gossip_is_refused_and_the_node_stays_in_its_cluster() {
    let (a, b) = pair();
    // Capture what A says while it has news to spread (a deploy: a sync
    // packet with A's own names goes to B), then play it all back: to A
    // itself and to B, twice.
    let capture = Capture::lo();
    let recorder = {
        let from = a.cluster.clone();
        std::thread::spawn(move || capture.udp_from(&from, Duration::from_millis(2_500)))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(a.node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let captured = recorder.join().unwrap();
    assert!(captured.iter().any(|(to, _)| *to == b.cluster), "captured A's packets to B: {}", captured.len());
    let attacker = UdpSocket::bind("127.0.0.9:0").unwrap();
    for _ in 0..2 {
        for (_, packet) in &captured {
            attacker.send_to(packet, &a.cluster).unwrap();
            attacker.send_to(packet, &b.cluster).unwrap();
        }
    }
    // A keeps answering, stays alive in B's view, and B keeps reaching A's agents.
    let cpu = |n: &Node| metric(n, "process_cpu_seconds_total");
    let cpu_before = cpu(&a.node);
    std::thread::sleep(Duration::from_secs(8));
    let cpu_used = cpu(&a.node) - cpu_before;
    assert_eq!(state_of(&b.node, &a.cluster), "alive", "{:?}", members(&b.node));
    assert_eq!(state_of(&a.node, &b.cluster), "alive", "{:?}", members(&a.node));
    let (status, v) = b.node.post_message(&json!({"receiver": "echo", "content": "across"}), Some(5000));
    assert_eq!((status, v["content"].as_str()), (200, Some("across")), "{v}");
    // Spinning shards use CPU while messages flow; a gossip thread stuck in
    // a loop would use a whole core on top, for all 8 seconds.
    assert!(cpu_used < 6.0, "node A used {cpu_used:.1} s of CPU in 8 s");
    let refused = |n: &Node, reason: &str| metric(n, &format!("caxton_gossip_refused_total{{reason=\"{reason}\"}}"));
    assert!(refused(&a.node, "wrong_destination") >= 1.0, "A refused its own packets sent back to it");
    assert!(refused(&b.node, "replay") >= 1.0, "B refused packets it had seen");
    no_panic_in_logs(&a.node);
}

/// Opens `n` TCP connections to `addr` that send nothing.
fn silent_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n).filter_map(|_| TcpStream::connect(addr).ok()).collect()
}

/// Has the peer closed `s`? (Reads until an end, an error, or `wait`.)
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a refusal frame, then the end
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn idle_and_slow_connections_cannot_lock_real_clients_out_of_the_api() {
    let node = Node::start_with(1, &["--max-connections", "20", "--api-header-timeout-ms", "1000", "--api-idle-timeout-ms", "1500"]);
    // 25 connections that never send a byte, and one that never finishes
    // its headers: every place is taken at first.
    let mut idle = silent_connections(&node.api(), 25);
    let mut slow = TcpStream::connect(node.api()).unwrap();
    slow.write_all(b"GET /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let started = Instant::now();
    // Within the header bound (and some slack), a real client is served.
    assert!(eventually(
        Duration::from_secs(5),
        || matches!(ureq::get(&node.url("/v1/agents")).timeout(Duration::from_secs(2)).call(), Ok(r) if r.status() == 200)
    ));
    assert!(started.elapsed() >= Duration::from_millis(500), "the places were taken at first");
    assert!(closed_within(&mut slow, Duration::from_secs(3)), "a request head that never ends is cut");
    assert!(idle.iter_mut().all(|s| closed_within(s, Duration::from_secs(3))), "silent connections are closed");
    // A keep-alive connection is closed once idle past its bound.
    let mut keep = TcpStream::connect(node.api()).unwrap();
    keep.write_all(format!("GET /v1/health HTTP/1.1\r\nHost: {}\r\n\r\n", node.api()).as_bytes()).unwrap();
    let mut head = [0u8; 12];
    keep.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(!closed_within(&mut keep, Duration::from_millis(700)), "not before its idle bound");
    assert!(closed_within(&mut keep, Duration::from_secs(3)), "closed after it");
    let m = node.metrics();
    common::promtool_check(&m);
    assert!(metric(&node, "caxton_api_connections_closed_total{reason=\"header_timeout\"}") >= 25.0, "{m}");
    assert!(metric(&node, "caxton_api_connections_closed_total{reason=\"idle_timeout\"}") >= 1.0, "{m}");
}

/// A wire client: connects, says hello, returns the stream past it.
fn wire_hello(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    wire_frame(&mut s, b"caxton-wire/1");
    let hello = String::from_utf8(read_wire_frame(&mut s)).unwrap();
    assert!(hello.starts_with("caxton-wire/1 ok"), "{hello}");
    s
}

fn wire_frame(s: &mut TcpStream, bytes: &[u8]) {
    common::wire::write_frame(s, bytes).unwrap();
}

fn read_wire_frame(s: &mut TcpStream) -> Vec<u8> {
    common::wire::read_frame(s).expect("a frame within the read timeout (a message lost?)").expect("a frame, not the end")
}

#[test]
fn silent_wire_connections_are_closed_and_capped() {
    let wire = format!("127.0.0.1:{}", free_cluster_port("127.0.0.1"));
    let node = Node::start_with(1, &["--wire", &wire, "--wire-hello-timeout-ms", "500", "--wire-connections-max", "8"]);
    let mut silent = silent_connections(&wire, 12);
    // Past the cap, refused at once; the rest, once their hello is late.
    let t = Instant::now();
    let mut refused_at_once = 0;
    for s in silent.iter_mut() {
        refused_at_once += closed_within(s, Duration::from_millis(300)) as usize;
    }
    assert!(refused_at_once >= 4, "{refused_at_once} of 12 refused at once, over a cap of 8");
    assert!(silent.iter_mut().all(|s| closed_within(s, Duration::from_secs(3))), "no connection outlives its hello bound");
    assert!(t.elapsed() < Duration::from_secs(5));
    // Real clients get in and are served.
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let mut s = wire_hello(&wire);
    let m = caxton_shards::Message::encode(&caxton_shards::Header::default(), b"", b"echo", b"served").unwrap();
    wire_frame(&mut s, m.as_bytes());
    let reply = caxton_shards::Message::decode(read_wire_frame(&mut s)).unwrap();
    assert_eq!(reply.content(), b"served");
    assert!(metric(&node, "caxton_wire_refused_total") >= 12.0);
}

/// Fills `buf` from a seeded xorshift (no extra crate, same bytes each run).
fn noise(seed: &mut u64, buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
}

#[test]
fn garbage_on_every_port_cuts_no_node_off() {
    let wire = format!("127.0.0.1:{}", free_cluster_port("127.0.0.1"));
    let a = start_member("127.0.0.1", None, &["--wire", &wire, "--max-pending-handshakes", "8", "--link-handshake-timeout-ms", "1000"]);
    let b = start_member("127.0.0.2", Some(&a.cluster), &[]);
    for n in [&a.node, &b.node] {
        assert!(eventually(Duration::from_secs(30), || alive(n) == 2), "{:?}", members(n));
    }
    assert_eq!(b.node.deploy("echo", "examples/agents/echo.wat", 2).0, 201);
    let ask = |conversation: u64| a.node.post_message(&json!({"receiver": "echo", "content": "are you there", "conversation_id": conversation}), Some(5000));
    assert!(eventually(Duration::from_secs(10), || ask(1).0 == 200));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let attack = Instant::now();
    // Random frames on the wire port, after a valid hello (some with
    // lengths that fit, most that do not), on many connections.
    for _ in 0..20 {
        let mut s = wire_hello(&wire);
        for _ in 0..50 {
            let mut len = [0u8; 2];
            noise(&mut seed, &mut len);
            let mut frame = vec![0u8; u16::from_le_bytes(len) as usize % 300];
            noise(&mut seed, &mut frame);
            if s.write_all(&(frame.len() as u32).to_le_bytes()).is_err() || s.write_all(&frame).is_err() {
                break;
            }
        }
    }
    // Random datagrams on both gossip ports.
    let udp = UdpSocket::bind("127.0.0.9:0").unwrap();
    for i in 0..3000 {
        let mut d = vec![0u8; 1 + i % 1400];
        noise(&mut seed, &mut d);
        let _ = udp.send_to(&d, &a.cluster);
        let _ = udp.send_to(&d, &b.cluster);
    }
    // Random bytes on both link ports, on more connections than the
    // pending-handshake pool holds, some left open and silent.
    let mut held = Vec::new();
    for i in 0..60 {
        for target in [&a.cluster, &b.cluster] {
            let Ok(mut s) = TcpStream::connect(target) else { continue };
            let mut junk = vec![0u8; 1 + i * 37 % 4000];
            noise(&mut seed, &mut junk);
            let _ = s.write_all(&junk);
            held.push(s);
        }
    }
    // Meanwhile and after, the nodes still see and reach each other.
    for conversation in 2..8 {
        let (status, v) = ask(conversation);
        assert_eq!((status, v["content"].as_str()), (200, Some("are you there")), "{v}");
    }
    drop(held);
    std::thread::sleep(Duration::from_secs(3)); // past a suspicion period
    assert_eq!(state_of(&a.node, &b.cluster), "alive", "{:?}", members(&a.node));
    assert_eq!(state_of(&b.node, &a.cluster), "alive", "{:?}", members(&b.node));
    for conversation in 10..16 {
        let (status, v) = ask(conversation);
        assert_eq!((status, v["content"].as_str()), (200, Some("are you there")), "{v}");
    }
    let (status, v) = b.node.post_message(&json!({"receiver": "echo", "content": "local"}), Some(5000));
    assert_eq!(status, 200, "{v}");
    // And every piece of garbage was counted, not just survived.
    // (The kernel may drop some datagrams sent this fast: most arrive.)
    let refused_gossip =
        metric(&a.node, "caxton_gossip_refused_total{reason=\"bad_key\"}") + metric(&a.node, "caxton_gossip_refused_total{reason=\"malformed\"}");
    assert!(refused_gossip >= 500.0, "{refused_gossip} datagrams refused by A");
    let refused_links = metric(&a.node, "caxton_link_refused_total{");
    assert!(refused_links >= 50.0, "{refused_links} link connections refused on A");
    let pending_refused: f64 = ["0", "1"]
        .iter()
        .flat_map(|shard| ["pending", "pending_per_source"].map(|r| format!("caxton_link_refused_total{{shard=\"{shard}\",reason=\"{r}\"}}")))
        .map(|line| metric(&a.node, &line))
        .sum();
    assert!(pending_refused >= 1.0, "the pending pool, or a source's share of it, was full at times");
    println!("attack and checks took {:?}", attack.elapsed());
    no_panic_in_logs(&a.node);
    no_panic_in_logs(&b.node);
}

#[test]
fn a_client_that_never_reads_keeps_the_node_within_its_message_budget() {
    // A wire client sends 1 MiB messages to `echo` and never reads the
    // replies: they pile up for it, up to its share, then are dropped and
    // counted; the flow itself is pushed back through TCP.
    let wire = format!("127.0.0.1:{}", free_cluster_port("127.0.0.1"));
    let budget: u64 = 60_000_000;
    let node = Node::start_with(2, &["--wire", &wire, "--message-buffer-size", &budget.to_string()]);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 2).0, 201);
    let rss = || metric(&node, "process_resident_memory_bytes");
    let baseline = rss();
    let s = wire_hello(&wire);
    let content = vec![7u8; caxton_shards::limits::CONTENT_BYTES_MAX];
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            w.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
            let deadline = Instant::now() + Duration::from_secs(12);
            while Instant::now() < deadline {
                let header = caxton_shards::Header { conversation_id: sent % 7 + 1, ..Default::default() };
                let m = caxton_shards::Message::encode(&header, b"", b"echo", &content).unwrap();
                let frame = [(m.len() as u32).to_le_bytes().as_slice(), m.as_bytes()].concat();
                match w.write_all(&frame) {
                    Ok(()) => sent += 1,
                    Err(_) => continue, // back-pressure: the node stopped reading for a while
                }
            }
            sent
        })
    };
    let mut peak = 0f64;
    while !writer.is_finished() {
        peak = peak.max(rss());
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent = writer.join().unwrap();
    peak = peak.max(rss());
    let m = node.metrics();
    println!("sent {sent} MiB; resident {:.0} MiB at start, peak {:.0} MiB; budget {} MB", baseline / 1048576.0, peak / 1048576.0, budget / 1_000_000);
    assert!(sent >= 20, "the node took messages ({sent})");
    // Beyond the budget, allow what the allocator and the buffers of the
    // connection keep (a few MiB), never a growth with what was sent.
    let slack = 24.0 * 1048576.0;
    assert!(peak < baseline + budget as f64 + slack, "peak {peak} over {baseline} + {budget} (+ slack)\n{m}");
    assert!(
        metric(&node, "caxton_runtime_undeliverable_total{kind=\"wire\"}") + metric(&node, "caxton_message_budget_refusals_total{queue=\"runtime_outbox\"}")
            >= 1.0,
        "the budget was met and counted\n{m}"
    );
    // The node still serves others.
    let (status, v) = node.post_message(&json!({"receiver": "echo", "content": "still here"}), Some(5000));
    assert_eq!((status, v["content"].as_str()), (200, Some("still here")), "{v}");
    let _ = s.shutdown(std::net::Shutdown::Both);
}

#[test]
fn web_pages_cannot_drive_the_api() {
    let node = Node::start(1);
    let url = node.url("/v1/agents");
    // DNS rebinding: a page whose name now points at 127.0.0.1.
    let (status, v) = common::answer(ureq::get(&url).set("host", &format!("evil.example:{}", node.port)).call());
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden_host")), "{v}");
    // CSRF: a request from another web origin, even with a right Host.
    let (status, v) = common::answer(ureq::delete(&node.url("/v1/agents/echo")).set("origin", "http://evil.example").call());
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden_origin")), "{v}");
    // A form or text POST, which a page may send without asking.
    let (status, v) = common::answer(ureq::post(&node.url("/v1/messages")).set("content-type", "text/plain").send_string("{\"receiver\":\"echo\"}"));
    assert_eq!((status, v["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{v}");
    // A preflight is never granted.
    let resp = ureq::request("OPTIONS", &url).set("origin", &format!("http://127.0.0.1:{}", node.port)).call();
    let headers = match resp {
        Ok(r) => r.headers_names(),
        Err(ureq::Error::Status(_, r)) => r.headers_names(),
        Err(e) => panic!("{e}"),
    };
    assert!(!headers.iter().any(|h| h.starts_with("access-control-")), "{headers:?}");
    // The node's own names pass: the CLI and a page served by the node's own origin.
    assert_eq!(common::answer(ureq::get(&url).set("host", &format!("localhost:{}", node.port)).call()).0, 200);
    let out = node.cli(&["agent", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(metric(&node, "caxton_api_refused_browser_total") >= 3.0);
}

#[test]
fn a_panic_on_any_thread_ends_the_process() {
    let t = Instant::now();
    let out = std::process::Command::new(common::BIN).arg("panic-on-a-thread").output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("aborting the process"));
    assert!(t.elapsed() < Duration::from_secs(10));
}
