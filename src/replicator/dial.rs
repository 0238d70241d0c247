//! Outgoing connections: prove both ends with the peer (`POST /api/v1/peers/hello`), dial its
//! `/api/v1/sync` WebSocket, and retry with capped exponential backoff and jitter while the
//! peer is unreachable.

use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
use uuid::Uuid;

use super::conn::Transport;
use super::pump::{self, Codec, Kind};
use crate::http_client;
use crate::service::{Hello, Service};
use crate::store::peers::Peer;

/// The link's protocol names, newest first: `.2` carries files (`BLOB_*` records) besides
/// documents. Both are offered when dialing and the node answering picks the first it knows,
/// so a node of an earlier release still syncs documents with this one.
pub const PROTOCOL_FILES: &str = "parley-sync.2";
pub const PROTOCOL: &str = "parley-sync.1";
const BASE: Duration = Duration::from_millis(250);
const CAP: Duration = Duration::from_secs(30);
/// The longest any dialer waits between attempts, jitter included.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Delay before attempt `n` (0-based): doubling from 250 ms, capped at 30 s, with ±50% jitter
/// so that many nodes coming back at once do not dial in lockstep: after a hub restart the
/// dialers' attempts spread over a window that widens with every round, never over 60 s.
pub fn backoff(n: u32) -> Duration {
    let base = BASE.saturating_mul(1u32 << n.min(16)).min(CAP);
    base.mul_f64(0.5 + unit_jitter()).min(MAX_DELAY)
}

/// A delay of at least `floor` (a peer's `Retry-After`), spread by up to as much again, so
/// that every dialer told the same `Retry-After` does not come back in the same instant. Not
/// grown by the attempts before: the node that said it paces its dialers, and a dialer that
/// also backed off on its own would come back long after its turn.
pub fn after(floor: Duration, n: u32) -> Duration {
    // A `Retry-After` under a second (0 from a proxy's maintenance page, say) paces nothing:
    // then the dialer backs off as it would without one.
    if floor < Duration::from_secs(1) {
        return backoff(n);
    }
    floor.mul_f64(1.0 + unit_jitter()).min(MAX_DELAY)
}

/// Uniform in 0..1, independent per call.
fn unit_jitter() -> f64 {
    (Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0
}

/// Read buffer of every sync WebSocket. Idle links dominate a hub's memory: at tungstenite's
/// 128 KiB default, 10,000 idle peers hold about 1.35 GB of read buffers; at 4 KiB about
/// 70 MB. Larger frames still arrive whole, read in more system calls.
pub const WS_READ_BUFFER: usize = 4 * 1024;
/// Written frames are flushed once this much is buffered (the pump flushes every frame
/// anyway).
pub const WS_WRITE_BUFFER: usize = 4 * 1024;
/// Largest WebSocket message or frame accepted from a peer. Above the engine's largest frame
/// (`parley_sync::wire::MAX_FRAME_BYTES`, 8 MiB), so a legal frame is never refused.
pub const WS_MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Most bytes a link may hold unsent: one largest message above the flush size, so a legal
/// frame always fits, and a peer that stops reading cannot make this node buffer more.
pub const WS_MAX_WRITE_BUFFER: usize = WS_MAX_MESSAGE + WS_WRITE_BUFFER + 64 * 1024;

const _: () = assert!(WS_MAX_MESSAGE > parley_sync::wire::MAX_FRAME_BYTES + 1024);

/// The configuration of every sync WebSocket, served (`api::sync`) and dialed.
pub fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .max_message_size(Some(WS_MAX_MESSAGE))
        .max_frame_size(Some(WS_MAX_MESSAGE))
}

/// The WebSocket URL of a peer's sync endpoint.
pub fn sync_url(base: &str) -> String {
    let b = base.trim_end_matches('/');
    let ws = if let Some(rest) = b.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = b.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        b.to_string()
    };
    format!("{ws}/api/v1/sync")
}

fn codec() -> Codec<Message> {
    Codec {
        kind: |m| match m {
            Message::Binary(b) => Kind::Binary(b.to_vec()),
            Message::Close(_) => Kind::Close,
            _ => Kind::Other,
        },
        binary: Message::binary,
        ping: || Message::Ping(Vec::new().into()),
    }
}

/// Why a dial failed, and whether trying again can help.
#[derive(Debug, Clone)]
pub struct DialError {
    pub message: String,
    /// Retrying cannot help until an admin acts (the peer removed us, its address is refused
    /// by the outbound-address rules).
    pub permanent: bool,
    /// The peer is busy and said when to come back (`503` with `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl DialError {
    fn retry(message: impl Into<String>) -> Self {
        DialError {
            message: message.into(),
            permanent: false,
            retry_after: None,
        }
    }
    fn permanent(message: impl Into<String>) -> Self {
        DialError {
            message: message.into(),
            permanent: true,
            retry_after: None,
        }
    }
}

/// Longest `Retry-After` a dialer honours; a longer one is read as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Opens one connection to `peer`, proven at both ends (`service::peer_auth`): the peer's
/// proof is checked before this node sends its own, and the upgrade's acceptance proof before
/// any sync frame. Nothing secret is sent.
pub async fn connect(svc: &Arc<Service>, peer: &Peer, me: Uuid) -> Result<Transport, DialError> {
    let url = peer
        .url
        .as_deref()
        .ok_or_else(|| DialError::permanent("the peer has no address to dial"))?;
    let allow = svc.allow_loopback_peers();
    let target = http_client::check_peer_url(url, allow)
        .map_err(|e| DialError::permanent(format!("not dialing {url}: {e}")))?;
    let dest = http_client::Dest::Peer {
        pin: peer.tls.as_deref(),
        allow_loopback: allow,
    };
    // A name that resolves only to refused addresses stops the dialing, like a refused URL.
    if let Err(e) = http_client::resolve(&target.host, target.port, allow).await {
        return Err(if e.contains(http_client::NO_USABLE_ADDRESS) {
            DialError::permanent(format!("not dialing {url}: {e}"))
        } else {
            DialError::retry(e)
        });
    }
    let cn = crate::service::peer_nonce();
    let hello_url = format!("{}/api/v1/peers/hello", url.trim_end_matches('/'));
    let body = serde_json::json!({ "node_id": me, "nonce": hex::encode(cn) });
    let (status, text) = http_client::request("POST", &hello_url, None, Some(&body), dest)
        .await
        .map_err(|e| match e {
            http_client::HttpError::Address(m) => DialError::permanent(m),
            e => DialError::retry(e.to_string()),
        })?;
    if status == 401 {
        return Err(DialError::permanent(format!(
            "the node at {url} does not know this node (it was removed there); pair again with a new invite"
        )));
    }
    if status != 200 {
        return Err(DialError::retry(format!(
            "{url} answered {status} to hello"
        )));
    }
    let hello: Hello = serde_json::from_str(&text)
        .map_err(|_| DialError::retry(format!("{url} answered hello with something else")))?;
    let proof = svc
        .answer_hello(peer, me, &cn, &hello)
        .await
        .map_err(|e| DialError::retry(e.to_string()))?
        .ok_or_else(|| {
            DialError::retry(format!(
                "the node at {url} could not prove it is peer {}; nothing was sent to it",
                peer.node_id
            ))
        })?;
    let mut req = sync_url(url)
        .into_client_request()
        .map_err(|e| DialError::permanent(format!("bad peer address {url}: {e}")))?;
    let h = req.headers_mut();
    let val = |s: String| s.parse().map_err(|_| DialError::retry("bad header value"));
    h.insert("X-Parley-Node", val(me.to_string())?);
    h.insert("X-Parley-Nonce", val(hello.nonce.clone())?);
    h.insert("X-Parley-Proof", val(proof)?);
    h.insert(
        "Sec-WebSocket-Protocol",
        val(format!("{PROTOCOL_FILES}, {PROTOCOL}"))?,
    );
    // A TLS peer is dialled only if it shows the certificate its invite named (`peer.tls`).
    let tls = target
        .tls
        .then_some((target.host.as_str(), peer.tls.as_deref()));
    let (ws, resp) = tokio::time::timeout(Duration::from_secs(10), async {
        let addrs = http_client::resolve(&target.host, target.port, allow)
            .await
            .map_err(DialError::retry)?;
        let stream = crate::tls::connect(&addrs, tls)
            .await
            .map_err(DialError::retry)?;
        tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config()))
            .await
            .map_err(|e| refused_link(url, e))
    })
    .await
    .map_err(|_| DialError::retry(format!("{url} did not answer within 10 s")))??;
    let answered = resp
        .headers()
        .get("X-Parley-Node")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok());
    let accepted = resp
        .headers()
        .get("X-Parley-Proof")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| svc.verify_accepted(peer, me, &cn, &hello.nonce, p));
    if answered != Some(peer.node_id) || !accepted {
        return Err(DialError::retry(format!(
            "the node at {url} did not prove it is peer {}; closing before any sync",
            peer.node_id
        )));
    }
    let chosen = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    // A peer that answers without naming a protocol is of a release before files: `.1`.
    let blobs = match chosen {
        None => false,
        Some(p) if p == PROTOCOL_FILES => true,
        Some(p) if p == PROTOCOL => false,
        Some(p) => {
            return Err(DialError::permanent(format!(
                "the node at {url} chose link protocol {p}, which this node ({}) does not speak; upgrade this node",
                env!("CARGO_PKG_VERSION")
            )));
        }
    };
    Ok(pump::spawn(ws, codec(), blobs))
}

/// Why the peer refused the WebSocket upgrade, in its own words when it gave them (a `426`
/// names which side to upgrade); a busy peer's `503` carries when to come back.
fn refused_link(url: &str, e: tokio_tungstenite::tungstenite::Error) -> DialError {
    if let tokio_tungstenite::tungstenite::Error::Http(r) = &e {
        let retry_after = (r.status() == 503)
            .then(|| r.headers().get("Retry-After"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let detail = r
            .body()
            .as_ref()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v["detail"].as_str().map(String::from));
        if let Some(d) = detail {
            let mut err =
                DialError::retry(format!("{url} refused the sync link ({}): {d}", r.status()));
            err.retry_after = retry_after;
            return err;
        }
        if retry_after.is_some() {
            let mut err = DialError::retry(format!("{url} is busy (503); coming back later"));
            err.retry_after = retry_after;
            return err;
        }
    }
    DialError::retry(format!("cannot connect to {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        for n in 0..40 {
            let d = backoff(n);
            assert!(d >= BASE / 2 && d <= CAP + CAP / 2, "{n}: {d:?}");
            assert!(d <= MAX_DELAY, "{n}: {d:?}");
        }
        assert!(backoff(10) >= CAP / 2);
        assert!(backoff(u32::MAX) <= MAX_DELAY);
    }

    #[test]
    fn dialers_coming_back_together_spread_out() {
        // A thousand dialers cut at the same instant: their first retries must not share a
        // moment, and none waits past the bound.
        let mut first: Vec<Duration> = (0..1000).map(|_| backoff(0)).collect();
        first.sort();
        assert!(
            first[999] - first[0] >= BASE / 2,
            "{:?}..{:?}",
            first[0],
            first[999]
        );
        let distinct = first.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(distinct > 100, "only {distinct} distinct delays");
        for n in 0..40 {
            let d = after(Duration::from_secs(2), n);
            assert!(d >= Duration::from_secs(2) && d <= MAX_DELAY, "{n}: {d:?}");
        }
        assert!(after(Duration::from_secs(600), 0) <= MAX_DELAY);
        // Retry-After: 0 is no reason to come back at once, again and again.
        assert!(after(Duration::ZERO, 8) >= BASE * 32);
    }

    #[tokio::test]
    async fn the_largest_legal_frame_passes_the_small_buffers() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::WebSocketStream;
        use tokio_tungstenite::tungstenite::protocol::Role;
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut client = WebSocketStream::from_raw_socket(a, Role::Client, Some(ws_config())).await;
        let mut server = WebSocketStream::from_raw_socket(b, Role::Server, Some(ws_config())).await;
        let largest = parley_sync::wire::MAX_FRAME_BYTES;
        let sender = tokio::spawn(async move {
            client
                .send(Message::binary(vec![7u8; largest]))
                .await
                .unwrap();
            client
                .send(Message::binary(vec![1u8; WS_MAX_MESSAGE + 1]))
                .await
                .ok();
            client
        });
        let got = server.next().await.unwrap().unwrap();
        assert_eq!(
            got.into_data().len(),
            largest,
            "a frame at the engine's limit arrives whole"
        );
        // One past the cap is refused by the reader, which ends the link.
        assert!(matches!(server.next().await, Some(Err(_)) | None));
        drop(server);
        let _ = sender.await;
    }

    #[test]
    fn urls() {
        assert_eq!(sync_url("http://a:1/"), "ws://a:1/api/v1/sync");
        assert_eq!(sync_url("https://a"), "wss://a/api/v1/sync");
    }
}
