//! Fuel for work whose size is only known at run time: bulk memory and
//! table operations, and `memory.grow`.
//!
//! wasmer's metering middleware charges each operator a fixed cost when the
//! module is compiled, so `memory.fill` of 8 MB cost one point, and a loop
//! of them ran forever on one slice of fuel. This middleware runs after it
//! and puts, before each such operator, code that charges the fuel global
//! in proportion to the operator's length operand, and traps as metering
//! does (setting its "exhausted" flag) when the fuel would go below zero.
//!
//! Rules:
//! 1. Charged by length: `memory.fill`, `memory.copy`, `memory.init`,
//!    `table.fill`, `table.copy`, `table.init` cost
//!    `len * fuel_per_kib / 1024` points (at least one), the length being
//!    the operator's last operand; `memory.grow` costs its pages times
//!    `fuel_per_page`; `table.grow` its elements like a table copy.
//! 2. The charge comes before the operation: an operation the fuel left
//!    cannot pay for never starts.
//! 3. The length is kept in a global of its own while it is charged, so the
//!    operand stack the operator sees is the one it would have seen.
//!
//! Why a middleware rather than rewriting the module before compiling:
//! the module is parsed once, by the compiler that already meters it; no
//! second parser or encoder is needed, and the charge sits right beside the
//! operator it pays for.

use std::sync::Mutex;

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, Mutability, Type};

use super::fuel::{EXHAUSTED, REMAINING};

/// Costs of run-time-sized work, in fuel points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkCosts {
    /// Points per KiB of memory or table a bulk operation touches.
    pub fuel_per_kib: u64,
    /// Points per page `memory.grow` adds.
    pub fuel_per_page: u64,
}

#[derive(Debug, Clone, Copy)]
struct Globals {
    remaining: u32,
    exhausted: u32,
    /// Holds the length operand while it is charged (rule 3).
    scratch: u32,
}

/// The module half: finds metering's globals and adds the scratch one.
pub struct BulkFuel {
    costs: BulkCosts,
    globals: Mutex<Option<Globals>>,
}

impl BulkFuel {
    pub fn new(costs: BulkCosts) -> BulkFuel {
        assert!(costs.fuel_per_kib > 0 && costs.fuel_per_page > 0);
        BulkFuel { costs, globals: Mutex::new(None) }
    }
}

impl std::fmt::Debug for BulkFuel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkFuel").field("costs", &self.costs).finish()
    }
}

impl ModuleMiddleware for BulkFuel {
    fn transform_module_info(&self, info: &mut wasmer::ModuleInfo) -> Result<(), MiddlewareError> {
        let global = |name: &str| match info.exports.get(name) {
            Some(ExportIndex::Global(g)) => Ok(g.as_u32()),
            _ => Err(MiddlewareError::new("BulkFuel", format!("{name} not found: the fuel middleware must come first"))),
        };
        let (remaining, exhausted) = (global(REMAINING)?, global(EXHAUSTED)?);
        let scratch = info.globals.push(GlobalType::new(Type::I32, Mutability::Var)).as_u32();
        info.global_initializers.push(GlobalInit::I32Const(0));
        let mut slot = self.globals.lock().unwrap();
        assert!(slot.is_none(), "one BulkFuel per module, like metering");
        *slot = Some(Globals { remaining, exhausted, scratch });
        Ok(())
    }

    fn generate_function_middleware<'a>(&self, _: LocalFunctionIndex) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let globals = self.globals.lock().unwrap().expect("transform_module_info runs first");
        Box::new(FunctionBulkFuel { costs: self.costs, globals })
    }
}

#[derive(Debug)]
struct FunctionBulkFuel {
    costs: BulkCosts,
    globals: Globals,
}

/// How an operator's last operand is charged (rule 1).
enum Charge {
    PerKib,
    PerPage,
}

fn charge_of(op: &Operator<'_>) -> Option<Charge> {
    use Operator as O;
    match op {
        O::MemoryFill { .. }
        | O::MemoryCopy { .. }
        | O::MemoryInit { .. }
        | O::TableFill { .. }
        | O::TableCopy { .. }
        | O::TableInit { .. }
        | O::TableGrow { .. } => Some(Charge::PerKib),
        O::MemoryGrow { .. } => Some(Charge::PerPage),
        _ => None,
    }
}

impl FunctionBulkFuel {
    /// Pushes `cost(len)` as an i64, `len` being in the scratch global.
    fn cost(&self, charge: &Charge, out: &mut Vec<Operator<'static>>) {
        out.push(Operator::GlobalGet { global_index: self.globals.scratch });
        out.push(Operator::I64ExtendI32U);
        match charge {
            Charge::PerKib => {
                // len * fuel_per_kib / 1024, plus one: never free.
                out.push(Operator::I64Const { value: self.costs.fuel_per_kib as i64 });
                out.push(Operator::I64Mul);
                out.push(Operator::I64Const { value: 10 });
                out.push(Operator::I64ShrU);
                out.push(Operator::I64Const { value: 1 });
                out.push(Operator::I64Add);
            }
            Charge::PerPage => {
                out.push(Operator::I64Const { value: self.costs.fuel_per_page as i64 });
                out.push(Operator::I64Mul);
            }
        }
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionBulkFuel {
    fn feed(&mut self, operator: Operator<'a>, state: &mut MiddlewareReaderState<'a>) -> Result<(), MiddlewareError> {
        if let Some(charge) = charge_of(&operator) {
            let g = self.globals;
            let mut code: Vec<Operator<'static>> = vec![Operator::GlobalSet { global_index: g.scratch }];
            // if remaining < cost: exhausted = 1; trap (rule 2). Signed:
            // `remaining` may be below zero between checks (`fuel` rule 2).
            code.push(Operator::GlobalGet { global_index: g.remaining });
            self.cost(&charge, &mut code);
            code.extend([
                Operator::I64LtS,
                Operator::If { blockty: BlockType::Empty },
                Operator::I32Const { value: 1 },
                Operator::GlobalSet { global_index: g.exhausted },
                Operator::Unreachable,
                Operator::End,
                Operator::GlobalGet { global_index: g.remaining },
            ]);
            self.cost(&charge, &mut code);
            code.extend([Operator::I64Sub, Operator::GlobalSet { global_index: g.remaining }, Operator::GlobalGet { global_index: g.scratch }]);
            state.extend(&code);
        }
        state.push_operator(operator);
        Ok(())
    }
}
