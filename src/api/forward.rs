//! Requests forwarded to another member's API: deploys aimed at it
//! (`?node=`), the lifecycle calls (stop, upgrade, rollback, restart) of
//! agents it hosts, and the reads of them (`GET` of an agent and of its
//! logs), so that any node answers for any agent. The caller's credentials go along, only to the
//! API address the member advertises in its gossip identity, and only over
//! HTTPS (its certificate checked against `--tls-ca`, or the public roots),
//! or to a loopback API (a cluster on one host: the request never leaves
//! it). The answer is read up to [`FORWARD_ANSWER_BYTES_MAX`]; a longer one
//! is a 502. A member that is down is answered 503 at once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use std::net::SocketAddr;

use caxton_cluster::view::MemberState;
use caxton_cluster::NodeId;
use caxton_shards::limits::{FORWARD_ANSWER_BYTES_MAX, FORWARD_TIMEOUT_MS};

use super::error::ApiError;
use crate::control::Control;

/// Set on every forwarded request: the member answers it itself and never
/// forwards it on, so two nodes whose registries disagree for a moment
/// cannot pass a request back and forth.
pub const FORWARDED_HEADER: &str = "x-caxton-forwarded";

/// Whether `req` came from another member's forward (see
/// [`FORWARDED_HEADER`]).
pub fn was_forwarded<B>(req: &hyper::Request<B>) -> bool {
    req.headers().contains_key(FORWARDED_HEADER)
}

/// The caller's `Authorization` header, to go along with a forward.
pub fn authorization<B>(req: &hyper::Request<B>) -> Option<String> {
    req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Where a member's API is reached from here: the address it advertises,
/// on its cluster address's host when it listens on every address; a
/// loopback API of a member on another host is not reached at all (the
/// caller's token would go to whatever listens on this host's loopback).
pub fn api_address(member: &NodeId) -> Result<SocketAddr, String> {
    let api = member.api;
    if api.ip().is_unspecified() {
        return Ok(SocketAddr::new(member.addr.ip(), api.port()));
    }
    if api.ip().is_loopback() && !member.addr.ip().is_loopback() {
        return Err(format!(
            "member {} serves its API on loopback ({api}), which no other host reaches: give it an --api address the members reach",
            member.name()
        ));
    }
    Ok(api)
}

/// Sends a request to another member's API (`--node` deploys, stops of
/// agents hosted there) and hands back its status and body.
pub async fn forward(
    control: &Control,
    node: &str,
    method: &'static str,
    path: String,
    body: Vec<u8>,
    authorization: Option<String>,
) -> Result<(u16, Vec<u8>), ApiError> {
    let cluster =
        control.cluster.as_ref().ok_or_else(|| ApiError::bad_request("not_clustered", "this node is not in a cluster (--listen): there is no other node"))?;
    let (api, tls) = {
        let view = cluster.view.lock().unwrap();
        let m = view.member_by_name(node).ok_or_else(|| ApiError::not_found(format!("no member named {node:?} (see GET /v1/cluster/members)")))?;
        if m.state == MemberState::Down {
            control.node_unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::node_unavailable(format!("node {node} is down")));
        }
        (api_address(&m.id).map_err(ApiError::bad_gateway)?, m.id.api_tls)
    };
    if !tls && !api.ip().is_loopback() {
        return Err(ApiError::bad_gateway(format!(
            "member {node} advertises an API without TLS at {api}: the caller's token would cross the network in cleartext, so nothing is forwarded"
        )));
    }
    let url = format!("{}://{api}{path}", if tls { "https" } else { "http" });
    let agent = control.forward_agent.clone();
    let forwarded = tokio::task::spawn_blocking(move || {
        let mut req = agent.request(method, &url).timeout(Duration::from_millis(FORWARD_TIMEOUT_MS)).set(FORWARDED_HEADER, "1");
        if let Some(a) = authorization {
            req = req.set("authorization", &a);
        }
        // The API takes a POST only as JSON (`origin`): an action's is `{}`.
        let body = if method == "POST" {
            req = req.set("content-type", "application/json");
            if body.is_empty() {
                b"{}".to_vec()
            } else {
                body
            }
        } else {
            body
        };
        match req.send_bytes(&body) {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(_, r)) => Ok(r),
            Err(e) => Err(e.to_string()),
        }
        .and_then(|r| {
            let status = r.status();
            let mut out = Vec::new();
            let limit = FORWARD_ANSWER_BYTES_MAX as u64;
            std::io::Read::read_to_end(&mut std::io::Read::take(r.into_reader(), limit + 1), &mut out).map_err(|e| e.to_string())?;
            if out.len() as u64 > limit {
                return Err(format!("its answer is over {limit} bytes"));
            }
            Ok((status, out))
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    forwarded.map_err(|e| ApiError::bad_gateway(format!("forwarding to node {node} ({api}) failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(addr: &str, api: &str) -> NodeId {
        NodeId { addr: addr.parse().unwrap(), api: api.parse().unwrap(), api_tls: true, boot: 1 }
    }

    #[test]
    fn requests_go_to_the_advertised_api_a_host_the_members_reach() {
        assert_eq!(api_address(&member("10.0.0.2:7946", "10.0.0.2:7070")), Ok("10.0.0.2:7070".parse().unwrap()));
        assert_eq!(api_address(&member("10.0.0.2:7946", "0.0.0.0:7070")), Ok("10.0.0.2:7070".parse().unwrap()), "every address: the member's host");
        assert!(api_address(&member("10.0.0.2:7946", "127.0.0.1:7070")).unwrap_err().contains("loopback"), "not this host's loopback");
        assert_eq!(api_address(&member("127.0.0.2:7946", "127.0.0.2:7070")), Ok("127.0.0.2:7070".parse().unwrap()), "a cluster on one host");
    }
}
