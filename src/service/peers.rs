//! Pairing with peer nodes, and the peer list.
//!
//! Pairing, step by step: node A makes an invite (its address, its node id and a one-time
//! secret, valid 24 h). Node B, given the code, makes a fresh shared key and calls A's
//! `POST /api/v1/peers/accept` with the secret, its own identity and the key. A checks and
//! burns the secret, records B, and answers with its identity; B records A. From then on every
//! sync connection presents the key, and either side can revoke the other.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::*;
use crate::domain::{OrgId, Role, check_text, limits};
use crate::store::accounts::{self, Partner};
use crate::store::peers::{self, Invite, Peer};

const INVITE_PREFIX: &str = "parley-invite:";
const INVITE_TTL_HOURS: i64 = 24;

/// What an invite code carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteCode {
    pub v: u32,
    pub url: String,
    pub node: Uuid,
    pub org: String,
    pub secret: String,
    /// Fingerprint of the certificate the inviting node serves TLS with, when its `url` is
    /// `https://` and it serves TLS itself: the other node pins it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
}

impl InviteCode {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(code: &str) -> Result<InviteCode> {
        let bad = || {
            DomainError::invalid(
                "code",
                "is not a Parley invite code; copy the whole code that `parley peer invite` printed",
            )
        };
        let b64 = code.trim().strip_prefix(INVITE_PREFIX).ok_or_else(bad)?;
        let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| bad())?;
        let c: InviteCode = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if c.v != 1 {
            return Err(DomainError::invalid(
                "code",
                "was made by a newer Parley; upgrade this node",
            )
            .into());
        }
        Ok(c)
    }
}

/// B's side of pairing, sent to A.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairRequest {
    pub secret: String,
    pub node_id: Uuid,
    pub org_id: String,
    pub org_name: String,
    pub role: Role,
    pub url: Option<String>,
    pub key: String,
    /// B's certificate fingerprint, for A to pin when it dials B's `https://` address.
    #[serde(default)]
    pub tls: Option<String>,
}

/// A's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairAnswer {
    pub node_id: Uuid,
    pub org_id: String,
    pub org_name: String,
    pub role: Role,
}

/// A peer was added or removed; the replicator follows these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Added(Uuid),
    Removed(Uuid),
}

fn sha(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

fn secret() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// Keys are compared in constant time so response timing does not leak them.
pub fn keys_equal(a: &str, b: &str) -> bool {
    let (a, b) = (sha(a), sha(b));
    a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_url(url: &str) -> Result<()> {
    crate::http_client::split_url(url).map_err(|e| DomainError::invalid("url", e.to_string()))?;
    Ok(())
}

fn check_pin(field: &'static str, pin: &Option<String>) -> Result<()> {
    match pin {
        Some(p) if !crate::tls::is_fingerprint(p) => Err(DomainError::invalid(
            field,
            "is not a certificate fingerprint (64 hex digits)",
        )
        .into()),
        _ => Ok(()),
    }
}

/// Whether an org of `role` may be a peer: our own org (same role), or a partner of the
/// other role.
fn check_peer_org(me: &crate::store::Identity, org: &OrgId, role: Role) -> Result<()> {
    if *org == me.org_id && role != me.role {
        return Err(DomainError::Unprocessable(format!(
            "{org} is this node's org but the peer says it is a {role}"
        ))
        .into());
    }
    if *org != me.org_id && role == me.role {
        return Err(DomainError::Unprocessable(format!(
            "{org} is a {role} like this node's org; partners trade across roles"
        ))
        .into());
    }
    Ok(())
}

/// Records the peer's org as a partner if it is a new partner org. Call after
/// [`check_peer_org`]; runs inside a write job.
fn ensure_partner(
    tx: &redb::WriteTransaction,
    me: &crate::store::Identity,
    org: &OrgId,
    name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<()> {
    if *org != me.org_id && accounts::get_partner_w(tx, org)?.is_none() {
        accounts::put_partner(
            tx,
            &Partner {
                id: org.clone(),
                name: name.to_string(),
                role,
                created_at: now,
            },
        )?;
    }
    Ok(())
}

impl Service {
    /// The address partners should dial, from `--public-url`.
    pub fn set_public_url(&self, url: Option<String>) {
        if let Ok(mut u) = self.public_url.write() {
            *u = url;
        }
    }

    pub fn public_url(&self) -> Option<String> {
        self.public_url.read().ok().and_then(|u| u.clone())
    }

    /// The fingerprint of the certificate this node serves peers with (`--tls-listen`).
    pub fn set_tls_fingerprint(&self, fingerprint: Option<String>) {
        if let Ok(mut f) = self.tls_fingerprint.write() {
            *f = fingerprint;
        }
    }

    /// What a peer dialling `url` (this node's address) should pin: our fingerprint when the
    /// address is `https://` and we serve TLS ourselves.
    fn pin_for(&self, url: Option<&str>) -> Option<String> {
        let https = url.is_some_and(|u| u.starts_with("https://"));
        https
            .then(|| self.tls_fingerprint.read().ok().and_then(|f| f.clone()))
            .flatten()
    }

    pub fn subscribe_peers(&self) -> broadcast::Receiver<PeerEvent> {
        self.peer_events.subscribe()
    }

    /// Makes a one-time invite code for another node to pair with this one.
    pub async fn create_invite(&self) -> Result<(String, DateTime<Utc>)> {
        let url = self.public_url().ok_or_else(|| {
            DomainError::Unprocessable("this node does not know the address partners should dial; start it with --public-url http://HOST:PORT".into())
        })?;
        let s = secret();
        let now = self.now();
        let inv = Invite {
            created_at: now,
            expires_at: now + Duration::hours(INVITE_TTL_HOURS),
        };
        let hash = sha(&s);
        let expires = inv.expires_at;
        let me = self
            .store
            .write(move |ctx| -> Result<_> {
                let me = ctx.identity()?.clone();
                peers::put_invite(ctx.tx(), &hash, &inv)?;
                Ok(me)
            })
            .await?;
        let code = InviteCode {
            v: 1,
            tls: self.pin_for(Some(&url)),
            url,
            node: me.node_id,
            org: me.org_id.to_string(),
            secret: s,
        };
        Ok((code.encode(), expires))
    }

    /// A's side: checks the invite, burns it, records the peer.
    pub async fn accept_pairing(&self, req: PairRequest) -> Result<PairAnswer> {
        let org = OrgId::parse(&req.org_id)?;
        check_text("org_name", &req.org_name, limits::ORG_NAME_CHARS, true)?;
        if let Some(u) = &req.url {
            check_url(u)?;
        }
        check_pin("tls", &req.tls)?;
        if req.key.len() < 32 || req.key.len() > 200 {
            return Err(DomainError::invalid("key", "must be 32-200 characters").into());
        }
        let now = self.now();
        let hash = sha(&req.secret);
        let (answer, node) = self
            .store
            .write(move |ctx| -> Result<_> {
                let me = ctx.identity()?.clone();
                let invite = peers::get_invite(ctx.read_tx(), &hash)?.ok_or_else(|| {
                    DomainError::Forbidden(
                        "this invite is unknown or already used; ask for a new one".into(),
                    )
                })?;
                if invite.expires_at < now {
                    return Err(DomainError::Forbidden(
                        "this invite has expired; ask for a new one".into(),
                    )
                    .into());
                }
                if req.node_id == me.node_id {
                    return Err(DomainError::Unprocessable(
                        "a node cannot pair with itself".into(),
                    )
                    .into());
                }
                check_peer_org(&me, &org, req.role)?;
                let tx = ctx.tx();
                ensure_partner(tx, &me, &org, &req.org_name, req.role, now)?;
                peers::remove_invite(tx, &hash)?;
                let peer = Peer {
                    node_id: req.node_id,
                    org_id: org,
                    org_name: req.org_name.trim().to_string(),
                    role: req.role,
                    url: req.url,
                    key: req.key,
                    tls: req.tls,
                    created_at: now,
                    last_sync_at: None,
                };
                peers::put_peer(tx, &peer)?;
                let a = PairAnswer {
                    node_id: me.node_id,
                    org_id: me.org_id.to_string(),
                    org_name: me.org_name.clone(),
                    role: me.role,
                };
                Ok((a, peer.node_id))
            })
            .await?;
        let _ = self.peer_events.send(PeerEvent::Added(node));
        Ok(answer)
    }

    /// B's side: pairs with the node that made `code`.
    pub async fn pair(&self, code: &str) -> Result<Peer> {
        let c = InviteCode::decode(code)?;
        check_url(&c.url)?;
        check_pin("code", &c.tls)?;
        let me = self
            .identity()
            .await?
            .ok_or(ServiceError::Store(StoreError::NoIdentity))?;
        if c.node == me.node_id {
            return Err(DomainError::Unprocessable(
                "this invite was made by this node; use it on the other node".into(),
            )
            .into());
        }
        let key = format!("pk_{}", secret());
        let req = PairRequest {
            secret: c.secret.clone(),
            node_id: me.node_id,
            org_id: me.org_id.to_string(),
            org_name: me.org_name.clone(),
            role: me.role,
            url: self.public_url(),
            key: key.clone(),
            tls: self.pin_for(self.public_url().as_deref()),
        };
        let body =
            serde_json::to_value(&req).map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let url = format!("{}/api/v1/peers/accept", c.url.trim_end_matches('/'));
        let (status, text) =
            crate::http_client::request_pinned("POST", &url, &[], Some(&body), c.tls.as_deref())
                .await
                .map_err(|e| ServiceError::Unavailable(format!("pairing failed: {e}")))?;
        if status != 200 {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["detail"].as_str().map(String::from))
                .unwrap_or(text);
            return Err(ServiceError::Unavailable(format!(
                "the inviting node refused pairing ({status}): {detail}"
            )));
        }
        let a: PairAnswer = serde_json::from_str(&text).map_err(|e| {
            ServiceError::Unavailable(format!("the inviting node answered oddly: {e}"))
        })?;
        if a.node_id != c.node || a.org_id != c.org {
            return Err(ServiceError::Unavailable(
                "the node at the invite's address is not the one that made the invite".into(),
            ));
        }
        let org = OrgId::parse(&a.org_id)?;
        let now = self.now();
        let peer = Peer {
            node_id: a.node_id,
            org_id: org.clone(),
            org_name: a.org_name.clone(),
            role: a.role,
            url: Some(c.url),
            key,
            tls: c.tls,
            created_at: now,
            last_sync_at: None,
        };
        let p2 = peer.clone();
        self.store
            .write(move |ctx| -> Result<_> {
                let me = ctx.identity()?.clone();
                check_peer_org(&me, &org, a.role)?;
                let tx = ctx.tx();
                ensure_partner(tx, &me, &org, &a.org_name, a.role, now)?;
                peers::put_peer(tx, &p2)?;
                Ok(())
            })
            .await?;
        let _ = self.peer_events.send(PeerEvent::Added(peer.node_id));
        Ok(peer)
    }

    pub async fn peers(&self) -> Result<Vec<Peer>> {
        Ok(self.store.read(peers::list_peers).await?)
    }

    pub async fn peer(&self, node: Uuid) -> Result<Option<Peer>> {
        Ok(self.store.read(move |tx| peers::get_peer(tx, node)).await?)
    }

    /// Revokes a peer: its key stops working and live connections are cut.
    pub async fn remove_peer(&self, node: Uuid) -> Result<()> {
        self.store
            .write(move |ctx| -> Result<_> {
                if peers::get_peer_w(ctx.read_tx(), node)?.is_none() {
                    return Err(ServiceError::NotFound(format!("peer {node} not found")));
                }
                peers::remove_peer(ctx.tx(), node)?;
                Ok(())
            })
            .await?;
        let _ = self.peer_events.send(PeerEvent::Removed(node));
        Ok(())
    }

    /// Checks a connecting peer's key.
    pub async fn authenticate_peer(&self, node: Uuid, key: &str) -> Result<Peer> {
        match self.peer(node).await? {
            Some(p) if keys_equal(&p.key, key) => Ok(p),
            _ => Err(ServiceError::Unauthenticated),
        }
    }
}
