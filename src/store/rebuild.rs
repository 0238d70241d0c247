//! Rebuilding and checking the derived tables from the documents: the documents are the truth,
//! so a lost or outdated index is never data loss. The only code that walks every document.

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::index::{self, get_summary};
use super::tables::*;
use super::{INDEX_VERSION, Identity, Result, Store, docs};
use crate::domain::{Summary, doc};

fn index_version(tx: &ReadTransaction) -> Result<Option<u64>> {
    Ok(tx
        .open_table(META)?
        .get("index_version")?
        .and_then(|v| v.value().try_into().ok())
        .map(u64::from_le_bytes))
}

/// Rebuilds the derived tables if they were made by another index version (or never).
pub(super) fn if_needed(db: &Database, identity: Option<&Identity>) -> Result<()> {
    let old = index_version(&db.begin_read()?)?;
    if old == Some(INDEX_VERSION) {
        return Ok(());
    }
    rebuild(db, identity)?;
    if let (Some(v), Some(me)) = (old, identity)
        && v < TEAM_DOCS_SINCE
    {
        reread_own_sites(db, me)?;
    }
    Ok(())
}

/// The index version that brought team documents (`domain::team`).
const TEAM_DOCS_SINCE: u64 = 10;

/// A node older than team documents refused the ones our other sites offered it, and its
/// cursors into their feeds moved past them: it forgets those cursors once, so each site lists
/// its feed again from the start. Costs one heads comparison per document (nothing is sent
/// for what is already here), and brings every team document.
fn reread_own_sites(db: &Database, me: &Identity) -> Result<()> {
    let tx = super::begin_write(db)?;
    let own: Vec<_> = super::peers::list_peers_w(&tx)?
        .into_iter()
        .filter(|p| p.org_id == me.org_id)
        .collect();
    for p in &own {
        tx.open_table(PEER_CURSORS)?.remove(p.node_id.as_u128())?;
    }
    tx.commit()?;
    if !own.is_empty() {
        tracing::info!(
            sites = own.len(),
            "our other sites will list their feeds again, for the team documents"
        );
    }
    Ok(())
}

/// Drops and recomputes every derived table in one write transaction.
pub(super) fn rebuild(db: &Database, identity: Option<&Identity>) -> Result<()> {
    let ids = docs::all_ids(&db.begin_read()?)?;
    if !ids.is_empty() {
        tracing::info!(
            conversations = ids.len(),
            "rebuilding indexes from the documents"
        );
    }
    let tx = super::begin_write(db)?;
    // Feed numbers keep rising across a rebuild, so peers' cursors stay meaningful.
    let floor = tx
        .open_table(FEED)?
        .last()?
        .map(|(k, _)| k.value())
        .unwrap_or(0);
    clear_derived(&tx)?;
    index::set_meta_i64(&tx, "feed_floor", floor as i64)?;
    index::set_meta_i64(&tx, "swept_day", 0)?;
    if let Some(me) = identity {
        // Team documents first: a conversation's row reads its assignee.
        super::team::rebuild(&tx, &ids)?;
        let conversations = ids.iter().filter(|i| !crate::domain::team::is_team_id(**i));
        for (n, id) in conversations.enumerate() {
            match docs::load(&tx, *id).and_then(|d| summary_of(*id, d.map(|l| l.doc), me)) {
                Ok(Some((mut s, heads, bodies, files))) => {
                    let files: Vec<_> = files.iter().map(|(a, w)| (a, *w)).collect();
                    super::blobs::add_refs(&tx, *id, &files)?;
                    s.assignee = super::team::assignee_w(&tx, *id)?;
                    index::index_conversation(&tx, None, &s)?;
                    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
                    super::text_words::replace(&tx, *id, &[], &bodies)?;
                    tx.open_table(HEADS)?
                        .insert(*id, index::encode_heads(&heads).as_slice())?;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(conversation = %Uuid::from_u128(*id), error = %e, "skipping a damaged conversation");
                    docs::rewrite_stored(&tx, *id)?;
                }
            }
            if n % 10_000 == 9_999 {
                tracing::info!(done = n + 1, of = ids.len(), "rebuilding indexes");
            }
        }
    }
    super::topics::rebuild_folded(&tx)?;
    index::set_meta_i64(&tx, "index_version", INDEX_VERSION as i64)?;
    tx.commit()?;
    Ok(())
}

/// A conversation's inbox row (without its assignee), heads and message bodies.
type Derived = (
    Summary,
    Vec<automerge::ChangeHash>,
    Vec<String>,
    Vec<(crate::domain::attachment::AttachmentRef, u8)>,
);

fn summary_of(
    id: u128,
    d: Option<automerge::AutoCommit>,
    me: &Identity,
) -> Result<Option<Derived>> {
    let Some(mut d) = d else { return Ok(None) };
    let c = doc::read(&d)
        .map_err(|e| super::StoreError::Corrupt(Uuid::from_u128(id), e.to_string()))?;
    let bodies = c.messages.iter().map(|m| m.body.clone()).collect();
    let files = c
        .messages
        .iter()
        .flat_map(|m| {
            let who = if m.author.org == me.org_id {
                super::blobs::OURS
            } else {
                super::blobs::THEIRS
            };
            m.attachments.iter().map(move |a| (a.clone(), who))
        })
        .collect();
    Ok(Some((
        Summary::of(&c, &me.org_id),
        d.get_heads(),
        bodies,
        files,
    )))
}

/// The inbox row of `id` derived from its document inside a write transaction; `None` if the
/// document is missing or damaged (a damaged one answers its own requests with the damage).
pub(super) fn derive_w(tx: &WriteTransaction, id: u128) -> Result<Option<Summary>> {
    let me: Option<Identity> = match tx.open_table(META)?.get("identity")? {
        Some(v) => serde_json::from_slice(v.value()).ok(),
        None => None,
    };
    let Some(me) = me else { return Ok(None) };
    let mut s = derived(id, docs::load(tx, id).map(|d| d.map(|l| l.doc)), &me)?;
    if let Some(s) = &mut s {
        s.assignee = super::team::assignee_w(tx, id)?;
    }
    Ok(s)
}

/// The inbox row of `id` derived from its document, for readers.
pub(super) fn derive_read(
    tx: &ReadTransaction,
    id: u128,
    me: &Identity,
) -> Result<Option<Summary>> {
    let mut s = derived(id, docs::load_read(tx, id), me)?;
    if let Some(s) = &mut s {
        s.assignee = super::team::assignee(tx, Uuid::from_u128(id))?;
    }
    Ok(s)
}

fn derived(
    id: u128,
    loaded: Result<Option<automerge::AutoCommit>>,
    me: &Identity,
) -> Result<Option<Summary>> {
    match loaded.and_then(|d| summary_of(id, d, me)) {
        Ok(s) => Ok(s.map(|(s, ..)| s)),
        Err(e @ super::StoreError::Corrupt(..)) => {
            tracing::error!(error = %e, "a damaged conversation is left out of the inbox");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Reads inbox rows for a query. A row whose stored bytes do not verify is derived again from
/// its document, so one damaged record costs a document load instead of failing the inbox
/// for everyone; readers cannot write, so the ids of such rows are collected for a write that
/// replaces them.
pub struct Rows<'t> {
    tx: &'t ReadTransaction,
    table: redb::ReadOnlyTable<u128, &'static [u8]>,
    me: Option<Option<Identity>>,
    /// Rows that did not verify, for the caller to have contained ([`Store::contain`]).
    pub damaged: Vec<u128>,
}

impl<'t> Rows<'t> {
    pub fn new(tx: &'t ReadTransaction) -> Result<Self> {
        Ok(Rows {
            tx,
            table: tx.open_table(SUMMARIES)?,
            me: None,
            damaged: Vec::new(),
        })
    }

    /// The row of `id`, or `None` if it has none (not indexed, or its document is damaged).
    pub fn get(&mut self, id: u128) -> Result<Option<Summary>> {
        match get_summary(&self.table, id) {
            Ok(s) => Ok(s),
            Err(e) => {
                tracing::warn!(error = %e, "deriving a damaged inbox row from its document");
                self.damaged.push(id);
                if self.me.is_none() {
                    self.me = Some(super::accounts::read_identity(self.tx)?);
                }
                match self.me.as_ref().and_then(|m| m.as_ref()) {
                    Some(me) => derive_read(self.tx, id, me),
                    None => Ok(None),
                }
            }
        }
    }
}

/// Rewrites the damaged records of conversation `id` so that their pages verify again (see
/// [`docs::rewrite_stored`]): a damaged document's records are written back unchanged (it
/// stays damaged, and says so), a damaged inbox row is derived again from its document.
/// Called after a request met the damage, so that the file's pages verify again (see
/// [`docs::rewrite_stored`]) and the damage stays in the records it hit.
pub(super) fn contain(tx: &WriteTransaction, id: u128) -> Result<()> {
    if let Err(super::StoreError::Corrupt(..)) = docs::load(tx, id) {
        docs::rewrite_stored(tx, id)?;
    }
    let summaries = tx.open_table(SUMMARIES)?;
    let stored = summaries.get(id)?.map(|v| v.value().to_vec());
    let Some(bytes) = stored else { return Ok(()) };
    if index::decode_summary(id, &bytes).is_ok() {
        return Ok(());
    }
    drop(summaries);
    // Its facet entries still match its document (they changed together): only the row's
    // bytes are bad.
    let fresh = match derive_w(tx, id)? {
        Some(s) => index::encode_summary(&s)?,
        None => bytes,
    };
    tx.open_table(SUMMARIES)?.insert(id, fresh.as_slice())?;
    Ok(())
}

/// Takes every derived entry of conversation `id` out of the facets, counts, pair counts,
/// overdue watch, due-date and unread orders and search terms without knowing what they were:
/// the inbox row that says so is damaged. Walks those tables whole, which only damage makes
/// necessary.
pub(super) fn forget(tx: &WriteTransaction, id: u128) -> Result<()> {
    let mut facets = tx.open_table(FACETS)?;
    let listed: Vec<(String, i64)> = facets
        .iter()?
        .filter_map(|e| match e {
            Ok((k, _)) => {
                let (f, at, i) = k.value();
                (i == id).then(|| Ok((f.to_string(), at)))
            }
            Err(e) => Some(Err(e)),
        })
        .collect::<std::result::Result<_, _>>()?;
    let mut counts = tx.open_table(FACET_COUNTS)?;
    let mut names = Vec::new();
    for (f, at) in &listed {
        facets.remove((f.as_str(), *at, id))?;
        if !names.contains(f) {
            let n = counts.get(f.as_str())?.map(|v| v.value()).unwrap_or(0);
            if n <= 1 {
                counts.remove(f.as_str())?;
            } else {
                counts.insert(f.as_str(), n - 1)?;
            }
            names.push(f.clone());
        }
    }
    drop((facets, counts));
    super::pairs::update(tx, &names, &[])?;
    tx.open_table(DUE_PENDING)?.retain(|(_, i), _| i != id)?;
    tx.open_table(WORDS)?.retain(|(_, i), _| i != id)?;
    tx.open_table(ACTIVITY)?.remove(id)?;
    tx.open_table(DUE_ORDER)?.retain(|(_, _, i), _| i != id)?;
    tx.open_table(UNREAD_ORDER)?
        .retain(|(_, _, i), _| i != id)?;
    Ok(())
}

impl Store {
    /// Has the damaged records of these conversations rewritten (`contain`), once per
    /// conversation and process; failures are logged, not returned: the request that met the
    /// damage has its answer already.
    pub async fn contain(&self, ids: Vec<u128>) {
        let fresh: Vec<u128> = match self.contained.lock() {
            Ok(mut seen) => ids.into_iter().filter(|id| seen.insert(*id)).collect(),
            Err(_) => return,
        };
        if fresh.is_empty() {
            return;
        }
        self.warm.forget(&fresh);
        let r = self
            .write(move |ctx| -> Result<()> {
                for id in &fresh {
                    contain(ctx.tx(), *id)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "could not rewrite damaged records");
        }
    }

    /// Drops and rebuilds every derived table (`parley check --repair`). Blocking.
    pub fn rebuild_indexes(&self) -> Result<()> {
        let db = self.db.get()?;
        let me = super::accounts::read_identity(&db.begin_read()?)?;
        // A file that does not verify is dropped first: the rebuild then lists it as wanted,
        // and its conversations fetch it again from the partner.
        let tx = super::begin_write(&db)?;
        let dropped = super::check_files::drop_damaged(&tx)?;
        tx.commit()?;
        if dropped > 0 {
            tracing::warn!(
                files = dropped,
                "dropped files that did not verify; they are fetched again"
            );
        }
        rebuild(&db, me.as_ref())?;
        // The rebuild starts the overdue facet from scratch; the next query sweeps again.
        self.swept_day
            .store(0, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}
