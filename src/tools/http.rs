//! Plain HTTP tools (`kind = "http"`): a call's content is
//! `{"method", "path", "headers"?, "body"? | "body_base64"?}`, its result
//! `{"status", "headers", "body" | "body_base64"}` (`body` when the
//! response is UTF-8).
//!
//! Rules:
//! 1. Only the configured methods, and paths under the configured
//!    prefixes of the base URL; a path with `..` or `\` is refused.
//! 2. Redirects are followed (at most [`REDIRECTS_MAX`]) only within the
//!    base URL's origin and allowed paths, and never to an address the
//!    tool may not reach (`net_guard`); any other redirect is the result.
//! 3. The response body is read as a stream and the call ends `too_large`
//!    the moment it passes `TOOL_RESPONSE_BYTES_MAX`: it is never buffered
//!    whole.
//! 4. Every request carries `Idempotency-Key` (the same when a call is made
//!    again after a restart) and, for a traced call, `traceparent`; the
//!    agent cannot set those, nor `Host` or the configured headers.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use caxton_shards::limits::TOOL_RESPONSE_BYTES_MAX;
use caxton_shards::tools::ToolFailure;

use super::net_guard::{host_allowed, GuardedResolver};
use super::{CallFailure, CallMeta};

/// Redirects followed at most (rule 2).
pub const REDIRECTS_MAX: usize = 5;

/// Headers an agent may not set (rule 4), besides the configured ones.
const RESERVED_HEADERS: [&str; 9] =
    ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "idempotency-key", "traceparent", "tracestate"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpRequest {
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_base64: Option<String>,
}

#[derive(Serialize)]
struct HttpResponse {
    status: u16,
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

pub struct HttpTool {
    client: reqwest::Client,
    base: reqwest::Url,
    methods: Vec<String>,
    paths: Arc<[String]>,
    headers: HeaderMap,
    allow_private: bool,
}

/// The path part of `url` relative to `base` if `url` is within the base
/// URL's origin and under one of `paths` (rules 1 and 2).
fn allowed_path(base: &reqwest::Url, paths: &[String], url: &reqwest::Url) -> bool {
    if url.origin() != base.origin() {
        return false;
    }
    let Some(rest) = url.path().strip_prefix(base.path().trim_end_matches('/')) else { return false };
    paths.iter().any(|p| rest.starts_with(p.as_str()))
}

/// A client for tools: TLS with rustls and ring against the public roots,
/// and, unless `allow_private`, the guarded resolver (`net_guard`).
pub fn client_builder(allow_private: bool) -> reqwest::ClientBuilder {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(std::time::Duration::from_millis(caxton_shards::limits::TOOL_CONNECT_TIMEOUT_MS))
        .no_proxy()
        .user_agent(concat!("caxton/", env!("CARGO_PKG_VERSION")));
    if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(GuardedResolver))
    }
}

impl HttpTool {
    pub fn new(url: &str, methods: Vec<String>, paths: Vec<String>, headers: &BTreeMap<String, String>, allow_private: bool) -> Result<HttpTool, String> {
        let base = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
        let mut fixed = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
            let mut value = HeaderValue::try_from(v.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
            value.set_sensitive(true);
            fixed.insert(name, value);
        }
        let paths: Arc<[String]> = paths.into();
        let (policy_base, policy_paths) = (base.clone(), paths.clone());
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= REDIRECTS_MAX
                || !allowed_path(&policy_base, &policy_paths, attempt.url())
                || !host_allowed(attempt.url(), allow_private)
            {
                attempt.stop() // rule 2: the 3xx is the result
            } else {
                attempt.follow()
            }
        });
        let client = client_builder(allow_private).redirect(redirect).build().map_err(|e| e.to_string())?;
        Ok(HttpTool { client, base, methods, paths, headers: fixed, allow_private })
    }

    /// Whether the tool's base URL answers at all (its health at start).
    pub fn describe(&self) -> String {
        format!("{} {}", self.methods.join(","), self.base)
    }

    /// Makes one call (rules 1 to 4).
    pub async fn call(&self, content: &[u8], meta: &CallMeta) -> Result<Vec<u8>, CallFailure> {
        let request: HttpRequest =
            serde_json::from_slice(content).map_err(|e| CallFailure::new(ToolFailure::Refused, format!("not an HTTP tool request: {e}")))?;
        let method = request.method.to_ascii_uppercase();
        if !self.methods.contains(&method) {
            return Err(CallFailure::new(ToolFailure::Refused, format!("method {method} is not allowed (allowed: {})", self.methods.join(", "))));
        }
        if !request.path.starts_with('/') || request.path.contains("..") || request.path.contains('\\') {
            return Err(CallFailure::new(ToolFailure::Refused, format!("path {:?} must start with / and hold no .. or \\", request.path)));
        }
        let joined = format!("{}{}", self.base.as_str().trim_end_matches('/'), request.path);
        let url = reqwest::Url::parse(&joined).map_err(|e| CallFailure::new(ToolFailure::Refused, format!("path {:?}: {e}", request.path)))?;
        if !allowed_path(&self.base, &self.paths, &url) {
            return Err(CallFailure::new(ToolFailure::Refused, format!("path {:?} is not under an allowed prefix ({})", request.path, self.paths.join(", "))));
        }
        if !host_allowed(&url, self.allow_private) {
            return Err(CallFailure::new(ToolFailure::Refused, "the tool's host is a private address".to_string()));
        }
        let body = match (request.body, request.body_base64) {
            (Some(_), Some(_)) => return Err(CallFailure::new(ToolFailure::Refused, "give body or body_base64, not both".into())),
            (Some(text), None) => Some(text.into_bytes()),
            (None, Some(b64)) => {
                Some(base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| CallFailure::new(ToolFailure::Refused, format!("body_base64: {e}")))?)
            }
            (None, None) => None,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &request.headers {
            let name = HeaderName::try_from(k.as_str()).map_err(|e| CallFailure::new(ToolFailure::Refused, format!("header {k:?}: {e}")))?;
            if RESERVED_HEADERS.contains(&name.as_str()) || self.headers.contains_key(&name) {
                return Err(CallFailure::new(ToolFailure::Refused, format!("header {k:?} is set by the node")));
            }
            let value = HeaderValue::try_from(v.as_str()).map_err(|e| CallFailure::new(ToolFailure::Refused, format!("header {k:?}: {e}")))?;
            headers.insert(name, value);
        }
        headers.extend(self.headers.clone());
        headers.insert("idempotency-key", HeaderValue::try_from(meta.idempotency_key.as_str()).expect("the key is ASCII"));
        if let Some(tp) = &meta.traceparent {
            headers.insert("traceparent", HeaderValue::try_from(tp.as_str()).expect("traceparent is ASCII"));
        }
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an allowed method");
        let mut builder = self.client.request(method, url).headers(headers);
        if let Some(body) = body {
            builder = builder.body(body);
        }
        let mut response = builder.send().await.map_err(request_failure)?;
        if response.content_length().is_some_and(|n| n > TOOL_RESPONSE_BYTES_MAX as u64) {
            return Err(CallFailure::new(
                ToolFailure::TooLarge,
                format!("the response has {} bytes, over {TOOL_RESPONSE_BYTES_MAX}", response.content_length().unwrap()),
            ));
        }
        let status = response.status().as_u16();
        let headers: BTreeMap<String, String> =
            response.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))).collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_failure)? {
            if body.len() + chunk.len() > TOOL_RESPONSE_BYTES_MAX {
                // Rule 3: the rest is never read; dropping the response
                // closes the connection.
                return Err(CallFailure::new(ToolFailure::TooLarge, format!("the response passed {TOOL_RESPONSE_BYTES_MAX} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let (body, body_base64) = match String::from_utf8(body) {
            Ok(text) => (Some(text), None),
            Err(e) => (None, Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()))),
        };
        Ok(serde_json::to_vec(&HttpResponse { status, headers, body, body_base64 }).expect("a response serializes"))
    }
}

fn request_failure(e: reqwest::Error) -> CallFailure {
    let why = error_chain(&e);
    if e.is_timeout() {
        CallFailure::new(ToolFailure::Timeout, why)
    } else if e.is_connect() {
        CallFailure::new(ToolFailure::ToolDown, why)
    } else {
        CallFailure::new(ToolFailure::ToolError, why)
    }
}

/// An error and its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_within_the_base_and_its_prefixes() {
        let base = reqwest::Url::parse("https://api.example/v2/").unwrap();
        let paths = vec!["/users".to_string()];
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(allowed_path(&base, &paths, &url("https://api.example/v2/users/7?x=1")));
        assert!(!allowed_path(&base, &paths, &url("https://api.example/v2/admin")));
        assert!(!allowed_path(&base, &paths, &url("https://api.example/users")));
        assert!(!allowed_path(&base, &paths, &url("https://evil.example/v2/users")));
        assert!(!allowed_path(&base, &paths, &url("http://api.example/v2/users")), "another scheme is another origin");
    }
}
