//! The inbox row of a conversation: derived from the document, stored in the index, and the
//! source of the facets that the inbox filters on.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;

/// Characters of the last message kept in the row, for a one-line preview.
const PREVIEW_CHARS: usize = 140;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub id: Uuid,
    pub kind: Kind,
    /// The other org, seen from this node's org.
    pub partner: OrgId,
    pub subject: String,
    pub topic: Option<Topic>,
    pub reference_id: Option<String>,
    pub state: State,
    pub progress: Option<Progress>,
    pub due_date: Option<NaiveDate>,
    pub created_by: Author,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub message_count: u32,
    pub last_message_org: Option<OrgId>,
    pub last_message_preview: Option<String>,
    /// The user of our org assigned to it (from the team document; never the partner's).
    #[serde(default)]
    pub assignee: Option<String>,
}

impl Summary {
    pub fn of(c: &Conversation, me: &OrgId) -> Summary {
        let last = c.messages.last();
        Summary {
            id: c.id,
            kind: c.kind,
            partner: c.participants.other(me).clone(),
            subject: c.subject.clone(),
            topic: c.topic.clone(),
            reference_id: c.reference_id.clone(),
            state: c.state,
            progress: c.progress,
            due_date: c.due_date,
            created_by: c.created_by.clone(),
            created_at: c.created_at,
            last_activity_at: c.last_activity_at(),
            message_count: c.messages.len() as u32,
            last_message_org: last.map(|m| m.author.org.clone()),
            last_message_preview: last.map(|m| {
                // A message of files only is previewed by its files' names.
                let text = if m.body.trim().is_empty() && !m.attachments.is_empty() {
                    let names: Vec<&str> = m.attachments.iter().map(|a| a.name.as_str()).collect();
                    format!("Files: {}", names.join(", "))
                } else {
                    m.body.clone()
                };
                text.chars().take(PREVIEW_CHARS).collect()
            }),
            assignee: None,
        }
    }

    pub fn overdue(&self, today: NaiveDate) -> bool {
        is_overdue(self.kind, self.state, self.progress, self.due_date, today)
    }

    /// The due date of a task that may still become overdue.
    pub fn overdue_watch(&self) -> Option<NaiveDate> {
        self.due_date
            .filter(|_| overdue_eligible(self.kind, self.state, self.progress))
    }

    /// Inbox order key: newest activity first, ties broken by id.
    pub fn activity_ms(&self) -> i64 {
        self.last_activity_at.timestamp_millis()
    }

    /// The filter values this row is listed under. Overdue is not among them: it depends on the
    /// date and is kept by the store's overdue sweep.
    pub fn facets(&self) -> Vec<String> {
        let mut f = vec![
            Facet::All.key(),
            Facet::Kind(self.kind).key(),
            Facet::State(self.state).key(),
            Facet::Partner(self.partner.clone()).key(),
            Facet::StateKind(self.state, self.kind).key(),
        ];
        if let Some(p) = self.progress {
            f.push(Facet::Progress(p).key());
        }
        if let Some(t) = &self.topic {
            f.push(Facet::TopicKind(t.kind).key());
            f.push(Facet::TopicRef(t.reference.clone()).key());
        }
        if let Some(r) = &self.reference_id {
            f.push(Facet::ReferenceId(r.clone()).key());
        }
        if self.awaiting_reply() {
            f.push(Facet::AwaitingReply.key());
            f.push(Facet::ActionRequired.key());
        }
        if self.active_task() {
            f.push(Facet::ActiveTask.key());
        }
        if self.due_date.is_none() {
            f.push(Facet::NoDueDate.key());
        }
        match &self.assignee {
            Some(u) => f.push(Facet::Assignee(u.clone()).key()),
            None => f.push(Facet::Unassigned.key()),
        }
        f
    }

    /// The one folder this row is shown under when a search spans them all: the most
    /// pressing that lists it.
    pub fn folder(&self, today: NaiveDate) -> &'static str {
        if self.state == State::Resolved {
            "resolved"
        } else if self.awaiting_reply() || self.overdue(today) {
            "action"
        } else if self.active_task() {
            "tasks"
        } else {
            "inbox"
        }
    }

    /// Open, and the last message came from the partner: the partner waits for our answer.
    /// A finished task (completed or cancelled) waits for nobody, whoever wrote last.
    pub fn awaiting_reply(&self) -> bool {
        self.state == State::Open
            && self.last_message_org.as_ref() == Some(&self.partner)
            && !matches!(
                self.progress,
                Some(Progress::Completed | Progress::Cancelled)
            )
    }

    /// An open task that is not finished: the Tasks folder. The same tasks can become overdue.
    pub fn active_task(&self) -> bool {
        overdue_eligible(self.kind, self.state, self.progress)
    }

    /// Whether this row passes a filter; used when a query combines several.
    pub fn matches(&self, f: &Facet, today: NaiveDate) -> bool {
        match f {
            Facet::All => true,
            Facet::Kind(k) => self.kind == *k,
            Facet::State(s) => self.state == *s,
            Facet::Partner(p) => &self.partner == p,
            Facet::Progress(p) => self.progress == Some(*p),
            Facet::TopicKind(k) => self.topic.as_ref().is_some_and(|t| t.kind == *k),
            Facet::TopicRef(r) => self.topic.as_ref().is_some_and(|t| &t.reference == r),
            Facet::ReferenceId(r) => self.reference_id.as_ref() == Some(r),
            Facet::Overdue => self.overdue(today),
            Facet::StateKind(s, k) => self.state == *s && self.kind == *k,
            Facet::AwaitingReply => self.awaiting_reply(),
            Facet::ActionRequired => self.awaiting_reply() || self.overdue(today),
            Facet::ActiveTask => self.active_task(),
            Facet::NoDueDate => self.due_date.is_none(),
            Facet::Assignee(u) => self.assignee.as_ref() == Some(u),
            Facet::Unassigned => self.assignee.is_none(),
        }
    }
}

/// One indexed filter value of the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facet {
    All,
    Kind(Kind),
    State(State),
    Partner(OrgId),
    Progress(Progress),
    TopicKind(TopicKind),
    TopicRef(String),
    ReferenceId(String),
    Overdue,
    /// State and kind together (e.g. open tasks): one index range instead of two filters.
    StateKind(State, Kind),
    /// Open, with the partner's message last.
    AwaitingReply,
    /// Overdue or awaiting reply. Like overdue it depends on the date, so the overdue part is
    /// kept by the store's sweep.
    ActionRequired,
    /// An open task, neither completed nor cancelled (the Tasks folder).
    ActiveTask,
    /// Without a due date: the part of the due-date order that follows the dated ones.
    NoDueDate,
    /// Assigned to this user of our org.
    Assignee(String),
    /// Assigned to nobody.
    Unassigned,
}

impl Facet {
    /// Replaces a state filter and a kind filter by the one facet that holds both, so such a
    /// query (the Tasks folder: open tasks) walks one index range and counts exactly.
    /// Two different states (or kinds) are left as they are: each is then checked on its own,
    /// so nothing matches, rather than one silently standing for both.
    pub fn combine(filters: &mut Vec<Facet>) {
        let mut states = filters.iter().filter_map(|f| match f {
            Facet::State(s) => Some(*s),
            _ => None,
        });
        let s = states.next().filter(|s| states.all(|t| t == *s));
        let mut kinds = filters.iter().filter_map(|f| match f {
            Facet::Kind(k) => Some(*k),
            _ => None,
        });
        let k = kinds.next().filter(|k| kinds.all(|t| t == *k));
        if let (Some(s), Some(k)) = (s, k) {
            filters.retain(|f| !matches!(f, Facet::State(_) | Facet::Kind(_)));
            filters.push(Facet::StateKind(s, k));
        }
    }

    /// The index key. Prefixes keep values of different filters apart.
    pub fn key(&self) -> String {
        match self {
            Facet::All => "all".into(),
            Facet::Kind(k) => format!("kind:{k}"),
            Facet::State(s) => format!("state:{s}"),
            Facet::Partner(p) => format!("partner:{p}"),
            Facet::Progress(p) => format!("progress:{p}"),
            Facet::TopicKind(k) => format!("topic_kind:{k}"),
            Facet::TopicRef(r) => format!("topic_ref:{r}"),
            Facet::ReferenceId(r) => format!("reference_id:{r}"),
            Facet::Overdue => "overdue".into(),
            Facet::StateKind(s, k) => format!("state_kind:{s}:{k}"),
            Facet::AwaitingReply => "awaiting_reply".into(),
            Facet::ActionRequired => "action_required".into(),
            Facet::ActiveTask => "active_task".into(),
            Facet::NoDueDate => "no_due_date".into(),
            Facet::Assignee(u) => format!("assignee:{u}"),
            Facet::Unassigned => "unassigned".into(),
        }
    }
}

/// The folders of the inbox, decided here so that every client lists the same conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// Open conversations.
    Inbox,
    /// Open tasks that are not finished.
    Tasks,
    /// Awaiting our reply or overdue; never a finished task.
    Action,
    Resolved,
    /// Unread by the signed-in user, in any state; read marks are per user, so this folder is
    /// not a facet but the user's own unread entries.
    Unread,
    /// Everything (search across folders).
    All,
}

impl Folder {
    /// The facet the folder lists, if it is one.
    pub fn facet(self) -> Option<Facet> {
        match self {
            Folder::Inbox => Some(Facet::State(State::Open)),
            Folder::Tasks => Some(Facet::ActiveTask),
            Folder::Action => Some(Facet::ActionRequired),
            Folder::Resolved => Some(Facet::State(State::Resolved)),
            Folder::Unread | Folder::All => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facet_keys_are_distinct_per_filter() {
        let a = Facet::TopicRef("x".into()).key();
        let b = Facet::ReferenceId("x".into()).key();
        assert_ne!(a, b);
        assert_eq!(Facet::Kind(Kind::Task).key(), "kind:task");
        let mut f = vec![
            Facet::Kind(Kind::Task),
            Facet::Overdue,
            Facet::State(State::Open),
        ];
        Facet::combine(&mut f);
        assert_eq!(
            f,
            vec![Facet::Overdue, Facet::StateKind(State::Open, Kind::Task)]
        );
        // Two different states are both kept, so together they match nothing.
        let mut f = vec![
            Facet::State(State::Open),
            Facet::Kind(Kind::Task),
            Facet::State(State::Resolved),
        ];
        let before = f.clone();
        Facet::combine(&mut f);
        assert_eq!(f, before);
    }

    #[test]
    fn awaiting_reply_when_the_partner_wrote_last() {
        let me = OrgId::parse("acme").unwrap();
        let bolt = OrgId::parse("bolt").unwrap();
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut s = Summary {
            id: Uuid::nil(),
            kind: Kind::Message,
            partner: bolt.clone(),
            subject: "s".into(),
            topic: None,
            reference_id: None,
            state: State::Open,
            progress: None,
            due_date: None,
            created_by: Author {
                org: me.clone(),
                user: "u".into(),
            },
            created_at: t,
            last_activity_at: t,
            message_count: 1,
            last_message_org: Some(me),
            last_message_preview: None,
            assignee: None,
        };
        let today = t.date_naive();
        assert!(!s.matches(&Facet::ActionRequired, today));
        s.last_message_org = Some(bolt);
        assert!(s.facets().contains(&Facet::AwaitingReply.key()));
        assert!(s.matches(&Facet::ActionRequired, today));
        s.state = State::Resolved;
        assert!(!s.facets().contains(&Facet::ActionRequired.key()));
        // A finished task waits for nobody, even with the partner's message last.
        s.state = State::Open;
        s.kind = Kind::Task;
        s.progress = Some(Progress::InProgress);
        assert!(s.facets().contains(&Facet::ActionRequired.key()));
        assert!(s.facets().contains(&Facet::ActiveTask.key()));
        for done in [Progress::Completed, Progress::Cancelled] {
            s.progress = Some(done);
            let f = s.facets();
            assert!(!f.contains(&Facet::ActionRequired.key()), "{done:?}");
            assert!(!f.contains(&Facet::ActiveTask.key()), "{done:?}");
            assert!(!s.matches(&Facet::ActionRequired, today));
        }
    }
}
