//! One shard: its agents, its run loop, and its parking.
//!
//! The loop, each tick:
//! 1. drain control commands (deploy, deliver, stats);
//! 2. take messages from peer shards into mailboxes;
//! 3. dispatch up to [`TICK_MESSAGES_MAX`] messages to agents;
//! 4. commit the tick's state, then release the tick's outbox (router rule 2).
//!
//! Idle, it spins for a while, then parks on its doorbell (mesh rules 2 and
//! 3). The spin adapts, between `spin_before_park` and `spin_before_park_max`:
//! a shard woken soon after it parked doubles its spin (traffic is steady,
//! and each wake-up costs tens of microseconds of latency); one that stayed
//! parked long halves it (the node is idle, and spinning costs a core). A trap in an agent is an [`Outcome`], never a panic:
//! the instance is counted as crashed, its handler's writes and sends are
//! rolled back, and it is recreated.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use futures_lite::AsyncReadExt;
use crate::agent::CompiledAgent;

use crate::agent::host::InstanceAccount;
use crate::context::{self, IdGen, ShardCtx};
use crate::agent::{AgentInstance, Outcome};
use crate::command::{ClusterUpdate, Command, InstanceReport, InstanceStats, ShardStats};
use crate::link::table::LinkLimits;
use crate::link::{LinkSetup, RemoteTable};
use crate::clock::now_ns;
use crate::envelope::{Message, RoutePath};
use crate::metrics::{P99Alert, ShardLatencies};
use crate::limits::{
    MessageBudget, EXECUTION_TIME_SLICE_MS, INSTANCE_BURST_MESSAGES_MAX, LINK_INBOUND_MESSAGES_MAX, LINK_POLL_INTERVAL_US, MAILBOX_BYTES_MAX, MAILBOX_MESSAGES_MAX, MESSAGE_BUFFER_BYTES, NODE_IN_FLIGHT_MESSAGES_MAX,
    NODE_OUTBOX_MESSAGES_MAX, NODE_QUEUED_MESSAGES_MAX, SPIN_BEFORE_PARK_MAX_US, SPIN_BEFORE_PARK_US, TICK_DRAIN_MAX, TICK_MESSAGES_MAX,
};
use crate::metrics::ALERT_WINDOW_MS;
use crate::mesh::{Doorbell, MeshEnds, MeshReceiver};
use crate::router::{ApiSink, DeadLetter, LocalId, NodeQueueLimits, RouteError, Router, RouterLimits};
use crate::storage::{shard_db_path, DiskFloor, ShardStore, StorageConfig};

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
}

/// A shard's run-time knobs, each with its default.
#[derive(Debug, Clone, Copy)]
pub struct ShardTuning {
    /// Shortest idle polling before parking. Default [`SPIN_BEFORE_PARK_US`].
    pub spin_before_park: Duration,
    /// Longest idle polling before parking, reached under steady traffic.
    /// Default [`SPIN_BEFORE_PARK_MAX_US`].
    pub spin_before_park_max: Duration,
    /// Window of the p99 alert. Default [`ALERT_WINDOW_MS`] (10 s).
    pub alert_window_ms: u64,
    /// Node-wide bounds of mailboxes and of messages between shards, in
    /// count and bytes. Defaults: [`MAILBOX_MESSAGES_MAX`],
    /// [`MAILBOX_BYTES_MAX`], [`NODE_QUEUED_MESSAGES_MAX`],
    /// [`NODE_IN_FLIGHT_MESSAGES_MAX`], and the mailbox and mesh shares of
    /// [`MESSAGE_BUFFER_BYTES`].
    pub queues: NodeQueueLimits,
    /// Bytes of messages waiting for other nodes, and of arrivals from them,
    /// node-wide. Defaults: the link shares of [`MESSAGE_BUFFER_BYTES`].
    pub link_outbox_bytes_max: u64,
    pub link_inbox_bytes_max: u64,
    /// Wall time a tick may spend dispatching before it yields, and one
    /// instance's share of a tick. Default [`EXECUTION_TIME_SLICE_MS`].
    pub tick_time_budget: Duration,
}

impl ShardTuning {
    pub fn router_limits(&self, shards: usize) -> RouterLimits {
        RouterLimits::for_node(shards, self.queues)
    }

    /// The bounds of one of `shards` shards' links (`pool` connections to
    /// each node).
    pub fn link_limits(&self, shards: usize, pool: usize) -> LinkLimits {
        assert!(shards > 0);
        LinkLimits {
            slots_per_node: pool,
            outbox_messages_max: NODE_OUTBOX_MESSAGES_MAX,
            outbox_bytes_max: (self.link_outbox_bytes_max / shards as u64).max(1) as usize,
            inbound_messages_max: LINK_INBOUND_MESSAGES_MAX,
            inbound_bytes_max: (self.link_inbox_bytes_max / shards as u64).max(1) as usize,
        }
    }

    /// The defaults, with the message budget split from `budget`.
    pub fn with_budget(budget: &MessageBudget) -> ShardTuning {
        ShardTuning {
            spin_before_park: Duration::from_micros(SPIN_BEFORE_PARK_US),
            spin_before_park_max: Duration::from_micros(SPIN_BEFORE_PARK_MAX_US),
            alert_window_ms: ALERT_WINDOW_MS,
            queues: NodeQueueLimits {
                mailbox_messages_max: MAILBOX_MESSAGES_MAX,
                mailbox_bytes_max: MAILBOX_BYTES_MAX,
                queued_messages_max: NODE_QUEUED_MESSAGES_MAX,
                queued_bytes_max: budget.mailboxes,
                in_flight_messages_max: NODE_IN_FLIGHT_MESSAGES_MAX,
                in_flight_bytes_max: budget.mesh,
            },
            link_outbox_bytes_max: budget.link_outbox,
            link_inbox_bytes_max: budget.link_inbox,
            tick_time_budget: Duration::from_millis(EXECUTION_TIME_SLICE_MS),
        }
    }
}

impl Default for ShardTuning {
    fn default() -> Self {
        ShardTuning::with_budget(&MessageBudget::split(MESSAGE_BUFFER_BYTES).expect("the default budget splits"))
    }
}

struct LocalAgent {
    name: Arc<str>,
    instance: u32,
    module: CompiledAgent,
    runtime: Option<AgentInstance>,
    handled: u64,
    errors: u64,
    crashes: u64,
    timeouts: u64,
    /// `store.commits()` when this instance last wrote state: while it is
    /// unchanged, the instance has writes waiting for the tick's commit.
    wrote_before_commit: Option<u64>,
    /// Budgets and refusals that outlive one runtime (a trap recreates it).
    account: Arc<InstanceAccount>,
}

pub struct Shard {
    index: usize,
    ctx: Rc<RefCell<ShardCtx>>,
    agents: Vec<Option<LocalAgent>>,
    control: Receiver<Command>,
    lifecycle: Receiver<Command>,
    inbound: Vec<Option<MeshReceiver>>,
    /// Per peer: a message waiting for room in its mailbox.
    held: Vec<Option<Message>>,
    bell: Arc<Doorbell>,
    spin_before_park: Duration,
    spin_before_park_max: Duration,
    tick_time_budget: Duration,
    stop: Option<crate::command::Reply<()>>,
    totals: (u64, u64, u64, u64),
    latencies: ShardLatencies,
    alert: P99Alert,
    link: Option<Rc<LinkSetup>>,
}

impl Shard {
    /// Opens the shard's database and installs its context on this thread.
    pub fn open(setup: ShardSetup) -> Result<Shard, String> {
        let path = shard_db_path(&setup.data_dir, setup.index);
        let store = ShardStore::open(&path, &setup.storage).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let limits = setup.tuning.router_limits(setup.mesh.to.len());
        let remote = match &setup.link {
            Some(link) => RemoteTable::new(&link.self_name, setup.tuning.link_limits(setup.mesh.to.len(), link.pool_connections)),
            None => RemoteTable::standalone(),
        };
        let (router, inbound) = Router::new(setup.index, setup.mesh, setup.api, limits, remote);
        let ids = IdGen::new(setup.boot_epoch, setup.index as u8);
        let ctx = Rc::new(RefCell::new(ShardCtx::new(router, store, ids, setup.disk)));
        context::install(ctx.clone());
        let link = setup.link.map(Rc::new);
        if let Some(link) = &link {
            crate::link::io::start_acceptor(ctx.clone(), link.clone(), setup.bell.clone())?;
        }
        let peers = inbound.len();
        Ok(Shard {
            index: setup.index,
            ctx,
            agents: Vec::new(),
            control: setup.control,
            lifecycle: setup.lifecycle,
            inbound,
            held: (0..peers).map(|_| None).collect(),
            bell: setup.bell,
            spin_before_park: setup.tuning.spin_before_park,
            spin_before_park_max: setup.tuning.spin_before_park_max.max(setup.tuning.spin_before_park),
            tick_time_budget: setup.tuning.tick_time_budget,
            stop: None,
            totals: (0, 0, 0, 0),
            latencies: ShardLatencies::default(),
            alert: P99Alert::new(now_ns(), setup.tuning.alert_window_ms),
            link,
        })
    }

    /// Runs until a `Stop` command. `doorbell` is the reading end of this
    /// shard's doorbell.
    pub async fn run(mut self, mut doorbell: glommio::net::UnixStream) {
        let mut idle_since: Option<Instant> = None;
        let mut wake = [0u8; 64];
        let mut spin = self.spin_before_park;
        let mut io_polled = Instant::now();
        let io_poll_every = Duration::from_micros(LINK_POLL_INTERVAL_US);
        // One timer, re-armed for each poll: the loop allocates nothing.
        let mut io_poll = glommio::timer::Timer::new(Duration::from_micros(1));
        loop {
            // Rule: with links, a runnable shard still lets the reactor see
            // socket completions (limits::LINK_POLL_INTERVAL_US).
            if self.link.is_some() && io_polled.elapsed() >= io_poll_every {
                // A timer that has not expired leaves nothing runnable, so glommio
                // polls its rings (a zero one would complete without a poll).
                io_poll.reset(Duration::from_micros(1));
                (&mut io_poll).await;
                io_polled = Instant::now();
            }
            let work = self.tick();
            if let Some(reply) = self.stop.take() {
                self.end_tick();
                tracing::info!(shard = self.index, "shard stopped");
                reply(());
                return;
            }
            if work > 0 {
                idle_since = None;
                futures_lite::future::yield_now().await;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < spin {
                futures_lite::future::yield_now().await;
                continue;
            }
            if self.ctx.borrow().router.has_peer_backlog() {
                // A peer's channel is full: it drains without ringing us.
                glommio::timer::sleep(Duration::from_micros(50)).await;
                continue;
            }
            self.bell.set_parked();
            if self.has_input() {
                self.bell.clear_parked();
                continue;
            }
            let parked_at = Instant::now();
            let _ = doorbell.read(&mut wake).await;
            self.bell.clear_parked();
            self.bell.beat(now_ns());
            idle_since = None;
            let parked_for = parked_at.elapsed();
            spin = if parked_for < 2 * spin {
                (spin * 2).min(self.spin_before_park_max)
            } else if parked_for > 20 * self.spin_before_park_max {
                (spin / 2).max(self.spin_before_park)
            } else {
                spin
            };
        }
    }

    fn has_input(&self) -> bool {
        let ctx = self.ctx.borrow();
        !self.control.is_empty()
            || !self.lifecycle.is_empty()
            || ctx.router.has_ready()
            || ctx.router.has_staged()
            || ctx.router.remote.inbound_len().0 > 0
            || self.inbound.iter().flatten().any(|rx| !rx.is_empty())
    }

    /// One pass of the loop (module doc, steps 1 to 4). Returns the work done.
    pub fn tick(&mut self) -> usize {
        let mut work = self.drain_control();
        work += self.drain_inbound();
        work += self.dispatch();
        work += self.end_tick();
        if let Some(link) = &self.link {
            if !self.ctx.borrow().router.remote.wanted.is_empty() {
                crate::link::io::open_wanted(&self.ctx, link);
            }
        }
        work
    }

    fn end_tick(&mut self) -> usize {
        let now = now_ns();
        self.bell.beat(now);
        if let Some((routing, processing)) = self.alert.check(now) {
            if let Some(ns) = routing {
                tracing::warn!(shard = self.index, routing_p99_us = ns / 1000, target_us = crate::metrics::ROUTING_P99_TARGET_NS / 1000, "routing p99 over its ADR-0017 target in the last window");
            }
            if let Some(ns) = processing {
                tracing::warn!(shard = self.index, processing_p99_us = ns / 1000, target_us = crate::metrics::PROCESSING_P99_TARGET_NS / 1000, "processing p99 over its ADR-0017 target in the last window");
            }
        }
        let mut ctx = self.ctx.borrow_mut();
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
        }
        ctx.router.flush()
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
            Command::Deploy { name, module, instances, restore, reply } => reply(self.deploy(name, module, instances, restore)),
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
            Command::AgentStats { name, reply } => reply(self.agent_stats(Some(&name))),
            Command::ShardStats { reply } => reply(self.shard_stats()),
            Command::Stop { reply } => self.stop = Some(reply),
        }
    }

    fn drain_inbound(&mut self) -> usize {
        let mut n = 0;
        let mut ctx = self.ctx.borrow_mut();
        for p in 0..self.inbound.len() {
            if let Some(m) = self.held[p].take() {
                match ctx.router.accept(m) {
                    Ok(()) => n += 1,
                    Err((RouteError::Busy, m)) => {
                        self.held[p] = Some(m);
                        continue; // keep this peer's order: nothing overtakes it
                    }
                    Err((_, m)) => ctx.router.dead_letter(DeadLetter::UnknownReceiver, &m),
                }
            }
            let Some(rx) = &mut self.inbound[p] else { continue };
            for _ in 0..TICK_DRAIN_MAX {
                let Some(mut m) = rx.try_recv() else { break };
                m.set_path(RoutePath::Remote);
                ctx.router.counters.received_remote += 1;
                n += 1;
                match ctx.router.accept(m) {
                    Ok(()) => {}
                    Err((RouteError::Busy, m)) => {
                        self.held[p] = Some(m);
                        break;
                    }
                    Err((_, m)) => ctx.router.dead_letter(DeadLetter::UnknownReceiver, &m),
                }
            }
            // Mesh rule 4: tell the sender what left its channel.
            rx.publish();
        }
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

    /// Runs ready instances round-robin. An instance's burst ends after
    /// [`INSTANCE_BURST_MESSAGES_MAX`] messages or one tick budget of wall
    /// time, and the tick ends after [`TICK_MESSAGES_MAX`] messages or one
    /// budget: a CPU-hungry agent delays its neighbours by at most one
    /// execution time slice.
    fn dispatch(&mut self) -> usize {
        let mut done = 0;
        let budget_ns = self.tick_time_budget.as_nanos() as u64;
        let tick_start = now_ns();
        // The clock is read once per delivery (its end), and reused here.
        let mut now = tick_start;
        while done < TICK_MESSAGES_MAX && now - tick_start < budget_ns {
            let Some(id) = self.ctx.borrow_mut().router.next_ready() else { break };
            let mut burst = 0;
            let burst_start = now;
            while burst < INSTANCE_BURST_MESSAGES_MAX && done < TICK_MESSAGES_MAX && now - burst_start < budget_ns {
                let Some(message) = self.ctx.borrow_mut().router.pop_message(id) else { break };
                now = self.deliver(id, message, now);
                burst += 1;
                done += 1;
            }
            self.ctx.borrow_mut().router.requeue(id);
            if self.ctx.borrow().store.batch_full() {
                self.end_tick();
            }
        }
        done
    }

    /// Starts a call into an agent: returns the outbox mark to roll back to.
    fn call_begin(&self, conversation_id: u64) -> usize {
        let mut ctx = self.ctx.borrow_mut();
        ctx.call.writes = 0;
        ctx.call.conversation_id = conversation_id;
        ctx.router.staged_mark()
    }

    /// Ends a call into instance `id`: keeps its effects, or rolls them back
    /// if it did not complete normally (a trap, or a failed `caxton_init`).
    /// Kept sends go out at once unless the instance has uncommitted writes
    /// (router rule 2).
    fn call_end(&mut self, id: LocalId, mark: usize, keep: bool) {
        let mut ctx = self.ctx.borrow_mut();
        if let Err(e) = ctx.store.handler_end(keep) {
            tracing::error!(shard = self.index, error = %e, "closing a handler's savepoint failed");
        }
        if !keep {
            ctx.router.rollback_to(mark);
            return;
        }
        let commits = ctx.store.commits();
        let agent = self.agents[id as usize].as_mut().expect("live slot");
        if ctx.call.writes > 0 {
            agent.wrote_before_commit = Some(commits);
        }
        let waits_for_commit = ctx.store.dirty() && agent.wrote_before_commit == Some(commits);
        if !waits_for_commit {
            ctx.router.release_from(mark);
        }
    }

    /// Instantiates and initialises the instance in slot `id`.
    fn start_instance(&mut self, id: LocalId) -> Result<(), String> {
        let agent = self.agents[id as usize].as_mut().expect("live slot");
        let state_bytes = self.ctx.borrow().store.state_bytes(&agent.name, agent.instance).map_err(|e| format!("cannot read the state of {}[{}]: {e}", agent.name, agent.instance))?;
        let mut runtime = AgentInstance::new(&agent.module, agent.name.clone(), agent.instance, state_bytes, agent.account.clone())?;
        let (name, instance) = (agent.name.clone(), agent.instance);
        let mark = self.call_begin(0);
        let outcome = runtime.init();
        self.call_end(id, mark, outcome == Outcome::Handled);
        match outcome {
            Outcome::Handled => {
                self.agents[id as usize].as_mut().unwrap().runtime = Some(runtime);
                Ok(())
            }
            Outcome::AgentError(code) => Err(format!("caxton_init of {name}[{instance}] returned {code}")),
            Outcome::Trap(why) => Err(format!("caxton_init of {name}[{instance}] trapped: {why}")),
            Outcome::Timeout => Err(format!("caxton_init of {name}[{instance}] ran past its execution time slice")),
        }
    }

    /// Hands `message` to instance `id`; `started` is the clock now. Returns
    /// the clock when the call ended.
    fn deliver(&mut self, id: LocalId, message: Message, started: u64) -> u64 {
        let slot = id as usize;
        if self.agents[slot].as_ref().expect("live slot").runtime.is_none() {
            if let Err(e) = self.start_instance(id) {
                tracing::warn!(shard = self.index, error = %e, "instance cannot restart; message dropped");
                let mut ctx = self.ctx.borrow_mut();
                ctx.router.dead_letter(DeadLetter::CrashedHandler, &message);
                return now_ns();
            }
        }
        let mark = self.call_begin(message.conversation_id());
        let agent = self.agents[slot].as_mut().unwrap();
        let outcome = agent.runtime.as_mut().unwrap().deliver(message.as_bytes());
        let ended = now_ns();
        let completed = !matches!(outcome, Outcome::Trap(_) | Outcome::Timeout);
        self.call_end(id, mark, completed);
        self.record_latency(&message, started, ended);
        let agent = self.agents[slot].as_mut().unwrap();
        match outcome {
            Outcome::Handled => {
                agent.handled += 1;
                self.totals.0 += 1;
            }
            Outcome::AgentError(code) => {
                agent.handled += 1;
                agent.errors += 1;
                self.totals.0 += 1;
                self.totals.1 += 1;
                tracing::debug!(agent = %agent.name, instance = agent.instance, code, "handler returned an error");
            }
            Outcome::Trap(_) | Outcome::Timeout => {
                agent.runtime = None;
                let reason = if let Outcome::Trap(why) = outcome {
                    agent.crashes += 1;
                    self.totals.2 += 1;
                    tracing::warn!(shard = self.index, agent = %agent.name, instance = agent.instance, conversation = message.conversation_id(), "agent trapped: {why}; recreating it");
                    DeadLetter::CrashedHandler
                } else {
                    agent.timeouts += 1;
                    self.totals.3 += 1;
                    tracing::warn!(shard = self.index, agent = %agent.name, instance = agent.instance, conversation = message.conversation_id(), "handler ran past its execution time slice; stopped, recreating the instance");
                    DeadLetter::TimedOut
                };
                self.ctx.borrow_mut().router.dead_letter(reason, &message);
                if let Err(e) = self.start_instance(id) {
                    tracing::warn!(shard = self.index, error = %e, "recreating a crashed instance failed; retrying on its next message");
                }
            }
        }
        ended
    }

    /// Records one delivery (metrics rule 1: no allocation).
    fn record_latency(&mut self, message: &Message, started: u64, ended: u64) {
        let routing = started.saturating_sub(message.sent_ns());
        let processing = ended.saturating_sub(started);
        match message.path() {
            RoutePath::Local => self.latencies.routing_local.record(routing),
            RoutePath::Remote => self.latencies.routing_remote.record(routing),
            RoutePath::Node => self.latencies.routing_node.record(routing),
            RoutePath::Api => {}
        }
        if message.path() != RoutePath::Api {
            self.latencies.end_to_end.record(routing + processing);
            self.alert.record_routing(routing);
        }
        self.latencies.processing.record(processing);
        self.alert.record_processing(processing);
    }

    fn deploy(&mut self, name: Arc<str>, module: CompiledAgent, instances: u32, restore: bool) -> Result<Vec<InstanceReport>, String> {
        let mark = self.ctx.borrow().router.staged_mark();
        let made = self.ctx.borrow_mut().router.add_agent(&name, instances)?;
        let mut reports = Vec::with_capacity(made.len());
        for (instance, id) in made {
            let started = Instant::now();
            let slot = id as usize;
            if self.agents.len() <= slot {
                self.agents.resize_with(slot + 1, || None);
            }
            self.agents[slot] = Some(LocalAgent {
                name: name.clone(),
                instance,
                module: module.clone(),
                runtime: None,
                handled: 0,
                errors: 0,
                crashes: 0,
                timeouts: 0,
                wrote_before_commit: None,
                account: InstanceAccount::new(module.limits.log),
            });
            if let Err(e) = self.start_instance(id) {
                if !restore {
                    self.ctx.borrow_mut().router.rollback_to(mark);
                    self.undeploy(&name);
                    return Err(e);
                }
                tracing::warn!(shard = self.index, error = %e, "restored instance failed to start; retrying on its next message");
            }
            reports.push(InstanceReport { instance, shard: self.index, startup_us: started.elapsed().as_micros() as u64 });
        }
        Ok(reports)
    }

    fn undeploy(&mut self, name: &str) {
        let mut ctx = self.ctx.borrow_mut();
        for id in ctx.router.remove_agent(name) {
            self.agents[id as usize] = None;
        }
        if let Err(e) = ctx.store.delete_agent(name) {
            tracing::error!(shard = self.index, agent = name, error = %e, "deleting an undeployed agent's state failed");
        }
    }

    fn agent_stats(&self, name: Option<&str>) -> Vec<InstanceStats> {
        let ctx = self.ctx.borrow();
        self.agents
            .iter()
            .enumerate()
            .filter_map(|(id, a)| a.as_ref().filter(|a| name.is_none_or(|n| *a.name == *n)).map(|a| (id, a)))
            .map(|(id, a)| InstanceStats {
                name: a.name.clone(),
                instance: a.instance,
                shard: self.index,
                handled: a.handled,
                errors: a.errors,
                crashes: a.crashes,
                timeouts: a.timeouts,
                queued: ctx.router.queued_in(id as LocalId),
                memory_bytes: a.runtime.as_ref().map_or(0, |r| r.memory_bytes()),
                state_bytes: match &a.runtime {
                    Some(r) => r.state_bytes(),
                    None => ctx.store.state_bytes(&a.name, a.instance).unwrap_or(0),
                },
                state_refused: a.account.refusals().0,
                log_dropped: a.account.refusals().1,
                running: a.runtime.is_some(),
            })
            .collect()
    }

    fn shard_stats(&self) -> ShardStats {
        let ctx = self.ctx.borrow();
        let c = &ctx.router.counters;
        ShardStats {
            shard: self.index,
            instances: self.agents.iter().flatten().count(),
            queued_messages: ctx.router.queued_messages(),
            handled: self.totals.0,
            errors: self.totals.1,
            crashes: self.totals.2,
            timeouts: self.totals.3,
            routed_local: c.routed_local,
            routed_remote: c.routed_remote,
            received_remote: c.received_remote,
            routed_node: c.routed_node,
            received_node: c.received_node,
            links: ctx.router.remote.counters.clone(),
            nodes: ctx.router.remote.states(),
            link_queued: ctx.router.remote.queued(),
            link_inbound: ctx.router.remote.inbound_len().0,
            message_bytes: ctx.router.message_bytes(),
            busy: c.busy,
            busy_bytes: c.busy_bytes,
            not_found: c.not_found,
            dead_letters: c.dead_letters.by_label().collect(),
            abi_invalid: ctx.abi.invalid,
            abi_too_large: ctx.abi.too_large,
            abi_over_limit: ctx.abi.over_limit,
            state_refused_quota: ctx.abi.state_refused_quota,
            state_refused_disk: ctx.abi.state_refused_disk,
            log_dropped: ctx.abi.log_dropped,
            wakeups: self.bell.rings(),
            latencies: self.latencies.clone(),
            instance_stats: self.agent_stats(None),
        }
    }
}
