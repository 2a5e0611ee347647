//! The fifth scenario, beyond ADR-0017's four: contract-net rounds at
//! scale, through the example agents of real toolchains (Rust SDK):
//! `cn-manager-K` (examples/rust/manager) and `cn-bidder-N`
//! (examples/rust/bidder).
//!
//! Round `seq` goes to manager `seq mod managers` as "r<seq> DEADLINE
//! BIDDERS", with `reply_with` = `seq + 1`. The manager sends `cfp` to
//! each bidder, awards the lowest price, and answers once, when the
//! winner has informed it. A round is timed from its scheduled start to
//! that answer (open loop, as the other scenarios). The right answer is
//! known in advance: the bidders' prices are a function of their names
//! and the task ([`caxton_testkit::contract_net::price`]). So the run
//! proves every round ended (none lost, hung past the drain), none ended
//! twice (duplicates), and each with the right winner (errors).

use caxton_shards::envelope::{Header, Message};
use caxton_testkit::contract_net::{clean_round_summary, price};

use crate::scenario::Schedule;
use crate::wire::WireWriter;
use crate::workload::{choice, Answer, Workload};

/// The manager's answer to its caller (`inform`).
const INFORM: u8 = 1;

pub struct ContractNet {
    managers: Vec<String>,
    bidders: Vec<String>,
    per_round: usize,
    deadline_ms: u64,
    schedule: Schedule,
}

impl ContractNet {
    pub fn new(managers: usize, bidders: usize, per_round: usize, deadline_ms: u64, schedule: Schedule) -> ContractNet {
        assert!(managers >= 1 && per_round >= 1 && per_round <= bidders, "{per_round} of {bidders} bidders a round");
        ContractNet { managers: (0..managers).map(manager_name).collect(), bidders: (0..bidders).map(bidder_name).collect(), per_round, deadline_ms, schedule }
    }

    /// The bidders of round `seq`: `per_round` neighbours from a point
    /// chosen by `seq`.
    fn bidders_of(&self, seq: u64) -> impl Iterator<Item = &str> {
        let start = choice(seq, 3) as usize % self.bidders.len();
        (0..self.per_round).map(move |i| self.bidders[(start + i) % self.bidders.len()].as_str())
    }

    /// What the manager must answer for round `seq`.
    pub fn expected(&self, seq: u64) -> String {
        let task = format!("r{seq}");
        let (p, winner) = self.bidders_of(seq).map(|b| (price(b, &task), b)).min().expect("a round has bidders");
        clean_round_summary(winner, p)
    }
}

pub fn manager_name(k: usize) -> String {
    format!("cn-manager-{k}")
}

pub fn bidder_name(n: usize) -> String {
    format!("cn-bidder-{n}")
}

impl Workload for ContractNet {
    fn send(&self, w: &mut WireWriter, seq: u64, _scheduled_ns: u64) -> std::io::Result<()> {
        let manager = &self.managers[(seq % self.managers.len() as u64) as usize];
        let list: Vec<&str> = self.bidders_of(seq).collect();
        let content = format!("r{seq} {} {}", self.deadline_ms, list.join(","));
        let header = Header { reply_with: seq + 1, conversation_id: seq + 1, ..Header::default() };
        w.send(&header, manager.as_bytes(), content.as_bytes())
    }

    fn answer(&self, m: &Message, base_ns: u64) -> Answer {
        let Some(seq) = m.in_reply_to().checked_sub(1) else { return Answer::Unreadable("an answer to nothing".into()) };
        let content = String::from_utf8_lossy(m.content());
        if m.performative() != INFORM {
            return Answer::Wrong { seq, why: format!("{} from {}: {content}", m.performative(), String::from_utf8_lossy(m.sender())) };
        }
        let expected = self.expected(seq);
        if content != expected {
            return Answer::Wrong { seq, why: format!("round {seq}: {content:?}, not {expected:?}") };
        }
        Answer::Right { seq, scheduled_ns: base_ns + self.schedule.time_of(seq).as_nanos() as u64 }
    }
}
