//! The typed handles each part of the node bumps. Cloning one shares its series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// 5 ms … 10 s: an inbox page takes milliseconds, a large upload seconds.
const HTTP_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// 1 ms … 2.5 s: one fsync is about a millisecond; a slow disk shows far to the right.
const COMMIT_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub operation: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

#[derive(Clone, Debug)]
pub struct HttpMetrics {
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) duration: HistogramFamily<OperationLabels>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(http_histogram),
        }
    }
}

impl HttpMetrics {
    /// One answered request. `operation` must come from a fixed set (an operation id or a
    /// route name), never from the request's path.
    pub fn observe(&self, operation: &'static str, method: &'static str, status: u16, secs: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                operation,
                method,
                status,
            })
            .inc();
        self.duration
            .get_or_create(&OperationLabels { operation })
            .observe(secs);
    }
}

/// The label of a request method: the standard ones by name, any other as `other`, so a
/// client inventing methods cannot add series.
pub fn method_label(m: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|k| *k == m).unwrap_or("other")
}

/// What the writer thread reports: commit time, jobs per commit, and the documents it caches.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub(super) commit_seconds: Histogram,
    pub(super) batch_jobs: Histogram,
    pub(super) documents_cached: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            commit_seconds: Histogram::new(COMMIT_BUCKETS),
            // 1, 2, 4, … 512: the writer takes at most 512 jobs per commit.
            batch_jobs: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            documents_cached: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    /// One group commit of `jobs` jobs that took `secs`, after which the writer caches
    /// `cached` documents.
    pub fn commit(&self, secs: f64, jobs: usize, cached: usize) {
        self.commit_seconds.observe(secs);
        self.batch_jobs.observe(jobs as f64);
        self.documents_cached
            .set(i64::try_from(cached).unwrap_or(i64::MAX));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerDirection {
    pub peer: String,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

/// Bytes and refused changes per peer (its node id).
#[derive(Clone, Debug, Default)]
pub struct SyncMetrics {
    pub(super) bytes: Family<PeerDirection, Counter>,
    pub(super) rejected: Family<PeerLabel, Counter>,
    pub(super) wakes: Family<PeerLabel, Counter>,
    /// The peers whose series exist, so those of a removed peer can be dropped.
    known: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl SyncMetrics {
    pub fn sent(&self, peer: &str, bytes: usize) {
        self.count(peer, "sent", bytes);
    }

    pub fn received(&self, peer: &str, bytes: usize) {
        self.count(peer, "received", bytes);
    }

    fn count(&self, peer: &str, direction: &'static str, bytes: usize) {
        self.note(peer);
        self.bytes
            .get_or_create(&PeerDirection {
                peer: peer.to_string(),
                direction,
            })
            .inc_by(bytes as u64);
    }

    fn note(&self, peer: &str) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if !known.contains(peer) {
            known.insert(peer.to_string());
        }
    }

    /// `n` changes from `peer` refused.
    pub fn rejected(&self, peer: &str, n: u64) {
        self.note(peer);
        self.rejected
            .get_or_create(&PeerLabel {
                peer: peer.to_string(),
            })
            .inc_by(n);
    }

    /// A local change woke `peer`'s link to announce it.
    pub fn woken(&self, peer: &str) {
        self.note(peer);
        self.wakes
            .get_or_create(&PeerLabel {
                peer: peer.to_string(),
            })
            .inc();
    }

    /// Makes the series of these peers exist (at zero until something moves) and drops those
    /// of every other peer: a peer removed since stops being reported.
    pub(super) fn keep_peers(&self, peers: &[String]) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|p| {
            let keep = peers.contains(p);
            if !keep {
                for direction in ["sent", "received"] {
                    self.bytes.remove(&PeerDirection {
                        peer: p.clone(),
                        direction,
                    });
                }
                self.rejected.remove(&PeerLabel { peer: p.clone() });
                self.wakes.remove(&PeerLabel { peer: p.clone() });
            }
            keep
        });
        for p in peers {
            known.insert(p.clone());
            for direction in ["sent", "received"] {
                let _ = self.bytes.get_or_create(&PeerDirection {
                    peer: p.clone(),
                    direction,
                });
            }
            let _ = self.rejected.get_or_create(&PeerLabel { peer: p.clone() });
            let _ = self.wakes.get_or_create(&PeerLabel { peer: p.clone() });
        }
    }
}

/// The two ways a notification leaves the node.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: &'static str,
}

/// Mails and webhook deliveries sent, and attempts that failed.
#[derive(Clone, Debug)]
pub struct NotifyMetrics {
    pub(super) sent: Family<ChannelLabel, Counter>,
    pub(super) failures: Family<ChannelLabel, Counter>,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        let m = NotifyMetrics {
            sent: Family::default(),
            failures: Family::default(),
        };
        for c in Channel::ALL {
            let l = ChannelLabel {
                channel: c.as_str(),
            };
            let _ = m.sent.get_or_create(&l);
            let _ = m.failures.get_or_create(&l);
        }
        m
    }
}

impl NotifyMetrics {
    pub fn sent(&self, c: Channel) {
        self.sent
            .get_or_create(&ChannelLabel {
                channel: c.as_str(),
            })
            .inc();
    }

    pub fn failed(&self, c: Channel) {
        self.failures
            .get_or_create(&ChannelLabel {
                channel: c.as_str(),
            })
            .inc();
    }
}
