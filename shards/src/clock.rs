//! The one clock of the hot path: monotonic nanoseconds, comparable across
//! the threads of a process (CLOCK_MONOTONIC through the vDSO, about 20 ns).

pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec owned by this frame.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Microseconds since the Unix epoch (the wall clock: message deadlines
/// and timers, which must mean the same on every node and after a restart).
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The CPU's time-stamp counter: a few nanoseconds to read, in ticks of a
/// constant rate that the caller measures against [`now_ns`] (stage timing,
/// `stages`). Where there is none, nanoseconds.
#[inline]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads a register; it touches no memory.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        now_ns()
    }
}
