//! Compiled modules kept on disk (`<data-dir>/modules/`), so that a node
//! with thousands of agents does not compile every module again when it
//! starts.
//!
//! Rules:
//! 1. An entry's key is a SHA-256 of the module, the agent limits it was
//!    compiled with (metering is compiled in), and this build of caxton
//!    (its version and the executable's size and modification time): a
//!    new binary or other limits miss, and compile.
//! 2. An entry is a SHA-256 of the machine code, then the code. It is
//!    loaded only when the digest matches: a torn or corrupted file is a
//!    miss (and is overwritten), never mapped as code.
//! 3. Writes go to a temporary file renamed into place: a crash leaves the
//!    old entry or the new one, never half of one.
//! 4. Within one start, a module shared by many agents is compiled or
//!    loaded once (`memo`).
//! 5. The cache is the node's alone: its directory is made `0700` (and
//!    made so again at start if it is the node's), entries are written
//!    `0600`, and an entry or a directory that another user owns, or that
//!    its group or others may write, is never loaded (whoever could write
//!    it would have the node run their machine code): a warning, and the
//!    module is compiled.
//! 6. It is bounded: past `--module-cache-max` bytes, the entries used
//!    least recently (loaded or written) are deleted until it fits; an
//!    undeploy deletes the entries of modules no agent's version holds any
//!    more.
//!
//! Who can write the data dir can already change every agent's state and
//! module; with rule 5, the cache adds no new way in (docs/SECURITY.md).

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use caxton_shards::agent::{compile, engine, AgentLimits, CompiledAgent, ModuleError};
use sha2::{Digest, Sha256};

/// Where a module came from, for the log and the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Compiled,
    Disk,
    Memory,
}

pub struct ModuleCache {
    /// `None`: the cache is off (`--module-cache off`); modules compile.
    dir: Option<PathBuf>,
    /// Rule 6: the most bytes its entries may hold.
    bytes_max: u64,
    build: String,
    memo: Mutex<HashMap<[u8; 32], CompiledAgent>>,
}

/// This build of caxton, as rule 1 names it.
fn build_fingerprint() -> String {
    let exe = std::env::current_exe().ok().and_then(|p| std::fs::metadata(p).ok());
    let (size, modified) =
        exe.map_or((0, 0), |m| (m.len(), m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())));
    format!("caxton {} {size} {modified}", env!("CARGO_PKG_VERSION"))
}

/// May this node load code from a file or directory with this metadata
/// (rule 5)? Its owner is this process's user, and neither its group nor
/// others may write it.
fn ours(meta: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    meta.uid() == me && meta.mode() & 0o022 == 0
}

impl ModuleCache {
    /// The cache in `dir` (`None`: off), holding at most `bytes_max`.
    pub fn new(dir: Option<PathBuf>, bytes_max: u64) -> Result<ModuleCache, String> {
        if let Some(d) = &dir {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d).map_err(|e| format!("cannot create the module cache {}: {e}", d.display()))?;
            let meta = std::fs::metadata(d).map_err(|e| format!("cannot read the module cache {}: {e}", d.display()))?;
            // SAFETY: geteuid(2) has no preconditions and cannot fail.
            if meta.uid() == unsafe { libc::geteuid() } && meta.mode() & 0o077 != 0 {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("cannot make the module cache {} private: {e}", d.display()))?;
            }
        }
        Ok(ModuleCache { dir, bytes_max, build: build_fingerprint(), memo: Mutex::new(HashMap::new()) })
    }

    /// Deletes the entries of modules no agent holds any more (rule 6),
    /// given their hashes (the catalog's, hex SHA-256 of the module).
    pub fn remove_modules(&self, hashes: &[String], limits: &AgentLimits) {
        for hash in hashes {
            let Some(digest) = hex_digest(hash) else { continue };
            let key = self.key_of_digest(&digest, limits);
            self.memo.lock().unwrap().remove(&key);
            if let Some(path) = self.path(&key) {
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::debug!(path = %path.display(), "module cache entry of an undeployed module deleted"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete a module cache entry"),
                }
            }
        }
    }

    fn key(&self, wasm: &[u8], limits: &AgentLimits) -> [u8; 32] {
        self.key_of_digest(&Sha256::digest(wasm).into(), limits)
    }

    fn key_of_digest(&self, module_digest: &[u8; 32], limits: &AgentLimits) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(module_digest);
        h.update(format!("{limits:?}").as_bytes());
        h.update(self.build.as_bytes());
        h.finalize().into()
    }

    fn path(&self, key: &[u8; 32]) -> Option<PathBuf> {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.as_ref().map(|d| d.join(format!("{hex}.module")))
    }

    /// The compiled module, from memory, disk or the compiler (rules 1 to 4).
    pub fn get(&self, wasm: &[u8], limits: &AgentLimits) -> Result<(CompiledAgent, Source), ModuleError> {
        let key = self.key(wasm, limits);
        if let Some(m) = self.memo.lock().unwrap().get(&key) {
            return Ok((m.clone(), Source::Memory));
        }
        let path = self.path(&key);
        let (module, source) = match path.as_ref().and_then(|p| self.load(p, limits)) {
            Some(m) => (m, Source::Disk),
            None => {
                let m = compile(wasm, limits)?;
                if let Some(p) = &path {
                    if let Err(e) = self.store(p, &m) {
                        tracing::warn!(path = %p.display(), error = %e, "cannot write to the module cache; the next start compiles again");
                    }
                }
                (m, Source::Compiled)
            }
        };
        self.memo.lock().unwrap().insert(key, module.clone());
        Ok((module, source))
    }

    /// Forgets what this start loaded (the memo): after a restore.
    pub fn forget(&self) {
        self.memo.lock().unwrap().clear();
    }

    fn load(&self, path: &Path, limits: &AgentLimits) -> Option<CompiledAgent> {
        let file = std::fs::File::open(path).ok()?;
        let dir_ok = path.parent().and_then(|d| std::fs::metadata(d).ok()).is_some_and(|m| ours(&m));
        if !dir_ok || !file.metadata().is_ok_and(|m| ours(&m)) {
            tracing::warn!(path = %path.display(), "a module cache entry (or its folder) is not this user's alone; it is not loaded, the module is compiled");
            return None;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut bytes).ok()?;
        // Rule 6: a hit counts as a use.
        let _ = file.set_modified(std::time::SystemTime::now());
        let (digest, code) = (bytes.get(..32)?, bytes.get(32..)?);
        if Sha256::digest(code).as_slice() != digest {
            tracing::warn!(path = %path.display(), "a module cache entry is corrupted; compiling again");
            return None;
        }
        // SAFETY: rule 2: these bytes are what `engine::serialize` wrote for
        // this build and these limits (rule 1, the key), checked whole.
        match unsafe { engine::deserialize(code, limits) } {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "a module cache entry does not load; compiling again");
                None
            }
        }
    }

    fn store(&self, path: &Path, module: &CompiledAgent) -> Result<(), String> {
        let code = engine::serialize(module).map_err(|e| e.0)?;
        let mut bytes = Vec::with_capacity(32 + code.len());
        bytes.extend_from_slice(&Sha256::digest(&code));
        bytes.extend_from_slice(&code);
        if bytes.len() as u64 > self.bytes_max {
            return Ok(()); // rule 6: it could never fit
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            std::io::Write::write_all(&mut f, &bytes)?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        })?;
        self.evict();
        Ok(())
    }

    /// Deletes the entries used least recently until the rest fit (rule 6).
    fn evict(&self) {
        let Some(dir) = &self.dir else { return };
        let Ok(read) = std::fs::read_dir(dir) else { return };
        let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = read
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "module"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= self.bytes_max {
            return;
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.bytes_max {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                tracing::info!(path = %path.display(), bytes = len, "module cache over --module-cache-max: the entry used least recently is deleted");
            }
        }
    }
}

/// A hex SHA-256 as bytes.
fn hex_digest(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(module (memory (export "memory") 1)
        (func (export "caxton_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))"#;

    #[test]
    fn a_module_compiles_once_loads_from_disk_after_and_a_corrupted_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = caxton_shards::agent::to_wasm_binary(WAT.as_bytes()).unwrap().into_owned();
        let limits = AgentLimits::default();
        let cache = ModuleCache::new(Some(dir.path().to_path_buf()), u64::MAX).unwrap();
        assert_eq!(cache.get(&wasm, &limits).unwrap().1, Source::Compiled);
        assert_eq!(cache.get(&wasm, &limits).unwrap().1, Source::Memory);
        let restarted = ModuleCache::new(Some(dir.path().to_path_buf()), u64::MAX).unwrap();
        assert_eq!(restarted.get(&wasm, &limits).unwrap().1, Source::Disk);
        let other = AgentLimits { execution_time_slice_ms: limits.execution_time_slice_ms + 1, ..limits };
        assert_eq!(restarted.get(&wasm, &other).unwrap().1, Source::Compiled, "other limits, another key");

        let entry = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        let mut bytes = std::fs::read(&entry).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&entry, &bytes).unwrap();
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p != entry {
                std::fs::remove_file(p).unwrap();
            }
        }
        let again = ModuleCache::new(Some(dir.path().to_path_buf()), u64::MAX).unwrap();
        let sources: Vec<Source> = [limits, other].iter().map(|l| again.get(&wasm, l).unwrap().1).collect();
        assert!(sources.iter().all(|s| *s == Source::Compiled), "a corrupted entry is compiled again: {sources:?}");
        assert_eq!(ModuleCache::new(None, u64::MAX).unwrap().get(&wasm, &limits).unwrap().1, Source::Compiled, "off: always compiled");
    }

    #[test]
    fn the_cache_is_private_bounded_and_cleaned_when_a_module_goes() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("modules");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let module = |i: u32| {
            let wat = WAT.replace("(i32.const 0)))", &format!("(i32.const {i})))"));
            caxton_shards::agent::to_wasm_binary(wat.as_bytes()).unwrap().into_owned()
        };
        let limits = AgentLimits::default();
        let cache = ModuleCache::new(Some(dir.clone()), u64::MAX).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700, "rule 5: made private");
        cache.get(&module(1), &limits).unwrap();
        let entry = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
        assert_eq!(std::fs::metadata(&entry).unwrap().mode() & 0o777, 0o600);
        // An entry others may write is not loaded.
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(ModuleCache::new(Some(dir.clone()), u64::MAX).unwrap().get(&module(1), &limits).unwrap().1, Source::Compiled);
        // Rule 6: the bound keeps the newest; an undeployed module's entry goes.
        let one = std::fs::metadata(&entry).unwrap().len();
        let small = ModuleCache::new(Some(dir.clone()), one * 2 + one / 2).unwrap();
        for i in 2..=5 {
            small.get(&module(i), &limits).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20)); // distinct modification times
        }
        let left = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(left, 2, "two entries fit");
        let again = ModuleCache::new(Some(dir.clone()), u64::MAX).unwrap();
        assert_eq!(again.get(&module(5), &limits).unwrap().1, Source::Disk, "the newest stayed");
        again.remove_modules(&[crate::catalog::module_hash(&module(5))], &limits);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(again.get(&module(5), &limits).unwrap().1, Source::Compiled);
    }
}
