//! The cluster section of the settings: `--listen`, `--join`, the cluster
//! key and the gossip and link knobs, resolved into a [`ClusterConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use caxton_shards::limits;
use caxton_shards::link::LinkSettings;

use super::ServeArgs;

/// How a node takes part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub listen: SocketAddr,
    pub join: Vec<SocketAddr>,
    /// The cluster's keys, shared by the gossip thread and the shards.
    pub keys: caxton_cluster::KeyRing,
    pub gossip: caxton_cluster::GossipSettings,
    pub links: LinkSettings,
    /// How long a down member stays listed (`--cluster-reap-after`);
    /// `None`: for as long as the node runs.
    pub reap_after: Option<Duration>,
}

impl ServeArgs {
    /// The cluster settings, if `--listen` is set (flags win over the file).
    pub(super) fn cluster(&self, file: &ServeArgs, key: Option<&str>, next: Option<&str>) -> Result<Option<ClusterConfig>, String> {
        let Some(listen) = self.listen.or(file.listen) else {
            if !self.join.is_empty() || !file.join.is_empty() {
                return Err("--join needs --listen: the address this node gossips on".into());
            }
            return Ok(None);
        };
        if listen.port() == 0 || listen.ip().is_unspecified() {
            return Err(format!("--listen {listen}: give the address other nodes reach this one at (not 0.0.0.0 or port 0)"));
        }
        let key = key.ok_or("a cluster needs a shared secret: --cluster-key-file PATH, CAXTON_CLUSTER_KEY or the systemd credential cluster-key")?;
        let keys = caxton_cluster::KeyRing::new(key.as_bytes(), next.map(str::as_bytes)).map_err(|e| format!("--cluster-key: {e}"))?;
        let join = if self.join.is_empty() { &file.join } else { &self.join };
        let mut seeds = Vec::new();
        for j in join.iter().map(|j| j.trim()).filter(|j| !j.is_empty()) {
            use std::net::ToSocketAddrs;
            let addr = j.to_socket_addrs().map_err(|e| format!("--join {j}: {e}"))?.next().ok_or(format!("--join {j}: no address"))?;
            seeds.push(addr);
        }
        let gossip = caxton_cluster::GossipSettings {
            interval_ms: self.gossip_interval_ms.or(file.gossip_interval_ms).unwrap_or(limits::GOSSIP_INTERVAL_MS).max(1),
            fanout: self.gossip_fanout.or(file.gossip_fanout).unwrap_or(limits::GOSSIP_FANOUT).max(1),
            packet_bytes_max: limits::GOSSIP_PACKET_BYTES_MAX,
            cluster_size_hint: limits::CLUSTER_NODES_HINT,
            periodic_gossip: true,
        };
        Ok(Some(ClusterConfig {
            listen,
            join: seeds,
            keys,
            gossip,
            links: LinkSettings {
                pool_size: self.connection_pool_size.or(file.connection_pool_size).unwrap_or(limits::NODE_POOL_CONNECTIONS_MAX).max(1),
                connections_per_node: self.max_connections_per_node.or(file.max_connections_per_node).unwrap_or(limits::NODE_LINK_CONNECTIONS_MAX).max(1),
                idle_timeout: Duration::from_millis(
                    self.idle_connection_timeout_ms.or(file.idle_connection_timeout_ms).unwrap_or(limits::LINK_IDLE_TIMEOUT_MS).max(1),
                ),
                handshake_timeout: Duration::from_millis(
                    self.link_handshake_timeout_ms.or(file.link_handshake_timeout_ms).unwrap_or(limits::LINK_HANDSHAKE_TIMEOUT_MS).max(1),
                ),
                pending_handshakes: self.max_pending_handshakes.or(file.max_pending_handshakes).unwrap_or(limits::LINK_PENDING_HANDSHAKES_MAX).max(1),
            },
            reap_after: Some(self.cluster_reap_after.or(file.cluster_reap_after).unwrap_or(Duration::from_millis(limits::CLUSTER_MEMBER_REAP_MS)))
                .filter(|d| !d.is_zero()),
        }))
    }
}
