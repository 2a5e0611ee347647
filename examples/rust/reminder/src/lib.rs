//! reminder: durable timers (`Context::timer_set`). "remind MS TEXT" sets a
//! timer and answers "set ID" (only after the timer is committed, as every
//! reply of a handler that wrote is); "cancel ID" cancels one; when a timer
//! fires its text is added to the list in state; "list" answers the texts
//! fired so far, in order. Timers survive a crash and a restart of the node.

use std::time::Duration;

use caxton_agent::{info, Agent, Context, Message, Performative, Result, TimerId};

const FIRED: &str = "fired";

#[derive(Default)]
pub struct Reminder;

impl Agent for Reminder {
    fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        if m.timer().is_some() {
            let text = m.text().unwrap_or("?").to_string();
            info!(ctx, "timer {} fired: {text}", m.in_reply_to());
            let mut fired: Vec<String> = ctx.get(FIRED)?.unwrap_or_default();
            fired.push(text);
            return ctx.put(FIRED, &fired);
        }
        let text = m.text().unwrap_or("");
        let (command, rest) = text.split_once(' ').unwrap_or((text, ""));
        match command {
            "remind" => {
                let (ms, what) = rest.split_once(' ').unwrap_or((rest, ""));
                match ctx.timer_set(Duration::from_millis(ms.parse().unwrap_or(0)), what) {
                    Ok(id) => ctx.reply(m, Performative::Inform, format!("set {}", id.0)),
                    Err(e) => ctx.reply(m, Performative::Refuse, format!("{e}")),
                }
            }
            "cancel" => {
                let cancelled = ctx.timer_cancel(TimerId(rest.parse().unwrap_or(0)))?;
                ctx.reply(m, Performative::Inform, if cancelled { "cancelled" } else { "not pending" })
            }
            "list" => {
                let fired: Vec<String> = ctx.get(FIRED)?.unwrap_or_default();
                ctx.reply(m, Performative::Inform, fired.join(","))
            }
            _ => ctx.reply(m, Performative::NotUnderstood, text),
        }
    }
}

caxton_agent::export_agent!(Reminder);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};

    #[test]
    fn timers_fire_in_order_and_cancelled_ones_do_not() {
        let mut r = TestAgent::<super::Reminder>::start().unwrap();
        r.deliver(&TestMessage::new("@api/1", "r", "remind 200 second")).unwrap();
        r.deliver(&TestMessage::new("@api/1", "r", "remind 100 first")).unwrap();
        r.deliver(&TestMessage::new("@api/1", "r", "remind 300 never")).unwrap();
        let never = r.host().sent[2].text().strip_prefix("set ").unwrap().to_string();
        r.deliver(&TestMessage::new("@api/1", "r", format!("cancel {never}"))).unwrap();
        r.advance(1000).unwrap();
        r.deliver(&TestMessage::new("@api/1", "r", "list")).unwrap();
        assert_eq!(r.host().sent.last().unwrap().text(), "first,second");
    }
}
