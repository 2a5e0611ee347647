//! Agents' linear memories, kept by the thread that freed them for the next
//! instance it makes.
//!
//! A keyed agent's activation may live for one message. Through wasmer's own
//! memories, each one mapped its linear memory with `mmap` and gave it back
//! with `munmap`: a profile of a shard churning activations (issue 27) spent
//! a quarter of its time there, and a sixth more in the page faults of the
//! fresh pages; every `munmap` also flushes the other cores' TLBs. Here a
//! memory's region comes from its thread's pool and goes back to it.
//!
//! Rules:
//! 1. A region in the pool reads as zeros. When a memory goes, the pages of
//!    its region that are resident (`mincore` says which) are zeroed in
//!    place; the others were never written, or were written and swapped
//!    out, which `mincore` cannot tell apart, so they are dropped
//!    (`MADV_DONTNEED`: no page table entry is present for them, so no
//!    other core's TLB is flushed) and read as zeros again.
//! 2. The bytes of a live memory past its current length are zero (rule 1;
//!    guest code is bounds-checked against the length, and host calls go
//!    through views of it), so growing within the region only moves the
//!    length, as `memory.grow` requires.
//! 3. Regions are a power-of-two number of WebAssembly pages, so a pooled
//!    region serves any memory of its class. The pool is per thread (a
//!    shard's instances never leave its thread), bounded in bytes
//!    ([`MEMORY_POOL_BYTES_MAX`]); regions over [`MEMORY_POOL_REGION_BYTES_MAX`]
//!    or past the bound are unmapped.
//! 4. Only what wasmer would make itself is made here: private, unshared,
//!    `Dynamic` memories with no guard (`engine` rule 1). The memory's
//!    definition lives in its instance and is kept current on every grow,
//!    as wasmer's own memories do (and `hot::MemoryCell` relies on).

use std::cell::RefCell;
use std::ptr::NonNull;

use wasmer::sys::vm::{LinearMemory, VMMemoryDefinition, VMSharedMemory};
use wasmer::{MemoryError, MemoryStyle, MemoryType, Pages};

use crate::limits::{MEMORY_POOL_BYTES_MAX, MEMORY_POOL_REGION_BYTES_MAX, WASM_PAGE_BYTES};

const OS_PAGE_BYTES: usize = 4096;
/// Region classes the pool keeps: one page, two, four ... up to the largest.
const CLASSES: usize = (MEMORY_POOL_REGION_BYTES_MAX / WASM_PAGE_BYTES).trailing_zeros() as usize + 1;
const MINCORE_ENTRIES_MAX: usize = MEMORY_POOL_REGION_BYTES_MAX / OS_PAGE_BYTES;

/// Pages mapped readable and writable, owned by one memory or by the pool.
#[derive(Debug)]
struct Region {
    base: NonNull<u8>,
    bytes: usize,
}

impl Region {
    /// The region size for a memory of `bytes` (rule 3).
    fn class_bytes(bytes: usize) -> usize {
        bytes.max(WASM_PAGE_BYTES).next_power_of_two()
    }

    fn map(bytes: usize) -> Result<Region, MemoryError> {
        assert!(bytes.is_power_of_two() && bytes >= WASM_PAGE_BYTES);
        // SAFETY: a new anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
        };
        if base == libc::MAP_FAILED {
            return Err(MemoryError::Region(format!("cannot map {bytes} bytes of linear memory: {}", std::io::Error::last_os_error())));
        }
        let base = NonNull::new(base.cast::<u8>()).expect("mmap does not return null on success");
        Ok(Region { base, bytes })
    }

    /// Zeroes the first `used` bytes whether touched or not (a reset keeps
    /// the region in use, so rule 2 must hold again at once).
    fn zero_all(&mut self, used: usize) {
        let used = used.min(self.bytes);
        // SAFETY: the first `used` bytes are within the mapped region.
        unsafe { std::ptr::write_bytes(self.base.as_ptr(), 0, used) };
    }

    /// Zeroes the touched pages of the first `used` bytes (rule 1).
    fn zero(&mut self, used: usize) {
        let used = used.min(self.bytes).next_multiple_of(OS_PAGE_BYTES);
        assert!(used / OS_PAGE_BYTES <= MINCORE_ENTRIES_MAX, "only pooled regions are zeroed");
        let mut resident = [0u8; MINCORE_ENTRIES_MAX];
        // SAFETY: the first `used` bytes are mapped (rounded to OS pages,
        // within the region), and `resident` has an entry for each page.
        let known = unsafe { libc::mincore(self.base.as_ptr().cast(), used, resident.as_mut_ptr()) } == 0;
        let pages = used / OS_PAGE_BYTES;
        let mut page = 0;
        while page < pages {
            if !known || resident[page] & 1 == 1 {
                // SAFETY: the page is within the region, which this memory
                // owns alone; its instance is gone.
                unsafe { std::ptr::write_bytes(self.base.as_ptr().add(page * OS_PAGE_BYTES), 0, OS_PAGE_BYTES) };
                page += 1;
                continue;
            }
            // A run of pages not resident: never written, or swapped out.
            let run = resident[page..pages].iter().take_while(|flags| *flags & 1 == 0).count();
            // SAFETY: the run is within the region's mapping, which this
            // memory owns alone; dropping its pages makes them read as zeros.
            let dropped = unsafe { libc::madvise(self.base.as_ptr().add(page * OS_PAGE_BYTES).cast(), run * OS_PAGE_BYTES, libc::MADV_DONTNEED) } == 0;
            if !dropped {
                // SAFETY: as above; writing faults the pages in, as zeros.
                unsafe { std::ptr::write_bytes(self.base.as_ptr().add(page * OS_PAGE_BYTES), 0, run * OS_PAGE_BYTES) };
            }
            page += run;
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the region is this value's own mapping, and no memory
        // refers to it any more (the pool's or a memory's drop).
        let unmapped = unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
        debug_assert_eq!(unmapped, 0, "munmap of a region we mapped");
    }
}

/// One thread's regions, by class (rule 3).
#[derive(Default)]
struct Pool {
    classes: [Vec<Region>; CLASSES],
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

fn class_of(bytes: usize) -> Option<usize> {
    (bytes <= MEMORY_POOL_REGION_BYTES_MAX).then(|| (bytes / WASM_PAGE_BYTES).trailing_zeros() as usize)
}

/// A zeroed region for a memory of `bytes`: a pooled one, or a new mapping.
fn take(bytes: usize) -> Result<Region, MemoryError> {
    let class_bytes = Region::class_bytes(bytes);
    if let Some(class) = class_of(class_bytes) {
        let pooled = POOL
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                let region = pool.classes[class].pop()?;
                pool.bytes -= region.bytes;
                Some(region)
            })
            .ok()
            .flatten();
        if let Some(region) = pooled {
            assert_eq!(region.bytes, class_bytes);
            return Ok(region);
        }
    }
    Region::map(class_bytes)
}

/// Hands a region back: zeroed into the pool, or unmapped (rule 3).
fn give_back(mut region: Region, used: usize) {
    let Some(class) = class_of(region.bytes) else { return };
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.bytes + region.bytes > MEMORY_POOL_BYTES_MAX {
            return None;
        }
        region.zero(used);
        pool.bytes += region.bytes;
        pool.classes[class].push(region);
        Some(())
    });
    // A region the pool did not take was dropped above: unmapped.
}

/// Bytes of regions this thread's pool holds (for tests and stats).
pub fn pooled_bytes() -> usize {
    POOL.try_with(|pool| pool.borrow().bytes).unwrap_or(0)
}

/// A linear memory whose region comes from, and goes back to, the pool.
#[derive(Debug)]
pub struct PooledMemory {
    /// `None` only while a drop or grow moves it.
    region: Option<Region>,
    definition: NonNull<VMMemoryDefinition>,
    ty: MemoryType,
    style: MemoryStyle,
    pages: Pages,
}

// SAFETY: as wasmer's own memories (`WasmMmap`): the region and the
// definition are reached only through this value and its instance, which
// wasmer moves between threads only as a whole (a shard never does).
unsafe impl Send for PooledMemory {}
// SAFETY: see above; `&PooledMemory` reads only its own fields.
unsafe impl Sync for PooledMemory {}

impl PooledMemory {
    /// Whether a memory of this type and style may be pooled (rule 4).
    pub fn fits(ty: &MemoryType, style: &MemoryStyle) -> bool {
        !ty.shared && matches!(style, MemoryStyle::Dynamic { offset_guard_size: 0 })
    }

    /// A memory of `ty` (already clamped to the agent limits) for the
    /// instance whose definition is at `definition`.
    ///
    /// # Safety
    /// `definition` must be valid for writes for as long as the memory
    /// lives, as wasmer's `create_vm_memory` guarantees for its instance.
    pub unsafe fn new(ty: &MemoryType, style: &MemoryStyle, definition: NonNull<VMMemoryDefinition>) -> Result<PooledMemory, MemoryError> {
        assert!(Self::fits(ty, style));
        if ty.maximum.is_some_and(|max| max < ty.minimum) || ty.minimum > Pages::max_value() {
            return Err(MemoryError::InvalidMemory { reason: format!("memory of {} pages, at most {:?}", ty.minimum.0, ty.maximum) });
        }
        let region = take(ty.minimum.bytes().0)?;
        let mut memory = PooledMemory { region: Some(region), definition, ty: *ty, style: *style, pages: ty.minimum };
        memory.publish();
        Ok(memory)
    }

    fn region(&self) -> &Region {
        self.region.as_ref().expect("a memory holds its region while it lives")
    }

    /// Writes the base and the length where the compiled code reads them.
    fn publish(&mut self) {
        let (base, length) = (self.region().base.as_ptr(), self.pages.bytes().0);
        assert!(length <= self.region().bytes);
        // SAFETY: `new`'s contract: the definition is valid for writes
        // while this memory lives.
        let definition = unsafe { self.definition.as_mut() };
        definition.base = base;
        definition.current_length = length;
    }
}

impl Drop for PooledMemory {
    fn drop(&mut self) {
        if let Some(region) = self.region.take() {
            give_back(region, self.pages.bytes().0);
        }
    }
}

impl LinearMemory for PooledMemory {
    fn ty(&self) -> MemoryType {
        MemoryType { minimum: self.pages, ..self.ty }
    }

    fn size(&self) -> Pages {
        self.pages
    }

    fn style(&self) -> MemoryStyle {
        self.style
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let previous = self.pages;
        let refused = MemoryError::CouldNotGrow { current: previous, attempted_delta: delta };
        let Some(pages) = previous.checked_add(delta) else { return Err(refused) };
        if pages > self.ty.maximum.unwrap_or(Pages::max_value()) || pages > Pages::max_value() {
            return Err(refused);
        }
        let bytes = pages.bytes().0;
        if bytes > self.region().bytes {
            // A larger region; the old one's bytes move over (rule 2 holds
            // for the new one: it was zero, and only the old length is
            // copied).
            let mut larger = take(bytes)?;
            let used = previous.bytes().0;
            // SAFETY: both regions are mapped, distinct, and hold at least
            // `used` bytes; the instance is inside `memory.grow`, so no
            // guest code reads the old one meanwhile.
            unsafe { std::ptr::copy_nonoverlapping(self.region().base.as_ptr(), larger.base.as_ptr(), used) };
            std::mem::swap(self.region.as_mut().expect("held"), &mut larger);
            give_back(larger, used);
        }
        self.pages = pages;
        self.publish();
        Ok(previous)
    }

    fn grow_at_least(&mut self, min_bytes: u64) -> Result<(), MemoryError> {
        let have = self.pages.bytes().0 as u64;
        if have < min_bytes {
            let pages = (min_bytes - have).div_ceil(WASM_PAGE_BYTES as u64);
            self.grow(Pages(u32::try_from(pages).map_err(|_| MemoryError::CouldNotGrow { current: self.pages, attempted_delta: Pages(u32::MAX) })?))?;
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), MemoryError> {
        let used = self.pages.bytes().0;
        self.region.as_mut().expect("held").zero_all(used);
        self.pages = Pages(0);
        self.publish();
        Ok(())
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.definition
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::MemoryNotShared)
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::UnsupportedOperation { message: "an agent's memory is never copied".into() })
    }

    fn as_shared(&self) -> Result<VMSharedMemory, MemoryError> {
        Err(MemoryError::MemoryNotShared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::engine::{engine_for_tests, AgentLimits};
    use wasmer::{imports, Engine, Instance, Module, Store, TypedFunction};

    const WAT: &str = r#"(module (memory (export "memory") 1 8)
        (func (export "read") (param i32) (result i32) (i32.load8_u (local.get 0)))
        (func (export "write") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
        (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#;

    struct Guest {
        store: Store,
        read: TypedFunction<i32, i32>,
        write: TypedFunction<(i32, i32), ()>,
        grow: TypedFunction<i32, i32>,
    }

    impl Guest {
        fn new((engine, module): &(Engine, Module)) -> Guest {
            let mut store = Store::new(engine.clone());
            let instance = Instance::new(&mut store, module, &imports! {}).unwrap();
            let read = instance.exports.get_typed_function(&store, "read").unwrap();
            let write = instance.exports.get_typed_function(&store, "write").unwrap();
            let grow = instance.exports.get_typed_function(&store, "grow").unwrap();
            Guest { store, read, write, grow }
        }
        fn read(&mut self, at: i32) -> i32 {
            self.read.call(&mut self.store, at).unwrap()
        }
        fn write(&mut self, at: i32, value: i32) {
            self.write.call(&mut self.store, at, value).unwrap()
        }
        fn grow(&mut self, pages: i32) -> i32 {
            self.grow.call(&mut self.store, pages).unwrap()
        }
    }

    fn module() -> (Engine, Module) {
        let engine = engine_for_tests(AgentLimits::default());
        let module = Module::new(&engine, WAT).unwrap();
        (engine, module)
    }

    /// Rules 1 and 2: a memory handed back is reused by the next instance,
    /// which reads zeros wherever the last one wrote, before and after it
    /// grows into the region a grown memory left.
    #[test]
    fn a_freed_memory_is_reused_and_reads_as_zeros() {
        let module = module();
        let mut a = Guest::new(&module);
        let page = WASM_PAGE_BYTES as i32;
        for at in [0, 40_000, page - 1] {
            a.write(at, 0xab);
        }
        assert_eq!(a.grow(1), 1, "two pages: a larger region, the bytes moved");
        assert_eq!((a.read(40_000), a.read(page - 1), a.read(page)), (0xab, 0xab, 0));
        a.write(page + 100, 0xcd);
        let pooled_one_page = pooled_bytes();
        assert!(pooled_one_page >= WASM_PAGE_BYTES, "the one-page region went back when it grew");
        drop(a);
        assert_eq!(pooled_bytes(), pooled_one_page + 2 * WASM_PAGE_BYTES);

        let mut b = Guest::new(&module);
        assert_eq!(pooled_bytes(), pooled_one_page + WASM_PAGE_BYTES, "a one-page region was reused");
        assert_eq!((b.read(0), b.read(40_000), b.read(page - 1)), (0, 0, 0));
        b.write(7, 1);
        assert_eq!(b.grow(1), 1);
        assert_eq!(pooled_bytes(), pooled_one_page, "the two-page region was reused");
        assert_eq!((b.read(7), b.read(page + 100), b.read(2 * page - 1)), (1, 0, 0));
        assert_eq!(b.grow(6), 2, "to its maximum of 8 pages");
        assert_eq!(b.grow(1), -1, "past its maximum: -1 inside the guest");
        assert_eq!((b.read(7), b.read(8 * page - 1)), (1, 0));
    }

    /// Rule 3: the pool keeps at most its bound; the rest is unmapped.
    #[test]
    fn the_pool_is_bounded() {
        let ty = MemoryType::new(1, Some(4), false);
        let style = MemoryStyle::Dynamic { offset_guard_size: 0 };
        let count = MEMORY_POOL_BYTES_MAX / WASM_PAGE_BYTES + 10;
        let mut definitions: Vec<_> = (0..count).map(|_| Box::new(VMMemoryDefinition { base: std::ptr::null_mut(), current_length: 0 })).collect();
        // SAFETY: each definition outlives its memory (dropped first, below).
        let memories: Vec<_> = definitions.iter_mut().map(|d| unsafe { PooledMemory::new(&ty, &style, NonNull::from(&mut **d)) }.unwrap()).collect();
        assert!(definitions.iter().all(|d| d.current_length == WASM_PAGE_BYTES && !d.base.is_null()));
        drop(memories);
        assert!(pooled_bytes() <= MEMORY_POOL_BYTES_MAX);
        assert!(pooled_bytes() >= MEMORY_POOL_BYTES_MAX - WASM_PAGE_BYTES);
    }

    /// A region larger than the pool keeps is mapped for its memory and
    /// unmapped with it; the memory is still zeroed at first.
    #[test]
    fn large_memories_are_not_pooled() {
        let pages = (MEMORY_POOL_REGION_BYTES_MAX / WASM_PAGE_BYTES) as u32 + 1;
        let ty = MemoryType::new(pages, Some(pages + 1), false);
        let style = MemoryStyle::Dynamic { offset_guard_size: 0 };
        let mut definition = Box::new(VMMemoryDefinition { base: std::ptr::null_mut(), current_length: 0 });
        let before = pooled_bytes();
        // SAFETY: the definition outlives the memory.
        let mut memory = unsafe { PooledMemory::new(&ty, &style, NonNull::from(&mut *definition)) }.unwrap();
        assert_eq!(memory.grow(Pages(1)).unwrap(), Pages(pages));
        assert_eq!(definition.current_length, (pages as usize + 1) * WASM_PAGE_BYTES);
        assert!(memory.grow(Pages(1)).is_err());
        drop(memory);
        assert_eq!(pooled_bytes(), before);
    }
}
