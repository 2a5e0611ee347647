//! An instance's hot data by address (issue 26): the fuel global, the
//! memory's definition and the lines a call touches first, taken once
//! when the instance is made.
//!
//! Why: through wasmer's API, setting the fuel global or writing the
//! inbox looks the object up in the store's tables first (the store, its
//! vector of globals or memories, then the object): with 10,000 agents
//! each of those is a cache miss per message, and together they were a
//! fifth of a shard's time. Here the addresses are resolved once, and the
//! shard prefetches an instance's lines while the one before it runs.
//!
//! Rules:
//! 1. The addresses come from wasmer's own objects when the instance is
//!    made. A module's globals and its memory's definition live in its
//!    instance's VM context, which its store owns and never moves, so they
//!    stay valid for as long as the [`super::AgentInstance`] (which owns the
//!    store) lives; [`FuelCell`] is only ever held by that instance and its
//!    own host environment, inside the same store.
//! 2. A memory's base and length are read from its definition at every
//!    use: memories are `Dynamic` (`engine` rule 1) and may move or grow.
//! 3. Nothing runs guest code or is touched concurrently: an instance lives
//!    on one shard's thread (`agent` module note), and the guest does not
//!    run while the host reads or writes these.
//! 4. Prefetching reads nothing: a stale address costs a wasted line, never
//!    a fault, so [`HotLines`] holds plain addresses.

use std::ptr::NonNull;

use wasmer::sys::vm::{LinearMemory, VMExtern, VMGlobalDefinition, VMMemoryDefinition};
use wasmer::{AsStoreMut, Extern, Function, Global, Memory};

/// Lines prefetched before an instance's call (rule 4).
pub const HOT_LINES: usize = 8;

/// A cache line's bytes (x86-64 and most of aarch64).
const LINE_BYTES: usize = 64;

/// The fuel global of one instance, by address (rule 1): what its calls
/// have left, in points. Read and written without the store's tables.
#[derive(Clone, Copy, Debug)]
pub struct FuelCell(NonNull<VMGlobalDefinition>);

// SAFETY: an instance and its host environment live and are used on one
// shard's thread only (rule 3); `Send` is needed because wasmer's
// `FunctionEnv` asks it of the host environment that holds a copy.
unsafe impl Send for FuelCell {}

impl FuelCell {
    /// The fuel global `global` of the instance in `store` (rule 1).
    pub fn of(global: &Global, store: &mut impl AsStoreMut) -> FuelCell {
        let VMExtern::Global(handle) = Extern::Global(global.clone()).to_vm_extern().unwrap_sys() else {
            unreachable!("a global is a global of the sys backend, the only one built")
        };
        let definition = handle.get(store.objects_mut().as_sys()).vmglobal();
        FuelCell(definition)
    }

    /// Points left.
    pub fn get(self) -> i64 {
        // SAFETY: rule 1 (the definition outlives every holder of the cell)
        // and rule 3 (no one else reads or writes it meanwhile); the global
        // is the metering middleware's i64 (`fuel`), which compiled code
        // keeps in the first 8 bytes of its (repr(C)) definition.
        unsafe { self.0.as_ptr().cast::<i64>().read() }
    }

    pub fn set(self, points: i64) {
        // SAFETY: as in `get`; the i64 is written where compiled code reads
        // it, and the definition's other bytes are left as they were.
        unsafe { self.0.as_ptr().cast::<i64>().write(points) }
        debug_assert_eq!(self.get(), points);
    }
}

/// One instance's linear memory, by its definition's address (rule 2).
#[derive(Clone, Copy, Debug)]
pub struct MemoryCell(NonNull<VMMemoryDefinition>);

impl MemoryCell {
    pub fn of(memory: &Memory, store: &mut impl AsStoreMut) -> MemoryCell {
        let VMExtern::Memory(handle) = Extern::Memory(memory.clone()).to_vm_extern().unwrap_sys() else {
            unreachable!("a memory is a memory of the sys backend, the only one built")
        };
        MemoryCell(handle.get(store.objects_mut().as_sys()).vmmemory())
    }

    /// Its base and length now (rule 2).
    fn now(self) -> (*mut u8, usize) {
        // SAFETY: rule 1; the definition is written only by `memory.grow`,
        // which runs inside guest calls, never during this read (rule 3).
        let definition = unsafe { self.0.as_ref() };
        (definition.base, definition.current_length)
    }

    /// Bytes of memory now.
    pub fn bytes(self) -> u64 {
        self.now().1 as u64
    }

    /// Copies `bytes` to `at`, if all of them lie within the memory: the
    /// check and the copy `MemoryView::write` makes, without its lookups.
    pub fn write(self, at: u64, bytes: &[u8]) -> bool {
        let (base, length) = self.now();
        let Some(end) = at.checked_add(bytes.len() as u64) else { return false };
        if end > length as u64 {
            return false;
        }
        // SAFETY: `at..end` lies within the memory's current length (just
        // checked), which is mapped and writable; the guest does not run
        // meanwhile (rule 3), and `bytes` is host memory, so the two do not
        // overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(at as usize), bytes.len()) };
        true
    }

    /// The address of `at` in the memory now, for prefetching (rule 4).
    fn address(self, at: u64) -> usize {
        let (base, length) = self.now();
        base as usize + (at as usize).min(length.saturating_sub(1))
    }
}

/// The addresses an instance's next call touches first, most of them cold
/// when its agent is one of thousands (rule 4).
#[derive(Clone, Copy, Debug, Default)]
pub struct HotLines {
    lines: [usize; HOT_LINES],
    /// The store's own record (wasmer's `StoreInner`: its tables, then its
    /// engine and trap handler), from its first byte, and its bytes.
    store: (usize, usize),
}

/// Bytes of a store's record past its tables (wasmer's `BackendStore` and
/// `on_called`), and before them: a bound, since wasmer does not say, and
/// a line too many costs nothing (rule 4).
const STORE_RECORD_SLACK_BYTES: usize = 192;

impl HotLines {
    /// The lines of a call to `handle` writing an envelope at `inbox`:
    /// the store's record, the function's entry and its caller-checked
    /// record (both its lines), the fuel global, the memory's definition,
    /// the inbox's first lines and the host environment.
    pub fn of(store: &mut impl AsStoreMut, handle: &Function, fuel: FuelCell, memory: MemoryCell, inbox: Option<u32>, host_env: *const u8) -> HotLines {
        let tables_bytes = std::mem::size_of_val(store.objects_mut());
        let objects = store.objects_mut().as_sys();
        let store_record = (objects as *const _ as usize).saturating_sub(LINE_BYTES);
        let (entry, anyfunc) = match Extern::Function(handle.clone()).to_vm_extern().unwrap_sys() {
            VMExtern::Function(f) => {
                let function = f.get(objects);
                (function as *const _ as usize, function.anyfunc.as_ptr().as_ptr() as usize)
            }
            _ => unreachable!("a function of the sys backend, the only one built"),
        };
        let inbox = inbox.map_or(0, |at| memory.address(at as u64));
        let lines = [
            anyfunc.wrapping_add(LINE_BYTES / 2),
            entry,
            anyfunc,
            fuel.0.as_ptr() as usize,
            memory.0.as_ptr() as usize,
            inbox,
            inbox.wrapping_add(LINE_BYTES) * (inbox != 0) as usize,
            host_env as usize,
        ];
        HotLines { lines, store: (store_record, tables_bytes + LINE_BYTES + STORE_RECORD_SLACK_BYTES) }
    }

    /// Asks the CPU to bring every line toward its L1 cache; returns at
    /// once (rule 4).
    #[inline]
    pub fn prefetch(&self) {
        for &line in &self.lines {
            prefetch(line);
        }
        prefetch_range(self.store.0, self.store.1);
    }
}

/// Prefetches every line of `bytes` from `address` (rule 4).
#[inline]
pub fn prefetch_range(address: usize, bytes: usize) {
    let first = address & !(LINE_BYTES - 1);
    let mut line = first;
    while line < address.saturating_add(bytes) {
        prefetch(line);
        line += LINE_BYTES;
    }
}

/// Prefetches the line at `address` (0 does nothing), for a read soon.
#[inline(always)]
pub fn prefetch(address: usize) {
    if address == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address
    // (rule 4), and SSE is part of x86-64's baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address as *const i8)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmer::{imports, Instance, Module, Store, TypedFunction, Value};

    fn instance() -> (Store, Instance) {
        let mut store = Store::default();
        let module = Module::new(
            &store,
            r#"(module (memory (export "memory") 1) (global (export "g") (mut i64) (i64.const 5))
              (func (export "read") (param i32) (result i32) (i32.load8_u (local.get 0)))
              (func (export "grow") (result i32) (memory.grow (i32.const 1))))"#,
        )
        .unwrap();
        let instance = Instance::new(&mut store, &module, &imports! {}).unwrap();
        (store, instance)
    }

    /// Rule 1: the cell reads and writes the same value the guest sees
    /// through its global, both ways.
    #[test]
    fn the_fuel_cell_is_the_guests_global() {
        let (mut store, instance) = instance();
        let global = instance.exports.get_global("g").unwrap().clone();
        let cell = FuelCell::of(&global, &mut store);
        assert_eq!(cell.get(), 5);
        cell.set(-7);
        assert_eq!(global.get(&mut store), Value::I64(-7));
        global.set(&mut store, Value::I64(1 << 40)).unwrap();
        assert_eq!(cell.get(), 1 << 40);
    }

    /// Rule 2: writes are bounded by the memory's length now, before and
    /// after it grows, and land where the guest reads.
    #[test]
    fn memory_writes_are_checked_against_the_length_now() {
        let (mut store, instance) = instance();
        let memory = instance.exports.get_memory("memory").unwrap().clone();
        let cell = MemoryCell::of(&memory, &mut store);
        let read: TypedFunction<i32, i32> = instance.exports.get_typed_function(&store, "read").unwrap();
        let grow: TypedFunction<(), i32> = instance.exports.get_typed_function(&store, "grow").unwrap();
        assert_eq!(cell.bytes(), 65536);
        assert!(cell.write(65535, &[9]));
        assert_eq!(read.call(&mut store, 65535).unwrap(), 9);
        assert!(!cell.write(65535, &[1, 2]), "one byte past the end");
        assert!(!cell.write(u64::MAX, &[1]), "an offset that overflows");
        assert_eq!(grow.call(&mut store).unwrap(), 1);
        assert_eq!(cell.bytes(), 2 * 65536);
        assert!(cell.write(65535, &[1, 2]));
        assert_eq!(read.call(&mut store, 65536).unwrap(), 2);
        let read_function = instance.exports.get_function("read").unwrap().clone();
        let fuel = FuelCell::of(instance.exports.get_global("g").unwrap(), &mut store);
        HotLines::of(&mut store, &read_function, fuel, cell, Some(65535), std::ptr::null()).prefetch();
        prefetch(usize::MAX - 63); // rule 4: any address at all
    }
}
