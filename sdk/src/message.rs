//! A received message, read in place from the inbox.

use caxton_abi::failure::{FailureReason, NOTICE_SENDER};
use caxton_abi::{Envelope, EnvelopeError, Header, Performative, Protocol, TraceContext};

/// One message, as the node delivered it. Borrowed from the inbox: it is
/// valid for the handler call only (copy what must outlive it).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    envelope: Envelope<'a>,
}

impl<'a> Message<'a> {
    /// Reads an envelope, checking all of it.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, EnvelopeError> {
        Envelope::parse(bytes).map(|envelope| Message { envelope })
    }

    /// Reads an envelope the node delivered: its structure is checked, its
    /// names are taken as the node checked them (`caxton_abi` envelope
    /// rule 3). What the runtime uses on each message.
    pub fn delivered(bytes: &'a [u8]) -> Result<Message<'a>, EnvelopeError> {
        Envelope::read_delivered(bytes).map(|envelope| Message { envelope })
    }

    pub fn performative(&self) -> Performative {
        self.envelope.performative()
    }

    /// The id the node gave this message.
    pub fn message_id(&self) -> u64 {
        self.envelope.header().message_id
    }

    /// The conversation it belongs to (0: none).
    pub fn conversation_id(&self) -> u64 {
        self.envelope.header().conversation_id
    }

    /// What a reply must name in `in_reply_to` (0: none asked).
    pub fn reply_with(&self) -> u64 {
        self.envelope.header().reply_with
    }

    /// The `reply_with` of the message this one answers (0: none).
    pub fn in_reply_to(&self) -> u64 {
        self.envelope.header().in_reply_to
    }

    /// Microseconds since the Unix epoch by which it wanted handling (0:
    /// none). The node does not deliver it later than that.
    pub fn reply_by(&self) -> u64 {
        self.envelope.header().reply_by
    }

    /// The interaction protocol it belongs to.
    pub fn protocol(&self) -> Protocol {
        self.envelope.header().protocol
    }

    /// Its W3C trace context; what this handler sends carries the same
    /// trace (the node sees to it).
    pub fn trace(&self) -> TraceContext {
        self.envelope.header().trace
    }

    /// Is it a failure notice from the node: a message this agent sent with
    /// a `reply_with` that could not be handled? Then the reason.
    pub fn failure_notice(&self) -> Option<FailureReason> {
        if self.performative() != Performative::Failure || self.sender() != NOTICE_SENDER {
            return None;
        }
        FailureReason::from_content(self.content())
    }

    /// Is it a timer of this agent's firing? Then its id.
    pub fn timer(&self) -> Option<crate::TimerId> {
        (self.sender() == crate::context::TIMER_SENDER).then_some(crate::TimerId(self.in_reply_to()))
    }

    /// Who sent it: an agent's name, or a runtime name such as `@api/7`.
    pub fn sender(&self) -> &'a str {
        name(self.envelope.sender())
    }

    /// This agent's name.
    pub fn receiver(&self) -> &'a str {
        name(self.envelope.receiver())
    }

    pub fn content(&self) -> &'a [u8] {
        self.envelope.content()
    }

    /// The content as text, if it is UTF-8.
    pub fn text(&self) -> Result<&'a str, core::str::Utf8Error> {
        core::str::from_utf8(self.content())
    }

    pub fn header(&self) -> Header {
        self.envelope.header()
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.envelope.as_bytes()
    }
}

/// Names are ASCII (the node checks them; a name that is not, which only
/// a hand-made envelope could carry, reads as empty).
fn name(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("")
}
