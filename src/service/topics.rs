//! Topic records for list and detail views: added one by one, imported from CSV (all or
//! nothing), and created for topics that conversations are started about.

use super::*;
use crate::domain::TopicKind;
use crate::domain::topics::{self, LineError, TopicInput, TopicRecord};
use crate::store::topics as store;

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
}

/// A page of records in ref order.
#[derive(Debug, Clone)]
pub struct TopicPage {
    pub items: Vec<TopicRecord>,
    /// The ref to pass as `after` for the next page.
    pub next: Option<String>,
}

pub fn import_detail(errors: &[LineError]) -> String {
    let mut s = String::from("nothing was imported; fix these lines and import the file again:");
    for e in errors.iter().take(50) {
        s.push_str(&format!("\nline {}: {}", e.line, e.message));
    }
    if errors.len() > 50 {
        s.push_str(&format!("\n… and {} more", errors.len() - 50));
    }
    s
}

impl Service {
    /// Adds or replaces one record; `true` when it is new.
    pub async fn put_topic(&self, input: TopicInput) -> Result<(TopicRecord, bool)> {
        let input = input.validate()?;
        let now = self.now();
        self.store
            .write(move |ctx| -> Result<_> {
                let old = store::get_w(ctx.read_tx(), input.kind, &input.reference)?;
                let created = old.as_ref().map_or(now, |o| o.created_at);
                let r = input.into_record(created, now);
                store::put(ctx.tx(), &r)?;
                Ok((r, old.is_none()))
            })
            .await
    }

    pub async fn topic(&self, kind: TopicKind, reference: &str) -> Result<TopicRecord> {
        let r = reference.to_string();
        self.store
            .read(move |tx| store::get(tx, kind, &r))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("{kind} {reference} not found")))
    }

    pub async fn topics(
        &self,
        kind: TopicKind,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<TopicPage> {
        if limit == 0 || limit > 200 {
            return Err(DomainError::invalid("limit", "must be between 1 and 200").into());
        }
        let (items, more) = self
            .store
            .read(move |tx| store::list(tx, kind, &prefix, after.as_deref(), limit))
            .await?;
        let next = more
            .then(|| items.last().map(|r| r.reference.clone()))
            .flatten();
        Ok(TopicPage { items, next })
    }

    /// Imports CSV text (see [`topics::parse_import`]). Every row is checked first; if any is
    /// wrong nothing is stored and each problem is reported with its line.
    pub async fn import_topics(&self, text: &str) -> Result<ImportReport> {
        let rows = topics::parse_import(text).map_err(ServiceError::Import)?;
        let now = self.now();
        self.store
            .write(move |ctx| -> Result<_> {
                let mut report = ImportReport {
                    created: 0,
                    updated: 0,
                };
                // Read every existing record before the first write, so an error cannot
                // follow a write (which would abort the whole group commit).
                let mut records = Vec::with_capacity(rows.len());
                for input in rows {
                    let old = store::get_w(ctx.read_tx(), input.kind, &input.reference)?;
                    match &old {
                        Some(_) => report.updated += 1,
                        None => report.created += 1,
                    }
                    let created = old.as_ref().map_or(now, |o| o.created_at);
                    records.push(input.into_record(created, now));
                }
                for r in &records {
                    store::put(ctx.tx(), r)?;
                }
                Ok(report)
            })
            .await
    }
}
