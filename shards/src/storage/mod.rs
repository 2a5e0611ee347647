//! A shard's own SQLite database: agent state, batched per tick.
//!
//! Rules:
//! 1. One connection per shard, used only on that shard's thread. WAL mode,
//!    `synchronous=NORMAL` by default: a commit survives the process being
//!    killed, not a power loss (the WAL is synced at checkpoints only).
//!    `FULL` (`--sqlite-synchronous full`) syncs the WAL at every commit:
//!    a commit survives a power loss too, at the cost `make bench` shows.
//! 2. Writes of a tick share one transaction (`BEGIN` at the first write,
//!    `COMMIT` at the tick's end or after [`STATE_BATCH_RECORDS_MAX`] records).
//!    A handler's state writes are held in memory ([`handler_writes`]) and
//!    applied when it ends well; its other writes (timers, tool calls) sit
//!    in a savepoint. So a handler that traps has its writes dropped or
//!    rolled back, and no one else's. A write that SQLite refuses while a
//!    handler's writes are applied fails the tick's commit: the tick is
//!    rolled back and its sends dropped, as after any failed commit.
//! 3. The shard does not checkpoint as SQLite would (`wal_autocheckpoint=0`);
//!    the [`Checkpointer`] thread does, with its own connections and in
//!    PASSIVE mode, which never blocks the shard's writer.
//! 4. But SQLite starts a WAL over only when a write begins with every frame
//!    checkpointed, which a shard that commits all the time never lets the
//!    checkpointer see. So past [`WAL_CATCH_UP_BYTES`] of WAL (a third of
//!    `--wal-size-max`), the shard
//!    finishes the checkpoint itself after a commit (PASSIVE, between two
//!    transactions, so nothing is left behind), and its next write starts
//!    the WAL over. The WAL stays within about twice that size, however long
//!    the node runs.
//! 5. A put learns the size of the record it replaces from the handler's
//!    read of the same key when there was one ([`last_read`]), and asks
//!    SQLite otherwise.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

mod handler_writes;
mod last_read;
mod tool_calls;

use handler_writes::HandlerWrites;
use last_read::LastRead;

use crate::limits::{
    DISK_CHECK_INTERVAL_MS, SQLITE_PAGE_CACHE_KIB, SQLITE_STATEMENT_CACHE, STATE_BATCH_RECORDS_MAX, WAL_CATCH_UP_BYTES, WAL_CHECKPOINT_INTERVAL_MS,
    WAL_SIZE_BYTES_MAX,
};

/// SQLite settings of a shard (ADR-0017's numbers are the defaults).
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Page cache, in KiB. Default [`SQLITE_PAGE_CACHE_KIB`] (50 MB).
    pub page_cache_kib: i64,
    /// Prepared statements cached. Default [`SQLITE_STATEMENT_CACHE`] (100).
    pub statement_cache: usize,
    /// Checkpoint interval. Default [`WAL_CHECKPOINT_INTERVAL_MS`] (100 ms;
    /// ADR-0017's 10 s, and why not, there).
    pub checkpoint_interval_ms: u64,
    /// WAL size limit, in bytes. Default [`WAL_SIZE_BYTES_MAX`] (100 MB).
    pub wal_size_bytes_max: u64,
    /// Sync the WAL at every commit (`FULL`: durable against a power loss)
    /// or only at checkpoints (`NORMAL`, the default: durable against a
    /// killed process).
    pub synchronous_full: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            page_cache_kib: SQLITE_PAGE_CACHE_KIB,
            statement_cache: SQLITE_STATEMENT_CACHE,
            checkpoint_interval_ms: WAL_CHECKPOINT_INTERVAL_MS,
            wal_size_bytes_max: WAL_SIZE_BYTES_MAX,
            synchronous_full: false,
        }
    }
}

pub fn shard_db_path(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard}.db"))
}

/// A timer's row (`timers` rule 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTimer {
    pub agent: String,
    pub instance: u32,
    pub due_us: u64,
    pub content: Vec<u8>,
}

pub struct ShardStore {
    conn: Connection,
    /// Transactions committed since the store was opened.
    commits: u64,
    in_transaction: bool,
    in_handler_savepoint: bool,
    batch_records: usize,
    /// Frames in the WAL after the last commit (SQLite's WAL hook sets it).
    wal_frames: Arc<AtomicU64>,
    /// Checkpoints this shard finished itself (rule 4).
    wal_catch_ups: u64,
    /// WAL bytes past which it does (a third of `--wal-size-max`).
    wal_catch_up_bytes: u64,
    /// Rule 5. A cell: reads take `&self`.
    last_read: std::cell::RefCell<LastRead>,
    /// Rule 2: the running handler's state writes.
    handler_writes: HandlerWrites,
    /// Rule 2: why applying a handler's writes failed; the commit fails
    /// with it.
    failed_apply: Option<String>,
}

// Rule 4's size with the default `--wal-size-max` is the one limits.rs documents.
const _: () = assert!(WAL_CATCH_UP_BYTES == WAL_SIZE_BYTES_MAX / 3);

/// Bytes of one WAL frame: a page and its 24-byte header.
const WAL_FRAME_BYTES: u64 = 4096 + 24;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS state (
    agent TEXT NOT NULL,
    instance INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (agent, instance, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    instance INTEGER NOT NULL,
    due_us INTEGER NOT NULL,
    content BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS timers_of_instance ON timers (agent, instance);
CREATE INDEX IF NOT EXISTS timers_by_due ON timers (due_us);
CREATE TABLE IF NOT EXISTS tool_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    reply_with INTEGER NOT NULL,
    envelope BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_calls_of_agent ON tool_calls (agent, reply_with);";

/// The rows of a keyed type's keys: agent `TYPE/KEY`, between `TYPE/` and
/// `TYPE0` (`0` follows `/` in ASCII).
fn keyed_range(type_name: &str) -> (String, String) {
    (format!("{type_name}/"), format!("{type_name}0"))
}

impl ShardStore {
    pub fn open(path: &Path, config: &StorageConfig) -> rusqlite::Result<ShardStore> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if config.synchronous_full { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "cache_size", -config.page_cache_kib)?;
        conn.pragma_update(None, "journal_size_limit", config.wal_size_bytes_max as i64)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.set_prepared_statement_cache_capacity(config.statement_cache);
        conn.execute_batch(SCHEMA)?;
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        assert_eq!(mode.to_ascii_lowercase(), "wal", "SQLite refused WAL mode for {}", path.display());
        let page_bytes: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        assert_eq!(page_bytes as u64 + 24, WAL_FRAME_BYTES, "SQLite's default page size");
        let wal_frames = Arc::new(AtomicU64::new(0));
        let frames = wal_frames.clone();
        let mut conn = conn;
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
            frames.store(pages.max(0) as u64, Ordering::Relaxed);
            Ok(())
        }))?;
        let wal_catch_up_bytes = config.wal_size_bytes_max / 3;
        Ok(ShardStore {
            conn,
            commits: 0,
            in_transaction: false,
            in_handler_savepoint: false,
            batch_records: 0,
            wal_frames,
            wal_catch_ups: 0,
            wal_catch_up_bytes,
            last_read: Default::default(),
            handler_writes: HandlerWrites::default(),
            failed_apply: None,
        })
    }

    /// Turns SQLite's own autocheckpoint on (pages; 0 = off). Only for the
    /// benchmark that shows why the shard leaves it off (rule 3).
    pub fn set_autocheckpoint_pages(&self, pages: i64) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "wal_autocheckpoint", pages)
    }

    /// Reads a value and hands it to `read`; `None` when absent.
    pub fn get<R>(&self, agent: &str, instance: u32, key: &[u8], read: impl FnOnce(&[u8]) -> R) -> rusqlite::Result<Option<R>> {
        if let Some(written) = self.handler_writes.find(agent, instance, key) {
            return Ok(written.map(read));
        }
        let mut stmt = self.conn.prepare_cached("SELECT value FROM state WHERE agent = ?1 AND instance = ?2 AND key = ?3")?;
        let found = stmt.query_row(params![agent, instance, key], |row| {
            let value = row.get_ref(0)?.as_blob()?;
            Ok(((key.len() + value.len()) as u64, read(value)))
        });
        let mut last = self.last_read.borrow_mut();
        match found.optional() {
            Ok(found) => {
                last.remember(agent, instance, key, found.as_ref().map(|(bytes, _)| *bytes));
                Ok(found.map(|(_, r)| r))
            }
            Err(e) => {
                last.forget();
                Err(e)
            }
        }
    }

    pub fn put(&mut self, agent: &str, instance: u32, key: &[u8], value: &[u8]) -> rusqlite::Result<()> {
        self.last_read.get_mut().forget();
        self.before_write()?;
        let mut stmt = self.conn.prepare_cached("INSERT OR REPLACE INTO state (agent, instance, key, value) VALUES (?1, ?2, ?3, ?4)")?;
        stmt.execute(params![agent, instance, key, value])?;
        Ok(())
    }

    /// Deletes a key; the bytes it held (key and value), or `None` when it
    /// was absent.
    pub fn delete(&mut self, agent: &str, instance: u32, key: &[u8]) -> rusqlite::Result<Option<u64>> {
        self.last_read.get_mut().forget();
        self.before_write()?;
        let mut stmt = self.conn.prepare_cached("DELETE FROM state WHERE agent = ?1 AND instance = ?2 AND key = ?3 RETURNING length(key) + length(value)")?;
        stmt.query_row(params![agent, instance, key], |r| r.get::<_, i64>(0)).optional().map(|b| b.map(|b| b as u64))
    }

    /// Bytes one record holds (key and value), or `None` when absent.
    /// Rule 5: known from the handler's read of the same key, if any.
    pub fn record_bytes(&self, agent: &str, instance: u32, key: &[u8]) -> rusqlite::Result<Option<u64>> {
        if let Some(written) = self.handler_writes.find(agent, instance, key) {
            return Ok(written.map(|value| (key.len() + value.len()) as u64));
        }
        if let Some(known) = self.last_read.borrow().bytes_of(agent, instance, key) {
            return Ok(known);
        }
        let mut stmt = self.conn.prepare_cached("SELECT length(key) + length(value) FROM state WHERE agent = ?1 AND instance = ?2 AND key = ?3")?;
        stmt.query_row(params![agent, instance, key], |r| r.get::<_, i64>(0)).optional().map(|b| b.map(|b| b as u64))
    }

    /// A handler's put (rule 2): held until the handler ends.
    pub fn handler_put(&mut self, agent: &str, instance: u32, key: &[u8], value: &[u8]) {
        self.last_read.get_mut().forget();
        self.handler_writes.push(agent, instance, key, Some(value));
    }

    /// A handler's delete (rule 2), held until the handler ends: the bytes
    /// the key held (key and value), or `None` when it was absent.
    pub fn handler_delete(&mut self, agent: &str, instance: u32, key: &[u8]) -> rusqlite::Result<Option<u64>> {
        let held = self.record_bytes(agent, instance, key)?;
        if held.is_some() {
            self.last_read.get_mut().forget();
            self.handler_writes.push(agent, instance, key, None);
        }
        Ok(held)
    }

    /// Bytes an instance's state holds, keys and values (a scan of its keys:
    /// when an instance starts, not per write).
    pub fn state_bytes(&self, agent: &str, instance: u32) -> rusqlite::Result<u64> {
        assert!(self.handler_writes.is_empty(), "outside any handler");
        let mut stmt = self.conn.prepare_cached("SELECT COALESCE(SUM(length(key) + length(value)), 0) FROM state WHERE agent = ?1 AND instance = ?2")?;
        stmt.query_row(params![agent, instance], |r| r.get::<_, i64>(0)).map(|b| b as u64)
    }

    /// Deletes every key and timer of an agent (on undeploy). Outside any
    /// handler.
    pub fn delete_agent(&mut self, agent: &str) -> rusqlite::Result<usize> {
        self.last_read.get_mut().forget();
        assert!(self.handler_writes.is_empty(), "outside any handler");
        assert!(!self.in_handler_savepoint);
        self.before_write()?;
        let n = self.conn.execute("DELETE FROM state WHERE agent = ?1", params![agent])?;
        self.conn.execute("DELETE FROM timers WHERE agent = ?1", params![agent])?;
        self.conn.execute("DELETE FROM tool_calls WHERE agent = ?1", params![agent])?;
        Ok(n)
    }

    /// Deletes every key's state and timers of keyed type `type_name` (on
    /// undeploy). Outside any handler.
    pub fn delete_keyed_type(&mut self, type_name: &str) -> rusqlite::Result<usize> {
        self.last_read.get_mut().forget();
        assert!(self.handler_writes.is_empty(), "outside any handler");
        assert!(!self.in_handler_savepoint);
        self.before_write()?;
        let (from, to) = keyed_range(type_name);
        let n = self.conn.execute("DELETE FROM state WHERE agent >= ?1 AND agent < ?2", params![from, to])?;
        self.conn.execute("DELETE FROM timers WHERE agent >= ?1 AND agent < ?2", params![from, to])?;
        self.conn.execute("DELETE FROM tool_calls WHERE agent >= ?1 AND agent < ?2", params![from, to])?;
        Ok(n)
    }

    /// Whether any key of keyed type `type_name` has a timer row.
    pub fn keyed_type_has_timers(&self, type_name: &str) -> rusqlite::Result<bool> {
        let (from, to) = keyed_range(type_name);
        let mut stmt = self.conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM timers WHERE agent >= ?1 AND agent < ?2)")?;
        stmt.query_row(params![from, to], |r| r.get::<_, bool>(0))
    }

    /// Keyed addresses (`TYPE/KEY`, any type) with a timer due by `now_us`,
    /// earliest first, at most `max` rows' worth.
    pub fn keyed_timers_due(&self, now_us: u64, max: usize) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT agent FROM timers WHERE due_us <= ?1 AND instr(agent, '/') > 0 ORDER BY due_us LIMIT ?2")?;
        let rows = stmt.query_map(params![now_us as i64, max as i64], |r| r.get::<_, String>(0))?;
        let mut due: Vec<String> = rows.collect::<Result<_, _>>()?;
        due.dedup();
        Ok(due)
    }

    /// When the first timer of a keyed address after `after_us` is due.
    pub fn keyed_timer_next_after(&self, after_us: u64) -> rusqlite::Result<Option<u64>> {
        let mut stmt = self.conn.prepare_cached("SELECT MIN(due_us) FROM timers WHERE due_us > ?1 AND instr(agent, '/') > 0")?;
        stmt.query_row(params![after_us as i64], |r| r.get::<_, Option<i64>>(0)).map(|d| d.map(|d| d as u64))
    }

    // ------------------------------------------------------------ timers (`timers` rule 1)

    /// Stores a timer; returns its id (never reused: AUTOINCREMENT).
    pub fn timer_insert(&mut self, agent: &str, instance: u32, due_us: u64, content: &[u8]) -> rusqlite::Result<i64> {
        self.before_write()?;
        let mut stmt = self.conn.prepare_cached("INSERT INTO timers (agent, instance, due_us, content) VALUES (?1, ?2, ?3, ?4)")?;
        stmt.execute(params![agent, instance, due_us as i64, content])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Timers an instance has pending.
    pub fn timer_count(&self, agent: &str, instance: u32) -> rusqlite::Result<usize> {
        let mut stmt = self.conn.prepare_cached("SELECT COUNT(*) FROM timers WHERE agent = ?1 AND instance = ?2")?;
        stmt.query_row(params![agent, instance], |r| r.get::<_, i64>(0)).map(|n| n as usize)
    }

    /// Cancels an instance's timer; whether it was pending.
    pub fn timer_delete(&mut self, id: i64, agent: &str, instance: u32) -> rusqlite::Result<bool> {
        self.before_write()?;
        let mut stmt = self.conn.prepare_cached("DELETE FROM timers WHERE id = ?1 AND agent = ?2 AND instance = ?3")?;
        Ok(stmt.execute(params![id, agent, instance])? == 1)
    }

    /// A pending timer, if its row is there.
    pub fn timer_get(&self, id: i64) -> rusqlite::Result<Option<StoredTimer>> {
        let mut stmt = self.conn.prepare_cached("SELECT agent, instance, due_us, content FROM timers WHERE id = ?1")?;
        stmt.query_row(params![id], |r| Ok(StoredTimer { agent: r.get(0)?, instance: r.get(1)?, due_us: r.get::<_, i64>(2)? as u64, content: r.get(3)? }))
            .optional()
    }

    /// Removes a timer that fired (in the tick's transaction).
    pub fn timer_fired(&mut self, id: i64) -> rusqlite::Result<()> {
        self.before_write()?;
        let mut stmt = self.conn.prepare_cached("DELETE FROM timers WHERE id = ?1")?;
        stmt.execute(params![id]).map(drop)
    }

    /// The pending timers of an instance, as (due, id): what a restart
    /// puts back in the queue.
    pub fn timers_of(&self, agent: &str, instance: u32) -> rusqlite::Result<Vec<(u64, i64)>> {
        let mut stmt = self.conn.prepare_cached("SELECT due_us, id FROM timers WHERE agent = ?1 AND instance = ?2")?;
        let rows = stmt.query_map(params![agent, instance], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?;
        rows.collect()
    }

    fn before_write(&mut self) -> rusqlite::Result<()> {
        if !self.in_transaction {
            self.conn.execute_batch("BEGIN")?;
            self.in_transaction = true;
        }
        self.batch_records += 1;
        Ok(())
    }

    /// Opens the savepoint of one handler call (rule 2). Cheap when the handler
    /// never writes: the savepoint is opened by the first write only.
    pub fn handler_write_begin(&mut self) -> rusqlite::Result<()> {
        if !self.in_handler_savepoint {
            if !self.in_transaction {
                self.conn.execute_batch("BEGIN")?;
                self.in_transaction = true;
            }
            self.conn.execute_batch("SAVEPOINT handler")?;
            self.in_handler_savepoint = true;
        }
        Ok(())
    }

    /// Ends a handler call: keeps its writes, or drops them and rolls back
    /// its savepoint if it trapped (rule 2).
    pub fn handler_end(&mut self, keep: bool) -> rusqlite::Result<()> {
        self.last_read.get_mut().forget();
        let savepoint = if std::mem::take(&mut self.in_handler_savepoint) {
            let rolled_back = if keep { Ok(()) } else { self.conn.execute_batch("ROLLBACK TO handler") };
            rolled_back.and_then(|()| self.conn.execute_batch("RELEASE handler"))
        } else {
            Ok(())
        };
        let applied = savepoint.and_then(|()| if keep && !self.handler_writes.is_empty() { self.apply_handler_writes() } else { Ok(()) });
        // The call is over whatever failed: nothing of it is left held.
        self.handler_writes.clear();
        if let Err(e) = &applied {
            // Rule 2: some of the call's writes may be in, the others not;
            // the tick's commit fails, and the whole tick is rolled back.
            self.failed_apply.get_or_insert_with(|| format!("a handler's writes could not be applied: {e}"));
        }
        applied
    }

    /// Applies the ended handler's writes to the tick's transaction.
    fn apply_handler_writes(&mut self) -> rusqlite::Result<()> {
        let writes = self.handler_writes.len();
        for _ in 0..writes {
            self.before_write()?;
        }
        let (agent, instance) = self.handler_writes.owner();
        let mut put = self.conn.prepare_cached("INSERT OR REPLACE INTO state (agent, instance, key, value) VALUES (?1, ?2, ?3, ?4)")?;
        let mut delete = self.conn.prepare_cached("DELETE FROM state WHERE agent = ?1 AND instance = ?2 AND key = ?3")?;
        for (key, value) in self.handler_writes.each() {
            match value {
                Some(value) => put.execute(params![agent, instance, key, value])?,
                None => delete.execute(params![agent, instance, key])?,
            };
        }
        Ok(())
    }

    /// Records written since the last commit.
    pub fn batch_records(&self) -> usize {
        self.batch_records
    }

    pub fn batch_full(&self) -> bool {
        self.batch_records >= STATE_BATCH_RECORDS_MAX
    }

    /// Transactions committed so far: writes made while this number is the
    /// same are in the same, still open, transaction.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Is a handler's savepoint open?
    pub fn in_handler(&self) -> bool {
        self.in_handler_savepoint || !self.handler_writes.is_empty()
    }

    /// Is anything waiting to be committed?
    pub fn dirty(&self) -> bool {
        // A failed apply holds the tick's sends until its commit fails
        // (rule 2), even if not even its `BEGIN` went through.
        self.in_transaction || self.failed_apply.is_some()
    }

    /// Moves the whole WAL into the database and empties it (a stopping
    /// node: the next start opens a database with nothing to replay).
    pub fn checkpoint_truncate(&mut self) -> rusqlite::Result<()> {
        assert!(!self.in_transaction, "checkpoint after the last commit");
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map(drop)
    }

    /// Abandons the tick's transaction after a failed commit.
    pub fn rollback(&mut self) -> rusqlite::Result<()> {
        self.last_read.get_mut().forget();
        self.handler_writes.clear();
        self.failed_apply = None;
        self.in_handler_savepoint = false;
        self.batch_records = 0;
        if std::mem::take(&mut self.in_transaction) && !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// Commits the tick's transaction (rule 2). No-op when nothing was written.
    pub fn commit(&mut self) -> rusqlite::Result<()> {
        assert!(!self.in_handler(), "commit inside a handler");
        if let Some(why) = &self.failed_apply {
            // Until the tick is rolled back: a second try must not commit
            // half a handler's writes.
            return Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT), Some(why.clone())));
        }
        if self.in_transaction {
            self.conn.execute_batch("COMMIT")?;
            self.commits += 1;
            self.in_transaction = false;
            self.batch_records = 0;
            if self.wal_frames.load(Ordering::Relaxed) * WAL_FRAME_BYTES > self.wal_catch_up_bytes {
                self.catch_up_wal();
            }
        }
        Ok(())
    }

    /// Finishes the WAL's checkpoint between two transactions (rule 4). A
    /// checkpointer in the middle of its own makes this one return at once,
    /// to be tried after the next commit.
    fn catch_up_wal(&mut self) {
        debug_assert!(!self.in_transaction);
        match self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))) {
            Ok((0, frames, copied)) if frames == copied => {
                self.wal_catch_ups += 1;
                // Until the next write starts the WAL over, and its hook says so.
                self.wal_frames.store(0, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the shard's own WAL checkpoint failed; the checkpointer's next one is tried"),
        }
    }

    /// Checkpoints this shard finished itself (rule 4).
    pub fn wal_catch_ups(&self) -> u64 {
        self.wal_catch_ups
    }
}

/// The node's floor of free disk space (host rule 4): a thread looks at the
/// data directory's file system every [`DISK_CHECK_INTERVAL_MS`]; shards
/// read the verdict, a relaxed load, before each `state_put`.
#[derive(Debug)]
pub struct DiskFloor {
    floor_bytes: u64,
    free_bytes: AtomicU64,
    low: AtomicBool,
}

impl DiskFloor {
    /// A floor nothing checks (tests, benchmarks): writes are always allowed.
    pub fn unchecked() -> Arc<DiskFloor> {
        Arc::new(DiskFloor { floor_bytes: 0, free_bytes: AtomicU64::new(u64::MAX), low: AtomicBool::new(false) })
    }

    /// Checks `dir` now, then every interval on a thread of its own.
    pub fn watch(dir: &Path, floor_bytes: u64) -> std::io::Result<Arc<DiskFloor>> {
        let floor = Arc::new(DiskFloor { floor_bytes, free_bytes: AtomicU64::new(u64::MAX), low: AtomicBool::new(false) });
        floor.check(dir);
        let (watched, dir) = (floor.clone(), dir.to_path_buf());
        std::thread::Builder::new().name("caxton-disk".into()).spawn(move || loop {
            std::thread::sleep(Duration::from_millis(DISK_CHECK_INTERVAL_MS));
            watched.check(&dir);
        })?;
        Ok(floor)
    }

    fn check(&self, dir: &Path) {
        let Some(free) = free_bytes(dir) else { return };
        self.free_bytes.store(free, Ordering::Relaxed);
        let low = free < self.floor_bytes;
        if self.low.swap(low, Ordering::Relaxed) != low {
            match low {
                true => {
                    tracing::error!(dir = %dir.display(), free_bytes = free, floor_bytes = self.floor_bytes, "free disk space is below --disk-free-min: agents' state writes are refused until it is back")
                }
                false => tracing::info!(dir = %dir.display(), free_bytes = free, "free disk space is above --disk-free-min again: state writes resume"),
            }
        }
    }

    pub fn allows_writes(&self) -> bool {
        !self.low.load(Ordering::Relaxed)
    }

    /// The floor itself (`--disk-free-min`), in bytes.
    pub fn floor_bytes(&self) -> u64 {
        self.floor_bytes
    }

    /// Free bytes at the last look.
    pub fn free_bytes(&self) -> u64 {
        self.free_bytes.load(Ordering::Relaxed)
    }
}

/// Bytes an unprivileged writer may still use on `dir`'s file system.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a NUL-terminated string we own; `st` is written by
    // the kernel and read only after a successful call.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(path.as_ptr(), &mut st) == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// Checkpoints every shard's WAL from a thread of its own (rule 3).
pub struct Checkpointer;

impl Checkpointer {
    /// Starts the thread. It runs until the process ends.
    pub fn spawn(paths: Vec<PathBuf>, config: StorageConfig) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("caxton-checkpoint".into()).spawn(move || {
            let mut conns: Vec<(PathBuf, Option<Connection>)> = paths.into_iter().map(|p| (p, None)).collect();
            loop {
                std::thread::sleep(Duration::from_millis(config.checkpoint_interval_ms));
                for (path, conn) in conns.iter_mut() {
                    if conn.is_none() {
                        *conn = Connection::open(&*path).ok();
                    }
                    if let Some(c) = conn {
                        checkpoint_once(c, path, config.wal_size_bytes_max);
                    }
                }
            }
        })
    }
}

/// One PASSIVE checkpoint; returns (wal frames, frames checkpointed).
pub fn checkpoint_once(conn: &Connection, path: &Path, wal_size_bytes_max: u64) -> Option<(i64, i64)> {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
    match result {
        Ok(frames) => {
            let wal = PathBuf::from(format!("{}-wal", path.display()));
            let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            if wal_bytes > wal_size_bytes_max {
                tracing::warn!(path = %wal.display(), wal_bytes, wal_size_bytes_max, "WAL over its size limit: readers or a busy writer keep it from being reset");
            }
            Some(frames)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "WAL checkpoint failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ShardStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = ShardStore::open(&shard_db_path(dir.path(), 0), &StorageConfig::default()).unwrap();
        (dir, s)
    }

    #[test]
    fn a_shard_that_commits_all_the_time_keeps_its_wal_bounded() {
        let (dir, mut s) = store();
        let path = shard_db_path(dir.path(), 0);
        let wal = dir.path().join("shard-0.db-wal");
        // A commit every few rows, without a pause, while a checkpointer's
        // connection checkpoints every 200 ms, as in a node (every 100 ms
        // there): a checkpoint never finds every frame copied when a write
        // begins, so without rule 4 the WAL would only grow.
        let stop = Arc::new(AtomicBool::new(false));
        let checkpointer = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                let conn = Connection::open(&path).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    checkpoint_once(&conn, &path, u64::MAX);
                }
            })
        };
        let row = [7u8; 2048];
        let mut written = 0u64;
        let mut wal_bytes_max = 0;
        let mut i = 0u64;
        while written < 4 * WAL_CATCH_UP_BYTES {
            for _ in 0..4 {
                s.put("a", 0, &(i % 100_000).to_le_bytes(), &row).unwrap();
                i += 1;
            }
            s.commit().unwrap();
            written += 4 * row.len() as u64;
            wal_bytes_max = wal_bytes_max.max(std::fs::metadata(&wal).unwrap().len());
        }
        stop.store(true, Ordering::Relaxed);
        checkpointer.join().unwrap();
        // Without rule 4: over a GB here. A catch-up that meets the
        // checkpointer mid-way is tried again after the next commit.
        assert!(wal_bytes_max < 2 * WAL_CATCH_UP_BYTES, "the WAL reached {wal_bytes_max} bytes ({} catch-ups)", s.wal_catch_ups());
        assert_eq!(s.get("a", 0, &5u64.to_le_bytes(), |v| v.len()).unwrap(), Some(row.len()), "nothing lost");
    }

    #[test]
    fn put_get_delete_round_trip_and_commit() {
        let (dir, mut s) = store();
        assert_eq!(s.get("a", 0, b"k", |v| v.to_vec()).unwrap(), None);
        s.put("a", 0, b"k", b"v1").unwrap();
        assert_eq!(s.get("a", 0, b"k", |v| v.to_vec()).unwrap(), Some(b"v1".to_vec()));
        assert_eq!(s.get("a", 1, b"k", |v| v.to_vec()).unwrap(), None, "instances are separate");
        assert!(s.dirty());
        s.commit().unwrap();
        assert!(!s.dirty());
        drop(s);
        let mut s = ShardStore::open(&shard_db_path(dir.path(), 0), &StorageConfig::default()).unwrap();
        assert_eq!(s.get("a", 0, b"k", |v| v.to_vec()).unwrap(), Some(b"v1".to_vec()));
        assert_eq!(s.state_bytes("a", 0).unwrap(), 3);
        assert_eq!(s.record_bytes("a", 0, b"k").unwrap(), Some(3));
        assert_eq!(s.delete("a", 0, b"k").unwrap(), Some(3));
        assert_eq!(s.delete("a", 0, b"k").unwrap(), None);
        assert_eq!(s.state_bytes("a", 0).unwrap(), 0);
    }

    #[test]
    fn uncommitted_writes_are_lost_with_the_connection() {
        let (dir, mut s) = store();
        s.put("a", 0, b"k", b"v").unwrap();
        drop(s);
        let s = ShardStore::open(&shard_db_path(dir.path(), 0), &StorageConfig::default()).unwrap();
        assert_eq!(s.get("a", 0, b"k", |v| v.len()).unwrap(), None);
    }

    #[test]
    fn a_trapped_handler_loses_its_writes_and_only_its_writes() {
        let (_dir, mut s) = store();
        s.handler_write_begin().unwrap();
        s.put("good", 0, b"k", b"kept").unwrap();
        s.handler_end(true).unwrap();
        s.handler_write_begin().unwrap();
        s.put("bad", 0, b"k", b"dropped").unwrap();
        s.handler_end(false).unwrap();
        s.commit().unwrap();
        assert_eq!(s.get("good", 0, b"k", |v| v.to_vec()).unwrap(), Some(b"kept".to_vec()));
        assert_eq!(s.get("bad", 0, b"k", |v| v.to_vec()).unwrap(), None);
    }

    #[test]
    fn a_put_after_a_read_of_its_key_sizes_the_record_it_replaces() {
        let (_dir, mut s) = store();
        s.put("a", 0, b"k", b"12345").unwrap();
        s.commit().unwrap();
        s.handler_write_begin().unwrap();
        assert_eq!(s.get("a", 0, b"k", |v| v.len()).unwrap(), Some(5));
        assert_eq!(s.record_bytes("a", 0, b"k").unwrap(), Some(6), "from the read (rule 5)");
        assert_eq!(s.record_bytes("a", 0, b"j").unwrap(), None, "another key: asked");
        s.put("a", 0, b"k", b"1234567890").unwrap();
        assert_eq!(s.record_bytes("a", 0, b"k").unwrap(), Some(11), "the put is seen: the read was forgotten");
        assert_eq!(s.get("a", 0, b"gone", |v| v.len()).unwrap(), None);
        s.put("a", 0, b"gone", b"v").unwrap();
        s.handler_end(false).unwrap();
        assert_eq!(s.record_bytes("a", 0, b"k").unwrap(), Some(6), "rolled back, and asked again");
        assert_eq!(s.record_bytes("a", 0, b"gone").unwrap(), None);
    }

    #[test]
    fn a_handlers_state_writes_are_seen_by_it_and_applied_only_if_it_ends_well() {
        let (_dir, mut s) = store();
        s.put("a", 0, b"k", b"old").unwrap();
        s.commit().unwrap();
        // A call that ends well: its reads see its writes, and they are applied.
        s.handler_put("a", 0, b"k", b"new!");
        assert!(s.in_handler());
        assert_eq!(s.get("a", 0, b"k", |v| v.to_vec()).unwrap(), Some(b"new!".to_vec()));
        assert_eq!(s.record_bytes("a", 0, b"k").unwrap(), Some(5));
        s.handler_put("a", 0, b"j", b"v");
        assert_eq!(s.handler_delete("a", 0, b"j").unwrap(), Some(2), "a key the call itself put");
        assert_eq!(s.get("a", 0, b"j", |v| v.len()).unwrap(), None, "deleted reads as absent");
        assert_eq!(s.handler_delete("a", 0, b"never").unwrap(), None);
        assert!(!s.dirty(), "nothing reaches SQLite during the call");
        s.handler_end(true).unwrap();
        assert!(!s.in_handler() && s.dirty());
        // A call that traps: its state writes and its savepoint's go.
        s.handler_put("a", 0, b"k", b"trapped");
        assert_eq!(s.handler_delete("a", 0, b"k").unwrap(), Some(8));
        s.handler_write_begin().unwrap();
        s.timer_insert("a", 0, 5, b"t").unwrap();
        s.handler_end(false).unwrap();
        s.commit().unwrap();
        assert_eq!(s.get("a", 0, b"k", |v| v.to_vec()).unwrap(), Some(b"new!".to_vec()));
        assert_eq!(s.get("a", 0, b"j", |v| v.len()).unwrap(), None);
        assert_eq!(s.timer_count("a", 0).unwrap(), 0);
    }

    #[test]
    fn writes_sqlite_refuses_when_a_handler_ends_fail_the_ticks_commit() {
        let (_dir, mut s) = store();
        s.handler_put("a", 0, b"k", b"v");
        s.handler_end(true).unwrap();
        s.conn.pragma_update(None, "query_only", 1).unwrap();
        s.handler_put("b", 0, b"k", b"v");
        assert!(s.handler_end(true).is_err(), "SQLite refused the write");
        assert!(!s.in_handler(), "the call is over all the same");
        assert!(s.dirty(), "its sends wait for the commit");
        assert!(s.commit().is_err(), "rule 2: the tick cannot commit");
        assert!(s.commit().is_err(), "nor on a second try");
        s.rollback().unwrap();
        s.conn.pragma_update(None, "query_only", 0).unwrap();
        s.commit().unwrap();
        assert_eq!(s.get("a", 0, b"k", |v| v.len()).unwrap(), None, "the whole tick was rolled back");
        s.handler_put("a", 0, b"k", b"v");
        s.handler_end(true).unwrap();
        s.commit().unwrap();
        assert_eq!(s.get("a", 0, b"k", |v| v.len()).unwrap(), Some(1), "and the next one commits");
    }

    #[test]
    fn settings_are_applied() {
        let (_dir, s) = store();
        let sync: i64 = s.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let cache: i64 = s.conn.pragma_query_value(None, "cache_size", |r| r.get(0)).unwrap();
        assert_eq!(cache, -SQLITE_PAGE_CACHE_KIB);
        let auto: i64 = s.conn.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0)).unwrap();
        assert_eq!(auto, 0);
    }

    #[test]
    fn checkpoint_runs_beside_an_open_writer() {
        let (dir, mut s) = store();
        for i in 0..100u32 {
            s.put("a", 0, &i.to_le_bytes(), &[7u8; 200]).unwrap();
        }
        s.commit().unwrap();
        let other = Connection::open(shard_db_path(dir.path(), 0)).unwrap();
        s.put("a", 0, b"open", b"tx").unwrap(); // the shard holds a write transaction
        let (frames, done) = checkpoint_once(&other, &shard_db_path(dir.path(), 0), WAL_SIZE_BYTES_MAX).unwrap();
        assert!(frames > 0 && done > 0, "{frames} frames, {done} checkpointed");
        s.commit().unwrap();
    }
}
