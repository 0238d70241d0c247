//! Pairing with peer nodes, and the peer list.
//!
//! Pairing, step by step: an admin of node A makes an invite *for* someone — a partner org
//! (id, name, role) or another site of A's own org. The code carries A's address, node id,
//! org, identity key, whom the invite is for, and a one-time secret (valid 24 h). Node B,
//! given the code, first checks that it is the org the invite names (and shows the admin
//! "this invite pairs you as B with A"); then calls A's `POST /api/v1/peers/accept` with the
//! secret, its identity and its identity key. A checks the secret, checks that B presents
//! exactly the org the invite is for and that B's node id is not already a peer, burns the
//! secret, records B, and answers with its identity; B checks the answer against the code and
//! records A. From then on every sync connection is proven at both ends
//! (`peer_auth`), and either side can revoke the other.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::invites::{self, INVITE_VERSION, InviteCode, InviteTarget, claim_problem};
use super::peer_auth::parse_public_key;
use super::*;
use crate::domain::{OrgId, Role, check_text, limits};
use crate::store::accounts::{self, Partner};
use crate::store::peers::{self, Invite, InviteFor, Peer};

const INVITE_TTL_HOURS: i64 = 24;

/// B's side of pairing, sent to A.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairRequest {
    pub secret: String,
    pub node_id: Uuid,
    pub org_id: String,
    pub org_name: String,
    pub role: Role,
    pub url: Option<String>,
    /// B's identity key (hex Ed25519).
    pub public_key: String,
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
    pub public_key: String,
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
    hex::encode(super::peer_auth::nonce())
}

pub(super) fn check_pin(field: &'static str, pin: &Option<String>) -> Result<()> {
    match pin {
        Some(p) if !crate::tls::is_fingerprint(p) => Err(DomainError::invalid(
            field,
            "is not a certificate fingerprint (64 hex digits)",
        )
        .into()),
        _ => Ok(()),
    }
}

pub(super) fn check_key(field: &'static str, key: &str) -> Result<()> {
    if parse_public_key(key).is_none() {
        return Err(
            DomainError::invalid(field, "is not an Ed25519 public key (64 hex digits)").into(),
        );
    }
    Ok(())
}

/// The refusal for a node id that is already a peer: re-pairing must never take over an
/// existing peer's record, sync states and cursor.
pub(super) fn already_paired(p: &Peer) -> ServiceError {
    DomainError::Conflict(format!(
        "node {} is already paired (org {}); to pair it again, remove the old peer first (`parley peer remove {}`)",
        p.node_id, p.org_id, p.node_id
    ))
    .into()
}

/// Records the peer's org as a partner if it is a new partner org; runs inside a write job.
pub(super) fn ensure_partner(
    tx: &redb::WriteTransaction,
    me: &crate::store::Identity,
    org: &OrgId,
    name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<()> {
    if *org == me.org_id {
        return Ok(());
    }
    match accounts::get_partner_w(tx, org)? {
        Some(p) if p.role != role => Err(DomainError::Conflict(format!(
            "{org} is recorded here as a {}, not a {role}",
            p.role
        ))
        .into()),
        Some(_) => Ok(()),
        None => Ok(accounts::put_partner(
            tx,
            &Partner {
                id: org.clone(),
                name: name.to_string(),
                role,
                created_at: now,
            },
        )?),
    }
}

/// Maps the inviting node's refusal to ours: a refusal is permanent (the same request will
/// be refused again), only an unreachable or failing node is worth retrying.
pub(super) fn remote_refusal(status: u16, detail: String) -> ServiceError {
    let msg = format!("the inviting node refused pairing: {detail}");
    match status {
        400 | 422 => DomainError::Unprocessable(msg).into(),
        401 | 403 | 404 | 410 => DomainError::Forbidden(msg).into(),
        409 => DomainError::Conflict(msg).into(),
        _ => ServiceError::Unavailable(format!("{msg} ({status}); try again later")),
    }
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
    pub(super) fn pin_for(&self, url: Option<&str>) -> Option<String> {
        let https = url.is_some_and(|u| u.starts_with("https://"));
        https
            .then(|| self.tls_fingerprint.read().ok().and_then(|f| f.clone()))
            .flatten()
    }

    pub fn subscribe_peers(&self) -> broadcast::Receiver<PeerEvent> {
        self.peer_events.subscribe()
    }

    /// Whether peers may have loopback addresses (`allow_loopback_peers`; tests and
    /// single-machine setups).
    pub fn set_allow_loopback_peers(&self, allow: bool) {
        self.allow_loopback_peers
            .store(allow, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn allow_loopback_peers(&self) -> bool {
        self.allow_loopback_peers
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A peer's address as written: well-formed and allowed by the outbound-address rules.
    pub(super) fn check_peer_url(&self, field: &'static str, url: &str) -> Result<()> {
        crate::http_client::check_peer_url(url, self.allow_loopback_peers())
            .map_err(|e| DomainError::invalid(field, e.to_string()))?;
        Ok(())
    }

    /// Makes a one-time invite code for a node of `target` to pair with this one.
    pub async fn create_invite(
        &self,
        p: &Principal,
        target: InviteTarget,
    ) -> Result<(String, DateTime<Utc>)> {
        p.require_admin()?;
        let url = self.public_url().ok_or_else(|| {
            DomainError::Unprocessable("this node does not know the address partners should dial; start it with --public-url http://HOST:PORT".into())
        })?;
        let wanted = match &target {
            InviteTarget::Partner {
                org_id,
                org_name,
                role,
            } => {
                if let Some(n) = org_name {
                    check_text("org_name", n, limits::ORG_NAME_CHARS, true)?;
                }
                Some((OrgId::parse(org_id)?, org_name.clone(), *role))
            }
            InviteTarget::OwnSite => None,
        };
        let key = self.node_public_key().await?;
        let s = secret();
        let now = self.now();
        let hash = sha(&s);
        let expires = now + Duration::hours(INVITE_TTL_HOURS);
        let (me, intended) = self
            .store
            .write(move |ctx| -> Result<_> {
                let me = ctx.identity()?.clone();
                let intended = match wanted {
                    None => InviteFor::OwnSite,
                    Some((org, name, role)) => {
                        if org == me.org_id {
                            return Err(DomainError::Unprocessable(format!(
                                "{org} is this node's own org; to add another site of it make an own-site invite (`parley peer invite --own-site`)"
                            ))
                            .into());
                        }
                        let known = accounts::get_partner_w(ctx.read_tx(), &org)?;
                        let (name, role) = match (known, name, role) {
                            (Some(p), _, Some(r)) if r != p.role => {
                                return Err(DomainError::Unprocessable(format!(
                                    "{org} is a partner here as a {}, not a {r}",
                                    p.role
                                ))
                                .into());
                            }
                            (Some(p), name, _) => (name.unwrap_or(p.name), p.role),
                            (None, Some(n), Some(r)) => (n, r),
                            (None, _, _) => {
                                return Err(DomainError::Unprocessable(format!(
                                    "{org} is not a partner yet: give its name and role too (--name, --role)"
                                ))
                                .into());
                            }
                        };
                        invites::check_partner_target(&me, &org, role)?;
                        InviteFor::Partner {
                            org_id: org,
                            org_name: name.trim().to_string(),
                            role,
                        }
                    }
                };
                let inv = Invite {
                    created_at: now,
                    expires_at: expires,
                    intended: Some(intended.clone()),
                };
                peers::put_invite(ctx.tx(), &hash, &inv)?;
                Ok((me, intended))
            })
            .await?;
        let (for_org, for_name, for_role, own_site) = match intended {
            InviteFor::OwnSite => (me.org_id.to_string(), me.org_name.clone(), me.role, true),
            InviteFor::Partner {
                org_id,
                org_name,
                role,
            } => (org_id.to_string(), org_name, role, false),
        };
        let code = InviteCode {
            v: INVITE_VERSION,
            tls: self.pin_for(Some(&url)),
            url,
            node: me.node_id,
            org: me.org_id.to_string(),
            org_name: me.org_name.clone(),
            role: me.role,
            key,
            for_org,
            for_name,
            for_role,
            own_site,
            secret: s,
        };
        Ok((code.encode(), expires))
    }

    /// A's side: checks the invite and the claim, burns the invite, records the peer. Any
    /// refusal stores nothing and is logged.
    pub async fn accept_pairing(&self, req: PairRequest) -> Result<PairAnswer> {
        let (node, claimed) = (req.node_id, req.org_id.clone());
        let r = self.accept_inner(req).await;
        match &r {
            Ok(_) => tracing::info!(%node, org = %claimed, "paired with a new peer"),
            Err(e) => {
                tracing::warn!(%node, org = %claimed, error = %e, "refused a pairing request")
            }
        }
        r
    }

    async fn accept_inner(&self, req: PairRequest) -> Result<PairAnswer> {
        let org = OrgId::parse(&req.org_id)?;
        check_text("org_name", &req.org_name, limits::ORG_NAME_CHARS, true)?;
        if let Some(u) = &req.url {
            self.check_peer_url("url", u)?;
        }
        check_pin("tls", &req.tls)?;
        check_key("public_key", &req.public_key)?;
        let my_key = self.node_public_key().await?;
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
                let intended = invite.intended.ok_or_else(|| {
                    DomainError::Forbidden(
                        "this invite was made by an older Parley and names no org; ask for a new one".into(),
                    )
                })?;
                if req.node_id == me.node_id {
                    return Err(DomainError::Unprocessable(
                        "a node cannot pair with itself".into(),
                    )
                    .into());
                }
                if let Some(problem) = claim_problem(&me, &intended, &org, req.role) {
                    return Err(DomainError::Forbidden(problem).into());
                }
                if let Some(old) = peers::get_peer_w(ctx.read_tx(), req.node_id)? {
                    return Err(already_paired(&old));
                }
                let org_name = match &intended {
                    InviteFor::Partner { org_name, .. } => org_name.clone(),
                    InviteFor::OwnSite => me.org_name.clone(),
                };
                let tx = ctx.tx();
                ensure_partner(tx, &me, &org, &org_name, req.role, now)?;
                peers::remove_invite(tx, &hash)?;
                let peer = Peer {
                    node_id: req.node_id,
                    org_id: org,
                    org_name,
                    role: req.role,
                    url: req.url,
                    key: String::new(),
                    public_key: Some(req.public_key),
                    tls: req.tls,
                    created_at: now,
                    last_sync_at: None,
                    recover_since: None,
                };
                peers::put_peer(tx, &peer)?;
                let a = PairAnswer {
                    node_id: me.node_id,
                    org_id: me.org_id.to_string(),
                    org_name: me.org_name.clone(),
                    role: me.role,
                    public_key: my_key,
                };
                Ok((a, peer.node_id))
            })
            .await?;
        let _ = self.peer_events.send(PeerEvent::Added(node));
        Ok(answer)
    }

    pub async fn peers(&self) -> Result<Vec<Peer>> {
        Ok(self.store.read(peers::list_peers).await?)
    }

    pub async fn peer(&self, node: Uuid) -> Result<Option<Peer>> {
        Ok(self.store.read(move |tx| peers::get_peer(tx, node)).await?)
    }

    /// Revokes a peer: its key stops working and live connections are cut.
    pub async fn remove_peer(&self, p: &Principal, node: Uuid) -> Result<()> {
        p.require_admin()?;
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
}

impl Service {
    /// How many conversations shared with `peer` changed after position `since` of the feed
    /// that peer reads (at most `cap`): what waits for a peer that is away.
    pub async fn shared_changes_since(&self, peer: &Peer, since: u64, cap: usize) -> Result<u64> {
        let me = self.identity().await?.ok_or(StoreError::NoIdentity)?;
        let scope = crate::store::sync_host::PeerScope {
            peer: peer.clone(),
            me: me.org_id,
        };
        let store = self.store.clone();
        Ok(blocking(move || store.shared_changes_since(&scope, since, cap)).await??)
    }
}

impl Service {
    /// Which peers changes to these conversations can concern (in order): the replicator
    /// wakes only their links.
    pub async fn concerns(&self, ids: Vec<Uuid>) -> Result<Vec<crate::store::audience::Concern>> {
        let store = self.store.clone();
        let raw: Vec<u128> = ids.iter().map(|u| u.as_u128()).collect();
        Ok(blocking(move || store.concerns(&raw)).await??)
    }
}
