//! The inbox's parameters (folder, order, filters, search, cursor), read the same way for the
//! list, the CSV export and the filter of a bulk action, so that all three select exactly the
//! same conversations.

use super::conversations::{Folder, Sort};
use super::error::ApiError;
use super::models::{Kind, Progress, State, TopicKind};
use crate::domain::{Facet, OrgId};
use crate::service::{InboxFilter, InboxView, ServiceError};
use crate::store::query::Sort as DomainSort;

/// Every inbox parameter as received; see `GET /conversations` for what each means.
#[derive(Debug, Default)]
pub struct InboxParams {
    pub kind: Option<Kind>,
    pub state: Option<State>,
    pub progress: Option<Progress>,
    pub overdue: Option<bool>,
    pub partner: Option<String>,
    pub topic_kind: Option<TopicKind>,
    pub topic_ref: Option<String>,
    pub reference_id: Option<String>,
    pub awaiting_reply: Option<bool>,
    pub action_required: Option<bool>,
    pub q: Option<String>,
    pub folder: Option<Folder>,
    pub sort: Option<Sort>,
    pub cursor: Option<String>,
    pub limit: u32,
    /// `me`, `none` or a user name.
    pub assignee: Option<String>,
    /// The signed-in user, whom `assignee=me` names.
    pub user: String,
}

impl InboxParams {
    /// The service's filter and view. What the service checks (cursor, limit, a filter that
    /// contradicts the folder) it checks when the view is read.
    pub fn parse(self) -> Result<(InboxFilter, InboxView), ApiError> {
        let mut filters = Vec::new();
        if let Some(k) = self.kind {
            filters.push(Facet::Kind(k.into()));
        }
        if let Some(s) = self.state {
            filters.push(Facet::State(s.into()));
        }
        if let Some(p) = self.progress {
            filters.push(Facet::Progress(p.into()));
        }
        if let Some(p) = self.partner {
            filters.push(Facet::Partner(
                OrgId::parse(&p).map_err(ServiceError::from)?,
            ));
        }
        if let Some(k) = self.topic_kind {
            filters.push(Facet::TopicKind(k.into()));
        }
        if let Some(r) = self.topic_ref {
            filters.push(Facet::TopicRef(r));
        }
        if let Some(r) = self.reference_id {
            filters.push(Facet::ReferenceId(r));
        }
        if self.awaiting_reply == Some(true) {
            filters.push(Facet::AwaitingReply);
        }
        if self.action_required == Some(true) {
            filters.push(Facet::ActionRequired);
        }
        if let Some(a) = &self.assignee {
            filters.push(assignee_facet(a, &self.user)?);
        }
        match self.folder {
            Some(Folder::Mine) => filters.push(Facet::Assignee(self.user.clone())),
            Some(Folder::Unassigned) => filters.push(Facet::Unassigned),
            _ => {}
        }
        let f = InboxFilter {
            filters,
            overdue: self.overdue,
            cursor: self.cursor,
            limit: self.limit as usize,
            q: self.q,
        };
        let view = InboxView {
            folder: self.folder.map(Into::into),
            sort: match self.sort {
                Some(Sort::Due) => DomainSort::Due,
                Some(Sort::Activity) | None => DomainSort::Activity,
            },
        };
        Ok((f, view))
    }
}

/// The `assignee` filter: `me`, `none` or a user name.
pub fn assignee_facet(a: &str, me: &str) -> Result<Facet, ApiError> {
    Ok(match a {
        "me" => Facet::Assignee(me.to_string()),
        "none" => Facet::Unassigned,
        name => {
            crate::domain::validate_user_name(name).map_err(|_| {
                ApiError::bad_request("assignee: must be `me`, `none` or a user name")
            })?;
            Facet::Assignee(name.to_string())
        }
    })
}

/// The folder's name as the API spells it; `all` without one (the filters alone decide).
pub fn folder_name(f: Option<Folder>) -> &'static str {
    match f {
        Some(Folder::Inbox) => "inbox",
        Some(Folder::Tasks) => "tasks",
        Some(Folder::Action) => "action",
        Some(Folder::Resolved) => "resolved",
        Some(Folder::Unread) => "unread",
        Some(Folder::Mine) => "mine",
        Some(Folder::Unassigned) => "unassigned",
        Some(Folder::All) | None => "all",
    }
}
