//! Does a WAL checkpoint stall a shard? A shard-like writer commits a batch
//! of state writes every tick; we measure each tick's commit time:
//! - baseline: no checkpoints at all;
//! - ours: the checkpointer thread runs PASSIVE checkpoints beside it;
//! - rejected: SQLite's autocheckpoint on the writer's own thread.
//!
//! Run: `cargo run --release -p caxton-benches --bin checkpoint_stall`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_benches::{histogram, small, summary_us};
use caxton_shards::storage::{checkpoint_once, shard_db_path, ShardStore, StorageConfig};

const RECORDS_PER_TICK: usize = 100;
const VALUE_BYTES: usize = 200;

fn run(mode: &str, ticks: usize) -> [f64; 4] {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_db_path(dir.path(), 0);
    let mut store = ShardStore::open(&path, &StorageConfig::default()).unwrap();
    if mode == "autocheckpoint" {
        store.set_autocheckpoint_pages(1000).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let checkpointer = (mode == "checkpointer").then(|| {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // Far more often than the 10 s default, to give stalls every chance.
                std::thread::sleep(Duration::from_millis(20));
                checkpoint_once(&conn, &path, u64::MAX);
                n += 1;
            }
            n
        })
    });
    let value = [7u8; VALUE_BYTES];
    let mut h = histogram();
    for tick in 0..ticks {
        let t = Instant::now();
        for r in 0..RECORDS_PER_TICK {
            let key = ((tick * RECORDS_PER_TICK + r) % 50_000) as u32;
            store.put("agent", 0, &key.to_le_bytes(), &value).unwrap();
        }
        store.commit().unwrap();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(c) = checkpointer {
        let n = c.join().unwrap();
        assert!(n > 0, "the checkpointer never ran");
    }
    summary_us(&h)
}

fn main() {
    let ticks = if small() { 200 } else { 5_000 };
    println!("tick time (writes and commit), {RECORDS_PER_TICK} records of {VALUE_BYTES} B per tick, {ticks} ticks (µs)");
    println!("{:<34} {:>9} {:>9} {:>9} {:>9}", "mode", "p50", "p99", "p99.9", "max");
    let base = run("none", ticks);
    for (mode, label) in [("none", "baseline: no checkpoints"), ("checkpointer", "ours: PASSIVE on its own thread"), ("autocheckpoint", "rejected: autocheckpoint on writer")] {
        let s = if mode == "none" { base } else { run(mode, ticks) };
        println!("{:<34} {:>9.1} {:>9.1} {:>9.1} {:>9.1}   p99 ratio to baseline {:.2}", label, s[0], s[1], s[2], s[3], s[1] / base[1]);
    }
}
