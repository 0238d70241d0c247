//! Seeded network simulation: four nodes of three orgs (a retailer with two sites, two
//! suppliers), random edits, and faults, run until quiescent; then every conversation must be
//! identical on every node of its two orgs and absent (id included) everywhere else.
//!
//! Transport model: like WebSocket over TCP. A connection delivers its frames in order until it
//! is cut. Faults are:
//! - cut: the connection closes, frames in flight are lost, both sessions are dropped;
//! - partition: a cut link stays down for a while;
//! - duplicate: a frame is delivered twice (the engine drops the copy by frame number);
//! - reorder: two frames swap (the engine detects the gap, the session fails with a
//!   `FrameOutOfOrder` error, and the simulation cuts the connection as a real host would);
//! - forgery: a node rewrites a conversation's participants (its peers must reject it);
//! - restart: a node loses every session, keeping only what its host persisted;
//! - write failure: a host write (document, sync state, cursor) fails before writing, the
//!   session ends with a transient `HostError`, and the connection is cut — a crash between
//!   two writes of one call.
//!
//! Interleaving across connections is random, which is where most reordering happens.
//!
//! `PARLEY_SIM_SEEDS=n` runs n seeds (default 200); `PARLEY_SIM_SEED=s` replays one seed;
//! `PARLEY_SIM_STEPS=n` sets the chaos phase to n..2n+100 steps (default 160) for soak runs;
//! `PARLEY_SIM_TRACE=1` prints every delivered frame.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use common::*;
use parley_sync::{Config, DocId, ProtocolError, Record, Session, SessionError, decode_frame};

struct Conn {
    sa: Session,
    sb: Session,
    to_a: VecDeque<Vec<u8>>,
    to_b: VecDeque<Vec<u8>>,
}

struct Link {
    a: usize,
    b: usize,
    conn: Option<Conn>,
    down_until: u64,
}

struct Sim {
    rng: Rng,
    nodes: Vec<Node>,
    links: Vec<Link>,
    /// Every conversation created, with its two orgs.
    registry: BTreeMap<DocId, [String; 2]>,
    /// Conversations a rogue node rewrote, and which nodes did it.
    forged: BTreeMap<DocId, BTreeSet<usize>>,
    step: u64,
    msg_counter: u64,
    /// Frames delivered and REJECT records among them, for the run summary.
    delivered: usize,
    rejects: usize,
    config: Config,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let nodes = vec![
            Node::new("r1", "retailer", 1, 100 + seed),
            Node::new("r2", "retailer", 2, 200 + seed),
            Node::new("s1", "supplier-1", 3, 300 + seed),
            Node::new("s2", "supplier-2", 4, 400 + seed),
        ];
        let mut links = Vec::new();
        for a in 0..nodes.len() {
            for b in a + 1..nodes.len() {
                links.push(Link {
                    a,
                    b,
                    conn: None,
                    down_until: 0,
                });
            }
        }
        let mut rng = Rng::new(seed);
        let mut nodes = nodes;
        for (i, node) in nodes.iter_mut().enumerate() {
            node.write_faults = Some((Rng::new(seed ^ (i as u64 + 1) << 32), 1));
        }
        // Small windows and request caps so paging and flow control are exercised.
        let config = Config {
            window: 1 + rng.below(8),
            max_requests: 1 + rng.below(4),
            max_active_docs: 2 + rng.below(6),
            feed_page: 1 + rng.below(5),
            frame_target_bytes: 512 + rng.below(4096),
            // Not drawn from `rng`, so each seed keeps the scenario it had before this knob.
            requests_per_frame: 1 + (seed % 3) as usize,
            ..Config::default()
        };
        Sim {
            rng,
            nodes,
            links,
            registry: BTreeMap::new(),
            forged: BTreeMap::new(),
            step: 0,
            msg_counter: 0,
            delivered: 0,
            rejects: 0,
            config,
        }
    }

    fn connect(&mut self, li: usize) {
        let (a, b) = (self.links[li].a, self.links[li].b);
        let mut sa = Session::new(self.config.clone());
        let mut sb = Session::new(self.config.clone());
        let (an, ao) = (self.nodes[a].name.clone(), self.nodes[a].org.clone());
        let (bn, bo) = (self.nodes[b].name.clone(), self.nodes[b].org.clone());
        // `start` writes nothing, so injected write failures cannot hit it.
        let to_b = sa.start(&mut self.nodes[a].host(&bn, &bo)).expect("start");
        let to_a = sb.start(&mut self.nodes[b].host(&an, &ao)).expect("start");
        self.links[li].conn = Some(Conn {
            sa,
            sb,
            to_a: to_a.into(),
            to_b: to_b.into(),
        });
    }

    /// Deliver the next frame on link `li` in the given direction.
    fn deliver(&mut self, li: usize, to_b: bool) {
        let link = &mut self.links[li];
        let (recv, send) = if to_b {
            (link.b, link.a)
        } else {
            (link.a, link.b)
        };
        let Some(conn) = link.conn.as_mut() else {
            return;
        };
        let queue = if to_b { &mut conn.to_b } else { &mut conn.to_a };
        let Some(frame) = queue.pop_front() else {
            return;
        };
        self.delivered += 1;
        self.rejects += check_isolation(&self.registry, &mut self.nodes[recv], &frame);
        if std::env::var_os("PARLEY_SIM_TRACE").is_some() {
            trace(&self.nodes[send].name, &self.nodes[recv].name, &frame);
        }
        let (pn, po) = (self.nodes[send].name.clone(), self.nodes[send].org.clone());
        let session = if to_b { &mut conn.sb } else { &mut conn.sa };
        match session.receive(&frame, &mut self.nodes[recv].host(&pn, &po)) {
            Ok(frames) => {
                let back = if to_b { &mut conn.to_a } else { &mut conn.to_b };
                back.extend(frames);
            }
            Err(SessionError::Protocol(ProtocolError::FrameOutOfOrder { .. })) => {
                link.conn = None;
            }
            Err(SessionError::Host(e)) if !e.permanent => link.conn = None,
            Err(e) => panic!("unexpected session error at {}: {e}", self.nodes[recv].name),
        }
        self.notify(recv);
    }

    /// The node's feed may have grown: every session of it gets `local_changed`.
    fn notify(&mut self, n: usize) {
        for link in &mut self.links {
            let Some(conn) = link.conn.as_mut() else {
                continue;
            };
            let (session, out, peer) = if link.a == n {
                (&mut conn.sa, &mut conn.to_b, link.b)
            } else if link.b == n {
                (&mut conn.sb, &mut conn.to_a, link.a)
            } else {
                continue;
            };
            let (pn, po) = (self.nodes[peer].name.clone(), self.nodes[peer].org.clone());
            match session.local_changed(&mut self.nodes[n].host(&pn, &po)) {
                Ok(frames) => out.extend(frames),
                Err(SessionError::Host(e)) if !e.permanent => link.conn = None,
                Err(e) => panic!("unexpected local_changed error: {e}"),
            }
        }
    }

    fn edit(&mut self) {
        let n = self.rng.below(self.nodes.len());
        self.msg_counter += 1;
        let node = &mut self.nodes[n];
        let existing: Vec<DocId> = node.docs.keys().copied().collect();
        if existing.is_empty() || self.rng.chance(30) {
            let partner = match node.org.as_str() {
                "retailer" => ["supplier-1", "supplier-2"][self.rng.below(2)],
                _ => "retailer",
            };
            let id = DocId(self.rng.bytes16());
            node.create(id, partner, "topic");
            self.registry
                .insert(id, [node.org.clone(), partner.to_owned()]);
        } else if self.rng.chance(3) {
            // A rogue write: peers must refuse it and keep syncing everything else.
            let id = existing[self.rng.below(existing.len())];
            node.forge(id);
            self.forged.entry(id).or_default().insert(n);
        } else {
            let id = existing[self.rng.below(existing.len())];
            let msg = format!("{}-{}", node.name, self.msg_counter);
            node.append(id, &msg, "body");
        }
        self.notify(n);
    }

    fn busy_queues(&self) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        for (i, l) in self.links.iter().enumerate() {
            if let Some(c) = &l.conn {
                if !c.to_b.is_empty() {
                    out.push((i, true));
                }
                if !c.to_a.is_empty() {
                    out.push((i, false));
                }
            }
        }
        out
    }

    fn chaos_step(&mut self) {
        self.step += 1;
        let roll = self.rng.below(1000);
        let busy = self.busy_queues();
        match roll {
            0..=599 if !busy.is_empty() => {
                let (li, to_b) = busy[self.rng.below(busy.len())];
                self.deliver(li, to_b);
            }
            600..=699 => self.edit(),
            700..=729 => {
                let li = self.rng.below(self.links.len());
                self.links[li].conn = None;
            }
            730..=739 => {
                let li = self.rng.below(self.links.len());
                self.links[li].conn = None;
                self.links[li].down_until = self.step + 50 + self.rng.below(200) as u64;
            }
            740..=759 if !busy.is_empty() => {
                let (li, to_b) = busy[self.rng.below(busy.len())];
                if let Some(c) = self.links[li].conn.as_mut() {
                    let q = if to_b { &mut c.to_b } else { &mut c.to_a };
                    if let Some(f) = q.front().cloned() {
                        q.push_front(f);
                    }
                }
            }
            760..=769 if !busy.is_empty() => {
                let (li, to_b) = busy[self.rng.below(busy.len())];
                if let Some(c) = self.links[li].conn.as_mut() {
                    let q = if to_b { &mut c.to_b } else { &mut c.to_a };
                    if q.len() >= 2 {
                        q.swap(0, 1);
                    }
                }
            }
            770..=774 => {
                let n = self.rng.below(self.nodes.len());
                for l in &mut self.links {
                    if l.a == n || l.b == n {
                        l.conn = None;
                    }
                }
            }
            _ => {
                let li = self.rng.below(self.links.len());
                if self.links[li].conn.is_none() && self.links[li].down_until <= self.step {
                    self.connect(li);
                }
            }
        }
    }

    /// No more edits or faults: connect everything and deliver until nothing moves.
    fn heal(&mut self) {
        for node in &mut self.nodes {
            node.write_faults = None;
        }
        let mut steps = 0;
        loop {
            // Frames reordered before the heal can still cut a connection; reconnect it.
            for li in 0..self.links.len() {
                if self.links[li].conn.is_none() {
                    self.connect(li);
                }
            }
            let busy = self.busy_queues();
            if busy.is_empty() {
                break;
            }
            let (li, to_b) = busy[self.rng.below(busy.len())];
            self.deliver(li, to_b);
            steps += 1;
            assert!(steps < 20_000, "did not quiesce");
        }
    }

    fn assert_converged(&self) {
        let no_forgers = Default::default();
        for (doc, orgs) in &self.registry {
            let forgers = self.forged.get(doc).unwrap_or(&no_forgers);
            let mut honest = Vec::new();
            for (i, node) in self.nodes.iter().enumerate() {
                let held = node.heads(*doc);
                if !orgs.contains(&node.org) {
                    assert!(
                        held.is_none(),
                        "{} holds {doc} it is not party to",
                        node.name
                    );
                } else if !forgers.contains(&i) {
                    // A forger's copy diverges by design; everyone else must refuse its
                    // rewrite and still agree with each other.
                    honest.push((node, held));
                }
            }
            let holders = honest.iter().filter(|(_, h)| h.is_some()).count();
            if holders == 0 && !forgers.is_empty() {
                continue; // forged before anyone else saw it: refused at creation
            }
            let first = &honest[0].1;
            for (node, held) in &honest {
                assert!(held.is_some(), "{} lacks {doc}", node.name);
                assert_eq!(held, first, "{} differs on {doc}", node.name);
                let (_, parts) = participants(&node.load(*doc).expect("held")).expect("valid");
                assert!(
                    !parts.iter().any(|p| p == "intruder"),
                    "{} accepted a forged participants list on {doc}",
                    node.name
                );
            }
        }
        for link in &self.links {
            let c = link.conn.as_ref().expect("healed");
            for s in [&c.sa, &c.sb] {
                let p = s.progress();
                assert_eq!(p.docs_to_fetch, 0, "stuck pending documents: {p:?}");
                assert_eq!(p.docs_awaiting_peer, 0, "unconfirmed announcements: {p:?}");
                assert!(p.initial_sync_complete, "catch-up not complete: {p:?}");
            }
        }
    }
}

/// Every doc id in a frame must belong to a conversation the receiving node's org is party to.
/// Returns the number of REJECT records.
fn check_isolation(
    registry: &BTreeMap<DocId, [String; 2]>,
    node: &mut Node,
    frame: &[u8],
) -> usize {
    let frame = decode_frame(frame).expect("engine sent an undecodable frame");
    let rejects = frame
        .records
        .iter()
        .filter(|r| matches!(r, Record::Reject { .. }))
        .count();
    for r in frame.records {
        let ids = match r {
            Record::Feed { entries, .. } => entries.into_iter().map(|e| e.doc).collect(),
            Record::Sync { doc, .. } | Record::Unavailable { doc } | Record::Reject { doc, .. } => {
                vec![doc]
            }
            _ => Vec::new(),
        };
        for id in ids {
            let orgs = registry.get(&id).expect("unknown doc id on the wire");
            assert!(
                orgs.contains(&node.org),
                "{} received id {id} of a conversation between {orgs:?}",
                node.name
            );
            node.seen_ids.insert(id);
        }
    }
    rejects
}

/// One line per frame, for replaying a failing seed with `PARLEY_SIM_TRACE=1`.
fn trace(from: &str, to: &str, frame: &[u8]) {
    let frame = decode_frame(frame).expect("decodable");
    let parts: Vec<String> = frame
        .records
        .iter()
        .map(|r| match r {
            Record::Hello {
                feed_high,
                cursor_seq,
                ..
            } => format!("HELLO(high {feed_high}, cursor {cursor_seq})"),
            Record::Feed { from, to, entries } => format!("FEED({from},{to}] x{}", entries.len()),
            Record::Ack { cursor } => format!("ACK {cursor}"),
            Record::Sync { doc, message } => {
                let m = automerge::sync::Message::decode(message).expect("sync message");
                format!(
                    "SYNC {} {}B heads {} changes {} need {}",
                    &doc.to_string()[..8],
                    message.len(),
                    m.heads.len(),
                    m.changes.len(),
                    m.need.len()
                )
            }
            Record::Unavailable { doc } => format!("UNAVAILABLE {}", &doc.to_string()[..8]),
            Record::BlobWant { from, count, .. } => format!("BLOB_WANT {from}+{count}"),
            Record::BlobChunk { index, bytes, .. } => {
                format!("BLOB_CHUNK {index} {}B", bytes.len())
            }
            Record::BlobNone { .. } => "BLOB_NONE".to_string(),
            Record::Reject { doc, reason } => format!("REJECT {} {reason}", &doc.to_string()[..8]),
        })
        .collect();
    eprintln!("{from}->{to} #{}: {}", frame.seq, parts.join("; "));
}

fn run(seed: u64) -> (usize, usize) {
    let mut sim = Sim::new(seed);
    let base: usize = std::env::var("PARLEY_SIM_STEPS")
        .ok()
        .map(|s| s.parse().expect("PARLEY_SIM_STEPS must be a number"))
        .unwrap_or(160);
    let steps = base + sim.rng.below(base + 100);
    for _ in 0..steps {
        sim.chaos_step();
    }
    sim.heal();
    sim.assert_converged();
    (sim.delivered, sim.rejects)
}

#[test]
fn simulation_converges_and_isolates() {
    let seeds: Vec<u64> = match std::env::var("PARLEY_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("PARLEY_SIM_SEED must be a number")],
        Err(_) => {
            let n: u64 = std::env::var("PARLEY_SIM_SEEDS")
                .ok()
                .map(|s| s.parse().expect("PARLEY_SIM_SEEDS must be a number"))
                .unwrap_or(200);
            (0..n).collect()
        }
    };
    let started = std::time::Instant::now();
    let (mut frames, mut rejects) = (0, 0);
    let count = seeds.len();
    for seed in seeds {
        match std::panic::catch_unwind(|| run(seed)) {
            Ok((f, r)) => {
                frames += f;
                rejects += r;
            }
            Err(_) => {
                panic!("simulation failed for seed {seed}; replay with PARLEY_SIM_SEED={seed}")
            }
        }
    }
    eprintln!(
        "simulation: {count} seeds, {frames} frames delivered, {rejects} rejects, {:?}",
        started.elapsed()
    );
}
