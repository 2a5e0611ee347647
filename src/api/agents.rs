//! The lifecycle routes of one agent: deploy (`PUT`), upgrade in place
//! (`PUT ...?upgrade=true`), stop (`DELETE`), rollback and restart
//! (`POST .../rollback`, `.../restart`).
//!
//! In a cluster, a call about an agent another node hosts is forwarded to
//! that node's API with the caller's credentials (a deploy goes where
//! `?node=` says); the caller gets that node's answer.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use caxton_shards::limits::MODULE_BYTES_MAX;

use super::error::ApiError;
use super::routes::Endpoint;
use super::{forward, json, json_response, parse_param, query_param, read_body, Api};
use crate::control::parse_policy;

pub(super) fn forwarded(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `?tools=a,b`: the tools an agent is granted (`tools=` alone: none).
fn tools_param(query: Option<&str>) -> Option<Vec<String>> {
    let raw = query_param(query, "tools")?;
    let decoded = super::percent_decode(raw).unwrap_or_else(|_| raw.to_string());
    Some(decoded.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect())
}

pub async fn lifecycle(api: &Api, endpoint: Endpoint, name: &str, query: Option<&str>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
    let control = &api.control;
    let authorization = forward::authorization(&req);
    let upgrade = endpoint == Endpoint::Deploy && query_param(query, "upgrade") == Some("true");
    // Everything but a first deploy is about an agent that lives somewhere.
    if (endpoint != Endpoint::Deploy || upgrade) && !forward::was_forwarded(&req) {
        if let Some(node) = control.remote_node_of(name) {
            let (method, path) = match endpoint {
                Endpoint::Deploy => {
                    let force = if query_param(query, "force") == Some("true") { "&force=true" } else { "" };
                    match query_param(query, "tools") {
                        Some(tools) => ("PUT", format!("/v1/agents/{name}?upgrade=true&tools={tools}{force}")),
                        None => ("PUT", format!("/v1/agents/{name}?upgrade=true{force}")),
                    }
                }
                Endpoint::Stop => ("DELETE", format!("/v1/agents/{name}")),
                Endpoint::Rollback => ("POST", format!("/v1/agents/{name}/rollback")),
                _ => ("POST", format!("/v1/agents/{name}/restart")),
            };
            let body = if upgrade { read_body(api, req, MODULE_BYTES_MAX).await? } else { Vec::new() };
            let (status, body) = forward::forward(control, &node, method, path, body, authorization).await?;
            tracing::info!(agent = name, node, status, method, "lifecycle call forwarded to the agent's node");
            return Ok(forwarded(status, body));
        }
    }
    match endpoint {
        Endpoint::Deploy if upgrade => {
            let body = read_body(api, req, MODULE_BYTES_MAX).await?;
            let tools = tools_param(query);
            let force = match query_param(query, "force") {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => return Err(ApiError::bad_request("invalid_query", format!("force={other:?}: use true or false"))),
            };
            let report = control.upgrade(name, body, tools.as_deref(), force).await?;
            Ok(json_response(StatusCode::OK, &json::upgraded(name, &report)))
        }
        Endpoint::Deploy => {
            let keyed = match query_param(query, "keyed") {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => return Err(ApiError::bad_request("invalid_query", format!("keyed={other:?}: use true or false"))),
            };
            let instances: u32 = match (keyed, parse_param(query, "instances")?) {
                (true, Some(_)) => return Err(ApiError::bad_request("invalid_query", "a keyed agent has an activation per key, not instances")),
                (true, None) => 0, // control: 0 instances is a keyed type
                (false, Some(0)) => return Err(ApiError::bad_request("invalid_instances", "instances must be at least 1")),
                (false, n) => n.unwrap_or(1),
            };
            let policy = parse_policy(query.unwrap_or("")).map_err(|e| ApiError::bad_request("invalid_policy", e))?;
            let node = query_param(query, "node").map(str::to_string);
            let body = read_body(api, req, MODULE_BYTES_MAX).await?;
            let me = control.cluster.as_ref().map(|c| c.view.lock().unwrap().me.name());
            if let Some(node) = node.filter(|n| Some(n) != me.as_ref()) {
                let path = format!("/v1/agents/{name}?{}", query.unwrap_or("").split('&').filter(|kv| !kv.starts_with("node=")).collect::<Vec<_>>().join("&"));
                let (status, body) = forward::forward(control, &node, "PUT", path, body, authorization).await?;
                tracing::info!(agent = name, instances, node, status, "deploy forwarded");
                return Ok(forwarded(status, body));
            }
            let tools = tools_param(query).unwrap_or_default();
            let report = control.deploy(name, instances, body, policy, &tools).await?;
            tracing::info!(agent = name, instances, total_ms = report.total_ms, "agent deployed");
            Ok(json_response(StatusCode::CREATED, &json::deployed(name, &report)))
        }
        Endpoint::Stop => {
            control.undeploy(name).await?;
            tracing::info!(agent = name, "agent stopped");
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Ok(resp)
        }
        Endpoint::Rollback => {
            let report = control.rollback(name).await?;
            Ok(json_response(StatusCode::OK, &json::upgraded(name, &report)))
        }
        Endpoint::Restart => {
            let lifted = control.restart(name).await?;
            Ok(json_response(StatusCode::OK, &serde_json::json!({ "name": name, "instances_lifted": lifted })))
        }
        other => unreachable!("{other:?} is not a lifecycle route"),
    }
}
