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
}

impl Control {
    fn current_version(&self, name: &str) -> Result<u32, ControlError> {
        self.agents.read().unwrap().get(name).map(|r| r.version.number).ok_or_else(|| ControlError::not_found(format!("no agent named {name:?}")))
    }

    /// Upgrades `name` to the module in `body` (rules 1 and 2).
    /// With `tools`, the grant changes too (`control::tools` rule 1).
    pub async fn upgrade(self: &Arc<Self>, name: &str, body: Vec<u8>, tools: Option<&[String]>) -> Result<UpgradeReport, ControlError> {
        let started = Instant::now();
        self.current_version(name)?;
        let tools = tools.map(|t| self.check_grant(t)).transpose()?;
        let (module, wasm) = self.compile_off_shards(body).await?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let next = self.catalog.lock().unwrap().latest_version(name).map_err(|e| ControlError::internal(format!("catalog read failed: {e}")))? + 1;
        let (version, previous) = self.switch_to(name, module, &wasm, next).await?;
        if let Some(tools) = tools {
            self.change_grant(name, tools).await?;
        }
        Ok(UpgradeReport { version, previous, compile_ms, total_ms: started.elapsed().as_secs_f64() * 1e3 })
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
        let (version, previous) = self.switch_to(name, module, &wasm, number).await?;
        Ok(UpgradeReport { version, previous, compile_ms, total_ms: started.elapsed().as_secs_f64() * 1e3 })
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
