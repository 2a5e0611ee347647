//! Compiling agents: the engine, its tunables and fuel metering, and the
//! checks a module must pass before it may be deployed.
//!
//! Rules:
//! 1. Linear memories are `Dynamic` (explicit bounds checks, no 8 GiB address
//!    reservation per memory), so ten thousand agents fit in one process.
//!    Their regions come from the shard's pool ([`super::memory_pool`]).
//!    Memory and table maximums are clamped to the agent limits, so growth
//!    past them fails inside the agent and the node is unharmed.
//! 2. A module is compiled once per node; instances are made per shard.
//! 3. Every operator costs one fuel point (eight for control flow); a call
//!    that runs out traps. Work whose size is known only at run time (bulk
//!    memory and table operations, `memory.grow`) is charged by its length
//!    ([`super::bulk_fuel`]); host calls by the bytes they move. The metering
//!    middleware can serve one module only, so each module gets an engine
//!    of its own ([`CompiledAgent`]), and its instances' stores use it.
//! 4. Only WebAssembly features whose cost is bounded are accepted: no
//!    threads (`memory.atomic.wait` could block a shard), no second memory
//!    (it would double the memory limit), no 64-bit memories, exceptions or
//!    tail calls. A module that uses one is refused at deploy, naming it.

use std::ptr::NonNull;

use std::sync::Arc;
use wasmer::sys::vm::{LinearMemory, MemoryError, MemoryStyle, TableStyle, VMConfig, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};

use wasmer::sys::{CompilerConfig, Cranelift, EngineBuilder, Tunables};
use wasmer::{Engine, ExternType, FunctionType, MemoryType, Module, Pages, TableType, Type};

use super::agent_log::LogLimits;
use super::bulk_fuel::{BulkCosts, BulkFuel};
use super::fuel::Fuel;
use super::memory_pool::PooledMemory;
use crate::limits::{
    AGENT_MEMORY_BYTES_MAX, AGENT_STACK_BYTES_MAX, AGENT_STATE_BYTES_MAX, AGENT_TABLE_ELEMENTS_MAX, BRANCH_FUEL, BULK_FUEL_PER_KIB, EXECUTION_TIME_SLICE_MS,
    FUEL_PER_MS, GROW_FUEL_PER_PAGE, WASM_PAGE_BYTES,
};

/// Per-agent resource limits applied by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLimits {
    /// Linear memory maximum, in bytes. Default [`AGENT_MEMORY_BYTES_MAX`].
    pub memory_bytes_max: usize,
    /// Wasm stack, in bytes. Default [`AGENT_STACK_BYTES_MAX`].
    pub stack_bytes_max: usize,
    /// Table elements. Default [`AGENT_TABLE_ELEMENTS_MAX`].
    pub table_elements_max: u32,
    /// CPU per handler call, in ms of metered work. Default
    /// [`EXECUTION_TIME_SLICE_MS`].
    pub execution_time_slice_ms: u64,
    /// Charge bulk operations by length (rule 3). Always on in a node; off
    /// only for the benchmark row that measures what it costs.
    pub meter_bulk: bool,
    /// State one instance may hold, keys and values. Default
    /// [`AGENT_STATE_BYTES_MAX`].
    pub state_bytes_max: u64,
    /// What one instance may log. Defaults in [`LogLimits`].
    pub log: LogLimits,
}

impl Default for AgentLimits {
    fn default() -> Self {
        AgentLimits {
            memory_bytes_max: AGENT_MEMORY_BYTES_MAX,
            stack_bytes_max: AGENT_STACK_BYTES_MAX,
            table_elements_max: AGENT_TABLE_ELEMENTS_MAX,
            execution_time_slice_ms: EXECUTION_TIME_SLICE_MS,
            meter_bulk: true,
            state_bytes_max: AGENT_STATE_BYTES_MAX,
            log: LogLimits::default(),
        }
    }
}

impl AgentLimits {
    pub fn memory_pages_max(&self) -> u32 {
        (self.memory_bytes_max / WASM_PAGE_BYTES) as u32
    }

    /// Fuel points one call may burn (rule 3).
    pub fn fuel_per_call(&self) -> u64 {
        self.execution_time_slice_ms.max(1) * FUEL_PER_MS
    }
}

struct AgentTunables {
    limits: AgentLimits,
    vmconfig: VMConfig,
}

impl AgentTunables {
    fn clamp_memory(&self, ty: &MemoryType) -> Result<MemoryType, MemoryError> {
        let pages_max = Pages(self.limits.memory_pages_max());
        if ty.minimum > pages_max {
            return Err(MemoryError::Generic(format!(
                "initial memory of {} pages is over the agent limit of {} pages ({} bytes)",
                ty.minimum.0, pages_max.0, self.limits.memory_bytes_max
            )));
        }
        let maximum = Some(ty.maximum.map_or(pages_max, |m| m.min(pages_max)));
        Ok(MemoryType { maximum, ..*ty })
    }

    fn clamp_table(&self, ty: &TableType) -> Result<TableType, String> {
        let max = self.limits.table_elements_max;
        if ty.minimum > max {
            return Err(format!("initial table of {} elements is over the agent limit of {max}", ty.minimum));
        }
        Ok(TableType { maximum: Some(ty.maximum.map_or(max, |m| m.min(max))), ..*ty })
    }
}

impl Tunables for AgentTunables {
    fn memory_style(&self, _memory: &MemoryType) -> MemoryStyle {
        MemoryStyle::Dynamic { offset_guard_size: 0 }
    }

    fn table_style(&self, _table: &TableType) -> TableStyle {
        TableStyle::CallerChecksSignature
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        VMMemory::new(&self.clamp_memory(ty)?, style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let ty = self.clamp_memory(ty)?;
        if PooledMemory::fits(&ty, style) {
            // SAFETY: wasmer's instantiation guarantees the definition is
            // valid for the instance, which owns the memory.
            let memory = unsafe { PooledMemory::new(&ty, style, vm_definition_location)? };
            return Ok(VMMemory::from(Box::new(memory) as Box<dyn LinearMemory + Send + Sync>));
        }
        // SAFETY: forwarded unchanged from wasmer's instantiation, which
        // guarantees `vm_definition_location` is valid for the instance.
        unsafe { VMMemory::from_definition(&ty, style, vm_definition_location) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        VMTable::new(&self.clamp_table(ty)?, style)
    }

    unsafe fn create_vm_table(&self, ty: &TableType, style: &TableStyle, vm_definition_location: NonNull<VMTableDefinition>) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged from wasmer's instantiation, which
        // guarantees `vm_definition_location` is valid for the instance.
        unsafe { VMTable::from_definition(&self.clamp_table(ty)?, style, vm_definition_location) }
    }

    fn vmconfig(&self) -> &VMConfig {
        &self.vmconfig
    }
}

/// A module compiled for agents, with the engine its instances must use
/// (rule 3). Cheap to clone.
#[derive(Clone)]
pub struct CompiledAgent {
    pub engine: Engine,
    pub module: Module,
    pub fuel_per_call: u64,
    /// The limits it was compiled with (its instances read theirs here).
    pub limits: AgentLimits,
    /// The maximum memory the module itself declares, in bytes, if any.
    pub declared_memory_max: Option<u64>,
}

/// Fuel of one operator: control flow costs [`BRANCH_FUEL`], anything else
/// one point. A loop iteration takes about the same time however few
/// operators it has, so weighting branches keeps fuel close to time.
fn operator_fuel(op: &wasmer::wasmparser::Operator<'_>) -> u64 {
    use wasmer::wasmparser::Operator as O;
    match op {
        O::Loop { .. }
        | O::Br { .. }
        | O::BrIf { .. }
        | O::BrTable { .. }
        | O::Call { .. }
        | O::CallIndirect { .. }
        | O::ReturnCall { .. }
        | O::ReturnCallIndirect { .. } => BRANCH_FUEL,
        _ => 1,
    }
}

/// The WebAssembly features agents may use (rule 4).
pub fn agent_features() -> wasmer::sys::Features {
    let mut f = wasmer::sys::Features::new();
    f.threads(false).multi_memory(false).memory64(false).exceptions(false).tail_call(false).relaxed_simd(false).module_linking(false);
    f.bulk_memory(true).reference_types(true).simd(true).multi_value(true).extended_const(true);
    f
}

/// Builds an engine for one module: cranelift with fuel metering
/// ([`super::fuel`]; the bulk charges run after it, which adds the
/// globals they use), and
/// the agent limits of rule 1.
fn engine_for_one_module(limits: AgentLimits) -> Engine {
    let mut compiler = Cranelift::default();
    compiler.push_middleware(Arc::new(Fuel::new(operator_fuel)));
    if limits.meter_bulk {
        compiler.push_middleware(Arc::new(BulkFuel::new(BulkCosts { fuel_per_kib: BULK_FUEL_PER_KIB, fuel_per_page: GROW_FUEL_PER_PAGE })));
    }
    let mut engine = EngineBuilder::new(compiler).set_features(Some(agent_features())).engine();
    engine.set_tunables(AgentTunables { limits, vmconfig: VMConfig { wasm_stack_size: Some(limits.stack_bytes_max) } });
    Engine::from(engine)
}

/// An engine with the agents' tunables and no metering, for tests of what
/// the tunables make (`memory_pool`).
#[cfg(test)]
pub(crate) fn engine_for_tests(limits: AgentLimits) -> Engine {
    let mut engine = EngineBuilder::new(Cranelift::default()).set_features(Some(agent_features())).engine();
    engine.set_tunables(AgentTunables { limits, vmconfig: VMConfig { wasm_stack_size: Some(limits.stack_bytes_max) } });
    Engine::from(engine)
}

/// Can this process map memory executable after writing it, as the
/// compiler does with the code it makes? Under W^X enforcement (systemd's
/// `MemoryDenyWriteExecute=yes`, or `prctl(PR_SET_MDWE)`) it cannot, and
/// wasmer would panic inside the first deploy: the node checks this at
/// start instead, and refuses with this message.
pub fn executable_memory_allowed() -> Result<(), String> {
    const PAGE: usize = 4096;
    // SAFETY: an anonymous private mapping of one page that nothing else
    // sees; it is only protected and unmapped here, never read or run.
    unsafe {
        let page = libc::mmap(std::ptr::null_mut(), PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if page == libc::MAP_FAILED {
            return Err(format!("cannot map a page to probe for executable memory: {}", std::io::Error::last_os_error()));
        }
        let made_executable = libc::mprotect(page, PAGE, libc::PROT_READ | libc::PROT_EXEC) == 0;
        let why = std::io::Error::last_os_error();
        libc::munmap(page, PAGE);
        if !made_executable {
            return Err(format!(
                "this process may not make memory executable ({why}): caxton compiles agents to machine code and needs it. \
                 W^X is enforced on it: remove MemoryDenyWriteExecute=yes from its systemd unit (or run it without prctl(PR_SET_MDWE))"
            ));
        }
    }
    Ok(())
}

/// Why a module cannot be deployed. The text is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleError(pub String);

impl std::fmt::Display for ModuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Turns a body in the binary or the text format into binary WebAssembly.
pub fn to_wasm_binary(body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, ModuleError> {
    if body.starts_with(b"\0asm") {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let text = std::str::from_utf8(body).map_err(|_| ModuleError("not WebAssembly: neither the binary format (\\0asm) nor UTF-8 text".into()))?;
    wasmer::wat2wasm(text.as_bytes()).map(|b| std::borrow::Cow::Owned(b.into_owned())).map_err(|e| ModuleError(format!("not valid WebAssembly text: {e}")))
}

/// Compiles a module and checks it against the ABI (rule 2).
pub fn compile(wasm: &[u8], limits: &AgentLimits) -> Result<CompiledAgent, ModuleError> {
    let engine = engine_for_one_module(*limits);
    // Instantiation must run no guest code (`instance` rule 3).
    let wasm = super::start_section::export_start(wasm)?;
    let module = Module::new(&engine, &*wasm).map_err(|e| ModuleError(explain_invalid(&e.to_string())))?;
    finish(engine, module, limits)
}

/// The machine code of a compiled module, to keep on disk (the node's
/// module cache).
pub fn serialize(agent: &CompiledAgent) -> Result<Vec<u8>, ModuleError> {
    agent.module.serialize().map(|b| b.to_vec()).map_err(|e| ModuleError(format!("cannot serialize a compiled module: {e}")))
}

/// A module from what [`serialize`] wrote, with the same `limits` (they
/// are part of the cache key: metering is compiled in).
///
/// # Safety
/// `bytes` must be what [`serialize`] produced in this same build for
/// these limits: wasmer maps it as machine code without validating it.
/// The node's module cache checks a SHA-256 of the bytes and keys them by
/// build and limits before it calls this.
pub unsafe fn deserialize(bytes: &[u8], limits: &AgentLimits) -> Result<CompiledAgent, ModuleError> {
    let engine = engine_for_one_module(*limits);
    // SAFETY: the caller vouches for the bytes (see above).
    let module = unsafe { Module::deserialize(&engine, bytes.to_vec()) }.map_err(|e| ModuleError(format!("a cached module does not load: {e}")))?;
    finish(engine, module, limits)
}

fn finish(engine: Engine, module: Module, limits: &AgentLimits) -> Result<CompiledAgent, ModuleError> {
    check_abi(&module, limits)?;
    let declared_memory_max = module.exports().find_map(|e| match e.ty() {
        ExternType::Memory(m) if e.name() == "memory" => m.maximum.map(|p| p.0 as u64 * WASM_PAGE_BYTES as u64),
        _ => None,
    });
    Ok(CompiledAgent { engine, module, fuel_per_call: limits.fuel_per_call(), limits: *limits, declared_memory_max })
}

/// The compiler's reason, and for a refused feature what caxton accepts.
fn explain_invalid(why: &str) -> String {
    let features = ["threads", "shared memor", "atomic", "multiple memories", "multi-memory", "memory64", "64-bit memor", "exception", "tail call"];
    if features.iter().any(|f| why.to_ascii_lowercase().contains(f)) {
        return format!(
            "invalid module: {why} (agents may not use WebAssembly threads, shared or multiple memories, 64-bit memories, exceptions or tail calls: \
             their cost cannot be bounded; build without them)"
        );
    }
    format!("invalid module: {why}")
}

fn check_abi(module: &Module, limits: &AgentLimits) -> Result<(), ModuleError> {
    for import in module.imports() {
        super::imports::check_import(import.module(), import.name(), import.ty()).map_err(ModuleError)?;
    }
    let mut has_memory = false;
    let mut exports = std::collections::HashMap::new();
    for export in module.exports().filter(|e| !e.name().starts_with("wasmer_metering_")) {
        match export.ty() {
            ExternType::Memory(ty) if export.name() == "memory" => {
                has_memory = true;
                if ty.minimum.0 > limits.memory_pages_max() {
                    return Err(ModuleError(format!(
                        "initial memory of {} pages ({} bytes) is over the agent memory limit of {} bytes",
                        ty.minimum.0,
                        ty.minimum.0 as usize * WASM_PAGE_BYTES,
                        limits.memory_bytes_max
                    )));
                }
            }
            ExternType::Function(ty) => {
                exports.insert(export.name().to_string(), ty.clone());
            }
            _ => {}
        }
    }
    if !has_memory {
        return Err(ModuleError("the module must export its linear memory as \"memory\"".into()));
    }
    let required: [(&str, FunctionType, bool); 7] = [
        ("caxton_abi_version", FunctionType::new(vec![], vec![Type::I32]), false),
        ("caxton_inbox_ptr", FunctionType::new(vec![], vec![Type::I32]), false),
        ("caxton_inbox_bytes", FunctionType::new(vec![], vec![Type::I32]), false),
        ("caxton_alloc", FunctionType::new(vec![Type::I32], vec![Type::I32]), true),
        ("caxton_handle", FunctionType::new(vec![Type::I32, Type::I32], vec![Type::I32]), true),
        ("caxton_init", FunctionType::new(vec![], vec![Type::I32]), false),
        ("_initialize", FunctionType::new(vec![], vec![]), false),
    ];
    if exports.contains_key("_start") {
        return Err(ModuleError(
            "the module is a WASI command (it exports _start, a main that runs once and exits); an agent must be a reactor, \
             whose _initialize returns and whose exports are called for each message. Build it as one: Rust: crate-type = [\"cdylib\"]; \
             C: clang -mexec-model=reactor; AssemblyScript: asc --exportStart _initialize"
                .into(),
        ));
    }
    for (name, want, mandatory) in required {
        match exports.get(name) {
            Some(ty) if *ty == want => {}
            Some(ty) => return Err(ModuleError(format!("export {name} has type {ty}, expected {want}"))),
            None if mandatory => return Err(ModuleError(format!("the module must export the function {name}: {want}"))),
            None => {}
        }
    }
    for table in module.info().tables.values() {
        if table.minimum > limits.table_elements_max {
            return Err(ModuleError(format!("initial table of {} elements is over the agent limit of {}", table.minimum, limits.table_elements_max)));
        }
    }
    Ok(())
}
