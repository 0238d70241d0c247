//! The pairing node's side: what an invite code would pair this node as (shown to the admin
//! first), and pairing with the node that made it. The code is checked against this node's
//! own identity before anything is sent, and the inviting node's answer against the code.

use super::invites::{InviteCode, InvitePreview, claim_problem};
use super::peers::{PairAnswer, PairRequest, PeerEvent};
use super::peers::{already_paired, check_key, check_pin, ensure_partner, remote_refusal};
use super::*;
use crate::domain::OrgId;
use crate::store::peers::{self, Peer};

impl Service {
    /// What an invite code would pair this node as, and with whom; `problem` says why this
    /// node cannot use it.
    pub async fn inspect_invite(
        &self,
        p: &Principal,
        code: &str,
    ) -> Result<(InviteCode, InvitePreview)> {
        p.require_admin()?;
        let c = InviteCode::decode(code)?;
        self.check_peer_url("code", &c.url)?;
        check_pin("code", &c.tls)?;
        check_key("code", &c.key)?;
        let me = self
            .identity()
            .await?
            .ok_or(ServiceError::Store(StoreError::NoIdentity))?;
        let inviter_org = OrgId::parse(&c.org)?;
        let intended = c.intended()?;
        let inviter = crate::store::Identity {
            node_id: c.node,
            org_id: inviter_org.clone(),
            org_name: c.org_name.clone(),
            role: c.role,
            created_at: me.created_at,
            actor: None,
        };
        let problem = if c.node == me.node_id {
            Some("this invite was made by this node; use it on the other node".to_string())
        } else if let Some(p) = claim_problem(&inviter, &intended, &me.org_id, me.role) {
            Some(p)
        } else if (inviter_org == me.org_id) != c.own_site {
            // Only an own-site invite makes a node of our org our site, and an own-site invite
            // only comes from our org.
            Some(format!(
                "this invite from {inviter_org} is not consistent about being for another site of the same org; ask for a new one"
            ))
        } else if inviter_org != me.org_id && c.role == me.role {
            Some(format!(
                "{inviter_org} is a {} like this node's org; partners trade across roles",
                c.role
            ))
        } else {
            self.peer(c.node)
                .await?
                .map(|p| already_paired(&p).to_string())
        };
        let preview = InvitePreview {
            inviter_node: c.node,
            inviter_org: c.org.clone(),
            inviter_name: c.org_name.clone(),
            inviter_role: c.role,
            for_org: c.for_org.clone(),
            for_name: c.for_name.clone(),
            for_role: c.for_role,
            own_site: c.own_site,
            problem,
        };
        Ok((c, preview))
    }

    /// B's side: pairs with the node that made `code`, if the code is for this node's org.
    /// With `recover`, the partner's node may give back our own org's past changes to the
    /// conversations shared with it, until the first full exchange completes
    /// (`Authority::Recovery`).
    pub async fn pair(&self, p: &Principal, code: &str, recover: bool) -> Result<Peer> {
        p.require_admin()?;
        let (c, preview) = self.inspect_invite(p, code).await?;
        if recover && c.own_site {
            return Err(DomainError::invalid(
                "recover",
                "a recovery pairing is for a partner's node; another site of your own org gives back your history without it",
            )
            .into());
        }
        if let Some(p) = preview.problem {
            tracing::warn!(inviter = %c.node, org = %c.org, problem = %p, "refused to use an invite");
            return Err(match self.peer(c.node).await? {
                Some(old) => already_paired(&old),
                None => DomainError::Forbidden(p).into(),
            });
        }
        let me = self
            .identity()
            .await?
            .ok_or(ServiceError::Store(StoreError::NoIdentity))?;
        let req = PairRequest {
            secret: c.secret.clone(),
            node_id: me.node_id,
            org_id: me.org_id.to_string(),
            org_name: me.org_name.clone(),
            role: me.role,
            url: self.public_url(),
            public_key: self.node_public_key().await?,
            tls: self.pin_for(self.public_url().as_deref()),
        };
        let body =
            serde_json::to_value(&req).map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let url = format!("{}/api/v1/peers/accept", c.url.trim_end_matches('/'));
        let dest = crate::http_client::Dest::Peer {
            pin: c.tls.as_deref(),
            allow_loopback: self.allow_loopback_peers(),
        };
        let (status, text) = crate::http_client::request("POST", &url, None, Some(&body), dest)
            .await
            .map_err(|e| match e {
                crate::http_client::HttpError::Address(m) => DomainError::invalid("code", m).into(),
                e => ServiceError::Unavailable(format!("pairing failed: {e}")),
            })?;
        if status != 200 {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["detail"].as_str().map(String::from))
                .unwrap_or(text);
            return Err(remote_refusal(status, detail));
        }
        let a: PairAnswer = serde_json::from_str(&text).map_err(|e| {
            ServiceError::Unavailable(format!("the inviting node answered oddly: {e}"))
        })?;
        if a.node_id != c.node || a.org_id != c.org || a.role != c.role || a.public_key != c.key {
            return Err(DomainError::Forbidden(
                "the node at the invite's address is not the one that made the invite".into(),
            )
            .into());
        }
        let org = OrgId::parse(&a.org_id)?;
        crate::domain::check_text(
            "org_name",
            &a.org_name,
            crate::domain::limits::ORG_NAME_CHARS,
            true,
        )?;
        let now = self.now();
        let peer = Peer {
            node_id: a.node_id,
            org_id: org.clone(),
            org_name: a.org_name.clone(),
            role: a.role,
            url: Some(c.url),
            key: String::new(),
            public_key: Some(a.public_key.clone()),
            tls: c.tls,
            created_at: now,
            last_sync_at: None,
            recover_since: recover.then_some(now),
        };
        let p2 = peer.clone();
        self.store
            .write(move |ctx| -> Result<_> {
                let me = ctx.identity()?.clone();
                if let Some(old) = peers::get_peer_w(ctx.read_tx(), p2.node_id)? {
                    return Err(already_paired(&old));
                }
                let tx = ctx.tx();
                ensure_partner(tx, &me, &org, &a.org_name, a.role, now)?;
                peers::put_peer(tx, &p2)?;
                Ok(())
            })
            .await?;
        if recover {
            tracing::warn!(
                peer = %peer.node_id,
                org = %peer.org_id,
                "paired for recovery: until the first full exchange, this partner's node may give back our own org's past changes to the conversations shared with it"
            );
        } else {
            tracing::info!(peer = %peer.node_id, org = %peer.org_id, "paired");
        }
        let _ = self.peer_events.send(PeerEvent::Added(peer.node_id));
        Ok(peer)
    }
}
