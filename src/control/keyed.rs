//! Keyed agents from the control plane: their figures, the keys that hold
//! state, and deleting one key.
//!
//! Rules:
//! 1. Listing and counting keys read the shards' databases through
//!    read-only connections of their own, on a blocking thread: a scan of a
//!    million keys never holds a shard (WAL readers see the last commit).
//! 2. Deleting a key is a command to the key's shard, which passivates it
//!    and deletes its state and timers between two ticks.

use std::path::PathBuf;
use std::sync::Arc;

use caxton_shards::placement::key_shard;
use caxton_shards::router::keyed::KeyedCounts;
use caxton_shards::Command;
use rusqlite::{params, Connection, OpenFlags};

use super::{Control, ControlError};

/// Longest page of `GET /v1/agents/NAME/keys`.
pub const KEYS_PAGE_MAX: usize = 10_000;

/// A keyed type's figures, all shards together.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyedSummary {
    pub counts: KeyedCounts,
    pub keys_with_state: u64,
}

/// The rows of type `name`'s keys: agent in `[NAME/, NAME0)` (`0` follows
/// `/`), from `NAME/PREFIX`.
fn range(name: &str, prefix: &str) -> (String, String) {
    (format!("{name}/{prefix}"), format!("{name}0"))
}

fn open(path: &PathBuf) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Keys of type `name` with state, from `prefix`, sorted, at most `limit`
/// (rule 1).
fn keys_with_state(dbs: &[PathBuf], name: &str, prefix: &str, limit: usize) -> rusqlite::Result<Vec<String>> {
    let (from, to) = range(name, prefix);
    let mut all = Vec::new();
    for path in dbs {
        let conn = open(path)?;
        let mut stmt = conn.prepare("SELECT DISTINCT agent FROM state WHERE agent >= ?1 AND agent < ?2 ORDER BY agent LIMIT ?3")?;
        let rows = stmt.query_map(params![from, to, limit as i64], |r| r.get::<_, String>(0))?;
        for address in rows {
            let address = address?;
            if address.starts_with(&from) {
                all.push(address);
            }
        }
    }
    all.sort_unstable();
    all.truncate(limit);
    let cut = name.len() + 1;
    Ok(all.into_iter().map(|a| a[cut..].to_string()).collect())
}

fn count_keys_with_state(dbs: &[PathBuf], name: &str) -> rusqlite::Result<u64> {
    let (from, to) = range(name, "");
    let mut n = 0u64;
    for path in dbs {
        let conn = open(path)?;
        n += conn.query_row("SELECT COUNT(DISTINCT agent) FROM state WHERE agent >= ?1 AND agent < ?2", params![from, to], |r| r.get::<_, i64>(0))? as u64;
    }
    Ok(n)
}

impl Control {
    fn keyed_type(&self, name: &str) -> Result<(), ControlError> {
        match self.agents.read().unwrap().get(name) {
            Some(r) if r.instances == 0 => Ok(()),
            Some(_) => Err(ControlError::bad_request("not_keyed", format!("{name:?} is not a keyed agent (deploy it with ?keyed=true)"))),
            None => Err(ControlError::not_found(format!("no agent named {name:?}"))),
        }
    }

    /// A keyed type's figures (every shard's activations, and the keys
    /// that hold state).
    pub async fn keyed_summary(&self, name: &str) -> Result<KeyedSummary, ControlError> {
        self.keyed_type(name)?;
        let shared: Arc<str> = name.into();
        let mut counts = KeyedCounts::default();
        for c in self.ask_all(|reply| Command::KeyedStats { name: shared.clone(), reply }).await? {
            counts.add(&c);
        }
        let (dbs, owned) = (self.shard_dbs.clone(), name.to_string());
        let keys_with_state = tokio::task::spawn_blocking(move || count_keys_with_state(&dbs, &owned))
            .await
            .map_err(|e| ControlError::internal(format!("key count task failed: {e}")))?
            .map_err(|e| ControlError::internal(format!("cannot count the keys: {e}")))?;
        Ok(KeyedSummary { counts, keys_with_state })
    }

    /// Keys of keyed type `name` that hold state (rule 1).
    pub async fn keys(&self, name: &str, prefix: &str, limit: usize) -> Result<Vec<String>, ControlError> {
        self.keyed_type(name)?;
        if limit == 0 || limit > KEYS_PAGE_MAX {
            return Err(ControlError::bad_request("invalid_limit", format!("limit must be 1 to {KEYS_PAGE_MAX}, got {limit}")));
        }
        let (dbs, name, prefix) = (self.shard_dbs.clone(), name.to_string(), prefix.to_string());
        tokio::task::spawn_blocking(move || keys_with_state(&dbs, &name, &prefix, limit))
            .await
            .map_err(|e| ControlError::internal(format!("key list task failed: {e}")))?
            .map_err(|e| ControlError::internal(format!("cannot list the keys: {e}")))
    }

    /// Deletes one key's state and timers and passivates it (rule 2);
    /// whether it had state.
    pub async fn delete_key(&self, name: &str, key: &str) -> Result<bool, ControlError> {
        self.keyed_type(name)?;
        let address = format!("{name}/{key}");
        if caxton_abi::split_keyed(address.as_bytes()).is_none() {
            return Err(ControlError::bad_request("invalid_key", format!("a key is 1 to {} bytes of UTF-8", caxton_abi::KEY_BYTES_MAX)));
        }
        let shard = key_shard(address.as_bytes(), self.shards.len());
        let address: Arc<str> = address.into();
        self.ask(shard, |reply| Command::DeleteKey { address, reply }).await?.map_err(ControlError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_listed_from_a_prefix_in_order_across_shards_and_no_other_types() {
        let dir = tempfile::tempdir().unwrap();
        let dbs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("shard-{i}.db"))).collect();
        for (i, path) in dbs.iter().enumerate() {
            let conn = Connection::open(path).unwrap();
            conn.execute_batch("CREATE TABLE state (agent TEXT NOT NULL, instance INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (agent, instance, key)) WITHOUT ROWID").unwrap();
            for address in [format!("kv/user{i}"), format!("kv/user{}", i + 2), format!("kv/zz{i}"), "kv0".into(), "kvx/user".into(), "kv".into()] {
                for k in [b"a", b"b"] {
                    conn.execute("INSERT INTO state VALUES (?1, 0, ?2, x'00')", params![address, &k[..]]).unwrap();
                }
            }
        }
        assert_eq!(keys_with_state(&dbs, "kv", "user", 10).unwrap(), ["user0", "user1", "user2", "user3"]);
        assert_eq!(keys_with_state(&dbs, "kv", "", 3).unwrap(), ["user0", "user1", "user2"]);
        assert_eq!(keys_with_state(&dbs, "kv", "zz", 10).unwrap(), ["zz0", "zz1"]);
        assert_eq!(count_keys_with_state(&dbs, "kv").unwrap(), 6);
    }
}
