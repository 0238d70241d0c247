//! The flush of what one session call collected: one durable commit.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::index::{index_view, index_view_with};
use super::super::{Store, StoreError, delivery, docs, peers, quota};
use super::{Pending, day_of};
use crate::domain::doc;
use crate::domain::policy::Gate;

/// What a flush changed: (conversation, feed seq) for each document stored, and for each
/// conversation it found delivered to the partner.
pub type Flushed = Vec<(Uuid, u64)>;

impl Store {
    /// Writes what a session call collected, in one durable commit. Blocking.
    ///
    /// A conversation new here is stored as the session's copy, saved on this thread: it holds
    /// exactly the peer's changes, already validated and read. One that exists gets the peer's
    /// changes merged into the writer's copy (our own edits since the session read it stay).
    pub fn flush_sync(
        &self,
        peer: Uuid,
        pending: Pending,
        now: DateTime<Utc>,
    ) -> Result<Flushed, StoreError> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        // On a full disk `store_doc` took no document, so what is left is bookkeeping (sync
        // states, the cursor, deliveries acknowledged): all of it safe to lose, as it is only
        // exchanged again. Writing it would be refused and end the session in a loop.
        if pending.only_bookkeeping() && self.check_space().is_err() {
            return Ok(Vec::new());
        }
        let saves: HashMap<u128, Vec<u8>> = pending
            .docs
            .iter()
            .filter(|(_, r)| r.base.is_empty() && r.bytes.is_none())
            .map(|(id, r)| (*id, r.doc.save()))
            .collect();
        // The batch comes back out of the writer to be dropped here: freeing thousands of
        // Automerge documents is work the writer thread should not do.
        let (out, spent) =
            self.write_blocking(move |ctx| -> Result<(Flushed, Pending), StoreError> {
                let mut p = pending;
                let ident = ctx.identity()?.clone();
                let me = ident.org_id.clone();
                let gate = Gate {
                    me: &ident.org_id,
                    my_role: ident.role,
                    now,
                };
                let mut out = Vec::new();
                for id in &p.order {
                    let Some(r) = p.docs.get_mut(id) else {
                        continue;
                    };
                    let uuid = Uuid::from_u128(*id);
                    let corrupt =
                        |e: automerge::AutomergeError| StoreError::Corrupt(uuid, e.to_string());
                    let seq = if !docs::exists_w(ctx.read_tx(), *id)? {
                        let bytes = match (&r.bytes, saves.get(id)) {
                            (Some(b), _) | (None, Some(b)) => Cow::Borrowed(b),
                            (None, None) => Cow::Owned(r.doc.save()),
                        };
                        ctx.discard_doc(*id);
                        docs::insert_saved(ctx.tx(), *id, &bytes)?;
                        let words = r.words.take();
                        index_view_with(
                            ctx.tx(),
                            &me,
                            None,
                            &r.view,
                            &r.doc.get_heads(),
                            None,
                            now,
                            words,
                        )?
                    } else {
                        let ours = ctx.view(*id)?.ok_or_else(|| {
                            StoreError::Record(
                                format!("conversation {uuid}"),
                                "not loadable".into(),
                            )
                        })?;
                        let cur = ctx.doc_mut(*id)?.ok_or_else(|| {
                            StoreError::Record(
                                format!("conversation {uuid}"),
                                "not loadable".into(),
                            )
                        })?;
                        cur.apply_changes(r.doc.get_changes(&r.base))
                            .map_err(corrupt)?;
                        let merged = cur.get_heads();
                        let view = if merged == r.doc.get_heads() {
                            None
                        } else {
                            // Our own edits landed meanwhile: the checked view is not the result,
                            // so the gate judges again what will be stored, against what we hold
                            // now. A refusal aborts this commit whole; the next session checks
                            // the peer's changes against our newer copy and refuses them there.
                            let v = doc::read_strict(&*cur)
                                .map_err(|e| StoreError::Corrupt(uuid, e.to_string()))?;
                            if let Some(a) = &p.authority
                                && let Err(why) = gate.admit(Some(&ours), &v, a)
                            {
                                ctx.discard_doc(*id);
                                return Err(StoreError::Raced(uuid, why.to_string()));
                            }
                            Some(v)
                        };
                        ctx.save_doc(*id)?;
                        let view = view.as_ref().unwrap_or(&r.view);
                        // The next local write to it starts from this view, not from a re-read.
                        ctx.set_view(*id, view);
                        index_view(ctx.tx(), &me, Some(&ours), view, &merged, None, now)?
                    };
                    out.push((uuid, seq));
                }
                for (id, base, doc) in &p.team {
                    out.push(crate::store::team::store_received(
                        ctx, *id, base, doc, now,
                    )?);
                }
                let tx = ctx.tx();
                if !p.blobs.is_empty() {
                    crate::store::blobs::store_received(tx, &p.blobs)?;
                    // A file that became complete changes what its conversations show ("arriving"
                    // no longer): say so to whoever watches them, and to the other sessions, which
                    // may now serve it.
                    for r in &p.blobs {
                        if let crate::store::blobs::Received::Complete { hash, .. } = r {
                            for (conv, seq) in crate::store::blobs::conversations_at(tx, hash)? {
                                if !out.iter().any(|(u, _)| *u == conv) {
                                    out.push((conv, seq));
                                }
                            }
                        }
                    }
                }
                let rec = peers::get_peer_w(tx, peer)?;
                for (id, st) in &p.states {
                    peers::put_sync_state(tx, peer, *id, st)?;
                }
                if let Some(rec) = &rec {
                    // After the documents above: the heads compared are the ones now stored.
                    for (id, seq) in delivery::settle_flush(tx, rec, &me, &p.states, &p.acked)? {
                        if !out.iter().any(|(u, _)| *u == id) {
                            out.push((id, seq));
                        }
                    }
                }
                if let Some(c) = p.cursor {
                    peers::put_cursor(tx, peer, (c.feed_id, c.seq))?;
                }
                if p.bytes > 0 {
                    quota::add(tx, peer.as_u128(), day_of(now), p.bytes)?;
                }
                if let Some(mut rec) = rec {
                    rec.last_sync_at = Some(now);
                    peers::put_peer(tx, &rec)?;
                }
                Ok((out, p))
            })?;
        drop(spent);
        Ok(out)
    }
}
