//! Requests forwarded to another member's API: deploys aimed at it
//! (`?node=`) and the lifecycle calls (stop, upgrade, rollback, restart)
//! of agents it hosts. The caller's credentials go along, only to the
//! API address the member advertises in its gossip identity, and over
//! HTTPS when the member's API has TLS (its certificate checked against
//! `--tls-ca`, or the public roots); a member that is down is answered 503
//! at once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use caxton_cluster::view::MemberState;
use caxton_shards::limits::FORWARD_TIMEOUT_MS;

use super::error::ApiError;
use crate::control::Control;

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
    let api = {
        let view = cluster.view.lock().unwrap();
        let m = view.member_by_name(node).ok_or_else(|| ApiError::not_found(format!("no member named {node:?} (see GET /v1/cluster/members)")))?;
        if m.state == MemberState::Down {
            control.node_unavailable.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::node_unavailable(format!("node {node} is down")));
        }
        (m.id.api, m.id.api_tls)
    };
    let (api, tls) = api;
    let url = format!("{}://{api}{path}", if tls { "https" } else { "http" });
    let agent = control.forward_agent.clone();
    let forwarded = tokio::task::spawn_blocking(move || {
        let mut req = agent.request(method, &url).timeout(Duration::from_millis(FORWARD_TIMEOUT_MS));
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
            std::io::Read::read_to_end(&mut r.into_reader(), &mut out).map_err(|e| e.to_string())?;
            Ok((status, out))
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    forwarded.map_err(|e| ApiError::bad_gateway(format!("forwarding to node {node} ({api}) failed: {e}")))
}
