//! Invite codes and the one rule of pairing: an invite names who it is for (a partner org, or
//! another site of our own org), and only a node of exactly that org may use it. Both ends
//! apply [`claim_problem`]: the inviting node to the accepting node's claim, the accepting node
//! to itself before it calls out (so a wrong code is refused before anything travels).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Result;
use crate::domain::{DomainError, OrgId, Role};
use crate::store::Identity;
use crate::store::peers::InviteFor;

const INVITE_PREFIX: &str = "parley-invite:";
/// Version 2 names the org the invite is for and carries the inviter's identity key; a
/// version-1 code (which did neither) is refused with a request to make a new invite.
pub const INVITE_VERSION: u32 = 2;

/// What an invite code carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteCode {
    pub v: u32,
    pub url: String,
    /// The inviting node, its org and role.
    pub node: Uuid,
    pub org: String,
    pub org_name: String,
    pub role: Role,
    /// The inviting node's Ed25519 identity key (hex); the pairing node pins it.
    pub key: String,
    /// Who the invite is for: the accepting node must belong to exactly this org.
    pub for_org: String,
    pub for_name: String,
    pub for_role: Role,
    /// An invite for another site of the inviter's own org (`for_org` is then the inviter's).
    pub own_site: bool,
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
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        match v["v"].as_u64() {
            Some(1) => {
                return Err(DomainError::invalid(
                    "code",
                    "was made by an older Parley and does not say which org it is for; ask for a new invite",
                )
                .into());
            }
            Some(n) if n > INVITE_VERSION as u64 => {
                return Err(DomainError::invalid(
                    "code",
                    "was made by a newer Parley; upgrade this node",
                )
                .into());
            }
            _ => {}
        }
        let c: InviteCode = serde_json::from_value(v).map_err(|_| bad())?;
        // Names in a code are shown and stored like any other input.
        crate::domain::check_text(
            "code.org_name",
            &c.org_name,
            crate::domain::limits::ORG_NAME_CHARS,
            true,
        )?;
        crate::domain::check_text(
            "code.for_name",
            &c.for_name,
            crate::domain::limits::ORG_NAME_CHARS,
            false,
        )?;
        Ok(c)
    }

    /// Who the code says the invite is for.
    pub fn intended(&self) -> Result<InviteFor> {
        Ok(if self.own_site {
            InviteFor::OwnSite
        } else {
            InviteFor::Partner {
                org_id: OrgId::parse(&self.for_org)?,
                org_name: self.for_name.clone(),
                role: self.for_role,
            }
        })
    }
}

/// Who an admin makes an invite for.
#[derive(Debug, Clone)]
pub enum InviteTarget {
    /// A node of a partner org. For a partner this node already knows, name and role may be
    /// left out (they come from the partner record) — that is how a partner's second node is
    /// invited.
    Partner {
        org_id: String,
        org_name: Option<String>,
        role: Option<Role>,
    },
    OwnSite,
}

/// What a pairing node is shown before it pairs: "this invite pairs you as X with Y".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitePreview {
    pub inviter_node: Uuid,
    pub inviter_org: String,
    pub inviter_name: String,
    pub inviter_role: Role,
    pub for_org: String,
    pub for_name: String,
    pub for_role: Role,
    pub own_site: bool,
    /// Why this node cannot use the invite, if it cannot.
    pub problem: Option<String>,
}

/// Why a node of `org` (`role`) may not use an invite for `intended` made by `inviter`;
/// `None` when it may. The message names both sides so the admin knows whom to ask.
pub fn claim_problem(
    inviter: &Identity,
    intended: &InviteFor,
    org: &OrgId,
    role: Role,
) -> Option<String> {
    match intended {
        InviteFor::OwnSite if *org == inviter.org_id && role == inviter.role => None,
        InviteFor::OwnSite => Some(format!(
            "this invite is for another site of {} ({}); your node belongs to {org} ({role}). Ask {} for an invite made for {org}",
            inviter.org_id, inviter.role, inviter.org_id
        )),
        InviteFor::Partner {
            org_id, role: want, ..
        } if org_id == org && *want == role => None,
        InviteFor::Partner {
            org_id, role: want, ..
        } => Some(format!(
            "this invite is for org {org_id} ({want}); your node belongs to {org} ({role}). Ask {} for an invite made for {org}",
            inviter.org_id
        )),
    }
}

/// Whether a partner target is one this node may invite: not its own org, and of the other
/// role (partners trade across roles).
pub fn check_partner_target(me: &Identity, org: &OrgId, role: Role) -> Result<()> {
    if *org == me.org_id {
        return Err(DomainError::Unprocessable(format!(
            "{org} is this node's own org; to add another site of it make an own-site invite (`parley peer invite --own-site`)"
        ))
        .into());
    }
    if role == me.role {
        return Err(DomainError::Unprocessable(format!(
            "{org} would be a {role} like this node's org; partners trade across roles"
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity {
            node_id: Uuid::new_v4(),
            org_id: OrgId::parse("acme").unwrap(),
            org_name: "Acme".into(),
            role: Role::Retailer,
            created_at: chrono::Utc::now(),
            actor: None,
        }
    }

    #[test]
    fn names_in_a_code_meet_the_text_rules() {
        let code = |org_name: &str| {
            InviteCode {
                v: INVITE_VERSION,
                url: "http://10.0.0.5:7878".into(),
                node: Uuid::new_v4(),
                org: "acme".into(),
                org_name: org_name.into(),
                role: Role::Retailer,
                key: "00".repeat(32),
                for_org: "bolt".into(),
                for_name: "Bolt".into(),
                for_role: Role::Supplier,
                own_site: false,
                secret: "s".into(),
                tls: None,
            }
            .encode()
        };
        assert!(InviteCode::decode(&code("Acme Retail")).is_ok());
        for bad in [
            "Acme\u{202E}liateR",
            "A\u{7}\u{1b}[31m",
            &"x".repeat(3000),
            "\u{200B}",
        ] {
            assert!(InviteCode::decode(&code(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_the_named_org_may_use_an_invite() {
        let me = me();
        let org = |s: &str| OrgId::parse(s).unwrap();
        let nova = InviteFor::Partner {
            org_id: org("nova"),
            org_name: "Nova".into(),
            role: Role::Supplier,
        };
        assert_eq!(
            claim_problem(&me, &nova, &org("nova"), Role::Supplier),
            None
        );
        for (o, r) in [
            ("acme", Role::Retailer),
            ("zenith", Role::Supplier),
            ("nova", Role::Retailer),
        ] {
            let p = claim_problem(&me, &nova, &org(o), r).expect("refused");
            assert!(p.contains("for org nova (supplier)"), "{p}");
            assert!(p.contains(&format!("belongs to {o}")), "{p}");
        }
        let site = InviteFor::OwnSite;
        assert_eq!(
            claim_problem(&me, &site, &org("acme"), Role::Retailer),
            None
        );
        assert!(claim_problem(&me, &site, &org("nova"), Role::Supplier).is_some());
        assert!(claim_problem(&me, &site, &org("acme"), Role::Supplier).is_some());
    }

    #[test]
    fn old_and_foreign_codes_are_refused_with_a_reason() {
        let old = format!(
            "{INVITE_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(br#"{"v":1,"url":"http://x","node":"00000000-0000-0000-0000-000000000000","org":"a","secret":"s"}"#)
        );
        let e = InviteCode::decode(&old).unwrap_err().to_string();
        assert!(e.contains("older Parley"), "{e}");
        assert!(InviteCode::decode("garbage").is_err());
    }
}
