//! The gossip pump: drives the node's [`Membership`] (foca, sans-IO) over a
//! glommio UDP socket, and hands what it learns to the [`ClusterView`]
//! (pure logic, in `caxton_cluster::view`), the route cache and the shards.
//!
//! Rules:
//! 1. One thread, one glommio executor, unpinned: gossip is a few packets a
//!    second and must not take a core from the shards.
//! 2. What gossip learns goes three ways, in this order: the shared view
//!    (the REST API reads it), the `routes` cache in node.db, and every
//!    shard as `Command::Cluster` (a full control queue keeps the updates
//!    pending and retries every tick; past [`CLUSTER_UPDATES_MAX`] pending,
//!    only the latest per node and per name is kept, which ends in the same
//!    view).
//! 3. The order of updates, and what stale news is, are the view's rules
//!    (`caxton_cluster::view`).
//! 4. Until it has a member, the node re-announces itself to its `--join`
//!    seeds every [`GOSSIP_REJOIN_INTERVAL_MS`], so start-up order does not matter.
//! 5. A member gone for good is forgotten the same way whether an operator
//!    asks (`DELETE /v1/cluster/members/NODE`) or it has been down for
//!    `--cluster-reap-after`: out of the view, the registry, the route cache
//!    and the shards' routes, in that order (`caxton_cluster::view` rule 5).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use caxton_cluster::view::{self, ClusterUpdate, ClusterView, ForgetRefused};
use caxton_cluster::{Membership, NodeId, RouteItem};
use caxton_shards::limits::{
    CLUSTER_UPDATES_MAX, GOSSIP_ANSWER_MS, GOSSIP_COMMANDS_MAX, GOSSIP_PACKET_BYTES_MAX, GOSSIP_REJOIN_INTERVAL_MS, GOSSIP_STATE_REFRESH_MS, GOSSIP_TICK_MS,
    REGISTRY_RESYNC_INTERVAL_MS,
};
use caxton_shards::{Command, ShardSender};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use foca::{OwnedNotification, Timer};
use glommio::net::UdpSocket;
use glommio::{LocalExecutorBuilder, Placement};

use crate::catalog::RouteCache;
use crate::config::ClusterConfig;

enum GossipCommand {
    Publish {
        agent: String,
        present: bool,
    },
    /// The names this node hosts after a restart: publish them, and
    /// tombstone cached ones it no longer hosts.
    SyncOwn {
        agents: Vec<String>,
    },
    Leave {
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// Forget a member gone for good (rule 5); answers with the names it
    /// hosted.
    Forget {
        node: SocketAddr,
        done: tokio::sync::oneshot::Sender<Result<Vec<String>, ForgetRefused>>,
    },
}

/// The control plane's handle on the gossip thread.
pub struct Cluster {
    pub view: Arc<Mutex<ClusterView>>,
    /// The cluster's keys (shared with the shards; SIGHUP reloads them).
    pub keys: caxton_cluster::KeyRing,
    commands: Sender<GossipCommand>,
}

impl Cluster {
    /// Starts the gossip thread; returns once its socket is bound.
    pub fn start(config: ClusterConfig, api: SocketAddr, api_tls: bool, boot: u64, cache: RouteCache, shards: Vec<ShardSender>) -> Result<Cluster, String> {
        let me = NodeId { addr: config.listen, api, api_tls, boot: boot as u32 };
        let cached = cache.load().map_err(|e| format!("cannot read the route cache: {e}"))?;
        let view = Arc::new(Mutex::new(ClusterView::new(me.clone(), &cached)));
        let (tx, rx) = crossbeam_channel::bounded(GOSSIP_COMMANDS_MAX);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let shared = view.clone();
        let keys = config.keys.clone();
        LocalExecutorBuilder::new(Placement::Unbound)
            .name("gossip")
            .io_memory(caxton_shards::executor::GLOMMIO_IO_MEMORY_BYTES_MIN)
            .spawn(move || async move {
                let socket = match UdpSocket::bind(config.listen) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot bind gossip to udp {}: {e}", config.listen)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let seed = me.boot as u64 ^ SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
                let membership = Membership::new(me, &config.gossip, config.keys.clone(), seed, boot, cached.clone());
                let driver = Driver {
                    membership: RefCell::new(membership),
                    socket,
                    view: shared,
                    cache: RefCell::new(cache),
                    shards: shards.into_iter().map(|s| (s, Vec::new())).collect::<Vec<_>>().into(),
                    timers: RefCell::new(BTreeMap::new()),
                    timer_seq: Cell::new(0),
                    last_version: Cell::new(0),
                    leaving: Cell::new(false),
                    bad_key_log: RefCell::new(caxton_shards::throttle::Throttle::default()),
                    seeds: config.join,
                    started: Instant::now(),
                    reap_after_ms: config.reap_after.map(|d| d.as_millis() as u64),
                };
                let driver = Rc::new(driver);
                driver.startup(cached);
                driver.run(rx).await;
            })
            .map_err(|e| format!("cannot start the gossip thread: {e}"))?;
        ready_rx.recv().map_err(|_| "the gossip thread died while starting".to_string())??;
        Ok(Cluster { view, keys, commands: tx })
    }

    fn command(&self, c: GossipCommand) {
        if self.commands.try_send(c).is_err() {
            tracing::error!("the gossip thread's queue is full; a registry change is lost");
        }
    }

    /// Announces that this node now hosts (or no longer hosts) `agent`.
    pub fn publish(&self, agent: &str, present: bool) {
        self.command(GossipCommand::Publish { agent: agent.to_string(), present });
    }

    pub fn sync_own(&self, agents: Vec<String>) {
        self.command(GossipCommand::SyncOwn { agents });
    }

    /// Forgets `node` (rule 5): the names it hosted, or why it may not be
    /// forgotten (it is alive, or unknown). The outer `Err`: the gossip
    /// thread did not take or answer the request.
    pub async fn forget(&self, node: SocketAddr) -> Result<Result<Vec<String>, ForgetRefused>, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commands.try_send(GossipCommand::Forget { node, done: tx }).map_err(|_| "the gossip thread's queue is full; try again".to_string())?;
        match tokio::time::timeout(Duration::from_millis(GOSSIP_ANSWER_MS), rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err("the gossip thread did not answer".to_string()),
        }
    }

    /// Leaves the cluster gracefully: members drop this node at once.
    pub async fn leave(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.command(GossipCommand::Leave { done: tx });
        let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
    }
}

struct Driver {
    membership: RefCell<Membership>,
    socket: UdpSocket,
    view: Arc<Mutex<ClusterView>>,
    cache: RefCell<RouteCache>,
    /// Each shard, with the updates it has not taken yet (rule 2).
    shards: RefCell<Vec<(ShardSender, Vec<ClusterUpdate>)>>,
    timers: RefCell<BTreeMap<(Instant, u64), Timer<NodeId>>>,
    timer_seq: Cell<u64>,
    last_version: Cell<u64>,
    /// A graceful stop asked to leave: the cluster counting this node down
    /// is then what was asked for, not news.
    leaving: Cell<bool>,
    /// Packets sealed with a key this node lacks, logged once an interval.
    bad_key_log: RefCell<caxton_shards::throttle::Throttle>,
    seeds: Vec<SocketAddr>,
    /// The view's clock starts here (`now_ms`).
    started: Instant,
    /// `--cluster-reap-after`, if members are reaped (rule 5).
    reap_after_ms: Option<u64>,
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Forgets `node` (rule 5), for an operator or the reaper.
    fn forget(&self, node: SocketAddr, why: &str) -> Result<Vec<String>, ForgetRefused> {
        let (updates, hosted) = self.view.lock().unwrap().forget(node)?;
        let dropped = self.membership.borrow_mut().forget(node);
        if let Err(e) = self.cache.borrow_mut().forget_node(node) {
            tracing::error!(error = %e, %node, "cannot drop a forgotten node's routes from the route cache");
        }
        tracing::warn!(%node, why, names = hosted.len(), registry_items = dropped.len(), "member forgotten: its agents' names route nowhere until it (or a deploy elsewhere) names them again");
        self.to_shards(updates);
        Ok(hosted)
    }

    /// Forgets the members down for `--cluster-reap-after` (rule 5).
    fn reap(&self) {
        let Some(after_ms) = self.reap_after_ms else { return };
        let due = self.view.lock().unwrap().reapable(self.now_ms(), after_ms);
        for node in due {
            let _ = self.forget(node, "down for --cluster-reap-after");
        }
    }

    /// Tells the shards what the cache knew (view rule 2), and announces.
    fn startup(&self, cached: Vec<RouteItem>) {
        let me = self.membership.borrow().id().addr;
        self.to_shards(view::cached_updates(me, &cached));
        let mut m = self.membership.borrow_mut();
        for &seed in &self.seeds {
            m.join(seed);
        }
    }

    async fn run(self: Rc<Self>, commands: Receiver<GossipCommand>) {
        let receiver = self.clone();
        glommio::spawn_local(async move { receiver.receive().await }).detach();
        let mut last_rejoin = Instant::now();
        let started = Instant::now();
        // Alone with seeds to join: said every 30 s, so that a node started
        // with the wrong key or address does not sit in silence.
        let mut alone_log = caxton_shards::throttle::Throttle::every(Duration::from_secs(30));
        let mut last_refresh = Instant::now();
        let mut last_resync = Instant::now();
        loop {
            glommio::timer::sleep(Duration::from_millis(GOSSIP_TICK_MS)).await;
            let now = Instant::now();
            let due: Vec<Timer<NodeId>> = {
                let mut timers = self.timers.borrow_mut();
                let later = timers.split_off(&(now, u64::MAX));
                std::mem::replace(&mut *timers, later).into_values().collect()
            };
            for t in due {
                self.membership.borrow_mut().handle_timer(t);
            }
            let mut leaving = None;
            loop {
                match commands.try_recv() {
                    Ok(GossipCommand::Publish { agent, present }) => self.publish(agent, present),
                    Ok(GossipCommand::SyncOwn { agents }) => self.sync_own(agents),
                    Ok(GossipCommand::Forget { node, done }) => {
                        let _ = done.send(self.forget(node, "an operator asked"));
                    }
                    Ok(GossipCommand::Leave { done }) => {
                        self.leaving.set(true);
                        self.membership.borrow_mut().leave();
                        leaving = Some(done);
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if !self.seeds.is_empty()
                && self.membership.borrow().active_members() == 0
                && last_rejoin.elapsed() >= Duration::from_millis(GOSSIP_REJOIN_INTERVAL_MS)
            {
                last_rejoin = Instant::now();
                if started.elapsed() >= Duration::from_secs(5) && alone_log.allow().is_some() {
                    tracing::warn!(
                        join = ?self.seeds,
                        "no member of the cluster answers; joining again. Check that --cluster-key is the cluster's (a member refusing it logs the refused packets) and that --join names a reachable member"
                    );
                }
                self.membership.borrow_mut().rejoin(&self.seeds);
            }
            self.flush().await;
            self.retry_shards();
            if last_resync.elapsed() >= Duration::from_millis(REGISTRY_RESYNC_INTERVAL_MS) {
                last_resync = Instant::now();
                self.membership.borrow_mut().resync_one();
            }
            if last_refresh.elapsed() >= Duration::from_millis(GOSSIP_STATE_REFRESH_MS) {
                last_refresh = Instant::now();
                self.refresh_states();
                self.reap();
            }
            if let Some(done) = leaving {
                let _ = done.send(());
                tracing::info!("left the cluster");
                return;
            }
        }
    }

    async fn receive(self: Rc<Self>) {
        let mut buf = vec![0u8; 2 * GOSSIP_PACKET_BYTES_MAX];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "gossip receive failed");
                    glommio::timer::sleep(Duration::from_millis(GOSSIP_TICK_MS)).await;
                    continue;
                }
            };
            if n > GOSSIP_PACKET_BYTES_MAX {
                self.view.lock().unwrap().refused_oversized += 1;
                continue;
            }
            let result = self.membership.borrow_mut().handle_packet(&buf[..n]);
            match result {
                // A node with another --cluster-key forms a cluster of its
                // own, silently unless someone says so (issue 29).
                Err(caxton_cluster::PacketError::BadTag) => {
                    if let Some(suppressed) = self.bad_key_log.borrow_mut().allow() {
                        tracing::warn!(%from, suppressed, "gossip refused: sealed with a key this node does not hold (a node started with another --cluster-key, or one a rotation dropped)");
                    }
                }
                Err(e) => tracing::debug!(%from, ?e, "gossip packet refused"),
                Ok(()) => {}
            }
            self.flush().await;
        }
    }

    fn next_version(&self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        let version = now.max(self.last_version.get() + 1);
        self.last_version.set(version);
        version
    }

    fn publish(&self, agent: String, present: bool) {
        let node = self.membership.borrow().id().addr;
        let item = RouteItem { agent, node, version: self.next_version(), present };
        self.membership.borrow_mut().publish(item);
    }

    /// Republishes what this node hosts after a restart. A name keeps the
    /// version it was deployed with, so a redeploy elsewhere while this node
    /// was away (a newer version) still wins.
    fn sync_own(&self, agents: Vec<String>) {
        let me = self.membership.borrow().id().addr;
        let (stale, kept): (Vec<String>, Vec<RouteItem>) = {
            let view = self.view.lock().unwrap();
            let stale = view.routes.values().filter(|r| r.node == me && r.present && !agents.contains(&r.agent)).map(|r| r.agent.clone()).collect();
            let kept = agents.iter().filter_map(|a| view.routes.get(a).filter(|r| r.node == me && r.present).cloned()).collect();
            (stale, kept)
        };
        for agent in agents {
            match kept.iter().find(|r| r.agent == agent) {
                Some(item) => self.membership.borrow_mut().publish(item.clone()),
                None => self.publish(agent, true),
            }
        }
        for agent in stale {
            self.publish(agent, false);
        }
    }

    /// Moves everything the membership produced to its destinations.
    async fn flush(&self) {
        for step in self.membership.borrow_mut().take_key_steps() {
            match step {
                caxton_cluster::keyring::Step::Switched(id) => {
                    tracing::info!(key = %id, "cluster key rotation: every member holds the next key; sending with it")
                }
                caxton_cluster::keyring::Step::Reverted(id) => {
                    tracing::warn!(key = %id, "cluster key rotation: a member does not hold the next key; sending with the current one again")
                }
                caxton_cluster::keyring::Step::Dropped(id) => {
                    tracing::info!(key = %id, "cluster key rotation: every member sends with the next key; the old one is no longer accepted")
                }
            }
        }
        let out = self.membership.borrow_mut().take_output();
        {
            let mut timers = self.timers.borrow_mut();
            for (after, t) in out.timers {
                self.timer_seq.set(self.timer_seq.get() + 1);
                timers.insert((Instant::now() + after, self.timer_seq.get()), t);
            }
        }
        let (sends, notes, changes) = (out.sends, out.notifications, out.route_changes);
        for (to, packet) in sends {
            if let Err(e) = self.socket.send_to(&packet, to.addr).await {
                tracing::debug!(to = %to.addr, error = %e, "gossip send failed");
            }
        }
        if notes.is_empty() && changes.is_empty() {
            self.view.lock().unwrap().stats = self.membership.borrow().stats;
            return;
        }
        for n in &notes {
            match n {
                OwnedNotification::Defunct if self.leaving.get() => tracing::debug!("the cluster counts this node down: it is leaving"),
                OwnedNotification::Defunct => tracing::warn!("the cluster declared this node down; rejoining with a new identity"),
                OwnedNotification::MemberUp(id) | OwnedNotification::Rename(_, id) => tracing::info!(node = %id.addr, boot = id.boot, "member alive"),
                OwnedNotification::MemberDown(id) => tracing::info!(node = %id.addr, boot = id.boot, "member down"),
                other => tracing::debug!(?other, "membership"),
            }
        }
        if !changes.is_empty() {
            if let Err(e) = self.cache.borrow_mut().store(&changes) {
                tracing::error!(error = %e, "cannot write the route cache");
            }
        }
        let updates = {
            let mut view = self.view.lock().unwrap();
            let m = self.membership.borrow();
            let mut updates = view.apply_notifications(&notes, self.now_ms());
            updates.extend(view.refresh_states(m.members()));
            let (routes, moved_away) = view.apply_routes(changes);
            updates.extend(routes);
            for r in moved_away {
                tracing::warn!(agent = r.agent, node = %r.node, "agent redeployed on another node while this one was away; messages from other nodes now go there (undeploy the copy here)");
            }
            view.stats = m.stats;
            updates
        };
        self.to_shards(updates);
    }

    /// Suspects are not notified by foca: read them off its table.
    fn refresh_states(&self) {
        let updates = {
            let mut view = self.view.lock().unwrap();
            let m = self.membership.borrow();
            let updates = view.refresh_states(m.members());
            view.stats = m.stats;
            updates
        };
        for u in &updates {
            if let ClusterUpdate::Node { name, suspect, .. } = u {
                tracing::info!(node = %name, suspect, "member");
            }
        }
        self.to_shards(updates);
    }

    /// Queues updates for every shard, in order (rule 2).
    fn to_shards(&self, updates: Vec<ClusterUpdate>) {
        if updates.is_empty() {
            return;
        }
        for (_, pending) in self.shards.borrow_mut().iter_mut() {
            pending.extend(updates.iter().cloned());
            if pending.len() > CLUSTER_UPDATES_MAX {
                tracing::warn!(pending = pending.len(), "a shard is slow to take cluster updates; keeping only the latest of each");
                view::coalesce(pending);
            }
        }
        self.retry_shards();
    }

    fn retry_shards(&self) {
        for (shard, pending) in self.shards.borrow_mut().iter_mut() {
            if pending.is_empty() {
                continue;
            }
            let updates = std::mem::take(pending);
            if let Err(Command::Cluster { updates }) = shard.send(Command::Cluster { updates }) {
                *pending = updates;
            }
        }
    }
}
