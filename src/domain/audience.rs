//! Who a peer is to us, and so what it may see and on whose authority it writes.
//!
//! A peer is either another site of our own org, which holds everything we hold, or a node of
//! one partner org, which holds exactly the conversations with that org. Every decision about
//! what a peer may receive or learn — documents, their ids, feed positions — goes through
//! [`Audience::may_see`].

use super::{OrgId, Participants, policy::Authority};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    OwnSite,
    Partner(OrgId),
}

impl Audience {
    /// The audience of a peer of org `peer_org`, seen from our org `me`.
    pub fn of(peer_org: &OrgId, me: &OrgId) -> Audience {
        if peer_org == me {
            Audience::OwnSite
        } else {
            Audience::Partner(peer_org.clone())
        }
    }

    /// Whether a conversation whose other party (seen from us) is `partner` is shared with
    /// this audience.
    pub fn may_see_partner(&self, partner: &OrgId) -> bool {
        match self {
            Audience::OwnSite => true,
            Audience::Partner(o) => o == partner,
        }
    }

    /// Whether a conversation between `p` is shared with this audience.
    pub fn may_see(&self, p: &Participants) -> bool {
        match self {
            Audience::OwnSite => true,
            Audience::Partner(o) => p.includes(o),
        }
    }

    /// The authority this audience's changes are written under.
    pub fn authority(&self) -> Authority {
        match self {
            Audience::OwnSite => Authority::OwnSite,
            Audience::Partner(o) => Authority::Org(o.clone()),
        }
    }
}
