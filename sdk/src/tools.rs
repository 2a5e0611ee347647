//! Calling the node's tools: the operator's MCP servers and HTTP endpoints
//! (docs/AGENTS.md, "Tools"). A call is a `request` to `@tool/NAME`; its
//! answer comes back as a message from the same name, `in_reply_to` the
//! call's id, and [`Message::tool_answer`] reads it.
//!
//! ```
//! use caxton_agent::testing::{TestAgent, TestMessage};
//! use caxton_agent::tools::{McpResult, ToolCall};
//! use caxton_agent::{Agent, Context, Message, Performative, Result};
//!
//! #[derive(Default)]
//! struct Adder {
//!     asked: Option<(ToolCall, String, u64)>,
//! }
//! impl Agent for Adder {
//!     fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
//!         if let Some(answer) = m.tool_answer() {
//!             let (call, asker, reply_with) = self.asked.take().expect("one call at a time");
//!             assert_eq!(answer.call, call);
//!             let text = match answer.mcp() {
//!                 Ok(result) => result.text(),
//!                 Err(e) => format!("failed: {e}"),
//!             };
//!             let out = caxton_agent::Outgoing::new(&asker, Performative::Inform, text.as_bytes()).in_reply_to(reply_with);
//!             return ctx.send_message(out);
//!         }
//!         let call = ctx.call_mcp_tool("calc", "add", &serde_json::json!({"a": 2, "b": 3}))?;
//!         self.asked = Some((call, m.sender().to_string(), m.reply_with()));
//!         Ok(())
//!     }
//! }
//!
//! let mut adder = TestAgent::<Adder>::start().unwrap();
//! adder.host_mut().script_tool("calc", |request| {
//!     assert_eq!(request["name"], "add");
//!     Ok(serde_json::json!({"content": [{"type": "text", "text": "5"}], "isError": false}))
//! });
//! adder.deliver(&TestMessage::new("alice", "adder", "").reply_with(9)).unwrap();
//! let sent = adder.host().sent.last().unwrap();
//! assert_eq!((sent.receiver.as_str(), sent.text(), sent.in_reply_to), ("alice", "5", 9));
//! ```

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use caxton_abi::failure::{ToolFailure, TOOL_NAME_PREFIX};

use crate::{Context, Message, Outgoing, Performative, Result};

/// A call in flight: the `reply_with` its answer names in `in_reply_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolCall(pub u64);

/// A plain HTTP tool's request (`kind = "http"`): a method and a path under
/// the tool's base URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A body that is not UTF-8, in standard base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl HttpRequest {
    pub fn get(path: &str) -> HttpRequest {
        HttpRequest { method: "GET".into(), path: path.into(), ..HttpRequest::default() }
    }

    pub fn post(path: &str, body: impl Into<String>) -> HttpRequest {
        HttpRequest { method: "POST".into(), path: path.into(), body: Some(body.into()), ..HttpRequest::default() }
    }
}

/// A plain HTTP tool's result: any status is a result, not a failure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body, when it is UTF-8.
    pub body: Option<String>,
    /// The body otherwise, in standard base64.
    pub body_base64: Option<String>,
}

/// One block of an MCP tool's result (`text`, `image`, `resource`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpContent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    /// Every other field of the block, as the server sent it.
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// An MCP `CallToolResult`. `is_error` is the tool's own failure (a
/// result the agent should read), not a failed call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpResult {
    #[serde(default)]
    pub content: Vec<McpContent>,
    #[serde(rename = "structuredContent", default)]
    pub structured_content: Option<serde_json::Value>,
    #[serde(rename = "isError", default)]
    pub is_error: Option<bool>,
}

impl McpResult {
    /// The text blocks, joined by newlines.
    pub fn text(&self) -> String {
        self.content.iter().filter_map(|c| c.text.as_deref()).collect::<Vec<_>>().join("\n")
    }
}

/// Why a call has no result: the failure the node answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError<'a> {
    /// `None` for a reason this SDK does not know (a newer node's).
    pub reason: Option<ToolFailure>,
    /// The whole content: the reason, then a detail for logs.
    pub text: &'a str,
}

impl core::fmt::Display for ToolError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.text)
    }
}

/// An answer to a tool call ([`Message::tool_answer`]).
#[derive(Debug, Clone)]
pub struct ToolAnswer<'a> {
    pub tool: &'a str,
    pub call: ToolCall,
    /// The result's JSON, or why there is none.
    pub result: core::result::Result<&'a [u8], ToolError<'a>>,
}

impl<'a> ToolAnswer<'a> {
    /// The result as `T`; an `Err` holds the failure, or the JSON error.
    pub fn json<T: DeserializeOwned>(&self) -> core::result::Result<T, String> {
        let bytes = self.result.as_ref().map_err(|e| e.text.to_string())?;
        serde_json::from_slice(bytes).map_err(|e| format!("the tool's answer is not the JSON asked for: {e}"))
    }

    /// An MCP tool's result.
    pub fn mcp(&self) -> core::result::Result<McpResult, String> {
        self.json()
    }

    /// An HTTP tool's result.
    pub fn http(&self) -> core::result::Result<HttpResponse, String> {
        self.json()
    }
}

impl<'a> Message<'a> {
    /// Is it the answer to a tool call? Then the tool, the call and the
    /// result or failure.
    pub fn tool_answer(&self) -> Option<ToolAnswer<'a>> {
        let tool = self.sender().strip_prefix(TOOL_NAME_PREFIX)?;
        let result = match self.performative() {
            Performative::Failure => {
                let text = core::str::from_utf8(self.content()).unwrap_or("tool_error (not UTF-8)");
                Err(ToolError { reason: ToolFailure::from_content(self.content()), text })
            }
            _ => Ok(self.content()),
        };
        Some(ToolAnswer { tool, call: ToolCall(self.in_reply_to()), result })
    }
}

impl Context<'_> {
    /// Calls `tool` with `request` as JSON: for an MCP tool the `tools/call`
    /// params `{"name", "arguments"}`, for an HTTP tool an [`HttpRequest`].
    /// The call goes when this handler commits (a handler that fails after
    /// it never makes it); its answer comes as a message.
    pub fn call_tool<T: Serialize + ?Sized>(&mut self, tool: &str, request: &T) -> Result<ToolCall> {
        self.call_tool_until(tool, request, 0)
    }

    /// As [`Context::call_tool`], with a deadline (microseconds since the
    /// Unix epoch): past it the answer is `timeout`.
    pub fn call_tool_until<T: Serialize + ?Sized>(&mut self, tool: &str, request: &T, reply_by_us: u64) -> Result<ToolCall> {
        let content = serde_json::to_vec(request)?;
        let receiver = format!("{TOOL_NAME_PREFIX}{tool}");
        let call = ToolCall(self.new_id());
        self.send_message(Outgoing::new(&receiver, Performative::Request, &content).reply_with(call.0).reply_by(reply_by_us))?;
        Ok(call)
    }

    /// Calls MCP tool `name` of server `tool` with `arguments`.
    pub fn call_mcp_tool<A: Serialize + ?Sized>(&mut self, tool: &str, name: &str, arguments: &A) -> Result<ToolCall> {
        #[derive(Serialize)]
        struct Params<'n, A: ?Sized> {
            name: &'n str,
            arguments: &'n A,
        }
        self.call_tool(tool, &Params { name, arguments })
    }

    /// Calls HTTP tool `tool`.
    pub fn call_http(&mut self, tool: &str, request: &HttpRequest) -> Result<ToolCall> {
        self.call_tool(tool, request)
    }
}
