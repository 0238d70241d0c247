//! The node's Prometheus metrics: one registry per node, the metric families in it, and the
//! small typed handles the store, the replicator and the senders bump. Values that are cheap to
//! read when asked (queue depth, cached documents, pending changes, outbox size, RSS) are not
//! kept here: whoever serves a scrape gathers a [`Snapshot`] and [`Metrics::render`] encodes it
//! beside the live families.
//!
//! A leaf module: beside prometheus-client it knows only the config error type, so every layer
//! may hold a handle without depending on another layer.
//!
//! Invariant: no label takes a value chosen by a client or a partner beyond a fixed set —
//! operation ids are compiled in, methods and channels are closed sets, and `peer` is the node
//! id of a paired peer (bounded by the pairings an admin made). A conversation or user id is
//! never a label.

pub mod config;
mod handles;
mod snapshot;

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

pub use handles::{Channel, HttpMetrics, NotifyMetrics, StoreMetrics, SyncMetrics, method_label};
pub use snapshot::{PeerGauges, Snapshot};

/// The content type of [`Format::OpenMetrics`].
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`Format::Text`].
pub const TEXT: &str = prometheus_text::CONTENT_TYPE;

/// How a scrape is encoded: OpenMetrics 1.0 (what Prometheus asks for), or the older
/// Prometheus text format 0.0.4 for clients that ask for `text/plain` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics unless it names `text/plain` and
    /// not OpenMetrics.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("text/plain") && !a.contains("application/openmetrics-text") => {
                Format::Text
            }
            _ => Format::OpenMetrics,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => TEXT,
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub store: StoreMetrics,
    pub sync: SyncMetrics,
    pub notify: NotifyMetrics,
    /// What the scrape-time collector encodes; set by [`Metrics::render`].
    snapshot: Arc<Mutex<Snapshot>>,
    /// One render at a time: a render sets the snapshot and encodes it before the next.
    rendering: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The registry of one node, around the store's handles (the store exists first).
    pub fn new(store: StoreMetrics) -> Metrics {
        let mut registry = Registry::default();
        let build: Family<Vec<(&'static str, &'static str)>, Gauge> = Family::default();
        build
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register(
            "parley_build_info",
            "The running version of Parley (always 1)",
            build,
        );
        let http = HttpMetrics::default();
        registry.register(
            "parley_http_requests",
            "HTTP requests answered, by operation, method and status",
            http.requests.clone(),
        );
        registry.register_with_unit(
            "parley_http_request_duration",
            "Time from a request's head to its response's head, by operation",
            Unit::Seconds,
            http.duration.clone(),
        );
        registry.register_with_unit(
            "parley_store_commit_duration",
            "Time of one group commit (the write transaction and its fsync)",
            Unit::Seconds,
            store.commit_seconds.clone(),
        );
        registry.register(
            "parley_store_commit_batch_jobs",
            "Write jobs sharing one group commit",
            store.batch_jobs.clone(),
        );
        registry.register(
            "parley_store_documents_cached",
            "Conversation documents held in the writer's memory",
            store.documents_cached.clone(),
        );
        let sync = SyncMetrics::default();
        registry.register_with_unit(
            "parley_sync",
            "Sync frame bytes exchanged with a peer, by direction",
            Unit::Bytes,
            sync.bytes.clone(),
        );
        registry.register(
            "parley_sync_rejected_changes",
            "Changes from a peer that broke a rule and were refused (nothing of them landed)",
            sync.rejected.clone(),
        );
        registry.register(
            "parley_sync_wakes",
            "Times a local change woke the link to a peer (only the links of the peers it concerns wake)",
            sync.wakes.clone(),
        );
        let notify = NotifyMetrics::default();
        registry.register(
            "parley_notifications_sent",
            "Notification mails and webhook deliveries accepted by the receiver",
            notify.sent.clone(),
        );
        registry.register(
            "parley_notification_delivery_failures",
            "Failed attempts to deliver a notification mail or a webhook",
            notify.failures.clone(),
        );
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        registry.register_collector(Box::new(snapshot::Collect(snapshot.clone())));
        Metrics {
            registry,
            http,
            store,
            sync,
            notify,
            snapshot,
            rendering: Mutex::new(()),
        }
    }

    /// Encodes every family and `snap` (the values read at scrape time). The peers in `snap`
    /// are the paired ones: counters of peers no longer paired are dropped, and those of paired
    /// peers exist (at zero) before their first sync.
    pub fn render(&self, snap: Snapshot, format: Format) -> Result<String, std::fmt::Error> {
        let _one = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        let peers: Vec<String> = snap.peers.iter().map(|p| p.peer.clone()).collect();
        self.sync.keep_peers(&peers);
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snap;
        let mut out = String::new();
        match format {
            Format::OpenMetrics => text::encode(&mut out, &self.registry)?,
            Format::Text => prometheus_text::encode(&mut out, &self.registry)?,
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
