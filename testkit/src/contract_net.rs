//! What examples/rust/bidder bids, so that a test or the load test knows
//! who should win a contract-net round. A copy of `bidder::price` (the
//! bidder is a WebAssembly crate of another workspace); both crates test
//! the same values, so the two cannot drift apart unnoticed.

/// A bidder's price for a task: FNV-1a of "NAME:TASK", mod 1000.
pub fn price(name: &str, task: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([b':']).chain(task.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 1000
}

/// What examples/rust/manager answers its caller when `winner` won at
/// `price` and every other bidder proposed in time.
pub fn clean_round_summary(winner: &str, price: u64) -> String {
    format!("winner={winner} price={price} result=done by {winner} failed= late=")
}

#[cfg(test)]
mod tests {
    #[test]
    fn prices_match_the_bidders() {
        // The same values as examples/rust/bidder's `prices_are_stable`.
        assert_eq!(super::price("bidder-07", "paint"), PAINT_07);
        assert_eq!(super::price("cn-bidder-3", "r42"), R42_3);
    }
    const PAINT_07: u64 = 641;
    const R42_3: u64 = 835;
}
