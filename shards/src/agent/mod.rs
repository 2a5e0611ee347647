//! WebAssembly agents: the engine and its limits, one instance's lifecycle,
//! and the host functions of ABI version 1 and of WASI preview 1.
//!
//! An instance owns its own wasmer `Store` (which is `!Send`), so it is made
//! on its shard's thread and never leaves it; stopping an agent drops the
//! store and gives its memory back.

pub mod agent_log;
pub mod bulk_fuel;
pub mod engine;
pub mod fuel;
pub mod host;
pub mod hot;
pub mod imports;
pub mod instance;
pub mod memory_pool;
pub mod start_section;
pub mod timer_calls;
pub mod wasi;

pub use engine::{compile, to_wasm_binary, AgentLimits, CompiledAgent, ModuleError};
pub use instance::{AgentInstance, InCall, Outcome};
