//! A shard's side of tool calls in flight (`storage::tool_calls`): their
//! answers taken, and their replay after a restart.
//!
//! Rules:
//! 1. An answer from `@tool/NAME` taken from a mailbox removes its call's
//!    row in the tick's transaction (`storage::tool_calls` rule 3).
//! 2. Once the node serves (every agent restored), the calls whose rows
//!    are left are sent again, oldest first, as the runtime outbox has room;
//!    a shard with calls to replay wakes every [`TOOL_ANSWER_RETRY_MS`] to
//!    send more.

use std::time::Duration;

use crate::envelope::Message;
use crate::limits::TOOL_ANSWER_RETRY_MS;
use crate::router::RouteError;

use super::Shard;

impl Shard {
    /// Rule 1: `message` (from a tool) is taken by the agent it answers.
    pub(super) fn tool_answer_taken(&mut self, message: &Message) {
        let mut ctx = self.ctx.borrow_mut();
        assert!(!ctx.store.in_handler(), "outside any handler's savepoint");
        let agent = std::str::from_utf8(message.receiver()).unwrap_or("");
        ctx.grants.counters.answered += 1;
        match ctx.store.tool_call_answered(agent, message.in_reply_to()) {
            Ok(true) => {}
            Ok(false) => ctx.grants.counters.answered_unknown += 1,
            Err(e) => tracing::error!(shard = self.index, agent, error = %e, "cannot remove an answered tool call; it is made again after a restart"),
        }
    }

    /// Rule 2: loads the calls to make again (when the node serves).
    pub(super) fn load_tool_replays(&mut self) {
        let rows = match self.ctx.borrow().store.tool_calls_all() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(shard = self.index, error = %e, "cannot read the tool calls in flight; they are not made again");
                return;
            }
        };
        for row in rows {
            match Message::decode(row.envelope) {
                Ok(m) => self.tool_replays.push_back(m),
                Err(e) => tracing::error!(shard = self.index, id = row.id, error = %e, "a stored tool call does not decode; skipped"),
            }
        }
        if !self.tool_replays.is_empty() {
            tracing::info!(shard = self.index, calls = self.tool_replays.len(), "tool calls in flight at the last stop are made again");
        }
    }

    /// Rule 2: sends what the runtime outbox has room for.
    pub(super) fn replay_tool_calls(&mut self) -> usize {
        let mut sent = 0;
        let mut ctx = self.ctx.borrow_mut();
        while let Some(m) = self.tool_replays.pop_front() {
            match ctx.router.forward(m, false) {
                Ok(()) => sent += 1,
                Err((RouteError::Busy, m)) => {
                    self.tool_replays.push_front(m);
                    break;
                }
                Err((e, m)) => {
                    tracing::error!(shard = self.index, error = ?e, receiver = ?String::from_utf8_lossy(m.receiver()), "a tool call made again was refused")
                }
            }
        }
        sent
    }

    pub(super) fn next_tool_replay_in(&self) -> Option<Duration> {
        (!self.tool_replays.is_empty()).then_some(Duration::from_millis(TOOL_ANSWER_RETRY_MS))
    }
}
