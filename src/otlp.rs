//! Trace export: the shards' spans, sent over OTLP (HTTP, protobuf) by the
//! maintained `opentelemetry-otlp` exporter, from a thread of its own.
//!
//! Rules:
//! 1. The exporter thread is the only reader of the shards' span queues
//!    (`caxton_shards::trace`); a shard never waits on it. It batches up to
//!    [`EXPORT_BATCH_SPANS_MAX`] spans, or what [`EXPORT_INTERVAL_MS`]
//!    gathered, per request.
//! 2. A collector that is slow, refuses or is gone costs this thread's time
//!    only: the request has a time bound ([`EXPORT_TIMEOUT_MS`]), a failed
//!    batch is counted and dropped (never retried into a growing backlog),
//!    and while the thread waits the shards' queues fill and their drops
//!    are counted.
//! 3. Span times are the shards' monotonic clock, turned into wall-clock
//!    time here (`trace::unix_ns`). The node is the resource
//!    (`service.name` caxton, `service.instance.id` the node's name).

use std::borrow::Cow;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use caxton_shards::envelope::RoutePath;
use caxton_shards::trace::{unix_ns, SpanKind as CaxtonSpanKind, SpanOutcome, SpanRecord};
use crossbeam_channel::Receiver;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use opentelemetry_sdk::Resource;

/// `--otlp-sampling-ratio`'s default: one trace in a hundred.
pub const SAMPLING_RATIO_DEFAULT: f64 = 0.01;
/// Spans per export request, at most (rule 1).
pub const EXPORT_BATCH_SPANS_MAX: usize = 512;
/// Longest a span waits for a batch to fill before it is sent (rule 1).
pub const EXPORT_INTERVAL_MS: u64 = 200;
/// Time bound of one export request (rule 2).
pub const EXPORT_TIMEOUT_MS: u64 = 5_000;

/// Where traces go and how many.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// The collector's traces URL (`.../v1/traces`).
    pub endpoint: String,
    pub sampling_ratio: f64,
}

impl TraceConfig {
    /// Checks `--otlp-endpoint` and `--otlp-sampling-ratio`.
    pub fn new(endpoint: &str, sampling_ratio: f64) -> Result<TraceConfig, String> {
        if !(0.0..=1.0).contains(&sampling_ratio) {
            return Err(format!("--otlp-sampling-ratio is a fraction from 0 to 1, not {sampling_ratio}"));
        }
        let Some(rest) = endpoint.strip_prefix("http://") else {
            return Err(format!(
                "--otlp-endpoint {endpoint:?}: give an http:// URL of an OTLP collector (https is not supported yet: run the collector beside the node)"
            ));
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("--otlp-endpoint {endpoint:?} names no host"));
        }
        let base = endpoint.trim_end_matches('/');
        let endpoint = if base.ends_with("/v1/traces") { base.to_string() } else { format!("{base}/v1/traces") };
        Ok(TraceConfig { endpoint, sampling_ratio })
    }
}

/// What the exporter did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportCounters {
    pub exported: AtomicU64,
    pub failed: AtomicU64,
    pub failed_requests: AtomicU64,
}

/// The running exporter: its counters, and a stop that sends what is left.
pub struct TraceExport {
    pub counters: Arc<ExportCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TraceExport {
    /// Starts the exporter thread over the shards' span queues.
    pub fn start(config: &TraceConfig, node: &str, queues: Vec<Receiver<SpanRecord>>) -> Result<TraceExport, String> {
        let client = UreqClient { agent: ureq::AgentBuilder::new().timeout(Duration::from_millis(EXPORT_TIMEOUT_MS)).build() };
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(Duration::from_millis(EXPORT_TIMEOUT_MS))
            .with_http_client(client)
            .build()
            .map_err(|e| format!("cannot set up the OTLP exporter for {}: {e}", config.endpoint))?;
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "caxton"),
                KeyValue::new("service.instance.id", node.to_string()),
                KeyValue::new("caxton.node", node.to_string()),
            ])
            .build();
        exporter.set_resource(&resource);
        let counters = Arc::new(ExportCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, node, endpoint) = (counters.clone(), stop.clone(), Arc::<str>::from(node), config.endpoint.clone());
        let thread = std::thread::Builder::new()
            .name("caxton-otlp".into())
            .spawn(move || run(exporter, queues, &c, &s, &node, &endpoint))
            .map_err(|e| format!("cannot start the OTLP exporter thread: {e}"))?;
        tracing::info!(endpoint = %config.endpoint, sampling_ratio = config.sampling_ratio, "exporting traces over OTLP");
        Ok(TraceExport { counters, stop, thread: Some(thread) })
    }

    /// Sends what the queues hold, then stops.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    exporter: opentelemetry_otlp::SpanExporter,
    queues: Vec<Receiver<SpanRecord>>,
    counters: &ExportCounters,
    stop: &AtomicBool,
    node: &Arc<str>,
    endpoint: &str,
) {
    let scope = InstrumentationScope::builder("caxton").with_version(env!("CARGO_PKG_VERSION")).build();
    let mut batch: Vec<SpanRecord> = Vec::with_capacity(EXPORT_BATCH_SPANS_MAX);
    let mut oldest: Option<Instant> = None;
    let mut warned = false;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        for q in &queues {
            while batch.len() < EXPORT_BATCH_SPANS_MAX {
                let Ok(span) = q.try_recv() else { break };
                oldest.get_or_insert_with(Instant::now);
                batch.push(span);
            }
        }
        let due = oldest.is_some_and(|t| t.elapsed() >= Duration::from_millis(EXPORT_INTERVAL_MS));
        if batch.len() >= EXPORT_BATCH_SPANS_MAX || (due && !batch.is_empty()) || (stopping && !batch.is_empty()) {
            let n = batch.len() as u64;
            let data: Vec<SpanData> = batch.drain(..).map(|s| span_data(s, &scope, node)).collect();
            oldest = None;
            match futures_lite::future::block_on(exporter.export(data)) {
                Ok(()) => {
                    counters.exported.fetch_add(n, Ordering::Relaxed);
                    warned = false;
                }
                Err(e) => {
                    counters.failed.fetch_add(n, Ordering::Relaxed);
                    counters.failed_requests.fetch_add(1, Ordering::Relaxed);
                    if !warned {
                        tracing::warn!(%endpoint, error = %e, "trace export failed; its spans are dropped and counted (warned once until an export succeeds)");
                        warned = true;
                    }
                }
            }
            continue;
        }
        if stopping {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn span_data(s: SpanRecord, scope: &InstrumentationScope, node: &Arc<str>) -> SpanData {
    let performative = caxton_abi::Performative::from_code(s.performative).map_or("unknown", |p| p.name());
    let (name, kind) = match s.kind {
        CaxtonSpanKind::Hop => (format!("deliver {}", s.agent), SpanKind::Consumer),
        CaxtonSpanKind::Handle => (format!("handle {}", s.agent), SpanKind::Internal),
        CaxtonSpanKind::ToolCall => (format!("call {}", s.agent), SpanKind::Client),
    };
    let status = match s.outcome {
        SpanOutcome::Handled => Status::Ok,
        other => Status::error(other.name()),
    };
    let at = |ns: u64| SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_ns(ns));
    SpanData {
        span_context: SpanContext::new(TraceId::from_bytes(s.trace_id), SpanId::from_bytes(s.span_id), TraceFlags::SAMPLED, false, TraceState::default()),
        parent_span_id: SpanId::from_bytes(s.parent_span_id),
        // A hop's parent is on another node or outside (the REST caller).
        parent_span_is_remote: s.kind == CaxtonSpanKind::Hop && matches!(s.path, RoutePath::Node | RoutePath::Api),
        span_kind: kind,
        name: Cow::Owned(name),
        start_time: at(s.start_ns),
        end_time: at(s.end_ns.max(s.start_ns)),
        attributes: vec![
            KeyValue::new("caxton.agent", s.agent.to_string()),
            KeyValue::new("caxton.instance", s.instance as i64),
            KeyValue::new("caxton.shard", s.shard as i64),
            KeyValue::new("caxton.node", node.to_string()),
            KeyValue::new("caxton.path", s.path.name()),
            KeyValue::new("caxton.outcome", s.outcome.name()),
            KeyValue::new("fipa.performative", performative),
            KeyValue::new("fipa.conversation_id", s.conversation_id as i64),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

/// The exporter's HTTP client: ureq, blocking, on the exporter's own
/// thread (rule 2; no async runtime needed).
#[derive(Debug)]
struct UreqClient {
    agent: ureq::Agent,
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut req = self.agent.request(parts.method.as_str(), &parts.uri.to_string());
        for (name, value) in &parts.headers {
            if let Ok(value) = value.to_str() {
                req = req.set(name.as_str(), value);
            }
        }
        let resp = match req.send_bytes(&body) {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => return Err(Box::new(e)),
        };
        let status = resp.status();
        let mut answer = Vec::new();
        resp.into_reader().take(1 << 20).read_to_end(&mut answer)?;
        let response = Response::builder().status(status).body(Bytes::from(answer))?;
        if !response.status().is_success() {
            return Err(format!("the collector answered {status}").into());
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls_of_the_traces_signal() {
        assert_eq!(TraceConfig::new("http://127.0.0.1:4318", 1.0).unwrap().endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(TraceConfig::new("http://c:4318/", 0.5).unwrap().endpoint, "http://c:4318/v1/traces");
        assert_eq!(TraceConfig::new("http://c:4318/v1/traces", 0.0).unwrap().endpoint, "http://c:4318/v1/traces");
        assert!(TraceConfig::new("https://c:4318", 1.0).unwrap_err().contains("https"));
        assert!(TraceConfig::new("c:4318", 1.0).is_err());
        assert!(TraceConfig::new("http://", 1.0).is_err());
        assert!(TraceConfig::new("http://c:4318", 1.5).unwrap_err().contains("fraction"));
        assert!(TraceConfig::new("http://c:4318", -0.1).is_err());
    }
}
