//! Admission for restart storms. When a hub restarts, every partner node redials within
//! seconds. Two limits keep that from swamping it:
//!
//! - **upgrades per second**: a token bucket in front of `GET /api/v1/sync`. Beyond the rate a
//!   dialer is answered `503` with `Retry-After` before its proof is checked or anything is
//!   read, and comes back later (its backoff spreads the retries).
//! - **first syncs at once**: a link whose peer is far behind this node's feed, or whose feed
//!   this node is far behind, exchanges many documents. At most `first_syncs` such links run
//!   at once; the others keep their WebSocket open (pings go on) and wait their turn before
//!   their session exchanges anything past HELLO. A reconnect with little to do never waits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// The `[sync]` limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most links doing a first sync at once.
    pub first_syncs: usize,
    /// Sync upgrades accepted per second, on average.
    pub accept_per_second: u32,
    /// Upgrades accepted at once after a quiet spell.
    pub accept_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            first_syncs: 4,
            accept_per_second: 200,
            accept_burst: 400,
        }
    }
}

/// Feed positions behind after which a link counts as a first sync. Positions are those of
/// the feed the peer reads (a partner's own feed counts only what is shared with it), so this
/// is about as many conversations to look at.
pub const FIRST_SYNC_GAP: u64 = 1_000;

/// How long a first sync waits for its turn at most. Two nodes that both have more first
/// syncs than turns could otherwise each hold a turn for a link whose other end waits for one;
/// past this the link goes ahead, and says so.
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// Where a link's peer and this node stand in each other's feeds, at HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The feed the peer reads here: its id and end.
    pub our_feed: (u64, u64),
    /// The peer's cursor into that feed (its HELLO).
    pub peer_cursor: (u64, u64),
    /// The peer's feed: its id and end (its HELLO).
    pub their_feed: (u64, u64),
    /// This node's cursor into the peer's feed, if it has one.
    pub our_cursor: Option<(u64, u64)>,
}

/// Whether reading a non-empty `feed` from `cursor` on is a first sync: no cursor, a cursor
/// into another incarnation or past the end (the engine starts those again at 0: the reader
/// holds nothing it can name), or more than [`FIRST_SYNC_GAP`] positions to catch up.
fn far_behind((feed_id, high): (u64, u64), cursor: Option<(u64, u64)>) -> bool {
    if high == 0 {
        return false;
    }
    match cursor {
        Some((id, seq)) if id == feed_id && seq <= high => high - seq > FIRST_SYNC_GAP,
        _ => true,
    }
}

impl Standing {
    /// A first sync: either side holds nothing it can name of the other's feed, or has more
    /// than [`FIRST_SYNC_GAP`] positions of it to catch up on.
    pub fn is_first_sync(&self) -> bool {
        far_behind(self.our_feed, Some(self.peer_cursor))
            || far_behind(self.their_feed, self.our_cursor)
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Upgrades refused in the current second and in the one before it: how many dialers are
    /// coming back, which sets how far apart they are told to come.
    refused: u64,
    refused_before: u64,
    second: Instant,
}

/// The longest `Retry-After` said.
const MAX_RETRY_AFTER_SECS: u64 = 30;

pub struct Admission {
    limits: Limits,
    bucket: Mutex<Bucket>,
    turns: Arc<Semaphore>,
    /// Links waiting for a turn: ticket -> peer. Tickets rise, so the first is the next.
    waiting: Mutex<BTreeMap<u64, Uuid>>,
    next_ticket: std::sync::atomic::AtomicU64,
}

/// A first sync's turn; the next waiting link goes when it is dropped.
pub struct Turn {
    _permit: Option<OwnedSemaphorePermit>,
}

/// Takes a link off the waiting list however its wait ends (turn, cut, timeout).
struct Waiting<'a> {
    admission: &'a Admission,
    ticket: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.admission.waiting.lock() {
            w.remove(&self.ticket);
        }
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            bucket: Mutex::new(Bucket {
                tokens: limits.accept_burst as f64,
                at: Instant::now(),
                refused: 0,
                refused_before: 0,
                second: Instant::now(),
            }),
            turns: Arc::new(Semaphore::new(limits.first_syncs)),
            waiting: Mutex::default(),
            next_ticket: Default::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one upgrade from the bucket, or says how long to wait (whole seconds, as
    /// `Retry-After` says it). The wait grows with the dialers refused lately: told to come
    /// back after `w` seconds, each waits between `w` and `2w` (`dial::after`), so with `w`
    /// about the refusals of a second over the rate, they return at about the rate the node
    /// takes instead of all at once every second (and each refusal costs the node a hello).
    pub fn try_accept(&self) -> Result<(), Duration> {
        let rate = self.limits.accept_per_second.max(1) as f64;
        let burst = self.limits.accept_burst.max(1) as f64;
        let Ok(mut b) = self.bucket.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        if now.duration_since(b.second) >= Duration::from_secs(1) {
            b.refused_before = if now.duration_since(b.second) >= Duration::from_secs(2) {
                0
            } else {
                b.refused
            };
            b.refused = 0;
            b.second = now;
        }
        b.refused += 1;
        let lately = b.refused.max(b.refused_before) as f64;
        let wait = ((1.0 - b.tokens) / rate).max(lately / rate).ceil() as u64;
        Err(Duration::from_secs(wait.clamp(1, MAX_RETRY_AFTER_SECS)))
    }

    /// Waits for a first-sync turn for `peer`'s link (at most [`MAX_WAIT`]).
    pub async fn turn(&self, peer: Uuid) -> Turn {
        if let Ok(p) = self.turns.clone().try_acquire_owned() {
            return Turn { _permit: Some(p) };
        }
        let ticket = self
            .next_ticket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(ticket, peer);
        }
        let _waiting = Waiting {
            admission: self,
            ticket,
        };
        tracing::info!(%peer, first_syncs = self.limits.first_syncs, "first sync waits its turn");
        match tokio::time::timeout(MAX_WAIT, self.turns.clone().acquire_owned()).await {
            Ok(Ok(p)) => Turn { _permit: Some(p) },
            _ => {
                tracing::warn!(%peer, waited_secs = MAX_WAIT.as_secs(), "first sync going ahead without a turn after waiting");
                Turn { _permit: None }
            }
        }
    }

    /// While `peer`'s first sync waits for a turn: its place in the line (1 = next).
    pub fn place(&self, peer: Uuid) -> Option<u64> {
        let w = self.waiting.lock().ok()?;
        w.values().position(|p| *p == peer).map(|i| i as u64 + 1)
    }

    /// How many first syncs wait for a turn.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().map(|w| w.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_a_first_sync() {
        let fresh = Standing {
            our_feed: (7, 5000),
            peer_cursor: (0, 0),
            their_feed: (9, 0),
            our_cursor: None,
        };
        assert!(
            fresh.is_first_sync(),
            "a peer holding nothing of a long feed"
        );
        let current = Standing {
            peer_cursor: (7, 4990),
            ..fresh
        };
        assert!(!current.is_first_sync(), "ten changes behind");
        let other_incarnation = Standing {
            peer_cursor: (8, 4990),
            ..fresh
        };
        assert!(
            other_incarnation.is_first_sync(),
            "a cursor into a rebuilt feed"
        );
        let past_end = Standing {
            peer_cursor: (7, 9000),
            ..fresh
        };
        assert!(
            past_end.is_first_sync(),
            "a cursor past the end restarts at 0"
        );
        let short = Standing {
            our_feed: (7, 20),
            peer_cursor: (7, 0),
            ..fresh
        };
        assert!(!short.is_first_sync(), "twenty changes to send");
        let small_but_new = Standing {
            our_feed: (7, 2),
            ..fresh
        };
        assert!(
            small_but_new.is_first_sync(),
            "a peer with no cursor at all"
        );
        let empty = Standing {
            our_feed: (7, 0),
            ..fresh
        };
        assert!(!empty.is_first_sync(), "nothing on either side");
        let they_have_much = Standing {
            their_feed: (9, 80_000),
            our_cursor: Some((9, 100)),
            ..current
        };
        assert!(they_have_much.is_first_sync(), "far behind in their feed");
        let we_hold_theirs = Standing {
            their_feed: (9, 80_000),
            our_cursor: Some((9, 79_999)),
            ..current
        };
        assert!(!we_hold_theirs.is_first_sync());
    }

    #[test]
    fn the_bucket_refuses_past_the_burst_and_refills() {
        let a = Admission::new(Limits {
            first_syncs: 1,
            accept_per_second: 1000,
            accept_burst: 5,
        });
        for _ in 0..5 {
            assert!(a.try_accept().is_ok());
        }
        let wait = a.try_accept().unwrap_err();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2));
        // A crowd refused in one second is told to spread out over the time the node needs.
        let crowd = Admission::new(Limits {
            first_syncs: 1,
            accept_per_second: 100,
            accept_burst: 1,
        });
        assert!(crowd.try_accept().is_ok());
        let waits: Vec<Duration> = (0..1000).map(|_| crowd.try_accept().unwrap_err()).collect();
        assert_eq!(waits[0], Duration::from_secs(1));
        assert_eq!(
            waits[999],
            Duration::from_secs(10),
            "1000 refused at 100/s: 10 s"
        );
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        std::thread::sleep(Duration::from_millis(20));
        assert!(a.try_accept().is_ok(), "1000/s refills one within 20 ms");
    }

    #[tokio::test]
    async fn first_syncs_take_turns_in_order() {
        let a = Arc::new(Admission::new(Limits {
            first_syncs: 1,
            ..Limits::default()
        }));
        let (p1, p2, p3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let t1 = a.turn(p1).await;
        assert_eq!(a.place(p1), None, "holding a turn is not waiting");
        let (a2, a3) = (a.clone(), a.clone());
        let w2 = tokio::spawn(async move { a2.turn(p2).await });
        while a.place(p2).is_none() {
            tokio::task::yield_now().await;
        }
        let w3 = tokio::spawn(async move { a3.turn(p3).await });
        while a.place(p3).is_none() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            (a.place(p2), a.place(p3), a.waiting()),
            (Some(1), Some(2), 2)
        );
        drop(t1);
        let t2 = w2.await.unwrap();
        assert_eq!(a.place(p2), None);
        assert_eq!(a.place(p3), Some(1));
        drop(t2);
        let _t3 = w3.await.unwrap();
        assert_eq!(a.waiting(), 0);
    }
}
