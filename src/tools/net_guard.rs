//! Where an HTTP tool may connect: never to loopback, link-local, private,
//! shared, multicast or unspecified addresses unless its config says
//! `allow_private = true` (server-side request forgery: an agent must not
//! reach the node's own API, its metrics, or the cloud's metadata service
//! through a tool).
//!
//! Rules:
//! 1. Names are resolved by [`GuardedResolver`], which drops every address
//!    the tool may not reach; a name with none left fails to resolve, so
//!    the check and the connection use the same addresses (no rebinding
//!    window between a check and a second lookup).
//! 2. A URL whose host is an address literal skips the resolver, so it is
//!    checked itself ([`host_allowed`]), at the first request and at every
//!    redirect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// May a tool without `allow_private` reach `ip`?
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0xdb8) // documentation
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// Rule 2: is a URL's host, if an address literal, one the tool may reach?
/// Names pass here; the resolver checks them (rule 1).
pub fn host_allowed(url: &reqwest::Url, allow_private: bool) -> bool {
    if allow_private {
        return true;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => !d.eq_ignore_ascii_case("localhost") && !d.to_ascii_lowercase().ends_with(".localhost"),
        None => false,
    }
}

/// Rule 1: the system's resolver, with the addresses a tool may not reach
/// taken out.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if allowed.is_empty() {
                let e = std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{host} resolves only to addresses this tool may not reach (loopback, private or link-local); allow_private = true allows them"),
                );
                return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_refused_and_public_ones_pass() {
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(blocked.parse().unwrap()), "{blocked}");
        }
        for open in ["1.1.1.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(open.parse().unwrap()), "{open}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_names_left_to_the_resolver() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(!host_allowed(&url("http://127.0.0.1:8080/"), false));
        assert!(!host_allowed(&url("http://[::1]/"), false));
        assert!(!host_allowed(&url("http://localhost/"), false));
        assert!(!host_allowed(&url("http://2130706433/"), false), "a decimal IPv4 is parsed as 127.0.0.1");
        assert!(host_allowed(&url("http://127.0.0.1/"), true));
        assert!(host_allowed(&url("https://api.example/"), false));
    }
}
