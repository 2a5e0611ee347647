//! An in-process caxton node for the benchmarks: the real shards, pinned,
//! driven through their control channels (no HTTP in the measured path).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_shards::agent::{compile, AgentLimits};
use caxton_shards::envelope::{Header, Message};
use caxton_shards::executor::{self, allowed_cpus, ShardHandle, ShardsConfig};
use caxton_shards::metrics::ShardLatencies;
use caxton_shards::placement::shard_of;
use caxton_shards::shard::ShardTuning;
use caxton_shards::{Command, ShardStats};
use crossbeam_channel::bounded;

/// How often the load generator injects a batch, in microseconds. It runs
/// on the same two cores as the shards; waking less often takes less from
/// them.
pub const INJECT_INTERVAL_US: u64 = 1000;

pub struct BenchNode {
    pub shards: Vec<ShardHandle>,
    _dir: tempfile::TempDir,
}

fn ask<T: Send + 'static>(shard: &ShardHandle, make: impl FnOnce(caxton_shards::command::Reply<T>) -> Command) -> T {
    let (tx, rx) = bounded(1);
    let mut command = make(Box::new(move |v| {
        let _ = tx.send(v);
    }));
    loop {
        match shard.send(command) {
            Ok(()) => break,
            Err(c) => {
                command = c;
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    rx.recv().expect("shard answers")
}

impl BenchNode {
    /// Starts one shard per allowed core (at most `shards`).
    pub fn start(shards: usize) -> BenchNode {
        BenchNode::start_tuned(shards, ShardTuning::default())
    }

    /// [`BenchNode::start`] with knobs of its own.
    pub fn start_tuned(shards: usize, tuning: ShardTuning) -> BenchNode {
        let dir = tempfile::tempdir().unwrap();
        let cpus: Vec<usize> = allowed_cpus().into_iter().take(shards).collect();
        let handles = executor::start(
            ShardsConfig {
                cpus,
                data_dir: dir.path().to_path_buf(),
                storage: Default::default(),
                boot_epoch: 1,
                tuning,
                link: None,
                disk: caxton_shards::storage::DiskFloor::unchecked(),
                spans: None,
                restoring: false,
            },
            caxton_shards::runtime_outbox::RuntimeOutbox::consuming(drop),
        )
        .expect("shards start");
        BenchNode { shards: handles, _dir: dir }
    }

    /// Starts one shard per CPU of `cpus`, linked as cluster node `link`;
    /// messages to runtime names go to `api`. No gossip: the caller tells
    /// the shards about other nodes with [`BenchNode::cluster`].
    pub fn start_linked(cpus: Vec<usize>, link: caxton_shards::link::LinkSetup, api: caxton_shards::router::ApiSink) -> BenchNode {
        let dir = tempfile::tempdir().unwrap();
        let handles = executor::start(
            ShardsConfig {
                cpus,
                data_dir: dir.path().to_path_buf(),
                storage: Default::default(),
                boot_epoch: 1,
                tuning: ShardTuning::default(),
                link: Some(link),
                disk: caxton_shards::storage::DiskFloor::unchecked(),
                spans: None,
                restoring: false,
            },
            api,
        )
        .expect("shards start");
        BenchNode { shards: handles, _dir: dir }
    }

    /// Where the shards keep their databases.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Hands cluster updates to every shard.
    pub fn cluster(&self, updates: Vec<caxton_shards::command::ClusterUpdate>) {
        for shard in &self.shards {
            let mut command = Command::Cluster { updates: updates.clone() };
            while let Err(c) = shard.send(command) {
                command = c;
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    pub fn deploy(&self, name: &str, wat: &Path, instances: u32) {
        let wasm = wasmer::wat2wasm(&std::fs::read(wat).unwrap()).unwrap().into_owned();
        let compiled = compile(&wasm, &AgentLimits::default()).unwrap();
        let name: Arc<str> = name.into();
        for shard in &self.shards {
            let r = ask(shard, |reply| Command::Deploy {
                name: name.clone(),
                module: compiled.clone(),
                instances,
                restore: false,
                policy: Default::default(),
                reply,
            });
            r.expect("deploy");
        }
    }

    /// Deploys compiled `wasm` under `limits`, with a restart policy.
    pub fn deploy_wasm(&self, name: &str, wasm: &[u8], instances: u32, policy: caxton_shards::command::RestartPolicy, limits: &AgentLimits) {
        let compiled = compile(wasm, limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        self.deploy_instances(name, &compiled, instances, policy);
    }

    /// Deploys one instance of an already compiled module (shared, as the
    /// node shares one per content).
    pub fn deploy_compiled(&self, name: &str, module: &caxton_shards::agent::CompiledAgent, policy: caxton_shards::command::RestartPolicy) {
        self.deploy_instances(name, module, 1, policy);
    }

    fn deploy_instances(&self, name: &str, module: &caxton_shards::agent::CompiledAgent, instances: u32, policy: caxton_shards::command::RestartPolicy) {
        let name: Arc<str> = name.into();
        for shard in &self.shards {
            let r = ask(shard, |reply| Command::Deploy { name: name.clone(), module: module.clone(), instances, restore: false, policy, reply });
            r.unwrap_or_else(|e| panic!("deploy {name}: {e}"));
        }
    }

    /// Asks shard `index` and waits for its answer.
    pub fn ask<T: Send + 'static>(&self, index: usize, make: impl FnOnce(caxton_shards::command::Reply<T>) -> Command) -> T {
        ask(&self.shards[index], make)
    }

    pub fn undeploy(&self, name: &str) {
        let name: Arc<str> = name.into();
        for shard in &self.shards {
            ask(shard, |reply| Command::Undeploy { name: name.clone(), reply });
        }
    }

    pub fn shard_of(&self, name: &str) -> usize {
        shard_of(name.as_bytes(), 0, self.shards.len())
    }

    /// A name for an agent whose instance 0 lives on `shard`.
    pub fn name_on(&self, prefix: &str, shard: usize) -> String {
        (0..).map(|i| format!("{prefix}-{i}")).find(|n| self.shard_of(n) == shard).unwrap()
    }

    /// Delivers a batch to the shard hosting `receiver`; returns how many it took.
    pub fn inject(&self, shard: usize, messages: Vec<Message>) -> usize {
        let n = messages.len();
        n - ask(&self.shards[shard], |reply| Command::Inject { messages, reply }).len()
    }

    pub fn message(sender: &str, receiver: &str, content: &[u8]) -> Message {
        Message::encode(&Header::default(), sender.as_bytes(), receiver.as_bytes(), content).unwrap()
    }

    pub fn stats(&self) -> Vec<ShardStats> {
        self.shards.iter().map(|s| ask(s, |reply| Command::ShardStats { instances_max: Some(usize::MAX), reply })).collect()
    }

    pub fn handled(&self) -> u64 {
        self.stats().iter().map(|s| s.handled).sum()
    }

    /// Latencies recorded on each shard since `before`.
    pub fn latencies_since(&self, before: &[ShardStats]) -> Vec<ShardLatencies> {
        self.stats()
            .iter()
            .zip(before)
            .map(|(now, then)| ShardLatencies {
                routing_local: now.latencies.routing_local.since(&then.latencies.routing_local),
                routing_remote: now.latencies.routing_remote.since(&then.latencies.routing_remote),
                routing_node: now.latencies.routing_node.since(&then.latencies.routing_node),
                processing: now.latencies.processing.since(&then.latencies.processing),
                end_to_end: now.latencies.end_to_end.since(&then.latencies.end_to_end),
                activation: now.latencies.activation.since(&then.latencies.activation),
            })
            .collect()
    }

    /// Waits until the node has handled `count` messages in all (or 30 s).
    pub fn wait_handled(&self, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.handled() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Injects `per_ms` messages per millisecond for `duration`, in batches
    /// every [`INJECT_INTERVAL_US`], each made by `make(i)` as (shard,
    /// message). Returns (sent, accepted).
    /// `make(k, scheduled_ns)` builds message `k`, due at `scheduled_ns`
    /// (`clock::now_ns`): a figure timed from there has no coordinated
    /// omission, however late the generator woke.
    pub fn drive(&self, per_ms: usize, duration: Duration, mut make: impl FnMut(u64, u64) -> (usize, Message)) -> (u64, u64) {
        let start = Instant::now();
        let start_ns = caxton_shards::clock::now_ns();
        let (mut sent, mut accepted) = (0u64, 0u64);
        let mut tick = 0u64;
        while start.elapsed() < duration {
            tick += 1;
            // Open loop: what is due by now, so a late wake-up (the generator
            // shares the cores with the shards) sends a larger batch and the
            // rate holds.
            let due = (start.elapsed().as_micros() as u64 * per_ms as u64 / 1000).saturating_sub(sent) as usize;
            let mut batches: Vec<Vec<Message>> = (0..self.shards.len()).map(|_| Vec::with_capacity(due)).collect();
            for _ in 0..due {
                // Message k falls due when `due` first counts it: at
                // (k + 1) / per_ms ms.
                let (shard, m) = make(sent, start_ns + (sent + 1) * 1_000_000 / per_ms as u64);
                batches[shard].push(m);
                sent += 1;
            }
            for (shard, batch) in batches.into_iter().enumerate() {
                if !batch.is_empty() {
                    accepted += self.inject(shard, batch) as u64;
                }
            }
            let next = start + Duration::from_micros(tick * INJECT_INTERVAL_US);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        (sent, accepted)
    }
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        for s in &self.shards {
            ask(s, |reply| Command::Stop { reply });
        }
        for s in self.shards.iter_mut() {
            s.join();
        }
    }
}
