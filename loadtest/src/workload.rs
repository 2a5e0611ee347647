//! What a scenario sends and how its answers are checked. The run
//! (`run.rs`) owns timing, windows, loss and duplicate counts; a workload
//! only says what request number `seq` is and which request an answer
//! answers, and whether rightly.
//!
//! - [`Hop`]: ADR-0017's four scenarios: one agent-to-agent hop per
//!   message through `agents/hop.wat` (`lt-N`); and its variants, with a
//!   state write on every message (`hop_state.wat`) or over two nodes
//!   (`hop_relay.wat`, which relays the answer through the first agent).
//! - [`crate::contract_net::ContractNet`]: the fifth, contract-net rounds
//!   through examples/rust/manager and bidder.
//! - [`Conversations`]: hops, and every `hold_every`-th request a
//!   conversation held open `hold_ms` by a durable timer (`agents/hold.wat`).
//! - [`KeyedZipf`]: requests to the keys of one keyed agent, drawn from a
//!   Zipf distribution (`agents/keyed_state.wat`, a state write on each).

use caxton_shards::envelope::{Header, Message};

use crate::wire::WireWriter;

/// What an answer says about the request it answers.
pub enum Answer {
    /// The right answer to request `seq`, whose send was scheduled at
    /// `scheduled_ns` (the run's clock): timed from then.
    Right { seq: u64, scheduled_ns: u64 },
    /// An answer to request `seq` that is wrong (it still ends it).
    Wrong { seq: u64, why: String },
    /// Not an answer to any request: counted as an error.
    Unreadable(String),
}

pub trait Workload: Send + Sync {
    /// Sends request `seq`, scheduled at `scheduled_ns`.
    fn send(&self, w: &mut WireWriter, seq: u64, scheduled_ns: u64) -> std::io::Result<()>;
    /// Reads one answer; `base_ns` is when request 0 was scheduled.
    fn answer(&self, m: &Message, base_ns: u64) -> Answer;
}

/// The generator's choices for request `seq`, a pure function of it
/// (splitmix64), so that the reader can check an answer against them
/// without shared state or a table of every request.
pub fn choice(seq: u64, salt: u64) -> u64 {
    let mut z = seq.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(salt).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The hop agent's scenario: request `seq` goes to a random `lt-A`, which
/// forwards it to another random `lt-B`, which answers `agree` with the
/// sequence number and schedule (`agents/hop.wat`).
pub struct Hop {
    names: Vec<Vec<u8>>,
    /// Take requests only on even-numbered agents (those on the
    /// generator's node, when agents are split over two).
    first_hop_even: bool,
}

/// The hop agent answers with this performative (`agree`).
const HOP_ANSWER: u8 = 7;

impl Hop {
    pub fn new(agents: usize, first_hop_even: bool) -> Hop {
        assert!(agents >= 2, "a hop needs two agents");
        Hop { names: (0..agents).map(|i| format!("lt-{i}").into_bytes()).collect(), first_hop_even }
    }
}

impl Workload for Hop {
    fn send(&self, w: &mut WireWriter, seq: u64, scheduled_ns: u64) -> std::io::Result<()> {
        let n = self.names.len() as u64;
        let a = if self.first_hop_even { (choice(seq, 1) % n.div_ceil(2)) * 2 } else { choice(seq, 1) % n };
        let b = (a + 1 + choice(seq, 2) % (n - 1)) % n;
        let target = &self.names[b as usize];
        let t = target.len();
        let mut content = [0u8; 1 + 64 + 16]; // on the stack: sending allocates nothing
        content[0] = t as u8;
        content[1..1 + t].copy_from_slice(target);
        content[1 + t..9 + t].copy_from_slice(&seq.to_le_bytes());
        content[9 + t..17 + t].copy_from_slice(&scheduled_ns.to_le_bytes());
        w.send(&Header::default(), &self.names[a as usize], &content[..17 + t])
    }

    fn answer(&self, m: &Message, _base_ns: u64) -> Answer {
        let c = m.content();
        if m.performative() != HOP_ANSWER || c.len() < 16 {
            return Answer::Unreadable(format!("performative {} with {} bytes", m.performative(), c.len()));
        }
        let seq = u64::from_le_bytes(c[0..8].try_into().unwrap());
        let scheduled_ns = u64::from_le_bytes(c[8..16].try_into().unwrap());
        Answer::Right { seq, scheduled_ns }
    }
}

/// ADR-0017's active conversations: the hop workload, where every
/// `hold_every`-th request instead opens a conversation that its agent
/// holds for `hold_ms` (a durable timer) before it answers. At `r` requests
/// a second, `r / hold_every × hold_ms / 1000` conversations are open at any
/// time. A held answer is timed from when it fell due (scheduled + hold):
/// its lateness, beside the hops' latency, in the same histogram.
pub struct Conversations {
    hop: Hop,
    hold_ms: u32,
    hold_every: u64,
}

impl Conversations {
    pub fn new(agents: usize, hold_ms: u32, hold_every: u64) -> Conversations {
        assert!(hold_every >= 1 && hold_ms > 0);
        Conversations { hop: Hop::new(agents, false), hold_ms, hold_every }
    }

    fn holds(&self, seq: u64) -> bool {
        seq.is_multiple_of(self.hold_every)
    }
}

impl Workload for Conversations {
    fn send(&self, w: &mut WireWriter, seq: u64, scheduled_ns: u64) -> std::io::Result<()> {
        if !self.holds(seq) {
            return self.hop.send(w, seq, scheduled_ns);
        }
        let a = choice(seq, 1) % self.hop.names.len() as u64;
        let mut content = [0u8; 1 + 4 + 16];
        content[1..5].copy_from_slice(&self.hold_ms.to_le_bytes());
        content[5..13].copy_from_slice(&seq.to_le_bytes());
        content[13..21].copy_from_slice(&scheduled_ns.to_le_bytes());
        w.send(&Header::default(), &self.hop.names[a as usize], &content)
    }

    fn answer(&self, m: &Message, base_ns: u64) -> Answer {
        match self.hop.answer(m, base_ns) {
            Answer::Right { seq, scheduled_ns } if self.holds(seq) => Answer::Right { seq, scheduled_ns: scheduled_ns + u64::from(self.hold_ms) * 1_000_000 },
            other => other,
        }
    }
}

/// Issue 27's keyed scenario: request `seq` goes to key `kz/k<rank>`, the
/// rank drawn from Zipf(s = 1) over `keys` keys (so the first key gets
/// about 1/H(keys) of the traffic, 7% for a million, and most keys are
/// seldom seen); the key's activation writes its state and answers
/// `agree` with [seq][scheduled].
pub struct KeyedZipf {
    keys: u64,
    /// H(k) = sum of 1/i for i <= k, exact up to [`ZIPF_TABLE`].
    harmonic: Vec<f64>,
    harmonic_all: f64,
}

/// Ranks whose cumulative weight is tabled; past it, H(k) ~ ln k + gamma
/// + 1/(2k) is within 1e-9.
const ZIPF_TABLE: usize = 10_000;
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// The keyed type the scenario deploys.
pub const KEYED_TYPE: &str = "kz";

impl KeyedZipf {
    pub fn new(keys: u64, s: f64) -> KeyedZipf {
        assert!(keys >= 1);
        assert!((s - 1.0).abs() < 1e-9, "only s = 1 is drawn exactly (scenarios.yaml says 1.0)");
        let mut harmonic = Vec::with_capacity(ZIPF_TABLE + 1);
        let mut h = 0.0;
        harmonic.push(0.0);
        for k in 1..=ZIPF_TABLE.min(keys as usize) {
            h += 1.0 / k as f64;
            harmonic.push(h);
        }
        KeyedZipf { keys, harmonic_all: Self::h(keys, &harmonic), harmonic }
    }

    fn h(k: u64, table: &[f64]) -> f64 {
        match table.get(k as usize) {
            Some(&h) => h,
            None => (k as f64).ln() + EULER_GAMMA + 1.0 / (2.0 * k as f64),
        }
    }

    /// The rank (1-based) whose cumulative weight first reaches `u` of the
    /// whole, `u` in [0, 1).
    pub fn rank(&self, u: f64) -> u64 {
        let target = u * self.harmonic_all;
        if target <= *self.harmonic.last().unwrap() {
            return self.harmonic.partition_point(|&h| h < target).max(1) as u64;
        }
        // Past the table: invert the approximation, then step to the exact edge.
        let mut k = ((target - EULER_GAMMA).exp() as u64).clamp(self.harmonic.len() as u64, self.keys);
        while k > 1 && Self::h(k - 1, &self.harmonic) >= target {
            k -= 1;
        }
        while k < self.keys && Self::h(k, &self.harmonic) < target {
            k += 1;
        }
        k
    }
}

impl Workload for KeyedZipf {
    fn send(&self, w: &mut WireWriter, seq: u64, scheduled_ns: u64) -> std::io::Result<()> {
        let u = (choice(seq, 3) >> 11) as f64 / (1u64 << 53) as f64;
        let rank = self.rank(u);
        let mut receiver = [0u8; 32]; // on the stack: sending allocates nothing
        let n = {
            use std::io::Write;
            let mut at = &mut receiver[..];
            write!(at, "{KEYED_TYPE}/k{rank}").expect("fits");
            32 - at.len()
        };
        let mut content = [0u8; 16];
        content[..8].copy_from_slice(&seq.to_le_bytes());
        content[8..].copy_from_slice(&scheduled_ns.to_le_bytes());
        w.send(&Header::default(), &receiver[..n], &content)
    }

    fn answer(&self, m: &Message, _base_ns: u64) -> Answer {
        let c = m.content();
        if m.performative() != HOP_ANSWER || c.len() != 16 {
            return Answer::Unreadable(format!("performative {} with {} bytes", m.performative(), c.len()));
        }
        Answer::Right { seq: u64::from_le_bytes(c[0..8].try_into().unwrap()), scheduled_ns: u64::from_le_bytes(c[8..16].try_into().unwrap()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_ranks_follow_one_over_k() {
        let z = KeyedZipf::new(1_000_000, 1.0);
        assert_eq!(z.rank(0.0), 1);
        let n = 200_000u64;
        let mut first = 0;
        let mut tenth = 0;
        let mut past_table = 0;
        for i in 0..n {
            let r = z.rank((choice(i, 3) >> 11) as f64 / (1u64 << 53) as f64);
            assert!((1..=1_000_000).contains(&r));
            first += u64::from(r == 1);
            tenth += u64::from(r == 10);
            past_table += u64::from(r > ZIPF_TABLE as u64);
        }
        let h = z.harmonic_all;
        let near = |got: u64, p: f64| ((got as f64 / n as f64) - p).abs() < p * 0.1 + 0.002;
        assert!(near(first, 1.0 / h), "rank 1: {first} of {n}, expected {:.4}", 1.0 / h);
        assert!(near(tenth, 0.1 / h), "rank 10: {tenth}");
        let tail = (h - KeyedZipf::h(ZIPF_TABLE as u64, &z.harmonic)) / h;
        assert!(near(past_table, tail), "past the table: {past_table}, expected {tail:.3}");
        assert_eq!(z.rank(0.999_999_999_9), 1_000_000);
    }
}
