//! The conversation as the domain sees it: the typed view of one Automerge document, and
//! the rules for changing it. `doc.rs` maps this view to and from the document.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DomainError, OrgId, limits};

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $s),+ } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some($name::$variant),)+ _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

str_enum!(
    /// Which side of a trading relationship an org is on.
    Role { Retailer = "retailer", Supplier = "supplier" }
);
str_enum!(
    /// A message is a question or notice; a task is a request tracked to completion.
    Kind { Message = "message", Task = "task" }
);
str_enum!(
    /// Open conversations sit in the Inbox; resolved ones in the Resolved folder.
    State { Open = "open", Resolved = "resolved" }
);
str_enum!(
    /// Progress of a task.
    Progress { Open = "open", InProgress = "in_progress", Completed = "completed", Cancelled = "cancelled" }
);
str_enum!(
    /// What a topic links to.
    TopicKind {
        Account = "account", Order = "order", Item = "item", Return = "return",
        Shipment = "shipment", Invoice = "invoice", Other = "other",
    }
);

impl Role {
    pub fn other(self) -> Role {
        match self {
            Role::Retailer => Role::Supplier,
            Role::Supplier => Role::Retailer,
        }
    }
}

/// A typed link to the business object a conversation is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub kind: TopicKind,
    #[serde(rename = "ref")]
    pub reference: String,
    pub label: Option<String>,
    pub url: Option<String>,
}

impl Topic {
    pub fn validate(&self) -> Result<(), DomainError> {
        check_text("topic.ref", &self.reference, limits::TOPIC_REF_CHARS, true)?;
        if let Some(l) = &self.label {
            check_text("topic.label", l, limits::TOPIC_LABEL_CHARS, false)?;
        }
        if let Some(u) = &self.url {
            check_text("topic.url", u, limits::TOPIC_URL_CHARS, false)?;
        }
        Ok(())
    }
}

/// An org and one of its users: who wrote or changed something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub org: OrgId,
    pub user: String,
}

/// The two orgs of a conversation: always exactly one retailer and one supplier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participants {
    pub retailer: OrgId,
    pub supplier: OrgId,
}

impl Participants {
    pub fn includes(&self, org: &OrgId) -> bool {
        &self.retailer == org || &self.supplier == org
    }
    /// The participant that is not `me`.
    pub fn other(&self, me: &OrgId) -> &OrgId {
        if &self.retailer == me {
            &self.supplier
        } else {
            &self.retailer
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub author: Author,
    /// May be empty only when the message carries files.
    pub body: String,
    pub sent_at: DateTime<Utc>,
    /// Files attached to the message, in the order they were attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<super::attachment::AttachmentRef>,
}

/// One entry of a conversation's history: a change of state, progress or a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub by: Author,
    /// `created`, `resolved`, `reopened`, `progress`, `subject`, `reference_id`, `due_date`.
    pub action: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The typed view of one conversation document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: Uuid,
    pub kind: Kind,
    pub subject: String,
    pub topic: Option<Topic>,
    pub reference_id: Option<String>,
    pub participants: Participants,
    pub created_by: Author,
    pub created_at: DateTime<Utc>,
    /// Ordered by (sent_at, id): the same order on every node.
    pub messages: Vec<Message>,
    pub state: State,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<Author>,
    /// Tasks only.
    pub due_date: Option<NaiveDate>,
    /// Tasks only; `None` for messages.
    pub progress: Option<Progress>,
    /// Ordered by (at, id).
    pub history: Vec<Event>,
}

impl Conversation {
    /// Overdue is derived, never stored: a task with a due date before `today` that is
    /// neither completed, cancelled nor resolved.
    pub fn overdue(&self, today: NaiveDate) -> bool {
        is_overdue(self.kind, self.state, self.progress, self.due_date, today)
    }

    /// Newest of creation, messages and history: what orders the inbox.
    pub fn last_activity_at(&self) -> DateTime<Utc> {
        let m = self.messages.iter().map(|m| m.sent_at);
        let h = self.history.iter().map(|e| e.at);
        m.chain(h).fold(self.created_at, |a, b| a.max(b))
    }
}

/// A task can become overdue only while it is still expected to be done.
pub fn overdue_eligible(kind: Kind, state: State, progress: Option<Progress>) -> bool {
    kind == Kind::Task
        && state == State::Open
        && !matches!(progress, Some(Progress::Completed | Progress::Cancelled))
}

pub fn is_overdue(
    kind: Kind,
    state: State,
    progress: Option<Progress>,
    due: Option<NaiveDate>,
    today: NaiveDate,
) -> bool {
    overdue_eligible(kind, state, progress) && due.is_some_and(|d| d < today)
}

/// Checks a user-supplied one-line text field (a subject, a reference ID, a name): something
/// visible when `required`, at most `max` chars, no control characters at all (a line break
/// in a subject would forge a second line in a mail client or a CSV export), no bidirectional
/// overrides.
pub fn check_text(
    field: &'static str,
    s: &str,
    max: usize,
    required: bool,
) -> Result<(), DomainError> {
    check_chars(field, s, max, required, false)
}

/// [`check_text`] for a field that may span lines (a topic record's field value): line
/// breaks and tabs are allowed.
pub fn check_multiline_text(
    field: &'static str,
    s: &str,
    max: usize,
    required: bool,
) -> Result<(), DomainError> {
    check_chars(field, s, max, required, true)
}

/// Characters that show nothing: a field made only of them (and spaces) reads as empty.
fn is_invisible(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

fn check_chars(
    field: &'static str,
    s: &str,
    max: usize,
    required: bool,
    lines: bool,
) -> Result<(), DomainError> {
    if required && s.chars().all(is_invisible) {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if s.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if s.chars()
        .any(|c| c.is_control() && !(lines && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(DomainError::invalid(
            field,
            if lines {
                "must not contain control characters other than line breaks and tabs"
            } else {
                "must be one line, without control characters"
            },
        ));
    }
    if s.chars().any(is_bidi_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain bidirectional override or isolate characters (U+202A-U+202E, U+2066-U+2069)",
        ));
    }
    Ok(())
}

/// Characters that reorder how the text around them is displayed, so a subject could read
/// differently from what it says ("Trojan Source"). Plain right-to-left text needs none.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a message body: non-empty, at most 64 KiB of UTF-8.
pub fn check_body(body: &str) -> Result<(), DomainError> {
    check_body_with(body, false)
}

/// [`check_body`] for a message that may carry files: with `has_files` the body may be empty.
pub fn check_body_with(body: &str, has_files: bool) -> Result<(), DomainError> {
    if body.trim().is_empty() && !(has_files && body.is_empty()) {
        return Err(DomainError::invalid("body", "must not be empty"));
    }
    if body.len() > limits::BODY_BYTES {
        return Err(DomainError::invalid(
            "body",
            format!("must be at most {} bytes", limits::BODY_BYTES),
        ));
    }
    if body
        .chars()
        .any(|c| (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || is_bidi_control(c))
    {
        return Err(DomainError::invalid(
            "body",
            "must not contain control characters (other than line breaks and tabs) or bidirectional overrides",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn completed_is_never_overdue() {
        let today = day("2026-06-10");
        let past = Some(day("2026-06-01"));
        assert!(is_overdue(
            Kind::Task,
            State::Open,
            Some(Progress::Open),
            past,
            today
        ));
        assert!(is_overdue(
            Kind::Task,
            State::Open,
            Some(Progress::InProgress),
            past,
            today
        ));
        assert!(!is_overdue(
            Kind::Task,
            State::Open,
            Some(Progress::Completed),
            past,
            today
        ));
        assert!(!is_overdue(
            Kind::Task,
            State::Open,
            Some(Progress::Cancelled),
            past,
            today
        ));
        assert!(!is_overdue(
            Kind::Task,
            State::Resolved,
            Some(Progress::Open),
            past,
            today
        ));
        assert!(!is_overdue(Kind::Message, State::Open, None, past, today));
        assert!(!is_overdue(
            Kind::Task,
            State::Open,
            Some(Progress::Open),
            None,
            today
        ));
        // Due today is not yet overdue.
        assert!(!is_overdue(
            Kind::Task,
            State::Open,
            Some(Progress::Open),
            Some(today),
            today
        ));
    }

    #[test]
    fn text_limits() {
        assert!(check_text("subject", "  ", 10, true).is_err());
        assert!(check_text("subject", "héllo", 5, true).is_ok());
        assert!(check_text("subject", "héllo!", 5, true).is_err());
        assert!(check_text("subject", "a\u{0}b", 5, true).is_err());
        assert!(check_text("subject", "line\nbreak", 50, true).is_err());
        assert!(check_text("subject", "\u{200B}\u{200B} ", 50, true).is_err());
        assert!(check_multiline_text("value", "two\nlines", 50, true).is_ok());
        assert!(check_body(&"x".repeat(limits::BODY_BYTES + 1)).is_err());
        assert!(check_body("line\nline").is_ok());
        assert!(check_body("crlf\r\nline\tx").is_ok());
        assert!(check_body("esc\u{1b}[31m").is_err());
        assert!(check_text("subject", "abc\u{202E}fdp.exe", 50, true).is_err());
        assert!(check_text("subject", "\u{2067}x\u{2069}", 50, true).is_err());
        // Right-to-left text itself is fine.
        assert!(check_text("subject", "שלום עולם", 50, true).is_ok());
    }
}
