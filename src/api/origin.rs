//! Keeping web pages away from the API: a page a user opens in a browser
//! must not be able to drive a node, even one on loopback.
//!
//! Rules:
//! 1. DNS rebinding: the `Host` header must name this API, by its address,
//!    by `localhost` when it listens on loopback, or by a name given with
//!    `--api-host`. A page on `evil.example` that rebinds its name to
//!    127.0.0.1 sends `Host: evil.example` and is refused (403).
//! 2. CSRF: a request carrying an `Origin` must come from this API's own
//!    origin (by rule 1's names); browsers send `Origin` on every
//!    cross-origin request and on every POST, PUT and DELETE.
//! 3. A `POST` must be `application/json`: a page can send a form or
//!    `text/plain` without asking first, never JSON. `PUT` and `DELETE` need
//!    a CORS preflight in any browser, which this API never grants (it
//!    sends no `Access-Control-Allow-*` header).
//!
//! Clients that are not browsers (the CLI, curl, the tests) send a right
//! `Host` and no `Origin`, so they pass untouched.

use std::net::{IpAddr, SocketAddr};

/// Who the API is, for rules 1 and 2.
#[derive(Debug, Clone)]
pub struct Identity {
    listen: SocketAddr,
    names: Vec<String>,
}

impl Identity {
    pub fn new(listen: SocketAddr, names: &[String]) -> Identity {
        Identity { listen, names: names.iter().map(|n| n.to_ascii_lowercase()).collect() }
    }

    /// Does `authority` (`host[:port]`, as in `Host`) name this API? (rule 1)
    pub fn is_me(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else { return false };
        let port_ok = match port {
            Some(p) => p == self.listen.port(),
            None => self.listen.port() == 80,
        };
        if !port_ok {
            return false;
        }
        let host = host.to_ascii_lowercase();
        if self.names.contains(&host) {
            return true;
        }
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            // Listening on every address: any of the host's addresses.
            Ok(ip) => ip == self.listen.ip() || self.listen.ip().is_unspecified(),
            Err(_) => host == "localhost" && (self.listen.ip().is_loopback() || self.listen.ip().is_unspecified()),
        }
    }

    /// Is `origin` (`scheme://host[:port]`) this API's own? (rule 2)
    pub fn is_my_origin(&self, origin: &str) -> bool {
        let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        authority.is_some_and(|a| !a.contains('/') && self.is_me(a))
    }
}

/// `host[:port]` into its parts; `None` if malformed.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ']) {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// Why a request is refused by rules 1 to 3, if it is: (code, message).
pub fn check(me: &Identity, method: &hyper::Method, headers: &hyper::HeaderMap) -> Result<(), (&'static str, String)> {
    let text = |name: hyper::header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(host) = text(hyper::header::HOST) {
        if !me.is_me(host) {
            return Err(("forbidden_host", format!("Host {host:?} does not name this API (give its names with --api-host)")));
        }
    }
    if let Some(origin) = text(hyper::header::ORIGIN) {
        if !me.is_my_origin(origin) {
            return Err(("forbidden_origin", format!("requests from the web origin {origin:?} are refused")));
        }
    }
    if *method == hyper::Method::POST {
        let json = text(hyper::header::CONTENT_TYPE).is_some_and(|t| t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(("unsupported_media_type", "a POST must be Content-Type: application/json".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(addr: &str) -> Identity {
        Identity::new(addr.parse().unwrap(), &["caxton.internal".to_string()])
    }

    #[test]
    fn the_host_must_name_this_api() {
        let m = me("127.0.0.1:7070");
        for ok in ["127.0.0.1:7070", "localhost:7070", "LOCALHOST:7070", "caxton.internal:7070"] {
            assert!(m.is_me(ok), "{ok}");
        }
        for bad in ["evil.example:7070", "127.0.0.1:7071", "127.0.0.2:7070", "localhost", "", "127.0.0.1:7070/x", "user@127.0.0.1:7070", "[::1]:7070"] {
            assert!(!m.is_me(bad), "{bad}");
        }
        let any = me("0.0.0.0:80");
        assert!(any.is_me("10.1.2.3") && any.is_me("[fe80::1]:80") && !any.is_me("evil.example"));
        let v6 = me("[::1]:7070");
        assert!(v6.is_me("[::1]:7070") && v6.is_me("localhost:7070"));
    }

    #[test]
    fn only_this_origin_and_json_posts_pass() {
        let m = me("127.0.0.1:7070");
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = hyper::HeaderMap::new();
            for (k, v) in pairs {
                h.insert(hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            }
            h
        };
        let post = hyper::Method::POST;
        assert!(check(&m, &post, &headers(&[("host", "127.0.0.1:7070"), ("content-type", "application/json; charset=utf-8")])).is_ok());
        assert!(check(&m, &hyper::Method::GET, &headers(&[("host", "localhost:7070"), ("origin", "http://localhost:7070")])).is_ok());
        assert_eq!(check(&m, &post, &headers(&[("host", "127.0.0.1:7070"), ("content-type", "text/plain")])).unwrap_err().0, "unsupported_media_type");
        assert_eq!(check(&m, &hyper::Method::GET, &headers(&[("host", "evil.example:7070")])).unwrap_err().0, "forbidden_host");
        assert_eq!(check(&m, &hyper::Method::DELETE, &headers(&[("origin", "http://evil.example")])).unwrap_err().0, "forbidden_origin");
        assert_eq!(check(&m, &hyper::Method::DELETE, &headers(&[("origin", "null")])).unwrap_err().0, "forbidden_origin");
    }
}
