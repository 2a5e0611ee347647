//! Traces against real `caxton serve` processes: a small OTLP/HTTP receiver
//! (protobuf, decoded with the maintained `opentelemetry-proto` types)
//! collects what the nodes export.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caxton_shards::placement::shard_of;
use common::{answer, eventually, free_cluster_port, Node};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;
use serde_json::{json, Value};

const KEY: &str = "trace-test-cluster-key-0123";

/// One span as received, with the node (resource) that sent it.
#[derive(Debug, Clone)]
struct Received {
    node: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<KeyValue>,
    start: u64,
    end: u64,
}

impl Received {
    fn attr(&self, key: &str) -> String {
        match self.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()?.value.clone()) {
            Some(Any::StringValue(s)) => s,
            Some(Any::IntValue(i)) => i.to_string(),
            other => format!("{other:?}"),
        }
    }
}

/// An OTLP/HTTP receiver on loopback: decodes each `POST /v1/traces` body
/// as an `ExportTraceServiceRequest` and keeps the spans. `answer_after`
/// holds every answer that long (a slow collector).
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    requests: Arc<Mutex<u64>>,
}

impl Receiver {
    fn start(answer_after: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let (s, r) = (spans.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, r) = (s.clone(), r.clone());
                std::thread::spawn(move || serve(conn, &s, &r, answer_after));
            }
        });
        Receiver { url, spans, requests }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, spans: &Mutex<Vec<Received>>, requests: &Mutex<u64>, answer_after: Duration) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.starts_with("POST /v1/traces "), "the exporter posts to the traces signal: {line:?}");
        let mut length = 0;
        let mut content_type = String::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap(),
                "content-type" => content_type = v.trim().to_string(),
                _ => {}
            }
        }
        assert_eq!(content_type, "application/x-protobuf");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let request = ExportTraceServiceRequest::decode(&body[..]).expect("an OTLP protobuf body");
        for rs in request.resource_spans {
            let node = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.instance.id"))
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Any::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.lock().unwrap().push(Received {
                    node: node.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: span.attributes,
                    start: span.start_time_unix_nano,
                    end: span.end_time_unix_nano,
                });
            }
        }
        *requests.lock().unwrap() += 1;
        std::thread::sleep(answer_after);
        // An empty ExportTraceServiceResponse encodes to no bytes.
        if conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn member(ip: &str, join: Option<&str>, collector: &str) -> (Node, String) {
    let cluster = format!("{ip}:{}", free_cluster_port(ip));
    let mut args = vec!["--listen", &cluster, "--cluster-key", KEY, "--otlp-endpoint", collector, "--otlp-sampling-ratio", "1"];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    (Node::start_on(ip, 2, &args), cluster)
}

fn send_traced(node: &Node, receiver: &str, content: &str, traceparent: Option<&str>) -> (u16, Value) {
    let mut req = node.request("POST", "/v1/messages");
    if let Some(t) = traceparent {
        req = req.set("traceparent", t);
    }
    answer(req.send_json(json!({ "receiver": receiver, "content": content })))
}

/// A chain of three agents, across two shards of node A and on to node B,
/// started by a REST call with a `traceparent`, arrives at the collector as
/// one trace: each message's hop a child of its sender's span, each
/// handler a child of its hop, the first hop a child of the caller's span.
#[test]
fn a_chain_across_shards_and_nodes_is_one_trace_with_correct_parents() {
    let collector = Receiver::start(Duration::ZERO);
    let (a, a_name) = member("127.0.0.1", None, &collector.url);
    let (b, b_name) = member("127.0.0.2", Some(&a_name), &collector.url);
    let first = (0..).map(|i| format!("first{i}")).find(|n| shard_of(n.as_bytes(), 0, 2) == 0).unwrap();
    let second = (0..).map(|i| format!("second{i}")).find(|n| shard_of(n.as_bytes(), 0, 2) == 1).unwrap();
    for name in [&first, &second] {
        assert_eq!(a.deploy(name, "examples/agents/relay.wat", 1).0, 201);
    }
    assert_eq!(b.deploy("third", "examples/agents/relay.wat", 1).0, 201);
    // (relay.wat puts its origin in the content, which only means the
    // caller on the first relay's node: the last relay's "done" is not
    // waited for here.)
    let path = format!("{second} third");
    let third_handled = || b.agent("third")["messages_handled"].as_u64().unwrap_or(0);
    assert!(
        eventually(Duration::from_secs(30), || {
            send_traced(&a, &first, &path, None);
            eventually(Duration::from_secs(1), || third_handled() > 0)
        }),
        "the chain reaches node B"
    );

    let trace = [0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36];
    let caller = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
    let traceparent = format!("00-{}-{}-01", hex(&trace), hex(&caller));
    let (status, reply) = send_traced(&a, &first, &path, Some(&traceparent));
    assert_eq!(status, 202, "{reply}");

    let ours = || collector.spans().into_iter().filter(|s| s.trace_id == trace).collect::<Vec<_>>();
    assert!(eventually(Duration::from_secs(10), || ours().len() >= 6), "{:?}", ours());
    std::thread::sleep(Duration::from_millis(500));
    let spans = ours();
    assert_eq!(spans.len(), 6, "a hop and a call for each of three agents: {spans:#?}");
    let find =
        |kind: &str, agent: &str| spans.iter().find(|s| s.name == format!("{kind} {agent}")).unwrap_or_else(|| panic!("{kind} {agent}: {spans:#?}")).clone();
    let mut parent = caller.to_vec();
    for (agent, node, shard) in [(&first, &a_name, "0"), (&second, &a_name, "1"), (&"third".to_string(), &b_name, "")] {
        let hop = find("deliver", agent);
        let call = find("handle", agent);
        assert_eq!(hop.parent_span_id, parent, "{agent}'s hop is a child of its sender's span");
        assert_eq!(call.parent_span_id, hop.span_id, "{agent}'s call is a child of its hop");
        for s in [&hop, &call] {
            assert_eq!(&s.node, node, "{agent} runs on {node}");
            assert_eq!(s.attr("caxton.agent"), **agent);
            assert_eq!(s.attr("caxton.outcome"), "handled");
            assert_eq!(s.attr("fipa.performative"), "request");
            if !shard.is_empty() {
                assert_eq!(s.attr("caxton.shard"), shard);
            }
            assert!(s.start <= s.end && s.start > 0);
        }
        assert!(hop.end <= call.start, "the hop ends as the handler starts");
        parent = call.span_id.clone();
    }
    assert_eq!(find("deliver", &first).attr("caxton.path"), "api");
    assert_eq!(find("deliver", &second).attr("caxton.path"), "remote", "a cross-shard hop");
    assert_eq!(find("deliver", "third").attr("caxton.path"), "node", "a hop from another node");
    let ids: std::collections::BTreeSet<_> = spans.iter().map(|s| s.span_id.clone()).collect();
    assert_eq!(ids.len(), 6, "span ids are unique");
    // A waited-for REST reply carries the caller's trace too.
    assert_eq!(a.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
    let (status, reply) =
        answer(a.request("POST", "/v1/messages?reply_timeout_ms=5000").set("traceparent", &traceparent).send_json(json!({"receiver": "echo", "content": "x"})));
    assert_eq!((status, &reply["trace_id"]), (200, &json!(hex(&trace))), "{reply}");
    // A header that does not parse is ignored: a new trace, the request served.
    let (status, reply) = answer(
        a.request("POST", "/v1/messages?reply_timeout_ms=5000").set("traceparent", "00-zz-nonsense").send_json(json!({"receiver": "echo", "content": "y"})),
    );
    assert_eq!(status, 200);
    assert_ne!(reply["trace_id"], json!(hex(&trace)));
    let metrics = a.metrics();
    assert!(metrics.contains("caxton_trace_spans_exported_total{result=\"ok\"}"), "{metrics}");
    common::promtool_check(&metrics);
}

/// A collector that never answers, or is not there, costs counted drops
/// and failures: the node keeps handling every message, and nothing waits.
#[test]
fn a_slow_or_dead_collector_costs_counted_drops_never_messages() {
    let black_hole = Receiver::start(Duration::from_secs(3600));
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l); // nothing listens there now
        url
    };
    for (collector, what) in [(&black_hole.url, "slow"), (&dead, "dead")] {
        let node = Node::start_with(1, &["--otlp-endpoint", collector, "--otlp-sampling-ratio", "1"]);
        assert_eq!(node.deploy("echo", "examples/agents/echo.wat", 1).0, 201);
        // More spans than the shard's queue holds (two a message).
        let total = caxton_shards::trace::TRACE_SPANS_QUEUED_MAX as u64;
        std::thread::scope(|s| {
            let senders: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..total / 4 {
                            let (status, _) = node.post_message(&json!({"receiver": "echo", "content": "x"}), None);
                            assert_eq!(status, 202);
                        }
                    })
                })
                .collect();
            senders.into_iter().for_each(|h| h.join().unwrap());
        });
        assert!(eventually(Duration::from_secs(60), || node.agent("echo")["messages_handled"] == total), "{what}: every message is handled");
        let sample =
            |prefix: &str| -> f64 { node.metrics().lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum() };
        assert!(
            eventually(Duration::from_secs(20), || sample("caxton_trace_spans_total{shard=\"0\",outcome=\"dropped\"}") > 0.0
                || sample("caxton_trace_export_failures_total") > 0.0),
            "{what}: drops or failures are counted"
        );
        assert_eq!(
            sample("caxton_trace_spans_total{shard=\"0\",outcome=\"queued\"}") + sample("caxton_trace_spans_total{shard=\"0\",outcome=\"dropped\"}"),
            2.0 * total as f64
        );
        // Still answering at once.
        assert_eq!(node.post_message(&json!({"receiver": "echo", "content": "still"}), Some(5000)).1["content"], "still", "{what}");
    }
    assert!(*black_hole.requests.lock().unwrap() >= 1, "the slow collector was sent to");
}

/// The flags refuse what cannot work, at start, with a clear error.
#[test]
fn bad_otlp_flags_are_refused_at_start() {
    for (args, words) in [
        (&["--otlp-endpoint", "https://collector:4318"][..], "https"),
        (&["--otlp-endpoint", "collector:4318"], "http://"),
        (&["--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-sampling-ratio", "2"], "fraction"),
    ] {
        let out = std::process::Command::new(caxton_testkit::binary()).args(["serve", "--check-config"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(words), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let ok =
        std::process::Command::new(caxton_testkit::binary()).args(["serve", "--check-config", "--otlp-endpoint", "http://127.0.0.1:4318"]).output().unwrap();
    assert!(String::from_utf8_lossy(&ok.stdout).contains("traces=http://127.0.0.1:4318/v1/traces (ratio 0.01)"), "{ok:?}");
}

/// A tool call in a sampled trace is a span of its own (`call @tool/NAME`),
/// a child of the calling handler's span, and the tool is handed that span
/// as its parent: the HTTP server sees it in `traceparent`.
#[test]
fn a_tool_call_is_a_span_and_the_tool_gets_its_traceparent() {
    let collector = Receiver::start(Duration::ZERO);
    let server = caxton_testkit::http_server::HttpServer::start("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("caxton.toml");
    std::fs::write(&config, format!("[tools.web]\nkind = \"http\"\nurl = \"{}\"\nallow_private = true\n", server.url())).unwrap();
    let node = Node::start_with(2, &["--config", config.to_str().unwrap(), "--otlp-endpoint", &collector.url, "--otlp-sampling-ratio", "1"]);
    let wasm = std::fs::read(caxton_testkit::example_agent("rust-tool_relay")).unwrap();
    let (status, v) = answer(node.request("PUT", "/v1/agents/relay?tools=web").send_bytes(&wasm));
    assert_eq!(status, 201, "{v}");
    let trace = [0x11u8; 16];
    let traceparent = format!("00-{}-{}-01", hex(&trace), hex(&[0x22u8; 8]));
    let ask = json!({"tool": "web", "request": {"method": "GET", "path": "/headers"}}).to_string();
    let (status, v) = answer(
        node.request("POST", "/v1/messages?reply_timeout_ms=10000").set("traceparent", &traceparent).send_json(json!({"receiver": "relay", "content": ask})),
    );
    assert_eq!(status, 200, "{v}");
    let find = |name: &str| collector.spans().into_iter().find(|s| s.trace_id == trace && s.name == name);
    assert!(eventually(Duration::from_secs(10), || find("call @tool/web").is_some()), "{:#?}", collector.spans());
    let call = find("call @tool/web").unwrap();
    let handler = collector.spans().into_iter().find(|s| s.trace_id == trace && s.name == "handle relay" && s.span_id == call.parent_span_id);
    assert!(handler.is_some(), "the call is a child of the handler that made it: {:#?}", collector.spans());
    assert_eq!(call.attr("caxton.outcome"), "handled");
    let seen = server.seen();
    let sent = seen[0].header("traceparent").unwrap();
    assert_eq!(sent, format!("00-{}-{}-01", hex(&trace), hex(&call.span_id)), "the tool's parent is the call's span");
}
