//! Commands on an existing conversation (reply, resolve, reopen, edit, progress).
//!
//! A command without an `Idempotency-Key` is worked out off the writer thread
//! ([`crate::store::Store::change_prepared`]): the Automerge work of many conversations runs
//! in parallel, and the writer only stores the change's bytes and the derived rows. When the
//! conversation changed meanwhile (a partner's change landed), or for a keyed command (whose
//! key must be looked up and stored in the same transaction as the change), the command runs
//! inside one writer job as before, with the same rules and the same result.

use super::*;
use crate::domain::commands::{self, Command, Outcome};
use crate::domain::policy::Authority;
use crate::domain::{Author, Conversation};
use crate::store::accounts::{self, IdempotentResult};
use crate::store::{Change, Prepared, WriteCtx, delivery, index};

use super::conversations::{gate, load_view, not_found};

impl Service {
    /// Applies `cmd` to conversation `id` as `p`; answers with the conversation after it and
    /// whether it changed (`false`: it already was as asked, and nothing was written).
    pub(super) async fn command_keyed(
        &self,
        p: &Principal,
        id: Uuid,
        cmd: Command,
        key: Option<String>,
    ) -> Result<(Conversation, bool)> {
        super::team::conversation_id(id)?;
        if key.is_none()
            && let Some(done) = self.command_prepared(p, id, cmd.clone()).await?
        {
            return Ok(done);
        }
        // Keyed, or changed under the preparation (nothing was stored): the writer decides.
        self.command_in_writer(p, id, cmd, key).await
    }

    /// `None`: the conversation changed while the command was prepared; nothing was stored.
    async fn command_prepared(
        &self,
        p: &Principal,
        id: Uuid,
        cmd: Command,
    ) -> Result<Option<(Conversation, bool)>> {
        let now = self.now();
        let by_user = p.user.clone();
        let user = p.user.clone();
        let change = move |d: &mut automerge::AutoCommit,
                           before: &Conversation,
                           view: &mut Conversation,
                           ident: &crate::store::Identity| {
            let by = Author {
                org: ident.org_id.clone(),
                user: by_user,
            };
            let applied = commands::apply_to(d, view, &cmd, &by, now)
                .map_err(ServiceError::from)
                .and_then(|o| {
                    if o == Outcome::Changed {
                        // The same gate as a partner's changes pass, on what will be stored.
                        gate(ident, now)
                            .admit(Some(before), view, &Authority::Org(by.org.clone()))
                            .map_err(DomainError::from)?;
                    }
                    Ok(o)
                });
            match applied {
                Err(e) => Change::Refused(e),
                Ok(Outcome::Unchanged) => Change::Unchanged,
                Ok(Outcome::Changed) => Change::Changed,
            }
        };
        let write = move |ctx: &mut WriteCtx<'_>,
                          before: &Conversation,
                          after: &Conversation,
                          heads: &[automerge::ChangeHash]|
              -> Result<u64> {
            let me = ctx.identity()?.org_id.clone();
            let seq =
                index::index_view(ctx.tx(), &me, Some(before), after, heads, Some(&user), now)?;
            delivery::mark(ctx.tx(), id.as_u128())?;
            Ok(seq)
        };
        let r = self.store.change_prepared(id, change, write).await;
        match self.contain_damage(r).await? {
            None => Err(not_found(id)),
            Some(Prepared::Stale) => Ok(None),
            Some(Prepared::Unchanged(view)) => Ok(Some((view, false))),
            Some(Prepared::Written(view, seq)) => {
                if seq > 0 {
                    self.notify(id, seq);
                }
                Ok(Some((view, seq > 0)))
            }
        }
    }

    /// The old way: the whole command inside one writer job.
    async fn command_in_writer(
        &self,
        p: &Principal,
        id: Uuid,
        mut cmd: Command,
        key: Option<String>,
    ) -> Result<(Conversation, bool)> {
        let user = p.user.clone();
        let now = self.now();
        let r = self
            .store
            .write(move |ctx| -> Result<_> {
                let me = ctx.identity()?.org_id.clone();
                if let (Some(k), Command::Reply { id: mid, .. }) = (&key, &mut cmd)
                    && let Some(prev) = accounts::get_idempotent(ctx.read_tx(), &user, k)?
                {
                    if prev.conversation != id {
                        return Err(DomainError::Conflict(
                            "this Idempotency-Key was used for another conversation".into(),
                        )
                        .into());
                    }
                    *mid = prev.message.unwrap_or(*mid);
                }
                let ident = ctx.identity()?.clone();
                let mut view = load_view(ctx, id)?;
                let before = view.clone();
                let by = Author {
                    org: me,
                    user: user.clone(),
                };
                let d = ctx.doc_mut(id.as_u128())?.ok_or_else(|| not_found(id))?;
                let applied = commands::apply_to(d, &mut view, &cmd, &by, now)
                    .map_err(ServiceError::from)
                    .and_then(|o| {
                        if o == Outcome::Changed {
                            // The same gate as a partner's changes pass, on what will be stored.
                            gate(&ident, now)
                                .admit(Some(&before), &view, &Authority::Org(by.org.clone()))
                                .map_err(DomainError::from)?;
                        }
                        Ok(o)
                    });
                match applied {
                    Err(e) => {
                        // Nothing is stored yet; drop the uncommitted operations.
                        d.rollback();
                        Err(e)
                    }
                    Ok(Outcome::Unchanged) => Ok((view, 0)),
                    Ok(Outcome::Changed) => {
                        ctx.save_doc(id.as_u128())?;
                        // The command changed the view as it changed the document: no re-read.
                        ctx.set_view(id.as_u128(), &view);
                        let seq = index::reindex_view(ctx, Some(&before), &view, Some(&user), now)?;
                        delivery::mark(ctx.tx(), id.as_u128())?;
                        let out = (view, seq);
                        if let (Some(k), Command::Reply { id: mid, .. }) = (&key, &cmd) {
                            let r = IdempotentResult {
                                conversation: id,
                                message: Some(*mid),
                            };
                            accounts::put_idempotent(ctx.tx(), &user, k, &r)?;
                        }
                        Ok(out)
                    }
                }
            })
            .await;
        let (view, seq) = self.contain_damage(r).await?;
        if seq > 0 {
            self.notify(id, seq);
        }
        Ok((view, seq > 0))
    }
}
