//! The host functions agents import: each declared once, here.
//!
//! A declaration names the module and function and points at its
//! implementation (`host.rs` for caxton's own ABI, `wasi.rs` for WASI
//! preview 1). Its WebAssembly signature is read off the implementation's
//! Rust type, so the import object an instance gets ([`import_object`])
//! and the check a module passes at deploy ([`check_import`]) cannot
//! disagree. Adding a host function is one line in [`CAXTON_FUNCTIONS`].
//!
//! An instance gets only the functions its module imports: a module that
//! imports two functions pays for two, not for all of WASI.

use wasmer::{Function, FunctionEnv, FunctionType, HostFunction, Imports, Module, Store, Type, WasmTypeList, WithEnv};

use super::host::{self, HostEnv};
use super::{timer_calls, wasi};

/// The module of caxton's own host functions (ABI version 1).
pub const IMPORT_MODULE: &str = "caxton";

/// One host function.
pub struct HostFunctionDecl {
    pub module: &'static str,
    pub name: &'static str,
    /// Parameters and results, from the implementation's Rust signature.
    pub signature: fn() -> (&'static [Type], &'static [Type]),
    /// Makes the function for one instance's store.
    pub make: fn(&mut Store, &FunctionEnv<HostEnv>) -> Function,
}

impl HostFunctionDecl {
    pub fn function_type(&self) -> FunctionType {
        let (params, results) = (self.signature)();
        FunctionType::new(params, results)
    }
}

fn signature_of<Args: WasmTypeList, Rets: WasmTypeList, F: HostFunction<HostEnv, Args, Rets, WithEnv>>(_: F) -> (&'static [Type], &'static [Type]) {
    (Args::wasm_types(), Rets::wasm_types())
}

macro_rules! declare {
    ($module:expr, $path:ident :: $name:ident) => {
        HostFunctionDecl {
            module: $module,
            name: stringify!($name),
            signature: || signature_of($path::$name),
            make: |store, env| Function::new_typed_with_env(store, env, $path::$name),
        }
    };
}

macro_rules! caxton {
    ($($name:ident),*) => { [$(declare!(IMPORT_MODULE, host::$name)),*] };
}

macro_rules! timers {
    ($($name:ident),*) => { [$(declare!(IMPORT_MODULE, timer_calls::$name)),*] };
}

macro_rules! wasi {
    ($($name:ident),*) => { [$(declare!(wasi::MODULE, wasi::$name)),*] };
}

/// The host functions of ABI version 1.
pub const CAXTON_FUNCTIONS: [HostFunctionDecl; 6] = caxton!(send, state_get, state_put, state_delete, now_micros, log);

/// Added in version 2 (any module may import them).
pub const TIMER_FUNCTIONS: [HostFunctionDecl; 2] = timers!(timer_set, timer_cancel);

/// Added in version 2 for keyed agents (any module may import it).
pub const NAME_FUNCTIONS: [HostFunctionDecl; 1] = caxton!(self_name);

/// WASI preview 1: all 46 functions (`wasi` rule 6: those it does not
/// offer link and return `ENOSYS`).
#[rustfmt::skip]
pub const WASI_FUNCTIONS: [HostFunctionDecl; 46] = wasi!(
    args_get, args_sizes_get, environ_get, environ_sizes_get, clock_res_get, clock_time_get,
    fd_advise, fd_allocate, fd_close, fd_datasync, fd_fdstat_get, fd_fdstat_set_flags, fd_fdstat_set_rights,
    fd_filestat_get, fd_filestat_set_size, fd_filestat_set_times, fd_pread, fd_prestat_get, fd_prestat_dir_name,
    fd_pwrite, fd_read, fd_readdir, fd_renumber, fd_seek, fd_sync, fd_tell, fd_write,
    path_create_directory, path_filestat_get, path_filestat_set_times, path_link, path_open, path_readlink,
    path_remove_directory, path_rename, path_symlink, path_unlink_file,
    poll_oneoff, proc_exit, proc_raise, sched_yield, random_get,
    sock_accept, sock_recv, sock_send, sock_shutdown
);

/// Every host function, caxton's and WASI's.
pub fn host_functions() -> impl Iterator<Item = &'static HostFunctionDecl> {
    CAXTON_FUNCTIONS.iter().chain(TIMER_FUNCTIONS.iter()).chain(NAME_FUNCTIONS.iter()).chain(WASI_FUNCTIONS.iter())
}

fn find(module: &str, name: &str) -> Option<&'static HostFunctionDecl> {
    host_functions().find(|d| d.module == module && d.name == name)
}

/// The import object of one instance: the functions `module` imports
/// (all checked at deploy), made in `store` with `env`.
pub fn import_object(store: &mut Store, env: &FunctionEnv<HostEnv>, module: &Module) -> Imports {
    let mut imports = Imports::new();
    for import in module.imports() {
        let decl = find(import.module(), import.name()).expect("imports are checked at deploy");
        imports.define(decl.module, decl.name, (decl.make)(store, env));
    }
    imports
}

/// Checks one import of a module: it must be a declared host function
/// with its declared type. The error says what exists.
pub fn check_import(module: &str, name: &str, ty: &wasmer::ExternType) -> Result<(), String> {
    let Some(decl) = find(module, name) else {
        let names: Vec<&str> = CAXTON_FUNCTIONS.iter().chain(TIMER_FUNCTIONS.iter()).chain(NAME_FUNCTIONS.iter()).map(|d| d.name).collect();
        let also = if module == wasi::MODULE { format!(" ({name} is not a WASI preview 1 function)") } else { String::new() };
        return Err(format!(
            "forbidden import {module}.{name}{also}: agents may import {IMPORT_MODULE}.{{{}}} and WASI preview 1 ({}.*)",
            names.join(", "),
            wasi::MODULE
        ));
    };
    let want = decl.function_type();
    match ty {
        wasmer::ExternType::Function(have) if *have == want => Ok(()),
        other => Err(format!("import {module}.{name} has type {other:?}, expected {want}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_declaration_makes_the_type_it_declares() {
        let mut store = Store::default();
        let env = FunctionEnv::new(
            &mut store,
            HostEnv::new(
                "test".into(),
                0,
                0,
                0,
                crate::agent::host::InstanceAccount::new(crate::agent::agent_log::LogLimits { lines_per_s: 1, bytes_per_s: 1, burst_s: 1 }),
            ),
        );
        for decl in host_functions() {
            let f = (decl.make)(&mut store, &env);
            assert_eq!(f.ty(&store), decl.function_type(), "{}", decl.name);
        }
        let pairs: std::collections::HashSet<_> = host_functions().map(|d| (d.module, d.name)).collect();
        assert_eq!(pairs.len(), CAXTON_FUNCTIONS.len() + TIMER_FUNCTIONS.len() + NAME_FUNCTIONS.len() + WASI_FUNCTIONS.len(), "declared once each");
    }

    /// `host` rule 6, for every declared function: called with no call
    /// bracket open (here, no shard at all), each does nothing and says so,
    /// whatever its arguments; none panics. A new host function that does
    /// not pay first (and so is not gated) fails here.
    #[test]
    fn every_host_function_refuses_outside_a_call() {
        let mut store = Store::default();
        let env = FunctionEnv::new(
            &mut store,
            HostEnv::new("test".into(), 0, 0, 0, crate::agent::host::InstanceAccount::new(crate::agent::agent_log::LogLimits::default())),
        );
        let memory = wasmer::Memory::new(&mut store, wasmer::MemoryType::new(1, None, false)).unwrap();
        env.as_mut(&mut store).memory = Some(memory);
        let fuel = wasmer::Global::new_mut(&mut store, wasmer::Value::I64(1_000_000_000));
        env.as_mut(&mut store).fuel = Some(crate::agent::hot::FuelCell::of(&fuel, &mut store));
        for decl in host_functions() {
            let f = (decl.make)(&mut store, &env);
            for fill in [0i64, 1, -1, 8] {
                let args: Vec<wasmer::Value> = decl
                    .function_type()
                    .params()
                    .iter()
                    .map(|t| match t {
                        Type::I32 => wasmer::Value::I32(fill as i32),
                        Type::I64 => wasmer::Value::I64(fill),
                        other => panic!("{} takes a {other:?}", decl.name),
                    })
                    .collect();
                let results = f.call(&mut store, &args).unwrap_or_else(|e| panic!("{} trapped outside a call: {e}", decl.name));
                let refused = match results.first() {
                    None => true,
                    Some(wasmer::Value::I32(code)) if decl.module == IMPORT_MODULE => *code == crate::agent::host::INVALID,
                    Some(wasmer::Value::I64(code)) => *code == crate::agent::host::INVALID as i64,
                    Some(wasmer::Value::I32(errno)) => *errno == wasi::errno::INVAL,
                    Some(other) => panic!("{} returned {other:?}", decl.name),
                };
                assert!(refused, "{}.{} outside a call answered {results:?}", decl.module, decl.name);
            }
        }
    }

    #[test]
    fn the_abi_v1_signatures_stay_put() {
        // Changing one breaks every deployed agent: a new ABI version, not
        // an edit here.
        let sig = |n: &str| find(IMPORT_MODULE, n).unwrap().function_type().to_string();
        assert_eq!(sig("send"), "[I32, I32] -> [I32]");
        assert_eq!(sig("state_get"), "[I32, I32, I32, I32] -> [I32]");
        assert_eq!(sig("state_put"), "[I32, I32, I32, I32] -> [I32]");
        assert_eq!(sig("state_delete"), "[I32, I32] -> [I32]");
        assert_eq!(sig("now_micros"), "[] -> [I64]");
        assert_eq!(sig("log"), "[I32, I32, I32] -> []");
        assert_eq!(sig("timer_set"), "[I64, I32, I32] -> [I64]");
        assert_eq!(sig("timer_cancel"), "[I64] -> [I32]");
        assert_eq!(sig("self_name"), "[I32, I32] -> [I32]");
    }

    #[test]
    fn unknown_imports_are_named_with_what_exists() {
        let ty = wasmer::ExternType::Function(FunctionType::new([], []));
        let e = check_import("env", "abort", &ty).unwrap_err();
        assert!(
            e.contains("forbidden import env.abort")
                && e.contains("caxton.{send, state_get, state_put, state_delete, now_micros, log, timer_set, timer_cancel, self_name}"),
            "{e}"
        );
        assert!(e.contains("WASI preview 1 (wasi_snapshot_preview1.*)"), "{e}");
        assert!(check_import("caxton", "log", &ty).unwrap_err().contains("expected"));
        let e = check_import("wasi_snapshot_preview1", "sock_open", &ty).unwrap_err();
        assert!(e.contains("sock_open is not a WASI preview 1 function"), "{e}");
    }

    #[test]
    fn wasi_signatures_match_preview_1() {
        // From the preview-1 witx, as the `wasi` crate's bindings declare them.
        let sig = |n: &str| find(wasi::MODULE, n).unwrap().function_type().to_string();
        assert_eq!(sig("fd_write"), "[I32, I32, I32, I32] -> [I32]");
        assert_eq!(sig("clock_time_get"), "[I32, I64, I32] -> [I32]");
        assert_eq!(sig("fd_seek"), "[I32, I64, I32, I32] -> [I32]");
        assert_eq!(sig("path_open"), "[I32, I32, I32, I32, I32, I64, I64, I32, I32] -> [I32]");
        assert_eq!(sig("path_filestat_set_times"), "[I32, I32, I32, I32, I64, I64, I32] -> [I32]");
        assert_eq!(sig("fd_pread"), "[I32, I32, I32, I64, I32] -> [I32]");
        assert_eq!(sig("fd_readdir"), "[I32, I32, I32, I64, I32] -> [I32]");
        assert_eq!(sig("proc_exit"), "[I32] -> []");
        assert_eq!(sig("sched_yield"), "[] -> [I32]");
        assert_eq!(sig("sock_recv"), "[I32, I32, I32, I32, I32, I32] -> [I32]");
    }
}
