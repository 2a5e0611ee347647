//! WASI preview 1 (`wasi_snapshot_preview1`) with no capabilities, so that
//! agents built by real toolchains (Rust for `wasm32-wasip1`, clang with
//! wasi-libc, AssemblyScript's WASI shim) load and run unchanged.
//!
//! Rules:
//! 1. Standard output and error (fds 1 and 2) go to the node's log, a line
//!    at a time, as `log` lines do: attributed to the agent, instance,
//!    shard and conversation, escaped, cut at [`LOG_LINE_BYTES_MAX`], and
//!    within the instance's log budget (`agent_log` rule 1). A line longer
//!    than that is written in pieces; a line not ended when a call returns
//!    is written then ([`HostEnv::flush_output`]). Standard input (fd 0)
//!    is empty. No other descriptor exists and nothing is preopened: calls
//!    on fds 0 to 2 answer as a terminal would, calls on others `EBADF`.
//! 2. Clocks: realtime and monotonic, with a resolution of 1 ns; the
//!    CPU-time clocks are refused (`EINVAL`): a shard's CPU time is not an
//!    agent's.
//! 3. `random_get` reads the kernel's CSPRNG (getrandom(2)).
//! 4. Arguments and environment are empty.
//! 5. `proc_exit(code)` ends the call at once, as its return would: code 0
//!    means handled, any other code an agent error; what the call wrote
//!    and sent stays. The program has ended, so the instance is made anew
//!    before its next message (its state is in SQLite, its memory is not).
//! 6. `sched_yield` returns at once. Every other preview-1 function links
//!    and returns `ENOSYS`, so any WASI module loads.
//! 7. Every call is charged [`HOST_CALL_FUEL`] and the work it does,
//!    before it does it: the buffers it reads the list of
//!    ([`WASI_IOVEC_FUEL`] each), the bytes it moves, the random bytes it
//!    asks the kernel for; `fd_write` also pays for each line it ends, as
//!    `log` does (`host` rule 7). docs/LIMITS.md has each price, and the
//!    `fuel_calibration` bench measures each against the time it takes. A call the fuel cannot pay for does
//!    nothing and returns `EAGAIN`; the handler stops at its next metered
//!    block. Every guest pointer is checked (`EFAULT`), as in `host.rs`.
//! 8. Outside a call bracket every function does nothing and returns
//!    `EINVAL` (`host` rule 6); `proc_exit` returns.

use wasmer::{FunctionEnvMut, MemoryView};

use super::host::{bytes_fuel, charge, take_fuel, HostEnv, Stream, Unpaid};
use crate::limits::{HOST_CALL_FUEL, RANDOM_CALL_FUEL, RANDOM_FUEL_PER_KIB, WASI_IOVEC_FUEL, WASI_IOVS_MAX, WASI_RANDOM_BYTES_MAX, WASI_WRITE_FUEL_PER_KIB};

/// The import module of WASI preview 1.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// The error numbers of preview 1 this module returns.
pub mod errno {
    pub const SUCCESS: i32 = 0;
    pub const AGAIN: i32 = 6;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
    pub const NOTDIR: i32 = 54;
    pub const NOTSUP: i32 = 58;
    pub const SPIPE: i32 = 70;
}
use errno::*;

const FILETYPE_CHARACTER_DEVICE: u8 = 2;
const RIGHTS_FD_READ: u64 = 1 << 1;
const RIGHTS_FD_WRITE: u64 = 1 << 6;
const FDFLAGS_APPEND: u16 = 1 << 0;
const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;

/// `proc_exit`'s way out of the guest (rule 5): a trap that carries the
/// exit code, told apart from a crash by the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcExit(pub i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proc_exit({})", self.0)
    }
}

impl std::error::Error for ProcExit {}

/// Is `fd` one of the standard descriptors (rule 1)?
fn stdio(fd: i32) -> bool {
    (0..=2).contains(&fd)
}

/// The guest range `ptr..ptr+len`, if inside memory (rule 7).
fn range(view: &MemoryView<'_>, ptr: i32, len: u64) -> Result<u64, i32> {
    let at = u32::try_from(ptr).map_err(|_| FAULT)? as u64;
    if at + len > view.data_size() {
        return Err(FAULT);
    }
    Ok(at)
}

fn write(view: &MemoryView<'_>, ptr: i32, bytes: &[u8]) -> Result<(), i32> {
    let at = range(view, ptr, bytes.len() as u64)?;
    view.write(at, bytes).map_err(|_| FAULT)
}

fn read_u32(view: &MemoryView<'_>, ptr: i32) -> Result<u32, i32> {
    let at = range(view, ptr, 4)?;
    let mut b = [0u8; 4];
    view.read(at, &mut b).map_err(|_| FAULT)?;
    Ok(u32::from_le_bytes(b))
}

/// The errno of a call that was not paid for (rules 7 and 8).
fn unpaid(e: Unpaid) -> i32 {
    match e {
        Unpaid::NoFuel => AGAIN,
        Unpaid::OutsideCall => INVAL,
    }
}

/// Charges `points` (rules 7 and 8).
fn pay(env: &mut FunctionEnvMut<'_, HostEnv>, points: u64) -> Result<(), i32> {
    let data = env.data();
    charge(data, points).map_err(unpaid)
}

/// Runs `f` on the guest's memory after charging the call (rule 7).
fn with_memory(env: &mut FunctionEnvMut<'_, HostEnv>, extra_fuel: u64, f: impl FnOnce(&MemoryView<'_>) -> Result<(), i32>) -> i32 {
    if let Err(e) = pay(env, HOST_CALL_FUEL + extra_fuel) {
        return e;
    }
    let (data, store) = env.data_and_store_mut();
    let Some(memory) = data.memory.as_ref() else { return FAULT };
    let view = memory.view(&store);
    match f(&view) {
        Ok(()) => SUCCESS,
        Err(e) => e,
    }
}

fn code(r: Result<(), i32>) -> i32 {
    r.err().unwrap_or(SUCCESS)
}

// ------------------------------------------------------------ standard I/O

/// Reads the iovec list at `iovs` and checks every buffer lies in memory:
/// (guest address, length) pairs, and their total.
/// `out`, if given, receives them. Paid for before: [`iovec_fuel`].
fn iovecs(view: &MemoryView<'_>, iovs: i32, count: i32, mut out: Option<&mut Vec<(u64, u64)>>) -> Result<u64, i32> {
    let count = usize::try_from(count).map_err(|_| INVAL)?;
    if count > WASI_IOVS_MAX {
        return Err(INVAL);
    }
    range(view, iovs, count as u64 * 8)?;
    let mut total = 0u64;
    for i in 0..count {
        let at = iovs.checked_add(i as i32 * 8).ok_or(FAULT)?;
        let (buf, len) = (read_u32(view, at)?, read_u32(view, at + 4)?);
        let start = range(view, buf as i32, len as u64).or_else(|e| if len == 0 { Ok(0) } else { Err(e) })?;
        if let Some(out) = out.as_deref_mut() {
            out.push((start, len as u64));
        }
        total += len as u64;
    }
    Ok(total)
}

/// The price of reading a list of `count` buffers (rule 7): each is two
/// words read and a range checked.
fn iovec_fuel(count: i32) -> u64 {
    count.clamp(0, WASI_IOVS_MAX as i32) as u64 * WASI_IOVEC_FUEL
}

pub fn fd_write(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32 {
    if let Err(e) = pay(&mut env, HOST_CALL_FUEL + iovec_fuel(iovs_len)) {
        return e;
    }
    let stream = match fd {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => return BADF,
    };
    let (data, store) = env.data_and_store_mut();
    let (Some(memory), Some(fuel)) = (data.memory.clone(), data.fuel) else { return FAULT };
    let mut buffers = std::mem::take(&mut data.iovecs);
    buffers.clear();
    let total = match iovecs(&memory.view(&store), iovs, iovs_len, Some(&mut buffers)) {
        Ok(total) => total,
        Err(e) => {
            data.iovecs = buffers;
            return e;
        }
    };
    // Rule 7: the bytes are paid for before any is read, each line before
    // it is written.
    if !take_fuel(fuel, bytes_fuel(total as usize, WASI_WRITE_FUEL_PER_KIB)) {
        data.iovecs = buffers;
        return AGAIN;
    }
    let now = std::time::Instant::now();
    let mut chunk = [0u8; 1024];
    let mut result = SUCCESS;
    let mut taken = 0u64;
    'all: for &(mut at, mut left) in &buffers {
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if memory.view(&store).read(at, &mut chunk[..n]).is_err() {
                result = FAULT;
                break 'all;
            }
            if !data.write_output(stream, &chunk[..n], now, &mut |points| take_fuel(fuel, points)) {
                result = AGAIN;
                break 'all;
            }
            taken += n as u64;
            at += n as u64;
            left -= n as u64;
        }
    }
    data.iovecs = buffers;
    if result != SUCCESS {
        return result;
    }
    debug_assert_eq!(taken, total);
    code(write(&memory.view(&store), nwritten, &(total as u32).to_le_bytes()))
}

pub fn fd_read(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, iovs: i32, iovs_len: i32, nread: i32) -> i32 {
    with_memory(&mut env, iovec_fuel(iovs_len), |view| {
        if fd != 0 {
            return Err(BADF);
        }
        iovecs(view, iovs, iovs_len, None)?;
        write(view, nread, &0u32.to_le_bytes()) // rule 1: standard input is empty
    })
}

pub fn fd_fdstat_get(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, buf: i32) -> i32 {
    with_memory(&mut env, 0, |view| {
        if !stdio(fd) {
            return Err(BADF);
        }
        // struct fdstat { u8 filetype; u16 flags @2; u64 rights_base @8; u64 rights_inheriting @16 }
        let mut stat = [0u8; 24];
        stat[0] = FILETYPE_CHARACTER_DEVICE;
        let (flags, rights) = if fd == 0 { (0, RIGHTS_FD_READ) } else { (FDFLAGS_APPEND, RIGHTS_FD_WRITE) };
        stat[2..4].copy_from_slice(&flags.to_le_bytes());
        stat[8..16].copy_from_slice(&rights.to_le_bytes());
        write(view, buf, &stat)
    })
}

pub fn fd_filestat_get(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, buf: i32) -> i32 {
    with_memory(&mut env, 0, |view| {
        if !stdio(fd) {
            return Err(BADF);
        }
        // struct filestat: dev, ino, u8 filetype @16, nlink @24, size, atim, mtim, ctim.
        let mut stat = [0u8; 64];
        stat[16] = FILETYPE_CHARACTER_DEVICE;
        stat[24..32].copy_from_slice(&1u64.to_le_bytes());
        write(view, buf, &stat)
    })
}

/// Charges a call that only answers `errno` (rule 7).
fn answer(env: &mut FunctionEnvMut<'_, HostEnv>, errno: i32) -> i32 {
    match pay(env, HOST_CALL_FUEL) {
        Ok(()) => errno,
        Err(e) => e,
    }
}

/// Calls that only ask whether `fd` exists and what it is.
fn on_fd(env: &mut FunctionEnvMut<'_, HostEnv>, fd: i32, on_stdio: i32) -> i32 {
    if let Err(e) = pay(env, HOST_CALL_FUEL) {
        return e;
    }
    if stdio(fd) {
        on_stdio
    } else {
        BADF
    }
}

pub fn fd_close(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32) -> i32 {
    on_fd(&mut env, fd, SUCCESS)
}

pub fn fd_sync(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32) -> i32 {
    on_fd(&mut env, fd, SUCCESS)
}

pub fn fd_datasync(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32) -> i32 {
    on_fd(&mut env, fd, SUCCESS)
}

pub fn fd_seek(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _offset: i64, _whence: i32, _newoffset: i32) -> i32 {
    on_fd(&mut env, fd, SPIPE)
}

pub fn fd_tell(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _offset: i32) -> i32 {
    on_fd(&mut env, fd, SPIPE)
}

pub fn fd_advise(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _offset: i64, _len: i64, _advice: i32) -> i32 {
    on_fd(&mut env, fd, SPIPE)
}

pub fn fd_allocate(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _offset: i64, _len: i64) -> i32 {
    on_fd(&mut env, fd, SPIPE)
}

pub fn fd_pread(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _iovs: i32, _iovs_len: i32, _offset: i64, _nread: i32) -> i32 {
    on_fd(&mut env, fd, SPIPE)
}

pub fn fd_pwrite(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _iovs: i32, _iovs_len: i32, _offset: i64, _nwritten: i32) -> i32 {
    on_fd(&mut env, fd, SPIPE)
}

pub fn fd_fdstat_set_flags(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _flags: i32) -> i32 {
    on_fd(&mut env, fd, NOTSUP)
}

pub fn fd_fdstat_set_rights(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _base: i64, _inheriting: i64) -> i32 {
    on_fd(&mut env, fd, NOTSUP)
}

pub fn fd_filestat_set_size(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _size: i64) -> i32 {
    on_fd(&mut env, fd, INVAL)
}

pub fn fd_filestat_set_times(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _atim: i64, _mtim: i64, _flags: i32) -> i32 {
    on_fd(&mut env, fd, NOTSUP)
}

pub fn fd_readdir(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, _buf: i32, _len: i32, _cookie: i64, _used: i32) -> i32 {
    on_fd(&mut env, fd, NOTDIR)
}

pub fn fd_renumber(mut env: FunctionEnvMut<'_, HostEnv>, fd: i32, to: i32) -> i32 {
    let first = on_fd(&mut env, fd, NOTSUP);
    if first != NOTSUP || stdio(to) {
        first
    } else {
        BADF
    }
}

/// No directory is preopened (rule 1): the scan for preopens, which
/// wasi-libc runs from fd 3 up, ends at once.
pub fn fd_prestat_get(mut env: FunctionEnvMut<'_, HostEnv>, _fd: i32, _buf: i32) -> i32 {
    answer(&mut env, BADF)
}

pub fn fd_prestat_dir_name(mut env: FunctionEnvMut<'_, HostEnv>, _fd: i32, _path: i32, _len: i32) -> i32 {
    answer(&mut env, BADF)
}

// ------------------------------------------------------------ arguments and environment (rule 4)

fn no_strings(env: &mut FunctionEnvMut<'_, HostEnv>, count: i32, size: i32) -> i32 {
    with_memory(env, 0, |view| {
        write(view, count, &0u32.to_le_bytes())?;
        write(view, size, &0u32.to_le_bytes())
    })
}

pub fn args_sizes_get(mut env: FunctionEnvMut<'_, HostEnv>, argc: i32, argv_buf_size: i32) -> i32 {
    no_strings(&mut env, argc, argv_buf_size)
}

pub fn environ_sizes_get(mut env: FunctionEnvMut<'_, HostEnv>, count: i32, size: i32) -> i32 {
    no_strings(&mut env, count, size)
}

pub fn args_get(mut env: FunctionEnvMut<'_, HostEnv>, _argv: i32, _argv_buf: i32) -> i32 {
    with_memory(&mut env, 0, |_| Ok(()))
}

pub fn environ_get(mut env: FunctionEnvMut<'_, HostEnv>, _environ: i32, _environ_buf: i32) -> i32 {
    with_memory(&mut env, 0, |_| Ok(()))
}

// ------------------------------------------------------------ clocks, randomness, the process

pub fn clock_res_get(mut env: FunctionEnvMut<'_, HostEnv>, id: i32, resolution: i32) -> i32 {
    with_memory(&mut env, 0, |view| match id {
        CLOCK_REALTIME | CLOCK_MONOTONIC => write(view, resolution, &1u64.to_le_bytes()),
        _ => Err(INVAL),
    })
}

pub fn clock_time_get(mut env: FunctionEnvMut<'_, HostEnv>, id: i32, _precision: i64, time: i32) -> i32 {
    with_memory(&mut env, 0, |view| {
        let ns = match id {
            CLOCK_REALTIME => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
            CLOCK_MONOTONIC => crate::clock::now_ns(),
            _ => return Err(INVAL),
        };
        write(view, time, &ns.to_le_bytes())
    })
}

pub fn random_get(mut env: FunctionEnvMut<'_, HostEnv>, buf: i32, len: i32) -> i32 {
    let Ok(len) = u32::try_from(len) else { return INVAL };
    if len as usize > WASI_RANDOM_BYTES_MAX {
        return INVAL;
    }
    // Rule 7: a system call a chunk, paid for before.
    with_memory(&mut env, RANDOM_CALL_FUEL + bytes_fuel(len as usize, RANDOM_FUEL_PER_KIB), |view| {
        let mut at = range(view, buf, len as u64)?;
        let mut left = len as usize;
        let mut chunk = [0u8; 4096];
        while left > 0 {
            let n = left.min(chunk.len());
            fill_random(&mut chunk[..n]);
            view.write(at, &chunk[..n]).map_err(|_| FAULT)?;
            at += n as u64;
            left -= n;
        }
        Ok(())
    })
}

/// Fills `buf` from getrandom(2) (rule 3).
fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: getrandom(2) writes at most `rest.len()` bytes into `rest`, which we own.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr() as *mut libc::c_void, rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
        } else {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "the kernel's random source answers: {e}");
        }
    }
}

/// Rule 5: a trap carrying the code, which the instance reads back.
pub fn proc_exit(mut env: FunctionEnvMut<'_, HostEnv>, code: i32) -> Result<(), ProcExit> {
    if pay(&mut env, HOST_CALL_FUEL) == Err(INVAL) {
        return Ok(()); // rule 8: no call to end
    }
    env.data_mut().exit_code = Some(code);
    Err(ProcExit(code))
}

pub fn sched_yield(mut env: FunctionEnvMut<'_, HostEnv>) -> i32 {
    answer(&mut env, SUCCESS)
}

// ------------------------------------------------------------ everything else (rule 6)

macro_rules! not_supported {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            #[allow(clippy::too_many_arguments, reason = "the preview-1 signature")]
            pub fn $name(mut env: FunctionEnvMut<'_, HostEnv>, $(_: $ty),*) -> i32 {
                answer(&mut env, NOSYS)
            }
        )*
    };
}

not_supported! {
    path_create_directory(fd: i32, path: i32, len: i32);
    path_filestat_get(fd: i32, flags: i32, path: i32, len: i32, buf: i32);
    path_filestat_set_times(fd: i32, flags: i32, path: i32, len: i32, atim: i64, mtim: i64, fst: i32);
    path_link(old_fd: i32, old_flags: i32, old_path: i32, old_len: i32, new_fd: i32, new_path: i32, new_len: i32);
    path_open(fd: i32, dirflags: i32, path: i32, len: i32, oflags: i32, base: i64, inheriting: i64, fdflags: i32, opened: i32);
    path_readlink(fd: i32, path: i32, len: i32, buf: i32, buf_len: i32, used: i32);
    path_remove_directory(fd: i32, path: i32, len: i32);
    path_rename(fd: i32, old_path: i32, old_len: i32, new_fd: i32, new_path: i32, new_len: i32);
    path_symlink(old_path: i32, old_len: i32, fd: i32, new_path: i32, new_len: i32);
    path_unlink_file(fd: i32, path: i32, len: i32);
    poll_oneoff(subscriptions: i32, events: i32, count: i32, nevents: i32);
    proc_raise(signal: i32);
    sock_accept(fd: i32, flags: i32, accepted: i32);
    sock_recv(fd: i32, data: i32, data_len: i32, flags: i32, len_out: i32, flags_out: i32);
    sock_send(fd: i32, data: i32, data_len: i32, flags: i32, len_out: i32);
    sock_shutdown(fd: i32, how: i32);
}
