//! The conversation document schema: how a [`Conversation`] is laid out in Automerge.
//!
//! ```text
//! ROOT
//!   schema        Uint      1 (this layout)
//!   id            Str       conversation UUID
//!   kind          Str       "message" | "task"
//!   subject       Str       LWW: concurrent edits resolve to the same winner everywhere
//!   topic         Map?      { kind, ref, label?, url? }
//!   reference_id  Str?
//!   participants  Map       { retailer: org id, supplier: org id }   never changes
//!   created_by    Map       { org, user }
//!   created_at    Timestamp ms
//!   messages      Map       message UUID -> { org, user, body, sent_at: Timestamp,
//!                           attachments?: List [ { sha256, size: Uint, name, type } ] }
//!   state         Str       "open" | "resolved"
//!   resolved_at   Timestamp?   resolved_by Map? { org, user }
//!   due_date      Str?      "YYYY-MM-DD" (tasks)
//!   progress      Str?      "open" | "in_progress" | "completed" | "cancelled" (tasks)
//!   history       Map       event UUID -> { at, org, user, action, from?, to? }
//! ```
//!
//! Messages and history are maps keyed by UUID rather than lists: concurrent replies from two
//! nodes are both kept, a retried write with the same id is a no-op, and every node orders them
//! the same way, by (time, id). Overdue is not stored (it depends on today's date).

use automerge::{
    AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value, transaction::Transactable,
};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::*;

pub const SCHEMA_VERSION: u64 = 1;

/// The document does not follow the schema: it is contained to itself and reported.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("document field {0} is missing or has the wrong type")]
    Field(String),
    #[error("document field {0} is not part of the conversation schema")]
    Unknown(String),
    #[error(
        "schema version {0} is not one this node reads (it reads {SCHEMA_VERSION}); upgrade this node"
    )]
    Schema(String),
    #[error("{0}")]
    Inconsistent(&'static str),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

type R<T> = Result<T, DocError>;

fn ts(t: DateTime<Utc>) -> ScalarValue {
    ScalarValue::Timestamp(t.timestamp_millis())
}

fn put_author(doc: &mut AutoCommit, obj: &ObjId, a: &Author) -> R<()> {
    doc.put(obj, "org", a.org.as_str())?;
    doc.put(obj, "user", a.user.as_str())?;
    Ok(())
}

/// Writes a whole new conversation into an empty document.
pub fn create(doc: &mut AutoCommit, c: &Conversation) -> R<()> {
    doc.put(ROOT, "schema", SCHEMA_VERSION)?;
    doc.put(ROOT, "id", c.id.to_string())?;
    doc.put(ROOT, "kind", c.kind.as_str())?;
    doc.put(ROOT, "subject", c.subject.as_str())?;
    set_topic(doc, c.topic.as_ref())?;
    set_opt_str(doc, "reference_id", c.reference_id.as_deref())?;
    let p = doc.put_object(ROOT, "participants", ObjType::Map)?;
    doc.put(&p, "retailer", c.participants.retailer.as_str())?;
    doc.put(&p, "supplier", c.participants.supplier.as_str())?;
    let cb = doc.put_object(ROOT, "created_by", ObjType::Map)?;
    put_author(doc, &cb, &c.created_by)?;
    doc.put(ROOT, "created_at", ts(c.created_at))?;
    doc.put_object(ROOT, "messages", ObjType::Map)?;
    doc.put_object(ROOT, "history", ObjType::Map)?;
    doc.put(ROOT, "state", c.state.as_str())?;
    if c.kind == Kind::Task {
        set_opt_str(
            doc,
            "due_date",
            c.due_date.map(|d| d.to_string()).as_deref(),
        )?;
        set_opt_str(doc, "progress", c.progress.map(|p| p.as_str()))?;
    }
    for m in &c.messages {
        add_message(doc, m)?;
    }
    for e in &c.history {
        add_event(doc, e)?;
    }
    Ok(())
}

fn map_at(doc: &AutoCommit, key: &str) -> R<ObjId> {
    match doc.get(ROOT, key)? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(DocError::Field(key.into())),
    }
}

pub fn add_message(doc: &mut AutoCommit, m: &Message) -> R<()> {
    let msgs = map_at(doc, "messages")?;
    let o = doc.put_object(&msgs, m.id.to_string(), ObjType::Map)?;
    put_author(doc, &o, &m.author)?;
    doc.put(&o, "body", m.body.as_str())?;
    doc.put(&o, "sent_at", ts(m.sent_at))?;
    if !m.attachments.is_empty() {
        let list = doc.put_object(&o, "attachments", ObjType::List)?;
        for (i, a) in m.attachments.iter().enumerate() {
            let f = doc.insert_object(&list, i, ObjType::Map)?;
            doc.put(&f, "sha256", a.sha256.as_str())?;
            doc.put(&f, "size", ScalarValue::Uint(a.size))?;
            doc.put(&f, "name", a.name.as_str())?;
            doc.put(&f, "type", a.mime.as_str())?;
        }
    }
    Ok(())
}

const ATTACHMENT_KEYS: &[&str] = &["sha256", "size", "name", "type"];

/// The files of one message, from its `attachments` list.
fn read_attachments<D: ReadDoc>(
    doc: &D,
    list: &ObjId,
    strict: bool,
) -> R<Vec<super::attachment::AttachmentRef>> {
    let wrong = |k: &str| DocError::Field(format!("messages.attachments.{k}"));
    let mut out = Vec::new();
    for i in 0..doc.length(list) {
        let f = match doc.get(list, i)? {
            Some((Value::Object(ObjType::Map), id)) => id,
            _ => return Err(wrong("item")),
        };
        if strict {
            only_keys(doc, &f, "messages.attachments", ATTACHMENT_KEYS)?;
        }
        let size = match doc.get(&f, "size")? {
            Some((Value::Scalar(v), _)) => match v.as_ref() {
                ScalarValue::Uint(n) => *n,
                ScalarValue::Int(n) if *n > 0 => *n as u64,
                _ => return Err(wrong("size")),
            },
            _ => return Err(wrong("size")),
        };
        out.push(super::attachment::AttachmentRef {
            sha256: req_str(doc, &f, "sha256").map_err(|_| wrong("sha256"))?,
            size,
            name: req_str(doc, &f, "name").map_err(|_| wrong("name"))?,
            mime: req_str(doc, &f, "type").map_err(|_| wrong("type"))?,
        });
    }
    Ok(out)
}

pub fn add_event(doc: &mut AutoCommit, e: &Event) -> R<()> {
    let hist = map_at(doc, "history")?;
    let o = doc.put_object(&hist, e.id.to_string(), ObjType::Map)?;
    doc.put(&o, "at", ts(e.at))?;
    put_author(doc, &o, &e.by)?;
    doc.put(&o, "action", e.action.as_str())?;
    if let Some(f) = &e.from {
        doc.put(&o, "from", f.as_str())?;
    }
    if let Some(t) = &e.to {
        doc.put(&o, "to", t.as_str())?;
    }
    Ok(())
}

pub fn set_subject(doc: &mut AutoCommit, s: &str) -> R<()> {
    doc.put(ROOT, "subject", s)?;
    Ok(())
}

/// Sets or deletes an optional string field at the root.
pub fn set_opt_str(doc: &mut AutoCommit, key: &str, v: Option<&str>) -> R<()> {
    match v {
        Some(s) => doc.put(ROOT, key, s)?,
        None => {
            if doc.get(ROOT, key)?.is_some() {
                doc.delete(ROOT, key)?
            }
        }
    }
    Ok(())
}

pub fn set_topic(doc: &mut AutoCommit, t: Option<&Topic>) -> R<()> {
    match t {
        None => {
            if doc.get(ROOT, "topic")?.is_some() {
                doc.delete(ROOT, "topic")?;
            }
        }
        Some(t) => {
            let o = doc.put_object(ROOT, "topic", ObjType::Map)?;
            doc.put(&o, "kind", t.kind.as_str())?;
            doc.put(&o, "ref", t.reference.as_str())?;
            if let Some(l) = &t.label {
                doc.put(&o, "label", l.as_str())?;
            }
            if let Some(u) = &t.url {
                doc.put(&o, "url", u.as_str())?;
            }
        }
    }
    Ok(())
}

pub fn set_resolved(doc: &mut AutoCommit, resolved: Option<(DateTime<Utc>, &Author)>) -> R<()> {
    match resolved {
        Some((at, by)) => {
            doc.put(ROOT, "state", State::Resolved.as_str())?;
            doc.put(ROOT, "resolved_at", ts(at))?;
            let o = doc.put_object(ROOT, "resolved_by", ObjType::Map)?;
            put_author(doc, &o, by)?;
        }
        None => {
            doc.put(ROOT, "state", State::Open.as_str())?;
            for k in ["resolved_at", "resolved_by"] {
                if doc.get(ROOT, k)?.is_some() {
                    doc.delete(ROOT, k)?;
                }
            }
        }
    }
    Ok(())
}

// ---- reading -------------------------------------------------------------------------------

fn get_str<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> R<Option<String>> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((v, _)) => v
            .into_string()
            .map(Some)
            .map_err(|_| DocError::Field(key.into())),
    }
}

fn req_str<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> R<String> {
    get_str(doc, obj, key)?.ok_or_else(|| DocError::Field(key.into()))
}

fn get_ts<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> R<Option<DateTime<Utc>>> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Timestamp(ms) => DateTime::from_timestamp_millis(*ms)
                .map(Some)
                .ok_or_else(|| DocError::Field(key.into())),
            _ => Err(DocError::Field(key.into())),
        },
        _ => Err(DocError::Field(key.into())),
    }
}

fn req_ts<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> R<DateTime<Utc>> {
    get_ts(doc, obj, key)?.ok_or_else(|| DocError::Field(key.into()))
}

fn get_map<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> R<Option<ObjId>> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Object(ObjType::Map), id)) => Ok(Some(id)),
        _ => Err(DocError::Field(key.into())),
    }
}

fn req_map<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> R<ObjId> {
    get_map(doc, obj, key)?.ok_or_else(|| DocError::Field(key.into()))
}

fn get_author<D: ReadDoc>(doc: &D, obj: &ObjId) -> R<Author> {
    let org =
        OrgId::parse(&req_str(doc, obj, "org")?).map_err(|_| DocError::Field("org".into()))?;
    Ok(Author {
        org,
        user: req_str(doc, obj, "user")?,
    })
}

fn parse_enum<T>(field: &str, s: String, f: fn(&str) -> Option<T>) -> R<T> {
    f(&s).ok_or_else(|| DocError::Field(field.into()))
}

fn parse_org(field: &str, s: String) -> R<OrgId> {
    OrgId::parse(&s).map_err(|_| DocError::Field(field.into()))
}

/// The participants alone: what partner isolation and sync rules look at.
pub fn read_participants<D: ReadDoc>(doc: &D) -> R<Participants> {
    let p = req_map(doc, &ROOT, "participants")?;
    Ok(Participants {
        retailer: parse_org("participants.retailer", req_str(doc, &p, "retailer")?)?,
        supplier: parse_org("participants.supplier", req_str(doc, &p, "supplier")?)?,
    })
}

const ROOT_KEYS: &[&str] = &[
    "schema",
    "id",
    "kind",
    "subject",
    "topic",
    "reference_id",
    "participants",
    "created_by",
    "created_at",
    "messages",
    "state",
    "resolved_at",
    "resolved_by",
    "due_date",
    "progress",
    "history",
];
const TOPIC_KEYS: &[&str] = &["kind", "ref", "label", "url"];
const PARTICIPANT_KEYS: &[&str] = &["retailer", "supplier"];
const AUTHOR_KEYS: &[&str] = &["org", "user"];
const MESSAGE_KEYS: &[&str] = &["org", "user", "body", "sent_at", "attachments"];
const EVENT_KEYS: &[&str] = &["at", "org", "user", "action", "from", "to"];

fn only_keys<D: ReadDoc>(doc: &D, obj: &ObjId, path: &str, allowed: &[&str]) -> R<()> {
    match doc.keys(obj).find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(DocError::Unknown(if path.is_empty() {
            k
        } else {
            format!("{path}.{k}")
        })),
        None => Ok(()),
    }
}

/// Reads the typed view of a document that arrived from elsewhere: like [`read`], and also
/// refuses what `read` would pass over — keys the schema does not have, a schema version
/// other than this one, and an open conversation that still says when it was resolved
/// (unless two nodes set the state concurrently, where Automerge keeps both values and the
/// leftover `resolved_at` of the losing side is an honest outcome).
pub fn read_strict<D: ReadDoc>(doc: &D) -> R<Conversation> {
    match doc.get(ROOT, "schema")? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Uint(v) if *v == SCHEMA_VERSION => {}
            ScalarValue::Int(v) if *v as u64 == SCHEMA_VERSION && *v > 0 => {}
            other => return Err(DocError::Schema(other.to_string())),
        },
        Some(_) => return Err(DocError::Schema("an object".into())),
        None => return Err(DocError::Field("schema".into())),
    }
    only_keys(doc, &ROOT, "", ROOT_KEYS)?;
    if let Some(t) = get_map(doc, &ROOT, "topic")? {
        only_keys(doc, &t, "topic", TOPIC_KEYS)?;
    }
    only_keys(
        doc,
        &req_map(doc, &ROOT, "participants")?,
        "participants",
        PARTICIPANT_KEYS,
    )?;
    only_keys(
        doc,
        &req_map(doc, &ROOT, "created_by")?,
        "created_by",
        AUTHOR_KEYS,
    )?;
    if let Some(r) = get_map(doc, &ROOT, "resolved_by")? {
        only_keys(doc, &r, "resolved_by", AUTHOR_KEYS)?;
    }
    let c = read_with(doc, true)?;
    if !super::team::is_conversation_id(c.id.as_u128()) {
        // Other variants would share team-document ids with a real conversation's.
        return Err(DocError::Inconsistent(
            "a conversation id must be an RFC 4122 UUID (variant bits 10)",
        ));
    }
    if c.state == State::Open
        && (c.resolved_at.is_some() || c.resolved_by.is_some())
        && !resolved_concurrently(doc)?
    {
        return Err(DocError::Inconsistent(
            "an open conversation cannot carry resolved_at or resolved_by",
        ));
    }
    Ok(c)
}

/// Whether a losing value of `state` is a real "resolved": only such a crossing explains a
/// leftover `resolved_at`. Any other losing value (garbage, or "open" twice) proves nothing.
fn resolved_concurrently<D: ReadDoc>(doc: &D) -> R<bool> {
    let all = doc.get_all(ROOT, "state")?;
    Ok(all.split_last().is_some_and(|(_, rest)| {
        rest.iter().any(|(v, _)| {
            matches!(v, Value::Scalar(s)
                if matches!(s.as_ref(), ScalarValue::Str(s) if State::parse(s) == Some(State::Resolved)))
        })
    }))
}

/// Reads the typed view; fails if the document does not follow the schema.
pub fn read<D: ReadDoc>(doc: &D) -> R<Conversation> {
    read_with(doc, false)
}

/// The fields of one message or history entry, read in one pass over the object: each is
/// looked at once, and with `strict` a key the schema does not have is an error.
struct Item {
    org: Option<String>,
    user: Option<String>,
    body: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    sent_at: Option<i64>,
    at: Option<i64>,
    /// The message's `attachments` list, when it has one.
    attachments: Option<ObjId>,
}

impl Item {
    fn scan<D: ReadDoc>(doc: &D, obj: &ObjId, path: &str, strict: bool) -> R<Item> {
        let mut f = Item {
            org: None,
            user: None,
            body: None,
            action: None,
            from: None,
            to: None,
            sent_at: None,
            at: None,
            attachments: None,
        };
        let allowed = if path == "messages" {
            MESSAGE_KEYS
        } else {
            EVENT_KEYS
        };
        for item in doc.map_range(obj, ..) {
            let key = item.key.as_ref();
            if !allowed.contains(&key) {
                if strict {
                    return Err(DocError::Unknown(format!("{path}.{key}")));
                }
                continue;
            }
            let wrong = || DocError::Field(format!("{path}.{key}"));
            if key == "attachments" {
                if !matches!(item.value, automerge::ValueRef::Object(ObjType::List)) {
                    return Err(wrong());
                }
                f.attachments = Some(item.id());
                continue;
            }
            let automerge::ValueRef::Scalar(v) = &item.value else {
                return Err(wrong());
            };
            match (key, v) {
                ("sent_at" | "at", automerge::ScalarValueRef::Timestamp(ms)) => {
                    *if key == "at" {
                        &mut f.at
                    } else {
                        &mut f.sent_at
                    } = Some(*ms)
                }
                (_, automerge::ScalarValueRef::Str(s)) => {
                    let slot = match key {
                        "org" => &mut f.org,
                        "user" => &mut f.user,
                        "body" => &mut f.body,
                        "action" => &mut f.action,
                        "from" => &mut f.from,
                        "to" => &mut f.to,
                        _ => return Err(wrong()),
                    };
                    *slot = Some(s.to_string());
                }
                _ => return Err(wrong()),
            }
        }
        Ok(f)
    }

    fn str(&mut self, key: &str) -> R<Option<String>> {
        Ok(match key {
            "from" => self.from.take(),
            "to" => self.to.take(),
            "body" => self.body.take(),
            "action" => self.action.take(),
            _ => return Err(DocError::Field(key.into())),
        })
    }

    fn req_str(&mut self, key: &str) -> R<String> {
        self.str(key)?.ok_or_else(|| DocError::Field(key.into()))
    }

    fn req_ts(&mut self, key: &str) -> R<DateTime<Utc>> {
        let ms = if key == "at" { self.at } else { self.sent_at };
        ms.and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| DocError::Field(key.into()))
    }

    fn author(&mut self) -> R<Author> {
        let org = self
            .org
            .take()
            .ok_or_else(|| DocError::Field("org".into()))?;
        Ok(Author {
            org: OrgId::parse(&org).map_err(|_| DocError::Field("org".into()))?,
            user: self
                .user
                .take()
                .ok_or_else(|| DocError::Field("user".into()))?,
        })
    }
}

fn read_with<D: ReadDoc>(doc: &D, strict: bool) -> R<Conversation> {
    let id =
        Uuid::parse_str(&req_str(doc, &ROOT, "id")?).map_err(|_| DocError::Field("id".into()))?;
    let kind = parse_enum("kind", req_str(doc, &ROOT, "kind")?, Kind::parse)?;
    let topic = match get_map(doc, &ROOT, "topic")? {
        None => None,
        Some(t) => Some(Topic {
            kind: parse_enum("topic.kind", req_str(doc, &t, "kind")?, TopicKind::parse)?,
            reference: req_str(doc, &t, "ref")?,
            label: get_str(doc, &t, "label")?,
            url: get_str(doc, &t, "url")?,
        }),
    };
    let mut messages = Vec::new();
    let msgs = req_map(doc, &ROOT, "messages")?;
    for item in doc.map_range(&msgs, ..) {
        let mid = Uuid::parse_str(&item.key).map_err(|_| DocError::Field("messages.id".into()))?;
        if !matches!(item.value, automerge::ValueRef::Object(ObjType::Map)) {
            return Err(DocError::Field(format!("messages.{mid}")));
        }
        let mut f = Item::scan(doc, &item.id(), "messages", strict)?;
        let attachments = match &f.attachments {
            Some(list) => read_attachments(doc, list, strict)?,
            None => Vec::new(),
        };
        messages.push(Message {
            id: mid,
            author: f.author()?,
            body: f.req_str("body")?,
            sent_at: f.req_ts("sent_at")?,
            attachments,
        });
    }
    messages.sort_by_key(|m| (m.sent_at, m.id));
    let mut history = Vec::new();
    let hist = req_map(doc, &ROOT, "history")?;
    for item in doc.map_range(&hist, ..) {
        let eid = Uuid::parse_str(&item.key).map_err(|_| DocError::Field("history.id".into()))?;
        if !matches!(item.value, automerge::ValueRef::Object(ObjType::Map)) {
            return Err(DocError::Field(format!("history.{eid}")));
        }
        let mut f = Item::scan(doc, &item.id(), "history", strict)?;
        history.push(Event {
            id: eid,
            at: f.req_ts("at")?,
            by: f.author()?,
            action: f.req_str("action")?,
            from: f.str("from")?,
            to: f.str("to")?,
        });
    }
    history.sort_by_key(|e| (e.at, e.id));
    let cb = req_map(doc, &ROOT, "created_by")?;
    let due_date = match get_str(doc, &ROOT, "due_date")? {
        None => None,
        Some(s) => Some(
            s.parse::<NaiveDate>()
                .map_err(|_| DocError::Field("due_date".into()))?,
        ),
    };
    let progress = match get_str(doc, &ROOT, "progress")? {
        None => None,
        Some(s) => Some(parse_enum("progress", s, Progress::parse)?),
    };
    Ok(Conversation {
        id,
        kind,
        subject: req_str(doc, &ROOT, "subject")?,
        topic,
        reference_id: get_str(doc, &ROOT, "reference_id")?,
        participants: read_participants(doc)?,
        created_by: get_author(doc, &cb)?,
        created_at: req_ts(doc, &ROOT, "created_at")?,
        messages,
        state: parse_enum("state", req_str(doc, &ROOT, "state")?, State::parse)?,
        resolved_at: get_ts(doc, &ROOT, "resolved_at")?,
        resolved_by: match get_map(doc, &ROOT, "resolved_by")? {
            None => None,
            Some(o) => Some(get_author(doc, &o)?),
        },
        due_date,
        progress,
        history,
    })
}

pub mod conflicts;
pub mod delivery;

#[cfg(test)]
mod tests;
