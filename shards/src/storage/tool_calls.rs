//! Tool calls in flight, one row each (`tool_calls`): what makes a call
//! survive a crash of the node.
//!
//! Rules:
//! 1. A call's row is written in the savepoint of the handler that makes
//!    it, so it is kept exactly when the handler's state writes are: a
//!    handler that traps leaves no row, and its call is never made.
//! 2. The call leaves the shard only after the transaction holding its row
//!    commits (it counts as a write: router rule 2), so a call that was
//!    made always has a row.
//! 3. The row goes when its answer is taken from the agent's mailbox, in
//!    the tick's transaction, the one that commits what its handler does
//!    (like a fired timer, `timers` rule 3). A crash before that commit
//!    leaves the row, and the call is made again after the restart with
//!    the same idempotency key: the agent handles one answer per call.
//! 4. The row holds the call's envelope as it left, so the call made again
//!    is the same bytes: the same message id, from which the node makes
//!    the call's idempotency key (with its install id: unique per data
//!    directory).

use rusqlite::params;

use super::ShardStore;

/// A call to make again after a restart (rule 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToolCall {
    pub id: i64,
    pub envelope: Vec<u8>,
}

impl ShardStore {
    /// Records a call inside the open handler's savepoint (rule 1); returns
    /// the row's id.
    pub fn tool_call_insert(&mut self, agent: &str, reply_with: u64, envelope: &[u8]) -> rusqlite::Result<i64> {
        assert!(self.in_handler_savepoint, "rule 1: a call is recorded inside its handler's savepoint");
        assert!(reply_with != 0, "a call names its answer");
        let mut stmt = self.conn.prepare_cached("INSERT INTO tool_calls (agent, reply_with, envelope) VALUES (?1, ?2, ?3)")?;
        stmt.execute(params![agent, reply_with as i64, envelope])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Calls `agent` has in flight (its handler's own uncommitted ones too).
    pub fn tool_calls_of(&self, agent: &str) -> rusqlite::Result<usize> {
        let mut stmt = self.conn.prepare_cached("SELECT COUNT(*) FROM tool_calls WHERE agent = ?1")?;
        stmt.query_row(params![agent], |r| r.get::<_, i64>(0)).map(|n| n as usize)
    }

    /// The answer to `agent`'s call `reply_with` was taken (rule 3):
    /// removes one such row, in the tick's transaction. Whether there was
    /// one (an answer to a call the node has no row of is still delivered).
    pub fn tool_call_answered(&mut self, agent: &str, reply_with: u64) -> rusqlite::Result<bool> {
        assert!(!self.in_handler_savepoint, "outside any handler's savepoint");
        self.before_write()?;
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM tool_calls WHERE id = (SELECT id FROM tool_calls WHERE agent = ?1 AND reply_with = ?2 ORDER BY id LIMIT 1)")?;
        Ok(stmt.execute(params![agent, reply_with as i64])? == 1)
    }

    /// Every call in flight, oldest first: what a restart makes again.
    pub fn tool_calls_all(&self) -> rusqlite::Result<Vec<StoredToolCall>> {
        let mut stmt = self.conn.prepare_cached("SELECT id, envelope FROM tool_calls ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok(StoredToolCall { id: r.get(0)?, envelope: r.get(1)? }))?;
        rows.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageConfig;

    #[test]
    fn a_call_is_kept_with_its_handler_and_goes_with_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut store = ShardStore::open(&path, &StorageConfig::default()).unwrap();
        store.handler_write_begin().unwrap();
        store.tool_call_insert("a", 7, b"kept").unwrap();
        store.handler_end(true).unwrap();
        store.handler_write_begin().unwrap();
        store.tool_call_insert("a", 8, b"trapped").unwrap();
        assert_eq!(store.tool_calls_of("a").unwrap(), 2, "the handler's own call counts");
        store.handler_end(false).unwrap();
        store.commit().unwrap();
        let all = store.tool_calls_all().unwrap();
        assert_eq!(all.iter().map(|c| &c.envelope[..]).collect::<Vec<_>>(), [&b"kept"[..]], "rule 1: a trapped handler's call is gone");
        drop(store);
        let mut store = ShardStore::open(&path, &StorageConfig::default()).unwrap();
        assert_eq!(store.tool_calls_all().unwrap(), all, "rows outlive the process");
        assert!(!store.tool_call_answered("b", 7).unwrap(), "another agent's answer removes nothing");
        assert!(store.tool_call_answered("a", 7).unwrap());
        assert!(!store.tool_call_answered("a", 7).unwrap(), "one row per answer");
        store.commit().unwrap();
        assert_eq!(store.tool_calls_of("a").unwrap(), 0);
    }
}
