//! MCP tools, through `rmcp` (MCP's official Rust SDK) as the client: a
//! server the node starts on stdio (`mcp-stdio`), or one it reaches over
//! streamable HTTP (`mcp-http`). A call's content is the JSON of MCP's
//! `tools/call` params, `{"name", "arguments"}`; its result is the JSON of
//! the `CallToolResult`.
//!
//! Rules:
//! 1. Each server has a supervisor task: it connects (starting the process
//!    for stdio), initializes, lists the server's tools, and marks the tool
//!    up; when the connection ends it marks it down and connects again
//!    after a backoff (`TOOL_RESTART_BACKOFF_MIN_MS`, doubling to `_MAX_MS`,
//!    reset after a connection that lasted that long). A tool that cannot
//!    connect is down, never fatal to the node.
//! 2. A stdio server runs as the node's user with an empty environment
//!    apart from its config's `env` (and `PATH`, so a bare command name is
//!    found), in its config's `cwd`, and is killed when the node drops it.
//!    Its stderr goes to the node's log at debug level, line by line.
//! 3. A call while the tool is down is answered `tool_down` at once. A
//!    call that was in flight when the connection ended is answered
//!    `tool_down` too (rmcp closes its pending requests).
//! 4. Every call carries in `_meta` its idempotency key
//!    (`io.caxton/idempotency-key`) and, when traced, its `traceparent`.
//! 5. A line from a stdio server is bounded (rmcp drops a longer one); a
//!    result larger than `TOOL_RESPONSE_BYTES_MAX` once encoded ends
//!    `too_large`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientConfig, Implementation};
use rmcp::service::{Peer, RoleClient, RunningService, ServiceError};
use rmcp::ServiceExt;
use tokio::io::AsyncBufReadExt;

use caxton_shards::limits::{TOOL_CONNECT_TIMEOUT_MS, TOOL_RESPONSE_BYTES_MAX, TOOL_RESTART_BACKOFF_MAX_MS, TOOL_RESTART_BACKOFF_MIN_MS};
use caxton_shards::tools::ToolFailure;

use super::{CallFailure, CallMeta, ToolEntry};

/// Longest line read from a stdio server: a largest result and its JSON-RPC
/// framing, with room for escaping.
const STDIO_LINE_BYTES_MAX: usize = 2 * TOOL_RESPONSE_BYTES_MAX + 64 * 1024;

/// Where a server is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Stdio { command: Vec<String>, env: BTreeMap<String, String>, cwd: Option<PathBuf> },
    Http { url: String, headers: BTreeMap<String, String>, allow_private: bool },
}

/// A server's live connection, if any (rule 1).
#[derive(Default)]
pub struct McpTool {
    peer: RwLock<Option<Peer<RoleClient>>>,
}

pub type Client = RunningService<RoleClient, ClientConfig>;

/// The MCP version the node asks for at `initialize`: 2025-06-18, the
/// newest that every server we test with (Python `mcp` 2.3, MCP's
/// conformance suite 0.1.6, the TypeScript reference servers) speaks, and
/// the one the pinned conformance suite checks for. A server that only
/// knows an older one answers with it, and rmcp follows.
pub const MCP_PROTOCOL_VERSION: rmcp::model::ProtocolVersion = rmcp::model::ProtocolVersion::V_2025_06_18;

fn client_config() -> ClientConfig {
    let mut info = ClientConfig::default();
    info.protocol_version = MCP_PROTOCOL_VERSION;
    info.client_info = Implementation::new("caxton", env!("CARGO_PKG_VERSION"));
    info
}

/// Connects to a server and initializes the session (rules 1 and 2).
pub async fn connect(endpoint: &Endpoint, tool: &str) -> Result<(Client, Option<tokio::process::Child>), String> {
    match endpoint {
        Endpoint::Stdio { command, env, cwd } => {
            let mut cmd = tokio::process::Command::new(&command[0]);
            cmd.args(&command[1..]).env_clear().envs(env).kill_on_drop(true);
            if !env.contains_key("PATH") {
                cmd.env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()));
            }
            if let Some(dir) = cwd {
                cmd.current_dir(dir);
            }
            cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", command[0]))?;
            let (stdout, stdin) = (child.stdout.take().expect("piped"), child.stdin.take().expect("piped"));
            if let Some(stderr) = child.stderr.take() {
                let tool = tool.to_string();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(tool, "{line}");
                    }
                });
            }
            let transport = rmcp::transport::async_rw::AsyncRwTransport::new(stdout, stdin).with_max_line_length(STDIO_LINE_BYTES_MAX);
            let client = client_config().serve(transport).await.map_err(|e| format!("initialize failed: {e}"))?;
            Ok((client, Some(child)))
        }
        Endpoint::Http { url, headers, allow_private } => {
            use rmcp::transport::streamable_http_client::{StreamableHttpClientTransport, StreamableHttpClientTransportConfig};
            let http = super::http::client_builder(*allow_private).build().map_err(|e| e.to_string())?;
            let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            for (k, v) in headers {
                let name = http::HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
                let value = http::HeaderValue::try_from(v.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
                config.custom_headers.insert(name, value);
            }
            config.max_json_response_size = STDIO_LINE_BYTES_MAX;
            config.max_sse_event_size = STDIO_LINE_BYTES_MAX;
            let transport = StreamableHttpClientTransport::with_client(http, config);
            let client = client_config().serve(transport).await.map_err(|e| format!("initialize failed: {}", super::http::error_chain(&e)))?;
            Ok((client, None))
        }
    }
}

/// Rule 1: keeps `entry`'s server connected for the node's life.
pub async fn supervise(entry: Arc<ToolEntry>, endpoint: Endpoint) {
    let mut backoff = TOOL_RESTART_BACKOFF_MIN_MS;
    loop {
        let started = Instant::now();
        entry.metrics.starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let connected = tokio::time::timeout(Duration::from_millis(TOOL_CONNECT_TIMEOUT_MS), connect(&endpoint, &entry.spec.name)).await;
        match connected {
            Ok(Ok((client, child))) => {
                let listed = tokio::time::timeout(Duration::from_millis(TOOL_CONNECT_TIMEOUT_MS), client.peer().list_all_tools()).await;
                match listed {
                    Ok(Ok(tools)) => {
                        let described: Vec<serde_json::Value> = tools.iter().map(|t| serde_json::to_value(t).unwrap_or_default()).collect();
                        entry.set_up(described, None);
                        tracing::info!(tool = entry.spec.name, tools = tools.len(), "MCP server connected");
                        let super::ToolClient::Mcp(slot) = &entry.client else { unreachable!("supervised tools are MCP tools") };
                        *slot.peer.write().unwrap() = Some(client.peer().clone());
                        let quit = client.waiting().await;
                        *slot.peer.write().unwrap() = None;
                        entry.set_down(format!("the connection ended ({quit:?})"));
                        tracing::warn!(tool = entry.spec.name, "MCP server connection ended; reconnecting");
                    }
                    Ok(Err(e)) => entry.set_down(format!("tools/list failed: {e}")),
                    Err(_) => entry.set_down(format!("tools/list took over {TOOL_CONNECT_TIMEOUT_MS} ms")),
                }
                drop(child); // kill_on_drop: a server we gave up on stops
            }
            Ok(Err(e)) => entry.set_down(e),
            Err(_) => entry.set_down(format!("no answer to initialize within {TOOL_CONNECT_TIMEOUT_MS} ms")),
        }
        if started.elapsed() >= Duration::from_millis(TOOL_RESTART_BACKOFF_MAX_MS) {
            backoff = TOOL_RESTART_BACKOFF_MIN_MS;
        }
        tokio::time::sleep(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(TOOL_RESTART_BACKOFF_MAX_MS);
    }
}

impl McpTool {
    /// A tool on a connection made elsewhere (`caxton tool conformance`).
    pub fn connected(peer: Peer<RoleClient>) -> McpTool {
        McpTool { peer: RwLock::new(Some(peer)) }
    }

    /// Makes one call (rules 3 to 5).
    pub async fn call(&self, content: &[u8], meta: &CallMeta) -> Result<Vec<u8>, CallFailure> {
        let mut params: serde_json::Value = serde_json::from_slice(content).map_err(|e| CallFailure::new(ToolFailure::Refused, format!("not JSON: {e}")))?;
        let Some(object) = params.as_object_mut() else {
            return Err(CallFailure::new(ToolFailure::Refused, "the call must be a JSON object {\"name\", \"arguments\"}".into()));
        };
        let meta_object = object.entry("_meta").or_insert_with(|| serde_json::json!({}));
        let Some(meta_object) = meta_object.as_object_mut() else {
            return Err(CallFailure::new(ToolFailure::Refused, "_meta must be an object".into()));
        };
        meta_object.insert("io.caxton/idempotency-key".into(), meta.idempotency_key.clone().into());
        if let Some(tp) = &meta.traceparent {
            meta_object.insert("traceparent".into(), tp.clone().into());
        }
        let params: CallToolRequestParams =
            serde_json::from_value(params).map_err(|e| CallFailure::new(ToolFailure::Refused, format!("not MCP tools/call params: {e}")))?;
        let Some(peer) = self.peer.read().unwrap().clone() else {
            return Err(CallFailure::new(ToolFailure::ToolDown, "the MCP server is not connected".into()));
        };
        match peer.call_tool(params).await {
            Ok(result) => {
                let bytes = serde_json::to_vec(&result).map_err(|e| CallFailure::new(ToolFailure::ToolError, e.to_string()))?;
                if bytes.len() > TOOL_RESPONSE_BYTES_MAX {
                    return Err(CallFailure::new(ToolFailure::TooLarge, format!("the result has {} bytes, over {TOOL_RESPONSE_BYTES_MAX}", bytes.len())));
                }
                Ok(bytes)
            }
            Err(ServiceError::McpError(e)) => Err(CallFailure::new(ToolFailure::ToolError, format!("{} (code {})", e.message, e.code.0))),
            Err(ServiceError::TransportClosed | ServiceError::TransportSend(_) | ServiceError::Cancelled { .. }) => {
                Err(CallFailure::new(ToolFailure::ToolDown, "the MCP server's connection ended during the call".into()))
            }
            Err(ServiceError::Timeout { .. }) => Err(CallFailure::new(ToolFailure::Timeout, "rmcp's request timeout".into())),
            Err(e) => Err(CallFailure::new(ToolFailure::ToolError, e.to_string())),
        }
    }
}
