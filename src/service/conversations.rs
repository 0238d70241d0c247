//! Conversation use-cases. Each write runs inside one store job: it reads the current document,
//! checks the rules, changes the document and its indexes, and is answered after the commit.

use std::collections::HashSet;

use automerge::AutoCommit;
use chrono::NaiveDate;
use uuid::Uuid;

use super::*;
use crate::domain::commands::{self, Command, NewConversation};
use crate::domain::policy::{Authority, Gate};
use crate::domain::{Author, Conversation, Kind, OrgId, Topic, doc, limits, new_id};
use crate::store::accounts::{self, IdempotentResult};
use crate::store::{WriteCtx, delivery, docs, index};

pub(super) fn gate(me: &crate::store::Identity, now: chrono::DateTime<chrono::Utc>) -> Gate<'_> {
    Gate {
        me: &me.org_id,
        my_role: me.role,
        now,
    }
}

/// A create request, as the API received it.
#[derive(Debug, Clone)]
pub struct CreateInput {
    pub id: Option<Uuid>,
    pub kind: Kind,
    pub partner: String,
    pub subject: String,
    pub topic: Option<Topic>,
    pub reference_id: Option<String>,
    pub due_date: Option<NaiveDate>,
    pub body: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A conversation with what its detail view adds: delivery and crossed changes.
#[derive(Debug, Clone)]
pub struct Detail {
    pub conversation: Conversation,
    /// Changed here, and no node of the partner org holds it as it is here yet.
    pub undelivered: bool,
    /// Messages of this org whose change the partner's nodes do not hold yet.
    pub undelivered_messages: HashSet<Uuid>,
    pub conflicts: Vec<doc::conflicts::Conflict>,
    /// Our org's own: the assignee and internal notes (never the partner's to see).
    pub team: crate::domain::team::Team,
    /// The team document did not verify: `team` is empty, and says nothing.
    pub team_damaged: bool,
    /// Where each attached file (by SHA-256 hex) stands here.
    pub files: std::collections::HashMap<String, super::FileState>,
}

fn check_key(key: &Option<String>) -> Result<()> {
    if let Some(k) = key
        && (k.is_empty() || k.len() > limits::IDEMPOTENCY_KEY_CHARS)
    {
        return Err(DomainError::invalid(
            "Idempotency-Key",
            format!("must be 1-{} characters", limits::IDEMPOTENCY_KEY_CHARS),
        )
        .into());
    }
    Ok(())
}

pub(super) fn load_view(ctx: &mut WriteCtx<'_>, id: Uuid) -> Result<Conversation> {
    ctx.view(id.as_u128())?.ok_or_else(|| not_found(id))
}

pub(super) fn not_found(id: Uuid) -> ServiceError {
    ServiceError::NotFound(format!("conversation {id} not found"))
}

impl Service {
    /// Starts a conversation. A retried request (same `id` or `Idempotency-Key`) returns the
    /// conversation the first one made, with `false` for "not newly created".
    pub async fn create(&self, p: &Principal, input: CreateInput) -> Result<(Conversation, bool)> {
        self.create_with_files(p, input, &[]).await
    }

    /// [`Service::create`] with files on the first message, named by SHA-256 (each uploaded
    /// here first).
    pub async fn create_with_files(
        &self,
        p: &Principal,
        input: CreateInput,
        files: &[String],
    ) -> Result<(Conversation, bool)> {
        check_key(&input.idempotency_key)?;
        let attachments = self.attachments_for(&p.user, files).await?;
        if input
            .id
            .is_some_and(|i| !crate::domain::team::is_conversation_id(i.as_u128()))
        {
            return Err(DomainError::invalid(
                "id",
                "must be an RFC 4122 UUID (variant bits 10, e.g. version 4 or 7); other variants are kept for this node's own records",
            )
            .into());
        }
        let partner = OrgId::parse(&input.partner)?;
        let user = p.user.clone();
        let now = self.now();
        let (view, created, seq) = self
            .store
            .write(move |ctx| -> Result<_> {
                let me = ctx.identity()?.clone();
                if let Some(key) = &input.idempotency_key
                    && let Some(prev) = accounts::get_idempotent(ctx.read_tx(), &user, key)?
                {
                    return Ok((load_view(ctx, prev.conversation)?, false, 0));
                }
                let id = input.id.unwrap_or_else(new_id);
                if let Some(existing) = ctx.doc_mut(id.as_u128())? {
                    let v = doc::read(existing).map_err(|e| corrupt(id, e))?;
                    let same = v.kind == input.kind && v.subject == input.subject.trim() && v.participants.includes(&partner);
                    if !same {
                        return Err(DomainError::Conflict(format!("conversation id {id} is already used by another conversation")).into());
                    }
                    return Ok((v, false, 0));
                }
                let partner_rec = accounts::get_partner_w(ctx.read_tx(), &partner)?.ok_or_else(|| {
                    DomainError::Unprocessable(format!("{partner} is not a partner of this node; add it first with POST /api/v1/partners"))
                })?;
                let n = NewConversation {
                    id,
                    kind: input.kind,
                    subject: input.subject,
                    topic: input.topic,
                    reference_id: input.reference_id,
                    due_date: input.due_date,
                    body: input.body,
                    attachments,
                    message_id: new_id(),
                };
                let by = Author { org: me.org_id.clone(), user: user.clone() };
                let conv = commands::new_conversation(n, by, me.role, &partner, partner_rec.role, now)?;
                // The same gate as a partner's changes pass; `commands` gave the friendly error.
                gate(&me, now).admit(None, &conv, &Authority::Org(me.org_id.clone())).map_err(DomainError::from)?;
                let mut d = AutoCommit::new().with_actor(me.actor());
                doc::create(&mut d, &conv).map_err(|e| corrupt(id, e))?;
                // A topic nobody described yet gets a record, so it shows in list views.
                let topic_record = match &conv.topic {
                    Some(t) if crate::store::topics::get_w(ctx.read_tx(), t.kind, t.reference.trim())?.is_none() => {
                        Some(crate::domain::topics::record_for_topic(t, now))
                    }
                    _ => None,
                };
                ctx.insert_doc(id.as_u128(), d)?;
                ctx.set_view(id.as_u128(), &conv);
                if let Some(r) = &topic_record {
                    crate::store::topics::put(ctx.tx(), r)?;
                }
                let seq = index::reindex_view(ctx, None, &conv, Some(&user), now)?;
                delivery::mark(ctx.tx(), id.as_u128())?;
                let view = conv;
                if let Some(key) = &input.idempotency_key {
                    accounts::put_idempotent(ctx.tx(), &user, key, &IdempotentResult { conversation: id, message: None })?;
                }
                Ok((view, true, seq))
            })
            .await?;
        if created {
            self.notify(view.id, seq);
        }
        Ok((view, created))
    }

    /// Applies a command to an existing conversation; answers with the conversation after it.
    pub async fn command(&self, p: &Principal, id: Uuid, cmd: Command) -> Result<Conversation> {
        Ok(self.command_keyed(p, id, cmd, None).await?.0)
    }

    /// [`Service::command`], also saying whether the command changed the conversation
    /// (`false`: it already was as asked, and nothing was written).
    pub async fn command_outcome(
        &self,
        p: &Principal,
        id: Uuid,
        cmd: Command,
    ) -> Result<(Conversation, bool)> {
        self.command_keyed(p, id, cmd, None).await
    }

    /// Replies to a conversation. `message_id` or `idempotency_key` make a retry harmless.
    pub async fn reply(
        &self,
        p: &Principal,
        id: Uuid,
        body: String,
        message_id: Option<Uuid>,
        idempotency_key: Option<String>,
    ) -> Result<Conversation> {
        self.reply_with_files(p, id, body, &[], message_id, idempotency_key)
            .await
    }

    /// [`Service::reply`] with files, named by SHA-256 (each uploaded here first).
    pub async fn reply_with_files(
        &self,
        p: &Principal,
        id: Uuid,
        body: String,
        files: &[String],
        message_id: Option<Uuid>,
        idempotency_key: Option<String>,
    ) -> Result<Conversation> {
        check_key(&idempotency_key)?;
        let attachments = self.attachments_for(&p.user, files).await?;
        let cmd = Command::Reply {
            id: message_id.unwrap_or_else(new_id),
            body,
            attachments,
        };
        Ok(self.command_keyed(p, id, cmd, idempotency_key).await?.0)
    }

    pub async fn get(&self, _p: &Principal, id: Uuid) -> Result<Conversation> {
        super::team::conversation_id(id)?;
        let r = self
            .store
            .read(move |tx| -> Result<_> {
                let d = docs::load_read(tx, id.as_u128())?.ok_or_else(|| not_found(id))?;
                doc::read(&d).map_err(|e| corrupt(id, e))
            })
            .await;
        self.contain_damage(r).await
    }

    /// One conversation as its detail view shows it: with what the partner's nodes do not
    /// hold yet and the fields whose changes crossed.
    pub async fn detail(&self, id: Uuid) -> Result<Detail> {
        super::team::conversation_id(id)?;
        let max_file = self.store.attachment_rules().max_bytes;
        let r = self
            .store
            .read(move |tx| -> Result<_> {
                let v = delivery::view(tx, id.as_u128())?.ok_or_else(|| not_found(id))?;
                let conversation = doc::read(&v.doc).map_err(|e| corrupt(id, e))?;
                let me = accounts::read_identity(tx)?.map(|i| i.org_id);
                let undelivered_messages = if v.undelivered {
                    let ours = conversation
                        .messages
                        .iter()
                        .filter(|m| Some(&m.author.org) == me.as_ref())
                        .map(|m| m.id)
                        .collect();
                    doc::delivery::undelivered_messages(&v.doc, &ours, &v.partner_nodes)
                        .map_err(|e| corrupt(id, e.into()))?
                } else {
                    Default::default()
                };
                let conflicts = doc::conflicts::read(&v.doc).map_err(|e| corrupt(id, e.into()))?;
                // A damaged team document costs its notes and assignee, not the conversation.
                let (team, team_damaged) = match crate::store::team::load(tx, id) {
                    Ok(t) => (t, false),
                    Err(e @ StoreError::Corrupt(..)) => {
                        tracing::error!(conversation = %id, error = %e, "showing a conversation without its damaged team document");
                        (Default::default(), true)
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut files = std::collections::HashMap::new();
                for a in conversation.messages.iter().flat_map(|m| &m.attachments) {
                    let Some(h) = crate::domain::attachment::parse_sha256(&a.sha256) else {
                        continue;
                    };
                    let state = match crate::store::blobs::meta(tx, &h)? {
                        Some(m) if m.complete => super::FileState::Present,
                        Some(m) if m.refused => super::FileState::Refused,
                        _ if a.size > max_file => super::FileState::TooLarge,
                        _ => super::FileState::Arriving,
                    };
                    files.insert(a.sha256.clone(), state);
                }
                Ok(Detail {
                    files,
                    conversation,
                    undelivered: v.undelivered,
                    undelivered_messages,
                    conflicts,
                    team,
                    team_damaged,
                })
            })
            .await;
        self.contain_damage(r).await
    }

    /// Which of `ids` are not yet delivered to the partner's node (one key lookup each).
    pub async fn undelivered_among(&self, ids: Vec<Uuid>) -> Result<HashSet<Uuid>> {
        Ok(self
            .store
            .read(move |tx| delivery::undelivered_among(tx, &ids))
            .await?)
    }

    /// A request met a damaged document: it answers with the damage, and the damaged records
    /// are rewritten so that their pages verify (the document stays damaged; see
    /// `Store::contain`).
    pub(super) async fn contain_damage<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(ServiceError::Store(StoreError::Corrupt(id, _))) = &r {
            self.store.contain(vec![id.as_u128()]).await;
        }
        r
    }

    pub fn today(&self) -> NaiveDate {
        self.clock.today()
    }
}
