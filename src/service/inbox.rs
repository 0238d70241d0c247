//! Inbox reads: a page of a folder in an order, read marks, and the changes feed. Every
//! parameter is checked before anything is read; a page costs an index range (see
//! `store/query.rs` and `store/due_sort.rs`).

use uuid::Uuid;

use super::*;
use crate::domain::summary::Folder;
use crate::domain::{DomainError, Facet};
use crate::store::index;
use crate::store::query::{self, FeedEntry, InboxPage, InboxQuery, PageCursor, Sort};

/// Inbox filters as the API received them.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    pub filters: Vec<Facet>,
    pub overdue: Option<bool>,
    pub cursor: Option<String>,
    pub limit: usize,
    /// Search box text: conversations whose subject words, reference ID or topic ref start
    /// with each of its words.
    pub q: Option<String>,
}

/// Which folder and order an inbox page is of. The default is the inbox as it always was:
/// no folder (the filters alone), newest activity first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxView {
    pub folder: Option<Folder>,
    pub sort: Sort,
}

impl Service {
    pub async fn inbox(&self, p: &Principal, f: InboxFilter) -> Result<InboxPage> {
        self.inbox_view(p, f, InboxView::default()).await
    }

    /// One page of a folder in an order. Every parameter is checked before anything is read.
    pub async fn inbox_view(
        &self,
        p: &Principal,
        f: InboxFilter,
        view: InboxView,
    ) -> Result<InboxPage> {
        if f.limit == 0 || f.limit > 200 {
            return Err(DomainError::invalid("limit", "must be between 1 and 200").into());
        }
        self.inbox_page(p, f, view).await
    }

    /// [`Service::inbox_view`] without its page-size limit, for the node's own walks over
    /// every page (export, bulk by filter); `f.limit` must be at least 1.
    pub(super) async fn inbox_page(
        &self,
        p: &Principal,
        f: InboxFilter,
        view: InboxView,
    ) -> Result<InboxPage> {
        let today = self.clock.today();
        let cursor = match &f.cursor {
            None => None,
            Some(c) => Some(PageCursor::decode(c, view.sort).ok_or_else(|| {
                DomainError::invalid(
                    "cursor",
                    "is not a cursor this node issued for this sort; start again without one",
                )
            })?),
        };
        self.store.sweep_overdue(today).await?;
        let mut filters = f.filters;
        if f.overdue == Some(true) {
            filters.push(Facet::Overdue);
        }
        if let Some(folder) = view.folder {
            folder_agrees(folder, &filters)?;
        }
        filters.extend(view.folder.and_then(Folder::facet));
        let unread_only = view.folder == Some(Folder::Unread);
        let q = InboxQuery {
            filters,
            exclude_overdue: f.overdue == Some(false),
            cursor: match cursor {
                Some(PageCursor::Activity(c)) => Some(c),
                _ => None,
            },
            limit: f.limit,
            user: p.user.clone(),
            today,
        };
        let terms = crate::domain::search::query_terms(f.q.as_deref().unwrap_or(""));
        // A search for nothing but punctuation would list everything: a bulk action on its
        // "all matching" would then act on every conversation.
        if terms.is_empty() && f.q.as_deref().is_some_and(|q| !q.trim().is_empty()) {
            return Err(DomainError::invalid(
                "q",
                "has no letter or digit to search for; give a word, or leave q out to list everything",
            )
            .into());
        }
        let sort = view.sort;
        let page = self
            .store
            .read(move |tx| -> crate::store::Result<InboxPage> {
                use crate::store::{due_sort, search};
                if !terms.is_empty() {
                    return if !unread_only && sort == Sort::Activity {
                        Ok(search::search(tx, &terms, &q)?.0)
                    } else {
                        due_sort::search(tx, &terms, &q, unread_only, sort, cursor)
                    };
                }
                match cursor {
                    Some(PageCursor::Due(c)) => due_sort::page(tx, &q, unread_only, Some(c)),
                    _ if sort == Sort::Due => due_sort::page(tx, &q, unread_only, None),
                    _ => query::folder_page(tx, &q, unread_only),
                }
            })
            .await?;
        if !page.damaged_rows.is_empty() {
            self.store.contain(page.damaged_rows.clone()).await;
        }
        Ok(page)
    }

    /// Marks a conversation read (`true`) or unread for this user only. Answers whether the
    /// mark changed (`false`: it already was so, and nothing was written).
    pub async fn set_read(&self, p: &Principal, id: Uuid, read: bool) -> Result<bool> {
        let user = p.user.clone();
        self.store
            .write(move |ctx| -> Result<_> {
                if !index::is_listed(ctx.read_tx(), id.as_u128())? {
                    return Err(super::conversations::not_found(id));
                }
                let read_now = !crate::store::marks::is_unread(ctx.read_tx(), &user, id.as_u128())?;
                if read_now == read {
                    // Already as asked: nothing to write.
                    return Ok(false);
                }
                index::set_unread(ctx.tx(), &user, id.as_u128(), !read)?;
                Ok(true)
            })
            .await
    }

    pub async fn changes(&self, since: u64, limit: usize) -> Result<(Vec<FeedEntry>, u64)> {
        if limit == 0 || limit > 1000 {
            return Err(DomainError::invalid("limit", "must be between 1 and 1000").into());
        }
        Ok(self
            .store
            .read(move |tx| query::changes(tx, since, limit))
            .await?)
    }
}

/// A folder decides the state of what it lists: a filter that asks for another state would
/// otherwise be merged with (or win over) the folder's own, so it is refused, naming what to
/// drop.
fn folder_agrees(folder: Folder, filters: &[Facet]) -> Result<()> {
    use crate::domain::State;
    let (open, resolved) = (
        matches!(folder, Folder::Inbox | Folder::Tasks | Folder::Action),
        folder == Folder::Resolved,
    );
    let folder_name = match folder {
        Folder::Inbox => "inbox",
        Folder::Tasks => "tasks",
        Folder::Action => "action",
        _ => "resolved",
    };
    for f in filters {
        let name = match f {
            Facet::State(State::Resolved) if open => "state",
            Facet::State(State::Open) if resolved => "state",
            Facet::AwaitingReply if resolved => "awaiting_reply",
            Facet::ActionRequired if resolved => "action_required",
            _ => continue,
        };
        return Err(DomainError::invalid(
            name,
            format!(
                "contradicts folder={folder_name}: `folder` already decides the state; drop `{name}`"
            ),
        )
        .into());
    }
    Ok(())
}
