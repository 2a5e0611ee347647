//! The REST routes, each declared once in [`ROUTES`].
//!
//! Rules:
//! 1. A path is matched segment by segment; `{name}` matches one non-empty
//!    segment (an agent name, checked later by the control plane).
//! 2. A path some route matches with another method is answered 405 with
//!    an `Allow` header listing the methods that route has; a path no route
//!    matches is 404.
//! 3. Only routes marked `public` are served without the bearer token:
//!    the probes, `/v1/health` (liveness) and `/v1/ready` (readiness), which
//!    a load balancer or an orchestrator calls without credentials and which
//!    name no agent. `/metrics` names every agent and makes every shard
//!    work, so it needs the token whenever the node has one (issue 25).

use hyper::{Method, StatusCode};

use super::error::ApiError;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Ready,
    Metrics,
    Stats,
    AgentList,
    ClusterMembers,
    ClusterForget,
    ForceKeyRotation,
    Deploy,
    AgentDetail,
    AgentLogs,
    Stop,
    Rollback,
    Restart,
    Send,
    KeyList,
    KeyDelete,
    ToolList,
}

pub struct Route {
    pub method: Method,
    /// Segments after the leading `/`; `{name}` is a parameter (rule 1).
    pub path: &'static [&'static str],
    pub endpoint: Endpoint,
    /// Served without the token (rule 3).
    pub public: bool,
}

const NAME: &str = "{name}";
/// A key of a keyed agent, percent-encoded in the path.
const KEY: &str = "{key}";

macro_rules! route {
    ($method:ident, [$($seg:expr),*], $endpoint:ident, $public:expr) => {
        Route { method: Method::$method, path: &[$($seg),*], endpoint: Endpoint::$endpoint, public: $public }
    };
}

/// Every route of the API.
pub const ROUTES: [Route; 18] = [
    route!(GET, ["v1", "health"], Health, true),
    route!(GET, ["v1", "ready"], Ready, true),
    route!(GET, ["metrics"], Metrics, false),
    route!(GET, ["v1", "stats"], Stats, false),
    route!(GET, ["v1", "agents"], AgentList, false),
    route!(GET, ["v1", "cluster", "members"], ClusterMembers, false),
    route!(DELETE, ["v1", "cluster", "members", NAME], ClusterForget, false),
    route!(POST, ["v1", "cluster", "keys", "force"], ForceKeyRotation, false),
    route!(PUT, ["v1", "agents", NAME], Deploy, false),
    route!(GET, ["v1", "agents", NAME], AgentDetail, false),
    route!(GET, ["v1", "agents", NAME, "logs"], AgentLogs, false),
    route!(DELETE, ["v1", "agents", NAME], Stop, false),
    route!(POST, ["v1", "agents", NAME, "rollback"], Rollback, false),
    route!(POST, ["v1", "agents", NAME, "restart"], Restart, false),
    route!(POST, ["v1", "messages"], Send, false),
    route!(GET, ["v1", "agents", NAME, "keys"], KeyList, false),
    route!(DELETE, ["v1", "agents", NAME, "keys", KEY], KeyDelete, false),
    route!(GET, ["v1", "tools"], ToolList, false),
];

/// A matched request: its route and the `{name}` it carried, if any.
#[derive(Debug)]
pub struct Matched<'p> {
    pub endpoint: Endpoint,
    pub public: bool,
    pub name: Option<&'p str>,
    /// The `{key}` segment, still percent-encoded.
    pub key: Option<&'p str>,
}

/// Matches one path against one route's pattern (rule 1): its `{name}`
/// and `{key}`, if it has them.
fn matches<'p>(pattern: &[&str], segments: &[&'p str]) -> Option<(Option<&'p str>, Option<&'p str>)> {
    if pattern.len() != segments.len() {
        return None;
    }
    let (mut name, mut key) = (None, None);
    for (want, have) in pattern.iter().zip(segments) {
        if *want == NAME && !have.is_empty() {
            name = Some(*have);
        } else if *want == KEY && !have.is_empty() {
            key = Some(*have);
        } else if want != have {
            return None;
        }
    }
    Some((name, key))
}

/// Finds the route of a request (rule 2). `path` has no trailing `/`.
/// The index in [`ROUTES`] of the route `method path` matches, if any.
pub fn route_index(method: &Method, path: &str) -> Option<usize> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    ROUTES.iter().position(|r| r.method == *method && matches(r.path, &segments).is_some())
}

pub fn resolve<'p>(method: &Method, path: &'p str) -> Result<Matched<'p>, ApiError> {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut allowed: Vec<&str> = Vec::new();
    for route in &ROUTES {
        let Some((name, key)) = matches(route.path, &segments) else { continue };
        if route.method == *method {
            return Ok(Matched { endpoint: route.endpoint, public: route.public, name, key });
        }
        allowed.push(route.method.as_str());
    }
    if allowed.is_empty() {
        return Err(ApiError::not_found(format!("no route {path}")));
    }
    let mut e =
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method} is not allowed on {path}; allowed: {}", allowed.join(", ")));
    e.allow = Some(allowed.join(", "));
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_resolves_to_itself() {
        for route in &ROUTES {
            let path: String = route
                .path
                .iter()
                .map(|s| {
                    format!(
                        "/{}",
                        if *s == NAME {
                            "echo"
                        } else if *s == KEY {
                            "k%2F1"
                        } else {
                            s
                        }
                    )
                })
                .collect();
            let m = resolve(&route.method, &path).unwrap();
            assert_eq!(m.endpoint, route.endpoint, "{path}");
            assert_eq!(m.name.is_some(), route.path.contains(&NAME));
        }
        let pairs: std::collections::HashSet<_> = ROUTES.iter().map(|r| (r.method.as_str(), r.path)).collect();
        assert_eq!(pairs.len(), ROUTES.len(), "no route is declared twice");
    }

    #[test]
    fn a_wrong_method_is_405_with_allow_and_an_unknown_path_404() {
        let e = resolve(&Method::POST, "/v1/agents/echo").unwrap_err();
        assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(e.allow.as_deref(), Some("PUT, GET, DELETE"));
        assert_eq!(resolve(&Method::DELETE, "/metrics").unwrap_err().allow.as_deref(), Some("GET"));
        for path in ["/v1/agent", "/v1/agents/a/b", "/v1/agents/", "", "/V1/health", "/v1//health"] {
            assert_eq!(resolve(&Method::GET, path).unwrap_err().status, StatusCode::NOT_FOUND, "{path:?}");
        }
    }

    #[test]
    fn only_the_probes_are_public() {
        let public: Vec<Endpoint> = ROUTES.iter().filter(|r| r.public).map(|r| r.endpoint).collect();
        assert_eq!(public, [Endpoint::Health, Endpoint::Ready]);
    }
}
