//! What a handler can do: reply and send, keep typed state, read the
//! clock, log. Each call goes to a [`Host`]: the node's functions in a
//! WebAssembly build, a mock in tests.

use core::fmt::Write as _;

use caxton_abi::code::AbiError;
use caxton_abi::{Header, Performative, CONTENT_BYTES_MAX, STATE_KEY_BYTES_MAX, STATE_VALUE_BYTES_MAX};
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
    envelope: Vec<u8>,
    /// Values read: its length only grows, so a read copies no zeros.
    value_in: Vec<u8>,
    value_out: Vec<u8>,
    line: String,
}

impl Scratch {
    pub const fn new() -> Scratch {
        Scratch { envelope: Vec::new(), value_in: Vec::new(), value_out: Vec::new(), line: String::new() }
    }
}

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
}

impl<'a> Outgoing<'a> {
    pub fn new(receiver: &'a str, performative: Performative, content: &'a [u8]) -> Outgoing<'a> {
        Outgoing { receiver, performative, content, conversation_id: 0, reply_with: 0, in_reply_to: 0 }
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

    /// Replies to `to`: a message to its sender, in its conversation, with
    /// `in_reply_to` set to its `reply_with`.
    pub fn reply(&mut self, to: &Message<'_>, performative: Performative, content: impl AsRef<[u8]>) -> Result<()> {
        let out = Outgoing::new(to.sender(), performative, content.as_ref()).conversation(to.conversation_id()).in_reply_to(to.reply_with());
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
        let header = Header {
            performative: out.performative.code(),
            message_id: 0,
            conversation_id: out.conversation_id,
            reply_with: out.reply_with,
            in_reply_to: out.in_reply_to,
        };
        let len = caxton_abi::encoded_len(b"", out.receiver.as_bytes(), out.content);
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

    /// Writes a line to the node's log (see the `info!` family of macros).
    pub fn log(&mut self, level: Level, args: core::fmt::Arguments<'_>) {
        let line = &mut self.scratch.line;
        line.clear();
        let _ = line.write_fmt(args);
        self.host.log(level, line.as_bytes());
    }
}
