//! Team documents (`domain::team`) in redb, and what is derived from them.
//!
//! They live beside the conversations in `DOCS`/`CHUNKS`/`HEADS` and the node's changes feed,
//! under ids of their own class, so sites of our own org sync them like any document. They are
//! never listed in a partner's feed (`store::audience` is bumped only for conversations), and
//! the sync host refuses their ids to every audience but our own sites
//! (`SyncHost::visible`): that is the one place deciding that a partner never receives one.
//!
//! Derived (rebuilt from the team documents with the other indexes): `TEAM_ASSIGNEE`, read
//! when a conversation's inbox row is written, and the note words in `TEXT_WORDS`.

use automerge::{AutoCommit, ChangeHash, transaction::CommitOptions};
use chrono::{DateTime, Utc};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::{Result, StoreError, WriteCtx, docs, index, text_words};
use crate::domain::team::{self, Team};

/// Conversation -> the user assigned to it (absent: unassigned).
pub const TEAM_ASSIGNEE: TableDefinition<u128, &str> = TableDefinition::new("team_assignee");

fn corrupt(conv: Uuid, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(conv, format!("its team document: {e}"))
}

/// The first change of every team document, byte for byte the same wherever it is made (a
/// fixed actor and time): two sites that each start the team document of one conversation
/// while apart make one shared change, so their `notes` maps are the same object and merge,
/// instead of one site's notes hiding behind the other's.
pub fn genesis(conv: Uuid) -> std::result::Result<AutoCommit, StoreError> {
    let mut d = AutoCommit::new().with_actor(automerge::ActorId::from(conv.as_bytes().as_slice()));
    team::create(&mut d, conv).map_err(|e| corrupt(conv, e))?;
    d.commit_with(CommitOptions::default().with_time(0));
    Ok(d)
}

/// The team view of conversation `conv` (the default when nobody assigned or noted it).
pub fn load(tx: &ReadTransaction, conv: Uuid) -> Result<Team> {
    match docs::load_read(tx, team::team_id(conv))? {
        None => Ok(Team::default()),
        Some(d) => team::read(&d, conv).map_err(|e| corrupt(conv, e)),
    }
}

/// [`load`] inside a write job, through the writer's cache.
pub fn load_w(ctx: &mut WriteCtx<'_>, conv: Uuid) -> Result<Team> {
    match ctx.doc_mut(team::team_id(conv))? {
        None => Ok(Team::default()),
        Some(d) => team::read(&*d, conv).map_err(|e| corrupt(conv, e)),
    }
}

/// The team document of `conv`, made (and stored) if it does not exist yet; the caller changes
/// it and then calls [`commit`].
pub fn doc_for<'c>(ctx: &'c mut WriteCtx<'_>, conv: Uuid) -> Result<&'c mut AutoCommit> {
    let id = team::team_id(conv);
    if ctx.doc_mut(id)?.is_none() {
        let mut d = genesis(conv)?;
        d.set_actor(ctx.identity()?.actor());
        ctx.insert_doc(id, d)?;
    }
    ctx.doc_mut(id)?
        .ok_or_else(|| StoreError::Record(format!("team document of {conv}"), "not stored".into()))
}

/// Stores the changes a local user made to the team document of `conv` (read as `before`
/// first) and its derived rows. Returns the new view and its feed position.
pub fn commit(
    ctx: &mut WriteCtx<'_>,
    conv: Uuid,
    before: &Team,
    actor: &str,
) -> Result<(Team, u64)> {
    let id = team::team_id(conv);
    ctx.save_doc(id)?;
    let (after, heads) = {
        let d = ctx.doc_mut(id)?.ok_or_else(|| {
            StoreError::Record(format!("team document of {conv}"), "not stored".into())
        })?;
        (
            team::read(&*d, conv).map_err(|e| corrupt(conv, e))?,
            d.get_heads(),
        )
    };
    let told = Told::by(Some(actor.to_string()), true);
    let seq = index_team(ctx.tx(), conv, before, &after, &heads, told)?;
    Ok((after, seq))
}

/// Whether and as whose act a change of assignee is told to the new assignee.
pub struct Told {
    actor: Option<String>,
    news: bool,
}

impl Told {
    fn by(actor: Option<String>, news: bool) -> Told {
        Told { actor, news }
    }
}

/// Writes the derived rows of a stored team document (`before` as indexed): its heads, the
/// assignee (re-listing the conversation's inbox row under it), the words of its notes, its
/// place in the node's feed (for our other sites; never a partner's feed), and a notification
/// to a newly assigned user. Runs in the transaction that stores the document.
pub fn index_team(
    tx: &WriteTransaction,
    conv: Uuid,
    before: &Team,
    after: &Team,
    heads: &[ChangeHash],
    told: Told,
) -> Result<u64> {
    let id = team::team_id(conv);
    tx.open_table(super::tables::HEADS)?
        .insert(id, index::encode_heads(heads).as_slice())?;
    if before.assignee != after.assignee {
        {
            let mut t = tx.open_table(TEAM_ASSIGNEE)?;
            match &after.assignee {
                Some(u) => t.insert(conv.as_u128(), u.as_str())?,
                None => t.remove(conv.as_u128())?,
            };
        }
        index::relist_assignee(tx, conv.as_u128(), after.assignee.clone())?;
        if let Some(u) = &after.assignee
            && told.news
            && Some(u) != told.actor.as_ref()
        {
            super::outbox::enqueue_assigned(tx, conv, u)?;
        }
    }
    let old: Vec<&str> = before.notes.iter().map(|n| n.body.as_str()).collect();
    let new: Vec<&str> = after.notes.iter().map(|n| n.body.as_str()).collect();
    text_words::replace(tx, conv.as_u128(), &old, &new)?;
    index::bump_feed(tx, id)
}

/// The assignee of `conv` as indexed, for readers.
pub fn assignee(tx: &ReadTransaction, conv: Uuid) -> Result<Option<String>> {
    Ok(tx
        .open_table(TEAM_ASSIGNEE)?
        .get(conv.as_u128())?
        .map(|v| v.value().to_string()))
}

/// The assignee of `conv` as indexed.
pub fn assignee_w(tx: &WriteTransaction, conv: u128) -> Result<Option<String>> {
    Ok(tx
        .open_table(TEAM_ASSIGNEE)?
        .get(conv)?
        .map(|v| v.value().to_string()))
}

/// Derives the rows of every team document again (index rebuild), before the conversations'
/// rows, which read the assignees.
pub fn rebuild(tx: &WriteTransaction, ids: &[u128]) -> Result<()> {
    for id in ids.iter().copied().filter(|i| team::is_team_id(*i)) {
        let conv = team::conversation_of(id);
        let loaded = docs::load(tx, id).and_then(|d| match d {
            None => Ok(None),
            Some(mut l) => Ok(Some((
                team::read(&l.doc, conv).map_err(|e| corrupt(conv, e))?,
                l.doc.get_heads(),
            ))),
        });
        match loaded {
            Ok(Some((t, heads))) => {
                tx.open_table(super::tables::HEADS)?
                    .insert(id, index::encode_heads(&heads).as_slice())?;
                if let Some(u) = &t.assignee {
                    tx.open_table(TEAM_ASSIGNEE)?
                        .insert(conv.as_u128(), u.as_str())?;
                }
                let new: Vec<&str> = t.notes.iter().map(|n| n.body.as_str()).collect();
                text_words::replace(tx, conv.as_u128(), &[], &new)?;
                index::bump_feed(tx, id)?;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(conversation = %conv, error = %e, "skipping a damaged team document")
            }
        }
    }
    Ok(())
}

pub fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.open_table(TEAM_ASSIGNEE)?;
    Ok(())
}

pub fn clear_derived(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.delete_table(TEAM_ASSIGNEE)?;
    Ok(())
}

// ---- from another site of our org (`sync_host`) ---------------------------------------------

/// Checks a team document another site of ours sent (`after`, with `before` the version we
/// held): the strict layout and limits, and dates no further ahead than a local write's.
pub fn check_received(
    id: u128,
    after: &automerge::Automerge,
    now: DateTime<Utc>,
) -> std::result::Result<(), String> {
    let conv = team::conversation_of(id);
    let t = team::read(after, conv).map_err(|e| e.to_string())?;
    team::check_dates(&t, now, crate::domain::policy::CLOCK_SKEW).map_err(|e| e.to_string())
}

/// Stores a checked team document from another site of ours: as it came if new here, else its
/// changes merged into ours; then its derived rows. Returns the conversation and feed position.
pub fn store_received(
    ctx: &mut WriteCtx<'_>,
    id: u128,
    base: &[ChangeHash],
    doc: &automerge::Automerge,
    now: DateTime<Utc>,
) -> Result<(Uuid, u64)> {
    let conv = team::conversation_of(id);
    let before = if docs::exists_w(ctx.read_tx(), id)? {
        let before = load_w(ctx, conv)?;
        let cur = ctx.doc_mut(id)?.ok_or_else(|| {
            StoreError::Record(format!("team document of {conv}"), "not loadable".into())
        })?;
        cur.apply_changes(doc.get_changes(base))
            .map_err(|e| corrupt(conv, e))?;
        ctx.save_doc(id)?;
        before
    } else {
        ctx.discard_doc(id);
        docs::insert_saved(ctx.tx(), id, &doc.save())?;
        Team::default()
    };
    // Our own edits may have landed meanwhile: what is stored is read (and so checked) again.
    let (after, heads) = {
        let d = ctx.doc_mut(id)?.ok_or_else(|| {
            StoreError::Record(format!("team document of {conv}"), "not stored".into())
        })?;
        match team::read(&*d, conv) {
            Ok(t) => (t, d.get_heads()),
            Err(e) => {
                ctx.discard_doc(id);
                return Err(StoreError::Raced(conv, e.to_string()));
            }
        }
    };
    // Told as made by who assigned it (nobody mails themself), and only when recent: a site
    // pairing or catching up receives every old assignment at once, and none of that is news.
    let recent = after
        .assigned_at
        .is_some_and(|at| now - at < chrono::Duration::hours(1));
    let actor = if recent {
        after.assigned_by.clone()
    } else {
        None
    };
    let told = Told::by(actor, recent);
    let seq = index_team(ctx.tx(), conv, &before, &after, &heads, told)?;
    Ok((conv, seq))
}
