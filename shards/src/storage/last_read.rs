//! The size of the record a handler read last, so that its write of the
//! same key need not ask SQLite again.
//!
//! Why: a put replaces what its key held, and the quota gives those bytes
//! back (`host` rule 4), so each put asked SQLite for the record's size
//! first: a second B-tree descent. Most handlers read a key and then write
//! it (a counter, a session, a keyed agent's state), and a profile of a
//! shard churning keyed activations (issue 27) spent 6% of its time in
//! that second look-up.
//!
//! Rules:
//! 1. It remembers one record, by agent, instance and key: the size the
//!    read found (key and value bytes), or that the key was absent.
//! 2. It is valid only within one handler call, between the read and the
//!    next write: any put or delete, the end of a call (kept or rolled
//!    back) and a rollback of the tick forget it. So nothing but the read
//!    it remembers can have changed the record.
//! 3. It allocates only while its buffers grow to the longest agent name
//!    and key seen.

/// Rule 1's record.
#[derive(Debug, Default)]
pub struct LastRead {
    agent: String,
    instance: u32,
    key: Vec<u8>,
    /// The record's bytes, or `None` when the key was absent.
    bytes: Option<u64>,
    valid: bool,
}

impl LastRead {
    /// Remembers what a read of (`agent`, `instance`, `key`) found.
    pub fn remember(&mut self, agent: &str, instance: u32, key: &[u8], bytes: Option<u64>) {
        assert!(bytes.is_none_or(|b| b >= key.len() as u64), "a record holds its key");
        self.agent.clear();
        self.agent.push_str(agent);
        self.key.clear();
        self.key.extend_from_slice(key);
        (self.instance, self.bytes, self.valid) = (instance, bytes, true);
    }

    /// What the last read found for this record, if it was this one
    /// (`Some(None)`: absent); `None` when it is not known.
    pub fn bytes_of(&self, agent: &str, instance: u32, key: &[u8]) -> Option<Option<u64>> {
        let same = self.valid && self.instance == instance && self.key == key && self.agent == agent;
        same.then_some(self.bytes)
    }

    /// Rule 2.
    pub fn forget(&mut self) {
        self.valid = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_knows_only_the_record_it_read_and_only_until_forgotten() {
        let mut last = LastRead::default();
        assert_eq!(last.bytes_of("a", 0, b"k"), None, "nothing read yet");
        last.remember("a", 0, b"k", Some(5));
        assert_eq!(last.bytes_of("a", 0, b"k"), Some(Some(5)));
        assert_eq!(last.bytes_of("a", 1, b"k"), None, "another instance");
        assert_eq!(last.bytes_of("b", 0, b"k"), None, "another agent");
        assert_eq!(last.bytes_of("a", 0, b"kk"), None, "another key");
        last.remember("a", 0, b"kk", None);
        assert_eq!(last.bytes_of("a", 0, b"kk"), Some(None), "absent is known too");
        assert_eq!(last.bytes_of("a", 0, b"k"), None, "one record at a time");
        last.forget();
        assert_eq!(last.bytes_of("a", 0, b"kk"), None);
    }
}
