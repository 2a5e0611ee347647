//! Tools against real servers and real `caxton serve` processes (issue 28):
//! a Python MCP server on stdio and over streamable HTTP (`tests/tools/`,
//! installed by scripts/setup.sh), a real HTTP server on loopback
//! (`testkit::http_server`), and hostile ones: a server that never answers,
//! answers 100 MB, crashes in the middle of a call, or writes garbage; a
//! thousand calls at once; `kill -9` with calls in flight; a handler that
//! traps after its call. Every call gets exactly one answer.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use caxton_testkit::http_server::HttpServer;
use caxton_testkit::{eventually, example_agent, repo_path, Node};
use serde_json::{json, Value};

/// The Python of the venv scripts/setup.sh makes, with `mcp` installed.
fn python() -> String {
    let p = repo_path("tests/tools/.venv/bin/python");
    assert!(p.exists(), "{} is missing: scripts/setup.sh makes it (python3 -m venv, pip install mcp)", p.display());
    p.display().to_string()
}

fn mcp_server() -> String {
    repo_path("tests/tools/mcp_server.py").display().to_string()
}

/// A node whose config file holds `tools` (TOML `[tools.NAME]` sections).
fn node_with_tools(tools: &str) -> Node {
    let dir = tempfile::tempdir().unwrap().keep();
    let config = dir.join("caxton.toml");
    std::fs::write(&config, tools).unwrap();
    Node::start_with(2, &["--config", config.to_str().unwrap()])
}

/// `[tools.calc]`: the Python MCP server on stdio, recording calls in `calls`.
fn calc_section(calls: &std::path::Path) -> String {
    format!(
        "[tools.calc]\nkind = \"mcp-stdio\"\ncommand = [\"{}\", \"{}\", \"stdio\"]\nenv = {{ CAXTON_TEST_CALLS = \"{}\" }}\n",
        python(),
        mcp_server(),
        calls.display()
    )
}

fn http_section(name: &str, server: &HttpServer, extra: &str) -> String {
    format!("[tools.{name}]\nkind = \"http\"\nurl = \"{}\"\nallow_private = true\n{extra}\n", server.url())
}

fn deploy(node: &Node, agent: &str, name: &str, query: &str) -> (u16, Value) {
    let body = std::fs::read(example_agent(agent)).unwrap();
    caxton_testkit::answer(node.request("PUT", &format!("/v1/agents/{name}?{query}")).send_bytes(&body))
}

/// Asks the tool-relay agent `relay` to call `tool` with `request`; its
/// answer's JSON (`{"call", "ok"}`, `{"call", "failure"}` or `{"refused"}`).
fn relay(node: &Node, relay: &str, tool: &str, request: Value, extra: Value) -> Value {
    let mut ask = json!({ "tool": tool, "request": request });
    ask.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let (status, v) = node.post_message(&json!({ "receiver": relay, "content": ask.to_string() }), Some(20_000));
    assert_eq!(status, 200, "{v}");
    serde_json::from_str(v["content"].as_str().unwrap_or_else(|| panic!("no reply content: {v}"))).unwrap()
}

/// The tool-relay's ledger: calls made and answers per call.
fn stats(node: &Node, relay: &str) -> (Vec<u64>, std::collections::BTreeMap<String, u64>) {
    let (status, v) = node.post_message(&json!({ "receiver": relay, "content": "stats" }), Some(10_000));
    assert_eq!(status, 200, "{v}");
    let s: Value = serde_json::from_str(v["content"].as_str().unwrap()).unwrap();
    let made = s["made"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let answered = s["answered"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();
    (made, answered)
}

fn mcp_text(answer: &Value) -> String {
    answer["ok"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("not an MCP text result: {answer}")).to_string()
}

fn calls_file() -> PathBuf {
    tempfile::tempdir().unwrap().keep().join("calls.jsonl")
}

#[test]
fn an_mcp_tool_on_stdio_answers_a_rest_caller_and_shows_in_tools_metrics_and_logs() {
    let calls = calls_file();
    let node = node_with_tools(&calc_section(&calls));
    assert!(eventually(Duration::from_secs(20), || node.get("/v1/tools").1["tools"][0]["up"] == json!(true)), "{}", node.logs());
    let (status, tools) = node.get("/v1/tools");
    assert_eq!(status, 200);
    let calc = &tools["tools"][0];
    assert_eq!((calc["name"].as_str(), calc["kind"].as_str()), (Some("calc"), Some("mcp-stdio")));
    let add = calc["tools"].as_array().unwrap().iter().find(|t| t["name"] == "add").expect("the server's add tool is listed");
    assert_eq!(add["inputSchema"]["properties"]["a"]["type"], "number", "{add}");

    // The example agent, as docs/AGENTS.md shows it.
    let (status, v) = deploy(&node, "rust-calculator", "calculator", "tools=calc");
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["tools"], json!(["calc"]));
    let (status, v) = node.post_message(&json!({ "receiver": "calculator", "content": "add 2 3" }), Some(20_000));
    assert_eq!((status, v["content"].as_str()), (200, Some("5")), "{v}");
    assert_eq!(v["performative"], "inform");

    // The server runs with an empty environment, apart from what its config passes.
    let (status, v) = deploy(&node, "rust-tool_relay", "relay", "tools=calc");
    assert_eq!(status, 201, "{v}");
    let env: Vec<String> = serde_json::from_str(&mcp_text(&relay(&node, "relay", "calc", json!({"name": "env", "arguments": {}}), json!({})))).unwrap();
    assert!(env.iter().all(|k| ["CAXTON_TEST_CALLS", "PATH", "LC_CTYPE"].contains(&k.as_str())), "the server saw {env:?}");

    let metrics = node.metrics();
    assert!(metrics.contains("caxton_tool_up{tool=\"calc\"} 1"), "{metrics}");
    assert!(metrics.contains("caxton_tool_calls_total{tool=\"calc\",outcome=\"ok\"} 2"), "{metrics}");
    assert!(metrics.contains("caxton_tool_call_seconds_count{tool=\"calc\"} 2"));
    caxton_testkit::promtool_check(&metrics);
    let logs = node.logs();
    let record = logs.lines().find(|l| l.contains("tool call") && l.contains("calculator")).unwrap_or_else(|| panic!("no call record: {logs}"));
    assert!(record.contains("outcome=\"ok\"") || record.contains("outcome=ok"), "{record}");
    assert!(!record.contains("\"a\""), "arguments are not logged unless the tool says so: {record}");
    let out = node.cli(&["tool", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("calc (mcp-stdio): up") && text.contains("  add:"), "{text}");
}

#[test]
fn an_agent_calls_only_the_tools_its_deploy_granted_and_the_grant_survives_upgrades_and_restarts() {
    let server = HttpServer::start("127.0.0.1");
    let calls = calls_file();
    let mut node = node_with_tools(&format!("{}{}", calc_section(&calls), http_section("web", &server, "")));
    let (status, v) = deploy(&node, "rust-tool_relay", "relay", "tools=nope");
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("unknown_tool")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("calc, web"), "{v}");
    let (status, v) = deploy(&node, "rust-tool_relay", "relay", "tools=calc");
    assert_eq!(status, 201, "{v}");
    assert_eq!(relay(&node, "relay", "web", json!({"method": "GET", "path": "/ok"}), json!({})), json!({"refused": -7}));
    assert!(server.seen().is_empty(), "a refused call never leaves the node");
    assert!(node.metrics().contains("caxton_tool_calls_refused_total{reason=\"not_granted\"} 1"));

    // An upgrade without ?tools keeps the grant; with it, changes it.
    let body = std::fs::read(example_agent("rust-tool_relay")).unwrap();
    let upgrade = |query: &str| {
        caxton_testkit::answer(node.request("PUT", &format!("/v1/agents/relay?upgrade=true{query}")).send_bytes(&caxton_testkit::with_nonce(&body, 7)))
    };
    let (status, v) = upgrade("");
    assert_eq!(status, 200, "{v}");
    assert_eq!(node.agent("relay")["tools"], json!(["calc"]));
    let (status, v) = upgrade("&tools=calc,web");
    assert_eq!(status, 200, "{v}");
    assert_eq!(node.agent("relay")["tools"], json!(["calc", "web"]));
    let answer = relay(&node, "relay", "web", json!({"method": "GET", "path": "/ok"}), json!({}));
    assert_eq!((answer["ok"]["status"].as_u64(), answer["ok"]["body"].as_str()), (Some(200), Some("hello")), "{answer}");

    assert!(node.terminate().success());
    node.restart();
    assert_eq!(node.agent("relay")["tools"], json!(["calc", "web"]), "the grant is in the catalog");
    let answer = relay(&node, "relay", "web", json!({"method": "GET", "path": "/ok"}), json!({}));
    assert_eq!(answer["ok"]["status"], 200, "{answer}");
}

#[test]
fn an_mcp_server_over_streamable_http_gets_the_idempotency_key_and_traceparent_in_meta() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = caxton_testkit::ChildGuard::spawn(
        std::process::Command::new(python())
            .args([&mcp_server(), "http", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    assert!(eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()), "the Python MCP server never listened");
    let node = node_with_tools(&format!("[tools.search]\nkind = \"mcp-http\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nallow_private = true\n"));
    assert!(eventually(Duration::from_secs(20), || node.get("/v1/tools").1["tools"][0]["up"] == json!(true)), "{}", node.logs());
    let (status, v) = deploy(&node, "rust-tool_relay", "relay", "tools=search");
    assert_eq!(status, 201, "{v}");
    let answer = relay(&node, "relay", "search", json!({"name": "add", "arguments": {"a": 40, "b": 2}}), json!({}));
    assert_eq!(mcp_text(&answer), "42", "{answer}");
    let (status, v) = caxton_testkit::answer(
        node.request("POST", "/v1/messages?reply_timeout_ms=20000")
            .set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .send_json(json!({ "receiver": "relay", "content": json!({"tool": "search", "request": {"name": "meta", "arguments": {}}}).to_string() })),
    );
    assert_eq!(status, 200, "{v}");
    let answer: Value = serde_json::from_str(v["content"].as_str().unwrap()).unwrap();
    let meta: Value = serde_json::from_str(&mcp_text(&answer)).unwrap();
    assert!(meta["io.caxton/idempotency-key"].as_str().is_some_and(|k| k.starts_with("caxton-")), "{meta}");
    assert!(meta["traceparent"].as_str().is_some_and(|t| t.starts_with("00-0af7651916cd43dd8448eb211c80319c-")), "the call joins the caller's trace: {meta}");
}

#[test]
fn http_tools_stay_within_their_allow_list_and_stream_bounded_answers() {
    let server = HttpServer::start("127.0.0.1");
    let tools = format!(
        "{}{}[tools.strict]\nkind = \"http\"\nurl = \"{}\"\n",
        http_section("web", &server, "methods = [\"GET\"]\npaths = [\"/ok\", \"/bin\", \"/big\", \"/redirect\", \"/headers\"]"),
        http_section("poster", &server, "methods = [\"POST\"]"),
        server.url()
    );
    let node = node_with_tools(&tools);
    let (status, v) = deploy(&node, "rust-tool_relay", "relay", "tools=web,strict,poster");
    assert_eq!(status, 201, "{v}");
    let call = |tool: &str, method: &str, path: &str| relay(&node, "relay", tool, json!({"method": method, "path": path}), json!({}));

    let ok = call("web", "GET", "/ok");
    assert_eq!((ok["ok"]["status"].as_u64(), ok["ok"]["body"].as_str()), (Some(200), Some("hello")), "{ok}");
    let bin = call("web", "GET", "/bin");
    assert!(bin["ok"]["body"].is_null() && bin["ok"]["body_base64"].as_str().is_some_and(|b| b.starts_with("AAECAw")), "{bin}");
    for (method, path, why) in [("POST", "/ok", "method"), ("GET", "/admin", "prefix"), ("GET", "/ok/../admin", "..")] {
        let refused = call("web", method, path);
        assert!(refused["failure"].as_str().is_some_and(|f| f.starts_with("refused") && f.contains(why)), "{method} {path}: {refused}");
    }
    // Redirects: followed within the origin and the allowed paths, returned otherwise.
    assert_eq!(call("web", "GET", "/redirect-in")["ok"]["body"], "hello");
    assert_eq!(call("web", "GET", "/redirect-out")["ok"]["status"], 302, "never followed to another origin");
    // A tool without allow_private never reaches loopback.
    let strict = call("strict", "GET", "/ok");
    assert!(strict["failure"].as_str().is_some_and(|f| f.starts_with("refused")), "{strict}");
    // The node's headers: the idempotency key, and no way for the agent to set it.
    let headers = call("web", "GET", "/headers");
    assert!(headers["ok"]["body"].as_str().unwrap().contains("idempotency-key: caxton-"), "{headers}");
    let forged = relay(&node, "relay", "web", json!({"method": "GET", "path": "/ok", "headers": {"Idempotency-Key": "mine"}}), json!({}));
    assert!(forged["failure"].as_str().is_some_and(|f| f.contains("set by the node")), "{forged}");
    let posted = relay(&node, "relay", "poster", json!({"method": "POST", "path": "/echo", "body": "payload"}), json!({}));
    assert_eq!(posted["ok"]["status"], 404, "{posted}");
    assert_eq!(server.seen().last().unwrap().body, b"payload");

    // 100 MB without a length: cut at the bound, quickly, and never held.
    let before = resident(&node);
    let started = Instant::now();
    let big = call("web", "GET", "/big");
    assert!(big["failure"].as_str().is_some_and(|f| f.starts_with("too_large")), "{big}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let grew = resident(&node).saturating_sub(before);
    assert!(grew < 64 << 20, "the node grew {grew} bytes reading a 100 MB answer");
    assert!(node.metrics().contains("caxton_tool_calls_total{tool=\"web\",outcome=\"too_large\"} 1"));
}

fn resident(node: &Node) -> u64 {
    let m = node.metrics();
    let line = m.lines().find(|l| l.starts_with("process_resident_memory_bytes ")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() as u64
}

#[test]
fn hostile_tools_never_hang_the_node_and_every_call_is_answered_once() {
    let calls = calls_file();
    let garbage = repo_path("tests/tools/garbage_server.py").display().to_string();
    let tools = format!("{}timeout_ms = 5000\n[tools.garbage]\nkind = \"mcp-stdio\"\ncommand = [\"{}\", \"{garbage}\"]\n", calc_section(&calls), python());
    let node = node_with_tools(&tools);
    assert!(eventually(Duration::from_secs(20), || node.get("/v1/tools").1["tools"][0]["up"] == json!(true)), "{}", node.logs());
    let (status, v) = deploy(&node, "rust-tool_relay", "relay", "tools=calc,garbage");
    assert_eq!(status, 201, "{v}");
    let (status, v) = node.deploy("echo", "examples/agents/echo.wat", 1);
    assert_eq!(status, 201, "{v}");

    // Never answers (within the call's deadline): timeout.
    let started = Instant::now();
    let slow = relay(&node, "relay", "calc", json!({"name": "slow", "arguments": {"ms": 60_000}}), json!({"timeout_ms": 300}));
    assert!(slow["failure"].as_str().is_some_and(|f| f.starts_with("timeout")), "{slow}");
    assert!(started.elapsed() < Duration::from_secs(5), "the deadline held: {:?}", started.elapsed());

    // Crashes in the middle of a call: tool_down, then the server is back.
    let crash = relay(&node, "relay", "calc", json!({"name": "crash", "arguments": {}}), json!({}));
    assert!(crash["failure"].as_str().is_some_and(|f| f.starts_with("tool_down")), "{crash}");
    assert!(
        eventually(Duration::from_secs(20), || {
            let a = relay(&node, "relay", "calc", json!({"name": "add", "arguments": {"a": 1, "b": 1}}), json!({}));
            a["ok"]["content"][0]["text"] == "2"
        }),
        "the server was started again: {}",
        node.logs()
    );

    // Garbage on stdio: never up, its calls tool_down, the node unharmed.
    let (_, tools) = node.get("/v1/tools");
    let g = tools["tools"].as_array().unwrap().iter().find(|t| t["name"] == "garbage").unwrap().clone();
    assert_eq!(g["up"], false, "{g}");
    let down = relay(&node, "relay", "garbage", json!({"name": "x", "arguments": {}}), json!({}));
    assert!(down["failure"].as_str().is_some_and(|f| f.starts_with("tool_down")), "{down}");

    // A thousand slow calls at once, from a thousand keys: every one gets
    // exactly one answer, and the echo agent on the same shards answers
    // throughout.
    let (status, v) = deploy(&node, "rust-tool_relay", "many", "keyed=true&tools=calc");
    assert_eq!(status, 201, "{v}");
    let echo_before = echo_latencies(&node, 20);
    let flood = json!({"tool": "calc", "request": {"name": "slow", "arguments": {"ms": 1000}}}).to_string();
    for k in 0..1000 {
        let (status, v) = node.post_message(&json!({ "receiver": format!("many/k{k}"), "content": flood }), None);
        assert_eq!(status, 202, "{v}");
    }
    let echo_during = echo_latencies(&node, 20);
    let answered = |k: usize| {
        let (made, answered) = stats(&node, &format!("many/k{k}"));
        (made.len(), answered.values().copied().collect::<Vec<_>>())
    };
    assert!(eventually(Duration::from_secs(60), || (0..1000).step_by(97).all(|k| answered(k).1 == [1])), "the sampled keys were answered: {:?}", answered(0));
    for k in 0..1000 {
        assert_eq!(answered(k), (1, vec![1]), "key k{k}: one call, one answer");
    }
    println!("echo p50/max before the flood {:?}, during {:?}", echo_before, echo_during);
    assert!(echo_during.1 < Duration::from_secs(2), "an echo waited {:?} behind the tool calls", echo_during.1);
    let metrics = node.metrics();
    let ok = metrics.lines().find(|l| l.starts_with("caxton_tool_calls_total{tool=\"calc\",outcome=\"ok\"}")).unwrap();
    let refused = metrics.lines().find(|l| l.starts_with("caxton_tool_calls_total{tool=\"calc\",outcome=\"refused\"}")).unwrap();
    println!("{ok}\n{refused}");
}

/// The median and the slowest of `n` echo round trips through the REST API.
fn echo_latencies(node: &Node, n: usize) -> (Duration, Duration) {
    let mut took: Vec<Duration> = (0..n)
        .map(|i| {
            let started = Instant::now();
            let (status, v) = node.post_message(&json!({ "receiver": "echo", "content": format!("ping {i}") }), Some(10_000));
            assert_eq!(status, 200, "{v}");
            started.elapsed()
        })
        .collect();
    took.sort();
    (took[n / 2], took[n - 1])
}

#[test]
fn kill_9_with_calls_in_flight_makes_each_call_again_with_its_key_and_it_is_answered_once() {
    let server = HttpServer::start("127.0.0.1");
    let mut node = node_with_tools(&http_section("web", &server, ""));
    let (status, v) = deploy(&node, "rust-tool_relay", "relay", "tools=web");
    assert_eq!(status, 201, "{v}");
    let calls = 20;
    let ask = json!({"tool": "web", "request": {"method": "GET", "path": "/slow/3000"}}).to_string();
    for _ in 0..calls {
        let (status, v) = node.post_message(&json!({ "receiver": "relay", "content": ask }), None);
        assert_eq!(status, 202, "{v}");
    }
    assert!(eventually(Duration::from_secs(20), || server.seen().len() == calls), "the calls reached the server: {}", server.seen().len());
    let first: std::collections::BTreeSet<String> = server.seen().iter().map(|s| s.header("idempotency-key").unwrap().to_string()).collect();
    assert_eq!(first.len(), calls, "each call has a key of its own");
    node.kill9_and_restart();
    assert!(eventually(Duration::from_secs(30), || server.seen().len() >= 2 * calls), "the calls in flight were made again: {}", server.seen().len());
    let again: std::collections::BTreeSet<String> = server.seen()[calls..].iter().map(|s| s.header("idempotency-key").unwrap().to_string()).collect();
    assert_eq!(again, first, "made again with the same keys");
    assert!(
        eventually(Duration::from_secs(30), || {
            let (made, answered) = stats(&node, "relay");
            made.len() == calls && answered.len() == calls
        }),
        "every call was answered: {:?}",
        stats(&node, "relay")
    );
    let (_, answered) = stats(&node, "relay");
    assert!(answered.values().all(|&n| n == 1), "exactly one answer per call: {answered:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(server.seen().len(), 2 * calls, "nothing made a third time");
}

#[test]
fn a_trapping_handlers_tool_call_never_reaches_the_server() {
    let server = HttpServer::start("127.0.0.1");
    let node = node_with_tools(&http_section("web", &server, ""));
    let (status, v) = deploy(&node, "rust-tool_relay", "relay", "tools=web");
    assert_eq!(status, 201, "{v}");
    let ask = json!({"tool": "web", "request": {"method": "GET", "path": "/ok"}, "trap": true}).to_string();
    let (status, v) = node.post_message(&json!({ "receiver": "relay", "content": ask }), Some(10_000));
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["performative"].as_str(), v["content"].as_str()), (Some("failure"), Some("crashed_handler")), "{v}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.seen().is_empty(), "the trapped handler's call was made: {:?}", server.seen());
    let (made, _) = stats(&node, "relay");
    assert!(made.is_empty(), "its state write was undone too");
    let ok = relay(&node, "relay", "web", json!({"method": "GET", "path": "/ok"}), json!({}));
    assert_eq!(ok["ok"]["status"], 200);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn mcps_own_conformance_suite_passes_against_the_nodes_client() {
    let dir = repo_path("tests/tools");
    assert!(dir.join("node_modules/@modelcontextprotocol/conformance").exists(), "scripts/setup.sh installs the suite (npm in tests/tools)");
    let command = format!("{} tool conformance", caxton_testkit::binary().display());
    for scenario in ["initialize", "tools_call"] {
        let out = std::process::Command::new("npx")
            .args(["conformance", "client", "--command", &command, "--scenario", scenario])
            .current_dir(&dir)
            .output()
            .expect("npx runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        println!("{scenario}: {}", text.lines().filter(|l| l.contains("Passed:")).collect::<Vec<_>>().join(" "));
        assert!(text.contains("Passed: 1/1, 0 failed"), "scenario {scenario}:\n{text}");
    }
}

#[test]
fn an_abi_version_1_agent_calls_tools_too() {
    // examples/agents/relay.wat (ABI version 1, no deadline or trace) sends
    // to the first name in its request's content, here `@tool/web`, with
    // the request's `reply_with`; its content (the origin's name) is not an
    // HTTP request, so the tool answers `refused` to the relay: the call
    // was admitted, recorded, made and answered, as a version 2 call is.
    let server = HttpServer::start("127.0.0.1");
    let node = node_with_tools(&http_section("web", &server, ""));
    let wat = std::fs::read(repo_path("examples/agents/relay.wat")).unwrap();
    let (status, v) = caxton_testkit::answer(node.request("PUT", "/v1/agents/old-relay?tools=web").send_bytes(&wat));
    assert_eq!(status, 201, "{v}");
    // A call asks for an answer: the relay passes the request's reply_with on.
    let (status, v) = node.post_message(&json!({ "receiver": "old-relay", "content": "@tool/web", "reply_with": 9 }), None);
    assert_eq!(status, 202, "{v}");
    let refused = "caxton_tool_calls_total{tool=\"web\",outcome=\"refused\"} 1";
    assert!(eventually(Duration::from_secs(10), || node.metrics().contains(refused)), "{}", node.metrics());
    assert!(node.metrics().contains("caxton_tool_calls_admitted_total 1"));
    assert!(server.seen().is_empty(), "nothing reached the server: the request was not one");
    // Without a grant, a version 1 agent's call is refused at its send.
    let (status, v) = caxton_testkit::answer(node.request("PUT", "/v1/agents/ungranted").send_bytes(&wat));
    assert_eq!(status, 201, "{v}");
    let (status, _) = node.post_message(&json!({ "receiver": "ungranted", "content": "@tool/web", "reply_with": 9 }), None);
    assert_eq!(status, 202);
    let denied = "caxton_tool_calls_refused_total{reason=\"not_granted\"} 1";
    assert!(eventually(Duration::from_secs(10), || node.metrics().contains(denied)), "{}", node.metrics());
}
