//! Write caxton agents in Rust.
//!
//! An agent is a type that implements [`Agent`]: it handles one
//! [`Message`] at a time with a [`Context`] to reply, send, keep typed
//! state, read the clock and log. [`export_agent!`] turns it into a module
//! the node runs (ABI version 2, docs/ABI.md): no pointer, no envelope
//! layout, no `unsafe` in the agent's code.
//!
//! ```
//! use caxton_agent::{Agent, Context, Message, Performative, Result};
//!
//! #[derive(Default)]
//! pub struct Echo;
//!
//! impl Agent for Echo {
//!     fn handle(&mut self, ctx: &mut Context<'_>, message: &Message<'_>) -> Result<()> {
//!         ctx.reply(message, Performative::Inform, message.content())
//!     }
//! }
//!
//! caxton_agent::export_agent!(Echo);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-unknown-unknown`
//! (or `wasm32-wasip1`, to use the standard library's I/O, clock and
//! randomness through WASI) and deploy the `.wasm` file. Test its logic
//! natively with [`testing::TestAgent`], which runs it against a mock host.
//!
//! Rules:
//! 1. Per message the SDK allocates nothing once its buffers have grown:
//!    the inbox, the outgoing envelope, state values and log lines each
//!    live in one buffer reused for every message.
//! 2. Every host result maps to [`Error`]; a handler's `Err` is returned to
//!    the node as a negative code (counted as an agent error), and a panic
//!    is a trap (counted as a crash: the handler's writes and sends are
//!    rolled back and the instance is made anew).
//! 3. What the mock host accepts and refuses is what the node accepts and
//!    refuses (the ABI's limits, from `caxton-abi`).

mod context;
mod message;
pub mod protocols;
#[doc(hidden)]
pub mod rt;
pub mod testing;
pub mod tools;

pub use caxton_abi::code::AbiError;
pub use caxton_abi::failure::FailureReason;
pub use caxton_abi::{EnvelopeError, Performative, Protocol, TraceContext};
pub use context::{Context, Host, Level, Outgoing, Scratch, TimerId, TIMER_SENDER};
pub use message::Message;

/// The address of one key of a keyed agent, `TYPE/KEY`, checked when made
/// (a type is an agent name; a key is 1 to 128 bytes of UTF-8 and may hold
/// `/`). Send to it like to a name: `ctx.send(&address, ...)`.
///
/// ```
/// let cart = caxton_agent::KeyedAddress::new("cart", "user/42").unwrap();
/// assert_eq!((&*cart, cart.type_name(), cart.key()), ("cart/user/42", "cart", "user/42"));
/// assert!(caxton_agent::KeyedAddress::new("cart", "").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyedAddress(String);

impl KeyedAddress {
    pub fn new(type_name: &str, key: &str) -> Result<KeyedAddress> {
        let address = format!("{type_name}/{key}");
        match caxton_abi::split_keyed(address.as_bytes()) {
            Some(_) => Ok(KeyedAddress(address)),
            None => Err(EnvelopeError::Invalid("not a keyed address: an agent name, '/', and a key of 1 to 128 bytes").into()),
        }
    }

    pub fn type_name(&self) -> &str {
        self.0.split_once('/').expect("checked").0
    }

    pub fn key(&self) -> &str {
        self.0.split_once('/').expect("checked").1
    }
}

impl core::ops::Deref for KeyedAddress {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl core::fmt::Display for KeyedAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent: built once per instance, then handed its messages one by one.
///
/// Its fields live in the instance's memory: they survive from message to
/// message, but not a crash or a restart of the node. What must survive
/// those goes in state ([`Context::put`]).
pub trait Agent: Default + 'static {
    /// Runs once when the instance starts, before its first message (and
    /// again when the instance is made anew after a crash). An `Err` fails
    /// the deploy.
    fn init(&mut self, _ctx: &mut Context<'_>) -> Result<()> {
        Ok(())
    }

    /// Handles one message. An `Err` is counted as an agent error; what the
    /// handler wrote and sent before it stays.
    fn handle(&mut self, ctx: &mut Context<'_>, message: &Message<'_>) -> Result<()>;
}

/// Why an SDK call failed.
#[derive(Debug)]
pub enum Error {
    /// The node refused a host call with this ABI result.
    Abi(AbiError),
    /// A message to send has bad fields (a bad receiver name, content over
    /// 1 MiB).
    Envelope(EnvelopeError),
    /// A state value could not be encoded or decoded.
    Codec(postcard::Error),
    /// A tool's request or answer could not be encoded or decoded as JSON.
    Json(serde_json::Error),
    /// The agent's own reason, with the code the node counts (negative).
    Agent(i32),
}

impl Error {
    /// The code `caxton_handle` returns for this error: always negative.
    pub fn code(&self) -> i32 {
        let code = match self {
            Error::Abi(e) => e.code(),
            Error::Envelope(EnvelopeError::TooLarge) => caxton_abi::code::TOO_LARGE,
            Error::Envelope(EnvelopeError::Invalid(_)) | Error::Codec(_) | Error::Json(_) => caxton_abi::code::INVALID,
            Error::Agent(code) => *code,
        };
        if code < 0 {
            code
        } else {
            caxton_abi::code::INVALID
        }
    }

    /// Was the node busy (back-pressure)? Worth trying again later.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Abi(AbiError::Busy))
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Abi(e) => write!(f, "host call refused: {e}"),
            Error::Envelope(e) => write!(f, "{e}"),
            Error::Codec(e) => write!(f, "state value: {e}"),
            Error::Json(e) => write!(f, "tool JSON: {e}"),
            Error::Agent(code) => write!(f, "agent error {code}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<AbiError> for Error {
    fn from(e: AbiError) -> Error {
        Error::Abi(e)
    }
}

impl From<EnvelopeError> for Error {
    fn from(e: EnvelopeError) -> Error {
        Error::Envelope(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Json(e)
    }
}

impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Error {
        Error::Codec(e)
    }
}

pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Logs at a level through a [`Context`]: `info!(ctx, "seen {n}")`. The
/// line is formatted into a buffer the context reuses.
#[macro_export]
macro_rules! log {
    ($ctx:expr, $level:expr, $($arg:tt)+) => {
        $ctx.log($level, ::core::format_args!($($arg)+))
    };
}

#[macro_export]
macro_rules! error {
    ($ctx:expr, $($arg:tt)+) => { $crate::log!($ctx, $crate::Level::Error, $($arg)+) };
}

#[macro_export]
macro_rules! warn {
    ($ctx:expr, $($arg:tt)+) => { $crate::log!($ctx, $crate::Level::Warn, $($arg)+) };
}

#[macro_export]
macro_rules! info {
    ($ctx:expr, $($arg:tt)+) => { $crate::log!($ctx, $crate::Level::Info, $($arg)+) };
}

#[macro_export]
macro_rules! debug {
    ($ctx:expr, $($arg:tt)+) => { $crate::log!($ctx, $crate::Level::Debug, $($arg)+) };
}

/// Exports an [`Agent`] type as the module's `caxton_alloc`,
/// `caxton_handle` and `caxton_init` (only when built for WebAssembly; a
/// native build, for tests, exports nothing).
#[macro_export]
macro_rules! export_agent {
    ($agent:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            static RUNTIME: $crate::rt::Global<$crate::rt::Runtime<$agent>> = $crate::rt::Global::new($crate::rt::Runtime::new());

            #[no_mangle]
            pub extern "C" fn caxton_alloc(len: i32) -> i32 {
                RUNTIME.with(|rt| rt.alloc(len))
            }

            #[no_mangle]
            pub extern "C" fn caxton_init() -> i32 {
                RUNTIME.with(|rt| rt.init())
            }

            #[no_mangle]
            pub extern "C" fn caxton_handle(ptr: i32, len: i32) -> i32 {
                RUNTIME.with(|rt| rt.handle(ptr, len))
            }

            /// Envelopes of ABI version 2 both ways.
            #[no_mangle]
            pub extern "C" fn caxton_abi_version() -> i32 {
                2
            }
        };
    };
}
