//! The node's catalog (`<data-dir>/node.db`): which agents are deployed, with
//! their modules, so they come back on restart. Owned by the control plane;
//! shards never touch it (their state lives in their own databases).

use std::path::Path;

use caxton_cluster::RouteItem;
use rusqlite::{params, Connection, OptionalExtension};

pub struct Catalog {
    conn: Connection,
}

pub struct CatalogAgent {
    pub name: String,
    pub instances: u32,
    pub wasm: Vec<u8>,
}

impl Catalog {
    /// Opens the catalog of a node with `shards` shards and counts a boot.
    /// A data dir made with another shard count is refused: placement (and
    /// so every agent's state) depends on it.
    pub fn open(data_dir: &Path, shards: usize) -> Result<(Catalog, u64), String> {
        let path = data_dir.join("node.db");
        let conn = Connection::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let setup = || -> rusqlite::Result<(Option<i64>, i64)> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS agents (name TEXT PRIMARY KEY, instances INTEGER NOT NULL,
                     module BLOB NOT NULL, created_at_ms INTEGER NOT NULL);",
            )?;
            let recorded: Option<i64> = conn.query_row("SELECT value FROM meta WHERE key = 'shards'", [], |r| r.get(0)).optional()?;
            let epoch: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'boot_epoch'", [], |r| r.get(0)).optional()?.unwrap_or(0) + 1;
            Ok((recorded, epoch))
        };
        let (recorded, epoch) = setup().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if let Some(recorded) = recorded {
            if recorded as usize != shards {
                return Err(format!(
                    "the data dir {} belongs to a node with {recorded} shards; agent state is placed by shard, so start with --cores {recorded} or use another --data-dir",
                    data_dir.display()
                ));
            }
        }
        let write = || -> rusqlite::Result<()> {
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('shards', ?1)", params![shards as i64])?;
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('boot_epoch', ?1)", params![epoch])?;
            Ok(())
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok((Catalog { conn }, epoch as u64))
    }

    pub fn agents(&self) -> rusqlite::Result<Vec<CatalogAgent>> {
        let mut stmt = self.conn.prepare("SELECT name, instances, module FROM agents ORDER BY created_at_ms, name")?;
        let rows = stmt.query_map([], |r| Ok(CatalogAgent { name: r.get(0)?, instances: r.get(1)?, wasm: r.get(2)? }))?;
        rows.collect()
    }

    pub fn insert(&self, name: &str, instances: u32, wasm: &[u8]) -> rusqlite::Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.conn.execute("INSERT INTO agents (name, instances, module, created_at_ms) VALUES (?1, ?2, ?3, ?4)", params![name, instances, wasm, now])?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> rusqlite::Result<bool> {
        Ok(self.conn.execute("DELETE FROM agents WHERE name = ?1", params![name])? > 0)
    }
}

/// The registry's cache (`routes` in node.db): where each agent name lives,
/// as gossip last said. Written by the gossip thread on its own connection,
/// read back at start so a restarted node routes before gossip catches up.
pub struct RouteCache {
    conn: Connection,
}

impl RouteCache {
    pub fn open(data_dir: &Path) -> Result<RouteCache, String> {
        let path = data_dir.join("node.db");
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(std::time::Duration::from_millis(caxton_shards::limits::CATALOG_BUSY_TIMEOUT_MS))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS routes (agent TEXT PRIMARY KEY, node TEXT NOT NULL,
                     version INTEGER NOT NULL, present INTEGER NOT NULL);",
            )?;
            Ok(conn)
        };
        open().map(|conn| RouteCache { conn }).map_err(|e| format!("cannot open the route cache in {}: {e}", path.display()))
    }

    pub fn load(&self) -> rusqlite::Result<Vec<RouteItem>> {
        let mut stmt = self.conn.prepare("SELECT agent, node, version, present FROM routes")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, bool>(3)?)))?;
        let mut items = Vec::new();
        for row in rows {
            let (agent, node, version, present) = row?;
            if let Ok(node) = node.parse() {
                items.push(RouteItem { agent, node, version: version as u64, present });
            }
        }
        Ok(items)
    }

    /// Stores a batch of changes in one transaction.
    pub fn store(&mut self, items: &[RouteItem]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO routes (agent, node, version, present) VALUES (?1, ?2, ?3, ?4)")?;
            for i in items {
                stmt.execute(params![i.agent, i.node.to_string(), i.version as i64, i.present])?;
            }
        }
        tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_persist_and_the_shard_count_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let (c, epoch) = Catalog::open(dir.path(), 2).unwrap();
        assert_eq!(epoch, 1);
        c.insert("echo", 2, b"\0asm").unwrap();
        assert!(c.insert("echo", 1, b"x").is_err(), "names are unique");
        drop(c);
        let (c, epoch) = Catalog::open(dir.path(), 2).unwrap();
        assert_eq!(epoch, 2);
        let agents = c.agents().unwrap();
        assert_eq!((agents[0].name.as_str(), agents[0].instances), ("echo", 2));
        assert!(c.remove("echo").unwrap());
        drop(c);
        let mut routes = RouteCache::open(dir.path()).unwrap();
        let item = RouteItem { agent: "far".into(), node: "127.0.0.2:7946".parse().unwrap(), version: 7, present: true };
        routes.store(std::slice::from_ref(&item)).unwrap();
        routes.store(&[RouteItem { version: 8, present: false, ..item.clone() }]).unwrap();
        assert_eq!(RouteCache::open(dir.path()).unwrap().load().unwrap(), vec![RouteItem { version: 8, present: false, ..item }]);
        let err = Catalog::open(dir.path(), 3).err().unwrap();
        assert!(err.contains("--cores 2"), "{err}");
    }
}
