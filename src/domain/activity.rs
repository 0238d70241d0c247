//! What happened to a conversation between two of its versions: the facts that notifications
//! and webhooks are made of.
//!
//! Messages and history entries carry ids, so "new" means "an id the earlier version did not
//! have", never "later than the last activity": a partner's message written offline hours ago
//! sorts before our newer ones yet is still news when it arrives.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Author, Conversation, Progress};

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum What {
    /// The conversation was started (its first message is part of it).
    Created,
    /// A message was added after the first.
    Message {
        id: Uuid,
    },
    Resolved,
    Reopened,
    Progress {
        from: Option<Progress>,
        to: Option<Progress>,
    },
    DueDate {
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    },
    /// The subject or reference ID changed.
    Updated {
        field: String,
    },
}

impl What {
    /// The webhook event type: `[a-z_.]`, as the Standard Webhooks spec asks.
    pub fn event_type(&self) -> &'static str {
        match self {
            What::Created => "conversation.created",
            What::Message { .. } => "message.created",
            What::Resolved => "conversation.resolved",
            What::Reopened => "conversation.reopened",
            What::Progress { .. } => "task.progress_changed",
            What::DueDate { .. } => "task.due_date_changed",
            What::Updated { .. } => "conversation.updated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    #[serde(flatten)]
    pub what: What,
    pub by: Author,
    pub at: DateTime<Utc>,
}

/// What `after` holds that `before` did not: messages and history entries by time. `before`
/// is `None` for a conversation new here, which is its creation alone.
pub fn between(before: Option<&Conversation>, after: &Conversation) -> Vec<Activity> {
    let Some(b) = before else {
        // A conversation new here is one piece of news, however much history it brings (a
        // first sync of years of threads must not become a delivery per old message).
        return vec![Activity {
            what: What::Created,
            by: after.created_by.clone(),
            at: after.created_at,
        }];
    };
    let seen_msgs: HashSet<Uuid> = b.messages.iter().map(|m| m.id).collect();
    let seen_hist: HashSet<Uuid> = b.history.iter().map(|e| e.id).collect();
    let mut later: Vec<Activity> = Vec::new();
    for m in &after.messages {
        if !seen_msgs.contains(&m.id) {
            later.push(Activity {
                what: What::Message { id: m.id },
                by: m.author.clone(),
                at: m.sent_at,
            });
        }
    }
    for e in &after.history {
        if seen_hist.contains(&e.id) {
            continue;
        }
        let what = match e.action.as_str() {
            "resolved" => What::Resolved,
            "reopened" => What::Reopened,
            "progress" => What::Progress {
                from: e.from.as_deref().and_then(Progress::parse),
                to: e.to.as_deref().and_then(Progress::parse),
            },
            "due_date" => What::DueDate {
                from: e.from.as_deref().and_then(|s| s.parse().ok()),
                to: e.to.as_deref().and_then(|s| s.parse().ok()),
            },
            "subject" | "reference_id" => What::Updated {
                field: e.action.clone(),
            },
            // `created` is the creation itself, reported above for a conversation new here.
            _ => continue,
        };
        later.push(Activity {
            what,
            by: e.by.clone(),
            at: e.at,
        });
    }
    later.sort_by_key(|a| a.at);
    later
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Event, Kind, Message, OrgId, Participants, State};

    fn author(org: &str, user: &str) -> Author {
        Author {
            org: OrgId::parse(org).unwrap(),
            user: user.into(),
        }
    }

    fn conv() -> Conversation {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Conversation {
            id: Uuid::from_u128(1),
            kind: Kind::Task,
            subject: "Labels".into(),
            topic: None,
            reference_id: None,
            participants: Participants {
                retailer: OrgId::parse("acme").unwrap(),
                supplier: OrgId::parse("bolt").unwrap(),
            },
            created_by: author("acme", "ann"),
            created_at: t,
            messages: vec![Message {
                id: Uuid::from_u128(10),
                author: author("acme", "ann"),
                body: "Please print.".into(),
                sent_at: t,
                attachments: Vec::new(),
            }],
            state: State::Open,
            resolved_at: None,
            resolved_by: None,
            due_date: None,
            progress: Some(Progress::Open),
            history: vec![Event {
                id: Uuid::from_u128(20),
                at: t,
                by: author("acme", "ann"),
                action: "created".into(),
                from: None,
                to: None,
            }],
        }
    }

    #[test]
    fn a_new_conversation_is_one_creation() {
        let c = conv();
        let a = between(None, &c);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].what, What::Created);
    }

    #[test]
    fn an_old_message_arriving_late_is_still_news() {
        let before = conv();
        let mut after = before.clone();
        // Written offline before the conversation was even created here.
        after.messages.insert(
            0,
            Message {
                id: Uuid::from_u128(11),
                author: author("bolt", "bo"),
                body: "Done already.".into(),
                sent_at: before.created_at - chrono::Duration::hours(3),
                attachments: Vec::new(),
            },
        );
        after.history.push(Event {
            id: Uuid::from_u128(21),
            at: before.created_at + chrono::Duration::minutes(1),
            by: author("bolt", "bo"),
            action: "progress".into(),
            from: Some("open".into()),
            to: Some("completed".into()),
        });
        let a = between(Some(&before), &after);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(
            a[0].what,
            What::Message {
                id: Uuid::from_u128(11)
            }
        );
        assert_eq!(
            a[1].what,
            What::Progress {
                from: Some(Progress::Open),
                to: Some(Progress::Completed)
            }
        );
        assert!(between(Some(&after), &after).is_empty());
    }
}
