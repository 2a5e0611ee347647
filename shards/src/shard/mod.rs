//! One shard: its agents, its run loop, and its parking.
//!
//! - [`run_loop`]: the loop and its parking, the only glommio code here;
//! - [`handler`]: one call into an agent, atomic (the handler protocol);
//! - [`stats`]: what the shard reports;
//! - [`supervision`]: restart policies: backoff and quarantine;
//! - [`lifecycle`]: upgrades, restarts, and what a stop fails back;
//! - [`keyed`]: keyed agents' activations: made, passivated, woken by timers;
//! - [`tool_calls`]: answers of tool calls taken, and calls replayed after a restart;
//! - [`tuning`]: its run-time knobs.
//!
//! The loop, each tick:
//! 1. drain lifecycle and control commands (deploy, deliver, stats);
//! 2. take messages from peer shards and other nodes into mailboxes;
//! 3. dispatch up to [`TICK_MESSAGES_MAX`] messages to agents;
//! 4. commit the tick's state, then release the tick's outbox (router rule 2).
//!
//! Rules:
//! 1. Nothing here awaits inside a tick; a tick is bounded by
//!    [`TICK_MESSAGES_MAX`] messages and one execution slice of time.
//! 2. A trap in an agent is an [`Outcome`](crate::agent::Outcome), never a panic: the instance is
//!    counted as crashed, its handler's writes and sends are rolled back,
//!    and it is recreated (`handler`).
//! 3. Every tick ends with a beat of the doorbell's pulse, so that the node
//!    can tell a busy shard from a stalled one.

mod handler;
mod keyed;
mod lifecycle;
mod run_loop;
mod stats;
mod supervision;
mod tool_calls;
mod tuning;

pub use supervision::{RestartPolicy, Standing};
pub use tuning::ShardTuning;

use supervision::Supervision;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::agent::host::InstanceAccount;
use crate::agent::{AgentInstance, CompiledAgent};
use crate::clock::now_ns;
use crate::command::{ClusterUpdate, Command, InstanceReport};
use crate::context::{self, IdGen, ShardCtx};
use crate::envelope::{Header, Message, Performative, RoutePath};
use crate::limits::{PEER_DRAIN_BATCH_MESSAGES, TICK_DRAIN_MAX, TIMERS_FIRED_PER_TICK_MAX};
use crate::link::{LinkSetup, RemoteTable};
use crate::mesh::{Doorbell, MeshEnds, MeshReceiver};
use crate::metrics::{P99Alert, ShardLatencies};
use crate::router::{ApiSink, DeadLetter, LocalId, RouteError, Router};
use crate::storage::{shard_db_path, DiskFloor, ShardStore, StorageConfig, StoredTimer};
use crate::timers::{Due, TIMER_SENDER};

/// Everything a shard needs, built on the node's thread and sent to the
/// shard's own thread.
pub struct ShardSetup {
    pub index: usize,
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub mesh: MeshEnds,
    pub control: Receiver<Command>,
    /// Deploys, undeploys and stops (executor's `ShardSender`).
    pub lifecycle: Receiver<Command>,
    pub bell: Arc<Doorbell>,
    pub api: ApiSink,
    pub boot_epoch: u64,
    pub tuning: ShardTuning,
    /// Links to other nodes, in a cluster.
    pub link: Option<LinkSetup>,
    /// The node's free-space floor for state writes.
    pub disk: Arc<DiskFloor>,
    /// Where sampled messages' spans go (`--otlp-endpoint`), if anywhere.
    pub spans: Option<crate::trace::SpanOutput>,
    /// The node restores its agents before it serves, and says so with
    /// [`Command::Serve`]; until then timers wait (`timers` rule 5).
    pub restoring: bool,
}

pub(super) struct LocalAgent {
    /// Its address: the agent's name, or a keyed activation's `TYPE/KEY`.
    name: Arc<str>,
    /// The agent it is an instance of: `name` itself (the same `Arc`), or
    /// a keyed activation's type.
    type_name: Arc<str>,
    instance: u32,
    module: CompiledAgent,
    runtime: Option<AgentInstance>,
    handled: u64,
    errors: u64,
    crashes: u64,
    timeouts: u64,
    /// Its handlers' processing latency (`caxton top`'s per-agent view).
    processing: crate::metrics::CompactLatency,
    /// `store.commits()` when this instance last wrote state: while it is
    /// unchanged, the instance has writes waiting for the tick's commit.
    wrote_before_commit: Option<u64>,
    /// Budgets and refusals that outlive one runtime (a trap recreates it).
    account: Arc<InstanceAccount>,
    /// Its crashes in a row and its standing (`supervision`).
    supervision: Supervision,
    /// Why it is quarantined, when it is.
    quarantined_because: Option<Arc<str>>,
}

impl LocalAgent {
    fn is_keyed(&self) -> bool {
        !Arc::ptr_eq(&self.name, &self.type_name)
    }
}

/// What the shard's handlers did, all instances together.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    /// Spans queued for export, and dropped at a full queue (`trace` rule 2).
    spans_queued: u64,
    spans_dropped: u64,
    handled: u64,
    errors: u64,
    /// Handler calls that trapped.
    crashes: u64,
    timeouts: u64,
    /// Instances that could not be made again when a message came for
    /// them (their policy counts each as a crash).
    restart_failures: u64,
    restarts: u64,
    quarantines: u64,
}

pub struct Shard {
    index: usize,
    ctx: Rc<RefCell<ShardCtx>>,
    agents: Vec<Option<LocalAgent>>,
    control: Receiver<Command>,
    lifecycle: Receiver<Command>,
    inbound: Vec<Option<MeshReceiver>>,
    /// Per peer: a message waiting for room in its mailbox.
    held: Vec<std::collections::VecDeque<Message>>,
    /// A batch taken from a peer's channel (`drain_inbound`), reused.
    drain_batch: Vec<Message>,
    bell: Arc<Doorbell>,
    spin_before_park: Duration,
    stage_timing: bool,
    spans: Option<crate::trace::SpanOutput>,
    spin_before_park_max: Duration,
    tick_time_budget: Duration,
    stop: Option<crate::command::Reply<()>>,
    totals: Totals,
    latencies: ShardLatencies,
    alert: P99Alert,
    link: Option<Rc<LinkSetup>>,
    /// The version 1 twin of a message for a version 1 agent, reused
    /// (handler rule 6).
    v1_envelope: Vec<u8>,
    /// Instances whose mailboxes are held while they back off
    /// (`supervision` rule 2); may hold ids no longer backing off.
    backing_off: Vec<crate::router::LocalId>,
    /// Timers fire only once the node serves, after every agent is
    /// restored (`timers` rule 5).
    serving: bool,
    /// Slots of `agents` that hold an instance (a count kept, so that a
    /// report need not walk them).
    live_instances: usize,
    /// Keyed types deployed here, by name (`keyed`).
    keyed_types: std::collections::HashMap<Arc<str>, keyed::KeyedType>,
    /// New activations being seated, reused (`keyed` rule 5).
    made_buf: Vec<LocalId>,
    /// This shard's share of `--keyed-active-max` (`keyed` rule 6).
    keyed_active_max: usize,
    keyed_idle: Duration,
    next_keyed_sweep_ns: u64,
    /// When the first timer row of a keyed address is due (`keyed` rule 8).
    next_keyed_timer_us: Option<u64>,
    /// Tool calls in flight at the last stop, to make again (`tool_calls`
    /// rule 2).
    tool_replays: std::collections::VecDeque<Message>,
}

impl Shard {
    /// Opens the shard's database and installs its context on this thread.
    pub fn open(setup: ShardSetup) -> Result<Shard, String> {
        let path = shard_db_path(&setup.data_dir, setup.index);
        let store = ShardStore::open(&path, &setup.storage).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let limits = setup.tuning.router_limits(setup.mesh.to.len());
        let remote = match &setup.link {
            Some(link) => RemoteTable::new(&link.self_name, setup.tuning.link_limits(setup.mesh.to.len(), link.pool_connections)).with_pending(link.pending),
            None => RemoteTable::standalone(),
        };
        let shards = setup.mesh.to.len();
        let (mut router, inbound) = Router::new(setup.index, setup.mesh, setup.api, limits, remote);
        router.keyed.set_live_max(setup.tuning.keyed_live_max_per_shard(shards));
        let ids = IdGen::new(setup.boot_epoch, setup.index as u8);
        let ctx = Rc::new(RefCell::new(ShardCtx::new(router, store, ids, setup.disk)));
        context::install(ctx.clone());
        let link = setup.link.map(Rc::new);
        if let Some(link) = &link {
            crate::link::listener::start_acceptor(ctx.clone(), link.clone(), setup.bell.clone())?;
        }
        let peers = inbound.len();
        Ok(Shard {
            index: setup.index,
            ctx,
            agents: Vec::new(),
            control: setup.control,
            lifecycle: setup.lifecycle,
            inbound,
            held: (0..peers).map(|_| std::collections::VecDeque::with_capacity(PEER_DRAIN_BATCH_MESSAGES)).collect(),
            drain_batch: Vec::with_capacity(PEER_DRAIN_BATCH_MESSAGES),
            bell: setup.bell,
            spin_before_park: setup.tuning.spin_before_park,
            stage_timing: setup.tuning.stage_timing,
            spans: setup.spans,
            spin_before_park_max: setup.tuning.spin_before_park_max.max(setup.tuning.spin_before_park),
            tick_time_budget: setup.tuning.tick_time_budget,
            stop: None,
            totals: Totals::default(),
            latencies: ShardLatencies::default(),
            alert: P99Alert::new(now_ns(), setup.tuning.alert_window_ms),
            link,
            v1_envelope: Vec::new(),
            backing_off: Vec::new(),
            serving: !setup.restoring,
            live_instances: 0,
            keyed_types: Default::default(),
            made_buf: Vec::new(),
            keyed_active_max: setup.tuning.keyed_active_max_per_shard(peers),
            keyed_idle: setup.tuning.keyed_idle,
            next_keyed_sweep_ns: 0,
            next_keyed_timer_us: None,
            tool_replays: Default::default(),
        })
    }

    /// One pass of the loop (module doc, steps 1 to 4). Returns the work done.
    pub fn tick(&mut self) -> usize {
        let mut work = self.drain_control();
        work += self.drain_inbound();
        work += self.wake_keys_with_due_timers();
        work += self.fire_timers();
        work += self.end_backoffs();
        work += self.dispatch();
        work += self.send_notices();
        if !self.tool_replays.is_empty() {
            work += self.replay_tool_calls();
        }
        work += self.end_tick();
        if let Some(link) = &self.link {
            if !self.ctx.borrow().router.remote.wanted.is_empty() {
                crate::link::writer::open_wanted(&self.ctx, link);
            }
        }
        work
    }

    fn end_tick(&mut self) -> usize {
        let now = now_ns();
        self.bell.beat(now);
        if let Some((routing, processing)) = self.alert.check(now) {
            if let Some(ns) = routing {
                tracing::warn!(
                    shard = self.index,
                    routing_p99_us = ns / 1000,
                    target_us = crate::metrics::ROUTING_P99_TARGET_NS / 1000,
                    "routing p99 over its ADR-0017 target in the last window"
                );
            }
            if let Some(ns) = processing {
                tracing::warn!(
                    shard = self.index,
                    processing_p99_us = ns / 1000,
                    target_us = crate::metrics::PROCESSING_P99_TARGET_NS / 1000,
                    "processing p99 over its ADR-0017 target in the last window"
                );
            }
        }
        let mut ctx = self.ctx.borrow_mut();
        assert!(!ctx.store.in_handler(), "a tick ends between calls");
        if let Err(e) = ctx.store.commit() {
            // The tick's effects could not be made durable: its sends must not
            // escape either. They are counted as dead letters.
            tracing::error!(shard = self.index, error = %e, "state commit failed; the tick's sends are dropped");
            let _ = ctx.store.rollback();
            let mark = 0;
            let lost = ctx.router.take_staged_from(mark);
            for m in &lost {
                ctx.router.dead_letter(DeadLetter::CrashedHandler, m);
            }
            drop(ctx);
            self.reload_timers();
            ctx = self.ctx.borrow_mut();
        }
        assert!(!ctx.store.dirty(), "committed or rolled back");
        let moved = ctx.router.flush();
        assert_eq!(ctx.router.staged_mark(), 0, "handler rule 3: the commit releases every held send");
        let keyed = ctx.router.keyed.live() > 0;
        drop(ctx);
        if keyed {
            self.enforce_keyed_cap();
            self.sweep_idle_activations(now);
        }
        moved
    }

    /// Fires the timers due (`timers` rule 3): each becomes an `inform`
    /// from `@timer` in its instance's mailbox, and its row goes when that
    /// is handled. Not before the node serves (`timers` rule 5).
    fn fire_timers(&mut self) -> usize {
        if !self.serving {
            return 0;
        }
        let mut ctx = self.ctx.borrow_mut();
        let Some(next) = ctx.timers.next_due_us() else { return 0 };
        let now = crate::clock::unix_micros();
        if next > now {
            return 0;
        }
        let mut fired = 0;
        while fired < TIMERS_FIRED_PER_TICK_MAX {
            let Some((due, owner)) = ctx.timers.pop_due(now) else { break };
            let row = match ctx.store.timer_get(due.id) {
                Ok(row) => row,
                Err(e) => {
                    tracing::error!(shard = self.index, error = %e, "cannot read a timer; retrying");
                    ctx.timers.insert(due, owner);
                    break;
                }
            };
            // The queue mirrors the rows (rule 2); a row gone or changed is
            // only possible after a failed commit, and is skipped.
            let Some(StoredTimer { agent, instance, due_us: at_us, content }) = row.filter(|r| r.due_us == due.at_us) else { continue };
            let Some(local) = ctx.router.local_instance(&agent, instance).filter(|&l| l == owner) else { continue };
            let header = Header { performative: Performative::Inform.code(), message_id: ctx.ids.next_id(), in_reply_to: due.id as u64, ..Header::default() };
            let message = match Message::encode(&header, TIMER_SENDER.as_bytes(), agent.as_bytes(), &content) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(shard = self.index, agent, error = %e, "a stored timer is not a message; dropped");
                    let _ = ctx.store.timer_fired(due.id);
                    continue;
                }
            };
            match ctx.router.accept_at(local, message) {
                // Its row stays until the message is handled (rule 3).
                Ok(()) => fired += 1,
                Err(_) => {
                    ctx.timers.insert(Due { at_us, id: due.id }, owner); // mailbox full: next tick
                    break;
                }
            }
        }
        fired
    }

    /// Puts the committed timers of instance `id` (agent `name`, instance
    /// `instance`) in the queue (`timers` rule 2).
    fn queue_timers_of(&mut self, id: LocalId, name: &str, instance: u32) -> Result<(), String> {
        let mut ctx = self.ctx.borrow_mut();
        let pending = ctx.store.timers_of(name, instance).map_err(|e| format!("cannot read the timers of {name}[{instance}]: {e}"))?;
        for (at_us, timer) in pending {
            ctx.timers.insert(Due { at_us, id: timer }, id);
        }
        Ok(())
    }

    /// After a failed commit the rows are what the database says: the
    /// queue is read again from it (`timers` rule 2).
    fn reload_timers(&mut self) {
        self.ctx.borrow_mut().timers.clear();
        let owned: Vec<(LocalId, Arc<str>, u32)> =
            self.agents.iter().enumerate().filter_map(|(id, a)| a.as_ref().map(|a| (id as LocalId, a.name.clone(), a.instance))).collect();
        for (id, name, instance) in owned {
            if let Err(e) = self.queue_timers_of(id, &name, instance) {
                tracing::error!(shard = self.index, error = %e, "timers not reloaded after a failed commit; they fire after a restart");
            }
        }
    }

    /// How long until the next timer is due, if one is pending.
    pub(super) fn next_timer_in(&self) -> Option<Duration> {
        let at = self.ctx.borrow().timers.next_due_us()?;
        Some(Duration::from_micros(at.saturating_sub(crate::clock::unix_micros())))
    }

    /// Sends the failure notices waiting (`router::notices` rule 1), each
    /// with an id of this shard's.
    fn send_notices(&mut self) -> usize {
        let mut ctx = self.ctx.borrow_mut();
        let mut sent = 0;
        while sent < TICK_DRAIN_MAX {
            let Some((reason, mut notice)) = ctx.router.notices.pop() else { break };
            let id = ctx.ids.next_id();
            notice.set_message_id(id);
            match ctx.router.forward(notice, true) {
                Ok(()) => {
                    ctx.router.notices.sent(reason);
                    sent += 1;
                }
                Err((RouteError::Busy, notice)) => {
                    ctx.router.notices.unpop(reason, notice);
                    break;
                }
                Err(_) => ctx.router.notices.undeliverable(),
            }
        }
        sent
    }

    fn drain_control(&mut self) -> usize {
        let mut n = 0;
        // Lifecycle first: few, and the control plane waits on them.
        while n < TICK_DRAIN_MAX && self.stop.is_none() {
            let Ok(command) = self.lifecycle.try_recv() else { break };
            n += 1;
            self.run_command(command);
        }
        while n < TICK_DRAIN_MAX && self.stop.is_none() {
            let Ok(command) = self.control.try_recv() else { break };
            n += 1;
            self.run_command(command);
        }
        n
    }

    fn run_command(&mut self, command: Command) {
        match command {
            Command::Deploy { name, module, instances: 0, restore: _, policy, reply } => reply(self.deploy_keyed(name, module, policy).map(|()| Vec::new())),
            Command::Deploy { name, module, instances, restore, policy, reply } => reply(self.deploy(name, module, instances, restore, policy)),
            Command::DeleteKey { address, reply } => reply(self.delete_key(&address)),
            Command::KeyedStats { name, reply } => reply(self.ctx.borrow().router.keyed.counts(&name)),
            Command::UpgradePrepare { name, module, reply } => reply(self.upgrade_prepare(&name, &module)),
            Command::UpgradeCommit { name, module, reply } => {
                self.end_tick(); // what the old version staged goes first
                reply(self.upgrade_commit(&name, module))
            }
            Command::Restart { name, reply } => reply(self.restart(&name)),
            Command::Pending { reply } => reply(self.pending()),
            Command::Undeploy { name, reply } => {
                self.end_tick(); // nothing staged may target what goes away
                self.undeploy(&name);
                reply(())
            }
            Command::Deliver { mut message, reply } => {
                message.set_path(RoutePath::Api);
                let accepted = self.ctx.borrow_mut().router.forward(message, true);
                reply(accepted.map_err(|(e, _)| e))
            }
            Command::Cluster { updates } => self.apply_cluster(updates),
            Command::Inject { messages, reply } => {
                let mut ctx = self.ctx.borrow_mut();
                let mut refused = Vec::new();
                for mut message in messages {
                    message.set_path(RoutePath::Api);
                    if let Err(e) = ctx.router.forward(message, true) {
                        refused.push(e);
                    }
                }
                reply(refused)
            }
            Command::AgentStats { name, reply } => reply(self.agent_stats(Some(&name), usize::MAX)),
            Command::ShardStats { instances_max, reply } => reply(self.shard_stats(instances_max)),
            Command::AgentLogs { name, lines, reply } => reply(self.ctx.borrow().recent_logs.of(&name, lines)),
            Command::Stop { reply } => self.stop = Some(reply),
            Command::Serve { reply } => {
                self.serving = true;
                self.load_tool_replays();
                reply(())
            }
            Command::Grant { name, tools, reply } => {
                self.ctx.borrow_mut().grants.set(name, tools);
                reply(())
            }
        }
    }

    fn drain_inbound(&mut self) -> usize {
        crate::stages::time(crate::stages::Stage::Receive, || self.drain_inbound_untimed())
    }

    fn drain_inbound_untimed(&mut self) -> usize {
        let mut n = 0;
        let mut ctx = self.ctx.borrow_mut();
        let mut batch = std::mem::take(&mut self.drain_batch);
        for p in 0..self.inbound.len() {
            // Keep this peer's order: while its oldest waits, nothing overtakes it.
            while let Some(m) = self.held[p].pop_front() {
                match ctx.router.accept(m) {
                    Ok(()) => n += 1,
                    Err((RouteError::Busy, m)) => {
                        self.held[p].push_front(m);
                        break;
                    }
                    Err((_, m)) => ctx.router.dead_letter(DeadLetter::UnknownReceiver, &m),
                }
            }
            let Some(rx) = &mut self.inbound[p] else { continue };
            let mut drained = 0;
            while self.held[p].is_empty() && drained < TICK_DRAIN_MAX {
                // Take a batch, then touch it: each message's first read on
                // this core misses the cache, and the prefetches overlap them.
                debug_assert!(batch.is_empty());
                while batch.len() < PEER_DRAIN_BATCH_MESSAGES {
                    let Some(m) = rx.try_recv() else { break };
                    prefetch(m.as_bytes());
                    batch.push(m);
                }
                if batch.is_empty() {
                    break;
                }
                drained += batch.len();
                ctx.router.counters.received_remote += batch.len() as u64;
                n += batch.len();
                for mut m in batch.drain(..) {
                    // A message that came from another node keeps that
                    // path: its routing is timed from its arrival.
                    if m.path() == RoutePath::Local {
                        m.set_path(RoutePath::Remote);
                    }
                    if !self.held[p].is_empty() {
                        self.held[p].push_back(m);
                        continue;
                    }
                    match ctx.router.accept(m) {
                        Ok(()) => {}
                        Err((RouteError::Busy, m)) => self.held[p].push_back(m),
                        Err((_, m)) => ctx.router.dead_letter(DeadLetter::UnknownReceiver, &m),
                    }
                }
            }
            assert!(self.held[p].len() <= PEER_DRAIN_BATCH_MESSAGES, "at most one batch waits");
            // Mesh rule 4: tell the sender what left its channel; what waits
            // here still counts as in flight.
            rx.publish_holding(self.held[p].iter().map(|m| m.len() as u64).sum());
        }
        self.drain_batch = batch; // keep the allocation
                                  // Arrivals from other nodes: a message to an instance of another
                                  // shard goes on through the mesh, never to a third node.
        for _ in 0..TICK_DRAIN_MAX {
            let Some(m) = ctx.router.remote.pop_inbound() else { break };
            match ctx.router.forward(m, false) {
                Ok(()) => {
                    ctx.router.counters.received_node += 1;
                    n += 1;
                }
                Err((RouteError::Busy, m)) => {
                    ctx.router.remote.unpop_inbound(m);
                    break;
                }
                Err((_, m)) => {
                    ctx.router.counters.received_node += 1;
                    ctx.router.dead_letter(DeadLetter::UnknownReceiver, &m);
                }
            }
        }
        // Messages a link gave up on (link rule 3): counted here, where the
        // router is (the link tasks reach only its table).
        for m in ctx.router.remote.take_given_up() {
            ctx.router.dead_letter(DeadLetter::LinkLost, &m);
        }
        ctx.router.remote.wake_readers();
        n
    }

    fn apply_cluster(&mut self, updates: Vec<ClusterUpdate>) {
        let mut ctx = self.ctx.borrow_mut();
        for update in updates {
            match update {
                ClusterUpdate::Node { name, addr, alive, suspect } => {
                    let lost = ctx.router.remote.set_node(&name, addr, alive, suspect);
                    if !lost.is_empty() {
                        tracing::warn!(shard = self.index, node = %name, lost = lost.len(), "node down: its queued messages are dead letters");
                    }
                    for m in &lost {
                        ctx.router.dead_letter(DeadLetter::NodeDown, m);
                    }
                }
                ClusterUpdate::Route { agent, node } => ctx.router.set_route(&agent, node.as_deref()),
            }
        }
    }

    fn deploy(&mut self, name: Arc<str>, module: CompiledAgent, instances: u32, restore: bool, policy: RestartPolicy) -> Result<Vec<InstanceReport>, String> {
        let mark = self.ctx.borrow().router.staged_mark();
        let made = self.ctx.borrow_mut().router.add_agent(&name, instances)?;
        let mut reports = Vec::with_capacity(made.len());
        for (instance, id) in made {
            let started = Instant::now();
            let slot = id as usize;
            if self.agents.len() <= slot {
                self.agents.resize_with(slot + 1, || None);
            }
            assert!(self.agents[slot].is_none(), "the router gives a free slot");
            self.live_instances += 1;
            self.agents[slot] = Some(LocalAgent::new(name.clone(), name.clone(), instance, module.clone(), policy));
            if let Err(e) = self.start_instance(id) {
                if !restore {
                    self.ctx.borrow_mut().router.rollback_to(mark);
                    self.undeploy(&name);
                    return Err(e);
                }
                // Restored after a restart: it was deployed once, so the node
                // keeps it, quarantined with the reason, and serves the rest.
                tracing::error!(shard = self.index, agent = %name, instance, error = %e, "a restored instance cannot start: quarantined until `caxton agent restart` or an upgrade");
                self.quarantine(id, e);
            }
            // Timers rule 2: what was pending before a restart is queued again.
            self.queue_timers_of(id, &name, instance)?;
            reports.push(InstanceReport { instance, shard: self.index, startup_us: started.elapsed().as_micros() as u64 });
        }
        Ok(reports)
    }

    fn undeploy(&mut self, name: &str) {
        if self.keyed_types.remove(name).is_some() {
            if let Err(e) = self.ctx.borrow_mut().store.delete_keyed_type(name) {
                tracing::error!(shard = self.index, agent = name, error = %e, "deleting an undeployed keyed agent's state failed");
            }
        }
        let mut ctx = self.ctx.borrow_mut();
        ctx.grants.remove(name);
        for id in ctx.router.remove_agent(name) {
            if self.agents[id as usize].take().is_some() {
                self.live_instances -= 1;
            }
            ctx.timers.remove_owner(id);
        }
        if let Err(e) = ctx.store.delete_agent(name) {
            tracing::error!(shard = self.index, agent = name, error = %e, "deleting an undeployed agent's state failed");
        }
    }
}

/// Cache lines of a message [`prefetch`] asks for: its header, names and
/// the start of its content (what `accept` and the guest call read first).
const PREFETCH_LINES: usize = 3;

/// Asks the CPU to bring the start of `bytes` into the cache (a hint: it
/// changes no result).
#[inline]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..bytes.len().min(PREFETCH_LINES * 64)).step_by(64) {
        // SAFETY: PREFETCHT0 takes any address and never faults; this one
        // is inside a live slice (`line < bytes.len()`).
        unsafe {
            core::arch::x86_64::_mm_prefetch(bytes.as_ptr().add(line) as *const i8, core::arch::x86_64::_MM_HINT_T0);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}
