//! Bulk actions: one action on many conversations, chosen by id or by an inbox filter ("all N
//! matching").
//!
//! Invariant: each conversation changes durably or not at all. Every conversation's change is
//! the same use-case as its single endpoint (`Service::command`, `Service::set_read`), run as
//! its own store write job; the jobs are submitted together so that the group commit puts many
//! of them into one durable commit. A failure of one conversation is that conversation's
//! result and never undoes or stops the others. The answer is given only after every job has
//! been answered, that is after every durable commit.

use std::collections::HashSet;

use futures_util::stream::{self, StreamExt};
use uuid::Uuid;

use super::*;
use crate::domain::commands::Command;
use crate::domain::{DomainError, Progress};

/// Most conversations one request may name by id.
pub const MAX_IDS: usize = 1000;
/// Most conversations one filter may select.
pub const MAX_MATCHING: usize = 10_000;
/// Jobs in flight at once: enough that each group commit takes many of them.
const IN_FLIGHT: usize = 128;
/// Rows per inbox read while collecting a filter's conversations.
const WALK_PAGE: usize = 500;
/// Attempts per conversation when its commit was aborted by another job of the same commit
/// (nothing of this one landed, so it is safe to run again).
const ATTEMPTS: usize = 3;

/// What to do to each conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkAction {
    Resolve,
    Reopen,
    MarkRead,
    MarkUnread,
    SetProgress(Progress),
    /// To a person of this node, or to nobody.
    Assign(Option<String>),
}

/// Which conversations: named by id (as sent, so a malformed one is reported in its place),
/// or every one an inbox view lists.
#[derive(Debug, Clone)]
pub enum BulkTarget {
    Ids(Vec<String>),
    Filter(InboxFilter, InboxView),
}

/// What happened to one conversation.
#[derive(Debug)]
pub enum BulkOutcome {
    Changed,
    /// Already as asked: nothing was written.
    Unchanged,
    /// Refused or not found; nothing of it was written. The error is what the single
    /// endpoint would have answered.
    Failed(ServiceError),
}

#[derive(Debug)]
pub struct BulkItem {
    /// The id as requested (a malformed one as sent, cut to 100 characters).
    pub id: String,
    pub outcome: BulkOutcome,
}

impl Service {
    /// Runs `action` on every target; one result per conversation, in request order (for a
    /// filter: the inbox's order). Refuses the whole request, changing nothing, if the targets
    /// are not acceptable.
    pub async fn bulk(
        &self,
        p: &Principal,
        action: BulkAction,
        target: BulkTarget,
    ) -> Result<Vec<BulkItem>> {
        // Whom to assign to is one question for the whole request: asked once, up front.
        if let BulkAction::Assign(Some(u)) = &action
            && !self.colleagues().await?.iter().any(|c| &c.name == u)
        {
            return Err(DomainError::Unprocessable(format!(
                "{u} is not a person of this node; assign to one of GET /api/v1/colleagues"
            ))
            .into());
        }
        let targets: Vec<(String, Option<Uuid>)> = match target {
            BulkTarget::Ids(ids) => checked_ids(ids)?,
            BulkTarget::Filter(f, view) => self
                .matching(p, f, view)
                .await?
                .into_iter()
                .map(|id| (id.to_string(), Some(id)))
                .collect(),
        };
        let action = &action;
        let mut done: Vec<(usize, BulkItem)> = stream::iter(targets.into_iter().enumerate())
            .map(|(i, (raw, id))| async move {
                let outcome = match id {
                    Some(id) => self.bulk_one(p, action, id).await,
                    None => BulkOutcome::Failed(
                        DomainError::invalid(
                            "ids",
                            format!("{raw:?} is not a conversation id (a UUID), so nothing was done with it; send ids as the inbox lists them"),
                        )
                        .into(),
                    ),
                };
                (i, BulkItem { id: raw, outcome })
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        done.sort_by_key(|(i, _)| *i);
        Ok(done.into_iter().map(|(_, item)| item).collect())
    }

    /// Every conversation the inbox lists for this view, in its order, walking the pages.
    async fn matching(&self, p: &Principal, f: InboxFilter, view: InboxView) -> Result<Vec<Uuid>> {
        let mut out = Vec::new();
        let mut f = InboxFilter {
            cursor: None,
            limit: WALK_PAGE,
            ..f
        };
        loop {
            let page = self.inbox_page(p, f.clone(), view).await?;
            if page.total > MAX_MATCHING as u64 {
                return Err(too_many(page.total));
            }
            out.extend(page.items.iter().map(|(s, _)| s.id));
            if out.len() > MAX_MATCHING {
                return Err(too_many(out.len() as u64));
            }
            match page.next_cursor {
                Some(c) => f.cursor = Some(c.encode()),
                None => return Ok(out),
            }
        }
    }

    /// One conversation's change, as its own write job, retried while its commit was aborted
    /// for another job's sake.
    async fn bulk_one(&self, p: &Principal, action: &BulkAction, id: Uuid) -> BulkOutcome {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = match action {
                BulkAction::Resolve => self.command_changed(p, id, Command::Resolve).await,
                BulkAction::Reopen => self.command_changed(p, id, Command::Reopen).await,
                BulkAction::SetProgress(g) => {
                    self.command_changed(p, id, Command::SetProgress(*g)).await
                }
                BulkAction::MarkRead => self.set_read(p, id, true).await,
                BulkAction::MarkUnread => self.set_read(p, id, false).await,
                BulkAction::Assign(to) => self.assign_changed(p, id, to.clone()).await,
            };
            match r {
                Ok(true) => return BulkOutcome::Changed,
                Ok(false) => return BulkOutcome::Unchanged,
                Err(e) if attempt < ATTEMPTS && e.store_fault() == Some(StoreFault::Retry) => {
                    continue;
                }
                Err(e) => return BulkOutcome::Failed(e),
            }
        }
    }

    async fn command_changed(&self, p: &Principal, id: Uuid, cmd: Command) -> Result<bool> {
        Ok(self.command_outcome(p, id, cmd).await?.1)
    }
}

fn too_many(n: u64) -> ServiceError {
    DomainError::invalid(
        "filter",
        format!(
            "matches {n} conversations; one request acts on at most {MAX_MATCHING}: narrow the filter (a folder, a partner, a kind, a search) and repeat"
        ),
    )
    .into()
}

/// The ids of a request: 1 to [`MAX_IDS`], none twice. A malformed one is kept, unparsed, to
/// be reported in its place.
fn checked_ids(ids: Vec<String>) -> Result<Vec<(String, Option<Uuid>)>> {
    if ids.is_empty() {
        return Err(DomainError::invalid("ids", "is empty: name 1 to 1000 conversations").into());
    }
    if ids.len() > MAX_IDS {
        return Err(DomainError::invalid(
            "ids",
            format!(
                "names {} conversations; at most {MAX_IDS} at once: split the request, or use `filter`",
                ids.len()
            ),
        )
        .into());
    }
    let mut seen = HashSet::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for raw in ids {
        let id = Uuid::try_parse(&raw).ok();
        let key = id.map(|u| u.to_string()).unwrap_or_else(|| raw.clone());
        let shown: String = raw.chars().take(100).collect();
        if !seen.insert(key) {
            return Err(DomainError::invalid(
                "ids",
                format!("names {shown:?} more than once: send each conversation once"),
            )
            .into());
        }
        out.push((shown, id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_anything_runs() {
        assert!(checked_ids(vec![]).is_err());
        let many: Vec<String> = (0..=MAX_IDS).map(|_| Uuid::new_v4().to_string()).collect();
        assert!(checked_ids(many).is_err());
        let u = Uuid::new_v4();
        // The same id in another spelling is still the same conversation.
        let twice = vec![u.to_string(), u.simple().to_string().to_uppercase()];
        assert!(checked_ids(twice).is_err());
        let ok = checked_ids(vec![u.to_string(), "nope".into()]).unwrap();
        assert_eq!(ok[0].1, Some(u));
        assert_eq!(ok[1], ("nope".to_string(), None));
    }
}
