//! `/conversations/{id}/notes` and `/conversations/{id}/assignee`: our org's own work on a
//! conversation, which the partner never sees (see `domain::team`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::Tags;
use super::auth::BearerAuth;
use super::error::ApiError;
use super::models::Note;
use crate::service::Service;

pub struct TeamApi {
    pub svc: Arc<Service>,
}

type R<T> = Result<T, ApiError>;

#[derive(Debug, Object)]
pub struct NoteBody {
    /// The note's text: 1 to 65,536 bytes, lines allowed.
    #[oai(validator(max_length = 65536))]
    pub body: Option<String>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct AssignBody {
    /// Required: a person of this node (`GET /api/v1/colleagues`), or `null` to unassign.
    #[oai(validator(max_length = 64))]
    pub assignee: poem_openapi::types::MaybeUndefined<String>,
}

/// Who handles a conversation.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Assignment {
    pub assignee: Option<String>,
    pub assigned_by: Option<String>,
    pub assigned_at: Option<DateTime<Utc>>,
}

#[derive(ApiResponse)]
pub enum NoteCreated {
    #[oai(status = 201)]
    Created(Json<Note>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

fn body_of(b: NoteBody) -> R<String> {
    b.body
        .ok_or_else(|| ApiError::bad_request("body: is required: the note's text"))
}

#[OpenApi(tag = "Tags::Conversations")]
impl TeamApi {
    /// Write an internal note (seen by our org only, never by the partner)
    #[oai(
        path = "/conversations/:id/notes",
        method = "post",
        operation_id = "addNote"
    )]
    async fn add(&self, auth: BearerAuth, id: Path<Uuid>, b: Json<NoteBody>) -> R<NoteCreated> {
        let n = self.svc.add_note(&auth.0, id.0, body_of(b.0)?).await?;
        Ok(NoteCreated::Created(Json(n.into())))
    }

    /// Change an internal note (its author only)
    #[oai(
        path = "/conversations/:id/notes/:note",
        method = "patch",
        operation_id = "editNote"
    )]
    async fn edit(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        note: Path<Uuid>,
        b: Json<NoteBody>,
    ) -> R<Json<Note>> {
        let body = body_of(b.0)?;
        let n = self
            .svc
            .change_note(&auth.0, id.0, note.0, Some(body))
            .await?
            .ok_or_else(|| ApiError::bad_request("the note is gone"))?;
        Ok(Json(n.into()))
    }

    /// Delete an internal note (its author only)
    #[oai(
        path = "/conversations/:id/notes/:note",
        method = "delete",
        operation_id = "deleteNote"
    )]
    async fn delete(&self, auth: BearerAuth, id: Path<Uuid>, note: Path<Uuid>) -> R<Deleted> {
        self.svc.change_note(&auth.0, id.0, note.0, None).await?;
        Ok(Deleted::Deleted)
    }

    /// Assign the conversation to a user of our org, or to nobody
    #[oai(
        path = "/conversations/:id/assignee",
        method = "put",
        operation_id = "assignConversation"
    )]
    async fn assign(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        b: Json<AssignBody>,
    ) -> R<Json<Assignment>> {
        use poem_openapi::types::MaybeUndefined;
        let to = match b.0.assignee {
            MaybeUndefined::Undefined => {
                return Err(ApiError::bad_request(
                    "assignee: is required: a user name, or null to unassign",
                ));
            }
            MaybeUndefined::Null => None,
            MaybeUndefined::Value(s) if s.is_empty() => {
                return Err(ApiError::bad_request(
                    "assignee: is empty: give a user name, or null to unassign",
                ));
            }
            MaybeUndefined::Value(s) => Some(s),
        };
        let t = self.svc.assign(&auth.0, id.0, to).await?;
        Ok(Json(Assignment {
            assignee: t.assignee,
            assigned_by: t.assigned_by,
            assigned_at: t.assigned_at,
        }))
    }
}

/// A person of our org.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ColleagueOut {
    /// The user name (what `assignee` and authors carry).
    pub name: String,
    /// What the UI shows instead of the name, when set.
    pub display_name: Option<String>,
}

impl From<crate::service::Colleague> for ColleagueOut {
    fn from(c: crate::service::Colleague) -> Self {
        ColleagueOut {
            name: c.name,
            display_name: c.display_name,
        }
    }
}

#[derive(Debug, Object)]
pub struct DisplayNameBody {
    /// 1 to 100 characters; `null`, absent or `""` removes it.
    #[oai(validator(max_length = 400))]
    pub display_name: Option<String>,
}

/// How many conversations one folder lists.
#[derive(Debug, Object)]
pub struct FolderCount {
    /// `inbox`, `unread`, `tasks`, `action`, `resolved`, `all`, `mine` (open, assigned to
    /// the signed-in user) or `unassigned` (open).
    pub folder: String,
    pub total: u64,
}

pub struct PeopleApi {
    pub svc: Arc<Service>,
}

#[OpenApi(tag = "Tags::Conversations")]
impl PeopleApi {
    /// The count of every folder, as its own list counts it
    #[oai(path = "/folders", method = "get", operation_id = "folderCounts")]
    async fn folders(&self, auth: BearerAuth) -> R<Json<Vec<FolderCount>>> {
        let counts = self.svc.folder_counts(&auth.0).await?;
        Ok(Json(
            counts
                .into_iter()
                .map(|(f, total)| FolderCount {
                    folder: f.into(),
                    total,
                })
                .collect(),
        ))
    }

    /// The people of our org: whom a conversation can be assigned to
    #[oai(path = "/colleagues", method = "get", operation_id = "colleagues")]
    async fn colleagues(&self, _auth: BearerAuth) -> R<Json<Vec<ColleagueOut>>> {
        let c = self.svc.colleagues().await?;
        Ok(Json(c.into_iter().map(Into::into).collect()))
    }

    /// Set a user's display name (one's own; anyone's for an admin)
    #[oai(
        path = "/users/:name/display-name",
        method = "put",
        operation_id = "setDisplayName"
    )]
    async fn display_name(
        &self,
        auth: BearerAuth,
        name: Path<String>,
        b: Json<DisplayNameBody>,
    ) -> R<Json<ColleagueOut>> {
        let c = self
            .svc
            .set_display_name(&auth.0, &name.0, b.0.display_name)
            .await?;
        Ok(Json(c.into()))
    }
}
