//! echo: replies to every message with its content, as an `inform` in the
//! same conversation. The SDK twin of examples/agents/echo.wat (make bench
//! compares them).

use caxton_agent::{Agent, Context, Message, Performative, Result};

#[derive(Default)]
pub struct Echo;

impl Agent for Echo {
    fn handle(&mut self, ctx: &mut Context<'_>, message: &Message<'_>) -> Result<()> {
        ctx.reply(message, Performative::Inform, message.content())
    }
}

caxton_agent::export_agent!(Echo);

#[cfg(test)]
mod tests {
    use caxton_agent::testing::{TestAgent, TestMessage};
    use caxton_agent::Performative;

    #[test]
    fn replies_with_the_content_in_the_conversation() {
        let mut echo = TestAgent::<super::Echo>::start().unwrap();
        echo.deliver(&TestMessage::new("@api/1", "echo", "hello").conversation(5).reply_with(9)).unwrap();
        let reply = &echo.host().sent[0];
        assert_eq!((reply.receiver.as_str(), reply.text(), reply.performative), ("@api/1", "hello", Performative::Inform));
        assert_eq!((reply.conversation_id, reply.in_reply_to), (5, 9));
    }
}
