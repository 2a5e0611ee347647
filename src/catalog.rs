//! The node's catalog (`<data-dir>/node.db`): which agents are deployed, with
//! their modules, so they come back on restart. Owned by the control plane;
//! shards never touch it (their state lives in their own databases).

use std::net::SocketAddr;
use std::path::Path;

use caxton_cluster::RouteItem;
use caxton_shards::limits::AGENT_VERSIONS_KEPT;
use rusqlite::{params, Connection, OptionalExtension};

pub struct Catalog {
    conn: Connection,
}

pub struct CatalogAgent {
    pub name: String,
    pub instances: u32,
    pub wasm: Vec<u8>,
    pub version: Version,
    /// The restart policy given at deploy, as its query string.
    pub policy: String,
    /// The tools it is granted (`?tools=`), in the order given.
    pub tools: Vec<String>,
}

/// One version of an agent's module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// 1 at the first deploy; each upgrade takes the next.
    pub number: u32,
    /// SHA-256 of the module (binary format), in hex.
    pub hash: String,
    pub deployed_at_ms: u64,
}

/// A grant as the catalog keeps it (names joined by commas; tool names
/// hold no comma).
fn split_tools(joined: &str) -> Vec<String> {
    joined.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// The catalog's schema (`PRAGMA user_version` of node.db): 1 agents and
/// meta, 2 versions and restart policies, 3 tool grants. A build migrates
/// an older catalog up at start and refuses a newer one. Catalogs written
/// before the number was kept read as 0 and are migrated like any older one.
pub const CATALOG_SCHEMA_VERSION: i64 = 3;

/// SHA-256 of `wasm`, in hex.
pub fn module_hash(wasm: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(wasm).iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Catalog {
    /// Opens the catalog of a node with `shards` shards and counts a boot.
    /// A data dir made with another shard count is refused: placement (and
    /// so every agent's state) depends on it.
    pub fn open(data_dir: &Path, shards: usize) -> Result<(Catalog, u64), String> {
        let path = data_dir.join("node.db");
        let conn = Connection::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // Before anything is changed: a newer build's catalog may mean what
        // this build cannot read, and migrating it down would lose that.
        let schema: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if schema > CATALOG_SCHEMA_VERSION {
            return Err(format!(
                "the data dir {} was written by a newer caxton (catalog schema {schema}; this build reads up to {CATALOG_SCHEMA_VERSION}): \
                 run that version or a newer one (docs/OPERATING.md, \"Upgrading the binary\"); nothing was changed",
                data_dir.display()
            ));
        }
        let setup = || -> rusqlite::Result<(Option<i64>, i64)> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS agents (name TEXT PRIMARY KEY, instances INTEGER NOT NULL,
                     module BLOB NOT NULL, created_at_ms INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS versions (name TEXT NOT NULL, version INTEGER NOT NULL,
                     hash TEXT NOT NULL, deployed_at_ms INTEGER NOT NULL, module BLOB NOT NULL,
                     PRIMARY KEY (name, version));",
            )?;
            // Catalogs from before versions: every agent is at version 1.
            let columns: Vec<String> =
                conn.prepare("SELECT name FROM pragma_table_info('agents')")?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            if !columns.iter().any(|c| c == "version") {
                conn.execute_batch(
                    "ALTER TABLE agents ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
                     ALTER TABLE agents ADD COLUMN policy TEXT NOT NULL DEFAULT '';",
                )?;
            }
            // Catalogs from before tools: no agent has a grant.
            if !columns.iter().any(|c| c == "tools") {
                conn.execute_batch("ALTER TABLE agents ADD COLUMN tools TEXT NOT NULL DEFAULT '';")?;
            }
            conn.pragma_update(None, "user_version", CATALOG_SCHEMA_VERSION)?;
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

    /// This data directory's install id: random, made at the first start and
    /// kept (the prefix of tool calls' idempotency keys, `tools::dispatch`).
    pub fn install_id(&self) -> rusqlite::Result<u64> {
        let mut bytes = [0u8; 8];
        // SAFETY: getrandom(2) writes at most `bytes.len()` bytes into a buffer we own.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr() as *mut libc::c_void, bytes.len(), 0) };
        assert_eq!(n, 8, "the kernel's random source answers");
        let fresh = (u64::from_le_bytes(bytes) >> 1) as i64; // SQLite's integers are signed
        self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('install_id', ?1)", params![fresh])?;
        self.conn.query_row("SELECT value FROM meta WHERE key = 'install_id'", [], |r| r.get::<_, i64>(0)).map(|v| v as u64)
    }

    /// Every agent at its current version, in deploy order.
    pub fn agents(&self) -> rusqlite::Result<Vec<CatalogAgent>> {
        let mut stmt = self.conn.prepare(
            "SELECT a.name, a.instances, a.module, a.version, a.policy, v.hash, v.deployed_at_ms, a.tools FROM agents a
             LEFT JOIN versions v ON v.name = a.name AND v.version = a.version ORDER BY a.created_at_ms, a.name",
        )?;
        let rows = stmt.query_map([], |r| {
            let wasm: Vec<u8> = r.get(2)?;
            let hash: Option<String> = r.get(5)?;
            Ok(CatalogAgent {
                name: r.get(0)?,
                instances: r.get(1)?,
                version: Version {
                    number: r.get(3)?,
                    hash: hash.unwrap_or_else(|| module_hash(&wasm)),
                    deployed_at_ms: r.get::<_, Option<i64>>(6)?.unwrap_or(0) as u64,
                },
                wasm,
                policy: r.get(4)?,
                tools: split_tools(&r.get::<_, String>(7)?),
            })
        })?;
        rows.collect()
    }

    /// Records a new agent at version 1.
    pub fn insert(&mut self, name: &str, instances: u32, wasm: &[u8], policy: &str, tools: &[String]) -> rusqlite::Result<Version> {
        let version = Version { number: 1, hash: module_hash(wasm), deployed_at_ms: now_ms() };
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO agents (name, instances, module, created_at_ms, version, policy, tools) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
            params![name, instances, wasm, version.deployed_at_ms as i64, policy, tools.join(",")],
        )?;
        tx.execute("DELETE FROM versions WHERE name = ?1", params![name])?;
        tx.execute(
            "INSERT INTO versions (name, version, hash, deployed_at_ms, module) VALUES (?1, 1, ?2, ?3, ?4)",
            params![name, version.hash, version.deployed_at_ms as i64, wasm],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// Makes `wasm` the current module of `name` as version `number` (a
    /// new one for an upgrade, an older one for a rollback), keeping the
    /// last [`AGENT_VERSIONS_KEPT`] versions.
    /// The module of `name`'s current version.
    pub fn current_module(&self, name: &str) -> rusqlite::Result<Option<Vec<u8>>> {
        self.conn.query_row("SELECT module FROM agents WHERE name = ?1", params![name], |r| r.get(0)).optional()
    }

    pub fn set_version(&mut self, name: &str, number: u32, wasm: &[u8]) -> rusqlite::Result<Version> {
        let version = Version { number, hash: module_hash(wasm), deployed_at_ms: now_ms() };
        let tx = self.conn.transaction()?;
        let changed = tx.execute("UPDATE agents SET module = ?2, version = ?3 WHERE name = ?1", params![name, wasm, number])?;
        assert_eq!(changed, 1, "only a deployed agent changes version");
        tx.execute(
            "INSERT OR REPLACE INTO versions (name, version, hash, deployed_at_ms, module) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, number, version.hash, version.deployed_at_ms as i64, wasm],
        )?;
        tx.execute(
            "DELETE FROM versions WHERE name = ?1 AND version NOT IN (SELECT version FROM versions WHERE name = ?1 ORDER BY version DESC LIMIT ?2)",
            params![name, AGENT_VERSIONS_KEPT],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// Changes the tools `name` is granted (an upgrade with `?tools=`).
    pub fn set_tools(&mut self, name: &str, tools: &[String]) -> rusqlite::Result<()> {
        let changed = self.conn.execute("UPDATE agents SET tools = ?2 WHERE name = ?1", params![name, tools.join(",")])?;
        assert_eq!(changed, 1, "only a deployed agent has a grant");
        Ok(())
    }

    /// The highest version number `name` has had (for the next upgrade).
    pub fn latest_version(&self, name: &str) -> rusqlite::Result<u32> {
        self.conn.query_row("SELECT COALESCE(MAX(version), 0) FROM versions WHERE name = ?1", params![name], |r| r.get(0))
    }

    /// The kept version just before `current`, and its module.
    pub fn previous_version(&self, name: &str, current: u32) -> rusqlite::Result<Option<(u32, Vec<u8>)>> {
        self.conn
            .query_row("SELECT version, module FROM versions WHERE name = ?1 AND version < ?2 ORDER BY version DESC LIMIT 1", params![name, current], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
    }

    /// Removes an agent and its versions. Returns the hashes of its
    /// modules that no version of any agent holds any more (their compiled
    /// code can go from the module cache).
    pub fn remove(&mut self, name: &str) -> rusqlite::Result<Vec<String>> {
        let tx = self.conn.transaction()?;
        let hashes: Vec<String> = {
            let mut stmt = tx.prepare("SELECT DISTINCT hash FROM versions WHERE name = ?1")?;
            let rows = stmt.query_map(params![name], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        tx.execute("DELETE FROM agents WHERE name = ?1", params![name])?;
        tx.execute("DELETE FROM versions WHERE name = ?1", params![name])?;
        let mut unused = Vec::new();
        for hash in hashes {
            let held: i64 = tx.query_row("SELECT COUNT(*) FROM versions WHERE hash = ?1", params![hash], |r| r.get(0))?;
            if held == 0 {
                unused.push(hash);
            }
        }
        tx.commit()?;
        Ok(unused)
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

    /// Drops the routes naming `node` (a forgotten member, view rule 5).
    pub fn forget_node(&mut self, node: SocketAddr) -> rusqlite::Result<usize> {
        self.conn.execute("DELETE FROM routes WHERE node = ?1", params![node.to_string()])
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
        let (mut c, epoch) = Catalog::open(dir.path(), 2).unwrap();
        assert_eq!(epoch, 1);
        c.insert("echo", 2, b"\0asm", "", &["calc".to_string()]).unwrap();
        assert!(c.insert("echo", 1, b"x", "", &[]).is_err(), "names are unique");
        drop(c);
        let (mut c, epoch) = Catalog::open(dir.path(), 2).unwrap();
        assert_eq!(epoch, 2);
        let id = c.install_id().unwrap();
        assert_eq!(c.install_id().unwrap(), id, "made once, then kept");
        let agents = c.agents().unwrap();
        assert_eq!((agents[0].name.as_str(), agents[0].instances, agents[0].version.number), ("echo", 2, 1));
        assert_eq!(agents[0].tools, ["calc"], "the grant outlives the process");
        c.set_tools("echo", &["calc".into(), "web".into()]).unwrap();
        assert_eq!(c.agents().unwrap()[0].tools, ["calc", "web"]);
        c.insert("twin", 1, b"\0asm", "", &[]).unwrap();
        assert!(c.remove("echo").unwrap().is_empty(), "its module is still twin's");
        assert_eq!(c.remove("twin").unwrap(), [module_hash(b"\0asm")], "no one holds it now");
        assert!(c.agents().unwrap().is_empty());
        drop(c);
        let mut routes = RouteCache::open(dir.path()).unwrap();
        let item = RouteItem { agent: "far".into(), node: "127.0.0.2:7946".parse().unwrap(), version: 7, present: true };
        routes.store(std::slice::from_ref(&item)).unwrap();
        routes.store(&[RouteItem { version: 8, present: false, ..item.clone() }]).unwrap();
        assert_eq!(RouteCache::open(dir.path()).unwrap().load().unwrap(), vec![RouteItem { version: 8, present: false, ..item }]);
        let err = Catalog::open(dir.path(), 3).err().unwrap();
        assert!(err.contains("--cores 2"), "{err}");
    }

    #[test]
    fn a_catalog_is_migrated_up_and_one_from_a_newer_build_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        // A catalog from before the schema number: read as 0, migrated.
        Connection::open(dir.path().join("node.db")).unwrap().execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);").unwrap();
        drop(Catalog::open(dir.path(), 1).unwrap());
        let raw = Connection::open(dir.path().join("node.db")).unwrap();
        let schema = || raw.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(schema(), CATALOG_SCHEMA_VERSION);
        raw.pragma_update(None, "user_version", CATALOG_SCHEMA_VERSION + 1).unwrap();
        let boots = || raw.query_row("SELECT value FROM meta WHERE key = 'boot_epoch'", [], |r| r.get::<_, i64>(0)).unwrap();
        let before = boots();
        let err = Catalog::open(dir.path(), 1).err().unwrap();
        assert!(err.contains("newer caxton") && err.contains(&format!("schema {}", CATALOG_SCHEMA_VERSION + 1)), "{err}");
        assert_eq!((schema(), boots()), (CATALOG_SCHEMA_VERSION + 1, before), "nothing was changed, not even a boot counted");
    }

    #[test]
    fn versions_go_up_roll_back_and_only_the_last_few_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _) = Catalog::open(dir.path(), 1).unwrap();
        let v1 = c.insert("counter", 1, b"one", "restart_immediate=1", &[]).unwrap();
        assert_eq!((v1.number, v1.hash.len()), (1, 64));
        for n in 2..=8u32 {
            let wasm = format!("module {n}");
            assert_eq!(c.set_version("counter", n, wasm.as_bytes()).unwrap().number, n);
        }
        assert_eq!(c.latest_version("counter").unwrap(), 8);
        assert_eq!(c.previous_version("counter", 8).unwrap(), Some((7, b"module 7".to_vec())));
        assert_eq!(c.previous_version("counter", 4).unwrap(), None, "only the last {AGENT_VERSIONS_KEPT} are kept");
        c.set_version("counter", 7, b"module 7").unwrap(); // a rollback
        let a = &c.agents().unwrap()[0];
        assert_eq!((a.version.number, a.wasm.as_slice(), a.policy.as_str()), (7, &b"module 7"[..], "restart_immediate=1"));
        assert_eq!(c.latest_version("counter").unwrap(), 8, "the next upgrade is 9");
        c.remove("counter").unwrap();
        assert_eq!(c.latest_version("counter").unwrap(), 0);
    }
}
