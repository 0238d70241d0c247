//! Who is told what: notification kinds, a user's preferences, and the rule that turns an
//! activity into a kind for one user. Pure; the outbox (store) and the senders (`notify`)
//! call into it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::activity::{Activity, What};
use super::{DomainError, OrgId};

macro_rules! kinds {
    ($($v:ident = $s:literal, $label:literal, $default:ident;)+) => {
        /// What a user can be told about. Activity of our own colleagues is one kind of its
        /// own, whatever they did, so that it can be switched off as a whole (the default).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum NotifyKind { $($v),+ }
        impl NotifyKind {
            pub const ALL: &'static [NotifyKind] = &[$(NotifyKind::$v),+];
            pub fn as_str(self) -> &'static str { match self { $(NotifyKind::$v => $s),+ } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some(NotifyKind::$v),)+ _ => None } }
            /// How the settings page names it.
            pub fn label(self) -> &'static str { match self { $(NotifyKind::$v => $label),+ } }
            pub fn default_mode(self) -> Mode { match self { $(NotifyKind::$v => Mode::$default),+ } }
        }
    };
}

kinds! {
    NewConversation = "new_conversation", "A partner starts a conversation with us", Immediate;
    PartnerReplied = "partner_replied", "A partner replies", Immediate;
    TaskAssigned = "task_assigned", "A task is assigned to me", Immediate;
    TaskProgress = "task_progress", "A partner changes a task's progress or due date", Immediate;
    StateChanged = "state_changed", "A partner resolves or reopens a conversation", Immediate;
    DueSoon = "due_soon", "A task we must do is due soon", Immediate;
    Overdue = "overdue", "A task we must do is overdue", Immediate;
    ColleagueActivity = "colleague_activity", "A colleague of our org writes or changes something", Never;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Immediate,
    Digest,
    Never,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "immediate" => Some(Mode::Immediate),
            "digest" => Some(Mode::Digest),
            "never" => Some(Mode::Never),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Immediate => "immediate",
            Mode::Digest => "digest",
            Mode::Never => "never",
        }
    }
}

/// A user's choices; a kind not listed takes its default, so a kind added later reaches
/// existing users with its default instead of silently never.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefs(pub BTreeMap<NotifyKind, Mode>);

impl Prefs {
    pub fn mode(&self, k: NotifyKind) -> Mode {
        self.0.get(&k).copied().unwrap_or_else(|| k.default_mode())
    }
}

/// Where and how a user is told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNotify {
    pub email: Option<String>,
    #[serde(default)]
    pub prefs: Prefs,
}

/// The kind of `a` for a user of org `me`, or `None` when this user is not to be told of it
/// at all: their own action, and changes (subject, reference ID) nobody asked mail for.
pub fn kind_for(a: &Activity, me: &OrgId, user: &str) -> Option<NotifyKind> {
    if &a.by.org == me {
        if a.by.user == user {
            return None;
        }
        return match a.what {
            What::Updated { .. } => None,
            _ => Some(NotifyKind::ColleagueActivity),
        };
    }
    Some(match a.what {
        What::Created => NotifyKind::NewConversation,
        What::Message { .. } => NotifyKind::PartnerReplied,
        What::Progress { .. } | What::DueDate { .. } => NotifyKind::TaskProgress,
        What::Resolved | What::Reopened => NotifyKind::StateChanged,
        What::Updated { .. } => return None,
    })
}

/// Checks an email address as a user may set it: one `local@domain`, no spaces, no control
/// characters, no display name or second address that could smuggle a header.
pub fn check_email(s: &str) -> Result<String, DomainError> {
    let t = s.trim();
    let bad = |why: &str| {
        DomainError::invalid(
            "email",
            format!("{why}; give one address such as ann@example.com"),
        )
    };
    if t.is_empty() || t.len() > 254 {
        return Err(bad("must be 1 to 254 characters"));
    }
    if t.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "<>,;\"()[]\\".contains(c))
    {
        return Err(bad("has a character an address cannot hold"));
    }
    let Some((local, domain)) = t.rsplit_once('@') else {
        return Err(bad("has no @"));
    };
    if local.is_empty() || local.contains('@') || local.len() > 64 {
        return Err(bad("has no usable part before the @"));
    }
    if domain.is_empty()
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
        || !domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
    {
        return Err(bad("has no usable domain after the @"));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Author;

    fn act(org: &str, user: &str, what: What) -> Activity {
        Activity {
            what,
            by: Author {
                org: OrgId::parse(org).unwrap(),
                user: user.into(),
            },
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn own_actions_are_never_told_and_colleagues_default_to_never() {
        let me = OrgId::parse("bolt").unwrap();
        let mine = act("bolt", "bo", What::Resolved);
        assert_eq!(kind_for(&mine, &me, "bo"), None);
        assert_eq!(
            kind_for(&mine, &me, "cy"),
            Some(NotifyKind::ColleagueActivity)
        );
        assert_eq!(
            Prefs::default().mode(NotifyKind::ColleagueActivity),
            Mode::Never
        );
        let theirs = act("acme", "ann", What::Created);
        assert_eq!(
            kind_for(&theirs, &me, "bo"),
            Some(NotifyKind::NewConversation)
        );
        assert_eq!(
            Prefs::default().mode(NotifyKind::PartnerReplied),
            Mode::Immediate
        );
    }

    #[test]
    fn addresses_that_could_carry_a_header_are_refused() {
        assert_eq!(check_email(" ann@example.com ").unwrap(), "ann@example.com");
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example.com\r\nBcc: eve@evil.test",
            "Ann <ann@example.com>",
            "ann@example.com, eve@evil.test",
            "ann@exa mple.com",
            "ann@.example.com",
            "a@b@c.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} was taken");
        }
    }
}
