//! How many fuel points (WebAssembly operators) a metered agent burns per
//! millisecond here: the basis of `FUEL_PER_MS`, which turns the execution
//! time slice into fuel. Runs a counting loop and a memory-touching loop
//! under metering and prints points per ms beside the unmetered time of the
//! same loop (the metering's own cost).
//!
//! Then every host and WASI function, each in a loop that burns a whole
//! slice on it with the arguments that make it work hardest, on a real
//! shard (`caxton_benches::host_prices`): the wall time of that slice over
//! the slice is the work the call does over the work its fuel pays for.
//!
//! Run: `cargo run --release -p caxton-benches --bin fuel_calibration`.

use std::time::Instant;

use caxton_benches::{median, small};
use caxton_shards::agent::host::InstanceAccount;
use caxton_shards::agent::{compile, AgentInstance, AgentLimits, InCall, Outcome};
use caxton_shards::envelope::{Header, Message};

/// Loops, with the number of iterations they run (a fraction of the
/// plain loops' for the bulk ones, which do far more per iteration).
const LOOPS: [(&str, &str, u32); 6] = [
    ("counting loop", "(local.set $i (i32.add (local.get $i) (i32.const 1)))", 1),
    ("memory loop", "(i32.store (i32.and (local.get $i) (i32.const 4092)) (i32.add (i32.load (i32.and (local.get $i) (i32.const 4092))) (local.get $i))) (local.set $i (i32.add (local.get $i) (i32.const 1)))", 1),
    ("fill 8 MB", "(memory.fill (i32.const 0) (local.get $i) (i32.const 8000000)) (local.set $i (i32.add (local.get $i) (i32.const 1)))", 20_000),
    ("copy 8 MB", "(memory.copy (i32.const 1000000) (i32.const 0) (i32.const 8000000)) (local.set $i (i32.add (local.get $i) (i32.const 1)))", 20_000),
    ("copy 64 B", "(memory.copy (i32.and (local.get $i) (i32.const 4032)) (i32.const 8192) (i32.const 64)) (local.set $i (i32.add (local.get $i) (i32.const 1)))", 20),
    ("copy 4 KiB", "(memory.copy (i32.const 65536) (i32.const 8192) (i32.const 4096)) (local.set $i (i32.add (local.get $i) (i32.const 1)))", 200),
];

fn module(body: &str, iterations: u32) -> String {
    let body = body.replace("{iterations}", &iterations.to_string());
    format!(
        r#"(module (memory (export "memory") 150)
          (func (export "caxton_alloc") (param i32) (result i32) (i32.const 8192))
          (func (export "caxton_handle") (param i32 i32) (result i32) (local $i i32)
            (loop $l {body} (br_if $l (i32.lt_u (local.get $i) (i32.const {iterations}))))
            (i32.const 0)))"#
    )
}

fn main() {
    let iterations = if small() { 100_000 } else { 20_000_000 };
    let runs = if small() { 3 } else { 7 };
    let envelope = Message::encode(&Header::default(), b"a", b"b", b"x").unwrap();
    println!("{:<16} {:>14} {:>14} {:>12}", "loop", "points per ms", "ms per run", "points");
    for (name, body, divide) in LOOPS {
        let wasm = wasmer::wat2wasm(module(body, (iterations / divide).max(1)).as_bytes()).unwrap().into_owned();
        let limits = AgentLimits { execution_time_slice_ms: 1_000_000, ..AgentLimits::default() };
        let compiled = compile(&wasm, &limits).unwrap();
        let mut agent = AgentInstance::new(&compiled, "bench".into(), 0, 0, InstanceAccount::new(Default::default())).unwrap();
        agent.start(&InCall::without_shard()).unwrap();
        let mut per_ms = Vec::new();
        let mut ms = Vec::new();
        let mut points = 0;
        for _ in 0..runs {
            let t = Instant::now();
            assert_eq!(agent.deliver(&InCall::without_shard(), envelope.as_bytes()), Outcome::Handled);
            let elapsed = t.elapsed().as_secs_f64() * 1e3;
            points = agent.fuel_used();
            per_ms.push(points as f64 / elapsed);
            ms.push(elapsed);
        }
        println!("{:<16} {:>14.0} {:>14.2} {:>12}", name, median(per_ms), median(ms), points);
    }
    // The worst case: a loop of one operator per metered block, run until
    // its fuel is gone (a runaway handler).
    let spin = r#"(module (memory (export "memory") 1)
        (func (export "caxton_alloc") (param i32) (result i32) (i32.const 8192))
        (func (export "caxton_handle") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0)))"#;
    let wasm = wasmer::wat2wasm(spin.as_bytes()).unwrap().into_owned();
    let limits = AgentLimits { execution_time_slice_ms: 10, ..AgentLimits::default() };
    let compiled = compile(&wasm, &limits).unwrap();
    let mut agent = AgentInstance::new(&compiled, "bench".into(), 0, 0, InstanceAccount::new(Default::default())).unwrap();
    agent.start(&InCall::without_shard()).unwrap();
    let mut ms = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        assert_eq!(agent.deliver(&InCall::without_shard(), envelope.as_bytes()), Outcome::Timeout);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        agent = AgentInstance::new(&compiled, "bench".into(), 0, 0, InstanceAccount::new(Default::default())).unwrap();
        agent.start(&InCall::without_shard()).unwrap();
    }
    let ms = median(ms);
    println!(
        "{:<16} {:>14.0} {:>14.2} {:>12}   (a 10 ms slice, run to its end)",
        "runaway loop",
        limits.fuel_per_call() as f64 / ms,
        ms,
        limits.fuel_per_call()
    );
    println!("FUEL_PER_MS = {} (shards/src/limits.rs)", caxton_shards::limits::FUEL_PER_MS);
    println!("BULK_FUEL_PER_KIB = {}: a bulk loop above must burn at least FUEL_PER_MS points per ms", caxton_shards::limits::BULK_FUEL_PER_KIB);
    // A state_put's own cost: SQLite storing values of 1 MiB, per KiB.
    let dir = tempfile::tempdir().unwrap();
    let mut store = caxton_shards::storage::ShardStore::open(&caxton_shards::storage::shard_db_path(dir.path(), 0), &Default::default()).unwrap();
    let value = vec![7u8; 1 << 20];
    let mut us_per_kib = Vec::new();
    for run in 0..runs {
        let t = Instant::now();
        for i in 0..16u32 {
            store.put("bench", 0, &(run as u32 * 100 + i).to_le_bytes(), &value).unwrap();
        }
        store.commit().unwrap();
        us_per_kib.push(t.elapsed().as_secs_f64() * 1e6 / (16.0 * 1024.0));
    }
    let us = median(us_per_kib);
    println!(
        "state_put of 1 MiB values: {us:.3} µs per KiB = {:.0} points per KiB at FUEL_PER_MS; STATE_FUEL_PER_KIB = {}",
        us * caxton_shards::limits::FUEL_PER_MS as f64 / 1000.0,
        caxton_shards::limits::STATE_FUEL_PER_KIB
    );
    // Host calls: work done over work paid for (caxton_benches::host_prices).
    let log = tempfile::NamedTempFile::new().unwrap();
    let writer = std::sync::Mutex::new(log.reopen().unwrap());
    let _log = tracing::subscriber::set_default(tracing_subscriber::fmt().json().with_writer(writer).finish());
    let node = caxton_benches::node::BenchNode::start(1);
    let echo = caxton_benches::routing::agents_dir().join("echo.wat");
    let priced = caxton_benches::host_prices::measure(&node, &echo, if small() { 3 } else { 7 });
    println!("\n{}", caxton_benches::host_prices::markdown(&priced));
    let worst = priced.iter().map(|p| p.ratio).fold(0.0, f64::max);
    println!("worst ratio {worst:.2} (the goal: at most about 2)");
}
