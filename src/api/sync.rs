//! `GET /api/v1/sync`: the WebSocket a peer syncs over. The peer is authenticated before the
//! upgrade (`X-Parley-Node` + `Authorization: Bearer KEY`); an unknown or revoked peer gets
//! 401 and never reaches the sync engine.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::web::websocket::{Message, WebSocket, WebSocketConfig};
use poem::{IntoResponse, Request, Response, handler};
use uuid::Uuid;

use crate::replicator::Replicator;
use crate::replicator::dial::PROTOCOL;
use crate::replicator::pump::{self, Codec, Kind};
use crate::service::Service;

/// Largest WebSocket message accepted from a peer; the engine's frames are far smaller.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

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
    let body = serde_json::json!({ "error": "unauthorized", "detail": detail });
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

#[handler]
pub async fn sync(
    req: &Request,
    ws: WebSocket,
    svc: Data<&Arc<Service>>,
    rep: Data<&Arc<Replicator>>,
) -> Response {
    let node = req
        .header("X-Parley-Node")
        .and_then(|v| Uuid::parse_str(v).ok());
    let key = req
        .header("Authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let (Some(node), Some(key)) = (node, key) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a peer must send X-Parley-Node and Authorization: Bearer KEY",
        );
    };
    let peer = match svc.authenticate_peer(node, &key).await {
        Ok(p) => p,
        Err(_) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "unknown peer or wrong key; pair again with an invite",
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
    let rep = rep.0.clone();
    let mut cfg = WebSocketConfig::default();
    cfg.max_message_size = Some(MAX_MESSAGE);
    cfg.max_frame_size = Some(MAX_MESSAGE);
    ws.protocols([PROTOCOL])
        .config(cfg)
        .on_upgrade(move |socket| async move {
            let t = pump::spawn(socket, codec());
            rep.serve_incoming(peer, t).await;
        })
        .with_header("X-Parley-Node", me.to_string())
        .into_response()
}
