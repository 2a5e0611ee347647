//! JSON shapes of the API, in and out.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use caxton_shards::envelope::{performative_code, performative_name, Protocol, PERFORMATIVES};
use caxton_shards::limits::CONTENT_BYTES_MAX;
use caxton_shards::{Message, ShardStats};

use super::error::ApiError;
use crate::control::{AgentDetail, AgentRecord, DeployReport, Outgoing, UpgradeReport};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    receiver: String,
    #[serde(default)]
    performative: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    content_b64: Option<String>,
    #[serde(default)]
    conversation_id: Option<u64>,
    #[serde(default)]
    reply_with: Option<u64>,
    /// Microseconds since the Unix epoch after which it is not delivered.
    #[serde(default)]
    reply_by: Option<u64>,
    /// The interaction protocol: `fipa-request`, ... or a short name.
    #[serde(default)]
    protocol: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_send(body: &[u8]) -> Result<Outgoing, ApiError> {
    let req: SendRequest = serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", format!("invalid message JSON: {e}")))?;
    let performative = req.performative.as_deref().unwrap_or("request");
    let performative = performative_code(performative)
        .ok_or_else(|| ApiError::bad_request("invalid_performative", format!("unknown performative {performative:?}; one of {}", PERFORMATIVES.join(", "))))?;
    let content = match (req.content, req.content_b64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => B64.decode(b64.as_bytes()).map_err(|e| ApiError::bad_request("invalid_content", format!("content_b64 is not base64: {e}")))?,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => return Err(ApiError::bad_request("invalid_content", "give content or content_b64, not both")),
    };
    if content.len() > CONTENT_BYTES_MAX {
        return Err(ApiError::too_large(format!("content of {} bytes is over the limit of {CONTENT_BYTES_MAX}", content.len())));
    }
    let receiver = req.receiver.as_bytes();
    if !caxton_shards::envelope::is_agent_name(receiver) && caxton_abi::split_keyed(receiver).is_none() {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "invalid receiver {:?}: an agent name (1 to 64 bytes of [a-z0-9._-]) or NAME/KEY (a key of 1 to {} bytes of UTF-8)",
                req.receiver,
                caxton_abi::KEY_BYTES_MAX
            ),
        ));
    }
    let protocol = Protocol::new(req.protocol.as_deref().unwrap_or("").as_bytes())
        .map_err(|_| ApiError::bad_request("invalid_protocol", "protocol is at most 32 bytes of [a-z0-9._-] (fipa-request, fipa-contract-net, ...)"))?;
    Ok(Outgoing {
        receiver: req.receiver,
        performative,
        content,
        conversation_id: req.conversation_id.unwrap_or(0),
        reply_with: req.reply_with.unwrap_or(0),
        reply_by: req.reply_by.unwrap_or(0),
        protocol,
        trace: Default::default(),
    })
}

/// A W3C `traceparent` header (`00-<trace id>-<parent span id>-<flags>`):
/// the trace a REST message joins. One that does not parse, or names the
/// all-zero trace or span, is ignored, as the W3C specification asks.
pub fn traceparent(value: &str) -> Option<caxton_abi::TraceContext> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let [version, trace, span, flags] = parts[..] else { return None };
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    if version == "00" && parts.len() != 4 {
        return None;
    }
    let hex = |s: &str, out: &mut [u8]| -> Option<()> {
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(())
    };
    let mut t = caxton_abi::TraceContext::default();
    hex(trace, &mut t.trace_id)?;
    hex(span, &mut t.parent_span_id)?;
    u8::from_str_radix(flags, 16).ok()?;
    u8::from_str_radix(version, 16).ok()?;
    (t.trace_id != [0; 16] && t.parent_span_id != [0; 8]).then_some(t)
}

pub fn message(m: &Message) -> Value {
    let mut v = json!({
        "message_id": m.message_id(),
        "performative": performative_name(m.performative()),
        "sender": String::from_utf8_lossy(m.sender()),
        "receiver": String::from_utf8_lossy(m.receiver()),
        "conversation_id": m.conversation_id(),
        "reply_with": m.header().reply_with,
        "in_reply_to": m.in_reply_to(),
    });
    if m.reply_by() != 0 {
        v["reply_by"] = json!(m.reply_by());
    }
    if !m.protocol().is_none() {
        v["protocol"] = json!(m.protocol().as_str());
    }
    let trace = m.trace();
    if !trace.is_none() {
        v["trace_id"] = json!(hex(&trace.trace_id));
        v["parent_span_id"] = json!(hex(&trace.parent_span_id));
    }
    match std::str::from_utf8(m.content()) {
        Ok(text) => v["content"] = json!(text),
        Err(_) => v["content_b64"] = json!(B64.encode(m.content())),
    }
    v
}

/// The agents this node serves, and those of its catalog it could not
/// restore (with why).
pub fn agent_list(agents: &[(String, AgentRecord)], unrestored: &[(String, String)]) -> Value {
    let mut list: Vec<Value> = agents
        .iter()
        .map(|(name, r)| json!({ "name": name, "instances": r.instances, "keyed": r.instances == 0, "shards": r.shards, "version": r.version.number, "tools": r.tools }))
        .collect();
    list.extend(unrestored.iter().map(|(name, why)| json!({ "name": name, "unrestored": why })));
    json!({ "agents": list })
}

/// `GET /v1/agents?cluster=true`: this node's agents, each with its node,
/// then every agent the registry places on another member, with that
/// member's state (`unknown`: a node gossip has not reported yet), by name.
pub fn agent_list_cluster(mut local: Value, view: &caxton_cluster::view::ClusterView) -> Value {
    let me = view.me.name();
    for a in local["agents"].as_array_mut().into_iter().flatten() {
        a["node"] = json!(me);
        a["node_state"] = json!("alive");
    }
    let mut remote: Vec<_> = view.routes.values().filter(|r| r.present && r.node != view.me.addr).collect();
    remote.sort_by(|a, b| a.agent.cmp(&b.agent));
    let agents = local["agents"].as_array_mut().expect("agent_list makes an array");
    for r in remote {
        let state = view.members.get(&r.node).map_or("unknown", |m| m.state.name());
        agents.push(json!({ "name": r.agent, "node": r.node.to_string(), "node_state": state, "remote": true }));
    }
    local
}

pub fn deployed(name: &str, report: &DeployReport) -> Value {
    let startup_us: Vec<u64> = report.instances.iter().map(|i| i.startup_us).collect();
    json!({
        "name": name,
        "instances": report.record.instances,
        "keyed": report.record.instances == 0,
        "shards": report.record.shards,
        "version": report.record.version.number,
        "module_hash": report.record.version.hash,
        "tools": report.record.tools,
        "startup_us": startup_us,
        "compile_ms": report.compile_ms,
        "deploy_ms": report.total_ms,
    })
}

/// An upgrade's or a rollback's answer.
pub fn upgraded(name: &str, r: &UpgradeReport) -> Value {
    json!({
        "name": name,
        "version": r.version.number,
        "previous_version": r.previous,
        "module_hash": r.version.hash,
        "deployed_at_ms": r.version.deployed_at_ms,
        "compile_ms": r.compile_ms,
        "total_ms": r.total_ms,
        "changes": {
            "abi_version": { "from": r.changes.abi_version.0, "to": r.changes.abi_version.1 },
            "exports_added": r.changes.exports_added, "exports_removed": r.changes.exports_removed,
            "imports_added": r.changes.imports_added, "imports_removed": r.changes.imports_removed,
        },
    })
}

pub fn agent_detail(name: &str, d: &AgentDetail) -> Value {
    let sum = |f: fn(&caxton_shards::InstanceStats) -> u64| d.instances.iter().map(f).sum::<u64>();
    let p = &d.record.policy;
    json!({
        "name": name,
        "instances": d.record.instances,
        "keyed": d.record.instances == 0,
        "shards": d.record.shards,
        "version": d.record.version.number,
        "module_hash": d.record.version.hash,
        "deployed_at_ms": d.record.version.deployed_at_ms,
        "tools": d.record.tools,
        "quarantined": d.instances.iter().any(|i| i.standing == "quarantined"),
        "quarantined_because": d.instances.iter().find_map(|i| i.quarantined_because.as_deref()),
        "restart_policy": {
            "restart_immediate": p.immediate, "restart_window_ms": p.window_ms, "restart_backoff_ms": p.backoff_ms,
            "restart_backoff_max_ms": p.backoff_max_ms, "quarantine_after": p.quarantine_after,
        },
        "messages_handled": sum(|i| i.handled) + d.keyed.map_or(0, |k| k.counts.handled),
        "errors": sum(|i| i.errors),
        "crashes": sum(|i| i.crashes),
        "timeouts": sum(|i| i.timeouts),
        "state_bytes": sum(|i| i.state_bytes),
        "keyed": d.keyed.map(|k| json!({
            "active_keys": k.counts.active, "activations": k.counts.activations,
            "passivations": caxton_shards::router::keyed::Passivation::ALL.iter().zip(k.counts.passivations)
                .map(|((_, label), n)| (label.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "keys_with_state": k.keys_with_state,
        })),
        "instance_stats": d.instances.iter().map(|i| json!({
            "instance": i.instance, "shard": i.shard, "messages_handled": i.handled, "errors": i.errors,
            "crashes": i.crashes, "timeouts": i.timeouts, "queued": i.queued, "memory_bytes": i.memory_bytes, "running": i.running,
            "state_bytes": i.state_bytes, "state_writes_refused": i.state_refused, "log_lines_dropped": i.log_dropped,
            "standing": i.standing, "quarantined_because": i.quarantined_because.as_deref(), "crashes_in_a_row": i.crashes_in_a_row, "restarts": i.restarts,
        })).collect::<Vec<_>>(),
    })
}

/// The node's tools (`GET /v1/tools`): each with its kind, health, and
/// for an MCP server the tools it listed (name, description, input schema).
pub fn tool_list(tools: Option<&crate::tools::Tools>) -> Value {
    let list: Vec<Value> = tools
        .into_iter()
        .flat_map(|t| t.all())
        .map(|e| {
            let status = e.status();
            let calls: serde_json::Map<String, Value> =
                crate::tools::metrics::Outcome::ALL.iter().map(|o| (o.name().to_string(), json!(e.metrics.calls(*o)))).collect();
            json!({
                "name": e.spec.name, "kind": e.spec.kind.name(), "up": status.up, "error": status.error,
                "timeout_ms": e.spec.timeout_ms, "tools": status.tools, "calls": calls,
            })
        })
        .collect();
    json!({ "tools": list })
}

/// Which node answers, and what it runs (`GET /v1/health`).
pub struct NodeIdentity {
    pub boot_epoch: u64,
    /// Its cluster address, the name members know it by; `None` standalone.
    pub cluster_address: Option<std::net::SocketAddr>,
    pub readiness: crate::control::Readiness,
}

impl NodeIdentity {
    pub fn of(control: &crate::control::Control) -> NodeIdentity {
        NodeIdentity {
            boot_epoch: control.boot_epoch,
            cluster_address: control.cluster.as_ref().map(|c| c.view.lock().unwrap().me.addr),
            readiness: control.readiness(),
        }
    }
}

/// The version and the commit this node was built from (`build.rs`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("CAXTON_COMMIT");

pub fn health(agents: usize, shards: &[Option<ShardStats>], stalled: &[bool], node: &NodeIdentity) -> Value {
    let degraded = stalled.iter().any(|s| *s) || shards.iter().any(Option::is_none);
    json!({
        "status": if degraded { "degraded" } else { "ok" },
        "version": VERSION,
        "commit": COMMIT,
        "node": { "boot_epoch": node.boot_epoch, "cluster_address": node.cluster_address.map(|a| a.to_string()), "readiness": node.readiness.as_str() },
        "agents": agents,
        "shards": shards.iter().zip(stalled).enumerate().map(|(i, (s, stalled))| match s {
            None => json!({ "shard": i, "stalled": stalled, "answered": false }),
            Some(s) => json!({
                "shard": s.shard, "stalled": stalled, "answered": true, "instances": s.instances, "queued_messages": s.queued_messages,
                "messages_handled": s.handled, "agent_errors": s.errors, "agent_crashes": s.crashes, "agent_timeouts": s.timeouts,
                "routed_local": s.routed_local, "routed_remote": s.routed_remote, "received_remote": s.received_remote,
                "busy": s.busy, "wakeups": s.wakeups,
                "dead_letters": s.dead_letters.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "failure_notices": s.notices_sent.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "failure_notices_dropped": s.notices_dropped, "timers_scheduled": s.timers_scheduled,
                "abi_refusals": { "invalid": s.abi_invalid, "too_large": s.abi_too_large, "over_limit": s.abi_over_limit },
                "state_writes_refused": { "quota": s.state_refused_quota, "disk": s.state_refused_disk },
                "log_lines_dropped": s.log_dropped,
            }),
        }).collect::<Vec<_>>(),
    })
}

/// `GET /v1/agents/{name}/logs`: the lines, oldest first.
pub fn agent_logs(name: &str, records: &[caxton_shards::agent::agent_log::LogRecord]) -> Value {
    json!({
        "name": name,
        "lines": records.iter().map(|r| json!({
            "time_ms": r.unix_us / 1000, "time_us": r.unix_us, "level": r.level, "instance": r.instance, "shard": r.shard,
            "conversation_id": r.conversation, "source": r.source, "text": r.text,
        })).collect::<Vec<_>>(),
    })
}

/// Per-agent figures, all instances together: counts, and the processing
/// quantiles of its slowest instance (each instance keeps a compact
/// histogram, `metrics::CompactLatency`), by name.
fn agent_figures(shards: &[ShardStats]) -> Vec<Value> {
    #[derive(Default)]
    struct Agent {
        instances: usize,
        handled: u64,
        errors: u64,
        crashes: u64,
        queued: usize,
        p50_ns: u64,
        p99_ns: u64,
    }
    let mut by_name: std::collections::BTreeMap<&str, Agent> = Default::default();
    for i in shards.iter().flat_map(|s| s.per_instance.iter().flat_map(|f| &f.listed)) {
        let a = by_name.entry(&i.name).or_default();
        a.instances += 1;
        a.handled += i.handled;
        a.errors += i.errors;
        a.crashes += i.crashes;
        a.queued += i.queued;
        a.p50_ns = a.p50_ns.max(i.processing.quantile_ns(0.5));
        a.p99_ns = a.p99_ns.max(i.processing.quantile_ns(0.99));
    }
    by_name
        .into_iter()
        .map(|(name, a)| {
            json!({
                "name": name, "instances": a.instances, "messages_handled": a.handled, "errors": a.errors, "crashes": a.crashes,
                "queued_messages": a.queued, "processing_p50_us": a.p50_ns as f64 / 1e3, "processing_p99_us": a.p99_ns as f64 / 1e3,
            })
        })
        .collect()
}

/// Per-shard figures for `caxton top`: cumulative counts and latency
/// quantiles in microseconds; with `agents`, per-agent figures too.
pub fn stats(resident_bytes: u64, shards: &[ShardStats], agents: bool) -> Value {
    let us = |l: &caxton_shards::metrics::Latency, q: f64| l.quantile_ns(q) as f64 / 1e3;
    json!({
        "resident_bytes": resident_bytes,
        "agents": agents.then(|| agent_figures(shards)),
        // Instances past `METRICS_INSTANCES_MAX` (their agents' own pages
        // have them).
        "instances_omitted": agents.then(|| shards.iter().flat_map(|s| &s.per_instance).map(|f| f.omitted).sum::<usize>()),
        "shards": shards.iter().map(|s| {
            let mut routing = s.latencies.routing_local.clone();
            routing.merge(&s.latencies.routing_remote);
            json!({
                "shard": s.shard,
                "messages_handled": s.handled,
                "queued_messages": s.queued_messages,
                "instances": s.instances,
                "agent_memory_bytes": s.per_instance.as_ref().map(|f| f.memory_bytes),
                "routing_p50_us": us(&routing, 0.5), "routing_p99_us": us(&routing, 0.99),
                "processing_p50_us": us(&s.latencies.processing, 0.5), "processing_p99_us": us(&s.latencies.processing, 0.99),
            })
        }).collect::<Vec<_>>(),
    })
}

/// `GET /v1/cluster/members`: this node first, then the others by address;
/// the cluster keys this node holds (`keys_held` 2 during a rotation).
pub fn members(view: &caxton_cluster::view::ClusterView, keys: &caxton_cluster::KeyRing) -> Value {
    let member = |id: &caxton_cluster::NodeId, state: &str, me: bool| json!({ "node": id.name(), "api": id.api.to_string(), "api_tls": id.api_tls, "state": state, "boot": id.boot, "self": me });
    let mut out = vec![member(&view.me, "alive", true)];
    out.extend(view.members.values().filter(|m| m.id.addr != view.me.addr).map(|m| member(&m.id, m.state.name(), false)));
    let agents = view.routes.values().filter(|r| r.present).count();
    let ((sends, holds), (held, sending_next)) = (keys.ids(), keys.phase());
    json!({
        "clustered": true,
        "members": out,
        "registry_agents": agents,
        "keys": { "held": held, "sending_next": sending_next, "forced": keys.forced(), "sends": sends.to_string(), "holds": holds.to_string() },
    })
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(caxton_cluster::fuzz::config(1024))]

        /// Any header value: a trace context or nothing, never a panic; a
        /// valid one keeps its ids.
        #[test]
        fn any_traceparent_parses_or_is_ignored(value in ".{0,80}", trace in any::<[u8; 16]>(), span in any::<[u8; 8]>()) {
            let _ = traceparent(&value);
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            let good = format!("00-{}-{}-01", hex(&trace), hex(&span));
            match traceparent(&good) {
                Some(t) => prop_assert_eq!((t.trace_id, t.parent_span_id), (trace, span)),
                None => prop_assert!(trace == [0; 16] || span == [0; 8]),
            }
        }

        /// Any body: a message to send or a 4xx, never a panic.
        #[test]
        fn any_body_parses_or_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Err(e) = parse_send(&bytes) {
                prop_assert!(e.status.is_client_error());
            }
        }

        /// Oracle: a well-formed request keeps every field.
        #[test]
        fn well_formed_requests_keep_their_fields(receiver in "[a-z0-9._-]{1,64}", p in 0usize..PERFORMATIVES.len(), content in ".{0,200}", conversation in any::<u64>(), reply_with in any::<u64>(), b64 in any::<bool>()) {
            let mut body = json!({ "receiver": receiver, "performative": PERFORMATIVES[p], "conversation_id": conversation, "reply_with": reply_with });
            if b64 {
                body["content_b64"] = json!(B64.encode(content.as_bytes()));
            } else {
                body["content"] = json!(content);
            }
            let out = parse_send(&serde_json::to_vec(&body).unwrap()).unwrap();
            prop_assert_eq!((out.receiver, out.performative as usize, out.content, out.conversation_id, out.reply_with), (receiver, p, content.into_bytes(), conversation, reply_with));
        }

        /// JSON of the right shape with wrong values: refused with a 4xx.
        #[test]
        fn wrong_values_are_refused(receiver in ".{0,80}", performative in ".{0,20}", extra in proptest::option::of("[a-z]{1,10}")) {
            let mut body = json!({ "receiver": receiver, "performative": performative });
            if let Some(k) = extra {
                body[k] = json!(1);
            }
            if let Err(e) = parse_send(&serde_json::to_vec(&body).unwrap()) {
                prop_assert!(e.status.is_client_error());
            }
        }
    }
}
