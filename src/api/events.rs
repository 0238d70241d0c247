//! `/events`: live changes as server-sent events, so open pages update without reloading.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use poem_openapi::payload::EventStream;
use poem_openapi::{Object, OpenApi};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::Tags;
use super::auth::BearerAuth;
use crate::service::Service;

pub struct EventsApi {
    pub svc: Arc<Service>,
}

/// A conversation changed (created, replied to, updated). Without `conversation`, events were
/// missed: reload everything shown.
#[derive(Debug, Clone, Object)]
pub struct ChangeOut {
    pub conversation: Option<Uuid>,
    /// Position in the changes feed.
    pub seq: u64,
}

#[OpenApi(tag = "Tags::Conversations")]
impl EventsApi {
    /// Live changes (server-sent events, one JSON `ChangeOut` per event)
    #[oai(path = "/events", method = "get", operation_id = "events")]
    async fn events(&self, _auth: BearerAuth) -> EventStream<BoxStream<'static, ChangeOut>> {
        let rx = self.svc.subscribe();
        let closing = self.svc.closing();
        let stream =
            futures_util::stream::unfold((rx, closing), |(mut rx, mut closing)| async move {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    _ = closing.wait_for(|c| *c) => return None,
                };
                let out = match next {
                    Ok(ev) => ChangeOut {
                        conversation: Some(ev.conversation),
                        seq: ev.seq,
                    },
                    Err(RecvError::Lagged(_)) => ChangeOut {
                        conversation: None,
                        seq: 0,
                    },
                    Err(RecvError::Closed) => return None,
                };
                Some((out, (rx, closing)))
            });
        EventStream::new(stream.boxed()).keep_alive(Duration::from_secs(15))
    }
}
