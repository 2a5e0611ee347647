//! `caxton tool conformance URL`: the client MCP's conformance suite
//! (`@modelcontextprotocol/conformance`) runs against. It starts a mock
//! server per scenario and runs this command with the server's URL last
//! and the scenario's name in `MCP_CONFORMANCE_SCENARIO`.
//!
//! It uses the node's own client code: [`mcp::connect`] to initialize over
//! streamable HTTP, and [`mcp::McpTool::call`] for each call, as an agent's
//! call to an `mcp-http` tool would.

use std::collections::BTreeMap;

use super::{mcp, CallMeta};

/// Arguments that satisfy `schema`'s required properties: 1, 2, 3... for
/// numbers, "caxton" for strings, true for booleans.
fn arguments_for(schema: &serde_json::Value) -> serde_json::Value {
    let mut args = serde_json::Map::new();
    let props = schema.get("properties").and_then(|p| p.as_object());
    let required: Vec<&str> = schema.get("required").and_then(|r| r.as_array()).map_or(Vec::new(), |r| r.iter().filter_map(|v| v.as_str()).collect());
    for (i, name) in required.iter().enumerate() {
        let kind = props.and_then(|p| p.get(*name)).and_then(|p| p.get("type")).and_then(|t| t.as_str()).unwrap_or("string");
        let value = match kind {
            "number" | "integer" => serde_json::json!(i + 1),
            "boolean" => serde_json::json!(true),
            "array" => serde_json::json!([]),
            "object" => serde_json::json!({}),
            _ => serde_json::json!("caxton"),
        };
        args.insert(name.to_string(), value);
    }
    serde_json::Value::Object(args)
}

/// Runs the scenario against `url`; prints what it did.
pub async fn run(url: &str, scenario: &str) -> Result<(), String> {
    let endpoint = mcp::Endpoint::Http { url: url.to_string(), headers: BTreeMap::new(), allow_private: true };
    let (client, _) = mcp::connect(&endpoint, "conformance").await?;
    let server = client.peer().peer_info().map(|i| format!("{:?}", i.server_info)).unwrap_or_default();
    println!("initialized with {server}");
    let tools = client.peer().list_all_tools().await.map_err(|e| format!("tools/list: {e}"))?;
    println!("tools: {}", tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>().join(", "));
    if scenario != "initialize" {
        let tool = mcp::McpTool::connected(client.peer().clone());
        for t in &tools {
            let schema = serde_json::to_value(&*t.input_schema).unwrap_or_default();
            let content = serde_json::to_vec(&serde_json::json!({"name": t.name, "arguments": arguments_for(&schema)})).expect("JSON");
            let meta = CallMeta { idempotency_key: format!("conformance-{}", t.name), traceparent: None };
            match tool.call(&content, &meta).await {
                Ok(result) => println!("{}: {}", t.name, String::from_utf8_lossy(&result)),
                Err(f) => println!("{}: failed: {} {}", t.name, f.reason.as_str(), f.detail),
            }
        }
    }
    client.cancel().await.map_err(|e| format!("closing: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_arguments_are_filled_by_type() {
        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}, "s": {"type": "string"}}, "required": ["a", "b"]});
        assert_eq!(arguments_for(&schema), serde_json::json!({"a": 1, "b": 2}));
    }
}
