//! `/conversations` and `/changes`.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::Tags;
use super::auth::BearerAuth;
use super::error::ApiError;
use super::inbox_params::InboxParams;
use super::models::*;
use crate::domain::summary::Folder as DomainFolder;
use crate::domain::{self, OrgId, commands::Command};
use crate::service::{CreateInput, Service};

pub struct ConversationsApi {
    pub svc: Arc<Service>,
}

/// An inbox folder, decided by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "Folder", rename_all = "snake_case")]
pub enum Folder {
    /// Open conversations.
    Inbox,
    /// Open tasks that are neither completed nor cancelled.
    Tasks,
    /// Action required: awaiting our reply or overdue, never a finished task.
    Action,
    /// Resolved conversations.
    Resolved,
    /// Unread by the signed-in user, in any state; `total` equals `unread`.
    Unread,
    /// Every conversation.
    All,
    /// Open, and assigned to the signed-in user (the Inbox with `assignee=me`).
    Mine,
    /// Open, and assigned to nobody (the Inbox with `assignee=none`).
    Unassigned,
}

impl From<Folder> for DomainFolder {
    fn from(f: Folder) -> Self {
        match f {
            Folder::Inbox => DomainFolder::Inbox,
            Folder::Tasks => DomainFolder::Tasks,
            Folder::Action => DomainFolder::Action,
            Folder::Resolved => DomainFolder::Resolved,
            Folder::Unread => DomainFolder::Unread,
            Folder::All => DomainFolder::All,
            // The Inbox, narrowed by assignee (`InboxParams::parse` adds the filter).
            Folder::Mine | Folder::Unassigned => DomainFolder::Inbox,
        }
    }
}

/// The order of an inbox page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "Sort", rename_all = "snake_case")]
pub enum Sort {
    /// Newest activity first.
    Activity,
    /// Soonest due date first (ties by id), then those without one, newest activity first.
    Due,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewConversation {
    /// Optional client-chosen id: retrying a create with the same id never duplicates it.
    pub id: Option<Uuid>,
    /// Required.
    pub kind: Option<Kind>,
    /// Required: the partner org's id.
    #[oai(validator(max_length = 64))]
    pub partner: Option<String>,
    /// Required: 1-200 characters.
    #[oai(validator(max_length = 200))]
    pub subject: Option<String>,
    pub topic: Option<Topic>,
    /// Up to 100 characters.
    #[oai(validator(max_length = 100))]
    pub reference_id: Option<String>,
    /// Tasks only.
    pub due_date: Option<NaiveDate>,
    /// The first message, up to 64 KiB of UTF-8 (may be empty when it carries files).
    #[oai(validator(max_length = 65536))]
    pub body: Option<String>,
    /// Files of the first message, by SHA-256 (from `POST /api/v1/attachments`); at most 20.
    #[oai(validator(max_items = 20))]
    pub attachments: Option<Vec<String>>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewMessage {
    /// Optional client-chosen id: retrying a reply with the same id never duplicates it.
    pub id: Option<Uuid>,
    /// Required: 1 byte to 64 KiB of UTF-8; may be empty or absent when the reply carries files.
    #[oai(validator(max_length = 65536))]
    pub body: Option<String>,
    /// Files, by SHA-256 (from `POST /api/v1/attachments`); at most 20.
    #[oai(validator(max_items = 20))]
    pub attachments: Option<Vec<String>>,
}

/// Fields to change. An absent field stays as it is; `reference_id` or `due_date` set to
/// `null` removes it.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConversationPatch {
    #[oai(validator(max_length = 200))]
    pub subject: Option<String>,
    pub reference_id: MaybeUndefined<String>,
    pub due_date: MaybeUndefined<NaiveDate>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProgressBody {
    pub progress: Progress,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Change {
    pub seq: u64,
    pub id: Uuid,
    pub kind: Kind,
    pub partner: String,
    pub subject: String,
    pub state: State,
    pub last_activity_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ChangesPage {
    /// Oldest first; each conversation appears once, at its latest change.
    pub changes: Vec<Change>,
    /// The highest sequence number of the feed; pass it as `since` to wait for newer ones.
    pub last_seq: u64,
}

#[derive(ApiResponse)]
pub enum Created {
    /// Created now.
    #[oai(status = 201)]
    Created(Json<Conversation>),
    /// Already created by an earlier request with the same id or Idempotency-Key.
    #[oai(status = 200)]
    Existing(Json<Conversation>),
}

#[derive(ApiResponse)]
pub enum Replied {
    #[oai(status = 201)]
    Created(Json<Conversation>),
}

type R<T> = Result<T, ApiError>;

/// Required fields are optional in the JSON shape so that a missing one gets an error naming it
/// (the generic parser's message does not).
fn required<T>(field: &str, v: Option<T>) -> R<T> {
    v.ok_or_else(|| ApiError::bad_request(format!("{field}: is required")))
}

fn maybe<T>(m: MaybeUndefined<T>) -> Option<Option<T>> {
    match m {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

impl ConversationsApi {
    /// A conversation as the API answers with it, read again with its delivery state and
    /// crossed changes (the write that produced `c` has just been committed).
    async fn view(&self, c: domain::Conversation) -> R<Json<Conversation>> {
        let me = self.me().await?;
        let d = self.svc.detail(c.id).await?;
        Ok(Json(Conversation::detail(d, &me, self.svc.today())))
    }

    async fn me(&self) -> R<OrgId> {
        let id = self.svc.identity().await?;
        Ok(id
            .ok_or_else(crate::service::ServiceError::no_identity)?
            .org_id)
    }

    async fn cmd(&self, auth: &BearerAuth, id: Uuid, c: Command) -> R<Json<Conversation>> {
        let conv = self.svc.command(&auth.0, id, c).await?;
        self.view(conv).await
    }
}

#[OpenApi(tag = "Tags::Conversations")]
impl ConversationsApi {
    /// Start a conversation
    #[oai(
        path = "/conversations",
        method = "post",
        operation_id = "createConversation"
    )]
    async fn create(
        &self,
        auth: BearerAuth,
        body: Json<NewConversation>,
        /// Makes a retried request return the first one's conversation.
        #[oai(name = "Idempotency-Key")]
        key: Header<Option<String>>,
    ) -> R<Created> {
        let b = body.0;
        let files = b.attachments.unwrap_or_default();
        let input = CreateInput {
            id: b.id,
            kind: required("kind", b.kind)?.into(),
            partner: required("partner", b.partner)?,
            subject: required("subject", b.subject)?,
            topic: b.topic.map(Into::into),
            reference_id: b.reference_id,
            due_date: b.due_date,
            body: b.body,
            idempotency_key: key.0,
        };
        let (conv, created) = self.svc.create_with_files(&auth.0, input, &files).await?;
        let v = self.view(conv).await?;
        Ok(if created {
            Created::Created(v)
        } else {
            Created::Existing(v)
        })
    }

    /// The inbox: a folder's conversations, newest activity first or by due date
    #[oai(
        path = "/conversations",
        method = "get",
        operation_id = "listConversations"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: BearerAuth,
        kind: Query<Option<Kind>>,
        state: Query<Option<State>>,
        progress: Query<Option<Progress>>,
        /// `true`: only overdue tasks; `false`: everything but overdue tasks.
        overdue: Query<Option<bool>>,
        /// A partner org's id.
        #[oai(validator(min_length = 1, max_length = 64))]
        partner: Query<Option<String>>,
        topic_kind: Query<Option<TopicKind>>,
        topic_ref: Query<Option<String>>,
        reference_id: Query<Option<String>>,
        /// `true`: open conversations whose last message came from the partner.
        awaiting_reply: Query<Option<bool>>,
        /// `true`: overdue or awaiting our reply (the "Action required" folder).
        action_required: Query<Option<bool>>,
        /// Search: conversations whose subject words, reference ID or topic ref start with
        /// each word given.
        q: Query<Option<String>>,
        /// The folder; without one, the filters alone decide (every conversation).
        folder: Query<Option<Folder>>,
        /// `activity` (default) or `due`.
        sort: Query<Option<Sort>>,
        /// `me`: assigned to the signed-in user; `none`: assigned to nobody; else a user name.
        #[oai(validator(min_length = 1, max_length = 64))]
        assignee: Query<Option<String>>,
        /// `next_cursor` of the previous page of the same sort.
        cursor: Query<Option<String>>,
        /// 1-200, default 50.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "200"))
        )]
        limit: Query<u32>,
    ) -> R<Json<InboxPage>> {
        let (f, view) = InboxParams {
            kind: kind.0,
            state: state.0,
            progress: progress.0,
            overdue: overdue.0,
            partner: partner.0,
            topic_kind: topic_kind.0,
            topic_ref: topic_ref.0,
            reference_id: reference_id.0,
            awaiting_reply: awaiting_reply.0,
            action_required: action_required.0,
            q: q.0,
            folder: folder.0,
            sort: sort.0,
            cursor: cursor.0,
            limit: limit.0,
            assignee: assignee.0,
            user: auth.0.user.clone(),
        }
        .parse()?;
        let page = self.svc.inbox_view(&auth.0, f, view).await?;
        let today = self.svc.today();
        let ids = page.items.iter().map(|(s, _)| s.id).collect();
        let undelivered = self.svc.undelivered_among(ids).await?;
        Ok(Json(InboxPage {
            items: page
                .items
                .into_iter()
                .map(|(s, u)| {
                    let d = undelivered.contains(&s.id);
                    InboxItem {
                        undelivered: d,
                        ..InboxItem::of(s, u, today)
                    }
                })
                .collect(),
            next_cursor: page.next_cursor.map(|c| c.encode()),
            total: page.total,
            unread: page.unread,
        }))
    }

    /// One conversation with its messages and history
    #[oai(
        path = "/conversations/:id",
        method = "get",
        operation_id = "getConversation"
    )]
    async fn get(&self, _auth: BearerAuth, id: Path<Uuid>) -> R<Json<Conversation>> {
        let me = self.me().await?;
        let d = self.svc.detail(id.0).await?;
        Ok(Json(Conversation::detail(d, &me, self.svc.today())))
    }

    /// Change the subject, reference ID or due date (the org that started it only)
    #[oai(
        path = "/conversations/:id",
        method = "patch",
        operation_id = "updateConversation"
    )]
    async fn update(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ConversationPatch>,
    ) -> R<Json<Conversation>> {
        let b = body.0;
        let c = Command::Update {
            subject: b.subject,
            reference_id: maybe(b.reference_id),
            due_date: maybe(b.due_date),
        };
        self.cmd(&auth, id.0, c).await
    }

    /// Reply
    #[oai(
        path = "/conversations/:id/messages",
        method = "post",
        operation_id = "reply"
    )]
    async fn reply(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<NewMessage>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
    ) -> R<Replied> {
        let b = body.0;
        let files = b.attachments.unwrap_or_default();
        // A reply of files only needs no body.
        let text = match b.body {
            None if !files.is_empty() => String::new(),
            body => required("body", body)?,
        };
        let c = self
            .svc
            .reply_with_files(&auth.0, id.0, text, &files, b.id, key.0)
            .await?;
        Ok(Replied::Created(self.view(c).await?))
    }

    /// Resolve: move to the Resolved folder
    #[oai(
        path = "/conversations/:id/resolve",
        method = "post",
        operation_id = "resolve"
    )]
    async fn resolve(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Json<Conversation>> {
        self.cmd(&auth, id.0, Command::Resolve).await
    }

    /// Reopen a resolved conversation
    #[oai(
        path = "/conversations/:id/reopen",
        method = "post",
        operation_id = "reopen"
    )]
    async fn reopen(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Json<Conversation>> {
        self.cmd(&auth, id.0, Command::Reopen).await
    }

    /// Set a task's progress
    #[oai(
        path = "/conversations/:id/progress",
        method = "put",
        operation_id = "setProgress"
    )]
    async fn progress(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ProgressBody>,
    ) -> R<Json<Conversation>> {
        self.cmd(&auth, id.0, Command::SetProgress(body.0.progress.into()))
            .await
    }

    /// Mark read for the signed-in user
    #[oai(
        path = "/conversations/:id/read",
        method = "post",
        operation_id = "markRead"
    )]
    async fn read(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Json<Conversation>> {
        self.svc.set_read(&auth.0, id.0, true).await?;
        self.get(auth, id).await
    }

    /// Mark unread for the signed-in user
    #[oai(
        path = "/conversations/:id/unread",
        method = "post",
        operation_id = "markUnread"
    )]
    async fn unread(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Json<Conversation>> {
        self.svc.set_read(&auth.0, id.0, false).await?;
        self.get(auth, id).await
    }

    /// The local changes feed
    #[oai(path = "/changes", method = "get", operation_id = "changes")]
    async fn changes(
        &self,
        _auth: BearerAuth,
        /// Sequence number already seen; 0 for the start.
        #[oai(default, validator(minimum(value = "0")))]
        since: Query<u64>,
        /// 1-1000, default 100.
        #[oai(
            default = "default_changes_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
    ) -> R<Json<ChangesPage>> {
        let (entries, last_seq) = self.svc.changes(since.0, limit.0 as usize).await?;
        let changes = entries
            .into_iter()
            .map(|e| Change {
                seq: e.seq,
                id: e.summary.id,
                kind: e.summary.kind.into(),
                partner: e.summary.partner.to_string(),
                subject: e.summary.subject,
                state: e.summary.state.into(),
                last_activity_at: e.summary.last_activity_at,
            })
            .collect();
        Ok(Json(ChangesPage { changes, last_seq }))
    }
}

fn default_limit() -> u32 {
    50
}

fn default_changes_limit() -> u32 {
    100
}
