//! The team document: what our org keeps about a conversation and never shows the partner —
//! who is assigned to it and the internal notes colleagues write to each other.
//!
//! It cannot live in the conversation document: Automerge sync sends a document's whole change
//! history, with no field-level filter and no way to drop a change once made, so a note typed
//! there once would reach the partner forever, even after deletion. It is a companion Automerge
//! document per conversation, under an id of its own class ([`team_id`]), which sync offers only
//! to sites of our own org (`store::sync_host`, through [`is_team_id`]).
//!
//! ```text
//! ROOT
//!   schema        Uint      1
//!   team_of       Str       the conversation's UUID
//!   assignee      Str?      a user name of our org (absent: unassigned)
//!   assigned_by   Str?      who assigned it
//!   assigned_at   Timestamp?
//!   notes         Map       note UUID -> { author, body, created_at: Timestamp, edited_at: Timestamp? }
//! ```
//!
//! Ids: a conversation id is an RFC 4122 UUID, whose byte 8 starts with the bits `10`. The team
//! document of conversation `c` has `c`'s id with those bits set to `11` (a variant no
//! conversation id may use), so the two classes never meet and each maps to the other
//! without a table. Only RFC 4122 ids (`10`) may name conversations: `doc::read_strict` and the
//! create use-case refuse others, since the mapping drops the variant bits.

use std::collections::BTreeMap;

use automerge::{
    AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value, transaction::Transactable,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{DomainError, check_multiline_text, limits, validate_user_name};

pub const SCHEMA_VERSION: u64 = 1;
/// A local user may add a note while a conversation has fewer than this many.
pub const MAX_NOTES: usize = 500;
/// What a team document may hold at all, read from anywhere: notes added at two sites while
/// apart can together pass [`MAX_NOTES`], and such a merge must still read (and sync).
pub const MAX_NOTES_READ: usize = 10_000;

const VARIANT_MASK: u128 = 0xC0 << 56;
const TEAM_BITS: u128 = 0xC0 << 56;
const CONVERSATION_BITS: u128 = 0x80 << 56;

/// Whether `id` names a team document (never a conversation).
pub fn is_team_id(id: u128) -> bool {
    id & VARIANT_MASK == TEAM_BITS
}

/// Whether `id` may name a conversation: an RFC 4122 UUID, so never a team document's id.
pub fn is_conversation_id(id: u128) -> bool {
    id & VARIANT_MASK == CONVERSATION_BITS
}

/// The team document of conversation `conversation`.
pub fn team_id(conversation: Uuid) -> u128 {
    (conversation.as_u128() & !VARIANT_MASK) | TEAM_BITS
}

/// The conversation a team document belongs to.
pub fn conversation_of(team: u128) -> Uuid {
    Uuid::from_u128((team & !VARIANT_MASK) | CONVERSATION_BITS)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub id: Uuid,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
}

/// The typed view of a team document. `Team::default()` is a conversation nobody assigned or
/// noted yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Team {
    pub assignee: Option<String>,
    pub assigned_by: Option<String>,
    pub assigned_at: Option<DateTime<Utc>>,
    /// Oldest first.
    pub notes: Vec<Note>,
}

#[derive(Debug, thiserror::Error)]
pub enum TeamDocError {
    #[error("team document field {0} is missing, unknown or has the wrong type")]
    Field(String),
    #[error("team document: {0}")]
    Invalid(String),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

type R<T> = Result<T, TeamDocError>;

fn field(f: impl Into<String>) -> TeamDocError {
    TeamDocError::Field(f.into())
}

// ---- writing -------------------------------------------------------------------------------

/// Lays out an empty team document for `conversation`.
pub fn create(doc: &mut AutoCommit, conversation: Uuid) -> R<()> {
    doc.put(ROOT, "schema", ScalarValue::Uint(SCHEMA_VERSION))?;
    doc.put(ROOT, "team_of", conversation.to_string())?;
    doc.put_object(ROOT, "notes", ObjType::Map)?;
    Ok(())
}

fn notes_obj(doc: &AutoCommit) -> R<ObjId> {
    match doc.get(ROOT, "notes")? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(field("notes")),
    }
}

pub fn set_assignee(doc: &mut AutoCommit, to: Option<&str>, by: &str, at: DateTime<Utc>) -> R<()> {
    match to {
        Some(u) => doc.put(ROOT, "assignee", u)?,
        None => doc.delete(ROOT, "assignee")?,
    }
    doc.put(ROOT, "assigned_by", by)?;
    doc.put(
        ROOT,
        "assigned_at",
        ScalarValue::Timestamp(at.timestamp_millis()),
    )?;
    Ok(())
}

pub fn put_note(doc: &mut AutoCommit, n: &Note) -> R<()> {
    let notes = notes_obj(doc)?;
    let o = doc.put_object(&notes, n.id.to_string(), ObjType::Map)?;
    doc.put(&o, "author", n.author.as_str())?;
    doc.put(&o, "body", n.body.as_str())?;
    doc.put(
        &o,
        "created_at",
        ScalarValue::Timestamp(n.created_at.timestamp_millis()),
    )?;
    if let Some(e) = n.edited_at {
        doc.put(
            &o,
            "edited_at",
            ScalarValue::Timestamp(e.timestamp_millis()),
        )?;
    }
    Ok(())
}

pub fn edit_note(doc: &mut AutoCommit, id: Uuid, body: &str, at: DateTime<Utc>) -> R<()> {
    let notes = notes_obj(doc)?;
    let Some((Value::Object(ObjType::Map), o)) = doc.get(&notes, id.to_string())? else {
        return Err(field(format!("notes.{id}")));
    };
    doc.put(&o, "body", body)?;
    doc.put(
        &o,
        "edited_at",
        ScalarValue::Timestamp(at.timestamp_millis()),
    )?;
    Ok(())
}

pub fn delete_note(doc: &mut AutoCommit, id: Uuid) -> R<()> {
    let notes = notes_obj(doc)?;
    doc.delete(&notes, id.to_string())?;
    Ok(())
}

// ---- reading -------------------------------------------------------------------------------

fn get_str<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str, path: &str) -> R<Option<String>> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((v, _)) => v.into_string().map(Some).map_err(|_| field(path)),
    }
}

fn get_ts<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str, path: &str) -> R<Option<DateTime<Utc>>> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Timestamp(ms) => DateTime::from_timestamp_millis(*ms)
                .map(Some)
                .ok_or_else(|| field(path)),
            _ => Err(field(path)),
        },
        _ => Err(field(path)),
    }
}

fn only_keys<D: ReadDoc>(doc: &D, obj: &ObjId, path: &str, allowed: &[&str]) -> R<()> {
    match doc.keys(obj).find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(field(format!("{path}{k}"))),
        None => Ok(()),
    }
}

const ROOT_KEYS: &[&str] = &[
    "schema",
    "team_of",
    "assignee",
    "assigned_by",
    "assigned_at",
    "notes",
];
const NOTE_KEYS: &[&str] = &["author", "body", "created_at", "edited_at"];

/// Reads a team document strictly: the layout above and nothing else, belonging to
/// `conversation`, every value within the limits a local write has. Used for what we write and
/// for what another site sends alike.
pub fn read<D: ReadDoc>(doc: &D, conversation: Uuid) -> R<Team> {
    only_keys(doc, &ROOT, "", ROOT_KEYS)?;
    match doc.get(ROOT, "schema")? {
        Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Uint(SCHEMA_VERSION)) => {}
        _ => return Err(field("schema")),
    }
    if get_str(doc, &ROOT, "team_of", "team_of")?.as_deref()
        != Some(conversation.to_string().as_str())
    {
        return Err(TeamDocError::Invalid(
            "it belongs to another conversation than the id it is stored under".into(),
        ));
    }
    let user = |v: Option<String>, path: &str| -> R<Option<String>> {
        if let Some(u) = &v {
            validate_user_name(u).map_err(|e| TeamDocError::Invalid(format!("{path}: {e}")))?;
        }
        Ok(v)
    };
    let assignee = user(get_str(doc, &ROOT, "assignee", "assignee")?, "assignee")?;
    let assigned_by = user(
        get_str(doc, &ROOT, "assigned_by", "assigned_by")?,
        "assigned_by",
    )?;
    let assigned_at = get_ts(doc, &ROOT, "assigned_at", "assigned_at")?;
    let notes_id = match doc.get(ROOT, "notes")? {
        Some((Value::Object(ObjType::Map), id)) => id,
        _ => return Err(field("notes")),
    };
    let mut notes = BTreeMap::new();
    for (n, key) in doc.keys(&notes_id).enumerate() {
        if n >= MAX_NOTES_READ {
            return Err(TeamDocError::Invalid(format!(
                "more than {MAX_NOTES_READ} notes"
            )));
        }
        let path = format!("notes.{key}");
        let id = Uuid::try_parse(&key).map_err(|_| field(&path))?;
        let Some((Value::Object(ObjType::Map), o)) = doc.get(&notes_id, key.as_str())? else {
            return Err(field(&path));
        };
        only_keys(doc, &o, &format!("{path}."), NOTE_KEYS)?;
        let author = user(get_str(doc, &o, "author", &path)?, &path)?
            .ok_or_else(|| field(format!("{path}.author")))?;
        let body = get_str(doc, &o, "body", &path)?.ok_or_else(|| field(format!("{path}.body")))?;
        check_note_body(&body).map_err(|e| TeamDocError::Invalid(format!("{path}: {e}")))?;
        let created_at = get_ts(doc, &o, "created_at", &path)?
            .ok_or_else(|| field(format!("{path}.created_at")))?;
        let edited_at = get_ts(doc, &o, "edited_at", &path)?;
        notes.insert(
            (created_at, id),
            Note {
                id,
                author,
                body,
                created_at,
                edited_at,
            },
        );
    }
    Ok(Team {
        assignee,
        assigned_by,
        assigned_at,
        notes: notes.into_values().collect(),
    })
}

/// A note's body: 1 to [`limits::BODY_BYTES`] bytes of text, lines allowed, no control or
/// direction-changing characters (the same rule as a message body).
pub fn check_note_body(body: &str) -> Result<(), DomainError> {
    if body.len() > limits::BODY_BYTES {
        return Err(DomainError::invalid(
            "body",
            format!("must be at most {} bytes", limits::BODY_BYTES),
        ));
    }
    check_multiline_text("body", body, usize::MAX, true)
}

/// The dates another site's team document carries may be at most `skew` ahead of `now`.
pub fn check_dates(
    t: &Team,
    now: DateTime<Utc>,
    skew: chrono::Duration,
) -> Result<(), TeamDocError> {
    let late = |what: &str, at: DateTime<Utc>| {
        if at > now + skew {
            Err(TeamDocError::Invalid(format!(
                "{what} is dated {at}, ahead of this node's clock"
            )))
        } else {
            Ok(())
        }
    };
    if let Some(a) = t.assigned_at {
        late("assigned_at", a)?;
    }
    for n in &t.notes {
        late("a note", n.created_at)?;
        if let Some(e) = n.edited_at {
            late("a note's edit", e)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_two_classes_never_meet_and_map_back() {
        for _ in 0..1000 {
            let c = super::super::new_id();
            assert!(is_conversation_id(c.as_u128()));
            assert!(!is_team_id(c.as_u128()));
            let t = team_id(c);
            assert!(is_team_id(t));
            assert!(!is_conversation_id(t));
            assert_eq!(conversation_of(t), c);
        }
        assert!(is_conversation_id(Uuid::new_v4().as_u128()));
    }

    #[test]
    fn a_document_reads_back_and_a_foreign_key_is_refused() {
        let c = super::super::new_id();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut d = AutoCommit::new();
        create(&mut d, c).unwrap();
        set_assignee(&mut d, Some("ann"), "bob", t0).unwrap();
        let n = Note {
            id: Uuid::new_v4(),
            author: "bob".into(),
            body: "call them\nfirst".into(),
            created_at: t0,
            edited_at: None,
        };
        put_note(&mut d, &n).unwrap();
        let t = read(&d, c).unwrap();
        assert_eq!(t.assignee.as_deref(), Some("ann"));
        assert_eq!(t.notes, vec![n.clone()]);
        assert!(
            read(&d, super::super::new_id()).is_err(),
            "stored under another conversation"
        );
        let mut bad = d.clone();
        bad.put(ROOT, "visible_to_partner", true).unwrap();
        assert!(read(&bad, c).is_err());
        let mut bad = d.clone();
        edit_note(&mut bad, n.id, "bell \u{7}", t0).unwrap();
        assert!(read(&bad, c).is_err());
        let mut bad = d.clone();
        set_assignee(&mut bad, Some("no spaces allowed"), "bob", t0).unwrap();
        assert!(read(&bad, c).is_err());
        delete_note(&mut d, n.id).unwrap();
        assert!(read(&d, c).unwrap().notes.is_empty());
    }
}
