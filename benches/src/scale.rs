//! What a message costs as the agents grow in number (issue 26): one shard,
//! its agents all of one module, each message to the next agent in turn (so
//! with many agents every message meets an instance its shard has not
//! touched for a while, as a load spread over them does). The shard is kept
//! saturated, so the rate it handles is what a message costs it.
//!
//! The row's baseline is the same run with 100 agents: the ratio is what
//! having 10,000 costs each message, the goal being 1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_shards::agent::{compile, AgentLimits, CompiledAgent};
use caxton_shards::command::RestartPolicy;
use caxton_shards::{Command, Message};

use crate::node::BenchNode;

/// Messages per injected batch (a wire batch's order of size).
const BATCH: usize = 256;

/// The agents' module: `file` from `benches/agents/`.
pub fn module(file: &str) -> CompiledAgent {
    let wasm = wasmer::wat2wasm(&std::fs::read(crate::routing::agents_dir().join(file)).unwrap()).unwrap().into_owned();
    compile(&wasm, &AgentLimits::default()).unwrap()
}

/// Deploys `count` agents of `module` on a one-shard node (one compiled
/// module for all, as the node shares one per content).
pub fn deploy(node: &BenchNode, module: &CompiledAgent, count: usize) -> Vec<Arc<str>> {
    let names: Vec<Arc<str>> = (0..count).map(|i| Arc::from(format!("agent-{i}"))).collect();
    for name in &names {
        node.deploy_compiled(name, module, RestartPolicy::default());
    }
    names
}

/// Handler calls a second one shard makes when every message goes to the
/// next of `names` in turn, saturated, over `secs`; after a warm-up of one
/// message per agent.
pub fn rate(node: &BenchNode, names: &[Arc<str>], secs: f64) -> f64 {
    let content = [7u8; 64];
    let message = |i: usize| BenchNode::message("bench", &names[i % names.len()], &content);
    // Warm-up: every agent handles one message.
    let before = node.handled();
    let mut i = 0;
    while i < names.len() {
        let batch: Vec<Message> = (i..(i + BATCH).min(names.len())).map(message).collect();
        i += inject_all(node, batch);
    }
    node.wait_handled(before + names.len() as u64);
    let start_handled = node.handled();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut next = 0usize;
    while Instant::now() < deadline {
        // Keep the shard's queues full: a batch whenever it has room.
        let batch: Vec<Message> = (next..next + BATCH).map(message).collect();
        next += inject_all(node, batch);
    }
    let handled = node.handled() - start_handled;
    handled as f64 / started.elapsed().as_secs_f64()
}

/// Injects a batch into shard 0, retrying what a full mailbox refused;
/// returns how many were taken.
fn inject_all(node: &BenchNode, mut batch: Vec<Message>) -> usize {
    let n = batch.len();
    let mut pause = Duration::from_micros(20);
    loop {
        let refused = node.ask(0, |reply| Command::Inject { messages: batch, reply });
        if refused.is_empty() {
            return n;
        }
        batch = refused.into_iter().map(|(_, m)| m).collect();
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

/// The row: `runs` alternating runs of `secs` each, messages to `many`
/// agents in turn (ours) and to the first 100 of them (the baseline), on
/// one shard. The ratio is what having many costs each message.
pub fn compare(many: usize, runs: usize, secs: f64) -> crate::actix_peers::Alternated {
    assert!(many > FEW, "the row compares many agents with {FEW}");
    let node = BenchNode::start(1);
    let names = deploy(&node, &module("sink.wat"), many);
    crate::actix_peers::alternate(runs, || rate(&node, &names, secs), || rate(&node, &names[..FEW], secs))
}

/// Agents of the baseline run.
pub const FEW: usize = 100;
