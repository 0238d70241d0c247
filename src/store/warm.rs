//! Local changes to a conversation, worked out off the writer thread.
//!
//! The writer thread is the one place that commits, and every job on it runs one after the
//! other. A local command used to do all of its Automerge work there: load the document,
//! read its view, apply the command, save the change. Here that work runs on the blocking
//! pool, many conversations at once, and the writer gets only what to store: the change's
//! bytes, and the view before and after for the derived rows.
//!
//! Correctness does not rest on the preparation being current, only on the writer's check.
//! A change is prepared on top of the heads the store had committed when it started (`base`).
//! The writer stores it only if the conversation's stored heads (`HEADS`, read through the
//! write transaction, so an earlier job of the same batch counts) still equal `base`;
//! otherwise nothing is written and the caller is told [`Prepared::Stale`], and runs the
//! command the old way, inside the writer. The writer's job writes the new heads itself, so
//! no later preparation on the old heads can pass the check, whatever the caller writes.
//!
//! One command per conversation is prepared at a time (one lock per warm conversation). A
//! command that finds its conversation's lock taken is not prepared at all but goes to the
//! writer at once, as before: concurrent commands to one conversation then still share a
//! group commit instead of waiting for each other's. A preparation goes stale when a
//! partner's change or a write of the writer's own path lands meanwhile, or when its slot
//! was evicted and another command prepared on the same heads.
//!
//! A conversation due a full save (`docs::COMPACT_AFTER` chunks) gets it here too: the
//! preparation saves the whole document, and the writer replaces the stored one.
//!
//! Documents stay warm between commands: [`Warm`] keeps the document and its view as of the
//! last committed change here, and is used again only while its heads equal the stored ones.
//! A change that failed or was not committed is never kept, and a conversation found damaged
//! is forgotten ([`Store::contain`]). The warm cache holds up to `doc_cache` conversations,
//! beside the writer's own cache of as many.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use automerge::{AutoCommit, ChangeHash};
use redb::ReadableTable;
use uuid::Uuid;

use super::tables::{CHUNKS, HEADS};
use super::{Identity, Store, StoreError, WriteCtx, accounts, disk, docs, index};
use crate::domain::{Conversation, doc};

/// A conversation's document and the view read from it, at the document's heads.
struct Warm {
    doc: AutoCommit,
    view: Conversation,
}

type Slot = Arc<tokio::sync::Mutex<Option<Box<Warm>>>>;
/// The tick of the last use, and per conversation its slot and when it was last used.
type Slots = (u64, HashMap<u128, (Slot, u64)>);

/// The warm conversations, least recently used evicted first. A slot evicted while a command
/// holds it is simply forgotten when that command ends.
pub(super) struct WarmCache {
    cap: usize,
    slots: Mutex<Slots>,
    /// This node's identity, once it has one: it never changes while the store is open (a
    /// restore rewrites it offline), and reading it is a JSON decode per command otherwise.
    identity: Arc<OnceLock<Identity>>,
    /// Commands stored by the prepared path, and sent to the writer's instead (busy or stale).
    stored: AtomicU64,
    sent_on: AtomicU64,
}

impl WarmCache {
    pub(super) fn new(cap: usize) -> Self {
        WarmCache {
            cap: cap.max(1),
            slots: Mutex::new((0, HashMap::new())),
            identity: Arc::default(),
            stored: AtomicU64::new(0),
            sent_on: AtomicU64::new(0),
        }
    }

    /// Forgets what is kept of these conversations (found damaged: nothing kept may stand in
    /// for their stored bytes).
    pub(super) fn forget(&self, ids: &[u128]) {
        let mut g = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for id in ids {
            g.1.remove(id);
        }
    }

    fn slot(&self, id: u128) -> Slot {
        let mut g = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tick, map) = &mut *g;
        *tick += 1;
        let now = *tick;
        if let Some((slot, used)) = map.get_mut(&id) {
            *used = now;
            return slot.clone();
        }
        if map.len() >= self.cap
            && let Some(oldest) = map.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        let slot = Slot::default();
        map.insert(id, (slot.clone(), now));
        slot
    }
}

/// What a command's change function says it did.
pub enum Change<E> {
    /// The document and view were changed alike.
    Changed,
    /// Already as asked: nothing to store.
    Unchanged,
    /// Refused; whatever it did to the document is rolled back.
    Refused(E),
}

/// How a prepared command ended.
pub enum Prepared<T> {
    /// Stored and durable: the view after it, and what the write function returned.
    Written(Conversation, T),
    /// Nothing needed storing: the conversation as it is.
    Unchanged(Conversation),
    /// Not stored: the conversation changed under the preparation, or another command on it
    /// is in flight. Run the command inside the writer instead.
    Stale,
}

/// The preparation's result, carried from the blocking pool back to the caller (one per
/// command, moved once: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Step<E> {
    Missing,
    Refused(Box<Warm>, E),
    Unchanged(Box<Warm>),
    Ready {
        warm: Box<Warm>,
        before: Conversation,
        base: Vec<ChangeHash>,
        heads: Vec<ChangeHash>,
        save: Save,
    },
}

/// What the writer stores for a prepared change.
pub(super) enum Save {
    /// The change's bytes, appended as the next chunk.
    Chunk(Vec<u8>),
    /// The whole document, replacing the stored save and its chunks.
    Full(Vec<u8>),
}

/// Whether the writer stored the prepared change (one per command: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Stored<T> {
    /// With the view after the change, handed back rather than cloned twice.
    Yes(T, Conversation),
    Stale,
}

impl Store {
    /// How many local commands were stored by the prepared path, and how many were sent to
    /// the writer's own path instead (their conversation busy or changed meanwhile).
    pub fn command_paths(&self) -> (u64, u64) {
        (
            self.warm.stored.load(Ordering::Relaxed),
            self.warm.sent_on.load(Ordering::Relaxed),
        )
    }

    /// Applies a local change to conversation `id` with its Automerge work done off the writer
    /// thread (see the module docs), then runs `write` in the writer with the view before and
    /// after and the new heads, to write the derived rows; answers once that commit is
    /// durable.
    ///
    /// `change` gets the document (writing as this node's actor), its view before, the view
    /// to change and this node's identity; it must change the view exactly as it changes the
    /// document (debug builds
    /// check it against a full read). `write` must return `Err` only before its first write,
    /// as any writer job. `Ok(None)`: there is no such conversation.
    pub async fn change_prepared<T, E, C, W>(
        &self,
        id: Uuid,
        change: C,
        write: W,
    ) -> Result<Option<Prepared<T>>, E>
    where
        C: FnOnce(&mut AutoCommit, &Conversation, &mut Conversation, &Identity) -> Change<E>
            + Send
            + 'static,
        W: FnOnce(&mut WriteCtx<'_>, &Conversation, &Conversation, &[ChangeHash]) -> Result<T, E>
            + Send
            + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let key = id.as_u128();
        let slot = self.warm.slot(key);
        let Ok(mut held) = slot.try_lock_owned() else {
            self.warm.sent_on.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(Prepared::Stale));
        };
        let warm = held.take();
        let (db, identity) = (self.db.clone(), self.warm.identity.clone());
        let step = tokio::task::spawn_blocking(move || prepare(&db, &identity, id, warm, change))
            .await
            .map_err(|e| {
                if e.is_panic() {
                    // Not transient: the same command would fail the same way again.
                    StoreError::Record(
                        format!("conversation {id}"),
                        "working out the change failed (a panic, logged above)".into(),
                    )
                } else {
                    StoreError::Closed
                }
            })??;
        let (warm, before, base, heads, save) = match step {
            Step::Missing => return Ok(None),
            Step::Refused(warm, e) => {
                *held = Some(warm);
                return Err(e);
            }
            Step::Unchanged(warm) => {
                let view = warm.view.clone();
                *held = Some(warm);
                return Ok(Some(Prepared::Unchanged(view)));
            }
            Step::Ready {
                warm,
                before,
                base,
                heads,
                save,
            } => (warm, before, base, heads, save),
        };
        let after = warm.view.clone();
        let stored = self
            .write(move |ctx| -> Result<Stored<T>, E> {
                if !store_change(ctx, key, &base, &heads, &save)? {
                    return Ok(Stored::Stale);
                }
                write(ctx, &before, &after, &heads).map(|t| Stored::Yes(t, after))
            })
            .await;
        // Kept only once durable: a failed commit leaves the document ahead of what is stored.
        match stored? {
            Stored::Yes(t, view) => {
                *held = Some(warm);
                self.warm.stored.fetch_add(1, Ordering::Relaxed);
                Ok(Some(Prepared::Written(view, t)))
            }
            Stored::Stale => {
                self.warm.sent_on.fetch_add(1, Ordering::Relaxed);
                Ok(Some(Prepared::Stale))
            }
        }
    }
}

/// On the blocking pool: the warm document if it is still current, else loaded; then the
/// change and its bytes.
fn prepare<E, C>(
    db: &disk::DbCell,
    identity: &OnceLock<Identity>,
    id: Uuid,
    warm: Option<Box<Warm>>,
    change: C,
) -> Result<Step<E>, StoreError>
where
    C: FnOnce(&mut AutoCommit, &Conversation, &mut Conversation, &Identity) -> Change<E>,
{
    let key = id.as_u128();
    let tx = disk::begin_read(db)?;
    let ident = match identity.get() {
        Some(i) => i,
        None => {
            let read = accounts::read_identity(&tx)?.ok_or(StoreError::NoIdentity)?;
            identity.get_or_init(|| read)
        }
    };
    let stored = stored_heads(&tx.open_table(HEADS)?, key)?;
    let current = warm.and_then(|mut w| {
        let heads = w.doc.get_heads();
        (stored.as_deref() == Some(heads.as_slice())).then_some(w)
    });
    let mut warm = match current {
        Some(w) => w,
        None => {
            let Some(mut d) = docs::load_read(&tx, key)? else {
                return Ok(Step::Missing);
            };
            d.set_actor(ident.actor());
            let view = doc::read(&d).map_err(|e| StoreError::Corrupt(id, e.to_string()))?;
            Box::new(Warm { doc: d, view })
        }
    };
    let chunks = docs::next_chunk(&tx.open_table(CHUNKS)?, key)?;
    drop(tx);
    let base = warm.doc.get_heads();
    let before = warm.view.clone();
    match change(&mut warm.doc, &before, &mut warm.view, ident) {
        Change::Refused(e) => {
            warm.doc.rollback();
            warm.view = before;
            return Ok(Step::Refused(warm, e));
        }
        Change::Unchanged => {
            warm.doc.rollback();
            warm.view = before;
            return Ok(Step::Unchanged(warm));
        }
        Change::Changed => {}
    }
    let save = if chunks >= docs::COMPACT_AFTER {
        Save::Full(warm.doc.save())
    } else {
        Save::Chunk(warm.doc.save_after(&base))
    };
    let heads = warm.doc.get_heads();
    #[cfg(debug_assertions)]
    assert_eq!(
        doc::read(&warm.doc).ok().as_ref(),
        Some(&warm.view),
        "the updated view differs from the document"
    );
    Ok(Step::Ready {
        warm,
        before,
        base,
        heads,
        save,
    })
}

/// In the writer: stores the change if the stored heads are still `base` (`false`, and
/// nothing written, otherwise), and the new heads with it. A chunk is refused too when the
/// conversation became due a full save meanwhile (the writer's own path then folds it).
fn store_change(
    ctx: &mut WriteCtx<'_>,
    id: u128,
    base: &[ChangeHash],
    heads: &[ChangeHash],
    save: &Save,
) -> Result<bool, StoreError> {
    let tx = ctx.read_tx();
    let stored = stored_heads(&tx.open_table(HEADS)?, id)?;
    if stored.as_deref() != Some(base) {
        return Ok(false);
    }
    match save {
        Save::Chunk(bytes) => {
            let next = docs::next_chunk(&tx.open_table(CHUNKS)?, id)?;
            if next >= docs::COMPACT_AFTER {
                return Ok(false);
            }
            if !bytes.is_empty() {
                ctx.tx()
                    .open_table(CHUNKS)?
                    .insert((id, next), bytes.as_slice())?;
            }
        }
        Save::Full(full) => {
            let tx = ctx.tx();
            tx.open_table(super::tables::DOCS)?
                .insert(id, full.as_slice())?;
            tx.open_table(CHUNKS)?
                .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
        }
    }
    ctx.tx()
        .open_table(HEADS)?
        .insert(id, index::encode_heads(heads).as_slice())?;
    // The writer's own copy, if it holds one, is now behind what is stored.
    ctx.discard_doc(id);
    Ok(true)
}

/// The heads `HEADS` records for conversation `id` (`None`: not stored).
fn stored_heads(
    heads: &impl ReadableTable<u128, &'static [u8]>,
    id: u128,
) -> Result<Option<Vec<ChangeHash>>, StoreError> {
    Ok(heads.get(id)?.map(|h| index::decode_heads(h.value())))
}
