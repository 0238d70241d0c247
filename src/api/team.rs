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
pub struct AssignBody {
    /// A user of this node (`GET /api/v1/users`); `null` or absent: unassign.
    #[oai(validator(max_length = 64))]
    pub assignee: Option<String>,
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
        let to = b.0.assignee.filter(|s| !s.is_empty());
        let t = self.svc.assign(&auth.0, id.0, to).await?;
        Ok(Json(Assignment {
            assignee: t.assignee,
            assigned_by: t.assigned_by,
            assigned_at: t.assigned_at,
        }))
    }
}
