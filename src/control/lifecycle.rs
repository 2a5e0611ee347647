//! Agents' lifecycle: deploy, undeploy, restore after a restart, stop the
//! node (control rules 2, 3 and 5).

use std::sync::Arc;
use std::time::Instant;

use caxton_cluster::view::RemoteRoute;
use caxton_shards::agent::{to_wasm_binary, CompiledAgent, ModuleError};
use caxton_shards::command::{Reply, RestartPolicy};
use caxton_shards::envelope::is_agent_name;
use caxton_shards::limits::AGENT_INSTANCES_MAX;
use caxton_shards::placement::shard_of;
use caxton_shards::{Command, InstanceReport, InstanceStats};
use tokio::sync::oneshot;

use super::{AgentDetail, AgentRecord, Control, ControlError, DeployReport, Settled};
use crate::catalog::Version;
use crate::module_cache::Source;

/// A restart policy as the catalog keeps it (and the API takes it).
pub fn policy_query(p: &RestartPolicy) -> String {
    format!(
        "restart_immediate={}&restart_window_ms={}&restart_backoff_ms={}&restart_backoff_max_ms={}&quarantine_after={}",
        p.immediate, p.window_ms, p.backoff_ms, p.backoff_max_ms, p.quarantine_after
    )
}

/// Reads a policy from `key=value&...` pairs; missing keys keep their
/// defaults, unknown keys are ignored (the API passes its whole query).
pub fn parse_policy(query: &str) -> Result<RestartPolicy, String> {
    let mut p = RestartPolicy::default();
    for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        let number = || value.parse::<u64>().map_err(|_| format!("{key}={value:?} is not a number"));
        match key {
            "restart_immediate" => p.immediate = number()?.min(u32::MAX as u64) as u32,
            "restart_window_ms" => p.window_ms = number()?,
            "restart_backoff_ms" => p.backoff_ms = number()?,
            "restart_backoff_max_ms" => p.backoff_max_ms = number()?,
            "quarantine_after" => p.quarantine_after = number()?.min(u32::MAX as u64) as u32,
            _ => {}
        }
    }
    p.check()?;
    Ok(p)
}

impl Control {
    /// The node hosting `name`, if another node of the cluster does.
    pub fn remote_node_of(&self, name: &str) -> Option<String> {
        if self.agents.read().unwrap().contains_key(name) {
            return None;
        }
        let route = self.cluster.as_ref()?.view.lock().unwrap().remote_route(name)?;
        Some(route.node.to_string())
    }

    fn record_for(&self, name: &str, instances: u32, charge_each: u64, version: Version, policy: RestartPolicy, tools: Vec<String>) -> AgentRecord {
        assert!(instances <= AGENT_INSTANCES_MAX, "0 is a keyed type: no instance of its own");
        let shards: Vec<usize> = (0..instances).map(|i| shard_of(name.as_bytes(), i, self.shards.len())).collect();
        assert!(shards.iter().all(|&s| s < self.shards.len()));
        AgentRecord { instances, charge_each, shards, version, policy, tools }
    }

    /// Compiles a module off the shards and the API thread (or takes it
    /// from the module cache).
    pub(super) async fn compile_off_shards(self: &Arc<Self>, body: Vec<u8>) -> Result<(CompiledAgent, Vec<u8>), ControlError> {
        let limits = self.limits;
        let this = self.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let wasm = to_wasm_binary(&body)?.into_owned();
            this.modules.get(&wasm, &limits).map(|(m, _)| (m, wasm))
        })
        .await
        .map_err(|e| ControlError::internal(format!("compiler task failed: {e}")))?;
        compiled.map_err(|e| ControlError::bad_request("invalid_module", e.0))
    }

    /// Deploys a module under `name` (rules 2 and 3), with its restart
    /// policy.
    /// `tools` is its grant (`control::tools` rule 1).
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        instances: u32,
        body: Vec<u8>,
        policy: RestartPolicy,
        tools: &[String],
    ) -> Result<DeployReport, ControlError> {
        let started = Instant::now();
        if !is_agent_name(name.as_bytes()) {
            return Err(ControlError::bad_request("invalid_name", format!("invalid agent name {name:?}: use 1 to 64 bytes of [a-z0-9._-]")));
        }
        // 0: a keyed type (`keyed`), an activation per key, made on demand.
        if instances > AGENT_INSTANCES_MAX {
            return Err(ControlError::bad_request("invalid_instances", format!("instances must be 1 to {AGENT_INSTANCES_MAX}, got {instances}")));
        }
        if self.agents.read().unwrap().contains_key(name) {
            return Err(ControlError::conflict(format!("an agent named {name:?} is already deployed")));
        }
        if let Some(why) = self.unrestored.lock().unwrap().get(name) {
            return Err(ControlError::conflict(format!("an agent named {name:?} is in the catalog but was not restored ({why}); stop it first")));
        }
        match self.cluster.as_ref().and_then(|c| c.view.lock().unwrap().remote_route(name)) {
            Some(RemoteRoute { node, alive: true, .. }) => return Err(ControlError::conflict(format!("an agent named {name:?} is deployed on node {node}"))),
            // Its node is down: the name moves here (a newer registry version).
            Some(RemoteRoute { node, alive: false, .. }) => {
                tracing::warn!(agent = name, %node, "redeploying an agent whose node is down; it moves to this node")
            }
            None => {}
        }
        policy.check().map_err(|e| ControlError::bad_request("invalid_policy", e))?;
        let tools = self.check_grant(tools)?;
        let (module, wasm) = self.compile_off_shards(body).await?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let each = self.admission.lock().unwrap().charge_per_instance(module.declared_memory_max);
        let lifecycle = self.lifecycle_lock().await?;
        let record;
        {
            let mut agents = self.agents.write().unwrap();
            if agents.contains_key(name) {
                return Err(ControlError::conflict(format!("an agent named {name:?} is already deployed")));
            }
            self.admission.lock().unwrap().admit(name, instances, each).map_err(ControlError::over_capacity)?;
            let version = match self.catalog.lock().unwrap().insert(name, instances, &wasm, &policy_query(&policy), &tools) {
                Ok(v) => v,
                Err(e) => {
                    self.admission.lock().unwrap().release(instances, each);
                    return Err(ControlError::internal(format!("catalog write failed: {e}")));
                }
            };
            record = self.record_for(name, instances, each, version, policy, tools.clone());
            agents.insert(name.to_string(), record.clone());
        }
        match self.start_everywhere(lifecycle, name, Start { module, instances, restore: false, policy, tools: &tools }).await {
            Ok(reports) => {
                if let Some(c) = &self.cluster {
                    c.publish(name, true);
                }
                Ok(DeployReport { record, instances: reports, compile_ms, total_ms: started.elapsed().as_secs_f64() * 1e3 })
            }
            Err((e, Settled::Now)) => {
                self.forget_record(name);
                Err(e)
            }
            Err((e, Settled::Later)) => Err(e), // the background task forgets it
        }
    }

    /// Starts `name` on every shard or on none (rules 2, 3 and 5), holding
    /// the lifecycle lock. A shard late past the deadline makes it a 503;
    /// a task of its own then waits for every answer, undoes the deploy
    /// where it was done, forgets the name and only then lets the lock go.
    async fn start_everywhere(
        self: &Arc<Self>,
        lifecycle: tokio::sync::OwnedMutexGuard<()>,
        name: &str,
        start: Start<'_>,
    ) -> Result<Vec<InstanceReport>, (ControlError, Settled)> {
        let Start { module, instances, restore, policy, tools } = start;
        let shared: Arc<str> = name.into();
        self.grant_everywhere(&shared, tools).await.map_err(|e| (e, Settled::Now))?;
        let waits = self
            .lifecycle_to(&self.all_shards(), |reply| Command::Deploy { name: shared.clone(), module: module.clone(), instances, restore, policy, reply })
            .map_err(|e| (e, Settled::Now))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut waits = std::collections::VecDeque::from(waits);
        let (mut reports, mut started, mut failure) = (Vec::new(), Vec::new(), None);
        while let Some((shard, mut rx)) = waits.pop_front() {
            match tokio::time::timeout_at(deadline, &mut rx).await {
                Ok(Ok(Ok(mut rs))) => {
                    reports.append(&mut rs);
                    started.push(shard);
                }
                Ok(Ok(Err(e))) => failure = Some(ControlError::bad_request("init_failed", e)),
                Ok(Err(_)) => failure = Some(ControlError::internal(format!("shard {shard} stopped"))),
                Err(_) => {
                    waits.push_front((shard, rx));
                    let late = self.late(shard);
                    let this = self.clone();
                    tokio::spawn(async move {
                        for (late_shard, rx) in waits {
                            if let Ok(Ok(_)) = rx.await {
                                started.push(late_shard);
                            }
                        }
                        if let Err(e) = this.stop_on_now(&started, &shared).await {
                            tracing::error!(agent = %shared, "undoing a late deploy failed: {}", e.message);
                        }
                        this.forget_record(&shared);
                        drop(lifecycle);
                    });
                    let message = format!("{}: the deploy is undone as soon as it answers", late.message);
                    return Err((ControlError { message, ..late }, Settled::Later));
                }
            }
        }
        if let Some(e) = failure {
            // The shards that started the agent drop it again, and we wait
            // for them: nothing of it stays anywhere.
            self.stop_on_now(&started, &shared).await.map_err(|e| (e, Settled::Now))?;
            return Err((e, Settled::Now));
        }
        reports.sort_by_key(|r| r.instance);
        assert_eq!(started.len(), self.shards.len(), "rule 2: every shard took the deploy");
        assert_eq!(reports.len(), instances as usize, "every instance is placed on exactly one shard");
        Ok(reports)
    }

    /// Undeploys `name` from the shards `to` and waits for each, however
    /// long (undoing: nothing may stay half-done). Call with the lifecycle
    /// lock held.
    async fn stop_on_now(&self, to: &[usize], name: &Arc<str>) -> Result<(), ControlError> {
        let waits = self.lifecycle_to(to, |reply| Command::Undeploy { name: name.clone(), reply })?;
        for (shard, rx) in waits {
            rx.await.map_err(|_| ControlError::internal(format!("shard {shard} stopped")))?;
        }
        Ok(())
    }

    /// Forgets a name in the catalog, the records and admission.
    pub(super) fn forget_record(&self, name: &str) {
        match self.catalog.lock().unwrap().remove(name) {
            Ok(unused) => self.modules.remove_modules(&unused, &self.limits),
            Err(e) => tracing::error!(agent = name, error = %e, "cannot remove an agent from the catalog; it comes back at the next start"),
        }
        if let Some(r) = self.agents.write().unwrap().remove(name) {
            self.admission.lock().unwrap().release(r.instances, r.charge_each);
        }
    }

    /// Stops `name` on every shard, then forgets it (rule 2): if a shard
    /// cannot take the command, nothing changes and the caller gets 503. A
    /// shard late past the deadline is a 503 too; the undeploy completes in
    /// the background when it answers.
    pub async fn undeploy(self: &Arc<Self>, name: &str) -> Result<(), ControlError> {
        let lifecycle = self.lifecycle_lock().await?;
        if self.unrestored.lock().unwrap().remove(name).is_some() {
            self.forget_record(name); // in the catalog only
            return Ok(());
        }
        if !self.agents.read().unwrap().contains_key(name) {
            return Err(ControlError::not_found(format!("no agent named {name:?}")));
        }
        let shared: Arc<str> = name.into();
        let waits = self.lifecycle_to(&self.all_shards(), |reply| Command::Undeploy { name: shared.clone(), reply })?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut waits = std::collections::VecDeque::from(waits);
        while let Some((shard, mut rx)) = waits.pop_front() {
            if tokio::time::timeout_at(deadline, &mut rx).await.is_err() {
                waits.push_front((shard, rx));
                let late = self.late(shard);
                let this = self.clone();
                tokio::spawn(async move {
                    for (_, rx) in waits {
                        let _ = rx.await;
                    }
                    this.forgotten(&shared);
                    drop(lifecycle);
                });
                return Err(ControlError { message: format!("{}: the undeploy completes when it answers", late.message), ..late });
            }
        }
        self.forgotten(name);
        Ok(())
    }

    /// An undeploy reached every shard: forget the name and say so.
    fn forgotten(&self, name: &str) {
        self.forget_record(name);
        if let Some(c) = &self.cluster {
            c.publish(name, false);
        }
    }

    /// Brings back the agents of the catalog after a restart, at their
    /// current versions, their modules from the module cache when it has
    /// them.
    pub async fn restore(self: &Arc<Self>) -> Result<usize, String> {
        let stored = self.catalog.lock().unwrap().agents().map_err(|e| format!("cannot read the catalog: {e}"))?;
        let count = stored.len();
        let (mut from_disk, mut compiled) = (0usize, 0usize);
        let started = std::time::Instant::now();
        // Off the API's thread, which answers probes meanwhile.
        let this = self.clone();
        let (stored, modules) = tokio::task::spawn_blocking(move || {
            let modules = this.load_modules(&stored);
            (stored, modules)
        })
        .await
        .map_err(|e| format!("loading the stored modules failed: {e}"))?;
        for (agent, module) in stored.into_iter().zip(modules) {
            // An agent that cannot come back is said so and kept in the
            // catalog; the node serves the others.
            if let Err(why) = self.restore_one(&agent, module, &mut from_disk, &mut compiled).await {
                tracing::error!(agent = agent.name, error = %why, "agent not restored: it stays in the catalog, served by no shard; `caxton agent stop {}` removes it", agent.name);
                self.forget_record_only(&agent.name);
                self.unrestored.lock().unwrap().insert(agent.name.clone(), why);
            }
        }
        self.modules.forget();
        self.serve_everywhere().await?;
        if count > 0 {
            tracing::info!(
                agents = count,
                modules_compiled = compiled,
                modules_cached = from_disk,
                ms = started.elapsed().as_millis() as u64,
                "agents restored"
            );
        }
        if let Some(c) = &self.cluster {
            c.sync_own(self.agents.read().unwrap().keys().cloned().collect());
        }
        self.restored.store(true, std::sync::atomic::Ordering::Release);
        Ok(count)
    }

    /// Every stored agent's module, from the module cache or compiled, on
    /// one thread per CPU this process may use: a restore without the
    /// cache is compile-bound, and one agent's compile does not wait for
    /// another's (issue 26). In the order of `stored`.
    fn load_modules(&self, stored: &[crate::catalog::CatalogAgent]) -> Vec<Result<(CompiledAgent, Source), ModuleError>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, stored.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let loaded = std::sync::Mutex::new((0..stored.len()).map(|_| None).collect::<Vec<_>>());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(agent) = stored.get(i) else { break };
                    let module = self.modules.get(&agent.wasm, &self.limits);
                    loaded.lock().unwrap()[i] = Some(module);
                });
            }
        });
        let loaded: Vec<_> = loaded.into_inner().unwrap().into_iter().map(|m| m.expect("every stored agent's module was loaded")).collect();
        debug_assert_eq!(loaded.len(), stored.len());
        loaded
    }

    /// Restores one agent of the catalog (see [`Control::restore`]), its
    /// module as [`Control::load_modules`] got it.
    async fn restore_one(
        self: &Arc<Self>,
        agent: &crate::catalog::CatalogAgent,
        module: Result<(CompiledAgent, Source), ModuleError>,
        from_disk: &mut usize,
        compiled: &mut usize,
    ) -> Result<(), String> {
        let (module, source) = module.map_err(|e| format!("its stored module no longer compiles: {e}"))?;
        match source {
            Source::Compiled => *compiled += 1,
            Source::Disk | Source::Memory => *from_disk += 1,
        }
        let policy = parse_policy(&agent.policy).unwrap_or_else(|e| {
            tracing::warn!(agent = agent.name, error = e, "stored restart policy unreadable; using the defaults");
            RestartPolicy::default()
        });
        let each = self.admission.lock().unwrap().charge_per_instance(module.declared_memory_max);
        if let Err(e) = self.admission.lock().unwrap().admit(&agent.name, agent.instances, each) {
            // Admitted before the restart: keep it, but say the node is over.
            tracing::warn!(agent = agent.name, "restored agent is over the node's limits: {e}");
            let mut a = self.admission.lock().unwrap();
            a.agents += agent.instances as usize;
            a.charged += agent.instances as u64 * each;
        }
        self.agents
            .write()
            .unwrap()
            .insert(agent.name.clone(), self.record_for(&agent.name, agent.instances, each, agent.version.clone(), policy, agent.tools.clone()));
        let lifecycle = self.lifecycle_lock().await.map_err(|e| e.message)?;
        self.start_everywhere(lifecycle, &agent.name, Start { module, instances: agent.instances, restore: true, policy, tools: &agent.tools })
            .await
            .map_err(|(e, _)| e.message)?;
        Ok(())
    }

    /// Forgets a name's record and admission, keeping it in the catalog.
    fn forget_record_only(&self, name: &str) {
        if let Some(r) = self.agents.write().unwrap().remove(name) {
            self.admission.lock().unwrap().release(r.instances, r.charge_each);
        }
    }

    /// Agents of the catalog not restored at start, with why.
    pub fn unrestored(&self) -> Vec<(String, String)> {
        self.unrestored.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Tells every shard that every agent is restored: their timers may
    /// fire now (`timers` rule 5), and none can fail to reach an agent not
    /// yet back.
    async fn serve_everywhere(&self) -> Result<(), String> {
        let _lifecycle = self.lifecycle_lock().await.map_err(|e| e.message)?;
        let waits = self.lifecycle_to(&self.all_shards(), |reply| Command::Serve { reply }).map_err(|e| e.message)?;
        for (shard, rx) in waits {
            self.answer(shard, rx).await.map_err(|e| e.message)?;
        }
        Ok(())
    }

    /// How many agents are deployed here (a count: no copy of the table).
    pub fn agent_count(&self) -> usize {
        self.agents.read().unwrap().len()
    }

    pub fn list(&self) -> Vec<(String, AgentRecord)> {
        let mut all: Vec<_> = self.agents.read().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub async fn agent(&self, name: &str) -> Result<AgentDetail, ControlError> {
        let record = self.agents.read().unwrap().get(name).cloned().ok_or_else(|| ControlError::not_found(format!("no agent named {name:?}")))?;
        let shared: Arc<str> = name.into();
        let mut instances: Vec<InstanceStats> =
            self.ask_all(|reply| Command::AgentStats { name: shared.clone(), reply }).await?.into_iter().flatten().collect();
        instances.sort_by_key(|i| i.instance);
        let keyed = if record.instances == 0 { Some(self.keyed_summary(name).await?) } else { None };
        Ok(AgentDetail { record, instances, keyed })
    }

    /// The last `lines` log lines of agent `name` on this node, oldest
    /// first: every shard's recent lines of it (`agent_log` rule 4), merged
    /// by time.
    pub async fn agent_logs(&self, name: &str, lines: usize) -> Result<Vec<caxton_shards::agent::agent_log::LogRecord>, ControlError> {
        if !self.agents.read().unwrap().contains_key(name) {
            return Err(ControlError::not_found(format!("no agent named {name:?}")));
        }
        let shared: Arc<str> = name.into();
        let mut all: Vec<_> = self.ask_all(|reply| Command::AgentLogs { name: shared.clone(), lines, reply }).await?.into_iter().flatten().collect();
        all.sort_by_key(|r| r.unix_us);
        let older = all.len().saturating_sub(lines);
        Ok(all.split_off(older))
    }

    /// Stops every shard; each answers once it has committed what it holds.
    pub async fn stop(&self) {
        let Ok(_lifecycle) = self.lifecycle_lock().await else {
            tracing::error!("stopping without the lifecycle lock: an operation is still finishing");
            return;
        };
        match self.lifecycle_to(&self.all_shards(), |reply| Command::Stop { reply }) {
            Ok(waits) => {
                for (shard, rx) in waits {
                    if let Err(e) = self.answer(shard, rx).await {
                        tracing::error!("shard {shard} did not stop in time: {}", e.message);
                    }
                }
            }
            Err(e) => tracing::error!("cannot stop the shards: {}", e.message),
        }
    }

    /// The lifecycle lock (rule 2), within the control deadline: a previous
    /// operation still finishing on a shard that does not answer holds it.
    pub(super) async fn lifecycle_lock(&self) -> Result<tokio::sync::OwnedMutexGuard<()>, ControlError> {
        tokio::time::timeout(self.timeout, self.lifecycle.clone().lock_owned())
            .await
            .map_err(|_| ControlError::busy("a previous deploy or undeploy is still finishing on a shard that does not answer; retry later"))
    }

    /// Sends a lifecycle command to the shards `to` (rule 2): all of them
    /// or, when one has no room, none. Call with the lifecycle lock held.
    pub(super) fn lifecycle_to<T: Send + 'static>(
        &self,
        to: &[usize],
        make: impl Fn(Reply<T>) -> Command,
    ) -> Result<Vec<(usize, oneshot::Receiver<T>)>, ControlError> {
        assert!(self.lifecycle.try_lock().is_err(), "rule 2: called with the lifecycle lock held");
        assert!(to.iter().all(|&i| i < self.shards.len()) && to.windows(2).all(|w| w[0] < w[1]), "each shard once");
        if let Some(&full) = to.iter().find(|&&i| !self.shards[i].lifecycle_room(1)) {
            return Err(ControlError::busy(format!("shard {full} is not taking commands (its lifecycle queue is full); nothing was changed")));
        }
        let mut waits = Vec::with_capacity(to.len());
        for &shard in to {
            let (tx, rx) = oneshot::channel();
            let sent = self.shards[shard].send_lifecycle(make(Box::new(move |v| {
                let _ = tx.send(v);
            })));
            // The only producer, under the lock, after the room check.
            assert!(sent.is_ok(), "lifecycle queue of shard {shard} filled after its room was checked");
            waits.push((shard, rx));
        }
        Ok(waits)
    }

    pub(super) fn all_shards(&self) -> Vec<usize> {
        (0..self.shards.len()).collect()
    }
}

/// What one start of an agent on every shard needs: the compiled module,
/// its instance count, whether its state is restored (a node start) or new
/// (a deploy), its restart policy and its tool grant.
struct Start<'a> {
    module: CompiledAgent,
    instances: u32,
    restore: bool,
    policy: RestartPolicy,
    tools: &'a [String],
}
