//! What the REST API itself serves (issue 29): requests by route and
//! status, their latency by route, and refused tokens.
//!
//! Rules:
//! 1. Labels are bounded: a route is one of [`routes::ROUTES`] as written
//!    (`PUT /v1/agents/{name}`, never the name a client sent) or `other`,
//!    and a status is one the API answers; so the series are at most
//!    routes × statuses, whatever clients send.
//! 2. A request is timed from its head's arrival to its response, and
//!    counted once, refused or not (a 401 too).
//! 3. A refused token is logged, at most once per
//!    [`UNAUTHORIZED_LOG_INTERVAL_MS`] with how many were refused since the
//!    last line: a client stuck on a wrong token cannot flood the log.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use caxton_shards::metrics::Latency;
use hyper::{Method, StatusCode};

use super::routes;

/// Between two log lines about refused tokens, in milliseconds.
pub const UNAUTHORIZED_LOG_INTERVAL_MS: u64 = 10_000;

/// `route` label of a path no route matches (rule 1).
const OTHER: &str = "other";

#[derive(Default)]
pub struct RequestMetrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    counts: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Latency>,
    unauthorized_logged: Option<Instant>,
    unauthorized_since: u64,
}

/// The `route` label of a request (rule 1).
pub fn route_label(method: &Method, path: &str) -> &'static str {
    static LABELS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let labels = LABELS.get_or_init(|| routes::ROUTES.iter().map(|r| format!("{} /{}", r.method, r.path.join("/"))).collect());
    routes::route_index(method, path).map_or(OTHER, |i| labels[i].as_str())
}

impl RequestMetrics {
    /// Counts one answered request (rule 2), and logs a refused token
    /// (rule 3).
    pub fn record(&self, route: &'static str, status: StatusCode, took: Duration, peer: SocketAddr) {
        let mut inner = self.inner.lock().unwrap();
        *inner.counts.entry((route, status.as_u16())).or_default() += 1;
        inner.latency.entry(route).or_default().record(took.as_nanos().max(1) as u64);
        if status == StatusCode::UNAUTHORIZED {
            inner.unauthorized_since += 1;
            let due = inner.unauthorized_logged.is_none_or(|at| at.elapsed() >= Duration::from_millis(UNAUTHORIZED_LOG_INTERVAL_MS));
            if due {
                tracing::warn!(%peer, route, refused = inner.unauthorized_since, "API requests refused for a missing or wrong bearer token (this one and those since the last such line)");
                inner.unauthorized_logged = Some(Instant::now());
                inner.unauthorized_since = 0;
            }
        }
    }

    /// The families, in Prometheus' text format.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap();
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP caxton_api_requests_total REST requests answered, by route (as declared) and status.\n# TYPE caxton_api_requests_total counter"
        );
        for ((route, status), n) in &inner.counts {
            let _ = writeln!(o, "caxton_api_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let name = "caxton_api_request_duration_seconds";
        let _ = writeln!(o, "# HELP {name} REST requests from their head's arrival to their response, by route.\n# TYPE {name} histogram");
        for (route, l) in &inner.latency {
            let counts = super::metrics::cumulative_buckets(l);
            for (bound, n) in super::metrics::LATENCY_BUCKETS_SECONDS.iter().zip(counts) {
                let _ = writeln!(o, "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(o, "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", counts[super::metrics::LATENCY_BUCKETS_SECONDS.len()]);
            let _ = writeln!(o, "{name}_sum{{route=\"{route}\"}} {}", l.sum_ns as f64 / 1e9);
            let _ = writeln!(o, "{name}_count{{route=\"{route}\"}} {}", l.count());
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_labelled_as_declared_and_anything_else_is_other() {
        assert_eq!(route_label(&Method::PUT, "/v1/agents/some-agent"), "PUT /v1/agents/{name}");
        assert_eq!(route_label(&Method::GET, "/v1/ready"), "GET /v1/ready");
        assert_eq!(route_label(&Method::GET, "/v1/agents/a/b/c/d"), OTHER);
        assert_eq!(route_label(&Method::PATCH, "/v1/agents/x"), OTHER, "a method no route has");
    }

    #[test]
    fn requests_are_counted_by_route_and_status_and_timed_by_route() {
        let m = RequestMetrics::default();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for status in [StatusCode::OK, StatusCode::OK, StatusCode::UNAUTHORIZED] {
            m.record("GET /v1/agents", status, Duration::from_micros(300), peer);
        }
        let text = m.render();
        assert!(text.contains("caxton_api_requests_total{route=\"GET /v1/agents\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("caxton_api_requests_total{route=\"GET /v1/agents\",status=\"401\"} 1"), "{text}");
        assert!(text.contains("caxton_api_request_duration_seconds_count{route=\"GET /v1/agents\"} 3"), "{text}");
        assert!(text.contains("caxton_api_request_duration_seconds_bucket{route=\"GET /v1/agents\",le=\"0.0005\"} 3"), "{text}");
    }
}
