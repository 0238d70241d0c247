//! `GET /api/v1/sync`: the WebSocket a peer syncs over. The peer proves who it is before the
//! upgrade: `X-Parley-Node`, the challenge this node gave it (`X-Parley-Nonce`, from
//! `POST /api/v1/peers/hello`, usable once) and its proof over that exchange
//! (`X-Parley-Proof`, see `service::peer_auth`). An unknown or revoked peer, a wrong proof or a
//! replayed challenge gets 401 and never reaches the sync engine.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::web::websocket::{Message, WebSocket, WebSocketConfig};
use poem::{IntoResponse, Request, Response, handler};
use uuid::Uuid;

use crate::replicator::Replicator;
use crate::replicator::dial::{PROTOCOL, PROTOCOL_FILES};
use crate::replicator::pump::{self, Codec, Kind};
use crate::service::Service;

fn codec() -> Codec<Message> {
    Codec {
        kind: |m| match m {
            Message::Binary(b) => Kind::Binary(b),
            Message::Close(_) => Kind::Close,
            _ => Kind::Other,
        },
        binary: Message::Binary,
        ping: || Message::Ping(Vec::new()),
    }
}

fn refuse(status: StatusCode, detail: &str) -> Response {
    let error = match status {
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "unauthorized",
    };
    let body = serde_json::json!({ "error": error, "detail": detail });
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// `503` with `Retry-After`: more peers are connecting than this node takes per second.
fn busy(wait: std::time::Duration) -> Response {
    let mut r = refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "this node is taking many sync connections at once; come back after Retry-After seconds",
    );
    if let Ok(v) = wait.as_secs().max(1).to_string().parse() {
        r.headers_mut().insert("Retry-After", v);
    }
    r
}

#[handler]
pub async fn sync(
    req: &Request,
    ws: WebSocket,
    svc: Data<&Arc<Service>>,
    rep: Data<&Arc<Replicator>>,
) -> Response {
    // Before any work (no proof checked, nothing read): in a restart storm the dialers that
    // are turned away come back spread over their backoff.
    if let Err(wait) = rep.try_accept() {
        return busy(wait);
    }
    let node = req
        .header("X-Parley-Node")
        .and_then(|v| Uuid::parse_str(v).ok());
    let nonce = req.header("X-Parley-Nonce").map(str::to_string);
    let proof = req.header("X-Parley-Proof").map(str::to_string);
    let (Some(node), Some(nonce), Some(proof)) = (node, nonce, proof) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a peer must send X-Parley-Node, X-Parley-Nonce and X-Parley-Proof (from POST /api/v1/peers/hello)",
        );
    };
    let (peer, accepted) = match svc.authenticate_peer(node, &nonce, &proof).await {
        Ok(p) => p,
        Err(_) => {
            tracing::warn!(%node, "refused a sync connection: unknown peer, wrong proof or used challenge");
            return refuse(
                StatusCode::UNAUTHORIZED,
                "unknown peer, wrong proof or a challenge already used; ask for a new challenge, or pair again",
            );
        }
    };
    let me = match svc.identity().await {
        Ok(Some(i)) => i.node_id,
        _ => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node has no identity yet",
            );
        }
    };
    // poem answers with the first protocol the dialer offered that is listed here; files
    // travel only if that is `.2`.
    let offered: Vec<&str> = req
        .header("Sec-WebSocket-Protocol")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let chosen = offered
        .iter()
        .find(|p| **p == PROTOCOL || **p == PROTOCOL_FILES);
    if chosen.is_none() && !offered.is_empty() {
        // A dialer speaking only link protocols we do not know: say which side to upgrade
        // rather than open a link neither can read.
        let newer = offered
            .iter()
            .any(|p| protocol_number(p).is_some_and(|n| n > 2));
        let detail = format!(
            "this node ({}) speaks parley-sync.1 and parley-sync.2; the dialing node offered {}: {}",
            env!("CARGO_PKG_VERSION"),
            offered.join(", "),
            if newer {
                "upgrade this node (the one dialed) to the dialing node's release or newer"
            } else {
                "upgrade the dialing node"
            }
        );
        tracing::warn!(%node, offered = %offered.join(", "), "refused a sync link: no common protocol version");
        return refuse(StatusCode::UPGRADE_REQUIRED, &detail);
    }
    let blobs = chosen.is_some_and(|p| *p == PROTOCOL_FILES);
    let rep = rep.0.clone();
    // Small buffers: an idle link costs a few KiB, not 256 (`dial::ws_config`).
    let cfg: WebSocketConfig = crate::replicator::dial::ws_config();
    ws.protocols([PROTOCOL_FILES, PROTOCOL])
        .config(cfg)
        .on_upgrade(move |socket| async move {
            let t = pump::spawn(socket, codec(), blobs);
            rep.serve_incoming(peer, t).await;
        })
        .with_header("X-Parley-Node", me.to_string())
        .with_header("X-Parley-Proof", accepted)
        .into_response()
}

/// The version number of a `parley-sync.N` protocol name.
fn protocol_number(p: &str) -> Option<u32> {
    p.strip_prefix("parley-sync.")?.parse().ok()
}
