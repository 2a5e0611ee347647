//! The state writes of the handler call now running, held in memory and
//! applied to the tick's transaction when the call ends well.
//!
//! Why: a handler that traps must lose its writes and no one else's
//! (`storage` rule 2). A SQLite savepoint per call does that, but every
//! page a call changes is first copied into the savepoint's journal: a
//! profile of a shard churning keyed activations (issue 27), one state
//! write per message on a different page each time, spent 8% of its time
//! in those copies and 2% more opening and releasing savepoints. Held
//! here, a trapped call's writes are simply dropped.
//!
//! Rules:
//! 1. Writes are those of one instance (agent and instance), the one whose
//!    call is open; they are kept in order, keys and values back to back
//!    in one buffer.
//! 2. Reads of the call see its own writes: the newest write of a key wins,
//!    and a delete reads as absent.
//! 3. Nothing allocates once the buffers have grown to the largest call's
//!    writes (bounded by `STATE_WRITES_PER_HANDLER_MAX` and the value
//!    limit). Look-ups scan the call's writes, newest first: at most that
//!    many, and one or two in the common read-modify-write.

use std::ops::Range;

#[derive(Debug)]
struct Write {
    key: Range<usize>,
    /// `None`: the key is deleted.
    value: Option<Range<usize>>,
}

/// A write of a key: its value, or `None` for a delete.
pub type KeyWrite<'a> = (&'a [u8], Option<&'a [u8]>);

/// Rule 1's writes.
#[derive(Debug, Default)]
pub struct HandlerWrites {
    agent: String,
    instance: u32,
    bytes: Vec<u8>,
    writes: Vec<Write>,
}

impl HandlerWrites {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Holds a put (`Some(value)`) or a delete (`None`) of `key`.
    pub fn push(&mut self, agent: &str, instance: u32, key: &[u8], value: Option<&[u8]>) {
        if self.writes.is_empty() {
            self.agent.clear();
            self.agent.push_str(agent);
            self.instance = instance;
        }
        assert!(self.agent == agent && self.instance == instance, "rule 1: one instance's writes");
        let key_at = self.bytes.len()..self.bytes.len() + key.len();
        self.bytes.extend_from_slice(key);
        let value_at = value.map(|v| {
            let at = self.bytes.len()..self.bytes.len() + v.len();
            self.bytes.extend_from_slice(v);
            at
        });
        self.writes.push(Write { key: key_at, value: value_at });
    }

    /// Rule 2: `Some(Some(value))` if the call put `key` last, `Some(None)`
    /// if it deleted it, `None` if it did not write it.
    pub fn find(&self, agent: &str, instance: u32, key: &[u8]) -> Option<Option<&[u8]>> {
        if self.writes.is_empty() || self.instance != instance || self.agent != agent {
            return None;
        }
        let write = self.writes.iter().rev().find(|w| &self.bytes[w.key.clone()] == key)?;
        Some(write.value.clone().map(|v| &self.bytes[v]))
    }

    /// The instance whose writes these are (rule 1).
    pub fn owner(&self) -> (&str, u32) {
        (&self.agent, self.instance)
    }

    /// Each write in order, as (key, value or `None` for a delete): what
    /// applying them needs. They stay until [`HandlerWrites::clear`].
    pub fn each(&self) -> impl Iterator<Item = KeyWrite<'_>> {
        self.writes.iter().map(|w| (&self.bytes[w.key.clone()], w.value.clone().map(|v| &self.bytes[v])))
    }

    /// Drops every write, keeping the buffers (rule 3).
    pub fn clear(&mut self) {
        self.writes.clear();
        self.bytes.clear();
        assert!(self.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_write_of_a_key_wins_and_a_delete_reads_as_absent() {
        let mut w = HandlerWrites::default();
        assert_eq!(w.find("a", 0, b"k"), None);
        w.push("a", 0, b"k", Some(b"one"));
        w.push("a", 0, b"j", Some(b"other"));
        w.push("a", 0, b"k", Some(b"two"));
        assert_eq!(w.find("a", 0, b"k"), Some(Some(&b"two"[..])));
        assert_eq!(w.find("a", 1, b"k"), None, "another instance's key");
        assert_eq!(w.find("b", 0, b"k"), None, "another agent's key");
        w.push("a", 0, b"k", None);
        assert_eq!(w.find("a", 0, b"k"), Some(None));
        assert_eq!(w.find("a", 0, b"j"), Some(Some(&b"other"[..])));
        assert_eq!(w.owner(), ("a", 0));
        let all: Vec<_> = w.each().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3], (b"k".to_vec(), None), "in order");
        w.clear();
        assert!(w.is_empty());
        assert_eq!(w.find("a", 0, b"j"), None);
        w.push("b", 2, b"k", Some(b"v"));
        assert_eq!(w.find("b", 2, b"k"), Some(Some(&b"v"[..])), "a new owner after a clear");
    }

    #[test]
    #[should_panic(expected = "rule 1")]
    fn writes_of_two_instances_in_one_call_are_a_bug() {
        let mut w = HandlerWrites::default();
        w.push("a", 0, b"k", Some(b"v"));
        w.push("a", 1, b"k", Some(b"v"));
    }
}
