//! The tools runtime: the node's own I/O thread where agents' tool calls
//! run, so that no shard ever waits on the outside world (issue 28).
//!
//! A call is a message. An agent sends a `request` to `@tool/NAME`; the
//! shard admits it (`caxton_shards::tools`: granted, in-flight bound),
//! records it with the handler's writes and lets it go at their commit;
//! the runtime outbox hands it to the control plane, which hands it here
//! ([`Tools::submit`]). The answer is a message from `@tool/NAME` to the
//! agent, `in_reply_to` the call's `reply_with`: an `inform` with the
//! result, or a `failure` whose content names why ([`ToolFailure`]).
//!
//! Rules:
//! 1. Every call submitted gets exactly one answer, and the answer is
//!    handed to a shard until one takes it ([`dispatch`] rule 3); the
//!    shard's row makes the call again after a crash (`storage::tool_calls`).
//! 2. Nothing here blocks a shard: calls arrive through a bounded queue
//!    ([`TOOL_QUEUE_CALLS_MAX`]) and a full one is answered `refused`; the
//!    node runs at most [`TOOL_CALLS_NODE_MAX`] at once.
//! 3. A tool that is down is reported (`GET /v1/tools`, `caxton_tool_up`)
//!    and its calls answered `tool_down`; it never stops the node.
//!
//! - [`dispatch`]: a call's way from the queue to its answer, and its bounds;
//! - [`mcp`]: MCP servers through `rmcp`; [`http`]: plain HTTP tools;
//! - [`net_guard`]: where HTTP tools may connect;
//! - [`metrics`]: calls by outcome, call time, up;
//! - [`conformance`]: `caxton tool conformance`, the MCP suite's client.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use caxton_shards::limits::TOOL_QUEUE_CALLS_MAX;
use caxton_shards::runtime_outbox::Held;
pub use caxton_shards::tools::ToolFailure;
use caxton_shards::trace::SpanOutput;
use caxton_shards::Message;
use serde::Serialize;

use crate::config::tools::{ToolKind, ToolSpec};

pub mod conformance;
pub mod dispatch;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod net_guard;

pub use dispatch::{Deliver, Delivery};

/// What a call carries besides its content.
#[derive(Debug, Clone)]
pub struct CallMeta {
    /// The same for a call and its replay after a restart (`http` rule 4).
    pub idempotency_key: String,
    /// W3C `traceparent` of the agent's handler, when the call is traced.
    pub traceparent: Option<String>,
}

/// Why a call has no result, and a detail for the agent's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub reason: ToolFailure,
    pub detail: String,
}

impl CallFailure {
    pub fn new(reason: ToolFailure, detail: String) -> CallFailure {
        CallFailure { reason, detail }
    }

    /// The failure's content: the reason, a space and the detail.
    pub fn content(&self) -> Vec<u8> {
        let mut c = self.reason.as_str().as_bytes().to_vec();
        if !self.detail.is_empty() {
            c.push(b' ');
            c.extend_from_slice(self.detail.as_bytes());
        }
        c.truncate(4096);
        debug_assert_eq!(ToolFailure::from_content(&c), Some(self.reason), "paired with the SDK's reading");
        c
    }
}

pub enum ToolClient {
    Mcp(mcp::McpTool),
    Http(http::HttpTool),
}

/// A tool's health, as `GET /v1/tools` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ToolStatus {
    pub up: bool,
    /// Why it is down, when it is.
    pub error: Option<String>,
    /// An MCP server's tools, as its `tools/list` gave them (name,
    /// description, input schema).
    pub tools: Vec<serde_json::Value>,
}

/// One configured tool.
pub struct ToolEntry {
    pub spec: ToolSpec,
    pub client: ToolClient,
    pub metrics: metrics::ToolMetrics,
    status: Mutex<ToolStatus>,
}

impl ToolEntry {
    pub fn set_up(&self, tools: Vec<serde_json::Value>, error: Option<String>) {
        *self.status.lock().unwrap() = ToolStatus { up: true, error, tools };
        self.metrics.up.store(true, Ordering::Relaxed);
    }

    pub fn set_down(&self, why: String) {
        tracing::warn!(tool = self.spec.name, error = %why, "tool down");
        let mut status = self.status.lock().unwrap();
        status.up = false;
        status.error = Some(why);
        self.metrics.up.store(false, Ordering::Relaxed);
    }

    pub fn status(&self) -> ToolStatus {
        self.status.lock().unwrap().clone()
    }

    async fn call(&self, content: &[u8], meta: &CallMeta) -> Result<Vec<u8>, CallFailure> {
        match &self.client {
            ToolClient::Mcp(m) => m.call(content, meta).await,
            ToolClient::Http(h) => h.call(content, meta).await,
        }
    }
}

/// The tools of a node, and the queue into their runtime.
pub struct Tools {
    entries: HashMap<String, Arc<ToolEntry>>,
    /// Names in config order.
    names: Vec<String>,
    calls: tokio::sync::mpsc::Sender<Held>,
    /// Calls answered `refused` at once because the queue was full (rule 2).
    pub queue_full: std::sync::atomic::AtomicU64,
}

impl Tools {
    /// Starts the runtime's thread (`caxton-tools`) and each tool's
    /// connection; returns at once (rule 3: a tool that is down is not
    /// waited for).
    /// `spans`: where sampled calls' spans go (with `--otlp-endpoint`).
    pub fn start(specs: Vec<ToolSpec>, install_id: u64, deliver: Arc<dyn Deliver>, spans: Option<SpanOutput>) -> Result<Arc<Tools>, String> {
        let mut entries = HashMap::new();
        let mut supervised = Vec::new();
        for spec in &specs {
            let client = match &spec.kind {
                ToolKind::McpStdio { command, env, cwd } => {
                    supervised.push((spec.name.clone(), mcp::Endpoint::Stdio { command: command.clone(), env: env.clone(), cwd: cwd.clone() }));
                    ToolClient::Mcp(mcp::McpTool::default())
                }
                ToolKind::McpHttp { url, headers, allow_private } => {
                    supervised.push((spec.name.clone(), mcp::Endpoint::Http { url: url.clone(), headers: headers.clone(), allow_private: *allow_private }));
                    ToolClient::Mcp(mcp::McpTool::default())
                }
                ToolKind::Http { url, methods, paths, headers, allow_private } => ToolClient::Http(
                    http::HttpTool::new(url, methods.clone(), paths.clone(), headers, *allow_private).map_err(|e| format!("tool {:?}: {e}", spec.name))?,
                ),
            };
            let entry = Arc::new(ToolEntry { spec: spec.clone(), client, metrics: Default::default(), status: Default::default() });
            if let ToolClient::Http(h) = &entry.client {
                entry.set_up(Vec::new(), None);
                tracing::info!(tool = spec.name, endpoint = h.describe(), "HTTP tool ready");
            }
            entries.insert(spec.name.clone(), entry);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(TOOL_QUEUE_CALLS_MAX);
        let tools = Arc::new(Tools { entries, names: specs.iter().map(|s| s.name.clone()).collect(), calls: tx, queue_full: Default::default() });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start the tools runtime: {e}"))?;
        let this = tools.clone();
        std::thread::Builder::new()
            .name("caxton-tools".into())
            .spawn(move || {
                runtime.block_on(async move {
                    for (name, endpoint) in supervised {
                        tokio::spawn(mcp::supervise(this.entries[&name].clone(), endpoint));
                    }
                    dispatch::run(this, rx, install_id, deliver, spans).await;
                })
            })
            .map_err(|e| format!("cannot start the tools thread: {e}"))?;
        Ok(tools)
    }

    /// Takes a call straight from a shard (`runtime_outbox` rule 4): a full
    /// queue hands it back uncounted, for the control plane's [`Tools::submit`].
    pub fn offer(&self, call: Held) -> Result<(), Held> {
        self.calls.try_send(call).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(h) | tokio::sync::mpsc::error::TrySendError::Closed(h) => h,
        })
    }

    /// Hands a call over (rule 2): a full queue is counted, and its caller
    /// answers the call `refused`.
    pub fn submit(&self, call: Held) -> Result<(), Held> {
        self.offer(call).inspect_err(|_| {
            self.queue_full.fetch_add(1, Ordering::Relaxed);
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ToolEntry>> {
        self.entries.get(name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Every tool, in config order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ToolEntry>> {
        self.names.iter().map(|n| &self.entries[n])
    }
}

/// The answer to `call`: from its tool, to its sender, `in_reply_to` its
/// `reply_with`, in its conversation and trace (rule 1).
pub fn answer(call: &Message, message_id: u64, result: &Result<Vec<u8>, CallFailure>) -> Message {
    use caxton_shards::envelope::Header;
    use caxton_shards::envelope::Performative;
    let (performative, content) = match result {
        Ok(bytes) => (Performative::Inform as u8, std::borrow::Cow::Borrowed(&bytes[..])),
        Err(f) => (Performative::Failure as u8, std::borrow::Cow::Owned(f.content())),
    };
    let header = Header {
        performative,
        message_id,
        conversation_id: call.conversation_id(),
        in_reply_to: call.reply_with(),
        trace: call.trace(),
        protocol: call.protocol(),
        ..Header::default()
    };
    let answer = Message::encode(&header, call.receiver(), call.sender(), &content).expect("an answer within the bounds encodes");
    debug_assert_eq!(answer.in_reply_to(), call.reply_with());
    answer
}
