//! `/events`: live changes as server-sent events, so open pages update without reloading.
//!
//! A stream lives only as long as what opened it: it keeps the request's credential (the
//! bearer token, or the session cookie) and checks it again whenever a token is revoked or a
//! session ends anywhere on the node, and at the session's expiry; once it no longer signs
//! its user in, the stream ends before another event is sent.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use poem::Request;
use poem::http::header;
use poem_openapi::payload::EventStream;
use poem_openapi::{Object, OpenApi};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::Tags;
use super::auth::{BearerAuth, SessionUser};
use super::error::ApiError;
use super::session::session_cookie;
use crate::service::{ChangeEvent, Credential, Service};

pub struct EventsApi {
    pub svc: Arc<Service>,
}

/// A conversation changed (created, replied to, updated). Without `conversation`, events were
/// missed: reload everything shown.
#[derive(Debug, Clone, Object)]
pub struct ChangeOut {
    #[oai(skip_serializing_if_is_none)]
    pub conversation: Option<Uuid>,
    /// Position in the changes feed.
    pub seq: u64,
}

/// The credential the request was let in with: the session cookie when `cookie_auth` vouched
/// for it, else the bearer token.
fn credential(req: &Request) -> Option<Credential> {
    if req.extensions().get::<SessionUser>().is_some() {
        return session_cookie(req).map(Credential::Session);
    }
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Credential::Token(token.trim().to_string()))
}

struct Live {
    svc: Arc<Service>,
    rx: broadcast::Receiver<ChangeEvent>,
    closing: watch::Receiver<bool>,
    credentials: watch::Receiver<u64>,
    credential: Option<Credential>,
}

impl Live {
    /// Whether the stream may go on; a failed check ends it (the client reconnects).
    async fn allowed(&self) -> bool {
        match &self.credential {
            Some(c) => self.svc.still_valid(c).await.unwrap_or(false),
            None => false,
        }
    }

    async fn next(mut self) -> Option<(ChangeOut, Live)> {
        loop {
            // Biased: a credential change is looked at before any event that is also ready.
            let next = tokio::select! {
                biased;
                _ = self.closing.wait_for(|c| *c) => return None,
                changed = self.credentials.changed() => Err(changed.is_ok()),
                r = self.rx.recv() => Ok(r),
            };
            let next = match next {
                Ok(r) => r,
                Err(true) if self.allowed().await => continue,
                Err(_) => return None,
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
            return Some((out, self));
        }
    }
}

#[OpenApi(tag = "Tags::Conversations")]
impl EventsApi {
    /// Live changes (server-sent events, one JSON `ChangeOut` per event)
    ///
    /// The stream ends as soon as the token it was opened with is revoked or the session
    /// signed out or expired.
    #[oai(path = "/events", method = "get", operation_id = "events")]
    async fn events(
        &self,
        req: &Request,
        _auth: BearerAuth,
    ) -> Result<EventStream<BoxStream<'static, ChangeOut>>, ApiError> {
        let mut credentials = self.svc.watch_credentials();
        // Checked once more right away: a revocation between the request's check and this
        // subscription must not be missed.
        credentials.mark_changed();
        let credential = credential(req);
        let expiry = match &credential {
            Some(Credential::Session(id)) => self
                .svc
                .session(id)
                .await
                .ok()
                .flatten()
                .map(|(_, rec)| rec.expires_at),
            _ => None,
        };
        let live = Live {
            svc: self.svc.clone(),
            rx: self.svc.subscribe(),
            closing: self.svc.closing(),
            credentials,
            credential,
        };
        let stream = futures_util::stream::unfold(live, Live::next);
        let stream = match expiry {
            Some(at) => {
                let left = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                stream.take_until(tokio::time::sleep(left)).boxed()
            }
            None => stream.boxed(),
        };
        Ok(EventStream::new(stream).keep_alive(Duration::from_secs(15)))
    }
}
