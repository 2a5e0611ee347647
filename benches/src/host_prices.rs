//! What each host call costs against what its fuel pays for (issue 25):
//! for every host and WASI function, an agent calls it in a loop that never
//! ends, with the arguments that make it work hardest, on a real shard. The
//! call stops when its fuel is gone; if the prices are right, that takes one
//! execution slice of wall time whatever the function. The ratio printed is
//! the wall time of such a call over the slice: work done ÷ work paid for.
//! The goal is at most about 2 (the loop's own operators are priced at the
//! calibrated rate, so a ratio near 1 means the host call's price is right).
//!
//! Each case's handler runs on a node of one shard, under a restart policy
//! that recreates the instance at once however often it times out, with a
//! tracing subscriber writing every agent log line that passes its budget
//! to a file, as a node writes its log.

use std::path::Path;
use std::time::Duration;

use caxton_shards::agent::AgentLimits;
use caxton_shards::command::RestartPolicy;

use crate::node::BenchNode;

/// One function and the arguments that make it work hardest.
pub struct Case {
    pub function: &'static str,
    /// What the case does, and what the price is proportional to.
    pub what: &'static str,
    /// The module's imports.
    imports: &'static str,
    /// Run once by `caxton_init` (data the loop needs).
    init: &'static str,
    /// The loop's body: one call, its result dropped.
    call: &'static str,
}

/// A measured case.
pub struct Priced {
    pub function: &'static str,
    pub what: &'static str,
    /// Median wall time of a call that burnt its whole slice, in ms.
    pub slice_wall_ms: f64,
    /// That over the slice.
    pub ratio: f64,
}

const CAXTON: &str = r#"(import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (import "caxton" "state_get" (func $state_get (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "state_put" (func $state_put (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "state_delete" (func $state_delete (param i32 i32) (result i32)))
  (import "caxton" "now_micros" (func $now (result i64)))
  (import "caxton" "log" (func $log (param i32 i32 i32)))
  (import "caxton" "timer_set" (func $timer_set (param i64 i32 i32) (result i64)))
  (import "caxton" "timer_cancel" (func $timer_cancel (param i64) (result i32)))"#;

const WASI: &str = r#"(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"#;

/// A version 1 envelope to `echo` from address 256, `len` bytes of content
/// at 300 (the node fills in the sender).
const ENVELOPE_TO_ECHO: &str = "(i32.store8 (i32.const 256) (i32.const 1)) (i32.store8 (i32.const 257) (i32.const 1))
    (i32.store8 (i32.const 293) (i32.const 4)) (i32.store (i32.const 300) (i32.const 0x6f686365))";

/// Fills 8 MiB from 1 MiB with "a\n", and the iovec at 0 names it.
const LINES: &str = "(local.set $i (i32.const 1048576))
    (loop $f (i32.store (local.get $i) (i32.const 0x0a610a61)) (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br_if $f (i32.lt_u (local.get $i) (i32.const 9437184))))
    (i32.store (i32.const 0) (i32.const 1048576)) (i32.store (i32.const 4) (i32.const 8388608))";

/// 1,024 iovecs at 4096 naming the same 4 KiB of "a" (no newline).
const BYTES: &str = "(local.set $i (i32.const 0))
    (loop $f (i32.store (i32.add (i32.const 4096) (i32.mul (local.get $i) (i32.const 8))) (i32.const 65536))
      (i32.store (i32.add (i32.const 4100) (i32.mul (local.get $i) (i32.const 8))) (i32.const 4096))
      (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $f (i32.lt_u (local.get $i) (i32.const 1024))))
    (memory.fill (i32.const 65536) (i32.const 97) (i32.const 4096))";

/// Puts a value of 1 MiB (from 1 MiB) under key "big" at 16.
const BIG_VALUE: &str =
    r#"(i32.store (i32.const 16) (i32.const 0x00676962)) (drop (call $state_put (i32.const 16) (i32.const 3) (i32.const 1048576) (i32.const 1048576)))"#;

/// Every case, in the order of docs/LIMITS.md's price table.
pub fn cases() -> Vec<Case> {
    vec![
        Case { function: "send", what: "64 B to an agent (routed, reserved, staged)", imports: CAXTON, init: ENVELOPE_TO_ECHO, call: "(drop (call $send (i32.const 256) (i32.const 108)))" },
        Case { function: "send", what: "to no one (refused after the lookup)", imports: CAXTON, init: "(i32.store8 (i32.const 256) (i32.const 1)) (i32.store8 (i32.const 293) (i32.const 6)) (i32.store (i32.const 300) (i32.const 0x6f626f6e)) (i32.store16 (i32.const 304) (i32.const 0x7964))", call: "(drop (call $send (i32.const 256) (i32.const 50)))" },
        Case { function: "send", what: "1 MiB to an agent (bytes copied)", imports: CAXTON, init: "(i32.store8 (i32.const 256) (i32.const 1)) (i32.store8 (i32.const 257) (i32.const 1)) (i32.store8 (i32.const 293) (i32.const 4)) (i32.store (i32.const 296) (i32.const 1048576)) (i32.store (i32.const 300) (i32.const 0x6f686365))", call: "(drop (call $send (i32.const 256) (i32.const 1048624)))" },
        Case { function: "state_get", what: "a 1 MiB value into 0 bytes (the value read)", imports: CAXTON, init: BIG_VALUE, call: "(drop (call $state_get (i32.const 16) (i32.const 3) (i32.const 0) (i32.const 0)))" },
        Case { function: "state_get", what: "a 1 MiB value into 1 MiB (read and copied)", imports: CAXTON, init: BIG_VALUE, call: "(drop (call $state_get (i32.const 16) (i32.const 3) (i32.const 1048576) (i32.const 1048576)))" },
        Case { function: "state_get", what: "a missing key (a lookup)", imports: CAXTON, init: "", call: "(drop (call $state_get (i32.const 16) (i32.const 3) (i32.const 0) (i32.const 0)))" },
        Case { function: "state_put", what: "16 B under one key (a row written)", imports: CAXTON, init: "", call: "(drop (call $state_put (i32.const 16) (i32.const 3) (i32.const 64) (i32.const 16)))" },
        Case { function: "state_put", what: "1 MiB replacing 1 MiB (bytes stored and freed)", imports: CAXTON, init: BIG_VALUE, call: "(drop (call $state_put (i32.const 16) (i32.const 3) (i32.const 1048576) (i32.const 1048576)))" },
        Case { function: "state_delete", what: "1 MiB put, then deleted (bytes freed)", imports: CAXTON, init: "", call: "(drop (call $state_put (i32.const 16) (i32.const 3) (i32.const 1048576) (i32.const 1048576))) (drop (call $state_delete (i32.const 16) (i32.const 3)))" },
        Case { function: "timer_set", what: "set and cancelled (rows written)", imports: CAXTON, init: "", call: "(drop (call $timer_cancel (call $timer_set (i64.const 3600000) (i32.const 0) (i32.const 64))))" },
        Case { function: "log", what: "a 4 KiB line (budget, then dropped)", imports: CAXTON, init: "(memory.fill (i32.const 1024) (i32.const 97) (i32.const 4096))", call: "(call $log (i32.const 2) (i32.const 1024) (i32.const 4096))" },
        Case { function: "log", what: "a 1-byte line", imports: CAXTON, init: "", call: "(call $log (i32.const 2) (i32.const 1024) (i32.const 1))" },
        Case { function: "now_micros", what: "the clock", imports: CAXTON, init: "", call: "(drop (call $now))" },
        Case { function: "fd_write", what: "8 MiB of \"a\\n\" (lines ended)", imports: WASI, init: LINES, call: "(drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))" },
        Case { function: "fd_write", what: "1,024 buffers of 4 KiB, no newline (bytes)", imports: WASI, init: BYTES, call: "(drop (call $fd_write (i32.const 1) (i32.const 4096) (i32.const 1024) (i32.const 16)))" },
        Case { function: "fd_write", what: "to a descriptor that does not exist", imports: WASI, init: "", call: "(drop (call $fd_write (i32.const 9) (i32.const 0) (i32.const 1) (i32.const 16)))" },
        Case { function: "fd_read", what: "standard input, 1,024 buffers", imports: WASI, init: BYTES, call: "(drop (call $fd_read (i32.const 0) (i32.const 4096) (i32.const 1024) (i32.const 16)))" },
        Case { function: "random_get", what: "1 MiB (bytes)", imports: WASI, init: "", call: "(drop (call $random (i32.const 1048576) (i32.const 1048576)))" },
        Case { function: "random_get", what: "16 B", imports: WASI, init: "", call: "(drop (call $random (i32.const 64) (i32.const 16)))" },
        Case { function: "clock_time_get", what: "realtime", imports: WASI, init: "", call: "(drop (call $clock (i32.const 0) (i64.const 1) (i32.const 64)))" },
        Case { function: "environ_sizes_get", what: "two words written", imports: WASI, init: "", call: "(drop (call $environ_sizes (i32.const 64) (i32.const 72)))" },
        Case { function: "fd_fdstat_get", what: "24 bytes written", imports: WASI, init: "", call: "(drop (call $fdstat (i32.const 1) (i32.const 64)))" },
        Case { function: "fd_prestat_get", what: "no preopen (EBADF)", imports: WASI, init: "", call: "(drop (call $prestat (i32.const 3) (i32.const 64)))" },
        Case { function: "sched_yield", what: "returns at once", imports: WASI, init: "", call: "(drop (call $yield))" },
        Case { function: "path_open", what: "any other function (ENOSYS)", imports: WASI, init: "", call: "(drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 4) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 72)))" },
    ]
}

/// The module of a case: `caxton_init` runs `init`, every message runs
/// `call` until the fuel is gone.
fn module(case: &Case) -> Vec<u8> {
    let wat = format!(
        r#"(module {imports}
  (memory (export "memory") 145)
  (func (export "caxton_init") (result i32) (local $i i32) {init} (i32.const 0))
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 32768))
  (func (export "caxton_handle") (param i32 i32) (result i32) (loop $l {call} (br $l)) (i32.const 0)))"#,
        imports = case.imports,
        init = case.init,
        call = case.call
    );
    wasmer::wat2wasm(wat.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", case.function)).into_owned()
}

/// Measures every case on `node` (one shard): `calls` timed-out calls each.
pub fn measure(node: &BenchNode, echo: &Path, calls: usize) -> Vec<Priced> {
    let limits = AgentLimits::default();
    let slice_ms = limits.execution_time_slice_ms as f64;
    let forever = RestartPolicy { immediate: u32::MAX, quarantine_after: u32::MAX, ..RestartPolicy::default() };
    node.deploy("echo", echo, 1);
    let mut out = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        let name = format!("price-{i}");
        node.deploy_wasm(&name, &module(case), 1, forever, &limits);
        let mut walls = Vec::with_capacity(calls);
        for _ in 0..calls {
            let before = node.stats();
            let timeouts = |s: &[caxton_shards::ShardStats]| s.iter().map(|s| s.timeouts).sum::<u64>();
            let shard = node.shard_of(&name);
            assert_eq!(node.inject(shard, vec![BenchNode::message("bench", &name, b"go")]), 1);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while timeouts(&node.stats()) == timeouts(&before) {
                assert!(std::time::Instant::now() < deadline, "{}: no timeout within 30 s", case.function);
                std::thread::sleep(Duration::from_millis(2));
            }
            let lat = node.latencies_since(&before);
            walls.push(lat[shard].processing.quantile_ns(1.0) as f64 / 1e6);
        }
        node.undeploy(&name);
        let wall = crate::median(walls);
        out.push(Priced { function: case.function, what: case.what, slice_wall_ms: wall, ratio: wall / slice_ms });
    }
    node.undeploy("echo");
    out
}

/// The table for docs/BENCHMARKS.md.
pub fn markdown(rows: &[Priced]) -> String {
    let mut s =
        String::from("| host call | the case (what its price is proportional to) | wall time of a slice burnt on it | work ÷ paid |\n|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!("| `{}` | {} | {:.1} ms | {:.2} |\n", r.function, r.what, r.slice_wall_ms, r.ratio));
    }
    s
}
