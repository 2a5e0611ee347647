//! Message buffers, reused on the thread that drops them.
//!
//! A message built on one shard and handled on another is freed there: with
//! the C allocator, a free on another thread than the allocating one locks
//! that thread's arena, and two shards exchanging messages contended on
//! each other's arena locks (futex waits, context switches: most of the
//! cost of a cross-shard message). So a message's buffer goes back to the
//! pool of the thread that drops it, and the next message built on that
//! thread takes it: in a two-way flow nothing reaches the allocator.
//!
//! Rules:
//! 1. [`take`] gives a zero-filled buffer of the asked length; of at most
//!    [`POOLED_BUFFER_BYTES`], from this thread's pool when it has one.
//! 2. [`give`] keeps a buffer of exactly [`POOLED_BUFFER_BYTES`] capacity
//!    while the pool holds fewer than [`POOLED_BUFFERS_MAX`]; every other
//!    buffer is freed. A pool never grows past its bound.
//! 3. Pools are per thread: no locks, no atomics, nothing shared. A buffer
//!    crosses threads only inside a message.
//!
//! Steady state: a shard exchanging messages allocates nothing (`take` pops,
//! `give` pushes); a one-way flow still frees on the receiving side once
//! that side's pool is full.

use std::cell::RefCell;

use crate::limits::{POOLED_BUFFERS_MAX, POOLED_BUFFER_BYTES};

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` zero bytes (rule 1).
pub fn take(len: usize) -> Vec<u8> {
    if len > POOLED_BUFFER_BYTES {
        return vec![0; len];
    }
    let mut buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(POOLED_BUFFER_BYTES));
    debug_assert!(buf.is_empty() && buf.capacity() == POOLED_BUFFER_BYTES);
    buf.resize(len, 0);
    buf
}

/// Takes `buf` back (rule 2).
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() != POOLED_BUFFER_BYTES {
        return;
    }
    buf.clear();
    // A thread being torn down has no pool left: the buffer is freed.
    let _ = POOL.try_with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOLED_BUFFERS_MAX {
            pool.push(buf);
        }
    });
}

/// Buffers in this thread's pool.
pub fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_zeroed_and_the_pool_stays_bounded() {
        let mut a = take(100);
        assert_eq!((a.len(), a.capacity()), (100, POOLED_BUFFER_BYTES));
        a.fill(0xAA);
        give(a);
        assert_eq!(pooled(), 1);
        let b = take(POOLED_BUFFER_BYTES);
        assert!(b.iter().all(|&x| x == 0), "a reused buffer is zero-filled");
        assert_eq!(pooled(), 0);
        give(b);
        // Larger messages and foreign buffers are not kept.
        let big = take(POOLED_BUFFER_BYTES + 1);
        assert_eq!(big.len(), POOLED_BUFFER_BYTES + 1);
        give(big);
        give(vec![0; 10]);
        assert_eq!(pooled(), 1);
        for _ in 0..POOLED_BUFFERS_MAX + 10 {
            give(Vec::with_capacity(POOLED_BUFFER_BYTES));
        }
        assert_eq!(pooled(), POOLED_BUFFERS_MAX, "rule 2");
    }

    #[test]
    fn a_buffer_dropped_on_another_thread_joins_that_threads_pool() {
        let buf = take(64);
        let there = std::thread::spawn(move || {
            give(buf);
            pooled()
        })
        .join()
        .unwrap();
        assert_eq!(there, 1);
    }
}
