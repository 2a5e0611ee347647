//! A shard's SQLite: batched state writes and point lookups, beside a naive
//! SQLite (default settings, one transaction per write).

use std::time::Instant;

use caxton_shards::storage::{shard_db_path, ShardStore, StorageConfig};
use hdrhistogram::Histogram;

use crate::histogram;

const VALUE: [u8; 200] = [7u8; 200];

/// Rows per second written in batches of 1000 per transaction, and each
/// batch's time to durable (commit) per record written.
pub fn batched_writes(batches: usize) -> (f64, Histogram<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ShardStore::open(&shard_db_path(dir.path(), 0), &StorageConfig::default()).unwrap();
    let mut per_batch = histogram();
    let t = Instant::now();
    for b in 0..batches {
        let start = Instant::now();
        for r in 0..1000u32 {
            store.put("agent", 0, &((b as u32 * 1000 + r) % 100_000).to_le_bytes(), &VALUE).unwrap();
        }
        store.commit().unwrap();
        per_batch.saturating_record(start.elapsed().as_nanos() as u64);
    }
    ((batches * 1000) as f64 / t.elapsed().as_secs_f64(), per_batch)
}

/// Rows per second of a naive SQLite, one transaction per write: with the
/// default journal (rollback, synchronous=FULL), or at our durability.
pub fn naive_writes(rows: usize, equal_durability: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("naive.db")).unwrap();
    if equal_durability {
        // Ours: WAL with synchronous=NORMAL, so a committed row survives a
        // killed process but not a power loss. The same here, one row a
        // transaction: what batching alone buys.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;").unwrap();
    }
    conn.execute_batch("CREATE TABLE state (agent TEXT, instance INTEGER, key BLOB, value BLOB, PRIMARY KEY (agent, instance, key))").unwrap();
    let t = Instant::now();
    for r in 0..rows as u32 {
        conn.execute("INSERT OR REPLACE INTO state VALUES ('agent', 0, ?1, ?2)", rusqlite::params![r.to_le_bytes(), &VALUE[..]]).unwrap();
    }
    rows as f64 / t.elapsed().as_secs_f64()
}

/// Point lookups of present keys: ours (cached statements, 50 MB cache),
/// beside the same query prepared anew each time.
pub fn lookups(count: usize) -> (Histogram<u64>, Histogram<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let path = shard_db_path(dir.path(), 0);
    let mut store = ShardStore::open(&path, &StorageConfig::default()).unwrap();
    for r in 0..10_000u32 {
        store.put("agent", 0, &r.to_le_bytes(), &VALUE).unwrap();
    }
    store.commit().unwrap();
    let mut ours = histogram();
    for i in 0..count {
        let key = ((i * 7919) % 10_000) as u32;
        let t = Instant::now();
        let got = store.get("agent", 0, &key.to_le_bytes(), |v| v.len()).unwrap();
        ours.saturating_record(t.elapsed().as_nanos() as u64);
        assert_eq!(got, Some(200));
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut naive = histogram();
    for i in 0..count {
        let key = ((i * 7919) % 10_000) as u32;
        let t = Instant::now();
        let got: Vec<u8> =
            conn.query_row("SELECT value FROM state WHERE agent = 'agent' AND instance = 0 AND key = ?1", [key.to_le_bytes()], |r| r.get(0)).unwrap();
        naive.saturating_record(t.elapsed().as_nanos() as u64);
        assert_eq!(got.len(), 200);
    }
    (ours, naive)
}

/// One state write and its commit, alone (a tick that wrote one record):
/// the latency of a write becoming durable, ADR-0017's `agent_state_write`.
pub fn single_writes(count: usize, synchronous_full: bool) -> Histogram<u64> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ShardStore::open(&shard_db_path(dir.path(), 0), &StorageConfig { synchronous_full, ..StorageConfig::default() }).unwrap();
    let mut h = histogram();
    for r in 0..count as u32 {
        let t = Instant::now();
        store.put("agent", 0, &(r % 10_000).to_le_bytes(), &VALUE).unwrap();
        store.commit().unwrap();
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    h
}

/// Tick time (100 writes and the commit) of a shard-like writer: with no
/// checkpoints at all (the baseline), with our checkpointer thread running
/// PASSIVE checkpoints beside it every 20 ms (500x the default rate), or
/// with SQLite's autocheckpoint on the writer's own thread (rejected).
pub fn checkpoint_stall(mode: &str, ticks: usize) -> Histogram<u64> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
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
                std::thread::sleep(std::time::Duration::from_millis(20));
                caxton_shards::storage::checkpoint_once(&conn, &path, u64::MAX);
                n += 1;
            }
            n
        })
    });
    let mut h = histogram();
    for tick in 0..ticks {
        let t = Instant::now();
        for r in 0..100 {
            store.put("agent", 0, &(((tick * 100 + r) % 50_000) as u32).to_le_bytes(), &VALUE).unwrap();
        }
        store.commit().unwrap();
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(c) = checkpointer {
        assert!(c.join().unwrap() > 0, "the checkpointer ran");
    }
    h
}
