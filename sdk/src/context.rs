//! What a handler can do: reply and send, keep typed state, read the
//! clock, log. Each call goes to a [`Host`]: the node's functions in a
//! WebAssembly build, a mock in tests.

use core::fmt::Write as _;

use caxton_abi::code::AbiError;
use caxton_abi::{Header, Performative, Protocol, CONTENT_BYTES_MAX, STATE_KEY_BYTES_MAX, STATE_VALUE_BYTES_MAX};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Message, Result};

/// The node's side of the ABI, one method per host function. Results are
/// the ABI's codes (docs/ABI.md).
pub trait Host {
    fn send(&mut self, envelope: &[u8]) -> i32;
    /// The value's length (copying at most `buf.len()` bytes), or -1.
    fn state_get(&mut self, key: &[u8], buf: &mut [u8]) -> i32;
    fn state_put(&mut self, key: &[u8], value: &[u8]) -> i32;
    fn state_delete(&mut self, key: &[u8]) -> i32;
    fn now_micros(&mut self) -> i64;
    fn log(&mut self, level: Level, line: &[u8]);
    /// A timer's id, or a negative ABI code.
    fn timer_set(&mut self, delay_ms: i64, content: &[u8]) -> i64;
    fn timer_cancel(&mut self, id: i64) -> i32;
    /// Writes the instance's own address into `buf`; its length, or a
    /// negative ABI code (`self_name`, docs/ABI.md).
    fn self_name(&mut self, buf: &mut [u8]) -> i32;
}

/// A log line's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

/// The buffers a context reuses from message to message (lib rule 1).
#[derive(Debug, Default)]
pub struct Scratch {
    ids: IdSource,
    envelope: Vec<u8>,
    /// Values read: its length only grows, so a read copies no zeros.
    value_in: Vec<u8>,
    value_out: Vec<u8>,
    line: String,
    /// The instance's own address, asked once (it never changes).
    address: Option<String>,
}

impl Scratch {
    pub const fn new() -> Scratch {
        Scratch { ids: IdSource(0), envelope: Vec::new(), value_in: Vec::new(), value_out: Vec::new(), line: String::new(), address: None }
    }
}

/// Ids for `reply_with` and conversations: the clock when first asked,
/// then counting up. 53 bits, like the node's (safe in JSON).
#[derive(Debug, Default)]
struct IdSource(u64);

impl IdSource {
    fn next(&mut self, now_micros: i64) -> u64 {
        if self.0 == 0 {
            self.0 = (now_micros.max(1) as u64) << 8;
        }
        self.0 = (self.0 + 1) & ((1 << 53) - 1);
        self.0.max(1)
    }
}

/// A timer's id: the `in_reply_to` of the message it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(pub u64);

/// The sender of every timer's message.
pub const TIMER_SENDER: &str = "@timer";

/// The first size of the buffer state values are read into.
const VALUE_BUFFER_BYTES_MIN: usize = 256;

/// A message to send, with the fields a plain [`Context::send`] leaves at 0.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub receiver: &'a str,
    pub performative: Performative,
    pub content: &'a [u8],
    pub conversation_id: u64,
    pub reply_with: u64,
    pub in_reply_to: u64,
    /// Microseconds since the Unix epoch; past it the node does not deliver
    /// the message but fails it back (`expired`). 0: no deadline.
    pub reply_by: u64,
    pub protocol: Protocol,
}

impl<'a> Outgoing<'a> {
    pub fn new(receiver: &'a str, performative: Performative, content: &'a [u8]) -> Outgoing<'a> {
        Outgoing { receiver, performative, content, conversation_id: 0, reply_with: 0, in_reply_to: 0, reply_by: 0, protocol: Protocol::NONE }
    }

    /// A deadline, in microseconds since the Unix epoch.
    pub fn reply_by(self, reply_by_us: u64) -> Self {
        Outgoing { reply_by: reply_by_us, ..self }
    }

    pub fn protocol(self, protocol: Protocol) -> Self {
        Outgoing { protocol, ..self }
    }

    pub fn conversation(self, conversation_id: u64) -> Self {
        Outgoing { conversation_id, ..self }
    }

    /// Asks the receiver to name `reply_with` in its reply's `in_reply_to`.
    pub fn reply_with(self, reply_with: u64) -> Self {
        Outgoing { reply_with, ..self }
    }

    pub fn in_reply_to(self, in_reply_to: u64) -> Self {
        Outgoing { in_reply_to, ..self }
    }
}

/// A handler's view of the node.
pub struct Context<'a> {
    host: &'a mut dyn Host,
    scratch: &'a mut Scratch,
}

/// A host result as a `Result`: the non-negative value, or the error.
fn checked(code: i32) -> Result<u32> {
    match AbiError::from_code(code) {
        None => Ok(code as u32),
        Some(e) => Err(e.into()),
    }
}

impl<'a> Context<'a> {
    pub fn new(host: &'a mut dyn Host, scratch: &'a mut Scratch) -> Context<'a> {
        Context { host, scratch }
    }

    /// This instance's own address: the agent's name, or for a keyed
    /// agent's activation `TYPE/KEY`. Known in `init` too.
    pub fn self_name(&mut self) -> Result<&str> {
        if self.scratch.address.is_none() {
            let mut buf = [0u8; caxton_abi::ADDRESS_BYTES_MAX];
            let n = checked(self.host.self_name(&mut buf))? as usize;
            let name = std::str::from_utf8(&buf[..n.min(buf.len())]).map_err(|_| crate::Error::from(AbiError::Invalid))?;
            self.scratch.address = Some(name.to_string());
        }
        Ok(self.scratch.address.as_deref().expect("set above"))
    }

    /// The key this activation of a keyed agent serves (`kv/KEY` → `KEY`),
    /// or `None` for an agent deployed without `--keyed`.
    pub fn key(&mut self) -> Result<Option<&str>> {
        let name = self.self_name()?;
        Ok(caxton_abi::split_keyed(name.as_bytes()).map(|(_, key)| std::str::from_utf8(key).expect("a key is UTF-8")))
    }

    /// Replies to `to`: a message to its sender, in its conversation and
    /// protocol, with `in_reply_to` set to its `reply_with`.
    pub fn reply(&mut self, to: &Message<'_>, performative: Performative, content: impl AsRef<[u8]>) -> Result<()> {
        let out =
            Outgoing::new(to.sender(), performative, content.as_ref()).conversation(to.conversation_id()).in_reply_to(to.reply_with()).protocol(to.protocol());
        self.send_message(out)
    }

    /// Sends `content` to the agent (or runtime name) `receiver`.
    pub fn send(&mut self, receiver: &str, performative: Performative, content: impl AsRef<[u8]>) -> Result<()> {
        self.send_message(Outgoing::new(receiver, performative, content.as_ref()))
    }

    /// Sends a message with every header field chosen. The node sets the
    /// sender (this agent) and the message id.
    pub fn send_message(&mut self, out: Outgoing<'_>) -> Result<()> {
        if out.content.len() > CONTENT_BYTES_MAX {
            return Err(caxton_abi::EnvelopeError::TooLarge.into());
        }
        // The node sets the id and the trace (the handled message's).
        let header = Header {
            performative: out.performative.code(),
            conversation_id: out.conversation_id,
            reply_with: out.reply_with,
            in_reply_to: out.in_reply_to,
            reply_by: out.reply_by,
            protocol: out.protocol,
            ..Header::default()
        };
        let len = caxton_abi::encoded_len(&header, b"", out.receiver.as_bytes(), out.content);
        let buf = &mut self.scratch.envelope;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        // The node checks every name it is sent (the mock too).
        let n = caxton_abi::encode_unchecked_names(buf, &header, b"", out.receiver.as_bytes(), out.content)?;
        debug_assert_eq!(n, len);
        checked(self.host.send(&buf[..n])).map(drop)
    }

    /// The value under `key`, decoded, or `None` if there is none.
    pub fn get<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        match self.get_bytes(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(postcard::from_bytes(bytes)?)),
        }
    }

    /// Stores `value` under `key` (in postcard, a compact serde format).
    /// It is committed with the shard's next commit, before any message
    /// this handler sends is released (docs/ABI.md).
    pub fn put<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let mut buf = core::mem::take(&mut self.scratch.value_out);
        buf.clear();
        let bytes = postcard::to_extend(value, buf)?;
        let result = self.put_bytes(key.as_bytes(), &bytes);
        self.scratch.value_out = bytes; // keep the allocation
        result
    }

    /// Deletes `key`; whether it was there.
    pub fn delete(&mut self, key: &str) -> Result<bool> {
        match checked(self.host.state_delete(key.as_bytes())) {
            Ok(_) => Ok(true),
            Err(crate::Error::Abi(AbiError::NotFound)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The raw bytes under `key`, borrowed until the next state call.
    pub fn get_bytes(&mut self, key: &[u8]) -> Result<Option<&[u8]>> {
        if key.len() > STATE_KEY_BYTES_MAX {
            return Err(AbiError::TooLarge.into());
        }
        let buf = &mut self.scratch.value_in;
        if buf.len() < VALUE_BUFFER_BYTES_MIN {
            buf.resize(VALUE_BUFFER_BYTES_MIN, 0);
        }
        let len = match checked(self.host.state_get(key, buf)) {
            Ok(len) => len as usize,
            Err(crate::Error::Abi(AbiError::NotFound)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if len > buf.len() {
            // Longer than the buffer: grow it once and read again.
            assert!(len <= STATE_VALUE_BYTES_MAX, "the node keeps values within the ABI's limit");
            buf.resize(len, 0);
            let again = checked(self.host.state_get(key, buf))? as usize;
            assert_eq!(again, len, "one handler call sees its own state");
        }
        Ok(Some(&self.scratch.value_in[..len]))
    }

    pub fn put_bytes(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        checked(self.host.state_put(key, value)).map(drop)
    }

    /// Microseconds since the Unix epoch.
    pub fn now_micros(&mut self) -> i64 {
        self.host.now_micros()
    }

    /// The wall clock.
    pub fn now(&mut self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_micros(self.now_micros().max(0) as u64)
    }

    /// Schedules a message to this instance after `delay`: an `inform` from
    /// `@timer` whose `in_reply_to` is the returned id and whose content is
    /// `content` (at most 64 KiB). Timers are durable: they survive a crash
    /// and a restart of the node, and fire at least once.
    pub fn timer_set(&mut self, delay: std::time::Duration, content: impl AsRef<[u8]>) -> Result<TimerId> {
        let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let id = self.host.timer_set(ms, content.as_ref());
        match AbiError::from_code(i32::try_from(id).unwrap_or(i32::MIN)).filter(|_| id < 0) {
            Some(e) => Err(e.into()),
            None => Ok(TimerId(id as u64)),
        }
    }

    /// Cancels a pending timer; whether it was pending.
    pub fn timer_cancel(&mut self, id: TimerId) -> Result<bool> {
        match checked(self.host.timer_cancel(id.0 as i64)) {
            Ok(_) => Ok(true),
            Err(crate::Error::Abi(AbiError::NotFound)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A fresh id for `reply_with` or a conversation: non-zero and, within
    /// this instance, never the same twice.
    pub fn new_id(&mut self) -> u64 {
        self.scratch.ids.next(self.host.now_micros())
    }

    /// Writes a line to the node's log (see the `info!` family of macros).
    pub fn log(&mut self, level: Level, args: core::fmt::Arguments<'_>) {
        let line = &mut self.scratch.line;
        line.clear();
        let _ = line.write_fmt(args);
        self.host.log(level, line.as_bytes());
    }
}
