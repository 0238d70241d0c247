//! The write gate: the one place that decides whether a version of a conversation may be
//! stored, for local writes and for changes that arrive by sync alike.
//!
//! Automerge merges any change it is given, so every write — a command of a local user, a
//! partner's changes, a relay from another site of our org — ends in the same question: may
//! the conversation as it will be stored (`after`) replace the one we hold (`before`)? The
//! gate answers it in two parts:
//!
//! - [`validate`]: every field that is new or changed meets the limits the API applies
//!   (lengths, control and bidi-override characters, user names, value consistency of kind,
//!   progress, due date and state, participants of both roles with us among them, bounded
//!   counts, timestamps no further ahead of our clock than [`CLOCK_SKEW`]). Fields that did not
//!   change are not judged again, so a conversation stored by an older release never blocks
//!   new replies.
//! - [`check_change`]: what the [`Authority`] behind the change may do: nothing ever alters
//!   or removes a message or a history entry, and id, participants, kind and creator never
//!   change; under an org's authority every new message and entry is written as that org,
//!   only the creating org changes the subject, reference ID, topic or due date, and only
//!   the acting org resolves in its own name.
//!
//! Together with [`super::doc::read_strict`] (unknown keys, types and schema versions are
//! refused) this is what a peer cannot get past. The authority is an input rather than
//! derived from the connection, so signed changes can later name their author and a relay
//! through a hub can be judged by who wrote each change, not by who forwarded it.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{
    Author, Conversation, DomainError, Event, Kind, Message, OrgId, Role, State, check_body_with,
    check_text, limits, validate_user_name,
};

/// How far ahead of our clock a timestamp in a new message or history entry may be. Clocks
/// of partner machines drift; a timestamp beyond this would pin the conversation to the top
/// of the inbox.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// The history actions a conversation may record; anything else is refused.
pub const ACTIONS: &[&str] = &[
    "created",
    "resolved",
    "reopened",
    "progress",
    "subject",
    "reference_id",
    "due_date",
];

/// Under whose authority a change is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// One org wrote everything new: a local user of ours, or a partner's node speaking for
    /// its org.
    Org(OrgId),
    /// Another site of our own org relays what either participant wrote. Until changes carry
    /// their author's signature, who wrote a relayed item cannot be checked, only its shape.
    OwnSite,
    /// A partner's node, once, restoring to us the history of the conversations we share with
    /// it (`parley peer add --recover`, or the first exchange after `parley restore`): what it
    /// holds of our own org's past is taken like a relay of our own site, judged by its shape
    /// only — but only on conversations between us and that partner, and only items of ours
    /// dated before `before` (when the window opened): the past, never anything new.
    Recovery {
        partner: OrgId,
        before: DateTime<Utc>,
    },
}

/// Why a version of a conversation may not be stored. The text is what the peer or the API
/// caller is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the document does not follow the conversation schema: {0}")]
    Schema(String),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("{0}")]
    Inconsistent(String),
    #[error("{0} never change")]
    Immutable(&'static str),
    #[error("{what} {id} was altered")]
    Altered { what: &'static str, id: Uuid },
    #[error("{what} {id} was removed")]
    Removed { what: &'static str, id: Uuid },
    #[error("{what} {id} is written as {claimed}, not as {actor}")]
    WrittenAsAnother {
        what: &'static str,
        id: Uuid,
        claimed: OrgId,
        actor: OrgId,
    },
    #[error("{0} is not a participant of this conversation")]
    NotParticipant(OrgId),
    #[error("only {creator}, the org that started the conversation, can change its {field}")]
    NotCreator { creator: OrgId, field: &'static str },
    #[error("{what} is dated {at}, more than {} minutes ahead of this node's clock", CLOCK_SKEW.num_minutes())]
    FromTheFuture { what: String, at: DateTime<Utc> },
    #[error("{0}")]
    TooLarge(String),
}

impl Violation {
    fn field(field: impl Into<String>, e: DomainError) -> Self {
        let reason = match e {
            DomainError::Invalid { reason, .. } => reason,
            other => other.to_string(),
        };
        Violation::Field {
            field: field.into(),
            reason,
        }
    }
}

impl From<Violation> for DomainError {
    fn from(v: Violation) -> Self {
        match v {
            Violation::Field { .. } | Violation::FromTheFuture { .. } | Violation::Schema(_) => {
                DomainError::Unprocessable(v.to_string())
            }
            Violation::TooLarge(_) | Violation::Inconsistent(_) => {
                DomainError::Unprocessable(v.to_string())
            }
            _ => DomainError::Forbidden(v.to_string()),
        }
    }
}

/// This node: whose gate it is.
#[derive(Debug, Clone)]
pub struct Gate<'a> {
    pub me: &'a OrgId,
    pub my_role: Role,
    pub now: DateTime<Utc>,
}

impl Gate<'_> {
    /// The whole gate: `after` is valid where it differs from `before`, and `authority` may
    /// make that difference.
    pub fn admit(
        &self,
        before: Option<&Conversation>,
        after: &Conversation,
        authority: &Authority,
    ) -> Result<(), Violation> {
        validate(before, after, self)?;
        check_change(before, after, authority)
    }
}

fn text(field: &str, s: &str, max: usize, required: bool) -> Result<(), Violation> {
    check_text("text", s, max, required).map_err(|e| Violation::field(field, e))
}

fn author(what: &str, a: &Author) -> Result<(), Violation> {
    validate_user_name(&a.user).map_err(|e| Violation::field(format!("{what}.user"), e))
}

fn not_future(what: impl Fn() -> String, at: DateTime<Utc>, g: &Gate) -> Result<(), Violation> {
    if at > g.now + CLOCK_SKEW {
        return Err(Violation::FromTheFuture { what: what(), at });
    }
    Ok(())
}

fn check_message(m: &Message, c: &Conversation, g: &Gate) -> Result<(), Violation> {
    check_body_with(&m.body, !m.attachments.is_empty())
        .map_err(|e| Violation::field(format!("message {}.body", m.id), e))?;
    super::attachment::check_list(&m.attachments).map_err(|e| {
        let field = match &e {
            DomainError::Invalid { field, .. } => *field,
            _ => "attachments",
        };
        Violation::field(format!("message {}.attachments.{field}", m.id), e)
    })?;
    author(&format!("message {}", m.id), &m.author)?;
    not_future(|| format!("message {}", m.id), m.sent_at, g)?;
    if m.sent_at + CLOCK_SKEW < c.created_at {
        return Err(Violation::Inconsistent(format!(
            "message {} is dated before the conversation was created",
            m.id
        )));
    }
    Ok(())
}

fn check_event(e: &Event, g: &Gate) -> Result<(), Violation> {
    if !ACTIONS.contains(&e.action.as_str()) {
        return Err(Violation::Field {
            field: format!("history {}.action", e.id),
            reason: format!("{:?} is not one of {}", e.action, ACTIONS.join(", ")),
        });
    }
    author(&format!("history {}", e.id), &e.by)?;
    for (k, v) in [("from", &e.from), ("to", &e.to)] {
        if let Some(v) = v {
            text(
                &format!("history {}.{k}", e.id),
                v,
                limits::SUBJECT_CHARS,
                false,
            )?;
        }
    }
    not_future(|| format!("history entry {}", e.id), e.at, g)
}

/// Checks every field of `after` that is new or differs from `before` (everything when
/// `before` is `None`), and the consistency of the whole.
pub fn validate(
    before: Option<&Conversation>,
    after: &Conversation,
    g: &Gate,
) -> Result<(), Violation> {
    let changed = |f: &dyn Fn(&Conversation) -> bool| before.is_none_or(f);
    if changed(&|b| b.subject != after.subject) {
        text("subject", &after.subject, limits::SUBJECT_CHARS, true)?;
    }
    if changed(&|b| b.reference_id != after.reference_id)
        && let Some(r) = &after.reference_id
    {
        text("reference_id", r, limits::REFERENCE_ID_CHARS, true)?;
    }
    if changed(&|b| b.topic != after.topic)
        && let Some(t) = &after.topic
    {
        t.validate().map_err(|e| match e {
            DomainError::Invalid { field, reason } => Violation::Field {
                field: field.into(),
                reason,
            },
            other => Violation::Inconsistent(other.to_string()),
        })?;
    }
    if before.is_none() {
        author("created_by", &after.created_by)?;
        not_future(|| "the conversation".into(), after.created_at, g)?;
        let p = &after.participants;
        if p.retailer == p.supplier {
            return Err(Violation::Inconsistent(
                "a conversation is between two different orgs".into(),
            ));
        }
        let mine = match g.my_role {
            Role::Retailer => &p.retailer,
            Role::Supplier => &p.supplier,
        };
        if mine != g.me {
            return Err(Violation::Inconsistent(format!(
                "{} is a {} and must be the conversation's {}",
                g.me, g.my_role, g.my_role
            )));
        }
    }
    match after.kind {
        Kind::Message if after.due_date.is_some() || after.progress.is_some() => {
            return Err(Violation::Inconsistent(
                "a message has no due date or progress; only tasks do".into(),
            ));
        }
        Kind::Task if after.progress.is_none() => {
            return Err(Violation::Inconsistent("a task has a progress".into()));
        }
        _ => {}
    }
    if after.state == State::Resolved
        && (after.resolved_at.is_none() || after.resolved_by.is_none())
    {
        return Err(Violation::Inconsistent(
            "a resolved conversation says when and by whom".into(),
        ));
    }
    if after.resolved_by != before.and_then(|b| b.resolved_by.clone())
        && let Some(by) = &after.resolved_by
    {
        author("resolved_by", by)?;
    }
    if after.resolved_at != before.and_then(|b| b.resolved_at)
        && let Some(at) = after.resolved_at
    {
        not_future(|| "resolved_at".into(), at, g)?;
    }
    if after.messages.len() > limits::MESSAGES_PER_CONVERSATION {
        return Err(Violation::TooLarge(format!(
            "a conversation holds at most {} messages; start a new one",
            limits::MESSAGES_PER_CONVERSATION
        )));
    }
    if after.history.len() > limits::HISTORY_PER_CONVERSATION {
        return Err(Violation::TooLarge(format!(
            "a conversation keeps at most {} history entries",
            limits::HISTORY_PER_CONVERSATION
        )));
    }
    let old_msgs: HashMap<Uuid, &Message> = before
        .map(|b| b.messages.iter().map(|m| (m.id, m)).collect())
        .unwrap_or_default();
    for m in after
        .messages
        .iter()
        .filter(|m| !old_msgs.contains_key(&m.id))
    {
        check_message(m, after, g)?;
    }
    let old_events: HashMap<Uuid, &Event> = before
        .map(|b| b.history.iter().map(|e| (e.id, e)).collect())
        .unwrap_or_default();
    for e in after
        .history
        .iter()
        .filter(|e| !old_events.contains_key(&e.id))
    {
        check_event(e, g)?;
    }
    Ok(())
}

/// Checks what `authority` changed between `before` (`None`: the conversation is new here)
/// and `after`. Field limits are [`validate`]'s; this is about who may change what.
pub fn check_change(
    before: Option<&Conversation>,
    after: &Conversation,
    authority: &Authority,
) -> Result<(), Violation> {
    let actor = match authority {
        Authority::Org(o) => Some(o),
        Authority::OwnSite => None,
        Authority::Recovery { partner, .. } => {
            if !after.participants.includes(partner) {
                return Err(Violation::NotParticipant(partner.clone()));
            }
            None
        }
    };
    // Under recovery, what is written as anyone but the partner must be from before the
    // window opened.
    let recovered_past = match authority {
        Authority::Recovery { partner, before } => Some((partner, *before)),
        _ => None,
    };
    if let Some(o) = actor
        && !after.participants.includes(o)
    {
        return Err(Violation::NotParticipant(o.clone()));
    }
    let written_as = |what: &'static str,
                      id: Uuid,
                      by: &Author,
                      at: DateTime<Utc>|
     -> Result<(), Violation> {
        if let Some((partner, before)) = recovered_past
            && by.org != *partner
            && at >= before
        {
            return Err(Violation::Inconsistent(format!(
                "{what} {id} is written as {} and dated {at}, after recovery from {partner} began ({before}); a recovery gives back only the past",
                by.org
            )));
        }
        match actor {
            Some(a) if by.org != *a => Err(Violation::WrittenAsAnother {
                what,
                id,
                claimed: by.org.clone(),
                actor: a.clone(),
            }),
            _ if !after.participants.includes(&by.org) => {
                Err(Violation::NotParticipant(by.org.clone()))
            }
            _ => Ok(()),
        }
    };
    let Some(b) = before else {
        if let Some(a) = actor
            && after.created_by.org != *a
        {
            return Err(Violation::WrittenAsAnother {
                what: "conversation",
                id: after.id,
                claimed: after.created_by.org.clone(),
                actor: a.clone(),
            });
        }
        if !after.participants.includes(&after.created_by.org) {
            return Err(Violation::NotParticipant(after.created_by.org.clone()));
        }
        written_as(
            "conversation",
            after.id,
            &after.created_by,
            after.created_at,
        )?;
        for m in &after.messages {
            written_as("message", m.id, &m.author, m.sent_at)?;
        }
        for e in &after.history {
            written_as("history entry", e.id, &e.by, e.at)?;
        }
        resolution_in_the_past(None, after, &written_as)?;
        return resolved_in_own_name(None, after, actor);
    };
    if (b.id, &b.participants, b.kind, &b.created_by, b.created_at)
        != (
            after.id,
            &after.participants,
            after.kind,
            &after.created_by,
            after.created_at,
        )
    {
        return Err(Violation::Immutable("id, participants, kind and creator"));
    }
    append_only(
        "message",
        &b.messages,
        &after.messages,
        |m| (m.id, &m.author, m.sent_at),
        &written_as,
    )?;
    append_only(
        "history entry",
        &b.history,
        &after.history,
        |e| (e.id, &e.by, e.at),
        &written_as,
    )?;
    if let Some(a) = actor
        && after.created_by.org != *a
    {
        let creator = || after.created_by.org.clone();
        for (field, differs) in [
            ("subject", b.subject != after.subject),
            ("reference ID", b.reference_id != after.reference_id),
            ("topic", b.topic != after.topic),
            ("due date", b.due_date != after.due_date),
        ] {
            if differs {
                return Err(Violation::NotCreator {
                    creator: creator(),
                    field,
                });
            }
        }
    }
    resolution_in_the_past(Some(b), after, &written_as)?;
    resolved_in_own_name(Some(b), after, actor)
}

/// A new resolution passes `written_as` with its time (under recovery: from before it began).
fn resolution_in_the_past(
    before: Option<&Conversation>,
    after: &Conversation,
    written_as: &WrittenAs,
) -> Result<(), Violation> {
    if after.resolved_by.as_ref() == before.and_then(|b| b.resolved_by.as_ref())
        && after.resolved_at == before.and_then(|b| b.resolved_at)
    {
        return Ok(());
    }
    match (&after.resolved_by, after.resolved_at) {
        (Some(by), Some(at)) => written_as("resolution of", after.id, by, at),
        _ => Ok(()),
    }
}

/// Whether an item (what, id, author, time) may be written under the change's authority.
type WrittenAs<'a> =
    dyn Fn(&'static str, Uuid, &Author, DateTime<Utc>) -> Result<(), Violation> + 'a;

/// Messages and history only grow: every item of `before` is in `after` unchanged, and every
/// new one passes `written_as`.
fn append_only<T: PartialEq>(
    what: &'static str,
    before: &[T],
    after: &[T],
    key: impl Fn(&T) -> (Uuid, &Author, DateTime<Utc>),
    written_as: &WrittenAs,
) -> Result<(), Violation> {
    let now: HashMap<Uuid, &T> = after.iter().map(|x| (key(x).0, x)).collect();
    for x in before {
        let id = key(x).0;
        match now.get(&id) {
            Some(y) if *y == x => {}
            Some(_) => return Err(Violation::Altered { what, id }),
            None => return Err(Violation::Removed { what, id }),
        }
    }
    if after.len() > before.len() {
        let old: HashMap<Uuid, ()> = before.iter().map(|x| (key(x).0, ())).collect();
        for x in after.iter().filter(|x| !old.contains_key(&key(x).0)) {
            let (id, by, at) = key(x);
            written_as(what, id, by, at)?;
        }
    }
    Ok(())
}

fn resolved_in_own_name(
    before: Option<&Conversation>,
    after: &Conversation,
    actor: Option<&OrgId>,
) -> Result<(), Violation> {
    if after.resolved_by.as_ref() == before.and_then(|b| b.resolved_by.as_ref()) {
        return Ok(());
    }
    match (&after.resolved_by, actor) {
        (Some(by), Some(a)) if by.org != *a => Err(Violation::WrittenAsAnother {
            what: "resolution of",
            id: after.id,
            claimed: by.org.clone(),
            actor: a.clone(),
        }),
        (Some(by), None) if !after.participants.includes(&by.org) => {
            Err(Violation::NotParticipant(by.org.clone()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
