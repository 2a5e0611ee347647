//! What a shard knows of tools: which agent may call which, and the
//! admission of a call. The calls themselves run off the shards, in the
//! node's tools runtime; a call leaves a shard as a message to `@tool/NAME`
//! through the runtime outbox, and its answer comes back as a message.
//!
//! Rules:
//! 1. An agent calls only the tools its deploy granted (`?tools=a,b`); the
//!    grant is per agent name (a keyed type's keys share their type's). A
//!    call to any other is refused at once (`send` returns -7, denied) and
//!    counted; so is a call to a tool the node does not have, which no
//!    deploy can grant.
//! 2. A call asks for its answer: a `reply_with` of 0 is invalid (-3).
//! 3. An agent has at most [`TOOL_CALLS_PER_AGENT_MAX`] calls in flight
//!    (its rows, `storage::tool_calls`); past that `send` returns -2.
//! 4. An admitted call is recorded in its handler's savepoint and counts as
//!    a write, so it leaves only when the handler commits
//!    (`storage::tool_calls` rules 1 and 2).
//!
//! [`TOOL_CALLS_PER_AGENT_MAX`]: crate::limits::TOOL_CALLS_PER_AGENT_MAX

use std::collections::HashMap;
use std::sync::Arc;

use caxton_abi::code::{BUSY, DENIED, INVALID, OVER_LIMIT};
pub use caxton_abi::failure::{ToolFailure, TOOL_NAME_PREFIX};

use crate::limits::TOOL_CALLS_PER_AGENT_MAX;

/// The tool a runtime name calls, if it is one (`@tool/calc` → `calc`).
pub fn tool_of(receiver: &[u8]) -> Option<&[u8]> {
    receiver.strip_prefix(TOOL_NAME_PREFIX.as_bytes())
}

/// Tools granted to each agent on this shard (rule 1), and what was refused.
#[derive(Debug, Default)]
pub struct Grants {
    by_agent: HashMap<Arc<str>, Arc<[Box<str>]>>,
    pub counters: ToolCounters,
}

/// Tool calls a shard admitted and refused, by why (rules 1 to 3).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ToolCounters {
    pub admitted: u64,
    pub refused_not_granted: u64,
    pub refused_in_flight: u64,
    /// Answers taken from mailboxes, and of those, answers to no call the
    /// shard had a row of (made before a restart whose row was lost: none
    /// unless the database was).
    pub answered: u64,
    pub answered_unknown: u64,
}

impl Grants {
    /// Sets `agent`'s grant (at deploy and at an upgrade that changes it).
    pub fn set(&mut self, agent: Arc<str>, tools: Arc<[Box<str>]>) {
        if tools.is_empty() {
            self.by_agent.remove(&agent);
        } else {
            self.by_agent.insert(agent, tools);
        }
    }

    pub fn remove(&mut self, agent: &str) {
        self.by_agent.remove(agent);
    }

    /// Is `tool` granted to `sender` (an agent's name or a key's address)?
    pub fn allows(&self, sender: &str, tool: &[u8]) -> bool {
        let agent = match caxton_abi::split_keyed(sender.as_bytes()) {
            Some((type_name, _)) => std::str::from_utf8(type_name).unwrap_or(""),
            None => sender,
        };
        self.by_agent.get(agent).is_some_and(|tools| tools.iter().any(|t| t.as_bytes() == tool))
    }
}

/// Admits `sender`'s call to `receiver` (`@tool/NAME`) asking for answer
/// `reply_with`, given the calls it has in flight (rules 1 to 3).
pub fn admit(grants: &mut Grants, sender: &str, receiver: &[u8], reply_with: u64, in_flight: rusqlite::Result<usize>) -> Result<(), i32> {
    let tool = tool_of(receiver).expect("admit is asked for tool names only");
    if !grants.allows(sender, tool) {
        grants.counters.refused_not_granted += 1;
        return Err(DENIED);
    }
    if reply_with == 0 {
        return Err(INVALID);
    }
    match in_flight {
        Ok(n) if n >= TOOL_CALLS_PER_AGENT_MAX => {
            grants.counters.refused_in_flight += 1;
            Err(BUSY)
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, "cannot count an agent's tool calls; refused");
            Err(OVER_LIMIT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_tools_pass_and_keys_share_their_types_grant() {
        let mut g = Grants::default();
        g.set("kv".into(), vec!["calc".into(), "web".into()].into());
        assert!(g.allows("kv", b"calc") && g.allows("kv/user-7", b"web"));
        assert!(!g.allows("kv", b"cal") && !g.allows("kv2", b"calc") && !g.allows("kv/x", b"search"));
        assert_eq!(admit(&mut g, "kv/1", b"@tool/calc", 9, Ok(0)), Ok(()));
        assert_eq!(admit(&mut g, "kv/1", b"@tool/search", 9, Ok(0)), Err(DENIED));
        assert_eq!(admit(&mut g, "kv/1", b"@tool/calc", 0, Ok(0)), Err(INVALID), "rule 2");
        assert_eq!(admit(&mut g, "kv/1", b"@tool/calc", 9, Ok(TOOL_CALLS_PER_AGENT_MAX)), Err(BUSY), "rule 3");
        assert_eq!((g.counters.refused_not_granted, g.counters.refused_in_flight), (1, 1));
        g.set("kv".into(), Vec::new().into());
        assert!(!g.allows("kv", b"calc"), "an empty grant removes it");
    }
}
