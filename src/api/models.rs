//! JSON shapes of the API and their conversions from the domain. The domain stays free of
//! poem; these types carry the OpenAPI descriptions.

use chrono::{DateTime, NaiveDate, Utc};
use poem_openapi::{Enum, Object};
use uuid::Uuid;

use crate::domain;

macro_rules! api_enum {
    ($(#[$m:meta])* $name:ident => $dom:ident { $($v:ident),+ }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
        #[allow(clippy::enum_variant_names)]
        $(#[$m])*
        #[oai(rename_all = "snake_case")]
        pub enum $name { $($v),+ }
        impl From<domain::$dom> for $name {
            fn from(x: domain::$dom) -> Self { match x { $(domain::$dom::$v => $name::$v),+ } }
        }
        impl From<$name> for domain::$dom {
            fn from(x: $name) -> Self { match x { $($name::$v => domain::$dom::$v),+ } }
        }
    };
}

api_enum!(#[oai(rename = "Kind")] Kind => Kind { Message, Task });
api_enum!(#[oai(rename = "State")] State => State { Open, Resolved });
api_enum!(#[oai(rename = "Progress")] Progress => Progress { Open, InProgress, Completed, Cancelled });
api_enum!(#[oai(rename = "TopicKind")] TopicKind => TopicKind { Account, Order, Item, Return, Shipment, Invoice, Other });
api_enum!(#[oai(rename = "Role")] Role => Role { Retailer, Supplier });

/// A link to the business object a conversation is about.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Topic {
    pub kind: TopicKind,
    /// The object's identifier, e.g. `PO-1001` or `SKU-12345`.
    #[oai(rename = "ref", validator(max_length = 100))]
    pub reference: String,
    #[oai(validator(max_length = 200))]
    pub label: Option<String>,
    #[oai(validator(max_length = 2000))]
    pub url: Option<String>,
}

impl From<domain::Topic> for Topic {
    fn from(t: domain::Topic) -> Self {
        Topic {
            kind: t.kind.into(),
            reference: t.reference,
            label: t.label,
            url: t.url,
        }
    }
}
impl From<Topic> for domain::Topic {
    fn from(t: Topic) -> Self {
        domain::Topic {
            kind: t.kind.into(),
            reference: t.reference,
            label: t.label,
            url: t.url,
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Author {
    pub org: String,
    pub user: String,
}

impl From<domain::Author> for Author {
    fn from(a: domain::Author) -> Self {
        Author {
            org: a.org.to_string(),
            user: a.user,
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Participants {
    pub retailer: String,
    pub supplier: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Message {
    pub id: Uuid,
    pub author: Author,
    pub body: String,
    pub sent_at: DateTime<Utc>,
    /// `false` for a message of this org that no node of the partner org holds yet; a
    /// partner's message is always `true`.
    pub delivered: bool,
    /// Files attached to the message, in the order they were attached.
    pub attachments: Vec<Attachment>,
}

/// A file attached to a message.
#[derive(Debug, Clone, Object)]
pub struct Attachment {
    /// SHA-256 of the content (64 hex digits): `GET /api/v1/attachments/{sha256}` downloads it.
    pub sha256: String,
    pub size: u64,
    pub name: String,
    /// The media type the content was recognised as.
    #[oai(rename = "type")]
    pub mime: String,
    /// `present`: here, ready to open; `arriving`: being fetched from the partner's node;
    /// `too_large`: over this node's file size limit, so not fetched here; `refused`: fetched,
    /// and not a kind of file this node takes (`attachments.types`), so not kept.
    pub state: String,
    /// Shown as a picture in the thread (PNG, JPEG, GIF, WebP); everything else downloads.
    pub preview: bool,
}

/// A change of state, progress or a field.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct HistoryEvent {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub by: Author,
    /// `created`, `resolved`, `reopened`, `progress`, `subject`, `reference_id` or `due_date`.
    pub action: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A conversation with its thread and history.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Conversation {
    pub id: Uuid,
    pub kind: Kind,
    /// The other org.
    pub partner: String,
    pub participants: Participants,
    pub subject: String,
    pub topic: Option<Topic>,
    pub reference_id: Option<String>,
    pub state: State,
    /// Tasks only.
    pub progress: Option<Progress>,
    /// Tasks only.
    pub due_date: Option<NaiveDate>,
    /// Derived: a task past its due date that is neither completed, cancelled nor resolved.
    pub overdue: bool,
    pub created_by: Author,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<Author>,
    pub last_activity_at: DateTime<Utc>,
    pub messages: Vec<Message>,
    pub history: Vec<HistoryEvent>,
    /// Changed on this node, and no node of the partner org holds it as it is here yet.
    pub undelivered: bool,
    /// Fields two nodes changed while apart; empty when nothing crossed.
    pub conflicts: Vec<FieldConflict>,
    /// The user of our org who handles it. Internal: never sent to the partner.
    pub assignee: Option<String>,
    /// Internal notes of our org, oldest first. Never sent to the partner.
    pub notes: Vec<Note>,
    /// `true`: the stored notes and assignment of this conversation are damaged on this node
    /// (`notes` and `assignee` are then empty, not known to be); restore from a backup.
    pub team_damaged: Option<bool>,
}

/// An internal note: written to colleagues, kept by the sites of our own org only.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Note {
    pub id: Uuid,
    /// The user who wrote it; only they may edit or delete it.
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    /// Always `internal`: who may see it.
    pub visibility: String,
}

impl From<domain::team::Note> for Note {
    fn from(n: domain::team::Note) -> Self {
        Note {
            id: n.id,
            author: n.author,
            body: n.body,
            created_at: n.created_at,
            edited_at: n.edited_at,
            visibility: "internal".into(),
        }
    }
}

/// A field two nodes set while apart: Automerge keeps both values and shows `standing` on
/// every node until someone sets the field again.
#[derive(Debug, Clone, Object)]
pub struct FieldConflict {
    /// `subject`, `state`, `progress`, `due_date` or `reference_id`.
    pub field: String,
    /// The value shown (progress as `completed` etc., dates as YYYY-MM-DD); null for none.
    pub standing: Option<String>,
    /// Who set the standing value, when the history tells.
    pub standing_by: Option<Author>,
    /// The values that crossed with it.
    pub others: Vec<Nullable<String>>,
    /// Who set each of `others` (same order), when the history tells.
    pub others_by: Vec<Nullable<Author>>,
}

/// An array element that may be `null`. (`Option` would be documented as a value that is
/// never null there: the document marks only optional fields nullable.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nullable<T>(pub Option<T>);

impl<T: poem_openapi::types::Type> poem_openapi::types::Type for Nullable<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> std::borrow::Cow<'static, str> {
        format!("nullable_{}", T::name()).into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
        match T::schema_ref() {
            MetaSchemaRef::Inline(mut s) => {
                s.nullable = true;
                MetaSchemaRef::Inline(s)
            }
            // Siblings of `$ref` are ignored in OpenAPI 3.0: wrap it.
            r @ MetaSchemaRef::Reference(_) => MetaSchemaRef::Inline(Box::new(MetaSchema {
                all_of: vec![r],
                nullable: true,
                ..MetaSchema::ANY
            })),
        }
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(|v| v.as_raw_value())
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(v) => v.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }
}

impl<T: poem_openapi::types::ToJSON> poem_openapi::types::ToJSON for Nullable<T> {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(
            self.0
                .as_ref()
                .and_then(|v| v.to_json())
                .unwrap_or(serde_json::Value::Null),
        )
    }
}

impl<T: poem_openapi::types::ParseFromJSON> poem_openapi::types::ParseFromJSON for Nullable<T> {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::Null => Ok(Nullable(None)),
            v => T::parse_from_json(Some(v))
                .map(|t| Nullable(Some(t)))
                .map_err(poem_openapi::types::ParseError::propagate),
        }
    }
}

impl From<domain::doc::conflicts::Conflict> for FieldConflict {
    fn from(c: domain::doc::conflicts::Conflict) -> Self {
        FieldConflict {
            field: c.field.to_string(),
            standing: c.standing.value,
            standing_by: c.standing.by.map(Into::into),
            others_by: c
                .others
                .iter()
                .map(|o| Nullable(o.by.clone().map(Into::into)))
                .collect(),
            others: c.others.into_iter().map(|o| Nullable(o.value)).collect(),
        }
    }
}

impl Conversation {
    pub fn of(c: domain::Conversation, me: &domain::OrgId, today: NaiveDate) -> Self {
        Conversation {
            id: c.id,
            kind: c.kind.into(),
            partner: c.participants.other(me).to_string(),
            participants: Participants {
                retailer: c.participants.retailer.to_string(),
                supplier: c.participants.supplier.to_string(),
            },
            overdue: c.overdue(today),
            last_activity_at: c.last_activity_at(),
            subject: c.subject,
            topic: c.topic.map(Into::into),
            reference_id: c.reference_id,
            state: c.state.into(),
            progress: c.progress.map(Into::into),
            due_date: c.due_date,
            created_by: c.created_by.into(),
            created_at: c.created_at,
            resolved_at: c.resolved_at,
            resolved_by: c.resolved_by.map(Into::into),
            messages: c
                .messages
                .into_iter()
                .map(|m| Message {
                    id: m.id,
                    author: m.author.into(),
                    body: m.body,
                    sent_at: m.sent_at,
                    delivered: true,
                    attachments: m
                        .attachments
                        .into_iter()
                        .map(|a| Attachment {
                            preview: domain::attachment::kind_by_mime(&a.mime)
                                .is_some_and(|k| k.preview),
                            // Shown and saved under an ending of its kind (`safe_file_name`).
                            name: domain::attachment::kind_by_mime(&a.mime)
                                .map(|k| domain::attachment::safe_file_name(&a.name, k))
                                .unwrap_or(a.name),
                            sha256: a.sha256,
                            size: a.size,
                            mime: a.mime,
                            state: "arriving".into(),
                        })
                        .collect(),
                })
                .collect(),
            history: c
                .history
                .into_iter()
                .map(|e| HistoryEvent {
                    id: e.id,
                    at: e.at,
                    by: e.by.into(),
                    action: e.action,
                    from: e.from,
                    to: e.to,
                })
                .collect(),
            undelivered: false,
            conflicts: Vec::new(),
            assignee: None,
            notes: Vec::new(),
            team_damaged: None,
        }
    }

    /// The detail view: [`Conversation::of`] with delivery and crossed changes.
    pub fn detail(d: crate::service::Detail, me: &domain::OrgId, today: NaiveDate) -> Self {
        let mut c = Conversation::of(d.conversation, me, today);
        c.undelivered = d.undelivered;
        for m in &mut c.messages {
            m.delivered = !d.undelivered_messages.contains(&m.id);
            for a in &mut m.attachments {
                a.state = match d.files.get(&a.sha256) {
                    Some(crate::service::FileState::Present) => "present",
                    Some(crate::service::FileState::TooLarge) => "too_large",
                    Some(crate::service::FileState::Refused) => "refused",
                    _ => "arriving",
                }
                .into();
            }
        }
        c.conflicts = d.conflicts.into_iter().map(Into::into).collect();
        c.assignee = d.team.assignee;
        c.notes = d.team.notes.into_iter().map(Into::into).collect();
        c.team_damaged = d.team_damaged.then_some(true);
        c
    }
}

/// One row of the inbox.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InboxItem {
    pub id: Uuid,
    pub kind: Kind,
    pub partner: String,
    pub subject: String,
    pub topic: Option<Topic>,
    pub reference_id: Option<String>,
    pub state: State,
    pub progress: Option<Progress>,
    pub due_date: Option<NaiveDate>,
    pub overdue: bool,
    pub created_by: Author,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub message_count: u32,
    /// The org that wrote the last message.
    pub last_message_org: Option<String>,
    pub last_message_preview: Option<String>,
    /// Unread by the signed-in user.
    pub unread: bool,
    /// Changed on this node and not yet held by a node of the partner org.
    pub undelivered: bool,
    /// The user of our org who handles it (internal).
    pub assignee: Option<String>,
    /// The folder it is listed in: `action`, `tasks`, `inbox` (open) or `resolved`, so a
    /// search across folders says where each result is.
    pub folder: String,
}

impl InboxItem {
    pub fn of(s: domain::Summary, unread: bool, today: NaiveDate) -> Self {
        InboxItem {
            folder: s.folder(today).into(),
            overdue: s.overdue(today),
            id: s.id,
            kind: s.kind.into(),
            partner: s.partner.to_string(),
            subject: s.subject,
            topic: s.topic.map(Into::into),
            reference_id: s.reference_id,
            state: s.state.into(),
            progress: s.progress.map(Into::into),
            due_date: s.due_date,
            created_by: s.created_by.into(),
            created_at: s.created_at,
            last_activity_at: s.last_activity_at,
            message_count: s.message_count,
            last_message_org: s.last_message_org.map(|o| o.to_string()),
            last_message_preview: s.last_message_preview,
            unread,
            undelivered: false,
            assignee: s.assignee,
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Conversations matching the filters.
    pub total: u64,
    /// Conversations unread by the signed-in user (all folders).
    pub unread: u64,
}
