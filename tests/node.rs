//! Integration tests against real `caxton serve` processes.

mod common;

use std::time::Duration;

use caxton_shards::placement::shard_of;
use common::{eventually, Node, BIN};
use serde_json::json;

#[test]
fn echo_round_trip_through_the_rest_api() {
    let node = Node::start(2);
    let (status, v) = node.deploy("echo", "examples/agents/echo.wat", 2);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["name"], "echo");
    assert_eq!(v["instances"], 2);
    assert_eq!(v["shards"].as_array().unwrap().len(), 2);
    assert_eq!(v["startup_us"].as_array().unwrap().len(), 2);

    let (status, reply) = node.post_message(&json!({"receiver": "echo", "content": "héllo", "conversation_id": 5, "reply_with": 77}), Some(5000));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["content"], "héllo");
    assert_eq!(reply["performative"], "inform");
    assert_eq!(reply["sender"], "echo");
    assert_eq!(reply["in_reply_to"], 77);
    assert_eq!(reply["conversation_id"], 5);
    assert!(reply["receiver"].as_str().unwrap().starts_with("@api/"));

    // Binary content comes back as base64.
    let (status, reply) = node.post_message(&json!({"receiver": "echo", "content_b64": "AP8="}), Some(5000));
    assert_eq!(status, 200);
    assert_eq!(reply["content_b64"], "AP8=");

    // Without waiting: 202 with the id.
    let (status, v) = node.post_message(&json!({"receiver": "echo", "performative": "inform", "content": "x"}), None);
    assert_eq!(status, 202);
    assert!(v["message_id"].as_u64().unwrap() > 0);

    assert!(eventually(Duration::from_secs(5), || node.agent("echo")["messages_handled"] == 3));
    let (status, list) = node.get("/v1/agents");
    assert_eq!(status, 200);
    assert_eq!(list["agents"][0]["name"], "echo");
    assert_eq!(node.delete("/v1/agents/echo").0, 204);
    assert_eq!(node.get("/v1/agents/echo").0, 404);
}

#[test]
fn the_cli_deploys_sends_lists_and_stops_with_reliable_exit_codes() {
    let node = Node::start(2);
    let echo = common::repo_path("examples/agents/echo.wat");
    let out = node.cli(&["agent", "deploy", echo.to_str().unwrap(), "--name", "echo", "--instances", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = node.cli(&["message", "send", "--to", "echo", "--content", "ping", "--wait-reply", "5000"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ping");
    let out = node.cli(&["agent", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("echo"));

    // The node refused: exit 1, with the node's message.
    let out = node.cli(&["message", "send", "--to", "nobody", "--content", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent named"));
    // The agent failed: exit 1 (a relay to an unknown hop returns an error,
    // and the caller hears `handler_error` at once).
    let relay = common::repo_path("examples/agents/relay.wat");
    assert!(node.cli(&["agent", "deploy", relay.to_str().unwrap(), "--name", "r"]).status.success());
    let out = node.cli(&["message", "send", "--to", "r", "--content", "nobody", "--wait-reply", "5000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("handler_error"), "{out:?}");
    // No reply in time: exit 4 (an agent that answers nothing).
    let silent = common::repo_path("tests/agents/small.wat");
    assert!(node.cli(&["agent", "deploy", silent.to_str().unwrap(), "--name", "silent"]).status.success());
    let out = node.cli(&["message", "send", "--to", "silent", "--content", "x", "--wait-reply", "300"]);
    assert_eq!(out.status.code(), Some(4));
    // Usage error: exit 2. Unreachable node: exit 3.
    assert_eq!(node.cli(&["agent", "deploy"]).status.code(), Some(2));
    let out = std::process::Command::new(BIN).args(["agent", "list", "--api", "127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));

    let out = node.cli(&["agent", "stop", "echo"]);
    assert!(out.status.success());
    assert_eq!(node.cli(&["agent", "stop", "echo"]).status.code(), Some(1));
}

#[test]
fn a_message_chain_crosses_shards_and_comes_back() {
    let node = Node::start(2);
    // Six relays whose homes alternate between the two shards.
    let mut names = Vec::new();
    for i in 0.. {
        let name = format!("relay-{i}");
        if shard_of(name.as_bytes(), 0, 2) == names.len() % 2 {
            names.push(name);
        }
        if names.len() == 6 {
            break;
        }
    }
    for name in &names {
        let (status, v) = node.deploy(name, "examples/agents/relay.wat", 1);
        assert_eq!(status, 201, "{v}");
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(node.agent(name)["shards"], json!([i % 2]));
    }
    let hops = names[1..].join(" ");
    let (status, reply) = node.post_message(&json!({"receiver": names[0], "content": hops, "reply_with": 9}), Some(5000));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["content"], "done");
    assert_eq!(reply["sender"], names[5].as_str());
    assert_eq!(reply["in_reply_to"], 9);
    for name in &names {
        assert_eq!(node.agent(name)["messages_handled"], 1, "{name}");
    }
    let health = node.health();
    let remote: u64 = health["shards"].as_array().unwrap().iter().map(|s| s["routed_remote"].as_u64().unwrap()).sum();
    assert_eq!(remote, 5, "each of the five hops crossed shards: {health}");
}

#[test]
fn state_survives_kill_9_and_restart() {
    let mut node = Node::start(2);
    assert_eq!(node.deploy("counter", "examples/agents/counter.wat", 1).0, 201);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 3).0, 201);
    for want in 1..=3 {
        let (status, reply) = node.post_message(&json!({"receiver": "counter", "content": "tick"}), Some(5000));
        assert_eq!(status, 200);
        assert_eq!(reply["content"], want.to_string());
    }
    node.kill9_and_restart();
    let (_, list) = node.get("/v1/agents");
    assert_eq!(list["agents"].as_array().unwrap().len(), 2, "agents come back: {list}");
    assert_eq!(node.agent("echo")["instances"], 3);
    let (status, reply) = node.post_message(&json!({"receiver": "counter", "content": "tick"}), Some(5000));
    assert_eq!(status, 200);
    assert_eq!(reply["content"], "4", "the count survived kill -9");
    let (status, reply) = node.post_message(&json!({"receiver": "echo", "content": "still here"}), Some(5000));
    assert_eq!((status, reply["content"].as_str()), (200, Some("still here")));

    // Undeploy deletes state: a new counter starts at 1.
    assert_eq!(node.delete("/v1/agents/counter").0, 204);
    assert_eq!(node.deploy("counter", "examples/agents/counter.wat", 1).0, 201);
    let (_, reply) = node.post_message(&json!({"receiver": "counter", "content": "tick"}), Some(5000));
    assert_eq!(reply["content"], "1");
}

/// A handler sees its own state writes, and a handler that writes and then
/// traps loses its write, and only its write, across a kill -9 too
/// (`storage` rule 2: state writes are held until the handler ends well).
#[test]
fn a_handler_that_writes_and_then_traps_loses_its_write_and_only_its_write() {
    let mut node = Node::start(2);
    assert_eq!(node.deploy("counter", "tests/agents/counter_then_trap.wat", 1).0, 201);
    let tick = |node: &Node, content: &str| {
        let (status, reply) = node.post_message(&json!({"receiver": "counter", "content": content}), Some(5000));
        assert_eq!(status, 200, "{reply}");
        (reply["performative"].as_str().unwrap_or("").to_string(), reply["content"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(tick(&node, "tick"), ("inform".into(), "1".into()), "read back from its own write");
    assert_eq!(tick(&node, "tick"), ("inform".into(), "2".into()));
    for _ in 0..3 {
        assert_eq!(tick(&node, "crash"), ("failure".into(), "crashed_handler".into()));
    }
    assert_eq!(tick(&node, "tick"), ("inform".into(), "3".into()), "the trapped handlers' writes are gone");
    node.kill9_and_restart();
    assert_eq!(tick(&node, "tick"), ("inform".into(), "4".into()), "and were never committed");
}

#[test]
fn bad_input_is_answered_with_its_error_while_the_node_keeps_serving() {
    let node = Node::start(2);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let echo_works = || {
        let (status, reply) = node.post_message(&json!({"receiver": "echo", "content": "alive"}), Some(5000));
        status == 200 && reply["content"] == "alive"
    };
    let wasm = wasmer::wat2wasm(&std::fs::read(common::repo_path("examples/agents/echo.wat")).unwrap()).unwrap().to_vec();
    let cases: Vec<(&str, Vec<u8>, u32, u16, &str)> = vec![
        ("junk", b"\x00\x01\x02 not wasm".to_vec(), 1, 400, "invalid_module"),
        ("truncated", wasm[..wasm.len() / 2].to_vec(), 1, 400, "invalid_module"),
        ("text", b"(module (memory".to_vec(), 1, 400, "invalid_module"),
        ("nomem", std::fs::read(common::repo_path("tests/agents/no_memory.wat")).unwrap(), 1, 400, "invalid_module"),
        ("abort", std::fs::read(common::repo_path("tests/agents/forbidden_import.wat")).unwrap(), 1, 400, "invalid_module"),
        ("initfail", std::fs::read(common::repo_path("tests/agents/init_fails.wat")).unwrap(), 1, 400, "init_failed"),
        ("Bad_Name", wasm.clone(), 1, 400, "invalid_name"),
        ("many", wasm.clone(), 11, 400, "invalid_instances"),
        ("echo", wasm.clone(), 1, 409, "conflict"),
    ];
    for (name, body, instances, status, code) in cases {
        let (got, v) = node.put_module(name, instances, &body);
        assert_eq!((got, v["error"]["code"].as_str()), (status, Some(code)), "{name}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        assert!(echo_works(), "after {name}");
    }
    let (_, v) = node.put_module("abort", 1, &std::fs::read(common::repo_path("tests/agents/forbidden_import.wat")).unwrap());
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("env.abort") && message.contains("WASI preview 1"), "{v}");
    assert_eq!(node.get("/v1/agents/initfail").0, 404, "a failed deploy leaves nothing behind");

    let messages = [
        (json!({"receiver": "nobody", "content": "x"}), 404),
        (json!({"receiver": "echo", "performative": "shout", "content": "x"}), 400),
        (json!({"receiver": "echo", "content_b64": "!!"}), 400),
        (json!({"receiver": "echo", "content": "x", "surprise": 1}), 400),
        (json!({"receiver": "echo", "content": "x".repeat(1024 * 1024 + 1)}), 413),
    ];
    for (body, status) in messages {
        let (got, v) = node.post_message(&body, None);
        assert_eq!(got, status, "{v}");
        assert!(v["error"]["code"].is_string());
    }
    let (status, v) = common::answer(ureq::post(&node.url("/v1/messages")).set("content-type", "application/json").send_string("{not json"));
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_json")));
    let (status, v) = common::answer(ureq::post(&node.url("/v1/messages")).send_string("{\"receiver\": \"echo\"}"));
    assert_eq!((status, v["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "a POST is JSON");
    assert_eq!(node.get("/v1/nowhere").0, 404);
    assert_eq!(node.delete("/v1/agents/nobody").0, 404);
    for (method, path, allow) in [("DELETE", "/metrics", "GET"), ("PATCH", "/v1/agents/echo", "PUT, GET, DELETE"), ("GET", "/v1/messages", "POST")] {
        let resp = match node.request(method, path).call() {
            Err(ureq::Error::Status(_, r)) => r,
            other => panic!("{method} {path}: {other:?}"),
        };
        assert_eq!((resp.status(), resp.header("allow")), (405, Some(allow)), "{method} {path}");
    }
    assert!(echo_works());
}

#[test]
fn a_trapping_agent_is_counted_recreated_and_its_shard_keeps_serving() {
    let node = Node::start(1);
    assert_eq!(node.deploy("crashy", "tests/agents/crashy.wat", 1).0, 201);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    for content in ["crash", "fine", "fail", "crash", "fine"] {
        assert_eq!(node.post_message(&json!({"receiver": "crashy", "content": content}), None).0, 202);
    }
    assert!(eventually(Duration::from_secs(5), || node.agent("crashy")["messages_handled"] == 3));
    let v = node.agent("crashy");
    assert_eq!((v["crashes"].as_u64(), v["errors"].as_u64()), (Some(2), Some(1)), "{v}");
    assert_eq!(v["instance_stats"][0]["running"], true, "recreated after the trap");
    let (status, reply) = node.post_message(&json!({"receiver": "echo", "content": "same shard"}), Some(5000));
    assert_eq!((status, reply["content"].as_str()), (200, Some("same shard")));
    let health = node.health();
    assert_eq!(health["shards"][0]["dead_letters"]["crashed_handler"], 2);
}

#[test]
fn host_functions_refuse_bad_pointers_and_envelopes_with_abi_codes() {
    let node = Node::start(1);
    assert_eq!(node.deploy("abuser", "tests/agents/abuser.wat", 1).0, 201);
    assert_eq!(node.post_message(&json!({"receiver": "abuser", "content": "go"}), None).0, 202);
    assert!(eventually(Duration::from_secs(5), || node.agent("abuser")["messages_handled"] == 1));
    assert_eq!(node.agent("abuser")["errors"], 0, "every host call returned the expected code");
    let health = node.health();
    let refusals = &health["shards"][0]["abi_refusals"];
    assert_eq!((refusals["invalid"].as_u64(), refusals["too_large"].as_u64()), (Some(4), Some(1)), "{refusals}");
}

#[test]
fn a_full_mailbox_answers_429_with_retry_after_and_every_accepted_message_is_handled() {
    let node = Node::start_with(1, &["--mailbox-messages-max", "4"]);
    assert_eq!(node.deploy("slow", "tests/agents/slow.wat", 1).0, 201);
    // Sixteen clients at once against a mailbox of four.
    let results: Vec<(u64, u64)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    let (mut accepted, mut busy) = (0, 0);
                    for _ in 0..20 {
                        match ureq::post(&node.url("/v1/messages")).send_json(json!({"receiver": "slow", "content": "x"})) {
                            Ok(r) => {
                                assert_eq!(r.status(), 202);
                                accepted += 1;
                            }
                            Err(ureq::Error::Status(429, r)) => {
                                assert_eq!(r.header("Retry-After"), Some("1"));
                                busy += 1;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (accepted, busy)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let accepted: u64 = results.iter().map(|r| r.0).sum();
    let busy: u64 = results.iter().map(|r| r.1).sum();
    assert!(busy > 0, "the mailbox never filled ({accepted} accepted)");
    assert!(eventually(Duration::from_secs(60), || node.agent("slow")["messages_handled"].as_u64() == Some(accepted)), "nothing accepted is lost");
}

#[test]
fn an_agent_flooding_a_full_mailbox_gets_busy_and_nothing_it_sent_is_lost() {
    let node = Node::start(1);
    assert_eq!(node.deploy("slow", "tests/agents/slow.wat", 1).0, 201);
    assert_eq!(node.deploy("flooder", "tests/agents/flooder.wat", 1).0, 201);
    let (status, reply) = node.post_message(&json!({"receiver": "flooder", "content": "slow"}), Some(10_000));
    assert_eq!(status, 200, "{reply}");
    use base64::Engine as _;
    let counts = base64::engine::general_purpose::STANDARD.decode(reply["content_b64"].as_str().unwrap()).unwrap();
    let ok = u32::from_le_bytes(counts[0..4].try_into().unwrap()) as u64;
    let busy = u32::from_le_bytes(counts[4..8].try_into().unwrap()) as u64;
    assert_eq!(ok, caxton_shards::limits::MAILBOX_MESSAGES_MAX as u64, "room for exactly one mailbox");
    assert_eq!(ok + busy, 2000);
    let health = node.health();
    assert_eq!(health["shards"][0]["busy"].as_u64(), Some(busy));
    assert!(eventually(Duration::from_secs(60), || node.agent("slow")["messages_handled"].as_u64() == Some(ok)), "every accepted send arrives");
}

#[test]
fn a_non_loopback_api_needs_a_token_and_the_token_is_checked() {
    // `caxton serve ARGS` with `token` in the environment (or none) must
    // refuse to start: its standard error.
    let refused = |args: &[&str], token: Option<&str>| {
        let mut serve = std::process::Command::new(BIN);
        serve.args(["serve", "--cores", "1"]).args(args).arg("--data-dir").arg(tempfile::tempdir().unwrap().path());
        match token {
            Some(t) => serve.env("CAXTON_API_TOKEN", t),
            None => serve.env_remove("CAXTON_API_TOKEN"),
        };
        let out = serve.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(refused(&["--api", "0.0.0.0:0"], None).contains("--api-token"));
    // With a token but without TLS: refused, the token would travel in cleartext.
    let stderr = refused(&["--api", "0.0.0.0:0"], Some("s3cret-0123456789abcdef0123456789"));
    assert!(stderr.contains("cleartext"), "{stderr}");
    // The same for a non-loopback wire listener: its hello carries the token.
    let stderr = refused(&["--wire", "0.0.0.0:0"], Some("s3cret-0123456789abcdef0123456789"));
    assert!(stderr.contains("wire listener") && stderr.contains("without TLS"), "{stderr}");

    let node = Node::start_with(1, &["--api-token", "s3cret-0123456789abcdef0123456789"]);
    assert_eq!(node.get("/v1/agents").0, 401);
    let r = ureq::get(&node.url("/v1/agents")).set("Authorization", "Bearer s3cret-0123456789abcdef0123456789").call().unwrap();
    assert_eq!(r.status(), 200);
    let r = ureq::get(&node.url("/v1/agents")).set("Authorization", "Bearer wrong!").call();
    assert!(matches!(r, Err(ureq::Error::Status(401, _))));
}

/// Secrets come from a file, the environment or a systemd credential; one
/// on a command line still works, with a warning naming the safer ways;
/// two sources at once are refused (`caxton::secret` rules 1 and 2).
#[test]
fn secrets_come_from_a_file_the_environment_or_a_credential_and_argv_is_warned() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-file-0123456789abcdef012345\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file_arg = file.to_str().unwrap();
    let bearer = |node: &Node, token: &str| match ureq::get(&node.url("/v1/agents")).set("Authorization", &format!("Bearer {token}")).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("{e}"),
    };
    const WARNED: &str = "--api-token was given on the command line";

    // A file: its token (without the newline) is the one checked; no warning.
    let node = Node::start_with(1, &["--api-token-file", file_arg]);
    assert_eq!(node.get("/v1/agents").0, 401);
    assert_eq!(bearer(&node, "from-file-0123456789abcdef012345"), 200);
    assert_eq!(bearer(&node, "from-file-0123456789abcdef01234"), 401);
    assert!(!node.logs().contains(WARNED));
    // The CLI reads a token file too, and warns about a token in its arguments.
    let cli = |args: &[&str]| std::process::Command::new(BIN).args(args).args(["--api", &node.api()]).env_remove("CAXTON_API_TOKEN").output().unwrap();
    let out = cli(&["agent", "list", "--api-token-file", file_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    let out = cli(&["agent", "list", "--api-token", "from-file-0123456789abcdef012345"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(WARNED), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cli(&["agent", "list"]).status.code(), Some(1), "no token: refused");

    // On the node's command line: it works, and the log says why not to.
    let argv = Node::start_with(1, &["--api-token", "on-the-command-line-0123456789abc"]);
    assert_eq!(bearer(&argv, "on-the-command-line-0123456789abc"), 200);
    assert!(argv.logs().contains(WARNED), "{}", argv.logs());
    assert!(argv.logs().contains("--api-token-file"));

    // A systemd credential ($CREDENTIALS_DIRECTORY/api-token).
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("api-token"), "from-systemd-0123456789abcdef0123").unwrap();
    let spec = caxton_testkit::node::NodeSpec {
        env: vec![("CREDENTIALS_DIRECTORY".into(), creds.path().display().to_string())],
        ..caxton_testkit::node::NodeSpec::new(1)
    };
    let credential = Node::launch(spec).unwrap();
    assert_eq!(credential.get("/v1/agents").0, 401);
    assert_eq!(bearer(&credential, "from-systemd-0123456789abcdef0123"), 200);

    // Two sources at once: refused at start, naming the secret.
    let out = std::process::Command::new(BIN)
        .args(["serve", "--check-config", "--api-token-file", file_arg, "--api-token", "another"])
        .env_remove("CAXTON_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give it one way"), "{}", String::from_utf8_lossy(&out.stderr));
    // An empty file is refused too.
    std::fs::write(&file, "").unwrap();
    let out = std::process::Command::new(BIN).args(["serve", "--check-config", "--api-token-file", file_arg]).env_remove("CAXTON_API_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}

/// `--tls-cert`/`--tls-key`: the API speaks HTTPS only; the CLI trusts a
/// private CA with `--ca`; plain HTTP, an untrusted client and a client
/// that never finishes its handshake are refused, and counted.
#[test]
fn the_api_speaks_tls_and_the_cli_trusts_a_private_ca() {
    let spec = caxton_testkit::node::NodeSpec {
        tls: true,
        token: Some("tls-token-0123456789abcdef01234567".into()),
        ..caxton_testkit::node::NodeSpec::new(1).args(&["--api-header-timeout-ms", "500"])
    };
    let node = Node::launch(spec).unwrap();
    assert!(node.url("/").starts_with("https://"));
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201, "a deploy over TLS");
    assert_eq!(node.post_message(&json!({"receiver": "echo", "content": "over tls"}), Some(5000)).1["content"], "over tls");

    // The CLI with the CA: works; without it, the certificate is not trusted.
    let out = node.cli(&["agent", "list", "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("echo"));
    let out = std::process::Command::new(BIN)
        .args(["agent", "list", "--api", &format!("https://{}", node.api())])
        .env("CAXTON_API_TOKEN", "tls-token-0123456789abcdef01234567")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).to_lowercase().contains("certificate"), "{}", String::from_utf8_lossy(&out.stderr));

    // Plain HTTP to the TLS port: no answer in the clear, and counted.
    let plain = ureq::get(&format!("http://{}/v1/health", node.api())).timeout(Duration::from_secs(5)).call();
    assert!(plain.is_err(), "plain HTTP is not served: {plain:?}");
    // The CLI says what to do, not what the bytes looked like.
    let out = std::process::Command::new(BIN)
        .args(["agent", "list", "--api", &format!("http://{}", node.api())])
        .env("CAXTON_API_TOKEN", "tls-token-0123456789abcdef01234567")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use https://HOST:PORT and --ca FILE"), "{}", String::from_utf8_lossy(&out.stderr));
    // A client that connects and never starts its handshake is closed at
    // the header time bound.
    use std::io::Read;
    let mut silent = std::net::TcpStream::connect(node.api()).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(silent.read(&mut buf).unwrap_or(0), 0, "closed, not answered");
    assert!(started.elapsed() < Duration::from_secs(9));
    let metric = |name: &str| node.metrics().lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0);
    assert!(eventually(Duration::from_secs(5), || metric("caxton_api_tls_refused_total ") >= 1.0));
    assert!(eventually(Duration::from_secs(5), || metric("caxton_api_connections_closed_total{reason=\"header_timeout\"}") >= 1.0));

    // A bad key file stops the node at start, naming it.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--cores", "1", "--api", "127.0.0.1:0", "--tls-cert"])
        .arg(node.ca.as_ref().unwrap())
        .arg("--tls-key")
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_config_refuses_more_cores_than_the_process_may_use() {
    // On one allowed CPU (as a unit's CPUAffinity= makes it), --cores 2 is
    // refused by --check-config as serve would refuse it: no restart loop.
    let check = |cores: &str| std::process::Command::new("taskset").args(["-c", "0", BIN, "serve", "--check-config", "--cores", cores]).output().unwrap();
    let out = check("2");
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cores 2") && err.contains("1 CPUs") && err.contains("choose 1 to 1"), "{err}");
    assert!(check("1").status.success());
    assert!(!check("0").status.success());
}

#[test]
fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    // The harness sends the node's standard error to a file, as journald
    // or a redirect would.
    let node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let logs = node.logs();
    assert!(logs.contains("caxton node serving"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "ANSI escapes in a log file: {logs:?}");
}

#[test]
fn the_cli_takes_the_api_address_from_caxton_api_and_counts_in_words() {
    let node = Node::start(1);
    let out = std::process::Command::new(BIN)
        .args(["agent", "deploy", &common::repo_path("examples/agents/echo.wat").display().to_string(), "--name", "echo", "--instances", "1"])
        .env("CAXTON_API", node.api())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("(1 instance on shard [0])"), "{said}");
    let out = std::process::Command::new(BIN).args(["agent", "list"]).env("CAXTON_API", node.api()).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("echo"), "{out:?}");
}

#[test]
fn a_cli_command_whose_reader_goes_away_ends_quietly() {
    let node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    // `caxton agent list | true`: the reader is gone before the command
    // writes (its request to the node comes first).
    let mut child = std::process::Command::new(BIN)
        .args(["agent", "list", "--output", "json", "--api", &node.api()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("aborting"), "{err}");
}

#[test]
fn the_data_dir_and_its_files_are_the_nodes_alone() {
    use std::os::unix::fs::PermissionsExt;
    // The harness starts the node with the test's umask (022 here): the
    // node narrows it itself.
    let node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert_eq!(node.post_message(&json!({"receiver": "echo", "content": "x"}), Some(5000)).0, 200);
    let data = node.dir.path().join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    let mut files = 0;
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        let path = entry.path();
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{}", path.display());
        files += 1;
    }
    assert!(files >= 3, "node.db, shard-0.db and their WALs");
}

#[test]
fn a_data_dir_from_a_newer_build_is_refused_and_left_as_it_was() {
    let mut node = Node::start(1);
    assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    assert!(node.terminate().success());
    let data = node.dir.path().join("data");
    let catalog = rusqlite::Connection::open(data.join("node.db")).unwrap();
    let schema = |c: &rusqlite::Connection| c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(schema(&catalog), caxton::catalog::CATALOG_SCHEMA_VERSION, "this build's number is kept");
    // As a newer build would leave it.
    catalog.pragma_update(None, "user_version", caxton::catalog::CATALOG_SCHEMA_VERSION + 1).unwrap();
    drop(catalog);
    let out = std::process::Command::new(BIN).args(["serve", "--cores", "1", "--api", "127.0.0.1:0", "--data-dir"]).arg(&data).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("written by a newer caxton") && err.contains("nothing was changed"), "{err}");
    let catalog = rusqlite::Connection::open(data.join("node.db")).unwrap();
    assert_eq!(schema(&catalog), caxton::catalog::CATALOG_SCHEMA_VERSION + 1, "not migrated down");
    // Back to this build's number, the node starts with its agent.
    catalog.pragma_update(None, "user_version", caxton::catalog::CATALOG_SCHEMA_VERSION).unwrap();
    drop(catalog);
    node.restart();
    assert_eq!(node.post_message(&json!({"receiver": "echo", "content": "still here"}), Some(5_000)).1["content"], "still here");
}
