//! Agents from real toolchains against a real node: Rust with the SDK
//! (`wasm32-unknown-unknown` and `wasm32-wasip1` with std), C on wasi-libc,
//! AssemblyScript on its WASI shim, all built by scripts/build-agents.sh;
//! and WASI preview 1 tried as a careless or hostile program would.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{eventually, example_agent, Node};
use serde_json::{json, Value};

fn deploy_example(node: &Node, name: &str, agent: &str, instances: u32) {
    let wasm = std::fs::read(example_agent(agent)).unwrap();
    let (status, v) = node.put_module(name, instances, &wasm);
    assert_eq!(status, 201, "{agent}: {v}");
}

fn ask(node: &Node, receiver: &str, content: &str) -> (u16, Value) {
    node.post_message(&json!({"receiver": receiver, "content": content}), Some(5000))
}

fn reply(node: &Node, receiver: &str, content: &str) -> String {
    let (status, v) = ask(node, receiver, content);
    assert_eq!(status, 200, "{receiver} <- {content}: {v}");
    v["content"].as_str().unwrap().to_string()
}

/// The node's log records (JSON) about `agent`.
fn agent_records(node: &Node, agent: &str) -> Vec<Value> {
    node.logs().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|r| r["fields"]["agent"] == agent).collect()
}

fn logged(node: &Node, agent: &str, source: &str, text: &str) -> bool {
    agent_records(node, agent).iter().any(|r| r["fields"]["source"] == source && r["fields"]["message"].as_str().is_some_and(|m| m.contains(text)))
}

#[test]
fn rust_sdk_agents_answer_keep_typed_state_across_a_kill_and_chain_across_shards() {
    let mut node = Node::start(2);
    deploy_example(&node, "echo", "rust-echo", 2);
    deploy_example(&node, "echo-wasi", "rust-echo-wasip1", 1);
    deploy_example(&node, "counter", "rust-counter", 1);
    assert_eq!(reply(&node, "echo", "hello"), "hello");
    assert_eq!(reply(&node, "echo-wasi", "hello"), "hello", "the SDK works on wasm32-wasip1 too");
    let (status, v) = node.post_message(&json!({"receiver": "echo", "content": "x", "conversation_id": 42}), Some(5000));
    assert_eq!((status, v["conversation_id"].as_u64(), v["performative"].as_str()), (200, Some(42), Some("inform")), "{v}");

    for n in 1..=3 {
        assert_eq!(reply(&node, "counter", "+1"), n.to_string());
    }
    node.kill9_and_restart();
    let (status, v) = node.post_message(&json!({"receiver": "counter", "performative": "query_ref", "content": ""}), Some(5000));
    assert_eq!((status, v["content"].as_str()), (200, Some("3")), "typed state survives kill -9: {v}");

    // A chain of relays whose instances sit on both shards.
    let relays: Vec<String> = (1..=4).map(|i| format!("relay{i}")).collect();
    for r in &relays {
        deploy_example(&node, r, "rust-relay", 1);
    }
    let shards: std::collections::HashSet<u64> = relays.iter().map(|r| node.agent(r)["shards"][0].as_u64().unwrap()).collect();
    assert_eq!(shards.len(), 2, "the chain crosses shards");
    assert_eq!(reply(&node, "relay1", "relay2 relay3 relay4"), "done via 3 hops");
}

#[test]
fn a_rust_agent_using_std_logs_its_output_reads_the_clock_and_comes_back_from_a_panic() {
    let node = Node::start_with(1, &["--log-format", "json"]);
    deploy_example(&node, "std", "rust-std", 1);
    assert_eq!(reply(&node, "std", "count b a b c"), "a=1 b=2 c=1", "HashMap, seeded through random_get");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let told: u64 = reply(&node, "std", "time").parse().unwrap();
    assert!(told.abs_diff(now) < 60, "SystemTime reads the clock: {told} vs {now}");
    assert!(eventually(Duration::from_secs(5), || logged(&node, "std", "stdout", "std_agent handling message 2 from @api/")), "println! reaches the log");
    assert!(logged(&node, "std", "stdout", "std_agent starting"), "output of init too");

    // A panic is a counted crash; the instance is made anew and answers.
    let (status, v) = node.post_message(&json!({"receiver": "std", "content": "panic"}), Some(5000));
    assert_eq!(
        (status, v["performative"].as_str(), v["sender"].as_str(), v["content"].as_str()),
        (200, Some("failure"), Some("@node"), Some("crashed_handler")),
        "a crash is answered with a failure notice: {v}"
    );
    assert!(eventually(Duration::from_secs(5), || node.agent("std")["crashes"] == 1));
    assert!(logged(&node, "std", "log", "asked to panic"), "the panic's message is logged");
    assert!(logged(&node, "std", "stderr", "std_agent about to panic"), "eprintln! reaches the log as stderr");
    assert_eq!(reply(&node, "std", "count z"), "z=1");

    // exit(0) after replying: the reply stands, the call counts as handled,
    // and the next message finds a fresh instance.
    assert_eq!(reply(&node, "std", "exit"), "exiting");
    assert_eq!(reply(&node, "std", "count y"), "y=1");
    let v = node.agent("std");
    assert_eq!((v["crashes"].as_u64(), v["errors"].as_u64()), (Some(1), Some(0)), "{v}");
    assert!(logged(&node, "std", "stdout", "std_agent handling message 1 from"), "a fresh instance after exit: {v}");
}

/// C (caxton.h) and AssemblyScript (caxton.ts) agents of ABI version 2, as
/// their docs show them: state, a performative of version 2 answered with
/// another, a durable timer that answers the asker later, their own name,
/// their standard output in the log, and a trap they come back from.
#[test]
fn c_and_assemblyscript_agents_speak_abi_v2_keep_state_set_timers_and_come_back_from_a_trap() {
    let node = Node::start_with(2, &["--log-format", "json"]);
    deploy_example(&node, "greeter-c", "c-greeter", 1);
    deploy_example(&node, "greeter-as", "as-greeter", 1);
    assert_eq!(reply(&node, "greeter-c", "world"), "hello, world (greeting 1)");
    assert_eq!(reply(&node, "greeter-c", "again"), "hello, again (greeting 2)", "state through the ABI from C");
    assert_eq!(reply(&node, "greeter-as", "world"), "hello from AssemblyScript, world (greeting 1)");
    assert_eq!(reply(&node, "greeter-as", "again"), "hello from AssemblyScript, again (greeting 2)", "state through the ABI from AssemblyScript");
    for agent in ["greeter-c", "greeter-as"] {
        // A cfp (version 2's: a version 1 module could not be handed it)
        // gets a propose, in the conversation.
        let (status, v) = node.post_message(&json!({"receiver": agent, "performative": "cfp", "content": "greet", "conversation_id": 77}), Some(5000));
        assert_eq!(
            (status, v["performative"].as_str(), v["content"].as_str(), v["conversation_id"].as_u64()),
            (200, Some("propose"), Some("3"), Some(77)),
            "{agent}: {v}"
        );
        // A durable timer answers the asker when it fires.
        let asked = Instant::now();
        assert_eq!(reply(&node, agent, "remind 300"), "reminded after 300 ms", "{agent}");
        assert!(asked.elapsed() >= Duration::from_millis(300), "{agent}: answered when the timer fired");
    }
    assert!(eventually(Duration::from_secs(5), || logged(&node, "greeter-c", "stdout", "greeted @api/")), "printf reaches the log");
    assert!(logged(&node, "greeter-c", "stdout", "greeter (C) starting as greeter-c at "), "self_name and time() work");
    assert!(eventually(Duration::from_secs(5), || logged(&node, "greeter-as", "stdout", "greeted @api/")), "console.log reaches the log");
    assert!(logged(&node, "greeter-as", "stdout", "greeter (AssemblyScript) starting as greeter-as at "));
    for agent in ["greeter-c", "greeter-as"] {
        let (status, v) = node.post_message(&json!({"receiver": agent, "content": "crash"}), Some(5000));
        assert_eq!((status, v["content"].as_str()), (200, Some("crashed_handler")), "{agent}: {v}");
        assert!(eventually(Duration::from_secs(5), || node.agent(agent)["crashes"] == 1), "{agent}");
    }
    assert_eq!(reply(&node, "greeter-c", "back"), "hello, back (greeting 3)");
    assert_eq!(reply(&node, "greeter-as", "back"), "hello from AssemblyScript, back (greeting 3)");
}

#[test]
fn wasi_calls_answer_as_a_program_expects_and_bad_pointers_get_efault() {
    let node = Node::start(1);
    assert_eq!(node.deploy("prober", "tests/agents/wasi_prober.wat", 1).0, 201);
    let (status, v) = node.post_message(&json!({"receiver": "prober", "content": ""}), Some(5000));
    assert_eq!(status, 200, "{v}");
    let got = base64_decode(v["content_b64"].as_str().unwrap_or_default()).unwrap_or_else(|| v["content"].as_str().unwrap().as_bytes().to_vec());
    const SUCCESS: u8 = 0;
    const BADF: u8 = 8;
    const FAULT: u8 = 21;
    const INVAL: u8 = 28;
    const NOSYS: u8 = 52;
    const SPIPE: u8 = 70;
    #[rustfmt::skip]
    let want = [
        SUCCESS, 11,            // a good write, its count
        FAULT, FAULT, INVAL,    // iovecs past memory, a buffer past memory, too many iovecs
        BADF, BADF, FAULT,      // no such fd, stdin is not written, the count past memory
        SUCCESS, 0,             // stdin reads empty
        SUCCESS, 2, BADF,       // stdout is a character device; nothing preopened
        SPIPE, NOSYS,           // no seeking; no file system
        SUCCESS, INVAL, FAULT,  // realtime; no CPU-time clock; a clock past memory
        SUCCESS, INVAL, FAULT,  // 16 random bytes; 2 MiB at once; into nowhere
        SUCCESS, 0, SUCCESS, NOSYS, // no arguments; yield; no polling
    ];
    assert_eq!(got, want, "errno of each probe (tests/agents/wasi_prober.wat)");
    assert_eq!(node.agent("prober")["crashes"], 0);
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() {
        return None;
    }
    let table = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | table(c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[test]
fn wasi_commands_and_programs_that_exit_while_starting_are_refused_with_how_to_fix() {
    let node = Node::start(1);
    let (status, v) = node.deploy("command", "tests/agents/wasi_command.wat", 1);
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_module")), "{v}");
    assert!(
        message.contains("_start") && message.contains("-mexec-model=reactor") && message.contains("cdylib") && message.contains("--exportStart _initialize"),
        "{message}"
    );
    let (status, v) = node.deploy("quitter", "tests/agents/wasi_exit_on_start.wat", 1);
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("init_failed")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("proc_exit(3)"), "{v}");
    assert_eq!(node.get("/v1/agents/quitter").0, 404, "nothing of it stays");
}

#[test]
fn a_program_shouting_on_stdout_stays_within_its_log_budget_in_bounded_lines() {
    let node = Node::start_with(1, &["--log-format", "json"]);
    assert_eq!(node.deploy("shouter", "tests/agents/wasi_shouter.wat", 1).0, 201);
    let before = node.logs().len();
    for _ in 0..4 {
        node.post_message(&json!({"receiver": "shouter", "content": "go"}), None);
    }
    assert!(eventually(Duration::from_secs(20), || node.agent("shouter")["messages_handled"] == 4), "{}", node.agent("shouter"));
    let grown = node.logs().len() - before;
    // 4 MiB and 20,000 lines written; the budget lets a burst of 640 KiB
    // and 64 KiB/s through (docs/LIMITS.md).
    assert!(grown < 4 * 1024 * 1024, "log grew by {grown} bytes");
    let records = agent_records(&node, "shouter");
    assert!(!records.is_empty());
    let longest = records.iter().map(|r| r["fields"]["message"].as_str().unwrap().len()).max().unwrap();
    assert!(longest <= 4096, "a line is at most 4 KiB: {longest}");
    let dropped: f64 = node
        .metrics()
        .lines()
        .filter(|l| l.starts_with("caxton_agent_log_dropped_total{agent=\"shouter\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(dropped > 1000.0, "dropped lines are counted: {dropped}");
    assert_eq!(node.agent("shouter")["crashes"], 0);
}

#[test]
fn the_quick_start_goes_from_caxton_agent_new_to_an_answer() {
    // README's quick start, command for command, against a real node.
    let node = Node::start(1);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hello");
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let created = run(std::process::Command::new(common::BIN).args(["agent", "new", "hello", "--dir"]).arg(&dir));
    // The next steps it prints are the README's.
    let readme = std::fs::read_to_string(common::repo_path("README.md")).unwrap();
    for step in [format!("caxton agent deploy {}", dir.display()), "caxton message send --to hello --content hi --wait-reply 1000".to_string()] {
        assert!(created.contains(&step), "{step:?} in {created}");
    }
    assert!(readme.contains("caxton agent deploy hello ") && readme.contains("caxton message send --to hello --content hi --wait-reply 1000"));
    assert!(created.contains("cargo wasm") && created.contains("cargo test"), "{created}");
    // One target dir for every run of this test: the SDK's dependencies build once.
    let cargo = |args: &[&str]| {
        let mut c = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.args(args).current_dir(&dir).env("CARGO_TARGET_DIR", common::repo_path("target/agents/template"));
        c
    };
    run(&mut cargo(&["test", "-q"]));
    run(&mut cargo(&["wasm", "-q"]));
    assert!(common::repo_path("target/agents/template/wasm32-unknown-unknown/release/hello.wasm").exists(), "cargo wasm builds the module");
    // `caxton agent deploy FOLDER` builds the crate and deploys it under its name.
    let deployed = std::process::Command::new(common::BIN)
        .args(["agent", "deploy"])
        .arg(&dir)
        .args(["--api", &node.api()])
        .env("CARGO_TARGET_DIR", common::repo_path("target/agents/template"))
        .output()
        .unwrap();
    assert!(deployed.status.success(), "{deployed:?}");
    assert!(String::from_utf8_lossy(&deployed.stdout).contains("deployed hello"), "{deployed:?}");
    let answer = node.cli(&["message", "send", "--to", "hello", "--content", "hi there", "--wait-reply", "5000"]);
    assert_eq!(String::from_utf8_lossy(&answer.stdout).trim(), "hi there", "{answer:?}");
    let again = std::process::Command::new(common::BIN).args(["agent", "new", "hello", "--dir"]).arg(&dir).output().unwrap();
    assert_eq!(again.status.code(), Some(2), "never over an existing folder");
}

#[test]
fn rust_keyed_agents_keep_one_value_per_key_and_a_session_expires_itself_while_passive() {
    let node = Node::start_with(2, &["--keyed-idle", "200ms", "--log-format", "json"]);
    for (name, agent) in [("kv", "rust-kv"), ("session", "rust-session")] {
        let wasm = std::fs::read(example_agent(agent)).unwrap();
        let (status, v) = common::answer(node.request("PUT", &format!("/v1/agents/{name}?keyed=true")).send_bytes(&wasm));
        assert_eq!(status, 201, "{agent}: {v}");
    }
    assert_eq!(reply(&node, "kv/alice", "put blue"), "alice: ok");
    assert_eq!(reply(&node, "kv/bob", "put red"), "bob: ok");
    for _ in 0..4 {
        assert_eq!(reply(&node, "kv/alice", "get"), "alice: blue", "every caller of a key sees its value");
    }
    assert_eq!(reply(&node, "kv/bob", "get"), "bob: red");
    let (status, v) = ask(&node, "kv/carol", "get");
    assert_eq!((status, v["performative"].as_str(), v["content"].as_str()), (200, Some("failure"), Some("carol: not found")), "{v}");

    assert_eq!(reply(&node, "session/s1", "ttl 800"), "ok");
    assert_eq!(reply(&node, "session/s1", "set cart=3"), "ok");
    assert_eq!(reply(&node, "session/s1", "get"), "cart=3");
    // Passivated after 200 ms idle; its timer activates it at 800 ms and it
    // deletes itself.
    assert!(eventually(Duration::from_secs(5), || logged(&node, "session/s1", "log", "session s1 expired")), "{:?}", agent_records(&node, "session/s1"));
    let detail = node.agent("session");
    assert!(detail["keyed"]["passivations"]["idle"].as_u64().unwrap() >= 1, "{detail}");
    let (status, v) = ask(&node, "session/s1", "get");
    assert_eq!((status, v["content"].as_str()), (200, Some("expired")), "{v}");
}
