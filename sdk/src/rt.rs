//! The glue [`export_agent!`](crate::export_agent) expands to: the
//! agent's one instance, its inbox, and the node's host functions. Not
//! for direct use.
//!
//! Rules:
//! 1. The inbox is one buffer, grown to the largest message seen and never
//!    shrunk or zeroed again: `caxton_alloc` hands out its start, and
//!    `caxton_handle` reads the message in place (lib rule 1).
//! 2. The node calls the exports one at a time and never from inside a
//!    host call, so the one instance is never borrowed twice.

use core::cell::UnsafeCell;

use caxton_abi::code::INVALID;

use crate::context::{Context, Host, Level, Scratch};
use crate::{Agent, Message};

/// A value the module's exports share. WebAssembly agents are single
/// threaded and the exports do not nest (rule 2).
pub struct Global<T>(UnsafeCell<T>);

// SAFETY: agents run on one thread (the node instantiates each on its
// shard, and modules with threads are refused at deploy), so no two
// threads can reach the value.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(value: T) -> Global<T> {
        Global(UnsafeCell::new(value))
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: rule 2: the node never calls an export while another runs,
        // so this is the only reference to the value for `f`'s duration.
        f(unsafe { &mut *self.0.get() })
    }
}

/// One agent instance's runtime state.
pub struct Runtime<A> {
    agent: Option<A>,
    inbox: Vec<u8>,
    scratch: Scratch,
}

impl<A: Agent> Runtime<A> {
    pub const fn new() -> Runtime<A> {
        Runtime { agent: None, inbox: Vec::new(), scratch: Scratch::new() }
    }

    /// `caxton_alloc`: room for a message of `len` bytes (rule 1).
    pub fn alloc(&mut self, len: i32) -> i32 {
        let Ok(len) = usize::try_from(len) else { return -1 };
        if self.inbox.len() < len {
            self.inbox.resize(len, 0);
        }
        self.inbox.as_mut_ptr() as usize as i32
    }

    /// `caxton_init`: builds the agent and runs its `init`.
    pub fn init(&mut self) -> i32 {
        install_panic_hook();
        let mut agent = A::default();
        let mut host = NodeHost;
        let mut ctx = Context::new(&mut host, &mut self.scratch);
        match agent.init(&mut ctx) {
            Ok(()) => {
                self.agent = Some(agent);
                0
            }
            Err(e) => e.code(),
        }
    }

    /// `caxton_handle`: reads the message in the inbox and hands it over.
    pub fn handle(&mut self, ptr: i32, len: i32) -> i32 {
        let Runtime { agent, inbox, scratch } = self;
        let Ok(len) = usize::try_from(len) else { return INVALID };
        if ptr as usize != inbox.as_ptr() as usize || len > inbox.len() {
            return INVALID; // not the buffer `alloc` gave (rule 1)
        }
        let Ok(message) = Message::delivered(&inbox[..len]) else { return INVALID };
        let agent = agent.get_or_insert_with(A::default);
        let mut host = NodeHost;
        let mut ctx = Context::new(&mut host, scratch);
        match agent.handle(&mut ctx, &message) {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    }
}

impl<A: Agent> Default for Runtime<A> {
    fn default() -> Self {
        Runtime::new()
    }
}

/// The node's host functions (module `caxton`, docs/ABI.md).
struct NodeHost;

#[cfg(target_family = "wasm")]
mod node {
    #[link(wasm_import_module = "caxton")]
    extern "C" {
        pub fn send(ptr: *const u8, len: i32) -> i32;
        pub fn state_get(key_ptr: *const u8, key_len: i32, buf_ptr: *mut u8, buf_cap: i32) -> i32;
        pub fn state_put(key_ptr: *const u8, key_len: i32, val_ptr: *const u8, val_len: i32) -> i32;
        pub fn state_delete(key_ptr: *const u8, key_len: i32) -> i32;
        pub fn now_micros() -> i64;
        pub fn log(level: i32, ptr: *const u8, len: i32);
        pub fn timer_set(delay_ms: i64, ptr: *const u8, len: i32) -> i64;
        pub fn timer_cancel(id: i64) -> i32;
        pub fn self_name(ptr: *mut u8, cap: i32) -> i32;
    }
}

/// Lengths the ABI takes as `i32` (every buffer here is far smaller).
#[cfg(target_family = "wasm")]
fn len32(bytes: &[u8]) -> i32 {
    i32::try_from(bytes.len()).unwrap_or(i32::MAX)
}

#[cfg(target_family = "wasm")]
impl Host for NodeHost {
    fn send(&mut self, envelope: &[u8]) -> i32 {
        // SAFETY: the host reads `len` bytes at `ptr`, all inside `envelope`.
        unsafe { node::send(envelope.as_ptr(), len32(envelope)) }
    }

    fn state_get(&mut self, key: &[u8], buf: &mut [u8]) -> i32 {
        // SAFETY: the host reads the key and writes at most `buf.len()` bytes into `buf`.
        unsafe { node::state_get(key.as_ptr(), len32(key), buf.as_mut_ptr(), len32(buf)) }
    }

    fn state_put(&mut self, key: &[u8], value: &[u8]) -> i32 {
        // SAFETY: the host reads both slices within their lengths.
        unsafe { node::state_put(key.as_ptr(), len32(key), value.as_ptr(), len32(value)) }
    }

    fn state_delete(&mut self, key: &[u8]) -> i32 {
        // SAFETY: the host reads the key within its length.
        unsafe { node::state_delete(key.as_ptr(), len32(key)) }
    }

    fn now_micros(&mut self) -> i64 {
        // SAFETY: no arguments; the host only returns the clock.
        unsafe { node::now_micros() }
    }

    fn log(&mut self, level: Level, line: &[u8]) {
        // SAFETY: the host reads the line within its length.
        unsafe { node::log(level as i32, line.as_ptr(), len32(line)) }
    }

    fn timer_set(&mut self, delay_ms: i64, content: &[u8]) -> i64 {
        // SAFETY: the host reads the content within its length.
        unsafe { node::timer_set(delay_ms, content.as_ptr(), len32(content)) }
    }

    fn timer_cancel(&mut self, id: i64) -> i32 {
        // SAFETY: no pointers; the host only looks the id up.
        unsafe { node::timer_cancel(id) }
    }

    fn self_name(&mut self, buf: &mut [u8]) -> i32 {
        // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
        unsafe { node::self_name(buf.as_mut_ptr(), len32(buf)) }
    }
}

/// A native build has no node: agents are tested with `testing::TestAgent`.
#[cfg(not(target_family = "wasm"))]
impl Host for NodeHost {
    fn send(&mut self, _: &[u8]) -> i32 {
        unreachable!("a native build runs agents through caxton_agent::testing")
    }
    fn state_get(&mut self, _: &[u8], _: &mut [u8]) -> i32 {
        unreachable!("a native build runs agents through caxton_agent::testing")
    }
    fn state_put(&mut self, _: &[u8], _: &[u8]) -> i32 {
        unreachable!("a native build runs agents through caxton_agent::testing")
    }
    fn state_delete(&mut self, _: &[u8]) -> i32 {
        unreachable!("a native build runs agents through caxton_agent::testing")
    }
    fn now_micros(&mut self) -> i64 {
        unreachable!("a native build runs agents through caxton_agent::testing")
    }
    fn log(&mut self, _: Level, _: &[u8]) {
        unreachable!("a native build runs agents through caxton_agent::testing")
    }
    fn timer_set(&mut self, _: i64, _: &[u8]) -> i64 {
        unreachable!("a native build runs agents through caxton_agent::testing")
    }
    fn timer_cancel(&mut self, _: i64) -> i32 {
        unreachable!("a native build runs agents through caxton_agent::testing")
    }
    fn self_name(&mut self, _: &mut [u8]) -> i32 {
        unreachable!("a native build runs agents through caxton_agent::testing")
    }
}

/// A panic's message goes to the node's log before the trap (lib rule 2):
/// `wasm32-unknown-unknown` has no standard error to print it to.
fn install_panic_hook() {
    #[cfg(target_family = "wasm")]
    std::panic::set_hook(Box::new(|info| {
        let line = format!("panic: {info}");
        NodeHost.log(Level::Error, line.as_bytes());
    }));
}
