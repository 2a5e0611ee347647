//! Testing agents natively, without a node: [`TestAgent`] runs an agent
//! against [`MockHost`], which keeps state in memory, records what the
//! agent sends and logs, and refuses what the node refuses (lib rule 3).
//!
//! ```
//! use caxton_agent::testing::{TestAgent, TestMessage};
//! use caxton_agent::{Agent, Context, Message, Performative, Result};
//!
//! #[derive(Default)]
//! struct Echo;
//! impl Agent for Echo {
//!     fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
//!         ctx.reply(m, Performative::Inform, m.content())
//!     }
//! }
//!
//! let mut echo = TestAgent::<Echo>::start().unwrap();
//! echo.deliver(&TestMessage::new("alice", "echo", "hi").reply_with(7)).unwrap();
//! let sent = echo.host().sent.last().unwrap();
//! assert_eq!((sent.receiver.as_str(), sent.content.as_slice(), sent.in_reply_to), ("alice", &b"hi"[..], 7));
//! ```

use std::collections::BTreeMap;

use caxton_abi::code::{BUSY, DENIED, INVALID, NOT_FOUND, OK, OVER_LIMIT, TOO_LARGE};
use caxton_abi::{Envelope, Header, Performative, Protocol, STATE_KEY_BYTES_MAX, STATE_VALUE_BYTES_MAX, STATE_WRITES_PER_HANDLER_MAX};

use crate::context::{Context, Host, Level, Scratch};
use crate::{Agent, Message, Result};

/// A message an agent sent, as the node would have taken it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub receiver: String,
    pub performative: Performative,
    pub conversation_id: u64,
    pub reply_with: u64,
    pub in_reply_to: u64,
    pub reply_by: u64,
    pub protocol: Protocol,
    pub content: Vec<u8>,
}

impl Sent {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.content).expect("UTF-8 content")
    }
}

/// The node, in memory.
#[derive(Debug, Default)]
pub struct MockHost {
    pub sent: Vec<Sent>,
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
    pub logs: Vec<(Level, String)>,
    /// What `now_micros` returns.
    pub now_micros: i64,
    /// Sends answer -2 (busy) while set, as a full mailbox would.
    pub busy: bool,
    /// Pending timers: (due, id, content), fired by [`TestAgent::advance`].
    pub timers: Vec<(i64, u64, Vec<u8>)>,
    next_timer: u64,
    /// State writes in the current handler call (the node allows 1000).
    writes: usize,
    /// The instance's own address (`self_name`): an agent's name, or a
    /// keyed activation's `TYPE/KEY` ([`MockHost::keyed`]). Default `agent`.
    pub address: Option<String>,
    /// Tools granted to the agent, and the scripts that answer them
    /// ([`MockHost::script_tool`]); calls made, waiting for their answers.
    tools: ToolScripts,
    tool_calls: Vec<(String, u64, Vec<u8>)>,
}

/// A scripted tool: its request's JSON in, its result's JSON or a failure
/// out.
pub type ToolScript = Box<dyn FnMut(&serde_json::Value) -> core::result::Result<serde_json::Value, crate::tools::ToolFailure>>;

#[derive(Default)]
struct ToolScripts(BTreeMap<String, Option<ToolScript>>);

impl core::fmt::Debug for ToolScripts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl MockHost {
    /// The host of one activation of keyed agent `type_name`, for `key`.
    pub fn keyed(type_name: &str, key: &str) -> MockHost {
        let address = format!("{type_name}/{key}");
        assert!(caxton_abi::split_keyed(address.as_bytes()).is_some(), "{address:?} is not a keyed address");
        MockHost { address: Some(address), ..MockHost::default() }
    }

    /// Grants `tool` and answers its calls with `script`, as the node would
    /// a real tool's: [`TestAgent`] delivers each answer after the handler
    /// that made the call returns. A call to a tool neither scripted nor
    /// granted is refused -7 (denied), as the node refuses it.
    pub fn script_tool(
        &mut self,
        tool: &str,
        script: impl FnMut(&serde_json::Value) -> core::result::Result<serde_json::Value, crate::tools::ToolFailure> + 'static,
    ) {
        self.tools.0.insert(tool.to_string(), Some(Box::new(script)));
    }

    /// Grants `tool` without a script: its calls wait in
    /// [`MockHost::tool_calls`] for the test to answer them
    /// ([`TestAgent::answer_tool`]).
    pub fn grant_tool(&mut self, tool: &str) {
        self.tools.0.insert(tool.to_string(), None);
    }

    /// Calls made and not answered yet: (tool, call id, request).
    pub fn tool_calls(&self) -> &[(String, u64, Vec<u8>)] {
        &self.tool_calls
    }
}

impl Host for MockHost {
    fn send(&mut self, envelope: &[u8]) -> i32 {
        let Ok(e) = Envelope::parse(envelope) else { return INVALID };
        if !e.sender().is_empty() {
            return INVALID; // the node fills the sender in
        }
        if self.busy {
            return BUSY;
        }
        let h = e.header();
        if let Some(tool) = e.receiver().strip_prefix(crate::tools::TOOL_NAME_PREFIX.as_bytes()) {
            let tool = String::from_utf8_lossy(tool).into_owned();
            if !self.tools.0.contains_key(&tool) {
                return DENIED;
            }
            if h.reply_with == 0 {
                return INVALID;
            }
            self.tool_calls.push((tool, h.reply_with, e.content().to_vec()));
        }
        self.sent.push(Sent {
            receiver: String::from_utf8(e.receiver().to_vec()).expect("names are ASCII"),
            performative: e.performative(),
            conversation_id: h.conversation_id,
            reply_with: h.reply_with,
            in_reply_to: h.in_reply_to,
            reply_by: h.reply_by,
            protocol: h.protocol,
            content: e.content().to_vec(),
        });
        OK
    }

    fn state_get(&mut self, key: &[u8], buf: &mut [u8]) -> i32 {
        if key.len() > STATE_KEY_BYTES_MAX {
            return TOO_LARGE;
        }
        match self.state.get(key) {
            None => NOT_FOUND,
            Some(v) => {
                let n = v.len().min(buf.len());
                buf[..n].copy_from_slice(&v[..n]);
                v.len() as i32
            }
        }
    }

    fn state_put(&mut self, key: &[u8], value: &[u8]) -> i32 {
        if key.len() > STATE_KEY_BYTES_MAX || value.len() > STATE_VALUE_BYTES_MAX {
            return TOO_LARGE;
        }
        if self.writes >= STATE_WRITES_PER_HANDLER_MAX {
            return OVER_LIMIT;
        }
        self.writes += 1;
        self.state.insert(key.to_vec(), value.to_vec());
        OK
    }

    fn state_delete(&mut self, key: &[u8]) -> i32 {
        if self.writes >= STATE_WRITES_PER_HANDLER_MAX {
            return OVER_LIMIT;
        }
        self.writes += 1;
        match self.state.remove(key) {
            Some(_) => OK,
            None => NOT_FOUND,
        }
    }

    fn now_micros(&mut self) -> i64 {
        self.now_micros
    }

    fn log(&mut self, level: Level, line: &[u8]) {
        self.logs.push((level, String::from_utf8_lossy(line).into_owned()));
    }

    fn timer_set(&mut self, delay_ms: i64, content: &[u8]) -> i64 {
        if !(0..=TIMER_DELAY_MS_MAX).contains(&delay_ms) {
            return INVALID as i64;
        }
        if content.len() > TIMER_CONTENT_BYTES_MAX {
            return TOO_LARGE as i64;
        }
        if self.timers.len() >= TIMERS_PER_INSTANCE_MAX || self.writes >= STATE_WRITES_PER_HANDLER_MAX {
            return OVER_LIMIT as i64;
        }
        self.writes += 1;
        self.next_timer += 1;
        self.timers.push((self.now_micros + delay_ms * 1000, self.next_timer, content.to_vec()));
        self.next_timer as i64
    }

    fn self_name(&mut self, buf: &mut [u8]) -> i32 {
        let name = self.address.as_deref().unwrap_or("agent").as_bytes();
        if buf.len() < name.len() {
            return TOO_LARGE;
        }
        buf[..name.len()].copy_from_slice(name);
        name.len() as i32
    }

    fn timer_cancel(&mut self, id: i64) -> i32 {
        let before = self.timers.len();
        self.timers.retain(|t| t.1 as i64 != id);
        if self.timers.len() < before {
            self.writes += 1;
            OK
        } else {
            NOT_FOUND
        }
    }
}

/// The node's timer bounds (crate `caxton-shards`' limits; the mock keeps
/// to them so tests meet what the node enforces).
pub const TIMERS_PER_INSTANCE_MAX: usize = 1024;
pub const TIMER_DELAY_MS_MAX: i64 = 30 * 24 * 3600 * 1000;
pub const TIMER_CONTENT_BYTES_MAX: usize = 64 * 1024;

/// A message for a test to deliver.
#[derive(Debug, Clone)]
pub struct TestMessage {
    pub sender: String,
    pub receiver: String,
    pub header: Header,
    pub content: Vec<u8>,
}

impl TestMessage {
    /// A `request` from `sender` to `receiver`.
    pub fn new(sender: &str, receiver: &str, content: impl AsRef<[u8]>) -> TestMessage {
        let header = Header { performative: Performative::Request.code(), message_id: 1, ..Header::default() };
        TestMessage { sender: sender.into(), receiver: receiver.into(), header, content: content.as_ref().to_vec() }
    }

    pub fn performative(mut self, p: Performative) -> Self {
        self.header.performative = p.code();
        self
    }

    pub fn conversation(mut self, id: u64) -> Self {
        self.header.conversation_id = id;
        self
    }

    pub fn reply_with(mut self, id: u64) -> Self {
        self.header.reply_with = id;
        self
    }

    pub fn in_reply_to(mut self, id: u64) -> Self {
        self.header.in_reply_to = id;
        self
    }

    pub fn reply_by(mut self, reply_by_us: u64) -> Self {
        self.header.reply_by = reply_by_us;
        self
    }

    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.header.protocol = protocol;
        self
    }

    /// The envelope the node would deliver.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = vec![0u8; caxton_abi::encoded_len(&self.header, self.sender.as_bytes(), self.receiver.as_bytes(), &self.content)];
        caxton_abi::encode_into(&mut buf, &self.header, self.sender.as_bytes(), self.receiver.as_bytes(), &self.content).expect("a valid test message");
        buf
    }
}

/// An agent and a mock node.
pub struct TestAgent<A> {
    agent: A,
    host: MockHost,
    scratch: Scratch,
    /// The agent's name, for the messages timers send it.
    name: String,
}

impl<A: Agent> TestAgent<A> {
    /// Builds the agent and runs its `init`, as a deploy does.
    pub fn start() -> Result<TestAgent<A>> {
        TestAgent::start_with(MockHost::default())
    }

    /// Starts it against `host` (state from an earlier run, say).
    pub fn start_with(host: MockHost) -> Result<TestAgent<A>> {
        let mut t = TestAgent { agent: A::default(), host, scratch: Scratch::new(), name: "agent".into() };
        t.host.writes = 0;
        let mut ctx = Context::new(&mut t.host, &mut t.scratch);
        t.agent.init(&mut ctx)?;
        t.answer_scripted_tools()?;
        Ok(t)
    }

    /// Delivers the answers of scripted tools to the calls made, in the
    /// order made, until no scripted call is left (an answer's handler may
    /// call again).
    fn answer_scripted_tools(&mut self) -> Result<()> {
        while let Some(i) = self.host.tool_calls.iter().position(|(tool, _, _)| matches!(self.host.tools.0.get(tool), Some(Some(_)))) {
            let (tool, call, request) = self.host.tool_calls.remove(i);
            let request: serde_json::Value = serde_json::from_slice(&request).unwrap_or(serde_json::Value::Null);
            let script = self.host.tools.0.get_mut(&tool).and_then(Option::as_mut).expect("scripted");
            let answer = script(&request).map(|v| serde_json::to_vec(&v).expect("JSON"));
            self.deliver_tool_answer(&tool, call, answer)?;
        }
        Ok(())
    }

    fn deliver_tool_answer(&mut self, tool: &str, call: u64, answer: core::result::Result<Vec<u8>, crate::tools::ToolFailure>) -> Result<()> {
        let sender = format!("{}{tool}", crate::tools::TOOL_NAME_PREFIX);
        let receiver = self.host.address.clone().unwrap_or_else(|| self.name.clone());
        let m = match answer {
            Ok(bytes) => TestMessage::new(&sender, &receiver, bytes).performative(Performative::Inform),
            Err(f) => TestMessage::new(&sender, &receiver, f.as_str()).performative(Performative::Failure),
        };
        self.deliver_one(&m.in_reply_to(call))
    }

    /// Answers the call `call` to a granted, unscripted tool with `answer`
    /// (its result's JSON, or a failure).
    pub fn answer_tool(&mut self, call: crate::tools::ToolCall, answer: core::result::Result<serde_json::Value, crate::tools::ToolFailure>) -> Result<()> {
        let i = self.host.tool_calls.iter().position(|(_, id, _)| *id == call.0).expect("a call made and not answered");
        let (tool, id, _) = self.host.tool_calls.remove(i);
        self.deliver_tool_answer(&tool, id, answer.map(|v| serde_json::to_vec(&v).expect("JSON")))?;
        self.answer_scripted_tools()
    }

    /// Hands it one message, as the node would; then the answers of the
    /// scripted tools it called ([`MockHost::script_tool`]).
    pub fn deliver(&mut self, message: &TestMessage) -> Result<()> {
        self.deliver_one(message)?;
        self.answer_scripted_tools()
    }

    fn deliver_one(&mut self, message: &TestMessage) -> Result<()> {
        let bytes = message.encode();
        let message = Message::parse(&bytes).expect("a valid test message");
        self.host.writes = 0;
        let mut ctx = Context::new(&mut self.host, &mut self.scratch);
        self.agent.handle(&mut ctx, &message)
    }

    /// Moves the mock clock on by `ms` and delivers every timer due, in due
    /// order, as the node would: `inform` from `@timer`, `in_reply_to` its id.
    pub fn advance(&mut self, ms: i64) -> Result<()> {
        self.host.now_micros += ms * 1000;
        loop {
            let now = self.host.now_micros;
            let Some(i) = self.host.timers.iter().enumerate().filter(|(_, t)| t.0 <= now).min_by_key(|(_, t)| (t.0, t.1)).map(|(i, _)| i) else {
                return Ok(());
            };
            let (_, id, content) = self.host.timers.remove(i);
            let receiver = self.name.clone();
            let m = TestMessage::new(crate::TIMER_SENDER, &receiver, content).performative(Performative::Inform).in_reply_to(id);
            self.deliver(&m)?;
        }
    }

    pub fn agent(&self) -> &A {
        &self.agent
    }

    pub fn host(&self) -> &MockHost {
        &self.host
    }

    pub fn host_mut(&mut self) -> &mut MockHost {
        &mut self.host
    }

    /// Stops it, keeping the node's side (its state): what a crash or a
    /// restart leaves.
    pub fn stop(self) -> MockHost {
        self.host
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::{Error, Outgoing};

    #[derive(Default)]
    struct Counter {
        seen: u32,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Tally {
        count: u64,
        last: String,
    }

    impl Agent for Counter {
        fn init(&mut self, ctx: &mut Context<'_>) -> Result<()> {
            crate::info!(ctx, "starting");
            Ok(())
        }

        fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
            self.seen += 1;
            let mut tally: Tally = ctx.get("tally")?.unwrap_or(Tally { count: 0, last: String::new() });
            tally.count += 1;
            tally.last = m.text().unwrap_or("?").to_string();
            ctx.put("tally", &tally)?;
            match m.text() {
                Ok("forget") => {
                    assert!(ctx.delete("tally")?);
                    assert!(!ctx.delete("tally")?);
                    Ok(())
                }
                Ok("fail") => Err(Error::Agent(-42)),
                _ => ctx.reply(m, Performative::Inform, tally.count.to_string()),
            }
        }
    }

    #[test]
    fn typed_state_replies_and_logs_go_through_the_host() {
        let mut c = TestAgent::<Counter>::start().unwrap();
        assert_eq!(c.host().logs, [(Level::Info, "starting".to_string())]);
        for i in 1..=3u64 {
            c.deliver(&TestMessage::new("alice", "counter", format!("m{i}")).conversation(9).reply_with(100 + i)).unwrap();
            let reply = c.host().sent.last().unwrap().clone();
            assert_eq!((reply.receiver.as_str(), reply.text(), reply.conversation_id, reply.in_reply_to), ("alice", &*i.to_string(), 9, 100 + i));
            assert_eq!(reply.performative, Performative::Inform);
        }
        assert_eq!(c.agent().seen, 3);
        // State outlives the instance; fields do not.
        let host = c.stop();
        let mut c = TestAgent::<Counter>::start_with(host).unwrap();
        c.deliver(&TestMessage::new("bob", "counter", "again")).unwrap();
        assert_eq!(c.host().sent.last().unwrap().text(), "4");
        assert_eq!(c.agent().seen, 1);
        c.deliver(&TestMessage::new("bob", "counter", "forget")).unwrap();
        assert!(c.host().state.is_empty());
        assert_eq!(c.deliver(&TestMessage::new("bob", "counter", "fail")).unwrap_err().code(), -42);
    }

    #[test]
    fn the_mock_refuses_what_the_node_refuses() {
        #[derive(Default)]
        struct Abuser;
        impl Agent for Abuser {
            fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
                match m.text().unwrap() {
                    "bad-name" => ctx.send("Not A Name", Performative::Inform, b""),
                    "too-big" => ctx.send("x", Performative::Inform, vec![0u8; caxton_abi::CONTENT_BYTES_MAX + 1]),
                    "big-key" => ctx.put("k".repeat(STATE_KEY_BYTES_MAX + 1).as_str(), &1u8),
                    "many-writes" => (0..=STATE_WRITES_PER_HANDLER_MAX).try_for_each(|i| ctx.put(&i.to_string(), &i)),
                    "busy" => ctx.send_message(Outgoing::new("x", Performative::Inform, b"").reply_with(3)),
                    _ => Ok(()),
                }
            }
        }
        let mut a = TestAgent::<Abuser>::start().unwrap();
        let code = |a: &mut TestAgent<Abuser>, what: &str| a.deliver(&TestMessage::new("t", "abuser", what)).unwrap_err().code();
        assert_eq!(code(&mut a, "bad-name"), INVALID);
        assert_eq!(code(&mut a, "too-big"), TOO_LARGE);
        assert_eq!(code(&mut a, "big-key"), TOO_LARGE);
        assert_eq!(code(&mut a, "many-writes"), OVER_LIMIT);
        a.host_mut().busy = true;
        let e = a.deliver(&TestMessage::new("t", "abuser", "busy")).unwrap_err();
        assert!(e.is_busy() && e.code() == BUSY);
        assert!(a.host().sent.is_empty());
    }

    #[test]
    fn large_values_are_read_whole() {
        #[derive(Default)]
        struct Big;
        impl Agent for Big {
            fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
                let n: usize = m.text().unwrap().parse().unwrap();
                ctx.put("v", &vec![7u8; n])?;
                let back: Vec<u8> = ctx.get("v")?.unwrap();
                assert_eq!(back.len(), n);
                assert_eq!(ctx.get::<u8>("absent")?, None);
                Ok(())
            }
        }
        let mut b = TestAgent::<Big>::start().unwrap();
        for n in [0, 10, 300, 70_000, 10] {
            b.deliver(&TestMessage::new("t", "big", n.to_string())).unwrap();
        }
    }

    #[test]
    fn tools_not_granted_are_denied_and_failures_and_manual_answers_arrive() {
        use crate::tools::{HttpRequest, ToolFailure};
        #[derive(Default)]
        struct Caller {
            answers: Vec<String>,
        }
        impl Agent for Caller {
            fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
                if let Some(a) = m.tool_answer() {
                    self.answers.push(match a.result {
                        Ok(_) => format!("{}: {}", a.tool, a.http().unwrap().status),
                        Err(e) => format!("{}: {:?}", a.tool, e.reason),
                    });
                    return Ok(());
                }
                ctx.call_http(m.text().unwrap(), &HttpRequest::get("/x")).map(drop)
            }
        }
        let mut a = TestAgent::<Caller>::start().unwrap();
        let e = a.deliver(&TestMessage::new("t", "caller", "web")).unwrap_err();
        assert_eq!(e.code(), caxton_abi::code::DENIED, "not granted");
        a.host_mut().script_tool("down", |_| Err(ToolFailure::ToolDown));
        a.host_mut().grant_tool("web");
        a.deliver(&TestMessage::new("t", "caller", "down")).unwrap();
        a.deliver(&TestMessage::new("t", "caller", "web")).unwrap();
        assert_eq!(a.agent().answers, ["down: Some(ToolDown)"], "the scripted failure came at once; web waits");
        let (tool, call, request) = a.host().tool_calls()[0].clone();
        assert_eq!((tool.as_str(), serde_json::from_slice::<serde_json::Value>(&request).unwrap()["path"].as_str()), ("web", Some("/x")));
        a.answer_tool(crate::tools::ToolCall(call), Ok(serde_json::json!({"status": 201, "headers": {}, "body": "made"}))).unwrap();
        assert_eq!(a.agent().answers, ["down: Some(ToolDown)", "web: 201"]);
        assert!(a.host().tool_calls().is_empty());
    }
}
