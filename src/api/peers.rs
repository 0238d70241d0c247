//! `/peers`: pairing, the peer list with live status, revocation.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::Tags;
use super::auth::BearerAuth;
use super::error::ApiError;
use super::models::Role;
use crate::replicator::Replicator;
use crate::service::Peer;
use crate::service::{Hello, InviteTarget, PairAnswer, PairRequest, Service};

pub struct PeersApi {
    pub svc: Arc<Service>,
    pub rep: Arc<Replicator>,
}

#[derive(Debug, Object)]
pub struct InviteOut {
    /// Give this to the other node: `parley peer add CODE` or `POST /api/v1/peers`.
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// Whom an invite is for: `{org_id, org_name, role}` for a node of a partner org (name and
/// role may be left out for a partner this node already knows: its next node), or
/// `{own_site: true}` for another site of this node's own org.
#[derive(Debug, Object)]
pub struct InviteIn {
    pub org_id: Option<String>,
    pub org_name: Option<String>,
    pub role: Option<Role>,
    pub own_site: Option<bool>,
}

/// What an invite code pairs a node as, and with whom.
#[derive(Debug, Object)]
pub struct InvitePreviewOut {
    pub inviter_node: Uuid,
    pub inviter_org: String,
    pub inviter_name: String,
    pub inviter_role: Role,
    /// The org a node must belong to to use the invite.
    pub for_org: String,
    pub for_name: String,
    pub for_role: Role,
    /// `true`: the invite is for another site of the inviter's own org.
    pub own_site: bool,
    /// Why this node cannot use the invite, if it cannot.
    pub problem: Option<String>,
}

/// A dialing peer's hello: its node id and a fresh nonce (64 hex digits).
#[derive(Debug, Object)]
pub struct HelloIn {
    pub node_id: Uuid,
    pub nonce: String,
}

/// This node's challenge and its proof of identity for the dialing peer.
#[derive(Debug, Object)]
pub struct HelloOut {
    pub node_id: Uuid,
    pub nonce: String,
    pub proof: String,
}

#[derive(Debug, Object)]
pub struct AddPeer {
    /// An invite code from the other node.
    pub code: String,
    /// A recovery pairing, for a node of ours that lost its data: this partner's node may
    /// give back, once, our own org's past changes to the conversations shared with it,
    /// until the first full exchange with it completes (see the README, "Recovering from a
    /// partner"). Only for a partner's invite.
    #[oai(default)]
    pub recover: bool,
}

#[derive(Debug, Object)]
pub struct PeerOut {
    pub node_id: Uuid,
    pub org_id: String,
    pub org_name: String,
    pub role: Role,
    /// `true` for another site of this node's own org.
    pub own_org: bool,
    /// `true` while this partner's node may give back our own org's past changes (a
    /// recovery pairing, or the first exchange after a restore); it ends by itself after the
    /// first full exchange.
    pub recovering: bool,
    /// Where this node dials it, if it does.
    pub url: Option<String>,
    /// Fingerprint of the certificate pinned for its `https://` address.
    pub tls: Option<String>,
    pub connected: bool,
    pub connected_since: Option<DateTime<Utc>>,
    /// While it has no link: when its last link since this node started ended. Null while
    /// connected or when it has not connected since this node started (then `last_sync_at`
    /// is the best there is).
    pub disconnected_since: Option<DateTime<Utc>>,
    /// Last time something from this peer was stored here.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// Conversations still to go to the peer (an upper bound): live while connected; while it is
    /// away, what was waiting when the link dropped plus what changed since. Unknown (absent)
    /// for a peer not seen since this node started.
    pub pending: Option<u64>,
    /// While connected: whether the first exchange after connecting has completed.
    pub caught_up: Option<bool>,
    /// While connected: conversations the peer announced that are still to arrive here.
    pub incoming: Option<u64>,
    /// `true` while the link's first sync waits for its turn (`[sync] first_syncs` first
    /// syncs run at once); the link is open and the sync starts by itself.
    pub waiting_turn: bool,
    /// While `waiting_turn`: its place in the line (1 = next).
    pub waiting_place: Option<u64>,
    /// Why the last attempt to connect or sync failed, if it did.
    pub last_error: Option<String>,
    /// `true` when this node stopped dialing the peer after a failure retrying cannot fix
    /// (`last_error` says which); pairing again or a restart starts it again.
    pub stopped: bool,
}

/// The inviting node's side of pairing (called by the other node, authorised by the invite).
#[derive(Debug, Object)]
pub struct AcceptBody {
    pub secret: String,
    pub node_id: Uuid,
    pub org_id: String,
    pub org_name: String,
    pub role: Role,
    pub url: Option<String>,
    /// The pairing node's identity key (hex Ed25519).
    pub public_key: String,
    /// Fingerprint of the certificate the pairing node serves TLS with, to pin.
    pub tls: Option<String>,
}

#[derive(Debug, Object)]
pub struct AcceptOut {
    pub node_id: Uuid,
    pub org_id: String,
    pub org_name: String,
    pub role: Role,
    pub public_key: String,
}

#[derive(ApiResponse)]
pub enum Added {
    #[oai(status = 201)]
    Created(Json<PeerOut>),
}

#[derive(ApiResponse)]
pub enum Removed {
    #[oai(status = 204)]
    Removed,
}

type R<T> = Result<T, ApiError>;

impl PeersApi {
    async fn out(&self, p: Peer) -> PeerOut {
        let me = self.svc.identity().await.ok().flatten();
        let link = self.rep.status(p.node_id);
        let pending = self.rep.pending(&p, std::time::Duration::ZERO).await;
        let failure = self.rep.failure(p.node_id);
        let waiting_place = link.and(self.rep.waiting_turn(p.node_id));
        PeerOut {
            waiting_turn: waiting_place.is_some(),
            waiting_place,
            last_error: failure.as_ref().map(|f| f.error.clone()),
            stopped: failure.is_some_and(|f| f.stopped),
            own_org: me.as_ref().is_some_and(|m| m.org_id == p.org_id),
            recovering: p.recover_since.is_some(),
            node_id: p.node_id,
            org_id: p.org_id.to_string(),
            org_name: p.org_name,
            role: p.role.into(),
            url: p.url,
            tls: p.tls,
            connected: link.is_some(),
            connected_since: link.map(|l| l.connected_since),
            disconnected_since: link
                .is_none()
                .then(|| self.rep.away_since(p.node_id))
                .flatten(),
            last_sync_at: p.last_sync_at,
            pending,
            caught_up: link.map(|l| l.live.progress.initial_sync_complete),
            incoming: link.map(|l| {
                l.live.progress.docs_to_fetch as u64 + l.live.progress.peer_feed_unannounced
            }),
        }
    }
}

#[OpenApi(tag = "Tags::Peers")]
impl PeersApi {
    /// Paired nodes and their sync status
    #[oai(path = "/peers", method = "get", operation_id = "listPeers")]
    async fn list(&self, _auth: BearerAuth) -> R<Json<Vec<PeerOut>>> {
        let mut out = Vec::new();
        for p in self.svc.peers().await? {
            out.push(self.out(p).await);
        }
        Ok(Json(out))
    }

    /// Make a one-time invite code for another node (admin)
    #[oai(
        path = "/peers/invites",
        method = "post",
        operation_id = "createInvite"
    )]
    async fn invite(&self, auth: BearerAuth, body: Json<InviteIn>) -> R<Json<InviteOut>> {
        let b = body.0;
        let target = match (b.own_site.unwrap_or(false), b.org_id) {
            (true, None) if b.org_name.is_none() && b.role.is_none() => InviteTarget::OwnSite,
            (true, _) => {
                return Err(ApiError::bad_request(
                    "own_site: an own-site invite names no org; send {\"own_site\": true} alone",
                ));
            }
            (false, Some(org_id)) => InviteTarget::Partner {
                org_id,
                org_name: b.org_name,
                role: b.role.map(Into::into),
            },
            (false, None) => {
                return Err(ApiError::bad_request(
                    "say whom the invite is for: {\"org_id\", \"org_name\", \"role\"} for a partner's node, or {\"own_site\": true} for another site of this org",
                ));
            }
        };
        let (code, expires_at) = self.svc.create_invite(&auth.0, target).await?;
        Ok(Json(InviteOut { code, expires_at }))
    }

    /// What an invite code would pair this node as, and with whom (admin)
    #[oai(
        path = "/peers/invites/inspect",
        method = "post",
        operation_id = "inspectInvite"
    )]
    async fn inspect(&self, auth: BearerAuth, body: Json<AddPeer>) -> R<Json<InvitePreviewOut>> {
        let (_, p) = self.svc.inspect_invite(&auth.0, &body.0.code).await?;
        Ok(Json(InvitePreviewOut {
            inviter_node: p.inviter_node,
            inviter_org: p.inviter_org,
            inviter_name: p.inviter_name,
            inviter_role: p.inviter_role.into(),
            for_org: p.for_org,
            for_name: p.for_name,
            for_role: p.for_role.into(),
            own_site: p.own_site,
            problem: p.problem,
        }))
    }

    /// A paired node opening a sync connection asks for a challenge; this node proves who it
    /// is (authorised by being a paired node)
    #[oai(path = "/peers/hello", method = "post", operation_id = "peerHello")]
    async fn hello(&self, body: Json<HelloIn>) -> R<Json<HelloOut>> {
        let Hello {
            node_id,
            nonce,
            proof,
        } = match self.svc.peer_hello(body.0.node_id, &body.0.nonce).await {
            Err(crate::service::ServiceError::Unauthenticated) => {
                return Err(ApiError::Unauthorized(Json(super::error::ErrorBody {
                    error: "unknown_peer".into(),
                    detail: "this node is not paired with that node (it may have been removed); pair again with a new invite".into(),
                })));
            }
            r => r?,
        };
        Ok(Json(HelloOut {
            node_id,
            nonce,
            proof,
        }))
    }

    /// Pair with the node that made an invite code (admin)
    #[oai(path = "/peers", method = "post", operation_id = "addPeer")]
    async fn add(&self, auth: BearerAuth, body: Json<AddPeer>) -> R<Added> {
        let p = self.svc.pair(&auth.0, &body.0.code, body.0.recover).await?;
        Ok(Added::Created(Json(self.out(p).await)))
    }

    /// Revoke a peer: its key stops working and its connection is cut (admin)
    #[oai(path = "/peers/:id", method = "delete", operation_id = "removePeer")]
    async fn remove(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Removed> {
        self.svc.remove_peer(&auth.0, id.0).await?;
        Ok(Removed::Removed)
    }

    /// Complete pairing from the invited node's side (authorised by the invite's secret)
    #[oai(
        path = "/peers/accept",
        method = "post",
        operation_id = "acceptPairing"
    )]
    async fn accept(&self, body: Json<AcceptBody>) -> R<Json<AcceptOut>> {
        let b = body.0;
        let req = PairRequest {
            secret: b.secret,
            node_id: b.node_id,
            org_id: b.org_id,
            org_name: b.org_name,
            role: b.role.into(),
            url: b.url,
            public_key: b.public_key,
            tls: b.tls,
        };
        let PairAnswer {
            node_id,
            org_id,
            org_name,
            role,
            public_key,
        } = self.svc.accept_pairing(req).await?;
        Ok(Json(AcceptOut {
            node_id,
            org_id,
            org_name,
            role: role.into(),
            public_key,
        }))
    }
}
