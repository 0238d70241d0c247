//! Team use-cases: assigning a conversation to a user of our org, and internal notes. Both
//! live in the conversation's team document (`domain::team`), which only sites of our own org
//! ever receive; nothing here touches the shared conversation document.

use uuid::Uuid;

use super::*;
use crate::domain::team::{self, Note, Team};
use crate::domain::{DomainError, new_id, validate_user_name};
use crate::store::{accounts, index, team as store_team};

/// Conversation ids of the team-document class name no conversation.
pub(super) fn conversation_id(id: Uuid) -> Result<()> {
    if team::is_team_id(id.as_u128()) {
        return Err(super::conversations::not_found(id));
    }
    Ok(())
}

fn team_corrupt(id: Uuid, e: team::TeamDocError) -> ServiceError {
    ServiceError::Store(StoreError::Corrupt(id, format!("its team document: {e}")))
}

/// A note edit or deletion by someone who did not write it.
fn not_author(note: &Note) -> ServiceError {
    DomainError::Forbidden(format!(
        "only {} can change or delete this note; write a note of your own instead",
        note.author
    ))
    .into()
}

fn find_note(t: &Team, note: Uuid) -> Result<&Note> {
    t.notes.iter().find(|n| n.id == note).ok_or_else(|| {
        ServiceError::NotFound(format!("note {note} not found on this conversation"))
    })
}

impl Service {
    /// The team view of a conversation: its assignee and internal notes.
    pub async fn team(&self, id: Uuid) -> Result<Team> {
        conversation_id(id)?;
        self.store
            .read(move |tx| -> Result<Team> {
                if !index::is_listed_read(tx, id.as_u128())? {
                    return Err(super::conversations::not_found(id));
                }
                Ok(store_team::load(tx, id)?)
            })
            .await
    }

    /// Assigns conversation `id` to `to` (a user of this node), or to nobody.
    pub async fn assign(&self, p: &Principal, id: Uuid, to: Option<String>) -> Result<Team> {
        conversation_id(id)?;
        if let Some(u) = &to {
            validate_user_name(u)
                .map_err(|_| DomainError::invalid("assignee", "is not a user name"))?;
        }
        let by = p.user.clone();
        let now = self.now();
        let (t, seq) = self
            .store
            .write(move |ctx| -> Result<(Team, u64)> {
                if !index::is_listed(ctx.read_tx(), id.as_u128())? {
                    return Err(super::conversations::not_found(id));
                }
                if let Some(u) = &to
                    && accounts::get_user_w(ctx.read_tx(), u)?.is_none()
                {
                    return Err(DomainError::Unprocessable(format!(
                        "{u} is not a user of this node; assign the conversation to one of GET /api/v1/users"
                    ))
                    .into());
                }
                let before = store_team::load_w(ctx, id)?;
                if before.assignee == to {
                    return Ok((before, 0));
                }
                let d = store_team::doc_for(ctx, id)?;
                team::set_assignee(d, to.as_deref(), &by, now).map_err(|e| team_corrupt(id, e))?;
                Ok(store_team::commit(ctx, id, &before, &by, now)?)
            })
            .await?;
        if seq > 0 {
            self.notify(id, seq);
        }
        Ok(t)
    }

    /// Writes an internal note on conversation `id`.
    pub async fn add_note(&self, p: &Principal, id: Uuid, body: String) -> Result<Note> {
        conversation_id(id)?;
        team::check_note_body(&body)?;
        let note = Note {
            id: new_id(),
            author: p.user.clone(),
            body,
            created_at: self.now(),
            edited_at: None,
        };
        let n = note.clone();
        let now = self.now();
        let seq = self
            .store
            .write(move |ctx| -> Result<u64> {
                if !index::is_listed(ctx.read_tx(), id.as_u128())? {
                    return Err(super::conversations::not_found(id));
                }
                let before = store_team::load_w(ctx, id)?;
                if before.notes.len() >= team::MAX_NOTES {
                    return Err(DomainError::Unprocessable(format!(
                        "this conversation has {} notes, the most it may have; edit or delete one",
                        team::MAX_NOTES
                    ))
                    .into());
                }
                let d = store_team::doc_for(ctx, id)?;
                team::put_note(d, &n).map_err(|e| team_corrupt(id, e))?;
                Ok(store_team::commit(ctx, id, &before, &n.author, now)?.1)
            })
            .await?;
        self.notify(id, seq);
        Ok(note)
    }

    /// Changes the body of a note (its author only); `None` deletes it.
    pub async fn change_note(
        &self,
        p: &Principal,
        id: Uuid,
        note: Uuid,
        body: Option<String>,
    ) -> Result<Option<Note>> {
        conversation_id(id)?;
        if let Some(b) = &body {
            team::check_note_body(b)?;
        }
        let user = p.user.clone();
        let now = self.now();
        let (out, seq) = self
            .store
            .write(move |ctx| -> Result<(Option<Note>, u64)> {
                if !index::is_listed(ctx.read_tx(), id.as_u128())? {
                    return Err(super::conversations::not_found(id));
                }
                let before = store_team::load_w(ctx, id)?;
                let n = find_note(&before, note)?;
                if n.author != user {
                    return Err(not_author(n));
                }
                let d = store_team::doc_for(ctx, id)?;
                match &body {
                    Some(b) => team::edit_note(d, note, b, now),
                    None => team::delete_note(d, note),
                }
                .map_err(|e| team_corrupt(id, e))?;
                let (after, seq) = store_team::commit(ctx, id, &before, &user, now)?;
                Ok((after.notes.into_iter().find(|n| n.id == note), seq))
            })
            .await?;
        self.notify(id, seq);
        Ok(out)
    }
}
