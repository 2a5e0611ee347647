//! session: a keyed agent (`--keyed`), one activation per session id
//! (`session/ID`), that expires itself. Every message other than a timer's
//! renews the session: `set TEXT` stores TEXT, `get` answers it; either
//! way the session's deadline moves to now + its time to live (the
//! message's content `ttl MS` sets that, default 30 s). A timer checks the
//! deadline; past it, the session deletes its state, so a later `get`
//! answers "expired". The timer belongs to the key: it fires, and
//! activates the session, even when the node has passivated it meanwhile.

use std::time::Duration;

use caxton_agent::{info, Agent, Context, Message, Performative, Result};
use serde::{Deserialize, Serialize};

const SESSION: &str = "session";
const TTL_MS_DEFAULT: u64 = 30_000;

#[derive(Serialize, Deserialize, Debug, Default)]
struct Session {
    data: String,
    ttl_ms: u64,
    /// Microseconds since the epoch past which the session is over.
    deadline_us: i64,
}

#[derive(Default)]
pub struct SessionAgent;

impl Agent for SessionAgent {
    fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        let now = ctx.now_micros();
        if m.timer().is_some() {
            let Some(s) = ctx.get::<Session>(SESSION)? else { return Ok(()) };
            if now >= s.deadline_us {
                let key = ctx.key()?.unwrap_or("?").to_string();
                info!(ctx, "session {key} expired");
                ctx.delete(SESSION)?;
            }
            return Ok(());
        }
        let mut s: Session = ctx.get(SESSION)?.unwrap_or(Session { ttl_ms: TTL_MS_DEFAULT, ..Session::default() });
        let fresh = s.deadline_us == 0;
        let text = m.text().unwrap_or("");
        let (command, rest) = text.split_once(' ').unwrap_or((text, ""));
        let answer = match command {
            "set" => {
                s.data = rest.to_string();
                "ok".to_string()
            }
            "ttl" => {
                s.ttl_ms = rest.parse().unwrap_or(TTL_MS_DEFAULT);
                "ok".to_string()
            }
            "get" if fresh => {
                // Nothing stored: a session never set, or one that expired.
                return ctx.reply(m, Performative::Failure, "expired");
            }
            "get" => s.data.clone(),
            _ => return ctx.reply(m, Performative::NotUnderstood, text),
        };
        s.deadline_us = now + (s.ttl_ms as i64) * 1000;
        ctx.put(SESSION, &s)?;
        // One check at the deadline; a renewal sets another, and an early
        // check finds the deadline moved and does nothing.
        ctx.timer_set(Duration::from_millis(s.ttl_ms), b"check")?;
        ctx.reply(m, Performative::Inform, answer)
    }
}

caxton_agent::export_agent!(SessionAgent);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{MockHost, TestAgent, TestMessage};

    use super::*;

    fn say(s: &mut TestAgent<SessionAgent>, text: &str) -> String {
        s.deliver(&TestMessage::new("alice", "session/abc", text)).unwrap();
        s.host().sent.last().unwrap().text().to_string()
    }

    #[test]
    fn a_session_lives_while_it_is_used_and_expires_after_its_ttl() {
        let mut s = TestAgent::<SessionAgent>::start_with(MockHost::keyed("session", "abc")).unwrap();
        assert_eq!(say(&mut s, "ttl 1000"), "ok");
        assert_eq!(say(&mut s, "set cart=3"), "ok");
        s.advance(600).unwrap();
        assert_eq!(say(&mut s, "get"), "cart=3", "renewed at 600 ms");
        s.advance(600).unwrap(); // the first timer fires at 1000 ms: the deadline moved
        assert_eq!(say(&mut s, "get"), "cart=3");
        s.advance(1100).unwrap();
        assert_eq!(say(&mut s, "get"), "expired");
    }
}
