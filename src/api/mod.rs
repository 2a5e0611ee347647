//! The REST/JSON control plane, on hyper, on one thread of its own with a
//! current-thread tokio runtime. It never runs on a shard's core budget's
//! hot path: it reaches shards only through `Control`.
//!
//! The routes are declared once, in `routes::ROUTES`; `route` below
//! answers each endpoint.

mod agents;
mod conn;
pub mod error;
mod forward;
mod json;
mod metrics;
mod origin;
mod request_metrics;
mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use caxton_shards::limits::{
    ACCEPT_RETRY_MS, API_FIRST_BYTES_TIMEOUT_MS, API_PENDING_MAX, API_PENDING_PER_SOURCE_MAX, API_REFUSAL_MS_MAX, MESSAGE_BODY_BYTES_MAX, REPLY_TIMEOUT_MS_MAX,
};
use caxton_shards::pending::{NoPlace, PendingLimits, PendingPlace, PendingPlaces};

use crate::control::{Control, Readiness};
use error::ApiError;
use routes::Endpoint;

pub struct Api {
    pub control: Arc<Control>,
    /// The tokens accepted (`secret` rule 5); none required when empty.
    pub tokens: crate::secret::ApiTokens,
    pub received_bytes: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// Open connections, and their limit (`--max-connections`).
    connections: AtomicUsize,
    connections_max: usize,
    /// Time bounds of a connection (`conn` rules 1 and 2).
    header_timeout: Duration,
    idle_timeout: Duration,
    /// Connections closed by those bounds, by why.
    pub closed_header_timeout: AtomicU64,
    /// TLS handshakes refused (bad or no TLS from the client).
    pub tls_refused: AtomicU64,
    pub closed_idle_timeout: AtomicU64,
    /// Connections closed before their first request: no pending place
    /// left, or none left for their source (`pending`).
    pub closed_pending: AtomicU64,
    pub closed_pending_per_source: AtomicU64,
    /// Places of connections that have not sent a first request head.
    pending: Arc<std::sync::Mutex<PendingPlaces>>,
    /// Requests refused by `origin` rules 1 to 3.
    pub refused_browser: AtomicU64,
    /// Names of this API, for `origin`.
    identity: origin::Identity,
    /// A metrics listener (`--metrics-listen`): serves `/metrics` and
    /// the probes only.
    metrics_only: bool,
    /// Requests by route and status, and their latency.
    requests: request_metrics::RequestMetrics,
}

impl Api {
    pub fn new(
        control: Arc<Control>,
        tokens: crate::secret::ApiTokens,
        listen: std::net::SocketAddr,
        limits: &crate::config::ListenerLimits,
        connections_max: usize,
    ) -> Api {
        Api {
            control,
            tokens,
            received_bytes: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            connections_max,
            header_timeout: limits.api_header_timeout,
            idle_timeout: limits.api_idle_timeout,
            closed_header_timeout: AtomicU64::new(0),
            tls_refused: AtomicU64::new(0),
            closed_idle_timeout: AtomicU64::new(0),
            closed_pending: AtomicU64::new(0),
            closed_pending_per_source: AtomicU64::new(0),
            pending: Arc::new(std::sync::Mutex::new(PendingPlaces::new(PendingLimits {
                max: API_PENDING_MAX,
                per_source_max: API_PENDING_PER_SOURCE_MAX,
                reserved: 0,
            }))),
            refused_browser: AtomicU64::new(0),
            identity: origin::Identity::new(listen, &limits.api_hosts),
            metrics_only: false,
            requests: Default::default(),
        }
    }

    /// The API of a metrics listener on `listen` (`--metrics-listen`).
    pub fn metrics_only(mut self, listen: std::net::SocketAddr, limits: &crate::config::ListenerLimits) -> Api {
        self.identity = origin::Identity::new(listen, &limits.api_hosts);
        self.metrics_only = true;
        self
    }
}

/// Decrements the open-connection count when a connection ends.
struct ConnectionSlot(Arc<Api>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the API on `listener` until the process ends; with `tls`, every
/// connection does its handshake first, within the header time bound
/// (`tls` rule 2). Until its first request head, a connection holds a
/// place of a bounded pool shared per source, and its first byte is due
/// within [`API_FIRST_BYTES_TIMEOUT_MS`] (`caxton_shards::pending`): silent
/// or slow connections, and TLS handshakes, cannot hold every place.
pub async fn serve(api: Arc<Api>, listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        let place = match PendingPlace::take(&api.pending, peer.ip()) {
            Ok(place) => place,
            Err(refusal) => {
                let counter = match refusal {
                    NoPlace::Full => &api.closed_pending,
                    NoPlace::PerSource => &api.closed_pending_per_source,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, reason = refusal.label(), "API connection closed before its first request: no pending place for it");
                continue; // dropping `stream` closes it
            }
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        let over = api.connections.fetch_add(1, Ordering::Relaxed) >= api.connections_max;
        let slot = ConnectionSlot(api.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let first = tokio::time::timeout(Duration::from_millis(API_FIRST_BYTES_TIMEOUT_MS).min(api.header_timeout), stream.readable()).await;
            if !matches!(first, Ok(Ok(()))) {
                api.closed_header_timeout.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "API connection silent past its first-byte bound");
                return;
            }
            match tls {
                None => connection(api, stream, peer, over, place).await,
                Some(acceptor) => match tokio::time::timeout(api.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => connection(api, stream, peer, over, place).await,
                    Ok(Err(e)) => {
                        api.tls_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        api.closed_header_timeout.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "no TLS handshake within the header time bound");
                    }
                },
            }
        });
    }
}

/// One API connection, plain or TLS: refused at once past
/// `--max-connections` (`over`), else served under its time bounds.
async fn connection<S>(api: Arc<Api>, stream: S, peer: std::net::SocketAddr, over: bool, place: PendingPlace)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if over {
        // Refuse cleanly: one 503 answer, then close (never hang).
        let service = service_fn(|_req| async {
            let e = ApiError::busy("the node is at --max-connections; retry later");
            let mut resp = json_response(e.status, &e.body());
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(1));
            resp.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            Ok::<_, std::convert::Infallible>(resp)
        });
        let conn = http1::Builder::new().keep_alive(false).serve_connection(TokioIo::new(stream), service);
        if tokio::time::timeout(api.header_timeout.min(Duration::from_millis(API_REFUSAL_MS_MAX)), conn).await.is_err() {
            api.closed_header_timeout.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    let state = conn::ConnState::new();
    let in_service = state.clone();
    let watcher = api.clone();
    // Its pending place is given back at its first request head.
    let place = std::sync::Mutex::new(Some(place));
    let service = service_fn(move |req| {
        let api = api.clone();
        drop(place.lock().unwrap_or_else(|e| e.into_inner()).take());
        let request = in_service.request_started();
        async move {
            let resp = handle(&api, req, peer).await;
            drop(request);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let io = TokioIo::new(conn::Watched::new(stream, state.clone()));
    let served = http1::Builder::new().serve_connection(io, service);
    match conn::watch(served, &state, watcher.header_timeout, watcher.idle_timeout).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        Err(why) => {
            let counter = match why {
                conn::Expired::Header => &watcher.closed_header_timeout,
                conn::Expired::Idle => &watcher.closed_idle_timeout,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, ?why, "connection closed by its time bound");
        }
    }
}

async fn handle(api: &Api, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let began = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = route(api, req).await;
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%peer, %method, path, status = e.status.as_u16(), message = %e.message, "request refused");
            let mut resp = json_response(e.status, &e.body());
            if let Some(s) = e.retry_after_s {
                resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
            }
            if let Some(allow) = e.allow.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
                resp.headers_mut().insert(ALLOW, allow);
            }
            resp
        }
    };
    api.sent_bytes.fetch_add(resp.body().size_hint().exact().unwrap_or(0), Ordering::Relaxed);
    api.requests.record(request_metrics::route_label(&method, &path), resp.status(), began.elapsed(), peer);
    resp
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(serde_json::to_vec(value).expect("JSON values serialize"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Decodes `%XX` escapes (a key in a path or a query); the result must be
/// UTF-8.
fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else { return Err(ApiError::bad_request("invalid_escape", format!("{s:?} has a bad %-escape"))) };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("invalid_escape", format!("{s:?} does not decode to UTF-8")))
}

fn parse_param<T: std::str::FromStr>(query: Option<&str>, key: &str) -> Result<Option<T>, ApiError> {
    match query_param(query, key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ApiError::bad_request("invalid_query", format!("query parameter {key}={v:?} is not a valid number"))),
    }
}

async fn read_body(api: &Api, req: Request<Incoming>, limit: usize) -> Result<Vec<u8>, ApiError> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => {
            let body = collected.to_bytes().to_vec();
            api.received_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            Ok(body)
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(format!("request body over {limit} bytes"))),
        Err(e) => Err(ApiError::bad_request("bad_body", format!("cannot read the request body: {e}"))),
    }
}

fn authorized(api: &Api, req: &Request<Incoming>) -> bool {
    if !api.tokens.required() {
        return true;
    }
    let Some(value) = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    value.strip_prefix("Bearer ").is_some_and(|given| api.tokens.accepts(given))
}

/// The node's cluster, for the calls that need one (409 on a standalone
/// node).
fn clustered(control: &Control) -> Result<&crate::gossip::Cluster, ApiError> {
    control.cluster.as_ref().ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "not_clustered", "this node is not in a cluster"))
}

async fn route(api: &Api, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = req.uri().query().map(str::to_string);
    let query = query.as_deref();
    if let Err((code, message)) = origin::check(&api.identity, req.method(), req.headers()) {
        api.refused_browser.fetch_add(1, Ordering::Relaxed);
        let status = if code == "unsupported_media_type" { StatusCode::UNSUPPORTED_MEDIA_TYPE } else { StatusCode::FORBIDDEN };
        return Err(ApiError::new(status, code, message));
    }
    let matched = routes::resolve(req.method(), &path)?;
    if api.metrics_only && !matches!(matched.endpoint, Endpoint::Metrics | Endpoint::Health | Endpoint::Ready) {
        return Err(ApiError::not_found("this listener serves /metrics, /v1/health and /v1/ready only"));
    }
    if !matched.public && !authorized(api, &req) {
        return Err(ApiError::unauthorized());
    }
    let control = &api.control;
    let probe_or_metrics = matches!(matched.endpoint, Endpoint::Health | Endpoint::Ready | Endpoint::Metrics);
    if control.draining() && !probe_or_metrics {
        return Err(ApiError::shutting_down()); // control `drain` rule 1
    }
    if !control.restored() && !probe_or_metrics {
        return Err(ApiError::starting());
    }
    let name = matched.name.unwrap_or_default();
    // An agent another member hosts is read there (`forward`).
    if matches!(matched.endpoint, Endpoint::AgentDetail | Endpoint::AgentLogs) && !forward::was_forwarded(&req) {
        if let Some(node) = control.remote_node_of(name) {
            let path = match query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let (status, body) = forward::forward(control, &node, "GET", path, Vec::new(), forward::authorization(&req)).await?;
            return Ok(agents::forwarded(status, body));
        }
    }
    match matched.endpoint {
        Endpoint::Health => {
            // Never waits on a stalled shard, and on a busy one only
            // briefly: both are reported as such.
            let stats = control.shard_stats_partial(None, Duration::from_millis(caxton_shards::limits::HEALTH_SHARD_WAIT_MS)).await;
            let stalled: Vec<bool> = (0..stats.len()).map(|i| control.stalled(i)).collect();
            Ok(json_response(StatusCode::OK, &json::health(control.agent_count(), &stats, &stalled, &json::NodeIdentity::of(control))))
        }
        Endpoint::Ready => {
            let readiness = control.readiness();
            let status = if readiness == Readiness::Ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            Ok(json_response(status, &serde_json::json!({ "status": readiness.as_str() })))
        }
        Endpoint::Metrics => {
            let partial = control.shard_stats_partial(Some(control.metrics_instances_max), Duration::MAX).await;
            let stalled: Vec<bool> = (0..partial.len()).map(|i| control.stalled(i)).collect();
            let stats: Vec<_> = partial.into_iter().flatten().collect();
            let (resident_bytes, cpu_seconds) = metrics::NodeFigures::read_process();
            let figures = metrics::NodeFigures {
                resident_bytes,
                cpu_seconds,
                start_time_seconds: metrics::NodeFigures::start_time_seconds(),
                api_received_bytes: api.received_bytes.load(Ordering::Relaxed),
                api_sent_bytes: api.sent_bytes.load(Ordering::Relaxed),
                agents: control.agent_count(),
                undeliverable_api: control.undeliverable_api.load(Ordering::Relaxed),
                undeliverable_wire: control.undeliverable_wire.load(Ordering::Relaxed),
                wire_received_bytes: control.wire_received_bytes.load(Ordering::Relaxed),
                wire_sent_bytes: control.wire_sent_bytes.load(Ordering::Relaxed),
                api_closed_header_timeout: api.closed_header_timeout.load(Ordering::Relaxed),
                api_tls_refused: api.tls_refused.load(Ordering::Relaxed),
                api_closed_idle_timeout: api.closed_idle_timeout.load(Ordering::Relaxed),
                api_closed_pending: api.closed_pending.load(Ordering::Relaxed),
                api_closed_pending_per_source: api.closed_pending_per_source.load(Ordering::Relaxed),
                api_refused_browser: api.refused_browser.load(Ordering::Relaxed),
                wire_refused: control.wire_refused.load(Ordering::Relaxed),
                runtime_outbox_bytes: control.outbox.bytes() as u64,
                wire_outbox_bytes: control.wire_bytes.load(Ordering::Relaxed) as u64,
                runtime_outbox_refused: control.outbox.refused.load(Ordering::Relaxed),
                message_budget: control.budget,
                shards_stalled: stalled,
                disk_free_bytes: control.disk_free_bytes(),
                disk_free_min_bytes: control.disk_free_min_bytes(),
                traces: control.trace_counters.as_ref().map(|c| {
                    use std::sync::atomic::Ordering::Relaxed;
                    (c.exported.load(Relaxed), c.failed.load(Relaxed), c.failed_requests.load(Relaxed))
                }),
                cluster: control.cluster.as_ref().map(|c| {
                    use caxton_cluster::view::MemberState;
                    let v = c.view.lock().unwrap();
                    let count = |st| v.count(st);
                    let (keys_held, key_sending_next) = c.keys.phase();
                    metrics::ClusterFigures {
                        alive: 1 + count(MemberState::Alive),
                        suspect: count(MemberState::Suspect),
                        down: count(MemberState::Down),
                        members: v.members.values().filter(|m| m.id.addr != v.me.addr).map(|m| (m.id.addr.to_string(), m.state != MemberState::Down)).collect(),
                        gossip: v.stats,
                        refused_oversized: v.refused_oversized,
                        keys_held,
                        key_sending_next,
                        node_unavailable: control.node_unavailable.load(Ordering::Relaxed),
                    }
                }),
            };
            let mut text = metrics::render(&stats, &figures);
            text.push_str(&crate::tools::metrics::render(control.tools().map(|t| &**t), &stats));
            text.push_str(&api.requests.render());
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            Ok(resp)
        }
        Endpoint::Stats => {
            let agents = query_param(query, "agents").is_some();
            let stats = control.shard_stats(Some(if agents { control.metrics_instances_max } else { 0 })).await?;
            let (resident_bytes, _) = metrics::NodeFigures::read_process();
            Ok(json_response(StatusCode::OK, &json::stats(resident_bytes, &stats, agents)))
        }
        Endpoint::AgentList => {
            let local = json::agent_list(&control.list(), &control.unrestored());
            match (query_param(query, "cluster"), &control.cluster) {
                (Some("true"), Some(c)) => Ok(json_response(StatusCode::OK, &json::agent_list_cluster(local, &c.view.lock().unwrap()))),
                // A standalone node's list is the cluster's.
                (None | Some("false" | "true"), _) => Ok(json_response(StatusCode::OK, &local)),
                (Some(other), _) => Err(ApiError::bad_request("invalid_query", format!("cluster={other:?}: use true or false"))),
            }
        }
        Endpoint::ToolList => Ok(json_response(StatusCode::OK, &json::tool_list(control.tools().map(|t| &**t)))),
        Endpoint::ClusterMembers => match &control.cluster {
            Some(c) => Ok(json_response(StatusCode::OK, &json::members(&c.view.lock().unwrap(), &c.keys))),
            None => Ok(json_response(StatusCode::OK, &serde_json::json!({ "clustered": false, "members": [] }))),
        },
        Endpoint::ClusterForget => {
            let c = clustered(control)?;
            // Percent-decoded: an IPv6 member's `[::1]:7000` travels escaped.
            let node: std::net::SocketAddr = percent_decode(name)?.parse().map_err(|_| {
                ApiError::bad_request("invalid_node", format!("{name:?} is not a member's cluster address (HOST:PORT, as GET /v1/cluster/members names it)"))
            })?;
            let hosted = c.forget(node).await.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "gossip_unavailable", e))?;
            match hosted {
                Ok(agents) => Ok(json_response(StatusCode::OK, &serde_json::json!({ "node": node.to_string(), "forgotten": true, "agents": agents }))),
                Err(why @ caxton_cluster::view::ForgetRefused::Unknown) => Err(ApiError::not_found(format!("node {node} cannot be forgotten: {why}"))),
                Err(why) => Err(ApiError::new(StatusCode::CONFLICT, "member_active", format!("node {node} cannot be forgotten: {why}"))),
            }
        }
        Endpoint::ForceKeyRotation => {
            let c = clustered(control)?;
            let step = c.keys.force().map_err(|e| ApiError::new(StatusCode::CONFLICT, "no_rotation", e))?;
            tracing::warn!(
                ?step,
                "cluster key rotation forced: sending with the next key; the old one goes once every member holding the next key sends with it"
            );
            Ok(json_response(StatusCode::OK, &json::members(&c.view.lock().unwrap(), &c.keys)))
        }
        Endpoint::Deploy | Endpoint::Stop | Endpoint::Rollback | Endpoint::Restart => agents::lifecycle(api, matched.endpoint, name, query, req).await,
        Endpoint::KeyList => {
            let prefix = percent_decode(query_param(query, "prefix").unwrap_or(""))?;
            let limit = parse_param(query, "limit")?.unwrap_or(100);
            let keys = control.keys(name, &prefix, limit).await?;
            Ok(json_response(StatusCode::OK, &serde_json::json!({ "name": name, "prefix": prefix, "keys": keys })))
        }
        Endpoint::KeyDelete => {
            let key = percent_decode(matched.key.unwrap_or_default())?;
            let had_state = control.delete_key(name, &key).await?;
            tracing::info!(agent = name, key, had_state, "key deleted");
            Ok(json_response(StatusCode::OK, &serde_json::json!({ "name": name, "key": key, "had_state": had_state })))
        }
        Endpoint::AgentDetail => {
            let detail = control.agent(name).await?;
            Ok(json_response(StatusCode::OK, &json::agent_detail(name, &detail)))
        }
        Endpoint::AgentLogs => {
            use caxton_shards::limits::{AGENT_LOG_READ_LINES_DEFAULT, AGENT_LOG_READ_LINES_MAX};
            let lines = parse_param::<usize>(query, "lines")?.map_or(AGENT_LOG_READ_LINES_DEFAULT, |n| n.clamp(1, AGENT_LOG_READ_LINES_MAX));
            let mut records = control.agent_logs(name, lines).await?;
            // `caxton agent logs --follow` asks for what came after the last
            // line it printed.
            if let Some(since_us) = parse_param::<u64>(query, "since_us")? {
                records.retain(|r| r.unix_us > since_us);
            }
            Ok(json_response(StatusCode::OK, &json::agent_logs(name, &records)))
        }
        Endpoint::Send => {
            let wait: Option<u64> = parse_param(query, "reply_timeout_ms")?;
            if wait.is_some_and(|w| w > REPLY_TIMEOUT_MS_MAX) {
                return Err(ApiError::bad_request("invalid_query", format!("reply_timeout_ms is at most {REPLY_TIMEOUT_MS_MAX}")));
            }
            let trace = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(json::traceparent);
            let body = read_body(api, req, MESSAGE_BODY_BYTES_MAX).await?;
            let mut outgoing = json::parse_send(&body)?;
            outgoing.trace = trace.unwrap_or_default();
            let (message_id, reply) = control.send(outgoing, wait.map(Duration::from_millis)).await?;
            match reply {
                Some(reply) => Ok(json_response(StatusCode::OK, &json::message(reply.message()))),
                None => Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({ "message_id": message_id }))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn a_percent_escape_decodes_to_utf8_or_is_refused() {
        assert_eq!(percent_decode("user%2F42%20x").unwrap(), "user/42 x");
        assert_eq!(percent_decode("%C3%A9").unwrap(), "é");
        // A member's cluster address as the CLI escapes it (IPv6 brackets).
        let v6 = crate::client::percent_encode("[::1]:7000");
        assert_eq!(percent_decode(&v6).unwrap().parse::<std::net::SocketAddr>().unwrap(), "[::1]:7000".parse::<std::net::SocketAddr>().unwrap());
        assert!(percent_decode("%zz").is_err() && percent_decode("%4").is_err() && percent_decode("%FF").is_err());
    }
}
