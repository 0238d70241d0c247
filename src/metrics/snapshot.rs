//! Values read at scrape time, and the collector that encodes them.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Unit;

use super::handles::{Channel, ChannelLabel, PeerLabel};

/// One paired peer as a scrape sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerGauges {
    /// The peer's node id.
    pub peer: String,
    pub connected: bool,
    /// Unix seconds of the last completed sync exchange, if there was one.
    pub last_sync: Option<f64>,
    /// What `GET /api/v1/peers` reports as `pending`, when it knows.
    pub pending: Option<u64>,
}

/// Everything the node reports that is read when asked rather than counted as it happens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub writer_queue_depth: u64,
    pub store_file_bytes: Option<u64>,
    pub peers: Vec<PeerGauges>,
    /// Items waiting per channel.
    pub outbox: Vec<(Channel, u64)>,
    /// Conversations per (kind, state).
    pub conversations: Vec<(&'static str, &'static str, u64)>,
    pub tasks_overdue: Option<u64>,
    pub resident_memory_bytes: Option<u64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindState {
    kind: &'static str,
    state: &'static str,
}

#[derive(Debug)]
pub(super) struct Collect(pub Arc<Mutex<Snapshot>>);

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: i64,
) -> std::fmt::Result {
    family(e, name, help, unit, &ConstGauge::new(v))
}

/// Encodes one metric (a family may be empty: its descriptor still says it exists). Help ends
/// in a full stop, as the registry writes it for the live families.
fn family(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    m: &impl EncodeMetric,
) -> std::fmt::Result {
    let help = format!("{help}.");
    m.encode(e.encode_descriptor(name, &help, unit, m.metric_type())?)
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for Collect {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        gauge(
            &mut e,
            "parley_store_writer_queue_depth",
            "Write jobs waiting for the writer",
            None,
            clamp(s.writer_queue_depth),
        )?;
        if let Some(b) = s.store_file_bytes {
            gauge(
                &mut e,
                "parley_store_file",
                "Size of the database file",
                Some(&Unit::Bytes),
                clamp(b),
            )?;
        }
        let connected: Family<PeerLabel, Gauge> = Family::default();
        let last: Family<PeerLabel, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
        let pending: Family<PeerLabel, Gauge> = Family::default();
        for p in &s.peers {
            let l = PeerLabel {
                peer: p.peer.clone(),
            };
            connected.get_or_create(&l).set(i64::from(p.connected));
            if let Some(t) = p.last_sync {
                last.get_or_create(&l).set(t);
            }
            if let Some(n) = p.pending {
                pending.get_or_create(&l).set(clamp(n));
            }
        }
        family(
            &mut e,
            "parley_peer_connected",
            "1 while a sync link with the peer is open",
            None,
            &connected,
        )?;
        family(
            &mut e,
            "parley_peer_last_sync_timestamp",
            "When the last sync exchange with the peer completed (Unix time)",
            Some(&Unit::Seconds),
            &last,
        )?;
        family(
            &mut e,
            "parley_peer_pending_changes",
            "Changes the peer has still to receive from this node",
            None,
            &pending,
        )?;
        let outbox: Family<ChannelLabel, Gauge> = Family::default();
        for (c, n) in &s.outbox {
            outbox
                .get_or_create(&ChannelLabel {
                    channel: c.as_str(),
                })
                .set(clamp(*n));
        }
        family(
            &mut e,
            "parley_outbox_pending",
            "Notification mails and webhook deliveries waiting to be sent",
            None,
            &outbox,
        )?;
        let convs: Family<KindState, Gauge> = Family::default();
        for (kind, state, n) in &s.conversations {
            convs
                .get_or_create(&KindState { kind, state })
                .set(clamp(*n));
        }
        family(
            &mut e,
            "parley_conversations",
            "Conversations stored, by kind and state",
            None,
            &convs,
        )?;
        if let Some(n) = s.tasks_overdue {
            gauge(
                &mut e,
                "parley_tasks_overdue",
                "Tasks past their due date and not done (the Overdue folder)",
                None,
                clamp(n),
            )?;
        }
        if let Some(b) = s.resident_memory_bytes {
            gauge(
                &mut e,
                "process_resident_memory",
                "Resident memory of this process",
                Some(&Unit::Bytes),
                clamp(b),
            )?;
        }
        Ok(())
    }
}
