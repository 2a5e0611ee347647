//! The third hardening round (issue 25), against real `caxton serve`
//! processes: each finding reproduced as a hostile agent or operator would,
//! and shown refused. The class each belongs to is fixed in the shard: guest
//! code runs only inside a call bracket, every host call pays for the work it
//! causes, and nothing per agent grows without bound.

mod common;

use std::time::{Duration, Instant};

use common::{assert_served, echo_times_while, eventually, serial, Node};
use serde_json::{json, Value};

fn handled(node: &Node, name: &str) -> u64 {
    node.agent(name)["messages_handled"].as_u64().unwrap()
}

fn alive(node: &Node) -> bool {
    node.get("/v1/health").0 == 200
}

fn shard_sum(node: &Node, field: &str) -> u64 {
    let health = node.health();
    health["shards"].as_array().unwrap().iter().map(|s| s[field].as_u64().unwrap_or(0)).sum()
}

/// Finding 1: a start function that calls host functions (`timer_cancel`
/// opened a savepoint outside any call) aborted the node at deploy, and at
/// every start after. It now runs inside the start's call bracket, so the
/// node serves, and its effects are kept like `caxton_init`'s.
#[test]
fn a_start_function_that_calls_the_host_neither_aborts_the_node_nor_any_restart() {
    let _serial = serial();
    let mut node = Node::start(2);
    assert_eq!(node.deploy("counter", "examples/agents/counter.wat", 1).0, 201);
    let (status, v) = node.deploy("starter", "tests/agents/start_calls_host.wat", 1);
    assert_eq!(status, 201, "{v}");
    assert!(alive(&node));
    // Its send from the start function was kept with the start: counted once.
    assert!(eventually(Duration::from_secs(5), || handled(&node, "counter") == 1), "{}", node.agent("counter"));
    for _ in 0..2 {
        node.kill9_and_restart();
        assert!(alive(&node), "the node serves after a restart with the agent in its catalog");
        assert_eq!(node.agent("starter")["quarantined"], false);
        // The start ran again at the restore, inside its bracket: one send
        // (counted since this process started).
        assert!(eventually(Duration::from_secs(5), || handled(&node, "counter") == 1), "{}", node.agent("counter"));
    }
}

/// Finding 1, the other ways in: `caxton_abi_version` and the fixed
/// inbox's exports call host functions while the instance is made. They run
/// inside the bracket too: a deploy keeps what they did, and an upgrade's
/// trial (always rolled back) or a refused upgrade leaks nothing.
#[test]
fn exports_that_run_while_an_instance_is_made_are_inside_its_call() {
    let _serial = serial();
    let node = Node::start(1);
    assert_eq!(node.deploy("counter", "examples/agents/counter.wat", 1).0, 201);
    let module = std::fs::read_to_string(common::repo_path("tests/agents/abi_version_calls_host.wat")).unwrap();
    assert_eq!(node.put_module("maker", 1, module.as_bytes()).0, 201);
    // Two sends (caxton_abi_version, caxton_inbox_ptr), kept with the start.
    assert!(eventually(Duration::from_secs(5), || handled(&node, "counter") == 2));
    // An upgrade whose caxton_init fails: its trial's sends are rolled back.
    let failing = module.replace(r#"(data (i32.const 512) "\00\00\00\00")"#, r#"(data (i32.const 512) "\01\00\00\00")"#);
    assert_ne!(failing, module);
    let (status, v) = common::answer(node.request("PUT", "/v1/agents/maker?upgrade=true").send_bytes(failing.as_bytes()));
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("upgrade_refused")), "{v}");
    // A good upgrade: the trial's two sends roll back, the commit's two stay.
    let (status, v) = common::answer(node.request("PUT", "/v1/agents/maker?upgrade=true").send_bytes(module.as_bytes()));
    assert_eq!(status, 200, "{v}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(handled(&node, "counter"), 4, "2 at deploy, 0 from the refused upgrade, 2 from the committed one");
    assert!(alive(&node));
}

/// Finding 2: `state_get` of a 1 MiB value into a buffer of 0 bytes, 8,000
/// times in one handler, paid a flat fee each and held the shard for 0.75 s.
/// Priced by the bytes SQLite reads, the handler stops at its slice and its
/// neighbour keeps its latency.
#[test]
fn state_get_pays_for_the_bytes_it_reads_not_those_it_copies() {
    let _serial = serial();
    let node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert_eq!(node.deploy("reader", "tests/agents/state_reader.wat", 1).0, 201);
    let times = echo_times_while(&node, "reader", 30);
    assert_served(&times);
    let reader = node.agent("reader");
    assert!(reader["timeouts"].as_u64().unwrap() > 0, "stopped at its slice: {reader}");
    assert_eq!(reader["messages_handled"], 0, "{reader}");
}

/// Finding 3: WASI `fd_write` of 8 MiB of "a\n", priced by the byte, cost
/// 0.66 ms of fuel for 0.28 s of CPU (a lock and a clock read per line).
/// Priced by the line, the writer stops at its slice.
#[test]
fn fd_write_pays_for_each_line_it_ends() {
    let _serial = serial();
    let node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert_eq!(node.deploy("flood", "tests/agents/line_flood.wat", 1).0, 201);
    let times = echo_times_while(&node, "flood", 30);
    assert_served(&times);
    let flood = node.agent("flood");
    assert!(flood["timeouts"].as_u64().unwrap() > 0, "stopped at its slice: {flood}");
    // The lines that went out stayed within the instance's log budget.
    assert!(flood["instance_stats"][0]["log_lines_dropped"].as_u64().unwrap() > 0, "{flood}");
}

/// Finding 4: a timer set and cancelled, or set by a handler that trapped,
/// left its entry in the shard's queue for up to 30 days (6.8 M entries in
/// 30 s). The queue now holds committed timers only.
#[test]
fn cancelled_and_rolled_back_timers_leave_nothing_in_memory() {
    let _serial = serial();
    let node = Node::start(1);
    assert_eq!(node.deploy("churn", "tests/agents/timer_churn.wat", 1).0, 201);
    for _ in 0..200 {
        assert_eq!(node.post_message(&json!({"receiver": "churn", "content": "c"}), None).0, 202);
    }
    assert!(eventually(Duration::from_secs(10), || handled(&node, "churn") == 200), "{}", node.agent("churn"));
    assert_eq!(shard_sum(&node, "timers_scheduled"), 0, "100,000 timers set and cancelled leave no entry");
    // Set by handlers that then trap: rolled back with them.
    for _ in 0..3 {
        node.post_message(&json!({"receiver": "churn", "content": "t"}), None);
    }
    assert!(eventually(Duration::from_secs(10), || node.agent("churn")["crashes"].as_u64() == Some(3)));
    assert_eq!(shard_sum(&node, "timers_scheduled"), 0, "1,500 rolled-back timers leave no entry");
}

/// Finding 9: a timer due while the node was down fired at the restart
/// before every agent was restored; its send to an agent not yet back
/// failed and the work was lost (3 of 3 tries). Timers now wait until the
/// node serves.
#[test]
fn a_timer_due_during_a_restart_fires_after_every_agent_is_back() {
    let _serial = serial();
    let mut node = Node::start(2);
    // The relay is restored before `counter` (catalog order is deploy order).
    assert_eq!(node.deploy("relay", "tests/agents/timer_relay.wat", 1).0, 201);
    for i in 0..20 {
        assert_eq!(node.deploy(&format!("filler{i}"), "tests/agents/small.wat", 1).0, 201);
    }
    assert_eq!(node.deploy("counter", "examples/agents/counter.wat", 1).0, 201);
    assert_eq!(node.post_message(&json!({"receiver": "relay", "content": "later"}), None).0, 202);
    std::thread::sleep(Duration::from_millis(300)); // the timer's row commits
    node.kill9();
    std::thread::sleep(Duration::from_millis(2500)); // it falls due while down
    node.restart();
    assert!(eventually(Duration::from_secs(10), || handled(&node, "counter") == 1), "the timer's send reached counter: {}", node.agent("counter"));
    assert_eq!(node.agent("relay")["errors"], 0, "its send did not fail");
}

/// Finding 10: under W^X (`MemoryDenyWriteExecute=`, here its prctl), the
/// first deploy panicked inside the compiler and aborted the node. The node
/// now refuses to start, with one line naming the cause and the setting.
#[test]
fn a_node_that_cannot_map_executable_memory_refuses_to_start_and_says_why() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(common::BIN);
    command.args(["serve", "--cores", "1", "--api", "127.0.0.1:0", "--data-dir"]).arg(dir.path());
    // SAFETY: prctl(2) in the child between fork and exec; it touches no
    // memory of the parent's.
    unsafe {
        command.pre_exec(|| {
            const PR_SET_MDWE: libc::c_int = 65;
            const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
            if libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it refused: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(stderr.contains("MemoryDenyWriteExecute") && stderr.contains("executable"), "{stderr}");
    let unit = std::fs::read_to_string(common::repo_path("packaging/caxton.service")).unwrap();
    assert!(unit.contains("MemoryDenyWriteExecute= stays off"), "the unit says why");
}

/// An agent whose instance cannot be made at restore (here: its `caxton_init`
/// fails once its state says so) is quarantined with the reason, and the
/// node serves the others.
#[test]
fn an_instance_that_cannot_start_at_restore_is_quarantined_with_its_reason() {
    let _serial = serial();
    let mut node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert_eq!(node.deploy("fragile", "tests/agents/fails_after_first_start.wat", 1).0, 201);
    std::thread::sleep(Duration::from_millis(300)); // its first start's write commits
    node.kill9_and_restart();
    let fragile: Value = node.agent("fragile");
    assert_eq!(fragile["quarantined"], true, "{fragile}");
    assert!(fragile["quarantined_because"].as_str().unwrap().contains("caxton_init returned 7"), "{fragile}");
    let (status, reply) = node.post_message(&json!({"receiver": "echo", "content": "up"}), Some(5000));
    assert_eq!((status, reply["content"].as_str()), (200, Some("up")));
    let (status, reply) = node.post_message(&json!({"receiver": "fragile", "content": "x", "reply_with": 5}), Some(5000));
    assert_eq!((status, reply["performative"].as_str(), reply["content"].as_str()), (200, Some("failure"), Some("quarantined")), "{reply}");
}

/// Finding 8: a wire client that never reads its failure notices made its
/// connection wait for room while holding the ingress permits of what it
/// had read: at the smallest message budget, one such client stopped every
/// other wire client. And its notices were bounded in count only, so they
/// could fill the wire outboxes' share of the budget and push every other
/// client's replies out. Its connection now hands over what it holds
/// before it waits, and its notices wait for byte room like replies.
#[test]
fn a_wire_client_that_never_reads_its_notices_holds_no_one_elses_ingress() {
    let _serial = serial();
    let wire = format!("127.0.0.1:{}", common::free_cluster_port("127.0.0.1"));
    let budget = caxton_shards::limits::MESSAGE_BUFFER_BYTES_MIN.to_string();
    let node = Node::start_with(1, &["--wire", &wire, "--message-buffer-size", &budget]);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let big = vec![7u8; 700 * 1024];
    let (_rd, mut hostile, _, socket) = common::wire::connect(&wire, None).unwrap();
    // The node stops reading it once it waits for room: its own writes then
    // block, bounded here.
    socket.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut sent = || -> std::io::Result<()> {
        // Fill its outbox with notices it never reads (65,536 of them)...
        for i in 0..70_000u64 {
            hostile.send(&caxton_abi::Header { reply_with: i + 1, ..Default::default() }, b"nobody", b"?")?;
        }
        // ...then more than the whole ingress share in large frames, each of
        // which earns a notice it cannot take.
        for _ in 0..8 {
            hostile.send(&caxton_abi::Header::default(), b"nobody", &big)?;
        }
        hostile.flush()
    };
    let _ = sent();
    std::thread::sleep(Duration::from_secs(2));
    // Another client's large message still gets in and is answered.
    let (mut rd, mut wr, _, socket) = common::wire::connect(&wire, None).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    wr.send(&caxton_abi::Header { reply_with: 9, ..Default::default() }, b"echo", &big).unwrap();
    wr.flush().unwrap();
    let reply = rd.envelope().unwrap().expect("a reply");
    assert_eq!(caxton_abi::Envelope::parse(&reply).unwrap().content().len(), big.len());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// Finding 8: a 1-character API token, a short cluster key and the
/// placeholders of packaging/secrets.env.example were accepted. They are
/// refused at start, with the command that makes a good one.
#[test]
fn weak_secrets_and_the_shipped_placeholders_are_refused_at_start() {
    let check = |env: &[(&str, &str)], args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .args(["serve", "--check-config"])
            .args(args)
            .env_remove("CAXTON_API_TOKEN")
            .env_remove("CAXTON_CLUSTER_KEY")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let placeholders = std::fs::read_to_string(common::repo_path("packaging/secrets.env.example")).unwrap();
    let token = placeholders.lines().find_map(|l| l.strip_prefix("CAXTON_API_TOKEN=")).unwrap();
    let key = placeholders.lines().find_map(|l| l.strip_prefix("# CAXTON_CLUSTER_KEY=")).unwrap();
    for (env, args, why) in [
        (vec![("CAXTON_API_TOKEN", "x")], vec![], "1 characters"),
        (vec![("CAXTON_API_TOKEN", token)], vec![], "placeholder"),
        (vec![("CAXTON_CLUSTER_KEY", "0011223344556677")], vec!["--listen", "127.0.0.1:7946"], "64 bits"),
        (vec![("CAXTON_CLUSTER_KEY", key)], vec!["--listen", "127.0.0.1:7946"], "placeholder"),
        (vec![("CAXTON_CLUSTER_KEY", "my cluster passphrase")], vec!["--listen", "127.0.0.1:7946"], "not a passphrase"),
    ] {
        let (code, stderr) = check(&env, &args);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(why) && stderr.contains("openssl rand -hex 32"), "{env:?}: {stderr}");
    }
    let good = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let (code, stderr) = check(&[("CAXTON_API_TOKEN", good), ("CAXTON_CLUSTER_KEY", good)], &["--listen", "127.0.0.1:7946"]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// Finding 7: `/metrics` named every agent to anyone who could reach the
/// API. It needs the token when the node has one; `--metrics-listen`
/// serves it (and the health check) apart, under the same token.
#[test]
fn metrics_need_the_token_and_can_be_served_on_a_listener_of_their_own() {
    let metrics_addr = format!("127.0.0.1:{}", common::free_cluster_port("127.0.0.1"));
    let token = "metrics-test-token-0123456789abcdef";
    let spec =
        caxton_testkit::node::NodeSpec { token: Some(token.into()), ..caxton_testkit::node::NodeSpec::new(1).args(&["--metrics-listen", &metrics_addr]) };
    let node = Node::launch(spec).unwrap();
    assert_eq!(node.deploy("secret-agent-name", "examples/agents/echo.wat", 1).0, 201);
    let status = |url: &str, bearer: Option<&str>| {
        let mut req = ureq::get(url);
        if let Some(t) = bearer {
            req = req.set("authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{e}"),
        }
    };
    let (s, body) = status(&node.url("/metrics"), None);
    assert_eq!(s, 401, "{body}");
    assert!(!body.contains("secret-agent-name"));
    let (s, body) = status(&node.url("/metrics"), Some(token));
    assert_eq!(s, 200);
    assert!(body.contains("secret-agent-name"));
    assert_eq!(status(&node.url("/v1/health"), None).0, 200, "the health check stays open");
    // The listener of its own: metrics and health only, the same token.
    let apart = |path: &str| format!("http://{metrics_addr}{path}");
    assert_eq!(status(&apart("/metrics"), None).0, 401);
    let (s, body) = status(&apart("/metrics"), Some(token));
    assert_eq!(s, 200);
    assert!(body.contains("caxton_messages_processed_total"));
    assert_eq!(status(&apart("/v1/agents"), Some(token)).0, 404, "nothing else is served there");
    assert_eq!(status(&apart("/v1/health"), None).0, 200);
}
