//! A node's identity in the cluster: its cluster address (UDP gossip and TCP
//! links share the port), its API address and whether it speaks TLS, and its
//! boot number.
//!
//! A node that restarts comes back with a higher `boot` (the catalog counts
//! starts), so the cluster tells the new process from the dead one; foca's
//! `renew` bumps it too when the cluster declared this process down while it
//! still ran.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct NodeId {
    /// Gossip (UDP) and link (TCP) address; also the node's name.
    pub addr: SocketAddr,
    /// The node's REST API, for requests forwarded to it (`--node`).
    pub api: SocketAddr,
    /// Whether that API speaks HTTPS: a forwarded request, which carries
    /// the caller's token, goes over TLS to a member that has it.
    pub api_tls: bool,
    pub boot: u32,
}

impl NodeId {
    /// The identity to announce to when only the address is known (`--join`):
    /// foca accepts an announce addressed to any identity with its address.
    pub fn seed(addr: SocketAddr) -> NodeId {
        NodeId { addr, api: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0), api_tls: false, boot: 0 }
    }

    /// The node's name, as operators and the registry see it.
    pub fn name(&self) -> String {
        self.addr.to_string()
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeId { boot: self.boot.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.boot > adversary.boot
    }
}

/// A stable 64-bit tag of a node name (FNV-1a), used in node-qualified
/// runtime names (`@node/<tag>/api/7`) that must fit the name alphabet.
pub fn node_tag(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn renewal_wins_the_address() {
        let a = NodeId { addr: "127.0.0.1:7000".parse().unwrap(), api: "127.0.0.1:8000".parse().unwrap(), api_tls: true, boot: 3 };
        let b = a.renew().unwrap();
        assert_eq!(b.boot, 4);
        assert_eq!(a.addr(), b.addr());
        assert!(b.win_addr_conflict(&a) && !a.win_addr_conflict(&b));
        assert_eq!(NodeId::seed(a.addr).addr(), a.addr());
        assert_ne!(node_tag("127.0.0.1:7000"), node_tag("127.0.0.2:7000"));
    }
}
