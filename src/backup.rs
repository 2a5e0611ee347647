//! `caxton backup`: a copy of a node's data dir that a node starts from,
//! taken while the node runs.
//!
//! A node's data is SQLite files: `node.db` (the catalog of agents, their
//! modules and versions, the route cache) and one `shard-N.db` per shard
//! (agent state, timers, tool calls in flight). Copying the files of a
//! running node with `cp` is not safe: a file copied while SQLite writes it,
//! or without its write-ahead log, may not open or may lose commits.
//!
//! Rules:
//! 1. Each file is copied with `VACUUM INTO`, inside one read transaction:
//!    the copy is that file at one commit, complete and compact, and the
//!    node's writers never wait for it (WAL: readers do not block writers).
//! 2. The shards are copied first and the catalog last. An agent deployed
//!    while the backup runs is then in the catalog with the state it had
//!    when its shard was copied (none, or some); an agent stopped meanwhile
//!    leaves state rows in the shard copies that its catalog copy does not
//!    name, and those are deleted from the copies, so that a later deploy
//!    of the same name on the restored node does not inherit them.
//! 3. The copy is private: its folder 0700, its files 0600 (agents' state
//!    and modules). An existing non-empty folder is refused, never merged.
//!
//! Restoring is starting a node with the copy as its `--data-dir`, with the
//! same `--cores` (the catalog records the shard count). The module cache is
//! not copied: the restored node compiles each module once.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// How long a copy waits for a lock another connection holds (a
/// checkpoint's brief one), in ms.
const BACKUP_BUSY_TIMEOUT_MS: u64 = 10_000;

/// What a backup copied.
#[derive(Debug)]
pub struct BackupReport {
    /// Each file copied, with its size in bytes, shards first (rule 2).
    pub files: Vec<(PathBuf, u64)>,
    /// Agents in the catalog copy.
    pub agents: usize,
    /// Agent names whose leftover rows were deleted from the shard copies
    /// (stopped while the backup ran; rule 2).
    pub pruned: Vec<String>,
}

fn open_existing(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_millis(BACKUP_BUSY_TIMEOUT_MS)).map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Copies one database file at one commit (rule 1), private (rule 3).
fn copy_file(from: &Path, to: &Path) -> Result<u64, String> {
    let conn = open_existing(from)?;
    let target = to.to_str().ok_or_else(|| format!("{} is not UTF-8", to.display()))?;
    conn.execute("VACUUM INTO ?1", params![target]).map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(|e| format!("{}: {e}", to.display()))?;
    Ok(std::fs::metadata(to).map_err(|e| e.to_string())?.len())
}

/// Shard count the catalog records, if it has run.
fn shard_count(catalog: &Path) -> Result<usize, String> {
    let conn = open_existing(catalog)?;
    let shards: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'shards'", [], |r| r.get(0))
        .optional()
        .map_err(|e| format!("{} is not a caxton catalog: {e}", catalog.display()))?;
    shards.map(|n| n as usize).ok_or_else(|| format!("{} records no shard count: no node has run on it", catalog.display()))
}

/// Deletes from a shard copy the rows of agents its catalog copy does not
/// name (rule 2): an agent `NAME`, or a key `NAME/KEY` of keyed type `NAME`.
fn prune(shard_copy: &Path, catalog: &BTreeSet<String>) -> Result<Vec<String>, String> {
    let conn = open_existing(shard_copy)?;
    let run = || -> rusqlite::Result<Vec<String>> {
        let owners: Vec<String> = conn
            .prepare("SELECT agent FROM state UNION SELECT agent FROM timers UNION SELECT agent FROM tool_calls")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let named = |agent: &str| catalog.contains(agent) || agent.split_once('/').is_some_and(|(type_name, _)| catalog.contains(type_name));
        let gone: Vec<String> = owners.into_iter().filter(|a| !named(a)).collect();
        let tx = conn.unchecked_transaction()?;
        for agent in &gone {
            for table in ["state", "timers", "tool_calls"] {
                tx.execute(&format!("DELETE FROM {table} WHERE agent = ?1"), params![agent])?;
            }
        }
        tx.commit()?;
        Ok(gone)
    };
    run().map_err(|e| format!("cannot prune {}: {e}", shard_copy.display()))
}

/// Backs up the node data in `data_dir` into the new folder `to`.
pub fn backup(data_dir: &Path, to: &Path) -> Result<BackupReport, String> {
    let catalog = data_dir.join("node.db");
    if !catalog.exists() {
        return Err(format!("{} has no node.db: not a caxton data dir", data_dir.display()));
    }
    let shards = shard_count(&catalog)?;
    if to.exists() && std::fs::read_dir(to).map_err(|e| format!("{}: {e}", to.display()))?.next().is_some() {
        return Err(format!("{} exists and is not empty: a backup goes into a new folder", to.display()));
    }
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).map_err(|e| format!("{}: {e}", to.display()))?;

    let mut files = Vec::new();
    for shard in 0..shards {
        let name = format!("shard-{shard}.db");
        let from = data_dir.join(&name);
        if from.exists() {
            files.push((to.join(&name), copy_file(&from, &to.join(&name))?));
        }
    }
    let catalog_copy = to.join("node.db");
    files.push((catalog_copy.clone(), copy_file(&catalog, &catalog_copy)?));

    let names: BTreeSet<String> = open_existing(&catalog_copy)?
        .prepare("SELECT name FROM agents")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| format!("cannot read the catalog copy: {e}"))?;
    let mut pruned = BTreeSet::new();
    for (file, _) in files.iter().filter(|(f, _)| *f != catalog_copy) {
        pruned.extend(prune(file, &names)?);
    }
    assert!(files.last().is_some_and(|(f, _)| *f == catalog_copy), "the catalog is copied last (rule 2)");
    Ok(BackupReport { files, agents: names.len(), pruned: pruned.into_iter().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_db(path: &Path, agents: &[&str]) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(
            "CREATE TABLE state (agent TEXT, instance INTEGER, key BLOB, value BLOB);
             CREATE TABLE timers (id INTEGER PRIMARY KEY, agent TEXT, instance INTEGER, due_us INTEGER);
             CREATE TABLE tool_calls (id INTEGER PRIMARY KEY, agent TEXT, reply_with INTEGER, envelope BLOB);",
        )
        .unwrap();
        for a in agents {
            c.execute("INSERT INTO state VALUES (?1, 0, x'6b', x'76')", params![a]).unwrap();
            c.execute("INSERT INTO timers (agent, instance, due_us) VALUES (?1, 0, 1)", params![a]).unwrap();
        }
    }

    /// Rules 2 and 3: every file, private, the catalog last; rows of an
    /// agent the catalog no longer names are gone from the copy (not from
    /// the node's own files); a non-empty target is refused.
    #[test]
    fn a_backup_copies_every_file_and_prunes_what_the_catalog_does_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let c = Connection::open(data.join("node.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER); INSERT INTO meta VALUES ('shards', 2); CREATE TABLE agents (name TEXT PRIMARY KEY);",
        )
        .unwrap();
        c.execute_batch("INSERT INTO agents VALUES ('counter'); INSERT INTO agents VALUES ('kv');").unwrap();
        shard_db(&data.join("shard-0.db"), &["counter", "kv/alice", "stopped"]);
        shard_db(&data.join("shard-1.db"), &["kv/bob/x", "stopped/key"]);
        let to = dir.path().join("backup");
        let report = backup(&data, &to).unwrap();
        assert_eq!(report.files.iter().map(|(f, _)| f.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(), ["shard-0.db", "shard-1.db", "node.db"]);
        assert_eq!((report.agents, report.pruned.clone()), (2, vec!["stopped".to_string(), "stopped/key".to_string()]));
        assert_eq!(std::fs::metadata(&to).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(report.files.iter().all(|(f, _)| std::fs::metadata(f).unwrap().permissions().mode() & 0o777 == 0o600));
        let agents = |p: &Path| -> Vec<String> {
            Connection::open(p)
                .unwrap()
                .prepare("SELECT agent FROM state ORDER BY agent")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(agents(&to.join("shard-0.db")), ["counter", "kv/alice"]);
        assert_eq!(agents(&to.join("shard-1.db")), ["kv/bob/x"]);
        assert_eq!(agents(&data.join("shard-0.db")), ["counter", "kv/alice", "stopped"], "the node's own file is untouched");
        assert!(backup(&data, &to).unwrap_err().contains("not empty"));
        assert!(backup(&dir.path().join("nothing"), &dir.path().join("b2")).unwrap_err().contains("no node.db"));
    }
}
