//! The CLI's client side: talks to a node's REST API.
//!
//! Exit codes scripts can rely on:
//! - 0: done;
//! - 1: the node refused the request (its error is printed);
//! - 2: bad usage (from the argument parser) or an unreadable file;
//! - 3: the node could not be reached;
//! - 4: no reply arrived within `--wait-reply`.

use std::time::Duration;

use caxton_shards::limits;

use serde_json::Value;

pub const EXIT_REFUSED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;
pub const EXIT_TIMEOUT: i32 = 4;

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// What to do when the answer is not HTTP because one side speaks TLS and
/// the other does not (issue 29: ureq's own words name a bad header).
fn tls_hint(base: &str, e: &ureq::Error) -> &'static str {
    let text = e.to_string().to_ascii_lowercase();
    match e.kind() {
        // A TLS server sends an alert (not a status line) or just closes.
        ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader | ureq::ErrorKind::Io if base.starts_with("http://") => {
            "\nhint: the node did not answer in HTTP; if its API has TLS (--tls-cert), use https://HOST:PORT and --ca FILE"
        }
        _ if base.starts_with("https://") && (text.contains("corrupt message") || text.contains("invalidcontenttype") || text.contains("record")) => {
            "\nhint: the node does not speak TLS on this port; use http://HOST:PORT (or give the node --tls-cert)"
        }
        _ => "",
    }
}

pub struct Failure {
    pub exit_code: i32,
    pub message: String,
}

impl Client {
    pub fn new(api: &str, token: Option<String>) -> Client {
        Client::with_tls(api, token, None)
    }

    /// A client of the node at `api` (`host:port`, `http://...` or
    /// `https://...`); with `tls` (the trust of `--ca`) it speaks HTTPS.
    pub fn with_tls(api: &str, token: Option<String>, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Client {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = if api.starts_with("http://") || api.starts_with("https://") { api.to_string() } else { format!("{scheme}://{api}") };
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_millis(limits::CLI_CONNECT_TIMEOUT_MS))
            .timeout(Duration::from_millis(limits::CLI_REQUEST_TIMEOUT_MS));
        if let Some(tls) = tls {
            agent = agent.tls_config(tls);
        }
        Client { base: base.trim_end_matches('/').to_string(), token, agent: agent.build() }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.set("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    fn finish(&self, result: Result<ureq::Response, ureq::Error>) -> Result<Value, Failure> {
        match result {
            Ok(resp) if resp.status() == 204 => Ok(Value::Null),
            Ok(resp) => resp.into_json().map_err(|e| Failure { exit_code: EXIT_REFUSED, message: format!("unreadable answer: {e}") }),
            Err(ureq::Error::Status(status, resp)) => {
                let body: Value = resp.into_json().unwrap_or(Value::Null);
                let message = body["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
                let exit_code = if status == 504 { EXIT_TIMEOUT } else { EXIT_REFUSED };
                Err(Failure { exit_code, message: format!("{message} (HTTP {status})") })
            }
            Err(e) => Err(Failure { exit_code: EXIT_UNREACHABLE, message: format!("cannot reach the node: {e}{}", tls_hint(&self.base, &e)) }),
        }
    }

    /// Deploys `module` as `name`; `instances` 0 deploys a keyed agent.
    /// `tools` is its grant.
    pub fn deploy(&self, name: &str, instances: u32, node: Option<&str>, module: &[u8], tools: &[String]) -> Result<Value, Failure> {
        let on = node.map_or(String::new(), |n| format!("&node={n}"));
        let how = if instances == 0 { "keyed=true".to_string() } else { format!("instances={instances}") };
        let grant = if tools.is_empty() { String::new() } else { format!("&tools={}", percent_encode(&tools.join(","))) };
        self.finish(self.request("PUT", &format!("/v1/agents/{name}?{how}{on}{grant}")).send_bytes(module))
    }

    /// The keys of keyed agent `name` that hold state.
    pub fn keys(&self, name: &str, prefix: &str, limit: usize) -> Result<Value, Failure> {
        self.finish(self.request("GET", &format!("/v1/agents/{name}/keys?prefix={}&limit={limit}", percent_encode(prefix))).call())
    }

    /// Deletes one key of keyed agent `name`.
    pub fn delete_key(&self, name: &str, key: &str) -> Result<Value, Failure> {
        self.finish(self.request("DELETE", &format!("/v1/agents/{name}/keys/{}", percent_encode(key))).call())
    }

    /// Upgrades an agent in place (`PUT ...?upgrade=true`).
    /// With `tools`, a new grant.
    pub fn upgrade(&self, name: &str, module: &[u8], tools: Option<&str>, force: bool) -> Result<Value, Failure> {
        let grant = tools.map_or(String::new(), |t| format!("&tools={}", percent_encode(t)));
        let force = if force { "&force=true" } else { "" };
        self.finish(self.request("PUT", &format!("/v1/agents/{name}?upgrade=true{grant}{force}")).send_bytes(module))
    }

    /// `rollback` or `restart` of an agent.
    pub fn agent_action(&self, name: &str, action: &str) -> Result<Value, Failure> {
        // A JSON body: the API takes no other POST (a browser's form cannot send it).
        self.finish(self.request("POST", &format!("/v1/agents/{name}/{action}")).send_json(serde_json::json!({})))
    }

    /// Any `GET` of the API, as JSON.
    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        self.finish(self.request("GET", path).call())
    }

    pub fn members(&self) -> Result<Value, Failure> {
        self.finish(self.request("GET", "/v1/cluster/members").call())
    }

    /// The same credentials and TLS trust, for another node's API (a
    /// member's `api` and `api_tls`, as `members` lists them).
    pub fn for_member(&self, api: &str, tls: bool) -> Client {
        let scheme = if tls { "https" } else { "http" };
        Client { base: format!("{scheme}://{api}"), token: self.token.clone(), agent: self.agent.clone() }
    }

    /// Where this client sends its requests.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Forgets a member gone for good, on this node (`view` rule 5).
    /// `None`: this node does not know it (404), so has nothing to forget.
    pub fn forget_member(&self, node: &str) -> Result<Option<Value>, Failure> {
        match self.request("DELETE", &format!("/v1/cluster/members/{}", percent_encode(node))).call() {
            Err(ureq::Error::Status(404, _)) => Ok(None),
            other => self.finish(other).map(Some),
        }
    }

    /// Forces this node's cluster key rotation (`keyring` rule 7).
    pub fn force_key_rotation(&self) -> Result<Value, Failure> {
        self.finish(self.request("POST", "/v1/cluster/keys/force").send_json(serde_json::json!({})))
    }

    pub fn list(&self) -> Result<Value, Failure> {
        self.finish(self.request("GET", "/v1/agents").call())
    }

    /// Every agent of the cluster, from this node's registry.
    pub fn list_cluster(&self) -> Result<Value, Failure> {
        self.finish(self.request("GET", "/v1/agents?cluster=true").call())
    }

    pub fn stop(&self, name: &str) -> Result<Value, Failure> {
        self.finish(self.request("DELETE", &format!("/v1/agents/{name}")).call())
    }

    /// The node's figures; with `agents`, per-agent ones too.
    pub fn stats(&self, agents: bool) -> Result<Value, Failure> {
        self.finish(self.request("GET", if agents { "/v1/stats?agents=1" } else { "/v1/stats" }).call())
    }

    pub fn agent(&self, name: &str) -> Result<Value, Failure> {
        self.finish(self.request("GET", &format!("/v1/agents/{name}")).call())
    }

    /// The last `lines` log lines of `name`; with `since_us`, only those
    /// after that time (microseconds since the epoch).
    pub fn agent_logs(&self, name: &str, lines: usize, since_us: Option<u64>) -> Result<Value, Failure> {
        let since = since_us.map_or(String::new(), |t| format!("&since_us={t}"));
        self.finish(self.request("GET", &format!("/v1/agents/{name}/logs?lines={lines}{since}")).call())
    }

    pub fn send(&self, body: Value, wait_reply_ms: Option<u64>) -> Result<Value, Failure> {
        let path = match wait_reply_ms {
            Some(ms) => format!("/v1/messages?reply_timeout_ms={ms}"),
            None => "/v1/messages".to_string(),
        };
        self.finish(self.request("POST", &path).send_json(body))
    }
}

/// Escapes every byte of `s` but `[A-Za-z0-9._~-]` as `%XX` (a key in a
/// path or a query).
pub fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-') { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// `ms` since the epoch as RFC 3339 in UTC, to the millisecond
/// (`2026-12-07T14:12:44.123Z`): what `caxton agent logs` prints.
pub fn utc_millis(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Days to a civil date (Howard Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn milliseconds_print_as_rfc3339_utc() {
        assert_eq!(super::utc_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc_millis(951_782_400_000), "2000-02-29T00:00:00.000Z", "a leap day of a century leap year");
        assert_eq!(super::utc_millis(1_796_653_964_123), "2026-12-07T14:32:44.123Z");
        assert_eq!(super::utc_millis(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
