//! One agent instance: its store, its exports, and the calls into it.
//!
//! Rules:
//! 1. Every call into the guest returns an [`Outcome`]; a trap is a value,
//!    never a panic, so a broken agent cannot take down its shard.
//! 2. The pointer `caxton_alloc` returns is checked against the memory before
//!    the host writes the envelope there.
//! 3. Making an instance ([`AgentInstance::new`]) runs no guest code: the
//!    module's start function was moved to an export at compile time
//!    (`start_section`). Its guest code runs in [`AgentInstance::start`],
//!    in this order and within one execution slice of fuel for all of it:
//!    the start function, `caxton_abi_version`, the fixed inbox exports,
//!    a WASI reactor's `_initialize`, then `caxton_init`.
//! 4. Every method that runs guest code takes an [`InCall`]: proof that the
//!    shard opened its call bracket (`shard::handler` rule 1), whose
//!    rollback undoes whatever the guest did. The host functions check the
//!    same at run time (`host` rule 6).
//! 5. A call that ends in `proc_exit` has returned ([`Outcome::Exited`]);
//!    the instance must then be made anew (`wasi` rule 5). What a call
//!    wrote to standard output but did not end with a newline is written
//!    to the log when the call returns.
//! 6. An instance speaks ABI version 2 if its module exports
//!    `caxton_abi_version` and it returns 2 (asked once, at its start);
//!    otherwise version 1.
//! 7. A module may declare a fixed inbox (`caxton_inbox_ptr`,
//!    `caxton_inbox_bytes`, asked once, at its start, and checked to lie
//!    within its memory then): an envelope that fits is written there and
//!    handed to `caxton_handle` with no `caxton_alloc` call, one guest call
//!    a message instead of two. A larger one goes through `caxton_alloc`
//!    as before.
//! 8. The fuel global and the memory are reached by address (`hot`), not
//!    through the store's tables, on every call; the lines a call touches
//!    first are known once the instance has started ([`AgentInstance::hot_lines`]).

use std::ptr::NonNull;
use std::sync::Arc;

use wasmer::{FunctionEnv, Global, Instance, Store, TypedFunction, Value};

use super::engine::CompiledAgent;
use super::host::{HostEnv, InstanceAccount};
use super::hot::{FuelCell, HotLines, MemoryCell};

/// What came of one call into an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    /// The export returned non-zero (or `caxton_alloc` gave a bad pointer).
    AgentError(i32),
    /// The call trapped: the instance must be recreated.
    Trap(String),
    /// The call used up its fuel (its execution time slice): the instance
    /// must be recreated.
    Timeout,
    /// The program called `proc_exit(code)` (rule 4): the call is over, with
    /// 0 as handled and any other code as an agent error; the instance must
    /// be recreated.
    Exited(i32),
}

/// `caxton_alloc` returned a pointer outside memory (rule 2).
pub const BAD_ALLOC: i32 = i32::MIN;

/// Proof that a call bracket is open (rule 4): the shard's `call_begin`
/// makes one and `call_end` takes it back.
#[derive(Debug)]
pub struct InCall(());

impl InCall {
    pub(crate) fn opened() -> InCall {
        InCall(())
    }

    /// For benchmarks that run an instance with no shard: there is no call
    /// bracket, so every host function the guest calls is refused
    /// (`host` rule 6).
    pub fn without_shard() -> InCall {
        InCall(())
    }
}

pub struct AgentInstance {
    store: Store,
    env: FunctionEnv<HostEnv>,
    alloc: TypedFunction<i32, i32>,
    handle: TypedFunction<(i32, i32), i32>,
    init: Option<TypedFunction<(), i32>>,
    /// A WASI reactor's initialiser (rule 3).
    initialize: Option<TypedFunction<(), ()>>,
    /// The module's start function, moved out of instantiation (rule 3).
    start_function: Option<TypedFunction<(), ()>>,
    abi_version_export: Option<TypedFunction<(), i32>>,
    inbox_exports: Option<(TypedFunction<(), i32>, TypedFunction<(), i32>)>,
    fuel_left: FuelCell,
    fuel_exhausted: Global,
    /// The memory by address (rule 8).
    memory_cell: MemoryCell,
    /// What a call touches first (rule 8), once started.
    hot: HotLines,
    /// Its host environment by address (rule 8): reached after every call
    /// (`flush_output`), without the store's table of environments.
    host_env: NonNull<HostEnv>,
    fuel_per_call: u64,
    /// The envelopes it reads and writes: 2 if it exports
    /// `caxton_abi_version` returning 2, else 1 (rule 6). Known once started.
    abi_version: u8,
    /// Its fixed inbox (rule 7): where envelopes up to its size are
    /// written without a `caxton_alloc` call, as (offset, bytes).
    inbox: Option<(u32, u32)>,
    _instance: Instance,
}

impl AgentInstance {
    /// Instantiates `module` in a store of its own; `state_bytes` is what
    /// the instance's state holds now. Runs no guest code (rule 3): call
    /// [`AgentInstance::start`] next.
    pub fn new(compiled: &CompiledAgent, name: Arc<str>, instance: u32, state_bytes: u64, account: Arc<InstanceAccount>) -> Result<AgentInstance, String> {
        let mut store = Store::new(compiled.engine.clone());
        let module = &compiled.module;
        let host = HostEnv::new(name, instance, state_bytes, compiled.limits.state_bytes_max, account);
        let env = FunctionEnv::new(&mut store, host);
        let imports = super::imports::import_object(&mut store, &env, module);
        let instance = Instance::new(&mut store, module, &imports).map_err(|e| format!("instantiation failed: {e}"))?;
        let exports = &instance.exports;
        let memory = exports.get_memory("memory").map_err(|e| e.to_string())?.clone();
        let alloc = exports.get_typed_function(&store, "caxton_alloc").map_err(|e| e.to_string())?;
        let handle = exports.get_typed_function(&store, "caxton_handle").map_err(|e| e.to_string())?;
        let init = exports.get_typed_function(&store, "caxton_init").ok();
        let initialize = exports.get_typed_function(&store, "_initialize").ok();
        let start_function = exports.get_typed_function(&store, super::start_section::START_EXPORT).ok();
        let abi_version_export = exports.get_typed_function(&store, "caxton_abi_version").ok();
        let inbox_exports = exports.get_typed_function(&store, "caxton_inbox_ptr").ok().zip(exports.get_typed_function(&store, "caxton_inbox_bytes").ok());
        let fuel_left = exports.get_global("wasmer_metering_remaining_points").map_err(|e| e.to_string())?.clone();
        let fuel_exhausted = exports.get_global("wasmer_metering_points_exhausted").map_err(|e| e.to_string())?.clone();
        let fuel_left = FuelCell::of(&fuel_left, &mut store);
        let host_env = NonNull::from(env.as_mut(&mut store));
        let memory_cell = MemoryCell::of(&memory, &mut store);
        env.as_mut(&mut store).memory = Some(memory);
        env.as_mut(&mut store).fuel = Some(fuel_left);
        Ok(AgentInstance {
            abi_version: 1,
            inbox: None,
            store,
            env,
            alloc,
            handle,
            init,
            initialize,
            start_function,
            abi_version_export,
            inbox_exports,
            fuel_left,
            fuel_exhausted,
            memory_cell,
            hot: HotLines::default(),
            host_env,
            fuel_per_call: compiled.fuel_per_call,
            _instance: instance,
        })
    }

    /// Runs the instance's start (rule 3) within one slice of fuel: the
    /// start function, `caxton_abi_version`, the fixed inbox, `_initialize`
    /// and `caxton_init`, each if the module exports it. `Err` says what
    /// failed, for the operator; the instance must then be dropped.
    pub fn start(&mut self, _call: &InCall) -> Result<(), String> {
        self.refuel();
        let started = self.start_steps();
        self.flush_output();
        if started.is_ok() {
            self.hot = self.find_hot_lines();
        }
        started
    }

    fn start_steps(&mut self) -> Result<(), String> {
        if let Some(f) = self.start_function.clone() {
            let called = f.call(&mut self.store);
            self.step("its start function", called.map(|()| 0))?;
        }
        if let Some(f) = self.abi_version_export.clone() {
            let called = f.call(&mut self.store);
            self.abi_version = match self.step("caxton_abi_version", called)? {
                v @ (1 | 2) => v as u8,
                v => return Err(format!("the module speaks ABI version {v}; this node speaks versions 1 and 2")),
            };
        }
        if let Some((ptr, bytes)) = self.inbox_exports.clone() {
            let called = ptr.call(&mut self.store);
            let at = self.step("caxton_inbox_ptr", called)?;
            let called = bytes.call(&mut self.store);
            let size = self.step("caxton_inbox_bytes", called)?;
            let memory_bytes = self.memory_cell.bytes();
            if at < 0 || size <= 0 || at as u64 + size as u64 > memory_bytes {
                return Err(format!("the fixed inbox ({size} bytes at {at}) does not lie within the module's memory of {memory_bytes} bytes"));
            }
            self.inbox = Some((at as u32, size as u32));
        }
        if let Some(f) = self.initialize.clone() {
            let called = f.call(&mut self.store);
            self.step("_initialize", called.map(|()| 0))?;
        }
        if let Some(f) = self.init.clone() {
            let called = f.call(&mut self.store);
            match self.step("caxton_init", called)? {
                0 => {}
                code => return Err(format!("caxton_init returned {code}")),
            }
        }
        Ok(())
    }

    /// What one step of the start came to: its value, or why it failed.
    fn step(&mut self, what: &str, called: Result<i32, wasmer::RuntimeError>) -> Result<i32, String> {
        let e = match called {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        Err(match self.trap(e) {
            Outcome::Trap(why) => format!("{what} trapped: {why}"),
            Outcome::Timeout => format!("{what} ran past its execution time slice (a start has one slice for all its steps)"),
            Outcome::Exited(code) => {
                format!("{what} exited (proc_exit({code})) while starting: an agent is a WASI reactor, whose _initialize returns")
            }
            other => format!("{what}: {other:?}"),
        })
    }

    /// Rule 8: where a call to `caxton_handle` begins.
    fn find_hot_lines(&mut self) -> HotLines {
        let host_env = self.host_env.as_ptr() as *const u8;
        let handle = self._instance.exports.get_function("caxton_handle").expect("checked when made").clone();
        HotLines::of(&mut self.store, &handle, self.fuel_left, self.memory_cell, self.inbox.map(|(at, _)| at), host_env)
    }

    /// The lines its next call touches first (rule 8), for the shard to
    /// prefetch while another instance runs.
    pub fn hot_lines(&self) -> &HotLines {
        &self.hot
    }

    /// The fixed inbox (rule 7), if the module declares one.
    pub fn inbox(&self) -> Option<(u32, u32)> {
        self.inbox
    }

    /// Gives the next call its full execution time slice. The "exhausted"
    /// flag needs no reset: an instance whose fuel ran out is dropped and
    /// made anew, so on a live instance it is always clear.
    fn refuel(&mut self) {
        self.fuel_left.set(self.fuel_per_call as i64);
    }

    /// A trap is a timeout when the fuel ran out, an exit when the program
    /// called `proc_exit` (rule 5).
    fn trap(&mut self, e: wasmer::RuntimeError) -> Outcome {
        if let Some(code) = self.env.as_mut(&mut self.store).exit_code.take() {
            return Outcome::Exited(code);
        }
        match self.fuel_exhausted.get(&mut self.store) {
            Value::I32(0) => Outcome::Trap(e.message()),
            _ => Outcome::Timeout,
        }
    }

    /// Ends a call: writes the unfinished lines of its output (rule 5).
    fn finish(&mut self, outcome: Outcome) -> Outcome {
        self.flush_output();
        outcome
    }

    /// Writes the unfinished lines a call left (rule 5): at most one a
    /// stream, after the call, within the log budget; their bytes were paid
    /// for when written, and the lines are not charged (the call is over).
    fn flush_output(&mut self) {
        // SAFETY: the environment is boxed in the store this instance owns,
        // so it lives as long as `self` at one address (`hot` rule 1); no
        // guest code runs now, so no host function holds a reference to
        // it, and `&mut self` excludes every other use (`hot` rule 3).
        let env = unsafe { self.host_env.as_mut() };
        env.flush_output(&mut |_| true);
    }

    /// Hands one encoded envelope to the agent: `caxton_alloc`, copy, `caxton_handle`.
    pub fn deliver(&mut self, _call: &InCall, envelope: &[u8]) -> Outcome {
        let outcome = self.alloc_and_handle(envelope);
        self.finish(outcome)
    }

    fn alloc_and_handle(&mut self, envelope: &[u8]) -> Outcome {
        assert!(envelope.len() <= i32::MAX as usize);
        let len = envelope.len() as i32;
        self.refuel();
        let ptr = match self.inbox {
            // Rule 7: checked within memory when the instance started, and a
            // memory never shrinks.
            Some((at, bytes)) if len as u32 <= bytes => at as i32,
            _ => match self.alloc.call(&mut self.store, len) {
                Ok(ptr) => ptr,
                Err(e) => return self.trap(e),
            },
        };
        // Rule 2: `write` checks the whole envelope lies within the memory.
        if ptr < 0 || !self.memory_cell.write(ptr as u64, envelope) {
            return Outcome::AgentError(BAD_ALLOC);
        }
        match self.handle.call(&mut self.store, ptr, len) {
            Ok(0) => Outcome::Handled,
            Ok(code) => Outcome::AgentError(code),
            Err(e) => self.trap(e),
        }
    }

    pub fn abi_version(&self) -> u8 {
        self.abi_version
    }

    /// Fuel the last call burned (its metered work, in operators).
    pub fn fuel_used(&mut self) -> u64 {
        self.fuel_per_call.saturating_sub(self.fuel_left.get().max(0) as u64)
    }

    /// Bytes its state holds (keys and values).
    pub fn state_bytes(&self) -> u64 {
        self.env.as_ref(&self.store).state_bytes
    }

    /// Bytes of linear memory the instance has now.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_cell.bytes()
    }
}
