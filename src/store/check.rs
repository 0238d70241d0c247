//! `parley check`: every derived record compared with the documents it is derived from, and
//! the database file's page checksums verified.
//!
//! Without `--repair` the check writes nothing to the database file. It works on a copy made
//! beside it (and removed afterwards): redb verifies page checksums only through
//! `check_integrity`, which needs a writable handle and may repair, and recovering a file left
//! by an unclean stop writes to it too, so neither may touch the original.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::index::{decode_heads, get_summary, placement, read_swept_day};
use super::tables::*;
use super::{Result, Store, StoreError, docs};
use crate::domain::{Summary, doc, search};

/// What `parley check` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub conversations: usize,
    /// Documents whose stored bytes do not verify or that do not follow the schema.
    pub damaged: Vec<Uuid>,
    /// Conversations whose inbox row, heads, facet entries or search terms differ from what
    /// the document says (a row whose bytes do not verify counts here too).
    pub mismatched: Vec<Uuid>,
    /// Facet counts that differ from the entries they count.
    pub bad_counts: Vec<String>,
    /// Index entries naming a conversation that is not stored.
    pub strays: usize,
    /// Whether the file's page checksums were verified, and what that found.
    pub pages: Pages,
    /// Attached files: their bytes and the references to them.
    pub files: super::check_files::FileReport,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Pages {
    /// Not checked (a check run by a live node cannot verify pages).
    #[default]
    NotChecked,
    Verified,
    /// Some page fails its checksum: bytes were damaged outside redb. The node still opens
    /// (see `begin_write`), and the records' own checks find what they hit.
    Damaged(String),
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
            && self.mismatched.is_empty()
            && self.bad_counts.is_empty()
            && self.strays == 0
            && !matches!(self.pages, Pages::Damaged(_))
            && self.files.is_clean()
    }
}

/// What the document `id` says its derived records are: its row, heads, facet entries and terms.
struct Expected {
    row: Summary,
    heads: Vec<u8>,
    facets: BTreeSet<(String, i64)>,
    terms: BTreeSet<String>,
}

/// Compares every derived record with the documents, in one read transaction.
pub fn check_tx(tx: &ReadTransaction) -> Result<CheckReport> {
    // A node whose power went during its first start may have a database without tables
    // yet: nothing is stored, so nothing disagrees.
    if tx.list_tables()?.next().is_none() {
        return Ok(CheckReport::default());
    }
    let me = super::accounts::read_identity(tx)?;
    let swept = read_swept_day(tx)?;
    let mut r = CheckReport::default();
    let mut expected = HashMap::<u128, Expected>::new();
    let mut damaged = BTreeSet::new();
    let mut teams = BTreeSet::new();
    // Team documents first: what they say the assignees are is what the rows must say.
    let all = docs::all_ids(tx)?;
    let mut assignees = HashMap::<u128, String>::new();
    let mut notes = HashMap::<u128, Vec<String>>::new();
    let mut text_expected = HashMap::<u128, u64>::new();
    let mut team_mismatch = BTreeSet::new();
    for id in all
        .iter()
        .copied()
        .filter(|i| crate::domain::team::is_team_id(*i))
    {
        let conv = crate::domain::team::conversation_of(id);
        teams.insert(id);
        match super::team::load(tx, conv) {
            Ok(t) => {
                if let Some(a) = t.assignee {
                    assignees.insert(conv.as_u128(), a);
                }
                notes.insert(
                    conv.as_u128(),
                    t.notes.into_iter().map(|n| n.body).collect(),
                );
            }
            // Named by its conversation, which the API knows.
            Err(_) => {
                damaged.insert(conv.as_u128());
            }
        }
    }
    let indexed_assignees = tx.open_table(super::team::TEAM_ASSIGNEE)?;
    for item in indexed_assignees.iter()? {
        let (k, v) = item?;
        if assignees.get(&k.value()).map(String::as_str) != Some(v.value()) {
            team_mismatch.insert(k.value());
        }
    }
    for (conv, a) in &assignees {
        let indexed = indexed_assignees.get(*conv)?.map(|v| v.value().to_string());
        if indexed.as_ref() != Some(a) {
            team_mismatch.insert(*conv);
        }
    }
    for id in all
        .into_iter()
        .filter(|i| !crate::domain::team::is_team_id(*i))
    {
        r.conversations += 1;
        let Some(me) = me.as_ref() else {
            damaged.insert(id);
            continue;
        };
        let read = docs::load_read(tx, id).and_then(|d| {
            let mut d = d.ok_or(StoreError::Closed)?;
            let c = doc::read(&d)
                .map_err(|e| StoreError::Corrupt(Uuid::from_u128(id), e.to_string()))?;
            let mut row = Summary::of(&c, &me.org_id);
            row.assignee = assignees.get(&id).cloned();
            // The words of its messages and of our notes on it, as `text_words` must hold them.
            let mut texts: Vec<&str> = c.messages.iter().map(|m| m.body.as_str()).collect();
            texts.extend(notes.get(&id).into_iter().flatten().map(String::as_str));
            let words = super::text_words::digest(&texts);
            Ok((row, d.get_heads(), words))
        });
        match read {
            Ok((row, heads, words)) => {
                text_expected.insert(id, words);
                let (facets, _) = placement(&row, swept);
                let at = row.activity_ms();
                expected.insert(
                    id,
                    Expected {
                        facets: facets.into_iter().map(|f| (f, at)).collect(),
                        terms: search::terms(&row).into_iter().collect(),
                        heads: super::index::encode_heads(&heads),
                        row,
                    },
                );
            }
            Err(_) => {
                damaged.insert(id);
            }
        }
    }
    r.damaged = damaged.iter().map(|id| Uuid::from_u128(*id)).collect();
    let known = |id: &u128| expected.contains_key(id) || damaged.contains(id) || teams.contains(id);

    let mut mismatched = team_mismatch;
    // The words of bodies and notes: each conversation's entries add up to what its texts do.
    let stored = super::text_words::digests(tx)?;
    for (id, want) in &text_expected {
        if stored.get(id).copied().unwrap_or(0) != *want {
            mismatched.insert(*id);
        }
    }
    for id in stored.keys() {
        if !text_expected.contains_key(id) && !damaged.contains(id) {
            r.strays += 1;
        }
    }
    let summaries = tx.open_table(SUMMARIES)?;
    let heads = tx.open_table(HEADS)?;
    for (id, e) in &expected {
        let row_ok = matches!(get_summary(&summaries, *id), Ok(Some(s)) if s == e.row);
        let heads_ok = heads
            .get(*id)?
            .is_some_and(|h| decode_heads(h.value()) == decode_heads(&e.heads));
        if !row_ok || !heads_ok {
            mismatched.insert(*id);
        }
    }
    for item in summaries.iter()? {
        if !known(&item?.0.value()) {
            r.strays += 1;
        }
    }
    // The changes feed: each conversation once, where its position says.
    let feed = tx.open_table(FEED)?;
    let pos = tx.open_table(FEED_POS)?;
    for id in expected.keys() {
        let at = pos.get(*id)?.map(|v| v.value());
        let listed = match at {
            Some(seq) => feed.get(seq)?.map(|v| v.value()) == Some(*id),
            None => false,
        };
        if !listed {
            mismatched.insert(*id);
        }
    }
    for item in feed.iter()? {
        if !known(&item?.1.value()) {
            r.strays += 1;
        }
    }

    // Facet entries, grouped by conversation, against what each document says.
    let mut seen = std::collections::BTreeMap::<String, u64>::new();
    let mut listed = HashMap::<u128, BTreeSet<(String, i64)>>::new();
    for e in tx.open_table(FACETS)?.iter()? {
        let (k, _) = e?;
        let (facet, at, id) = k.value();
        *seen.entry(facet.to_string()).or_default() += 1;
        listed
            .entry(id)
            .or_default()
            .insert((facet.to_string(), at));
    }
    let mut terms = HashMap::<u128, BTreeSet<String>>::new();
    for e in tx.open_table(WORDS)?.iter()? {
        let (k, _) = e?;
        let (term, id) = k.value();
        terms.entry(id).or_default().insert(term.to_string());
    }
    let empty_f = BTreeSet::new();
    let empty_t = BTreeSet::new();
    for (id, e) in &expected {
        if listed.get(id).unwrap_or(&empty_f) != &e.facets
            || terms.get(id).unwrap_or(&empty_t) != &e.terms
        {
            mismatched.insert(*id);
        }
    }
    r.strays += listed
        .keys()
        .chain(terms.keys())
        .filter(|id| !known(id))
        .count();
    r.mismatched = mismatched.into_iter().map(Uuid::from_u128).collect();

    let counts = tx.open_table(FACET_COUNTS)?;
    for e in counts.iter()? {
        let (k, v) = e?;
        if seen.remove(k.value()) != Some(v.value()) {
            r.bad_counts.push(k.value().to_string());
        }
    }
    r.bad_counts.extend(seen.into_keys());
    let mut pairs = std::collections::BTreeMap::<(String, String), u64>::new();
    for keys in listed.values() {
        let keys: Vec<String> = keys.iter().map(|(f, _)| f.clone()).collect();
        for p in super::pairs::pairs_of(&keys) {
            *pairs.entry(p).or_default() += 1;
        }
    }
    for e in tx.open_table(PAIR_COUNTS)?.iter()? {
        let (k, v) = e?;
        let (a, b) = k.value();
        if pairs.remove(&(a.to_string(), b.to_string())) != Some(v.value()) {
            r.bad_counts.push(format!("{a}&{b}"));
        }
    }
    r.bad_counts
        .extend(pairs.into_keys().map(|(a, b)| format!("{a}&{b}")));
    r.files = super::check_files::check_files(tx)?;
    Ok(r)
}

impl Store {
    /// Compares every derived row with its document. Walks everything: a maintenance command.
    pub async fn check(&self) -> Result<CheckReport> {
        self.read(check_tx).await
    }
}

/// Removes the working copy however the check ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `parley check` on a stopped node: checks a copy of the database, so the file itself is left
/// byte for byte as it was, even when it needs recovery after an unclean stop.
pub fn check_offline(dir: &Path) -> Result<CheckReport> {
    let path = dir.join("parley.redb");
    let record = |e: std::io::Error| StoreError::Record(path.display().to_string(), e.to_string());
    if !path.exists() {
        return Err(StoreError::Record(
            path.display().to_string(),
            "there is no database here; check --data-dir".into(),
        ));
    }
    // A read-only open is refused while a node holds the file, and holds it shared while we
    // copy, so no node starts writing meanwhile. A file that needs recovery is refused too;
    // then no node holds it either (a running node would be refused first).
    let guard = match Database::builder().open_read_only(&path) {
        Ok(db) => Some(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(StoreError::Locked(dir.to_path_buf()));
        }
        Err(_) => None,
    };
    let scratch = Scratch(dir.join(format!(".parley-check-{}.redb", std::process::id())));
    std::fs::copy(&path, &scratch.0).map_err(record)?;
    drop(guard);
    if super::fresh::file_never_created(&scratch.0) {
        return Ok(CheckReport::default());
    }
    check_opened(dir, Database::builder().open(&scratch.0))
}

/// [`check_offline`] on a database kept by `backend`, for tests and tools: a copy, since
/// recovering a file left by an unclean stop writes to it.
pub fn check_on_backend(backend: Box<dyn redb::StorageBackend>) -> Result<CheckReport> {
    if super::fresh::backend_never_created(&*backend) {
        return Ok(CheckReport::default());
    }
    check_opened(
        Path::new("(the storage backend)"),
        Database::builder().create_with_backend(super::backend::Boxed(backend)),
    )
}

/// What both offline checks share once redb has tried to open the copy.
fn check_opened(
    dir: &Path,
    db: std::result::Result<Database, redb::DatabaseError>,
) -> Result<CheckReport> {
    let mut db = match db {
        Ok(db) => db,
        Err(e) => {
            return Ok(CheckReport {
                pages: Pages::Damaged(format!(
                    "the file cannot be opened ({e}); no index can be rebuilt from it"
                )),
                ..Default::default()
            });
        }
    };
    let rtx = db.begin_read()?;
    if let Some(v) = super::index::schema_version_r(&rtx)?
        && v > super::SCHEMA_VERSION
    {
        // A newer release's tables would be judged by rules they do not follow.
        return Err(StoreError::NewerSchema(
            dir.to_path_buf(),
            v,
            super::SCHEMA_VERSION,
        ));
    }
    let mut r = check_tx(&rtx)?;
    drop(rtx);
    r.pages = match db.check_integrity() {
        Ok(true) => Pages::Verified,
        Ok(false) => Pages::Damaged("some pages did not verify".into()),
        Err(e) => Pages::Damaged(e.to_string()),
    };
    Ok(r)
}
