//! Members of a test cluster on loopback addresses, and what tests read
//! off them.

use std::time::Duration;

use serde_json::Value;

use super::{eventually, free_cluster_port, Node};

/// A node and its cluster (gossip and link) address.
pub struct Member {
    pub node: Node,
    pub cluster: String,
}

/// Starts a 2-core node on `ip` with a cluster address on a free port,
/// keyed with `key`, joining `join` if given.
pub fn start_member(ip: &str, key: &str, join: Option<&str>, extra: &[&str]) -> Member {
    let cluster = format!("{ip}:{}", free_cluster_port(ip));
    let mut args = vec!["--listen", &cluster, "--cluster-key", key];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    args.extend_from_slice(extra);
    Member { node: Node::start_on(ip, 2, &args), cluster }
}

pub fn members(n: &Node) -> Vec<Value> {
    let (status, v) = n.get("/v1/cluster/members");
    assert_eq!(status, 200, "{v}");
    v["members"].as_array().cloned().unwrap_or_default()
}

pub fn alive(n: &Node) -> usize {
    members(n).iter().filter(|m| m["state"] == "alive").count()
}

/// State and boot of `node` as `seen_by` sees it (("absent", 0) if unknown).
pub fn state_and_boot(seen_by: &Node, node: &str) -> (String, u64) {
    members(seen_by)
        .iter()
        .find(|m| m["node"] == node)
        .map_or(("absent".into(), 0), |m| (m["state"].as_str().unwrap().to_string(), m["boot"].as_u64().unwrap()))
}

pub fn state_of(seen_by: &Node, node: &str) -> String {
    members(seen_by).iter().find(|m| m["node"] == node).map_or("absent".into(), |m| m["state"].as_str().unwrap().to_string())
}

/// Sum of every sample whose line starts with `prefix`.
pub fn metric(n: &Node, prefix: &str) -> f64 {
    n.metrics().lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Two members keyed with `key`, `127.0.0.1` and `127.0.0.2`, that see
/// each other alive.
pub fn pair(key: &str) -> (Member, Member) {
    let a = start_member("127.0.0.1", key, None, &[]);
    let b = start_member("127.0.0.2", key, Some(&a.cluster), &[]);
    for n in [&a.node, &b.node] {
        assert!(eventually(Duration::from_secs(30), || alive(n) == 2), "{:?}", members(n));
    }
    (a, b)
}

/// A TCP connection to `to` from the loopback address `from` (another
/// source than the nodes', as a stranger's would be).
pub fn connect_from(from: &str, to: &str) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into())?;
    let remote: std::net::SocketAddr = to.parse().unwrap();
    socket.connect_timeout(&remote.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}
