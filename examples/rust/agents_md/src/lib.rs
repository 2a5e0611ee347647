//! Every Rust block of docs/AGENTS.md, compiled and run (issue 29): a doc
//! whose example does not build, or does not do what the doc says it does,
//! fails `make test`. `build.rs` copies the blocks here with the context the
//! doc leaves out; the tests below check what the doc says about them.

/// The counter under "Writing".
pub mod counter {
    include!(concat!(env!("OUT_DIR"), "/block0.rs"));
}

/// The test under "Testing natively", as written, against that counter.
#[cfg(test)]
mod counter_test {
    use crate::counter::Counter;
    include!(concat!(env!("OUT_DIR"), "/block1.rs"));
}

/// The keyed handler under "Keyed agents or instances".
pub mod keyed {
    include!(concat!(env!("OUT_DIR"), "/block2.rs"));
}

/// The tool-calling handler under "Tools".
pub mod tools {
    include!(concat!(env!("OUT_DIR"), "/block3.rs"));
}

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{MockHost, TestAgent, TestMessage};
    use caxton_agent::Performative;

    /// "\"alice\" for kv/alice", and "this key's state only".
    #[test]
    fn the_keyed_handler_answers_with_its_key_and_its_own_state() {
        let mut kv = TestAgent::<crate::keyed::Kv>::start_with(MockHost::keyed("kv", "alice")).unwrap();
        kv.deliver(&TestMessage::new("bob", "kv/alice", "")).unwrap();
        let reply = kv.host().sent.last().unwrap();
        assert_eq!((reply.receiver.as_str(), reply.performative, reply.text()), ("bob", Performative::Inform, "alice: None"));
    }

    /// The call leaves when the handler returns; its answer, a message
    /// later, reaches the caller kept in state.
    #[test]
    fn the_tool_handler_answers_its_caller_with_the_tools_text() {
        let mut calc = TestAgent::<crate::tools::Calc>::start().unwrap();
        calc.host_mut().script_tool("calc", |request| {
            assert_eq!((request["name"].as_str(), request["arguments"]["a"].as_i64(), request["arguments"]["b"].as_i64()), (Some("add"), Some(2), Some(3)));
            Ok(serde_json::json!({ "content": [{ "type": "text", "text": "5" }], "isError": false }))
        });
        calc.deliver(&TestMessage::new("alice", "calculator", "add 2 3").reply_with(7)).unwrap();
        let reply = calc.host().sent.last().unwrap();
        assert_eq!((reply.receiver.as_str(), reply.performative, reply.text(), reply.in_reply_to), ("alice", Performative::Inform, "5", 7));
    }
}
