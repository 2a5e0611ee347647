//! kv: a keyed key-value agent, deployed with `--keyed`: one activation per
//! key (`kv/KEY`), each with the key's value in its own state, so every
//! caller of one key sees the same value whatever the node's shards.
//! `put TEXT` stores TEXT and answers "ok"; `get` answers the value, or
//! `failure` "not found"; `delete` removes it. Every answer names the key.

use caxton_agent::{Agent, Context, Message, Performative, Result};

const VALUE: &str = "value";

#[derive(Default)]
pub struct Kv;

impl Agent for Kv {
    fn handle(&mut self, ctx: &mut Context<'_>, m: &Message<'_>) -> Result<()> {
        let Some(key) = ctx.key()?.map(str::to_string) else {
            return ctx.reply(m, Performative::Refuse, "kv is a keyed agent: deploy it with --keyed and send to kv/KEY");
        };
        let text = m.text().unwrap_or("");
        let (command, rest) = text.split_once(' ').unwrap_or((text, ""));
        match command {
            "put" => {
                ctx.put(VALUE, rest)?;
                ctx.reply(m, Performative::Inform, format!("{key}: ok"))
            }
            "get" => match ctx.get::<String>(VALUE)? {
                Some(value) => ctx.reply(m, Performative::Inform, format!("{key}: {value}")),
                None => ctx.reply(m, Performative::Failure, format!("{key}: not found")),
            },
            "delete" => {
                let had = ctx.delete(VALUE)?;
                ctx.reply(m, Performative::Inform, format!("{key}: {}", if had { "deleted" } else { "not found" }))
            }
            _ => ctx.reply(m, Performative::NotUnderstood, text),
        }
    }
}

caxton_agent::export_agent!(Kv);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{MockHost, TestAgent, TestMessage};

    use super::*;

    fn ask(kv: &mut TestAgent<Kv>, text: &str) -> String {
        kv.deliver(&TestMessage::new("alice", "kv/user-1", text)).unwrap();
        kv.host().sent.last().unwrap().text().to_string()
    }

    #[test]
    fn one_key_keeps_its_value_and_names_itself() {
        let mut kv = TestAgent::<Kv>::start_with(MockHost::keyed("kv", "user-1")).unwrap();
        assert_eq!(ask(&mut kv, "get"), "user-1: not found");
        assert_eq!(ask(&mut kv, "put blue"), "user-1: ok");
        assert_eq!(ask(&mut kv, "get"), "user-1: blue");
        assert_eq!(ask(&mut kv, "delete"), "user-1: deleted");
        assert_eq!(ask(&mut kv, "get"), "user-1: not found");
    }

    #[test]
    fn deployed_without_keys_it_says_how_to_deploy_it() {
        let mut kv = TestAgent::<Kv>::start().unwrap();
        assert!(ask(&mut kv, "get").contains("--keyed"));
    }
}
