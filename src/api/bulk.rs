//! `POST /conversations/bulk`: one action on many conversations, with a result for each.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::Tags;
use super::auth::BearerAuth;
use super::conversations::{Folder, Sort};
use super::error::ApiError;
use super::inbox_params::InboxParams;
use super::models::{Kind, Progress, State, TopicKind};
use crate::service::{BulkAction, BulkOutcome, BulkTarget, Service};

pub struct BulkApi {
    pub svc: Arc<Service>,
}

/// What a bulk request does to each conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "BulkAction", rename_all = "snake_case")]
pub enum ActionName {
    Resolve,
    Reopen,
    MarkRead,
    MarkUnread,
    /// Needs `progress`.
    SetProgress,
    /// Needs `assignee`: a person of this node, or `null` for nobody.
    Assign,
}

/// The inbox view whose every conversation a bulk action takes ("all N matching"): the same
/// fields as the parameters of `GET /conversations`, without `cursor` and `limit`.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct BulkFilter {
    /// Required: the folder (`all` for every conversation).
    pub folder: Option<Folder>,
    pub sort: Option<Sort>,
    pub q: Option<String>,
    pub kind: Option<Kind>,
    pub state: Option<State>,
    pub progress: Option<Progress>,
    pub overdue: Option<bool>,
    #[oai(validator(min_length = 1, max_length = 64))]
    pub partner: Option<String>,
    pub topic_kind: Option<TopicKind>,
    pub topic_ref: Option<String>,
    pub reference_id: Option<String>,
    pub awaiting_reply: Option<bool>,
    pub action_required: Option<bool>,
    /// `me`, `none` or a user name.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub assignee: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct BulkRequest {
    /// Required.
    pub action: Option<ActionName>,
    /// Required for `set_progress`, refused with any other action.
    pub progress: Option<Progress>,
    /// Required for `assign`: a person of this node, or `null` to unassign; refused with
    /// any other action.
    #[oai(validator(max_length = 64))]
    pub assignee: poem_openapi::types::MaybeUndefined<String>,
    /// 1-1000 conversation ids, none twice. Exactly one of `ids` and `filter`.
    pub ids: Option<Vec<String>>,
    /// Every conversation this inbox view lists (at most 10,000). Exactly one of `ids` and
    /// `filter`.
    pub filter: Option<BulkFilter>,
}

/// What happened to one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "BulkOutcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Changed, durably.
    Changed,
    /// Already as asked; nothing written.
    Unchanged,
    /// Not changed: `code` and `detail` say why (the single endpoint's error).
    Failed,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BulkResult {
    /// The id as sent.
    pub id: String,
    pub outcome: Outcome,
    /// For `failed`: the error code the single-conversation endpoint gives (`not_found`,
    /// `unprocessable`, `damaged`, `invalid`, …).
    pub code: Option<String>,
    /// For `failed`: why, and what to do.
    pub detail: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BulkAnswer {
    /// One per conversation, in request order (for `filter`: the inbox's order).
    pub results: Vec<BulkResult>,
    pub changed: u64,
    pub unchanged: u64,
    pub failed: u64,
}

fn bad(field: &str, what: &str) -> ApiError {
    ApiError::BadRequest(Json(super::error::ErrorBody {
        error: "invalid".into(),
        detail: format!("{field}: {what}"),
    }))
}

fn action(b: &BulkRequest) -> Result<BulkAction, ApiError> {
    use poem_openapi::types::MaybeUndefined;
    let name = b.action.ok_or_else(|| {
        bad(
            "action",
            "is required: resolve, reopen, mark_read, mark_unread, set_progress or assign",
        )
    })?;
    match (name, &b.assignee) {
        (ActionName::Assign, MaybeUndefined::Undefined) => {
            return Err(bad(
                "assignee",
                "is required with assign: a user name, or null to unassign",
            ));
        }
        (ActionName::Assign, a) => {
            if b.progress.is_some() {
                return Err(bad("progress", "is only for set_progress: drop it"));
            }
            return Ok(BulkAction::Assign(match a {
                MaybeUndefined::Value(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            }));
        }
        (_, MaybeUndefined::Undefined) => {}
        (_, _) => {
            return Err(bad(
                "assignee",
                "is only for assign: drop it, or use action assign",
            ));
        }
    }
    Ok(match (name, b.progress) {
        (ActionName::SetProgress, Some(p)) => BulkAction::SetProgress(p.into()),
        (ActionName::SetProgress, None) => {
            return Err(bad(
                "progress",
                "is required with set_progress: open, in_progress, completed or cancelled",
            ));
        }
        (_, Some(_)) => {
            return Err(bad(
                "progress",
                "is only for set_progress: drop it, or use action set_progress",
            ));
        }
        (ActionName::Resolve, None) => BulkAction::Resolve,
        (ActionName::Reopen, None) => BulkAction::Reopen,
        (ActionName::MarkRead, None) => BulkAction::MarkRead,
        (ActionName::MarkUnread, None) => BulkAction::MarkUnread,
        (ActionName::Assign, None) => unreachable!("assign is handled above"),
    })
}

fn target(
    ids: Option<Vec<String>>,
    filter: Option<BulkFilter>,
    user: &str,
) -> Result<BulkTarget, ApiError> {
    match (ids, filter) {
        (Some(ids), None) => Ok(BulkTarget::Ids(ids)),
        (None, Some(f)) => {
            let folder = f.folder.ok_or_else(|| {
                bad(
                    "filter.folder",
                    "is required: the folder whose conversations to take (`all` for every one)",
                )
            })?;
            if f.q.as_deref().is_some_and(|q| q.trim().is_empty()) {
                return Err(bad(
                    "filter.q",
                    "is empty: leave it out to take every conversation of the folder, or give a word",
                ));
            }
            let (filter, view) = InboxParams {
                kind: f.kind,
                state: f.state,
                progress: f.progress,
                overdue: f.overdue,
                partner: f.partner,
                topic_kind: f.topic_kind,
                topic_ref: f.topic_ref,
                reference_id: f.reference_id,
                awaiting_reply: f.awaiting_reply,
                action_required: f.action_required,
                q: f.q,
                folder: Some(folder),
                sort: f.sort,
                cursor: None,
                limit: 1,
                assignee: f.assignee,
                user: user.to_string(),
            }
            .parse()?;
            Ok(BulkTarget::Filter(filter, view))
        }
        (Some(_), Some(_)) => Err(bad(
            "ids",
            "and filter were both sent: send exactly one (ids to name conversations, filter for all matching)",
        )),
        (None, None) => Err(bad(
            "ids",
            "is required, or filter: send exactly one (ids to name conversations, filter for all matching)",
        )),
    }
}

#[OpenApi(tag = "Tags::Conversations")]
impl BulkApi {
    /// Act on many conversations: resolve, reopen, mark read or unread, set task progress, assign
    ///
    /// One result per conversation, in request order. Each conversation changes durably or not
    /// at all; the answer comes after every change is durable. A refused request (4xx) changes
    /// nothing.
    #[oai(
        path = "/conversations/bulk",
        method = "post",
        operation_id = "bulkConversations"
    )]
    async fn bulk(
        &self,
        auth: BearerAuth,
        body: Json<BulkRequest>,
    ) -> Result<Json<BulkAnswer>, ApiError> {
        let b = body.0;
        let action = action(&b)?;
        let target = target(b.ids, b.filter, &auth.0.user)?;
        let items = self.svc.bulk(&auth.0, action, target).await?;
        let (mut changed, mut unchanged, mut failed) = (0, 0, 0);
        let results = items
            .into_iter()
            .map(|item| match item.outcome {
                BulkOutcome::Changed => {
                    changed += 1;
                    result(item.id, Outcome::Changed, None)
                }
                BulkOutcome::Unchanged => {
                    unchanged += 1;
                    result(item.id, Outcome::Unchanged, None)
                }
                BulkOutcome::Failed(e) => {
                    failed += 1;
                    let body = ApiError::from(e).into_body();
                    result(item.id, Outcome::Failed, Some((body.error, body.detail)))
                }
            })
            .collect();
        Ok(Json(BulkAnswer {
            results,
            changed,
            unchanged,
            failed,
        }))
    }
}

fn result(id: String, outcome: Outcome, why: Option<(String, String)>) -> BulkResult {
    let (code, detail) = why.unzip();
    BulkResult {
        id,
        outcome,
        code,
        detail,
    }
}
