//! The host functions agents import: each declared once, here.
//!
//! A declaration names the function and points at its implementation in
//! `host.rs`. Its WebAssembly signature is read off the implementation's
//! Rust type, so the import object an instance gets
//! ([`import_object`]) and the check a module passes at deploy
//! ([`check_import`]) cannot disagree. Adding a host function is one line
//! in [`HOST_FUNCTIONS`].

use wasmer::{Function, FunctionEnv, FunctionType, HostFunction, Imports, Store, Type, WasmTypeList, WithEnv};

use super::host::{self, HostEnv};

/// The module every host function is imported from.
pub const IMPORT_MODULE: &str = "caxton";

/// One host function.
pub struct HostFunctionDecl {
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
    ($name:ident) => {
        HostFunctionDecl {
            name: stringify!($name),
            signature: || signature_of(host::$name),
            make: |store, env| Function::new_typed_with_env(store, env, host::$name),
        }
    };
}

/// The host functions of ABI version 1.
pub const HOST_FUNCTIONS: [HostFunctionDecl; 6] =
    [declare!(send), declare!(state_get), declare!(state_put), declare!(state_delete), declare!(now_micros), declare!(log)];

/// The import object of one instance: every declared function, made in
/// `store` with `env`.
pub fn import_object(store: &mut Store, env: &FunctionEnv<HostEnv>) -> Imports {
    let mut imports = Imports::new();
    for decl in &HOST_FUNCTIONS {
        imports.define(IMPORT_MODULE, decl.name, (decl.make)(store, env));
    }
    debug_assert_eq!(imports.iter().count(), HOST_FUNCTIONS.len(), "names are unique");
    imports
}

/// Checks one import of a module: it must be a declared host function
/// with its declared type. The error says what exists.
pub fn check_import(module: &str, name: &str, ty: &wasmer::ExternType) -> Result<(), String> {
    let decl = HOST_FUNCTIONS.iter().find(|d| d.name == name).filter(|_| module == IMPORT_MODULE);
    let Some(decl) = decl else {
        let names: Vec<&str> = HOST_FUNCTIONS.iter().map(|d| d.name).collect();
        return Err(format!("forbidden import {module}.{name}: only {IMPORT_MODULE}.{{{}}} exist", names.join(", ")));
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
        for decl in &HOST_FUNCTIONS {
            let f = (decl.make)(&mut store, &env);
            assert_eq!(f.ty(&store), decl.function_type(), "{}", decl.name);
        }
        assert_eq!(import_object(&mut store, &env).iter().count(), HOST_FUNCTIONS.len());
    }

    #[test]
    fn the_abi_v1_signatures_stay_put() {
        // Changing one breaks every deployed agent: a new ABI version, not
        // an edit here.
        let sig = |n: &str| HOST_FUNCTIONS.iter().find(|d| d.name == n).unwrap().function_type().to_string();
        assert_eq!(sig("send"), "[I32, I32] -> [I32]");
        assert_eq!(sig("state_get"), "[I32, I32, I32, I32] -> [I32]");
        assert_eq!(sig("state_put"), "[I32, I32, I32, I32] -> [I32]");
        assert_eq!(sig("state_delete"), "[I32, I32] -> [I32]");
        assert_eq!(sig("now_micros"), "[] -> [I64]");
        assert_eq!(sig("log"), "[I32, I32, I32] -> []");
    }

    #[test]
    fn unknown_imports_are_named_with_what_exists() {
        let ty = wasmer::ExternType::Function(FunctionType::new([], []));
        let e = check_import("env", "abort", &ty).unwrap_err();
        assert!(e.contains("forbidden import env.abort") && e.contains("caxton.{send, state_get, state_put, state_delete, now_micros, log}"), "{e}");
        assert!(check_import("caxton", "log", &ty).unwrap_err().contains("expected"));
    }
}
