//! Use-case rules on one conversation: what may change, by whom, and the history it leaves.
//! Each command is checked against the current view first and only then written to the
//! document, so a refused command leaves the document untouched.

use automerge::AutoCommit;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::attachment::AttachmentRef;
use super::doc::{self, DocError};
use super::*;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Doc(#[from] DocError),
}

/// What a new conversation needs; validated by [`new_conversation`].
#[derive(Debug, Clone)]
pub struct NewConversation {
    pub id: Uuid,
    pub kind: Kind,
    pub subject: String,
    pub topic: Option<Topic>,
    pub reference_id: Option<String>,
    pub due_date: Option<NaiveDate>,
    pub body: Option<String>,
    /// Files of the first message; they need a first message (an empty body is fine).
    pub attachments: Vec<AttachmentRef>,
    pub message_id: Uuid,
}

/// A change to an existing conversation.
#[derive(Debug, Clone)]
pub enum Command {
    Reply {
        id: Uuid,
        body: String,
        /// Files already stored here (the service checks that before the command runs).
        attachments: Vec<AttachmentRef>,
    },
    /// `None` leaves a field as it is; `Some(None)` removes an optional field.
    Update {
        subject: Option<String>,
        reference_id: Option<Option<String>>,
        due_date: Option<Option<NaiveDate>>,
    },
    Resolve,
    Reopen,
    SetProgress(Progress),
}

fn check_reference_id(r: &str) -> Result<(), DomainError> {
    check_text("reference_id", r, limits::REFERENCE_ID_CHARS, true)
}

/// Builds the first version of a conversation between our org (`me`, acting as `by`) and a
/// partner of the other role.
pub fn new_conversation(
    n: NewConversation,
    by: Author,
    my_role: Role,
    partner: &OrgId,
    partner_role: Role,
    now: DateTime<Utc>,
) -> Result<Conversation, DomainError> {
    check_text("subject", &n.subject, limits::SUBJECT_CHARS, true)?;
    if let Some(t) = &n.topic {
        t.validate()?;
    }
    if let Some(r) = &n.reference_id {
        check_reference_id(r)?;
    }
    super::attachment::check_list(&n.attachments)?;
    let mut n = n;
    if !n.attachments.is_empty() && n.body.is_none() {
        // Files are carried by the first message: one of files only.
        n.body = Some(String::new());
    }
    if let Some(b) = &n.body {
        check_body_with(b, !n.attachments.is_empty())?;
    }
    if n.kind == Kind::Message && n.due_date.is_some() {
        return Err(DomainError::Unprocessable(
            "a due date can only be set on a task".into(),
        ));
    }
    if partner_role == my_role {
        return Err(DomainError::Unprocessable(format!(
            "a conversation is between one retailer and one supplier; {partner} is a {partner_role} like this node's org"
        )));
    }
    if partner == &by.org {
        return Err(DomainError::Unprocessable(
            "a conversation needs a partner org other than this node's".into(),
        ));
    }
    let participants = match my_role {
        Role::Retailer => Participants {
            retailer: by.org.clone(),
            supplier: partner.clone(),
        },
        Role::Supplier => Participants {
            retailer: partner.clone(),
            supplier: by.org.clone(),
        },
    };
    let messages = n
        .body
        .map(|body| {
            vec![Message {
                id: n.message_id,
                author: by.clone(),
                body,
                sent_at: now,
                attachments: n.attachments,
            }]
        })
        .unwrap_or_default();
    Ok(Conversation {
        id: n.id,
        kind: n.kind,
        subject: n.subject.trim().to_string(),
        topic: n.topic,
        reference_id: n.reference_id,
        participants,
        created_by: by.clone(),
        created_at: now,
        messages,
        state: State::Open,
        resolved_at: None,
        resolved_by: None,
        due_date: n.due_date,
        progress: (n.kind == Kind::Task).then_some(Progress::Open),
        history: vec![Event {
            id: new_id(),
            at: now,
            by,
            action: "created".into(),
            from: None,
            to: None,
        }],
    })
}

/// Whether a command changed the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Changed,
    Unchanged,
}

fn event(
    by: &Author,
    now: DateTime<Utc>,
    action: &str,
    from: Option<String>,
    to: Option<String>,
) -> Event {
    Event {
        id: new_id(),
        at: now,
        by: by.clone(),
        action: action.into(),
        from,
        to,
    }
}

/// Checks `cmd` against `conv` (the current view of `d`) and writes it to the document.
pub fn apply(
    d: &mut AutoCommit,
    conv: &Conversation,
    cmd: &Command,
    by: &Author,
    now: DateTime<Utc>,
) -> Result<Outcome, CommandError> {
    apply_to(d, &mut conv.clone(), cmd, by, now)
}

/// Like [`apply`], and changes `conv` exactly as the document changes, so the caller has the
/// view after the command without reading the document again (the store checks this claim in
/// debug builds). After an error `conv` may be partly changed: discard it.
pub fn apply_to(
    d: &mut AutoCommit,
    conv: &mut Conversation,
    cmd: &Command,
    by: &Author,
    now: DateTime<Utc>,
) -> Result<Outcome, CommandError> {
    // The document keeps milliseconds; so does the view.
    let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    if !conv.participants.includes(&by.org) {
        return Err(DomainError::Forbidden(
            "this org is not a participant of the conversation".into(),
        )
        .into());
    }
    // A reply or change to a resolved conversation reopens it in the same change, so that
    // both orgs see it back in their Inbox. The `reopened` entry's id is taken before the
    // command runs: ids of one process rise, so at the same instant it sorts before the
    // command's own entry.
    let reopen = (conv.state == State::Resolved
        && matches!(
            cmd,
            Command::Reply { .. } | Command::Update { .. } | Command::SetProgress(_)
        ))
    .then(new_id);
    let outcome = run(d, conv, cmd, by, now)?;
    if let (Some(id), Outcome::Changed) = (reopen, outcome) {
        doc::set_resolved(d, None)?;
        let mut e = event(
            by,
            now,
            "reopened",
            Some(State::Resolved.to_string()),
            Some(State::Open.to_string()),
        );
        e.id = id;
        record(d, conv, e)?;
        conv.state = State::Open;
        conv.resolved_at = None;
        conv.resolved_by = None;
    }
    Ok(outcome)
}

fn run(
    d: &mut AutoCommit,
    conv: &mut Conversation,
    cmd: &Command,
    by: &Author,
    now: DateTime<Utc>,
) -> Result<Outcome, CommandError> {
    match cmd {
        Command::Reply {
            id,
            body,
            attachments,
        } => {
            super::attachment::check_list(attachments)?;
            check_body_with(body, !attachments.is_empty())?;
            if let Some(m) = conv.messages.iter().find(|m| m.id == *id) {
                // A retried reply with the same id, body and files is a no-op; a different one
                // is a clash.
                return if &m.body == body && m.author == *by && &m.attachments == attachments {
                    Ok(Outcome::Unchanged)
                } else {
                    Err(DomainError::Conflict(format!(
                        "message id {id} is already used by another message"
                    ))
                    .into())
                };
            }
            let m = Message {
                id: *id,
                author: by.clone(),
                body: body.clone(),
                sent_at: now,
                attachments: attachments.clone(),
            };
            doc::add_message(d, &m)?;
            let at = conv
                .messages
                .partition_point(|x| (x.sent_at, x.id) < (m.sent_at, m.id));
            conv.messages.insert(at, m);
            Ok(Outcome::Changed)
        }
        Command::Update {
            subject,
            reference_id,
            due_date,
        } => update(d, conv, by, now, subject, reference_id, due_date),
        Command::Resolve | Command::Reopen => {
            let want = if matches!(cmd, Command::Resolve) {
                State::Resolved
            } else {
                State::Open
            };
            if conv.state == want && !doc::conflicts::crossed(d, "state") {
                return Ok(Outcome::Unchanged);
            }
            let resolved = (want == State::Resolved).then_some((now, by));
            doc::set_resolved(d, resolved)?;
            let action = if want == State::Resolved {
                "resolved"
            } else {
                "reopened"
            };
            let e = event(
                by,
                now,
                action,
                Some(conv.state.to_string()),
                Some(want.to_string()),
            );
            record(d, conv, e)?;
            conv.state = want;
            conv.resolved_at = resolved.map(|(at, _)| at);
            conv.resolved_by = resolved.map(|(_, by)| by.clone());
            Ok(Outcome::Changed)
        }
        Command::SetProgress(p) => {
            if conv.kind != Kind::Task {
                return Err(DomainError::Unprocessable(
                    "progress applies to tasks only; this is a message".into(),
                )
                .into());
            }
            if conv.progress == Some(*p) && !doc::conflicts::crossed(d, "progress") {
                return Ok(Outcome::Unchanged);
            }
            doc::set_opt_str(d, "progress", Some(p.as_str()))?;
            let from = conv.progress.map(|p| p.to_string());
            record(
                d,
                conv,
                event(by, now, "progress", from, Some(p.to_string())),
            )?;
            conv.progress = Some(*p);
            Ok(Outcome::Changed)
        }
    }
}

/// Writes a history event to the document and to the view, in the view's (at, id) order.
fn record(d: &mut AutoCommit, conv: &mut Conversation, e: Event) -> Result<(), CommandError> {
    doc::add_event(d, &e)?;
    let at = conv
        .history
        .partition_point(|x| (x.at, x.id) < (e.at, e.id));
    conv.history.insert(at, e);
    Ok(())
}

fn update(
    d: &mut AutoCommit,
    conv: &mut Conversation,
    by: &Author,
    now: DateTime<Utc>,
    subject: &Option<String>,
    reference_id: &Option<Option<String>>,
    due_date: &Option<Option<NaiveDate>>,
) -> Result<Outcome, CommandError> {
    if conv.created_by.org != by.org {
        return Err(DomainError::Forbidden(format!(
            "only {}, the org that started this conversation, can change its subject, reference ID or due date",
            conv.created_by.org
        ))
        .into());
    }
    // Validate everything before writing anything.
    let subject = subject.as_ref().map(|s| s.trim().to_string());
    if let Some(s) = &subject {
        check_text("subject", s, limits::SUBJECT_CHARS, true)?;
    }
    if let Some(Some(r)) = reference_id {
        check_reference_id(r)?;
    }
    if due_date.is_some() && conv.kind != Kind::Task {
        return Err(
            DomainError::Unprocessable("a due date can only be set on a task".into()).into(),
        );
    }
    let mut outcome = Outcome::Unchanged;
    // A crossed field is written even with the value that stands: that settles the crossing.
    let crossed = |f: &str| doc::conflicts::crossed(d, f);
    let (x_subject, x_reference, x_due) = (
        crossed("subject"),
        crossed("reference_id"),
        crossed("due_date"),
    );
    if let Some(s) = subject.filter(|s| *s != conv.subject || x_subject) {
        doc::set_subject(d, &s)?;
        let e = event(
            by,
            now,
            "subject",
            Some(conv.subject.clone()),
            Some(s.clone()),
        );
        record(d, conv, e)?;
        conv.subject = s;
        outcome = Outcome::Changed;
    }
    if let Some(r) = reference_id
        .as_ref()
        .filter(|r| **r != conv.reference_id || x_reference)
    {
        doc::set_opt_str(d, "reference_id", r.as_deref())?;
        let e = event(
            by,
            now,
            "reference_id",
            conv.reference_id.clone(),
            r.clone(),
        );
        record(d, conv, e)?;
        conv.reference_id = r.clone();
        outcome = Outcome::Changed;
    }
    if let Some(due) = due_date.filter(|due| *due != conv.due_date || x_due) {
        doc::set_opt_str(d, "due_date", due.map(|x| x.to_string()).as_deref())?;
        let show = |x: Option<NaiveDate>| x.map(|x| x.to_string());
        let e = event(by, now, "due_date", show(conv.due_date), show(due));
        record(d, conv, e)?;
        conv.due_date = due;
        outcome = Outcome::Changed;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests;
