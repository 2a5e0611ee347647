//! A module's start function, taken out of instantiation.
//!
//! WebAssembly runs a module's `(start)` function inside instantiation, and
//! wasmer's `Instance::new` gives the host no way in before it: the start
//! function would run before the instance's fuel and memory are known to its
//! host functions, and outside the shard's call bracket (handler rule 1).
//! So at compile time the start section is removed and its function exported
//! as [`START_EXPORT`]; the instance calls it first, inside the bracket, as
//! part of its start (`instance` rule 3). Instantiation then runs no guest
//! code at all.
//!
//! Rules:
//! 1. Only the framing is rewritten: every other section is copied byte for
//!    byte, in order, and the export section gains one entry. A module with
//!    no start section is returned unchanged.
//! 2. Bytes that are not a well-framed module are returned unchanged, so that
//!    the compiler reports its own error.
//! 3. A module that itself exports [`START_EXPORT`] is refused: the name is
//!    the runtime's.

use std::borrow::Cow;

use super::engine::ModuleError;

/// The export the start function is moved to. A colon keeps it apart from
/// every name a toolchain emits.
pub const START_EXPORT: &str = "caxton:start";

const SECTION_EXPORT: u8 = 7;
const SECTION_START: u8 = 8;
const EXPORT_KIND_FUNC: u8 = 0;
const HEADER: &[u8; 8] = b"\0asm\x01\0\0\0";

/// Reads an unsigned LEB128 `u32` at `*at`, advancing it.
fn read_u32(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let mut value = 0u64;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(value).ok();
        }
    }
    None
}

fn write_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// One top-level section: its id, and where its contents lie.
struct Section {
    id: u8,
    start: usize,
    end: usize,
    /// Where its id byte is (its framing starts there).
    framed: usize,
}

fn sections(wasm: &[u8]) -> Option<Vec<Section>> {
    if !wasm.starts_with(HEADER) {
        return None;
    }
    let mut at = HEADER.len();
    let mut out = Vec::new();
    while at < wasm.len() {
        let framed = at;
        let id = wasm[at];
        at += 1;
        let size = read_u32(wasm, &mut at)? as usize;
        let end = at.checked_add(size).filter(|&e| e <= wasm.len())?;
        out.push(Section { id, start: at, end, framed });
        at = end;
    }
    assert_eq!(at, wasm.len());
    Some(out)
}

/// Does the export section (its contents) already name [`START_EXPORT`]?
fn exports_name(contents: &[u8], name: &str) -> Option<bool> {
    let mut at = 0;
    let count = read_u32(contents, &mut at)?;
    for _ in 0..count {
        let len = read_u32(contents, &mut at)? as usize;
        let field = contents.get(at..at.checked_add(len)?)?;
        at += len;
        if field == name.as_bytes() {
            return Some(true);
        }
        at += 1; // kind
        read_u32(contents, &mut at)?; // index
    }
    Some(false)
}

/// The module with its start function exported as [`START_EXPORT`] instead
/// of run at instantiation (rules 1 to 3).
pub fn export_start(wasm: &[u8]) -> Result<Cow<'_, [u8]>, ModuleError> {
    let Some(sections) = sections(wasm) else { return Ok(Cow::Borrowed(wasm)) };
    let export = sections.iter().find(|s| s.id == SECTION_EXPORT);
    if let Some(e) = export {
        if exports_name(&wasm[e.start..e.end], START_EXPORT) == Some(true) {
            return Err(ModuleError(format!("the export name {START_EXPORT:?} is the runtime's; rename that export")));
        }
    }
    let Some(start) = sections.iter().find(|s| s.id == SECTION_START) else { return Ok(Cow::Borrowed(wasm)) };
    let mut at = start.start;
    let Some(function) = read_u32(wasm, &mut at) else { return Ok(Cow::Borrowed(wasm)) };
    // The new export section's contents: one more entry than the old one.
    let mut contents = Vec::new();
    match export {
        Some(e) => {
            let mut at = e.start;
            let Some(count) = read_u32(wasm, &mut at) else { return Ok(Cow::Borrowed(wasm)) };
            write_u32(&mut contents, count + 1);
            contents.extend_from_slice(&wasm[at..e.end]);
        }
        None => write_u32(&mut contents, 1),
    }
    write_u32(&mut contents, START_EXPORT.len() as u32);
    contents.extend_from_slice(START_EXPORT.as_bytes());
    contents.push(EXPORT_KIND_FUNC);
    write_u32(&mut contents, function);
    let mut out = Vec::with_capacity(wasm.len() + START_EXPORT.len() + 8);
    out.extend_from_slice(HEADER);
    let mut export_written = false;
    for s in &sections {
        match s.id {
            SECTION_EXPORT => {}
            // The start section's place is right after the export section's
            // (ids 7 then 8, nothing between): the export section goes there.
            SECTION_START => {
                out.push(SECTION_EXPORT);
                write_u32(&mut out, contents.len() as u32);
                out.extend_from_slice(&contents);
                export_written = true;
            }
            _ => out.extend_from_slice(&wasm[s.framed..s.end]),
        }
    }
    assert!(export_written, "the start section was found above");
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports_of(wasm: &[u8]) -> Vec<String> {
        let module = wasmer::Module::new(&wasmer::Engine::default(), wasm).unwrap();
        module.exports().map(|e| e.name().to_string()).collect()
    }

    #[test]
    fn the_start_function_becomes_an_export_and_nothing_else_changes() {
        let wat = r#"(module (memory (export "memory") 1) (global $g (mut i32) (i32.const 0))
            (func $s (global.set $g (i32.const 7))) (start $s)
            (func (export "get") (result i32) (global.get $g)))"#;
        let wasm = wasmer::wat2wasm(wat.as_bytes()).unwrap();
        let moved = export_start(&wasm).unwrap();
        assert!(matches!(moved, Cow::Owned(_)));
        assert_eq!(exports_of(&moved), ["memory", "get", START_EXPORT]);
        // Instantiation no longer runs it: the global is still 0 until called.
        let mut store = wasmer::Store::default();
        let module = wasmer::Module::new(&store, &*moved).unwrap();
        let instance = wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
        let get = instance.exports.get_typed_function::<(), i32>(&store, "get").unwrap();
        assert_eq!(get.call(&mut store).unwrap(), 0);
        instance.exports.get_typed_function::<(), ()>(&store, START_EXPORT).unwrap().call(&mut store).unwrap();
        assert_eq!(get.call(&mut store).unwrap(), 7);
    }

    #[test]
    fn a_module_without_exports_gets_an_export_section_in_the_start_sections_place() {
        let wasm = wasmer::wat2wasm(b"(module (func $s) (start $s) (func (param i32)))").unwrap();
        let moved = export_start(&wasm).unwrap();
        assert_eq!(exports_of(&moved), [START_EXPORT]);
    }

    #[test]
    fn modules_without_a_start_and_bad_bytes_pass_unchanged() {
        let wasm = wasmer::wat2wasm(br#"(module (memory (export "memory") 1))"#).unwrap();
        assert!(matches!(export_start(&wasm).unwrap(), Cow::Borrowed(_)));
        for bad in [&b"not wasm"[..], b"\0asm\x01\0\0\0\x08\xff\xff\xff\xff\x0f", b"\0asm\x01\0\0\0\x08\x05\x00"] {
            assert_eq!(&*export_start(bad).unwrap(), bad);
        }
    }

    #[test]
    fn the_runtimes_export_name_is_refused() {
        let wasm = wasmer::wat2wasm(br#"(module (func (export "caxton:start")))"#).unwrap();
        assert!(export_start(&wasm).unwrap_err().0.contains("runtime's"));
    }
}
