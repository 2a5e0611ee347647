//! Agent startup and message processing.

use std::time::{Duration, Instant};

use caxton_shards::agent::host::InstanceAccount;
use caxton_shards::agent::{compile, AgentInstance, AgentLimits, InCall, Outcome};
use caxton_shards::metrics::Latency;
use hdrhistogram::Histogram;
use wasmer::{imports, Instance, Module, Store};

use crate::histogram;
use crate::node::BenchNode;
use crate::routing::{agents_dir, Cast};

fn wasm(file: &str) -> Vec<u8> {
    wasmer::wat2wasm(&std::fs::read(agents_dir().join(file)).unwrap()).unwrap().into_owned()
}

/// Deploy-to-ready time of one instance of a precompiled module (store,
/// host functions, instance, `caxton_init`), beside a bare wasmer
/// `Store::new` + `Instance::new` of the same module without our host
/// functions and metering.
pub fn startup(count: usize) -> (Histogram<u64>, Histogram<u64>) {
    let wasm = wasm("sink.wat");
    let compiled = compile(&wasm, &AgentLimits::default()).unwrap();
    let mut ours = histogram();
    let mut kept = Vec::with_capacity(count);
    for i in 0..count {
        let t = Instant::now();
        let mut agent = AgentInstance::new(&compiled, "bench".into(), i as u32, 0, InstanceAccount::new(Default::default())).unwrap();
        agent.start(&InCall::without_shard()).unwrap();
        ours.saturating_record(t.elapsed().as_nanos() as u64);
        kept.push(agent);
    }
    drop(kept);
    let engine = wasmer::Engine::default();
    let module = Module::new(&engine, &wasm).unwrap();
    let mut bare = histogram();
    let mut kept = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let mut store = Store::new(engine.clone());
        let instance = Instance::new(&mut store, &module, &imports! {}).unwrap();
        bare.saturating_record(t.elapsed().as_nanos() as u64);
        kept.push((store, instance));
    }
    (ours, bare)
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * page
}

/// Resident bytes per live agent, for `count` agents made in this (fresh)
/// process: ours (`AgentInstance`: own store, host functions, metering) or
/// bare wasmer instances of the same module. Run in a child process of its
/// own (`caxton-bench --rss-probe`), so one kind's freed memory cannot hide
/// the other's.
/// Each agent handles one message first (an instance that never ran has
/// touched none of its memory): ours through `deliver`, the bare one by
/// writing the same envelope into its memory and calling its handler.
pub fn resident_probe(kind: &str, count: usize) -> f64 {
    let wasm = wasm("sink.wat");
    let envelope = BenchNode::message("a", "b", &[7u8; 64]);
    if kind == "distinct" {
        // Each agent its own module, as agents deployed over the API are
        // (docs/LIMITS.md's node-wide figure): its machine code counts too.
        let text = std::fs::read_to_string(agents_dir().join("sink.wat")).unwrap();
        let make = |i: usize| {
            let own = text.replacen("(memory (export \"memory\") 1)", &format!("(memory (export \"memory\") 1) (global i32 (i32.const {i}))"), 1);
            let compiled = compile(&wasmer::wat2wasm(own.as_bytes()).unwrap(), &AgentLimits::default()).unwrap();
            let mut a = AgentInstance::new(&compiled, "bench".into(), 0, 0, InstanceAccount::new(Default::default())).unwrap();
            a.start(&InCall::without_shard()).unwrap();
            assert_eq!(a.deliver(&InCall::without_shard(), envelope.as_bytes()), Outcome::Handled);
            (compiled, a)
        };
        let first = make(count + 1);
        let before = resident_bytes();
        let agents: Vec<_> = (0..count).map(make).collect();
        let per = (resident_bytes() - before) as f64 / count as f64;
        drop((first, agents));
        return per;
    }
    if kind == "ours" {
        let compiled = compile(&wasm, &AgentLimits::default()).unwrap();
        let make = |i: u32| {
            let mut a = AgentInstance::new(&compiled, "bench".into(), i, 0, InstanceAccount::new(Default::default())).unwrap();
            a.start(&InCall::without_shard()).unwrap();
            assert_eq!(a.deliver(&InCall::without_shard(), envelope.as_bytes()), Outcome::Handled);
            a
        };
        let first = make(0);
        let before = resident_bytes();
        let agents: Vec<_> = (0..count).map(|i| make(i as u32)).collect();
        let per = (resident_bytes() - before) as f64 / count as f64;
        drop((first, agents));
        per
    } else {
        let engine = wasmer::Engine::default();
        let module = Module::new(&engine, &wasm).unwrap();
        let make = || {
            let mut store = Store::new(engine.clone());
            let instance = Instance::new(&mut store, &module, &imports! {}).unwrap();
            let memory = instance.exports.get_memory("memory").unwrap();
            memory.view(&store).write(1024, envelope.as_bytes()).unwrap();
            let handle = instance.exports.get_typed_function::<(i32, i32), i32>(&store, "caxton_handle").unwrap();
            assert_eq!(handle.call(&mut store, 1024, envelope.len() as i32).unwrap(), 0);
            (store, instance)
        };
        let first = make();
        let before = resident_bytes();
        let bare: Vec<_> = (0..count).map(|_| make()).collect();
        let per = (resident_bytes() - before) as f64 / count as f64;
        drop((first, bare));
        per
    }
}

/// Nanoseconds per message handed to a trivial handler: refuel,
/// `caxton_alloc`, copy, `caxton_handle` (no queueing).
pub fn dispatch_ns(calls: usize) -> Histogram<u64> {
    handler_ns("sink.wat", true, calls)
}

/// Nanoseconds per message handed to the handler in `file`, with bulk
/// operations charged by length (`meter_bulk`, as in a node) or not (the
/// baseline that shows what charging them costs).
pub fn handler_ns(file: &str, meter_bulk: bool, calls: usize) -> Histogram<u64> {
    let compiled = compile(&wasm(file), &AgentLimits { meter_bulk, ..AgentLimits::default() }).unwrap();
    let mut agent = AgentInstance::new(&compiled, "bench".into(), 0, 0, InstanceAccount::new(Default::default())).unwrap();
    agent.start(&InCall::without_shard()).unwrap();
    let envelope = BenchNode::message("a", "b", &[7u8; 64]);
    let mut h = histogram();
    for _ in 0..1000 {
        agent.deliver(&InCall::without_shard(), envelope.as_bytes());
    }
    // Time batches of 100 so the clock's own cost stays out of the figure.
    for _ in 0..calls / 100 {
        let t = Instant::now();
        for _ in 0..100 {
            std::hint::black_box(agent.deliver(&InCall::without_shard(), envelope.as_bytes()));
        }
        h.saturating_record((t.elapsed().as_nanos() as u64 / 100).max(1));
    }
    h
}

/// Processing latency (dequeue to handler return) of three handlers in real
/// shards at a steady 10,000 messages per second: trivial, state-writing,
/// and replying.
pub fn processing(node: &BenchNode, cast: &Cast, duration: Duration) -> Vec<(&'static str, Latency)> {
    let n = node.shards.len();
    let writers: Vec<String> = (0..n).map(|s| node.name_on("writer", s)).collect();
    let echoes: Vec<String> = (0..n).map(|s| node.name_on("echo", s)).collect();
    for s in 0..n {
        node.deploy(&writers[s], &agents_dir().join("writer.wat"), 1);
        node.deploy(&echoes[s], &agents_dir().join("echo.wat"), 1);
    }
    let content = [b'v'; 200];
    let mut out = Vec::new();
    for (label, targets) in [("trivial handler", &cast.sink), ("handler writing state", &writers), ("handler sending a reply", &echoes)] {
        let before = node.stats();
        let handled_before: u64 = before.iter().map(|s| s.handled).sum();
        let (_, accepted) = node.drive(10, duration, |i, _| {
            let s = (i as usize) % n;
            // Replies go to the sink on the same shard.
            (s, BenchNode::message(&cast.sink[s], &targets[s], &content))
        });
        let extra = if label == "handler sending a reply" { accepted } else { 0 };
        node.wait_handled(handled_before + accepted + extra);
        let mut lat = Latency::default();
        for (now, then) in node.stats().iter().zip(&before) {
            // Only the shards' processing of this phase's target agents is
            // wanted; replies to sinks are trivial and are included for the
            // reply phase, which is why its figure is a mix (noted in the docs).
            lat.merge(&now.latencies.processing.since(&then.latencies.processing));
        }
        out.push((label, lat));
    }
    out
}

/// What two echoes bouncing messages off each other on every shard show.
pub struct EchoRun {
    /// Messages the echoes handled per second, all shards.
    pub handled_per_s: f64,
    /// Dequeue to handler return, for each of those messages.
    pub processing: Latency,
}

/// Messages in flight per pair of echoes: enough to keep a shard busy.
const ECHO_BALLS: usize = 64;

/// Two instances of the echo in `module` for every shard, each replying to
/// the other forever once `ECHO_BALLS` messages are thrown in: handlers,
/// routing and nothing from outside the node. `cross`: the two of a pair
/// live on different shards (every message crosses), else on the same one.
/// Every message handled counts, each one a call into a WebAssembly handler
/// that sends one. The same run for the hand-written echo and the SDK's
/// compares their per-message cost.
pub fn echo_pingpong(node: &BenchNode, tag: &str, module: &std::path::Path, cross: bool, duration: Duration) -> EchoRun {
    echo_pingpong_sized(node, tag, module, cross, 64, duration)
}

/// [`echo_pingpong`] with `content_bytes` of content in each message (past
/// the per-thread buffer pool's 512-byte buffers, envelopes come from the
/// heap).
pub fn echo_pingpong_sized(node: &BenchNode, tag: &str, module: &std::path::Path, cross: bool, content_bytes: usize, duration: Duration) -> EchoRun {
    let n = node.shards.len();
    let content = vec![7u8; content_bytes];
    let tag = if cross { format!("{tag}-x") } else { tag.to_string() };
    let pong_shard = |s: usize| if cross { (s + 1) % n } else { s };
    let pings: Vec<String> = (0..n).map(|s| node.name_on(&format!("{tag}-ping"), s)).collect();
    let pongs: Vec<String> = (0..n).map(|s| node.name_on(&format!("{tag}-pong"), pong_shard(s))).collect();
    for s in 0..n {
        node.deploy(&pings[s], module, 1);
        node.deploy(&pongs[s], module, 1);
    }
    for s in 0..n {
        let balls = (0..ECHO_BALLS).map(|_| BenchNode::message(&pings[s], &pongs[s], &content)).collect();
        assert_eq!(node.inject(pong_shard(s), balls), ECHO_BALLS);
    }
    std::thread::sleep(duration / 10);
    let before = node.stats();
    let t = Instant::now();
    std::thread::sleep(duration);
    let after = node.stats();
    let elapsed = t.elapsed().as_secs_f64();
    let mut processing = Latency::default();
    let mut handled = 0;
    for (now, then) in after.iter().zip(&before) {
        processing.merge(&now.latencies.processing.since(&then.latencies.processing));
        handled += now.handled - then.handled;
    }
    for s in 0..n {
        node.undeploy(&pings[s]);
        node.undeploy(&pongs[s]);
    }
    EchoRun { handled_per_s: handled as f64 / elapsed, processing }
}

/// Milliseconds `compile` takes for `module` (median of `runs`).
pub fn compile_ms(module: &[u8], runs: usize) -> f64 {
    let limits = AgentLimits::default();
    let mut took: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(compile(module, &limits).unwrap());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    took.sort_by(f64::total_cmp);
    took[took.len() / 2]
}
