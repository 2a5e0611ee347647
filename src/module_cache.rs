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
//!
//! Who can write the data dir can already change every agent's state and
//! module; the cache adds no new way in (docs/SECURITY.md).

use std::collections::HashMap;
use std::path::PathBuf;
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

impl ModuleCache {
    pub fn new(dir: Option<PathBuf>) -> Result<ModuleCache, String> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot create the module cache {}: {e}", d.display()))?;
        }
        Ok(ModuleCache { dir, build: build_fingerprint(), memo: Mutex::new(HashMap::new()) })
    }

    fn key(&self, wasm: &[u8], limits: &AgentLimits) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(Sha256::digest(wasm));
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

    fn load(&self, path: &std::path::Path, limits: &AgentLimits) -> Option<CompiledAgent> {
        let bytes = std::fs::read(path).ok()?;
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

    fn store(&self, path: &std::path::Path, module: &CompiledAgent) -> Result<(), String> {
        let code = engine::serialize(module).map_err(|e| e.0)?;
        let mut bytes = Vec::with_capacity(32 + code.len());
        bytes.extend_from_slice(&Sha256::digest(&code));
        bytes.extend_from_slice(&code);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    }
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
        let cache = ModuleCache::new(Some(dir.path().to_path_buf())).unwrap();
        assert_eq!(cache.get(&wasm, &limits).unwrap().1, Source::Compiled);
        assert_eq!(cache.get(&wasm, &limits).unwrap().1, Source::Memory);
        let restarted = ModuleCache::new(Some(dir.path().to_path_buf())).unwrap();
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
        let again = ModuleCache::new(Some(dir.path().to_path_buf())).unwrap();
        let sources: Vec<Source> = [limits, other].iter().map(|l| again.get(&wasm, l).unwrap().1).collect();
        assert!(sources.iter().all(|s| *s == Source::Compiled), "a corrupted entry is compiled again: {sources:?}");
        assert_eq!(ModuleCache::new(None).unwrap().get(&wasm, &limits).unwrap().1, Source::Compiled, "off: always compiled");
    }
}
