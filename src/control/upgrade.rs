//! Upgrades in place, rollbacks and restarts (control rule 2 applies: one
//! lifecycle operation at a time, over the lifecycle queues).
//!
//! Rules:
//! 1. An upgrade compiles and checks the new module off the shards, then
//!    asks every shard to try it (`UpgradePrepare`: each local instance is
//!    made from it and initialised, and everything it did is rolled back).
//!    Only if every shard says yes does it commit (`UpgradeCommit`), and
//!    only then does the catalog record the new version. Any refusal, or a
//!    shard that does not answer in time, leaves every instance on the old
//!    version and the catalog unchanged.
//! 2. Versions are numbered from 1; an upgrade takes the highest number
//!    the agent has had, plus one. A rollback makes the kept version just
//!    before the current one current again, under its own number (the
//!    next upgrade still takes a new number).
//! 3. A restart lifts backoffs and quarantines (`shard::supervision`).
//! 4. An upgrade says what the new module changes: its ABI version (as
//!    each module declares it: 2 with a `caxton_abi_version` export, else
//!    1), and the exports and imports gained or lost. A change of ABI
//!    version is refused (409 `abi_change`) unless forced: the same
//!    messages then reach code that reads them another way.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use caxton_shards::agent::CompiledAgent;
use caxton_shards::Command;

use super::{Control, ControlError};
use crate::catalog::Version;

/// What an upgrade or a rollback did.
pub struct UpgradeReport {
    pub version: Version,
    /// The version it replaced.
    pub previous: u32,
    pub compile_ms: f64,
    pub total_ms: f64,
    /// What the module changed (rule 4).
    pub changes: ModuleChanges,
}

/// What a new module changes against the one it replaces (rule 4).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModuleChanges {
    /// (before, after).
    pub abi_version: (u8, u8),
    pub exports_added: Vec<String>,
    pub exports_removed: Vec<String>,
    /// As `module.name`.
    pub imports_added: Vec<String>,
    pub imports_removed: Vec<String>,
}

/// A module's surface: its ABI version as declared, its exports and its
/// imports (the ones the node adds, fuel and the start export, left out).
fn surface(module: &CompiledAgent) -> (u8, BTreeSet<String>, BTreeSet<String>) {
    let exports: BTreeSet<String> = module
        .module
        .exports()
        .map(|e| e.name().to_string())
        .filter(|n| !n.starts_with("wasmer_metering_") && n != caxton_shards::agent::start_section::START_EXPORT)
        .collect();
    let imports = module.module.imports().map(|i| format!("{}.{}", i.module(), i.name())).collect();
    let abi = if exports.contains("caxton_abi_version") { 2 } else { 1 };
    (abi, exports, imports)
}

impl ModuleChanges {
    pub fn between(before: &CompiledAgent, after: &CompiledAgent) -> ModuleChanges {
        let ((abi_a, ex_a, im_a), (abi_b, ex_b, im_b)) = (surface(before), surface(after));
        let diff = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.difference(b).cloned().collect::<Vec<_>>();
        ModuleChanges {
            abi_version: (abi_a, abi_b),
            exports_added: diff(&ex_b, &ex_a),
            exports_removed: diff(&ex_a, &ex_b),
            imports_added: diff(&im_b, &im_a),
            imports_removed: diff(&im_a, &im_b),
        }
    }
}

impl Control {
    fn current_version(&self, name: &str) -> Result<u32, ControlError> {
        self.agents.read().unwrap().get(name).map(|r| r.version.number).ok_or_else(|| ControlError::not_found(format!("no agent named {name:?}")))
    }

    /// Upgrades `name` to the module in `body` (rules 1 and 2).
    /// With `tools`, the grant changes too (`control::tools` rule 1).
    /// A change of ABI version needs `force` (rule 4).
    pub async fn upgrade(self: &Arc<Self>, name: &str, body: Vec<u8>, tools: Option<&[String]>, force: bool) -> Result<UpgradeReport, ControlError> {
        let started = Instant::now();
        self.current_version(name)?;
        let tools = tools.map(|t| self.check_grant(t)).transpose()?;
        let (module, wasm) = self.compile_off_shards(body).await?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let changes = self.changes_from_current(name, &module).await?;
        let (from, to) = changes.abi_version;
        if from != to && !force {
            return Err(ControlError::conflict_because(
                "abi_change",
                format!(
                    "the new module speaks ABI version {to} and {name:?} speaks version {from}: its messages would reach code that reads them another way. \
                     Upgrade with ?force=true (caxton agent upgrade --force) if that is meant; nothing was changed"
                ),
            ));
        }
        let next = self.catalog.lock().unwrap().latest_version(name).map_err(|e| ControlError::internal(format!("catalog read failed: {e}")))? + 1;
        let (version, previous) = self.switch_to(name, module, &wasm, next).await?;
        if let Some(tools) = tools {
            self.change_grant(name, tools).await?;
        }
        Ok(UpgradeReport { version, previous, compile_ms, total_ms: started.elapsed().as_secs_f64() * 1e3, changes })
    }

    /// Rule 4: the current module (compiled already, shared by content)
    /// against `module`.
    async fn changes_from_current(self: &Arc<Self>, name: &str, module: &CompiledAgent) -> Result<ModuleChanges, ControlError> {
        let current = self.catalog.lock().unwrap().current_module(name).map_err(|e| ControlError::internal(format!("catalog read failed: {e}")))?;
        let current = current.ok_or_else(|| ControlError::not_found(format!("no agent named {name:?}")))?;
        let (before, _) = self.compile_off_shards(current).await?;
        Ok(ModuleChanges::between(&before, module))
    }

    /// Returns `name` to its previous kept version (rule 2).
    pub async fn rollback(self: &Arc<Self>, name: &str) -> Result<UpgradeReport, ControlError> {
        let started = Instant::now();
        let current = self.current_version(name)?;
        let previous = self.catalog.lock().unwrap().previous_version(name, current).map_err(|e| ControlError::internal(format!("catalog read failed: {e}")))?;
        let Some((number, wasm)) = previous else {
            return Err(ControlError::conflict(format!("{name:?} is at version {current} and no earlier version is kept")));
        };
        let (module, wasm) = self.compile_off_shards(wasm).await?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let changes = self.changes_from_current(name, &module).await?;
        let (version, previous) = self.switch_to(name, module, &wasm, number).await?;
        Ok(UpgradeReport { version, previous, compile_ms, total_ms: started.elapsed().as_secs_f64() * 1e3, changes })
    }

    /// Rule 1: try everywhere, then commit everywhere, then record.
    async fn switch_to(self: &Arc<Self>, name: &str, module: CompiledAgent, wasm: &[u8], number: u32) -> Result<(Version, u32), ControlError> {
        let _lifecycle = self.lifecycle_lock().await?;
        let previous = self.current_version(name)?; // it may have gone meanwhile
        let shared: Arc<str> = name.into();
        let shards = self.all_shards();
        let tries = self.lifecycle_to(&shards, |reply| Command::UpgradePrepare { name: shared.clone(), module: module.clone(), reply })?;
        let mut refusal = None;
        for (shard, rx) in tries {
            match self.answer(shard, rx).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    refusal = refusal.or(Some(ControlError::bad_request("upgrade_refused", format!("{why}; every instance keeps version {previous}"))))
                }
                Err(e) => refusal = refusal.or(Some(ControlError { message: format!("{}; every instance keeps version {previous}", e.message), ..e })),
            }
        }
        if let Some(e) = refusal {
            return Err(e);
        }
        let commits = self.lifecycle_to(&shards, |reply| Command::UpgradeCommit { name: shared.clone(), module: module.clone(), reply })?;
        for (shard, rx) in commits {
            // Past the first phase nothing is refused; a start that fails now
            // is retried on the instance's next message (shard lifecycle rule 2).
            match self.answer(shard, rx).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(agent = name, shard, error = e, "an upgraded instance failed to start; it is retried on its next message"),
                Err(e) => {
                    tracing::warn!(agent = name, shard, error = e.message, "a shard is late committing an upgrade; it switches when it takes the command")
                }
            }
        }
        let version = self.catalog.lock().unwrap().set_version(name, number, wasm).map_err(|e| ControlError::internal(format!("catalog write failed: {e}")))?;
        if let Some(r) = self.agents.write().unwrap().get_mut(name) {
            r.version = version.clone();
        }
        tracing::info!(agent = name, from = previous, to = number, hash = version.hash, "agent upgraded in place");
        Ok((version, previous))
    }

    /// Lifts the backoffs and quarantines of `name` (rule 3); how many
    /// instances were lifted.
    pub async fn restart(self: &Arc<Self>, name: &str) -> Result<usize, ControlError> {
        self.current_version(name)?;
        let _lifecycle = self.lifecycle_lock().await?;
        let shared: Arc<str> = name.into();
        let waits = self.lifecycle_to(&self.all_shards(), |reply| Command::Restart { name: shared.clone(), reply })?;
        let mut lifted = 0;
        for (shard, rx) in waits {
            lifted += self.answer(shard, rx).await?;
        }
        tracing::info!(agent = name, lifted, "agent restarted");
        Ok(lifted)
    }
}
