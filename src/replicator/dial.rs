//! Outgoing connections: dial a peer's `/api/v1/sync` WebSocket, authenticate, and retry with
//! capped exponential backoff and jitter while the peer is unreachable.

use std::time::Duration;

use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
use uuid::Uuid;

use super::conn::Transport;
use super::pump::{self, Codec, Kind};
use crate::store::peers::Peer;

pub const PROTOCOL: &str = "parley-sync.1";
const BASE: Duration = Duration::from_millis(250);
const CAP: Duration = Duration::from_secs(30);

/// Delay before attempt `n` (0-based): doubling from 250 ms, capped at 30 s, with ±50% jitter
/// so that many nodes coming back at once do not dial in lockstep.
pub fn backoff(n: u32) -> Duration {
    let base = BASE.saturating_mul(1u32 << n.min(16)).min(CAP);
    let jitter = (Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0; // 0..1
    base.mul_f64(0.5 + jitter)
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

/// Opens one authenticated connection to `peer`.
pub async fn connect(peer: &Peer, me: Uuid) -> Result<Transport, String> {
    let url = peer
        .url
        .as_deref()
        .ok_or("the peer has no address to dial")?;
    let mut req = sync_url(url)
        .into_client_request()
        .map_err(|e| format!("bad peer address {url}: {e}"))?;
    let h = req.headers_mut();
    let val = |s: String| s.parse().map_err(|_| "bad header value".to_string());
    h.insert("Authorization", val(format!("Bearer {}", peer.key))?);
    h.insert("X-Parley-Node", val(me.to_string())?);
    h.insert("Sec-WebSocket-Protocol", val(PROTOCOL.to_string())?);
    let target = crate::http_client::parse_url(url).map_err(|e| e.to_string())?;
    // A TLS peer is dialled only if it shows the certificate its invite named (`peer.tls`).
    let tls = target
        .tls
        .then_some((target.host.as_str(), peer.tls.as_deref()));
    let (ws, resp) = tokio::time::timeout(Duration::from_secs(10), async {
        let stream = crate::tls::connect(&target.addr, tls).await?;
        tokio_tungstenite::client_async(req, stream)
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))
    })
    .await
    .map_err(|_| format!("{url} did not answer within 10 s"))??;
    let answered = resp
        .headers()
        .get("X-Parley-Node")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok());
    if answered != Some(peer.node_id) {
        return Err(format!("the node at {url} is not peer {}", peer.node_id));
    }
    Ok(pump::spawn(ws, codec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        for n in 0..40 {
            let d = backoff(n);
            assert!(d >= BASE / 2 && d <= CAP + CAP / 2, "{n}: {d:?}");
        }
        assert!(backoff(10) >= CAP / 2);
    }

    #[test]
    fn urls() {
        assert_eq!(sync_url("http://a:1/"), "ws://a:1/api/v1/sync");
        assert_eq!(sync_url("https://a"), "wss://a/api/v1/sync");
    }
}
