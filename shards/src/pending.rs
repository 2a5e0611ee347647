//! Places for connections that have not yet said who they are: a link in
//! its handshake, a wire connection before its hello, an API connection
//! before its first request head (and its TLS handshake).
//!
//! A peer without the key or token costs nothing to make such a connection,
//! so these places are the ones a keyless peer can fill. Each listener keeps
//! a bounded pool of them, apart from the places of authenticated
//! connections, and shares it out:
//!
//! Rules:
//! 1. The pool holds at most `max` connections; past it a new one is
//!    refused at once (closed, counted).
//! 2. One source address holds at most `per_source_max` of them, unless it
//!    is a known member (gossip knows a node at that address): then only
//!    the pool bounds it. So one keyless source cannot hold more than its
//!    share, however fast it reconnects.
//! 3. `reserved` places are kept for known members: sources that are not
//!    members together hold at most `max - reserved`. Many keyless
//!    sources together cannot lock members out.
//! 4. A place is given back when its connection proves itself or ends; the
//!    count per source is then forgotten when it reaches zero, so the map
//!    never holds more entries than places in use (bounded by `max`).
//! 5. A listener also bounds how long a connection may stay silent before
//!    its first byte (its own constant in `limits`), far shorter than the
//!    whole handshake's bound: a silent connection frees its place fast.

use std::collections::HashMap;
use std::net::IpAddr;

/// Why a connection got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPlace {
    /// The pool is full (rule 1), or its unreserved part is (rule 3).
    Full,
    /// Its source holds its share already (rule 2).
    PerSource,
}

impl NoPlace {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            NoPlace::Full => "pending",
            NoPlace::PerSource => "pending_per_source",
        }
    }
}

/// A listener's places for unauthenticated connections.
#[derive(Debug)]
pub struct PendingPlaces {
    max: usize,
    per_source_max: usize,
    reserved: usize,
    /// Places held, all sources, and those held by sources not members.
    held: usize,
    held_by_strangers: usize,
    by_source: HashMap<IpAddr, u32>,
}

/// How a listener shares its places (rules 1 to 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    pub max: usize,
    pub per_source_max: usize,
    /// Kept for known members; 0 where there are none (API, wire).
    pub reserved: usize,
}

impl PendingPlaces {
    pub fn new(limits: PendingLimits) -> PendingPlaces {
        assert!(limits.max > 0 && limits.per_source_max > 0, "a listener has places");
        assert!(limits.reserved < limits.max, "some places are open to strangers");
        PendingPlaces {
            max: limits.max,
            per_source_max: limits.per_source_max,
            reserved: limits.reserved,
            held: 0,
            held_by_strangers: 0,
            by_source: HashMap::new(),
        }
    }

    /// Takes a place for a connection from `source` (rules 1 to 3).
    pub fn take(&mut self, source: IpAddr, member: bool) -> Result<(), NoPlace> {
        if self.held >= self.max {
            return Err(NoPlace::Full);
        }
        let from_source = self.by_source.get(&source).copied().unwrap_or(0) as usize;
        if !member {
            if from_source >= self.per_source_max {
                return Err(NoPlace::PerSource);
            }
            if self.held_by_strangers >= self.max - self.reserved {
                return Err(NoPlace::Full);
            }
            self.held_by_strangers += 1;
        }
        *self.by_source.entry(source).or_insert(0) += 1;
        self.held += 1;
        debug_assert!(self.by_source.len() <= self.held && self.held_by_strangers <= self.held);
        Ok(())
    }

    /// Gives back a place `take` gave (rule 4); `member` as it was then.
    pub fn give_back(&mut self, source: IpAddr, member: bool) {
        let count = self.by_source.get_mut(&source).expect("a place was taken for this source");
        *count -= 1;
        if *count == 0 {
            self.by_source.remove(&source);
        }
        self.held -= 1;
        if !member {
            self.held_by_strangers -= 1;
        }
        assert!(self.by_source.len() <= self.held && self.held_by_strangers <= self.held);
    }

    /// Places held now.
    pub fn held(&self) -> usize {
        self.held
    }
}

/// A place taken from places shared between tasks (the API's and the wire
/// listener's); dropping it gives the place back (rule 4).
#[derive(Debug)]
pub struct PendingPlace {
    places: std::sync::Arc<std::sync::Mutex<PendingPlaces>>,
    source: IpAddr,
}

impl PendingPlace {
    /// Takes a place for a connection from `source`, which is no member
    /// (these listeners have none).
    pub fn take(places: &std::sync::Arc<std::sync::Mutex<PendingPlaces>>, source: IpAddr) -> Result<PendingPlace, NoPlace> {
        places.lock().unwrap_or_else(|e| e.into_inner()).take(source, false)?;
        Ok(PendingPlace { places: places.clone(), source })
    }
}

impl Drop for PendingPlace {
    fn drop(&mut self) {
        self.places.lock().unwrap_or_else(|e| e.into_inner()).give_back(self.source, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_source_holds_its_share_and_strangers_leave_the_reserve_to_members() {
        let mut p = PendingPlaces::new(PendingLimits { max: 8, per_source_max: 2, reserved: 4 });
        assert_eq!(p.take(ip(1), false), Ok(()));
        assert_eq!(p.take(ip(1), false), Ok(()));
        assert_eq!(p.take(ip(1), false), Err(NoPlace::PerSource), "rule 2");
        assert_eq!(p.take(ip(2), false), Ok(()));
        assert_eq!(p.take(ip(3), false), Ok(()));
        assert_eq!(p.take(ip(4), false), Err(NoPlace::Full), "rule 3: four strangers' places only");
        for _ in 0..4 {
            assert_eq!(p.take(ip(9), true), Ok(()), "a member is not held to a source's share");
        }
        assert_eq!(p.take(ip(9), true), Err(NoPlace::Full), "rule 1");
        p.give_back(ip(1), false);
        assert_eq!(p.take(ip(5), false), Ok(()), "a place given back is free again");
        for (source, member) in [(1, false), (2, false), (3, false), (5, false), (9, true), (9, true), (9, true), (9, true)] {
            p.give_back(ip(source), member);
        }
        assert_eq!(p.held(), 0);
        assert!(p.by_source.is_empty(), "rule 4: nothing is kept for sources with no place");
    }

    #[test]
    fn a_shared_place_is_given_back_when_dropped() {
        let places = std::sync::Arc::new(std::sync::Mutex::new(PendingPlaces::new(PendingLimits { max: 2, per_source_max: 1, reserved: 0 })));
        let first = PendingPlace::take(&places, ip(1)).unwrap();
        assert_eq!(PendingPlace::take(&places, ip(1)).unwrap_err(), NoPlace::PerSource);
        drop(first);
        let _again = PendingPlace::take(&places, ip(1)).unwrap();
        assert_eq!(places.lock().unwrap().held(), 1);
    }

    #[test]
    fn a_flood_of_reconnects_never_grows_the_map() {
        let mut p = PendingPlaces::new(PendingLimits { max: 64, per_source_max: 4, reserved: 32 });
        for round in 0..10_000u32 {
            let source = IpAddr::from(round.to_be_bytes());
            if p.take(source, false).is_ok() && round % 3 != 0 {
                p.give_back(source, false);
            }
            assert!(p.by_source.len() <= 32);
        }
    }
}
