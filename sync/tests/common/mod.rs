//! Test support: an in-memory node store implementing `Host`, a seeded PRNG, conversation
//! helpers, and a driver that runs two sessions flight by flight.
#![allow(dead_code)] // each test binary uses a different part

pub mod docs;
pub mod store;

#[allow(unused_imports)]
pub use docs::*;
pub use store::*;

use parley_sync::{Config, Record, Session, decode_frame};

/// SplitMix64: tiny, seedable, good enough to drive a simulation reproducibly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.next_u64() % 100 < u64::from(percent)
    }

    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        out
    }
}

/// What one direction of a two-node exchange carried.
#[derive(Default, Debug)]
pub struct Traffic {
    pub frames: usize,
    pub bytes: usize,
    pub records: Vec<Record>,
}

/// Result of running two sessions to quiescence.
#[derive(Default, Debug)]
pub struct Exchange {
    /// Flights in which at least one frame moved (a round trip is two flights).
    pub flights: usize,
    pub a_to_b: Traffic,
    pub b_to_a: Traffic,
}

impl Exchange {
    pub fn bytes(&self) -> usize {
        self.a_to_b.bytes + self.b_to_a.bytes
    }

    pub fn round_trips(&self) -> usize {
        self.flights.div_ceil(2)
    }
}

fn record(traffic: &mut Traffic, frames: &[Vec<u8>]) {
    for f in frames {
        traffic.frames += 1;
        traffic.bytes += f.len();
        traffic
            .records
            .extend(decode_frame(f).expect("engine sent a bad frame").records);
    }
}

/// Connect `a` and `b` with fresh sessions and run flights until nothing moves (or
/// `max_flights`, or until `stop` says so after a flight). Returns the traffic and the
/// sessions (still connected) so a test can continue or drop them.
pub fn connect(
    a: &mut Node,
    b: &mut Node,
    max_flights: usize,
    stop: impl FnMut(&Exchange) -> bool,
) -> (Exchange, Session, Session) {
    connect_with(Config::default(), a, b, max_flights, stop)
}

pub fn connect_with(
    config: Config,
    a: &mut Node,
    b: &mut Node,
    max_flights: usize,
    mut stop: impl FnMut(&Exchange) -> bool,
) -> (Exchange, Session, Session) {
    let mut sa = Session::new(config.clone());
    let mut sb = Session::new(config);
    let mut ex = Exchange::default();
    let mut to_b = sa.start(&mut a.host(&b.name, &b.org)).expect("start a");
    let mut to_a = sb.start(&mut b.host(&a.name, &a.org)).expect("start b");
    while (!to_b.is_empty() || !to_a.is_empty()) && ex.flights < max_flights {
        ex.flights += 1;
        record(&mut ex.a_to_b, &to_b);
        record(&mut ex.b_to_a, &to_a);
        let mut next_to_a = Vec::new();
        for f in to_b.drain(..) {
            next_to_a.extend(
                sb.receive(&f, &mut b.host(&a.name, &a.org))
                    .expect("b receive"),
            );
        }
        let mut next_to_b = Vec::new();
        for f in to_a.drain(..) {
            next_to_b.extend(
                sa.receive(&f, &mut a.host(&b.name, &b.org))
                    .expect("a receive"),
            );
        }
        to_a = next_to_a;
        to_b = next_to_b;
        if stop(&ex) {
            break;
        }
    }
    (ex, sa, sb)
}

/// Doc ids carried by SYNC records.
pub fn synced_docs(records: &[Record]) -> std::collections::BTreeSet<parley_sync::DocId> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Sync { doc, .. } => Some(*doc),
            _ => None,
        })
        .collect()
}

/// Doc ids listed in FEED records.
pub fn announced_docs(records: &[Record]) -> Vec<parley_sync::DocId> {
    records
        .iter()
        .flat_map(|r| match r {
            Record::Feed { entries, .. } => entries.iter().map(|e| e.doc).collect(),
            _ => Vec::new(),
        })
        .collect()
}
