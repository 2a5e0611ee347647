//! The runtime's own names, and how they change as a message crosses nodes.
//!
//! Rules:
//! 1. Names beginning with `@` are the runtime's, never an agent's: a REST
//!    caller is `@api/<n>`, a wire connection `@wire/<n>`, the node itself
//!    (sender of failure notices) `@node`.
//! 2. A runtime sender (`@api/7`) crossing from node A becomes
//!    `@node/<tag of A>/api/7` on arrival, so that a reply finds its way
//!    back; on A, a receiver `@node/<tag of A>/api/7` becomes `@api/7`
//!    again. The tag is a 64-bit hash of the node's name, in 16 hex digits.
//!    The notice sender `@node` is the one exception: it stays `@node` on
//!    every node, so that an agent knows a notice from wherever it came;
//!    a notice asks for no reply, so it needs no way back.
//! 3. A qualified name longer than a name may be stays unqualified: a
//!    reply to it stays on the receiving node (and finds no one).

use caxton_cluster::identity::node_tag;

use crate::envelope::{EnvelopeError, Message};
use crate::limits::{NAME_BYTES_MAX, RUNTIME_NAME_PREFIX};

/// Prefix of a REST caller's name (`@api/<n>`).
pub const API_NAME_PREFIX: &str = "@api/";
/// Prefix of a wire connection's name (`@wire/<n>`).
pub const WIRE_NAME_PREFIX: &str = "@wire/";
/// The node itself, as the sender of failure notices.
pub const NODE_SENDER: &str = "@node";
/// Prefix of node-qualified runtime names (rule 2).
pub const NODE_NAME_PREFIX: &str = "@node/";

/// The wire connection a runtime name is, if it is one.
pub fn wire_id(name: &str) -> Option<u64> {
    name.strip_prefix(WIRE_NAME_PREFIX)?.parse().ok()
}

/// `@node/<tag>/` for a node name.
pub fn node_prefix(node_name: &str) -> String {
    format!("{NODE_NAME_PREFIX}{:016x}/", node_tag(node_name))
}

/// The tag in a node-qualified runtime name, if it is one.
pub fn tag_of(receiver: &[u8]) -> Option<u64> {
    let rest = receiver.strip_prefix(NODE_NAME_PREFIX.as_bytes())?;
    let hex = std::str::from_utf8(rest.get(..16)?).ok()?;
    (rest.get(16) == Some(&b'/')).then_some(())?;
    u64::from_str_radix(hex, 16).ok()
}

/// Rule 3, on arrival from node `from` at node `here` (`here_prefix` is
/// `node_prefix(here)`). `Ok(None)`: nothing to rewrite.
pub fn rewrite_on_arrival(message: &Message, from_prefix: &str, here_prefix: &str) -> Result<Option<Message>, EnvelopeError> {
    let sender = message.sender();
    let receiver = message.receiver();
    let qualify = sender.first() == Some(&RUNTIME_NAME_PREFIX) && !sender.starts_with(NODE_NAME_PREFIX.as_bytes()) && sender != NODE_SENDER.as_bytes();
    let unqualify = receiver.starts_with(here_prefix.as_bytes());
    if !qualify && !unqualify {
        return Ok(None);
    }
    let new_sender: Vec<u8> = if qualify {
        let mut s = from_prefix.as_bytes().to_vec();
        s.extend_from_slice(&sender[1..]);
        if s.len() > NAME_BYTES_MAX {
            sender.to_vec() // too long to qualify: a reply to it stays on this node
        } else {
            s
        }
    } else {
        sender.to_vec()
    };
    let new_receiver: Vec<u8> = if unqualify {
        let mut r = vec![RUNTIME_NAME_PREFIX];
        r.extend_from_slice(&receiver[here_prefix.len()..]);
        r
    } else {
        receiver.to_vec()
    };
    Message::encode(&message.header(), &new_sender, &new_receiver, message.content()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Header;

    fn msg(sender: &str, receiver: &str, content: &[u8]) -> Message {
        Message::encode(&Header { message_id: 9, conversation_id: 4, ..Default::default() }, sender.as_bytes(), receiver.as_bytes(), content).unwrap()
    }

    #[test]
    fn runtime_names_are_qualified_on_the_way_out_and_restored_on_the_way_back() {
        let (a, b) = (node_prefix("127.0.0.1:7000"), node_prefix("127.0.0.2:7000"));
        let request = msg("@api/7", "echo", b"hi");
        let arrived = rewrite_on_arrival(&request, &a, &b).unwrap().unwrap();
        assert_eq!(arrived.sender(), format!("{a}api/7").as_bytes());
        assert_eq!(tag_of(arrived.sender()), Some(node_tag("127.0.0.1:7000")));
        assert_eq!(arrived.content(), b"hi");
        let reply = msg("echo", std::str::from_utf8(arrived.sender()).unwrap(), b"hi back");
        assert!(rewrite_on_arrival(&reply, &b, &b).unwrap().is_none(), "not for node b");
        let home = rewrite_on_arrival(&reply, &b, &a).unwrap().unwrap();
        assert_eq!(home.receiver(), b"@api/7");
        assert_eq!(home.header(), reply.header());
        let notice = msg(NODE_SENDER, "manager", b"crashed_handler");
        assert!(rewrite_on_arrival(&notice, &a, &b).unwrap().is_none(), "a notice is from @node wherever it came from");
        assert!(rewrite_on_arrival(&msg("x", "y", b""), &a, &b).unwrap().is_none());
        assert_eq!(wire_id("@wire/12"), Some(12));
        assert_eq!(wire_id("@api/12"), None);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(caxton_cluster::fuzz::config(512))]

            /// Runtime names crossing nodes: any sender and receiver, any
            /// node names; a rewrite keeps every other field.
            #[test]
            fn rewriting_names_keeps_the_rest(sender in "@[a-z0-9/]{1,63}", receiver in "(@node/[0-9a-f]{16}/)?[a-z]{1,20}", a in "[0-9.:]{1,21}", b in "[0-9.:]{1,21}") {
                let m = Message::encode(&Header { message_id: 5, conversation_id: 6, reply_with: 7, in_reply_to: 8, performative: 1, ..Header::default() }, sender.as_bytes(), receiver.as_bytes(), b"c").unwrap();
                if let Ok(Some(r)) = rewrite_on_arrival(&m, &node_prefix(&a), &node_prefix(&b)) {
                    prop_assert_eq!((r.header(), r.content()), (m.header(), m.content()));
                }
                let _ = tag_of(receiver.as_bytes());
            }
        }
    }
}
