//! Export of an inbox view: every row it lists, in its order, read page after page as the
//! consumer asks for them, so that memory stays flat however many rows there are.
//!
//! Every parameter is checked, and the first page read, before the export is handed back:
//! a bad cursor or filter is the same error the inbox list gives, before anything is sent.
//! Later pages are each their own read (on the blocking pool), continuing from the cursor of
//! the page before, so a conversation that changes during the export is listed where the
//! inbox would list it at the time its page is read (as when paging through the inbox).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::stream::{self, BoxStream, StreamExt};

use super::*;
use crate::domain::Summary;

/// Rows per read.
pub const EXPORT_PAGE: usize = 500;

/// One exported row: the inbox row and the partner's name where this node knows it.
#[derive(Debug, Clone)]
pub struct ExportRow {
    pub summary: Summary,
    /// The partner record's name; the org id if this node has no record of it.
    pub partner_name: String,
}

/// The rows of an export, a page at a time. An `Err` ends it: the consumer must not present
/// what came before as the whole export.
pub type ExportPages = BoxStream<'static, Result<Vec<ExportRow>>>;

struct Walk {
    svc: Arc<Service>,
    principal: Principal,
    filter: InboxFilter,
    view: InboxView,
    names: Arc<HashMap<String, String>>,
    first: Option<Vec<ExportRow>>,
    /// Where the next page starts; `None` once the last page has been read.
    next: Option<String>,
    /// The node is stopping: the export ends with an error at the next page rather than
    /// holding up the shutdown (or ending early as if it were complete).
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Service {
    /// Checks the view's parameters, reads its first page and answers with every page, the
    /// first included, as a stream.
    pub async fn export(
        self: &Arc<Self>,
        p: &Principal,
        f: InboxFilter,
        view: InboxView,
    ) -> Result<ExportPages> {
        let names: HashMap<String, String> = self
            .partners()
            .await?
            .into_iter()
            .map(|r| (r.id.to_string(), r.name))
            .collect();
        let names = Arc::new(names);
        let filter = InboxFilter {
            limit: EXPORT_PAGE,
            ..f
        };
        let page = self.inbox_page(p, filter.clone(), view).await?;
        let next = page.next_cursor.map(|c| c.encode());
        let walk = Walk {
            svc: self.clone(),
            principal: p.clone(),
            filter,
            view,
            first: Some(rows(page.items, &names)),
            names,
            next,
            closing: self.closing(),
        };
        Ok(stream::unfold(walk, |mut w| async move {
            if let Some(first) = w.first.take() {
                return Some((Ok(first), w));
            }
            let cursor = w.next.take()?;
            if *w.closing.borrow() {
                let e = ServiceError::Unavailable(
                    "the node is shutting down; export again once it is back".into(),
                );
                return Some((Err(e), w));
            }
            let f = InboxFilter {
                cursor: Some(cursor),
                ..w.filter.clone()
            };
            match w.svc.inbox_page(&w.principal, f, w.view).await {
                Ok(page) => {
                    w.next = page.next_cursor.map(|c| c.encode());
                    Some((Ok(rows(page.items, &w.names)), w))
                }
                // `next` is left empty: the stream ends after the error.
                Err(e) => Some((Err(e), w)),
            }
        })
        .boxed())
    }
}

fn rows(items: Vec<(Summary, bool)>, names: &HashMap<String, String>) -> Vec<ExportRow> {
    items
        .into_iter()
        .map(|(summary, _)| {
            let id = summary.partner.to_string();
            let partner_name = names.get(&id).cloned().unwrap_or(id);
            ExportRow {
                summary,
                partner_name,
            }
        })
        .collect()
}
