//! Maintenance of the derived tables for one conversation: its inbox row, facet entries and
//! counts, overdue watch, changes feed position and per-user unread marks. Every function here
//! runs inside the write transaction that changes the document, so index and document never
//! disagree after a commit.

use chrono::Datelike;
use redb::{ReadTransaction, ReadableTable, Table, WriteTransaction};

use automerge::ChangeHash;
use uuid::Uuid;

use super::tables::*;
use super::{Result, StoreError, WriteCtx};
use crate::domain::{Conversation, Facet, Summary};

fn meta_i64(t: &impl ReadableTable<&'static str, &'static [u8]>, key: &str) -> Result<Option<i64>> {
    Ok(t.get(key)?
        .and_then(|v| v.value().try_into().ok())
        .map(i64::from_le_bytes))
}

pub fn read_swept_day(tx: &ReadTransaction) -> Result<i32> {
    Ok(meta_i64(&tx.open_table(META)?, "swept_day")?.unwrap_or(0) as i32)
}

fn swept_day_w(tx: &WriteTransaction) -> Result<i32> {
    Ok(meta_i64(&tx.open_table(META)?, "swept_day")?.unwrap_or(0) as i32)
}

/// The store schema recorded in the data directory (`None` before versions were recorded).
pub fn schema_version(tx: &WriteTransaction) -> Result<Option<u64>> {
    Ok(meta_i64(&tx.open_table(META)?, "schema_version")?.map(|v| v as u64))
}

/// The same from a read transaction; a database without tables (never written) has none.
pub fn schema_version_r(tx: &ReadTransaction) -> Result<Option<u64>> {
    match tx.open_table(META) {
        Ok(t) => Ok(meta_i64(&t, "schema_version")?.map(|v| v as u64)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The feed incarnation id, made on first open from the OS random source.
pub fn feed_id_or_create(tx: &WriteTransaction) -> Result<u64> {
    if let Some(v) = meta_i64(&tx.open_table(META)?, "feed_id")? {
        return Ok(v as u64);
    }
    let id = (Uuid::new_v4().as_u128() as u64) | 1;
    set_meta_i64(tx, "feed_id", id as i64)?;
    Ok(id)
}

pub fn set_meta_i64(tx: &WriteTransaction, key: &str, v: i64) -> Result<()> {
    tx.open_table(META)?
        .insert(key, v.to_le_bytes().as_slice())?;
    Ok(())
}

/// 64-bit FNV-1a. Each step xors in a byte and multiplies by an odd constant, both
/// bijections of the state, so two inputs of one length that differ in one byte always hash
/// differently: any single flipped byte of a record is caught.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// An inbox row as stored: its JSON followed by the JSON's 8-byte FNV-1a tag, so a damaged
/// record is recognised as such (a flipped letter inside a subject is still valid JSON) and
/// re-derived from its document instead of being shown.
pub fn encode_summary(s: &Summary) -> Result<Vec<u8>> {
    let mut out =
        serde_json::to_vec(s).map_err(|e| StoreError::Record("summary".into(), e.to_string()))?;
    let tag = fnv1a(&out);
    out.extend_from_slice(&tag.to_le_bytes());
    Ok(out)
}

/// Reads a stored inbox row; an error if its bytes do not verify.
pub fn decode_summary(id: u128, bytes: &[u8]) -> Result<Summary> {
    let damaged = |why: String| StoreError::Record(format!("summary {}", Uuid::from_u128(id)), why);
    let Some(split) = bytes.len().checked_sub(8) else {
        return Err(damaged("too short".into()));
    };
    let (json, tag) = bytes.split_at(split);
    if tag != fnv1a(json).to_le_bytes() {
        return Err(damaged("its bytes do not match their checksum".into()));
    }
    serde_json::from_slice(json).map_err(|e| damaged(e.to_string()))
}

pub fn get_summary(
    t: &impl ReadableTable<u128, &'static [u8]>,
    id: u128,
) -> Result<Option<Summary>> {
    t.get(id)?
        .map(|v| decode_summary(id, v.value()))
        .transpose()
}

/// Whether conversation `id` has an inbox row. Presence only: a row whose bytes are damaged
/// still stands for a stored conversation.
pub fn is_listed(tx: &WriteTransaction, id: u128) -> Result<bool> {
    Ok(tx.open_table(SUMMARIES)?.get(id)?.is_some())
}

/// [`is_listed`] for readers.
pub fn is_listed_read(tx: &ReadTransaction, id: u128) -> Result<bool> {
    Ok(tx.open_table(SUMMARIES)?.get(id)?.is_some())
}

/// The facets a row is listed under given the sweep day, and the day it waits on if it is a
/// task that is not overdue yet.
pub(super) fn placement(s: &Summary, swept_day: i32) -> (Vec<String>, Option<i32>) {
    let mut facets = s.facets();
    let mut pending = None;
    if let Some(due) = s.overdue_watch() {
        let day = due.num_days_from_ce();
        if day < swept_day {
            facets.push(Facet::Overdue.key());
            let action = Facet::ActionRequired.key();
            if !facets.contains(&action) {
                facets.push(action);
            }
        } else {
            pending = Some(day);
        }
    }
    (facets, pending)
}

fn add_count(t: &mut Table<&'static str, u64>, facet: &str, delta: i64) -> Result<()> {
    let cur = t.get(facet)?.map(|v| v.value()).unwrap_or(0);
    let next = (cur as i64 + delta).max(0) as u64;
    if next == 0 {
        t.remove(facet)?;
    } else {
        t.insert(facet, next)?;
    }
    Ok(())
}

/// Replaces the derived rows of one conversation (`old` as currently indexed, `new` as now
/// derived from the document) and moves it to the head of the changes feed.
pub fn index_conversation(
    tx: &WriteTransaction,
    old: Option<&Summary>,
    new: &Summary,
) -> Result<u64> {
    let id = new.id.as_u128();
    list(tx, old, new)?;
    super::audience::bump(tx, new.partner.as_str(), id)?;
    bump_feed(tx, id)
}

/// A conversation's assignee changed (its team document did): its row is listed under the
/// new one. Its document did not change, so it keeps its place in every feed — a partner's
/// feed must not show that we did anything.
pub fn relist_assignee(tx: &WriteTransaction, id: u128, assignee: Option<String>) -> Result<()> {
    let old = match get_summary(&tx.open_table(SUMMARIES)?, id) {
        Ok(Some(old)) => old,
        // Not here yet (the team document came first): its row reads the assignee when it
        // is written.
        Ok(None) => return Ok(()),
        // Damaged: which entries list it is unknown, so all are taken out by search and the
        // row is listed afresh (the assignee table is already updated).
        Err(_) => {
            super::rebuild::forget(tx, id)?;
            if let Some(new) = super::rebuild::derive_w(tx, id)? {
                list(tx, None, &new)?;
            }
            return Ok(());
        }
    };
    if old.assignee == assignee {
        return Ok(());
    }
    let mut new = old.clone();
    new.assignee = assignee;
    list(tx, Some(&old), &new)
}

/// Writes the inbox row `new` and its facet, count, search, due-date and order entries,
/// replacing those of `old`.
fn list(tx: &WriteTransaction, old: Option<&Summary>, new: &Summary) -> Result<()> {
    let id = new.id.as_u128();
    let swept = swept_day_w(tx)?;
    let (old_f, old_p) = old.map(|o| placement(o, swept)).unwrap_or_default();
    let (new_f, new_p) = placement(new, swept);
    let mut facets = tx.open_table(FACETS)?;
    let mut counts = tx.open_table(FACET_COUNTS)?;
    if let Some(o) = old {
        for f in &old_f {
            facets.remove((f.as_str(), o.activity_ms(), id))?;
            if !new_f.contains(f) {
                add_count(&mut counts, f, -1)?;
            }
        }
    }
    for f in &new_f {
        facets.insert((f.as_str(), new.activity_ms(), id), ())?;
        if !old_f.contains(f) {
            add_count(&mut counts, f, 1)?;
        }
    }
    drop((facets, counts));
    super::pairs::update(tx, &old_f, &new_f)?;
    if old_p != new_p {
        let mut pending = tx.open_table(DUE_PENDING)?;
        if let Some(d) = old_p {
            pending.remove((d, id))?;
        }
        if let Some(d) = new_p {
            pending.insert((d, id), ())?;
        }
    }
    super::search::index_terms(tx, old, new)?;
    super::due_sort::update(tx, old, new)?;
    super::order::row_changed(tx, old, new)?;
    tx.open_table(SUMMARIES)?
        .insert(id, encode_summary(new)?.as_slice())?;
    tx.open_table(ACTIVITY)?.insert(id, new.activity_ms())?;
    Ok(())
}

/// Gives the conversation the next sequence number of the changes feed.
pub fn bump_feed(tx: &WriteTransaction, id: u128) -> Result<u64> {
    let mut pos = tx.open_table(FEED_POS)?;
    let mut feed = tx.open_table(FEED)?;
    let seq = feed
        .last()?
        .map(|(k, _)| k.value())
        .unwrap_or(0)
        .max(meta_i64(&tx.open_table(META)?, "feed_floor")?.unwrap_or(0) as u64)
        + 1;
    if let Some(old) = pos.insert(id, seq)? {
        feed.remove(old.value())?;
    }
    feed.insert(seq, id)?;
    Ok(seq)
}

/// Moves tasks due before `day` from the watch list into the `overdue` facet.
pub fn sweep(ctx: &mut WriteCtx<'_>, day: i32) -> Result<()> {
    let tx = ctx.tx();
    if swept_day_w(tx)? >= day {
        return Ok(());
    }
    let mut pending = tx.open_table(DUE_PENDING)?;
    let due: Vec<(i32, u128)> = pending
        .extract_from_if((i32::MIN, 0)..(day, 0), |_, _| true)?
        .map(|r| r.map(|(k, _)| k.value()))
        .collect::<std::result::Result<_, _>>()?;
    drop(pending);
    let summaries = tx.open_table(SUMMARIES)?;
    let mut facets = tx.open_table(FACETS)?;
    let mut counts = tx.open_table(FACET_COUNTS)?;
    let key = Facet::Overdue.key();
    let action = Facet::ActionRequired.key();
    let mut healed = Vec::new();
    for (_, id) in due {
        let stored = get_summary(&summaries, id);
        let row = match stored {
            Ok(row) => row,
            // Its facet entries still match its document (they changed together): only the
            // row's bytes are bad. Derive it again and store it whole.
            Err(_) => super::rebuild::derive_w(tx, id)?.inspect(|s| healed.push(s.clone())),
        };
        if let Some(s) = row {
            facets.insert((key.as_str(), s.activity_ms(), id), ())?;
            add_count(&mut counts, &key, 1)?;
            if facets
                .insert((action.as_str(), s.activity_ms(), id), ())?
                .is_none()
            {
                add_count(&mut counts, &action, 1)?;
            }
            // Before the sweep the row was listed under its date-free facets only.
            let before = s.facets();
            let mut after = before.clone();
            after.push(key.clone());
            if !after.contains(&action) {
                after.push(action.clone());
            }
            super::pairs::update(tx, &before, &after)?;
        }
    }
    drop((summaries, facets, counts));
    let mut summaries = tx.open_table(SUMMARIES)?;
    for s in healed {
        summaries.insert(s.id.as_u128(), encode_summary(&s)?.as_slice())?;
    }
    drop(summaries);
    set_meta_i64(tx, "swept_day", day as i64)
}

/// A conversation had activity by `actor` (a local user, or `None` for a partner's change
/// arriving by sync): it becomes unread for every other local user, and read for the actor.
pub fn mark_activity(tx: &WriteTransaction, id: u128, actor: Option<&str>) -> Result<()> {
    let users: Vec<String> = {
        let t = tx.open_table(USERS)?;
        let mut v = Vec::new();
        for item in t.iter()? {
            v.push(item?.0.value().to_string());
        }
        v
    };
    for u in users {
        set_unread(tx, &u, id, Some(u.as_str()) != actor)?;
    }
    Ok(())
}

/// Sets one user's read mark for one conversation, keeping the user's unread count exact.
pub fn set_unread(tx: &WriteTransaction, user: &str, id: u128, unread: bool) -> Result<()> {
    let mut marks = tx.open_table(UNREAD)?;
    let changed = if unread {
        marks.insert((user, id), ())?.is_none()
    } else {
        marks.remove((user, id))?.is_some()
    };
    if changed {
        let mut counts = tx.open_table(UNREAD_COUNT)?;
        let cur = counts.get(user)?.map(|v| v.value()).unwrap_or(0);
        let next = if unread {
            cur + 1
        } else {
            cur.saturating_sub(1)
        };
        counts.insert(user, next)?;
        drop((marks, counts));
        super::order::mark_changed(tx, user, id, unread)?;
    }
    Ok(())
}

pub fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

pub fn decode_heads(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| ChangeHash::try_from(c).ok())
        .collect()
}

/// Re-derives every index row of document `id` after it changed (locally, or from a peer), and
/// marks it unread for every local user but `actor`. Returns the new view and feed position.
pub fn reindex_doc(
    ctx: &mut WriteCtx<'_>,
    id: Uuid,
    before: Option<&Conversation>,
    actor: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Conversation, u64)> {
    let view = ctx.view(id.as_u128())?.ok_or_else(|| {
        StoreError::Record(
            format!("conversation {id}"),
            "reindexed but not stored".into(),
        )
    })?;
    let seq = reindex_view(ctx, before, &view, actor, now)?;
    Ok((view, seq))
}

/// [`reindex_doc`] for a caller that already holds the document's current view.
pub fn reindex_view(
    ctx: &mut WriteCtx<'_>,
    before: Option<&Conversation>,
    view: &Conversation,
    actor: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    let me = ctx.identity()?.org_id.clone();
    let id = view.id.as_u128();
    let heads = ctx
        .doc_mut(id)?
        .ok_or_else(|| {
            StoreError::Record(
                format!("conversation {}", view.id),
                "reindexed but not stored".into(),
            )
        })?
        .get_heads();
    index_view(ctx.tx(), &me, before, view, &heads, actor, now)
}

/// Writes every derived row of the stored conversation `view`, whose document now has
/// `heads`: inbox row, facets, search terms, feed position, heads; and marks it unread for
/// every local user but `actor` (`None`: a partner's change, unread for everyone); queues
/// the notifications and webhook deliveries of what changed since `before` (`None`: new
/// here). The one place that does so, for local writes and for documents stored from a peer
/// alike, so the outbox rows commit with the change or not at all.
pub fn index_view(
    tx: &WriteTransaction,
    me: &crate::domain::OrgId,
    before: Option<&Conversation>,
    view: &Conversation,
    heads: &[ChangeHash],
    actor: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    index_view_with(tx, me, before, view, heads, actor, now, None)
}

/// [`index_view`] of a conversation new here whose body words were already tallied
/// ([`super::text_words::tally`] of every message body), when `words` is given.
#[allow(clippy::too_many_arguments)]
pub fn index_view_with(
    tx: &WriteTransaction,
    me: &crate::domain::OrgId,
    before: Option<&Conversation>,
    view: &Conversation,
    heads: &[ChangeHash],
    actor: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
    words: Option<std::collections::BTreeMap<String, i64>>,
) -> Result<u64> {
    let id = view.id.as_u128();
    let stored = get_summary(&tx.open_table(SUMMARIES)?, id);
    let old = match stored {
        Ok(old) => old,
        Err(e) => {
            // The row that says where the conversation is listed is unreadable: take every
            // entry of it out by search, then list it afresh.
            tracing::warn!(conversation = %view.id, error = %e, "re-deriving a damaged inbox row");
            super::rebuild::forget(tx, id)?;
            None
        }
    };
    let mut row = Summary::of(view, me);
    row.assignee = super::team::assignee_w(tx, id)?;
    let seq = index_conversation(tx, old.as_ref(), &row)?;
    // Message bodies never change: only the messages new in this version add their words.
    let seen: std::collections::HashSet<Uuid> = before
        .map(|b| b.messages.iter().map(|m| m.id).collect())
        .unwrap_or_default();
    let new_bodies: Vec<&str> = view
        .messages
        .iter()
        .filter(|m| !seen.contains(&m.id))
        .map(|m| m.body.as_str())
        .collect();
    match words {
        Some(w) if before.is_none() => super::text_words::apply(tx, id, w)?,
        _ if !new_bodies.is_empty() => super::text_words::replace(tx, id, &[], &new_bodies)?,
        _ => {}
    }
    super::blobs::index_refs(tx, me, before, view)?;
    tx.open_table(HEADS)?
        .insert(id, encode_heads(heads).as_slice())?;
    mark_activity(tx, id, actor)?;
    super::outbox::enqueue_change(tx, me, before, view, actor, now)?;
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Author, Kind, OrgId, State};

    /// Any single byte of a stored row, changed in any way, is caught: with a flipped letter
    /// inside the subject the JSON still parses, so only the tag can tell.
    #[test]
    fn a_row_with_any_byte_changed_does_not_decode() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let s = Summary {
            id: Uuid::from_u128(42),
            kind: Kind::Message,
            partner: OrgId::parse("bolt").unwrap(),
            subject: "Thin description".into(),
            topic: None,
            reference_id: Some("PO-1".into()),
            state: State::Open,
            progress: None,
            due_date: None,
            created_by: Author {
                org: OrgId::parse("acme").unwrap(),
                user: "ann".into(),
            },
            created_at: t,
            last_activity_at: t,
            message_count: 3,
            last_message_org: None,
            last_message_preview: Some("see the photos".into()),
            assignee: None,
        };
        let bytes = encode_summary(&s).unwrap();
        assert_eq!(decode_summary(42, &bytes).unwrap(), s);
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x20, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                assert!(
                    decode_summary(42, &b).is_err(),
                    "byte {i} changed with {mask:#x} went unnoticed"
                );
            }
        }
        assert!(decode_summary(42, &bytes[..bytes.len() - 1]).is_err());
        assert!(decode_summary(42, b"{}").is_err());
    }
}
