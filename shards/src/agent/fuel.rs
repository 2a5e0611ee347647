//! Fuel metering compiled into every agent: each operator is charged where
//! it runs, and the guest traps once the fuel is spent.
//!
//! wasmer's metering middleware checks the fuel at every basic block: an
//! `if remaining < cost { trap }` each time, two extra blocks for cranelift
//! to allocate registers over. On the Rust SDK's echo that doubled the
//! compile time (about 25 ms to 50 ms on this machine), most of a new
//! agent's deploy-to-ready. This one charges at every block without a
//! branch and checks only where a guest can keep running: at each function
//! entry and each loop header, as wasmtime's fuel does.
//!
//! Rules:
//! 1. Every operator costs `cost(op)` points, charged once on the path that
//!    runs it: the costs since the last charge are subtracted from the
//!    `remaining` global before each operator that branches or is a branch
//!    target (as wasmer's metering does, so the totals are the same).
//! 2. A charge never branches; `remaining` may go below zero. The check,
//!    `remaining < 0` (signed) sets the `exhausted` global and traps, comes
//!    at the entry of every function and at the header of every loop, so
//!    code between two checks runs at most once: the overrun is bounded by
//!    the size of one function's body.
//! 3. The globals keep wasmer's export names
//!    (`wasmer_metering_remaining_points`, `wasmer_metering_points_exhausted`)
//!    so the instance and [`super::bulk_fuel`] find them as before. The
//!    host refuels before each call and reads the flag after a trap: a trap
//!    with the flag set is a timeout.
//! 4. A host call that cannot be paid leaves `remaining` below zero
//!    ([`super::host`] `take_fuel`), so the guest traps at its next check.

use std::sync::Mutex;

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type};

/// Export name of the fuel left, an i64 (rule 3).
pub const REMAINING: &str = "wasmer_metering_remaining_points";
/// Export name of the "fuel ran out" flag, an i32 (rule 3).
pub const EXHAUSTED: &str = "wasmer_metering_points_exhausted";

/// The module half: adds the two globals, then hands each function its
/// metering.
pub struct Fuel {
    cost: fn(&Operator<'_>) -> u64,
    globals: Mutex<Option<Globals>>,
}

#[derive(Debug, Clone, Copy)]
struct Globals {
    remaining: u32,
    exhausted: u32,
}

impl Fuel {
    pub fn new(cost: fn(&Operator<'_>) -> u64) -> Fuel {
        Fuel { cost, globals: Mutex::new(None) }
    }
}

impl std::fmt::Debug for Fuel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fuel").finish_non_exhaustive()
    }
}

impl ModuleMiddleware for Fuel {
    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let mut slot = self.globals.lock().unwrap();
        assert!(slot.is_none(), "one Fuel per module: its globals are this module's");
        // Empty until the host refuels, before the first call.
        let remaining = info.globals.push(GlobalType::new(Type::I64, Mutability::Var));
        info.global_initializers.push(GlobalInit::I64Const(0));
        let exhausted = info.globals.push(GlobalType::new(Type::I32, Mutability::Var));
        info.global_initializers.push(GlobalInit::I32Const(0));
        for (name, global) in [(REMAINING, remaining), (EXHAUSTED, exhausted)] {
            let clash = info.exports.insert(name.to_string(), ExportIndex::Global(global));
            if clash.is_some() {
                return Err(MiddlewareError::new("Fuel", format!("the module exports {name} itself")));
            }
        }
        *slot = Some(Globals { remaining: remaining.as_u32(), exhausted: exhausted.as_u32() });
        Ok(())
    }

    fn generate_function_middleware<'a>(&self, _: LocalFunctionIndex) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let globals = self.globals.lock().unwrap().expect("transform_module_info runs first");
        Box::new(FunctionFuel { cost: self.cost, globals, owed: 0, entered: false })
    }
}

struct FunctionFuel {
    cost: fn(&Operator<'_>) -> u64,
    globals: Globals,
    /// Points of the operators fed since the last charge.
    owed: u64,
    /// The entry check is in (rule 2).
    entered: bool,
}

impl std::fmt::Debug for FunctionFuel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionFuel").field("owed", &self.owed).finish_non_exhaustive()
    }
}

/// Operators that branch or are branch targets (rule 1): the same set as
/// wasmer's metering, less the proposals agents may not use.
fn is_charge_point(op: &Operator<'_>) -> bool {
    use Operator as O;
    matches!(
        op,
        O::Loop { .. }
            | O::End
            | O::If { .. }
            | O::Else
            | O::Br { .. }
            | O::BrTable { .. }
            | O::BrIf { .. }
            | O::Call { .. }
            | O::CallIndirect { .. }
            | O::Return
            | O::ReturnCall { .. }
            | O::ReturnCallIndirect { .. }
            | O::Throw { .. }
            | O::ThrowRef
            | O::Rethrow { .. }
            | O::Delegate { .. }
            | O::Catch { .. }
            | O::CallRef { .. }
            | O::ReturnCallRef { .. }
            | O::BrOnNull { .. }
            | O::BrOnNonNull { .. }
            | O::BrOnCast { .. }
            | O::BrOnCastFail { .. }
    )
}

impl FunctionFuel {
    /// `remaining -= owed`, no branch (rule 2).
    fn charge<'a>(&mut self, state: &mut MiddlewareReaderState<'a>) {
        assert!(self.owed <= i64::MAX as u64);
        let g = self.globals.remaining;
        state.extend(&[
            Operator::GlobalGet { global_index: g },
            Operator::I64Const { value: self.owed as i64 },
            Operator::I64Sub,
            Operator::GlobalSet { global_index: g },
        ]);
        self.owed = 0;
    }

    /// `if remaining < 0 { exhausted = 1; trap }` (rule 2).
    fn check<'a>(&self, state: &mut MiddlewareReaderState<'a>) {
        state.extend(&[
            Operator::GlobalGet { global_index: self.globals.remaining },
            Operator::I64Const { value: 0 },
            Operator::I64LtS,
            Operator::If { blockty: BlockType::Empty },
            Operator::I32Const { value: 1 },
            Operator::GlobalSet { global_index: self.globals.exhausted },
            Operator::Unreachable,
            Operator::End,
        ]);
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionFuel {
    fn feed(&mut self, operator: Operator<'a>, state: &mut MiddlewareReaderState<'a>) -> Result<(), MiddlewareError> {
        if !self.entered {
            self.entered = true;
            self.check(state);
        }
        // Before the charge: a call's own cost is paid before it leaves.
        self.owed += (self.cost)(&operator);
        let charge_point = is_charge_point(&operator);
        if charge_point && self.owed > 0 {
            self.charge(state);
        }
        let loop_header = matches!(operator, Operator::Loop { .. });
        state.push_operator(operator);
        if loop_header {
            self.check(state);
        }
        debug_assert!(!charge_point || self.owed == 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmer::sys::{CompilerConfig, Cranelift, EngineBuilder};
    use wasmer::{imports, Engine, Instance, Module, Store, Value};

    use super::*;

    /// Control flow costs more, as in the node (`engine::operator_fuel`).
    fn cost(op: &Operator<'_>) -> u64 {
        if is_charge_point(op) {
            8
        } else {
            1
        }
    }

    /// A middleware serves one module: an engine each, as in the node.
    fn compiled(middleware: Arc<dyn ModuleMiddleware>, wat: &str) -> (Engine, Module) {
        let mut compiler = Cranelift::default();
        compiler.push_middleware(middleware);
        let engine = Engine::from(EngineBuilder::new(compiler).engine());
        let module = Module::new(&engine, wat).unwrap();
        (engine, module)
    }

    fn ours(wat: &str) -> (Engine, Module) {
        compiled(Arc::new(Fuel::new(cost)), wat)
    }

    /// Calls `run(arg)` with `fuel` points: the result, or `Err(exhausted)`,
    /// and the points left.
    fn run((engine, module): &(Engine, Module), arg: i32, fuel: i64) -> (Result<i32, i32>, i64) {
        let mut store = Store::new(engine.clone());
        let instance = Instance::new(&mut store, module, &imports! {}).unwrap();
        let remaining = instance.exports.get_global(REMAINING).unwrap().clone();
        let exhausted = instance.exports.get_global(EXHAUSTED).unwrap().clone();
        remaining.set(&mut store, Value::I64(fuel)).unwrap();
        let f = instance.exports.get_typed_function::<i32, i32>(&store, "run").unwrap();
        let result = f.call(&mut store, arg).map_err(|_| exhausted.get(&mut store).unwrap_i32());
        (result, remaining.get(&mut store).unwrap_i64())
    }

    /// Loops, branches, tables, calls and early returns.
    const PROGRAM: &str = r#"(module
      (func $square (param i32) (result i32) (i32.mul (local.get 0) (local.get 0)))
      (func $pick (param i32) (result i32)
        (block (block (block (br_table 0 1 2 (i32.rem_u (local.get 0) (i32.const 3))))
          (return (i32.const 10))) (return (i32.const 20))) (i32.const 30))
      (func (export "run") (param $n i32) (result i32) (local $i i32) (local $acc i32)
        (loop $next
          (if (i32.and (local.get $i) (i32.const 1))
            (then (local.set $acc (i32.add (local.get $acc) (call $square (local.get $i)))))
            (else (local.set $acc (i32.add (local.get $acc) (call $pick (local.get $i))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $next (i32.lt_u (local.get $i) (local.get $n))))
        (if (i32.gt_u (local.get $acc) (i32.const 1000)) (then (return (i32.const 1))))
        (local.get $acc)))"#;

    #[test]
    fn charges_the_same_totals_as_wasmers_metering() {
        let (ours, theirs) = (ours(PROGRAM), compiled(Arc::new(wasmer_middlewares::Metering::new(0, cost)), PROGRAM));
        for n in [0, 1, 2, 3, 7, 100, 1_000] {
            let (a, b) = (run(&ours, n, 1 << 40), run(&theirs, n, 1 << 40));
            assert_eq!(a, b, "n = {n}: the same result and the same points left");
            assert!(a.0.is_ok() && a.1 < 1 << 40);
        }
    }

    #[test]
    fn a_loop_that_never_ends_runs_out_at_its_header() {
        let spin = r#"(module (func (export "run") (param i32) (result i32) (loop $l (br $l)) (i32.const 0)))"#;
        let (result, left) = run(&ours(spin), 0, 10_000);
        assert_eq!(result, Err(1), "a trap with the flag set: a timeout");
        // Rule 2: at most one iteration's charge past zero.
        assert!((-16..0).contains(&left), "{left}");
    }

    #[test]
    fn recursion_without_loops_runs_out_at_a_function_entry() {
        let recurse = r#"(module (func $f (export "run") (param i32) (result i32) (call $f (local.get 0))))"#;
        let (result, left) = run(&ours(recurse), 0, 10_000);
        assert_eq!(result, Err(1), "fuel runs out long before the stack");
        assert!((-16..0).contains(&left), "{left}");
    }

    #[test]
    fn a_call_that_runs_out_traps_at_its_next_check() {
        let program = ours(PROGRAM);
        let (paid, left) = run(&program, 10, 1 << 40);
        let used = (1 << 40) - left;
        assert_eq!(run(&program, 10, used), (paid, 0), "exactly enough");
        // Rule 2: the charges after the last check may take it below zero;
        // the overrun is the code between two checks, never a loop.
        assert_eq!(run(&program, 10, used - 1), (paid, -1), "one point short, past the last check");
        assert_eq!(run(&program, 10, used / 2).0, Err(1), "half of it");
        // A guest that starts with nothing left (a host call could not be
        // paid, rule 4) traps at its first check.
        assert_eq!(run(&program, 10, -1).0, Err(1));
    }

    #[test]
    fn a_module_that_exports_the_fuel_names_itself_is_refused() {
        let sly = format!(r#"(module (global (export "{REMAINING}") (mut i64) (i64.const 99)) (func (export "run") (param i32) (result i32) (i32.const 0)))"#);
        let mut compiler = Cranelift::default();
        compiler.push_middleware(Arc::new(Fuel::new(cost)));
        let err = Module::new(&Engine::from(EngineBuilder::new(compiler).engine()), sly).expect_err("refused").to_string();
        assert!(err.contains(REMAINING), "{err}");
    }
}
