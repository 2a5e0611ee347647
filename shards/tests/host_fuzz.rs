//! A fuzzer of the host interface (issue 25): generated modules call every
//! host and WASI function the node declares, with arbitrary arguments, from
//! every way into guest code (the start function, `caxton_abi_version`,
//! `caxton_init` and the handler), and run on a real shard: deployed,
//! messaged, upgraded, then restored by a new shard over the same data.
//!
//! Oracle:
//! 1. Nothing panics, on the shard or here (a panic hook records any).
//! 2. Every result is a documented code: the module checks each call's
//!    result and traps if it is not one (caxton's: a count, or -1 to -6;
//!    WASI's: the errnos `wasi.rs` returns), so a crash counted by the shard
//!    is an undocumented result. Timeouts (fuel) and exits are not crashes.
//! 3. No call takes long: the slowest handler of the run stays within a
//!    bound of a few slices (a host call priced far below its work would
//!    hold the shard for many).
//! 4. What a module leaves behind is bounded: the shard's timers, and this
//!    process's resident memory over the whole run.
//!
//! `make test` runs a few cases from a fixed seed; `make fuzz` runs many
//! from a fresh one (a hundredth of `CAXTON_FUZZ_CASES`; `CAXTON_FUZZ_SEED`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caxton_shards::agent::imports::{host_functions, IMPORT_MODULE};
use caxton_shards::agent::wasi::errno;
use caxton_shards::agent::{compile, AgentLimits, CompiledAgent};
use caxton_shards::command::{Reply, RestartPolicy};
use caxton_shards::executor::{self, allowed_cpus, ShardHandle, ShardsConfig};
use caxton_shards::limits::TIMERS_PER_INSTANCE_MAX;
use caxton_shards::{Command, Header, Message, ShardStats};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use wasmer::Type;

/// Oracle 3: the slowest handler a run may see. Ten slices: loose enough
/// for a noisy machine, far below what an unpriced call costs (a 1 MiB
/// `random_get` loop held a shard 51 slices).
const HANDLER_MS_MAX: u64 = 100;

/// Panics seen on any thread (oracle 1).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn watch_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.lock().unwrap_or_else(|e| e.into_inner()).push(info.to_string());
            previous(info);
        }));
    });
}

fn no_panics() {
    let seen = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    assert!(seen.is_empty(), "a panic: {seen:?}");
}

/// Sends a command to a shard and waits for its answer (oracle 1: a shard
/// that died does not answer, which is a failure, not a hang).
fn ask<T: Send + 'static>(shard: &ShardHandle, make: impl FnOnce(Reply<T>) -> Command) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let mut command = make(Box::new(move |v| {
        let _ = tx.send(v);
    }));
    loop {
        match shard.send(command) {
            Ok(()) => break,
            Err(back) => {
                command = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let answer = rx.recv_timeout(Duration::from_secs(30));
    no_panics();
    answer.expect("the shard answers within 30 s")
}

// ------------------------------------------------------------ generators

/// An argument: values that hit edges (zero, small pointers, the end of a
/// page, lengths past memory, negatives) more often than chance would.
fn arg(ty: Type) -> BoxedStrategy<String> {
    let i32s = prop_oneof![
        3 => prop::sample::select(vec![0i32, 1, 3, 8, 16, 64, 100, 1024, 4096, 65_535, 65_536, 65_537, 131_072, 1 << 20, -1, -8, i32::MAX, i32::MIN]),
        2 => 0i32..70_000,
        1 => any::<i32>(),
    ];
    match ty {
        Type::I32 => i32s.prop_map(|v| format!("(i32.const {v})")).boxed(),
        _ => prop_oneof![
            2 => prop::sample::select(vec![0i64, 1, 10, 1000, 3_600_000, -1, i64::MAX, i64::MIN]),
            1 => any::<i64>(),
        ]
        .prop_map(|v| format!("(i64.const {v})"))
        .boxed(),
    }
}

/// One host call, its result checked (oracle 2), as WAT.
fn call() -> BoxedStrategy<String> {
    let decls: Vec<_> = host_functions().enumerate().collect();
    prop::sample::select((0..decls.len()).collect::<Vec<_>>())
        .prop_flat_map(move |i| {
            let decl = decls[i].1;
            let ty = decl.function_type();
            let args: Vec<BoxedStrategy<String>> = ty.params().iter().map(|t| arg(*t)).collect();
            let (module, results) = (decl.module, ty.results().to_vec());
            args.prop_map(move |args| {
                let call = format!("(call $f{i} {})", args.join(" "));
                match (results.first(), module == IMPORT_MODULE) {
                    (None, _) => call,
                    (Some(Type::I32), true) => format!("(if (i32.lt_s {call} (i32.const -6)) (then unreachable))"),
                    (Some(Type::I32), false) => format!("(if (i32.eqz (call $errno_ok {call})) (then unreachable))"),
                    // timer_set's id or code; now_micros' time or code.
                    (Some(_), _) => format!("(if (i64.lt_s {call} (i64.const -6)) (then unreachable))"),
                }
            })
        })
        .boxed()
}

fn calls(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(call(), 0..max)
}

/// A module whose start function, `caxton_abi_version`, `caxton_init` and
/// handler each make the calls given.
#[derive(Debug, Clone)]
struct Module {
    start: Vec<String>,
    abi_version: Vec<String>,
    version: u8,
    init: Vec<String>,
    handle: Vec<String>,
    data: Vec<u8>,
}

fn module() -> impl Strategy<Value = Module> {
    (calls(4), calls(4), 1u8..=2, calls(6), calls(12), prop::collection::vec(any::<u8>(), 0..64))
        .prop_map(|(start, abi_version, version, init, handle, data)| Module { start, abi_version, version, init, handle, data })
}

impl Module {
    fn wat(&self) -> String {
        let imports: String = host_functions()
            .enumerate()
            .map(|(i, d)| {
                let ty = d.function_type();
                let list = |ts: &[Type]| ts.iter().map(|t| if *t == Type::I32 { "i32" } else { "i64" }).collect::<Vec<_>>().join(" ");
                let results = if ty.results().is_empty() { String::new() } else { format!(" (result {})", list(ty.results())) };
                format!("(import \"{}\" \"{}\" (func $f{i} (param {}){results}))\n", d.module, d.name, list(ty.params()))
            })
            .collect();
        let ok: String = [errno::SUCCESS, errno::AGAIN, errno::BADF, errno::FAULT, errno::INVAL, errno::NOSYS, errno::NOTDIR, errno::NOTSUP, errno::SPIPE]
            .iter()
            .map(|e| format!("(i32.eq (local.get 0) (i32.const {e}))"))
            .reduce(|a, b| format!("(i32.or {a} {b})"))
            .unwrap();
        let data: String = self.data.iter().map(|b| format!("\\{b:02x}")).collect();
        format!(
            r#"(module {imports}
  (memory (export "memory") 2 4)
  (data (i32.const 0) "{data}")
  (func $errno_ok (param i32) (result i32) {ok})
  (func $start {start}) (start $start)
  (func (export "caxton_abi_version") (result i32) {abi} (i32.const {version}))
  (func (export "caxton_init") (result i32) {init} (i32.const 0))
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "caxton_handle") (param i32 i32) (result i32) {handle} (i32.const 0)))"#,
            start = self.start.join(" "),
            abi = self.abi_version.join(" "),
            version = self.version,
            init = self.init.join(" "),
            handle = self.handle.join(" "),
        )
    }
}

// ------------------------------------------------------------ the run

/// A shard over `dir`; `restoring` as a restarted node's are.
fn shard(dir: &Path, restoring: bool) -> ShardHandle {
    let cpus = vec![allowed_cpus()[0]];
    let config = ShardsConfig {
        cpus,
        data_dir: dir.to_path_buf(),
        storage: Default::default(),
        boot_epoch: 1,
        tuning: Default::default(),
        link: None,
        disk: caxton_shards::storage::DiskFloor::unchecked(),
        spans: None,
        restoring,
    };
    executor::start(config, caxton_shards::runtime_outbox::RuntimeOutbox::consuming(drop)).expect("a shard starts").remove(0)
}

fn stop(mut shard: ShardHandle) {
    ask(&shard, |reply| Command::Stop { reply });
    shard.join();
}

fn deploy(shard: &ShardHandle, name: &str, module: &CompiledAgent, restore: bool) -> Result<(), String> {
    // Every crash counts, and none stops the instance being made again.
    let policy = RestartPolicy { immediate: u32::MAX, quarantine_after: u32::MAX, ..RestartPolicy::default() };
    let name: Arc<str> = name.into();
    ask(shard, |reply| Command::Deploy { name, module: module.clone(), instances: 1, restore, policy, reply }).map(drop)
}

fn stats(shard: &ShardHandle) -> ShardStats {
    ask(shard, |reply| Command::ShardStats { instances_max: Some(usize::MAX), reply })
}

/// Sends `count` messages to `name` and waits until the shard has dealt
/// with them (handled, or failed back: a timeout, an exit, a crash) and
/// holds none.
fn message(shard: &ShardHandle, name: &str, count: usize) {
    let messages: Vec<Message> =
        (0..count).map(|i| Message::encode(&Header { conversation_id: i as u64, ..Header::default() }, b"fuzz", name.as_bytes(), b"go").unwrap()).collect();
    let refused = ask(shard, |reply| Command::Inject { messages, reply });
    assert!(refused.len() <= count);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ask(shard, |reply| Command::Pending { reply }) > 0 {
        assert!(Instant::now() < deadline, "{name}: messages not dealt with in 30 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// One case: deploy `m`, message it, upgrade it to `next`, then restore it
/// on a new shard over the same data and message it again. Checks the
/// oracle after each step.
fn run(m: &Module, next: &Module) {
    let limits = AgentLimits::default();
    let compiled = compile(&wasmer::wat2wasm(m.wat().as_bytes()).expect("the generator writes valid text"), &limits).expect("every generated module compiles");
    let upgraded = compile(&wasmer::wat2wasm(next.wat().as_bytes()).unwrap(), &limits).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let check = |shard: &ShardHandle, when: &str| {
        let s = stats(shard);
        assert_eq!(s.crashes, 0, "{when}: an undocumented result (the module trapped):\n{}", m.wat());
        assert!(s.timers_scheduled <= TIMERS_PER_INSTANCE_MAX, "{when}: {} timers queued", s.timers_scheduled);
        let slowest_ms = s.latencies.processing.quantile_ns(1.0) / 1_000_000;
        assert!(slowest_ms <= HANDLER_MS_MAX, "{when}: a handler took {slowest_ms} ms:\n{}", m.wat());
    };
    let shard1 = shard(dir.path(), false);
    // A start may fail (an exit, its fuel), never with a trap of ours.
    if let Err(e) = deploy(&shard1, "fuzz", &compiled, false) {
        assert!(!e.contains("unreachable"), "an undocumented result while starting: {e}\n{}", m.wat());
        stop(shard1);
        return;
    }
    message(&shard1, "fuzz", 3);
    check(&shard1, "handled");
    let mut current = &compiled;
    match ask(&shard1, |reply| Command::UpgradePrepare { name: "fuzz".into(), module: upgraded.clone(), reply }) {
        Err(e) => assert!(!e.contains("unreachable"), "an undocumented result in an upgrade's trial: {e}\n{}", next.wat()),
        Ok(()) => {
            current = &upgraded;
            if let Err(e) = ask(&shard1, |reply| Command::UpgradeCommit { name: "fuzz".into(), module: upgraded.clone(), reply }) {
                assert!(!e.contains("unreachable"), "an undocumented result while upgrading: {e}");
            }
            message(&shard1, "fuzz", 2);
            check(&shard1, "upgraded");
        }
    }
    stop(shard1);
    // A restarted node: restore (an instance that cannot start is
    // quarantined, never an error), then serve (timers may fire then).
    let shard2 = shard(dir.path(), true);
    deploy(&shard2, "fuzz", current, true).expect("a restore never fails the node");
    ask(&shard2, |reply| Command::Serve { reply });
    message(&shard2, "fuzz", 2);
    check(&shard2, "restored");
    stop(shard2);
}

/// Twelve modules in `make test`; in `make fuzz`, a hundredth of its
/// cases (each module starts two shards and runs three phases: 2,000 by
/// default, about an hour here).
fn config() -> proptest::test_runner::Config {
    let mut config = caxton_cluster::fuzz::config(12);
    if std::env::var_os("CAXTON_FUZZ_CASES").is_some() {
        config.cases = (config.cases / 100).max(12);
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_host_interface(m in module(), next in module()) {
        watch_panics();
        run(&m, &next);
    }
}

/// Oracle 4 over many modules: the process does not keep what they left.
#[test]
fn fuzz_host_interface_leaves_memory_bounded() {
    watch_panics();
    let mut runner = proptest::test_runner::TestRunner::new(caxton_cluster::fuzz::config(24));
    let strategy = (module(), module());
    let warm = strategy.new_tree(&mut runner).unwrap().current();
    run(&warm.0, &warm.1);
    let before = resident_bytes();
    for _ in 0..24 {
        let (m, next) = strategy.new_tree(&mut runner).unwrap().current();
        run(&m, &next);
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 256 << 20, "resident memory grew {} MiB over 24 cases", grown >> 20);
}
