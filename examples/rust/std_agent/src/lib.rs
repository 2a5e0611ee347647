//! std_agent: an agent that uses Rust's standard library through WASI
//! (built for `wasm32-wasip1`): `println!` and `eprintln!` reach the node's
//! log, `SystemTime` reads the clock, `HashMap` hashes with WASI's random
//! seed, `std::process::exit` ends a handler.
//!
//! Content "count WORDS…" replies with each word's count; "time" with the
//! seconds since the epoch; "panic" panics (a counted crash: the instance is
//! made anew and answers again); "exit" calls `exit(0)` after replying.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use caxton_agent::{Agent, Context, Message, Performative, Result};

#[derive(Default)]
pub struct StdAgent {
    handled: u64,
}

impl Agent for StdAgent {
    fn init(&mut self, _ctx: &mut Context<'_>) -> Result<()> {
        println!("std_agent starting");
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Context<'_>, message: &Message<'_>) -> Result<()> {
        self.handled += 1;
        let text = message.text().unwrap_or("");
        println!("std_agent handling message {} from {}: {text}", self.handled, message.sender());
        let (command, rest) = text.split_once(' ').unwrap_or((text, ""));
        match command {
            "count" => {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for w in rest.split_whitespace() {
                    *counts.entry(w).or_default() += 1;
                }
                let mut counts: Vec<_> = counts.into_iter().collect();
                counts.sort();
                let answer: Vec<String> = counts.iter().map(|(w, n)| format!("{w}={n}")).collect();
                ctx.reply(message, Performative::Inform, answer.join(" "))
            }
            "time" => {
                let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
                ctx.reply(message, Performative::Inform, secs.to_string())
            }
            "panic" => {
                eprintln!("std_agent about to panic");
                panic!("asked to panic")
            }
            "exit" => {
                ctx.reply(message, Performative::Inform, "exiting")?;
                std::process::exit(0)
            }
            _ => ctx.reply(message, Performative::NotUnderstood, text),
        }
    }
}

caxton_agent::export_agent!(StdAgent);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};

    #[test]
    fn counts_words_and_tells_the_time() {
        let mut a = TestAgent::<super::StdAgent>::start().unwrap();
        a.deliver(&TestMessage::new("@api/1", "std", "count b a b")).unwrap();
        assert_eq!(a.host().sent[0].text(), "a=1 b=2");
        a.deliver(&TestMessage::new("@api/1", "std", "time")).unwrap();
        assert!(a.host().sent[1].text().parse::<u64>().unwrap() > 1_700_000_000);
    }
}
