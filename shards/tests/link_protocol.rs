//! The link table's send-and-acknowledge protocol under generated
//! interleavings of queueing, writing, reading, acknowledging and broken
//! connections (table rules 4 and 5), against a model receiver.
//!
//! Oracle: honest acknowledgements are never refused and never panic,
//! whatever order they arrive in relative to the writes; every accepted
//! message arrives; first arrivals keep the order sent; a message arrives
//! twice only if a connection broke; the table's counts of messages and
//! bytes match what it holds at every step.

use std::collections::VecDeque;

use caxton_shards::envelope::{Header, Message};
use caxton_shards::link::frame::take_frames;
use caxton_shards::link::table::{LinkLimits, RemoteTable};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Queue this many messages (if the outbox takes them).
    Send(u8),
    /// The writer takes the queue (connecting first if needed).
    HandOver,
    /// The writer writes the next frames, up to this many bytes.
    Write(u16),
    /// The receiver reads up to this many bytes, takes the frames, and
    /// acknowledges what it took.
    Read(u16),
    /// The next acknowledgement reaches the sender.
    Ack,
    /// The connection breaks: bytes in flight and acks are lost.
    Break,
    /// The peer acknowledges more than was written.
    BadAck(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..6).prop_map(Op::Send),
        2 => Just(Op::HandOver),
        3 => (1u16..3000).prop_map(Op::Write),
        3 => (1u16..3000).prop_map(Op::Read),
        3 => Just(Op::Ack),
        1 => Just(Op::Break),
        1 => (1u8..10).prop_map(Op::BadAck),
    ]
}

struct Model {
    table: RemoteTable,
    connection: Option<u64>,
    /// Bytes written and not yet read, the receiver's partial frame, its
    /// count of frames taken and the acks on their way back.
    network: VecDeque<u8>,
    partial: Vec<u8>,
    taken: u64,
    acks: VecDeque<u64>,
    next_seq: u32,
    accepted: Vec<u32>,
    received: Vec<u32>,
    broke: bool,
}

fn message(seq: u32) -> Message {
    let header = Header { conversation_id: 7, ..Default::default() };
    let mut content = seq.to_le_bytes().to_vec();
    content.resize(4 + (seq as usize % 5) * 150, 0xab);
    Message::encode(&header, b"a", b"far", &content).unwrap()
}

impl Model {
    fn new() -> Model {
        let limits = LinkLimits { slots_per_node: 1, outbox_messages_max: 40, outbox_bytes_max: 20_000, inbound_messages_max: 1, inbound_bytes_max: 1 };
        let mut table = RemoteTable::new("a:1", limits);
        table.set_node("b:1", "127.0.0.2:7000".parse().unwrap(), true, false);
        Model {
            table,
            connection: None,
            network: VecDeque::new(),
            partial: Vec::new(),
            taken: 0,
            acks: VecDeque::new(),
            next_seq: 0,
            accepted: Vec::new(),
            received: Vec::new(),
            broke: false,
        }
    }

    fn connect(&mut self) {
        if self.connection.is_none() {
            self.connection = Some(self.table.connected(0, 0));
            self.taken = 0;
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Send(k) => {
                for _ in 0..k {
                    let m = message(self.next_seq);
                    if self.table.reserve(0, m.len()).is_ok() {
                        self.table.push(0, m).unwrap();
                        self.accepted.push(self.next_seq);
                    }
                    self.next_seq += 1;
                }
            }
            Op::HandOver => {
                self.connect();
                self.table.hand_over(0, 0);
            }
            Op::Write(max) => {
                if self.connection.is_some() {
                    let mut buf = Vec::new();
                    self.table.next_frames(0, 0, &mut buf, max as usize);
                    self.network.extend(buf);
                }
            }
            Op::Read(max) => {
                let n = (max as usize).min(self.network.len());
                self.partial.extend(self.network.drain(..n));
                let mut frames = Vec::new();
                take_frames(&mut self.partial, &mut frames).expect("the writer writes whole, valid frames");
                if !frames.is_empty() {
                    for m in &frames {
                        self.received.push(u32::from_le_bytes(m.content()[..4].try_into().unwrap()));
                    }
                    self.taken += frames.len() as u64;
                    self.acks.push_back(self.taken);
                }
            }
            Op::Ack => {
                if let (Some(total), Some(c)) = (self.acks.pop_front(), self.connection) {
                    let generation = self.table.node(0).slots[0].generation;
                    self.table.acknowledged(0, 0, generation, c, total).expect("an honest acknowledgement is never refused");
                }
            }
            Op::Break => self.break_connection(),
            Op::BadAck(extra) => {
                if let Some(c) = self.connection {
                    let slot = &self.table.node(0).slots[0];
                    let (generation, bogus) = (slot.generation, slot.written + extra as u64);
                    assert!(self.table.acknowledged(0, 0, generation, c, bogus).is_err(), "an ack past what was written is refused");
                    self.break_connection(); // and the connection closes
                }
            }
        }
        self.check_counts();
    }

    fn break_connection(&mut self) {
        if let Some(c) = self.connection.take() {
            let generation = self.table.node(0).slots[0].generation;
            self.table.broke(0, 0, generation, c);
            assert!(self.table.requeue_unacked(0, 0, u32::MAX).is_empty(), "nothing is given up");
            self.network.clear();
            self.partial.clear();
            self.acks.clear();
            self.broke = true;
        }
    }

    fn check_counts(&self) {
        let node = self.table.node(0);
        let slot = &node.slots[0];
        assert_eq!(node.queued, slot.queue.len() + slot.unacked.len());
        let bytes: usize = slot.queue.iter().chain(slot.unacked.iter()).map(Message::len).sum();
        assert_eq!(self.table.queued_bytes(), bytes);
        assert!(slot.acked <= slot.written && slot.written <= slot.acked + slot.unacked.len() as u64);
    }

    /// Runs the connection until everything is acknowledged.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            if self.table.node(0).queued == 0 {
                return;
            }
            for op in [Op::HandOver, Op::Write(u16::MAX), Op::Read(u16::MAX), Op::Ack, Op::Ack] {
                self.apply(&op);
            }
            while !self.acks.is_empty() {
                self.apply(&Op::Ack);
            }
        }
        panic!("the link never drained");
    }
}

fn config() -> ProptestConfig {
    // `make test`: a fixed seed and a short run; `make fuzz` sets
    // CAXTON_FUZZ_CASES and a seed of its own (CAXTON_FUZZ_SEED).
    caxton_cluster::fuzz::config(256)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn acks_at_any_point_of_any_batch_lose_and_reorder_nothing(ops in prop::collection::vec(op(), 1..200)) {
        let mut m = Model::new();
        for op in &ops {
            m.apply(op);
        }
        m.drain();
        let mut first = Vec::new();
        for &seq in &m.received {
            if !first.contains(&seq) {
                first.push(seq);
            }
        }
        prop_assert_eq!(&first, &m.accepted, "every accepted message, once each, in order");
        if !m.broke {
            prop_assert_eq!(m.received.len(), m.accepted.len(), "no duplicate without a broken connection");
        }
        prop_assert_eq!(m.table.queued_bytes(), 0);
    }
}
