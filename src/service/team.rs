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

/// Only a conversation whose id is an RFC 4122 UUID has a team document: the team id drops
/// the variant bits, so any other id would share one with a real conversation.
fn teamable(id: Uuid) -> Result<()> {
    conversation_id(id)?;
    if !team::is_conversation_id(id.as_u128()) {
        return Err(DomainError::Unprocessable(format!(
            "conversation {id} has an id that is not an RFC 4122 UUID, so it cannot carry notes or an assignee"
        ))
        .into());
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
        Ok(self.assign_outcome(p, id, to).await?.0)
    }

    /// [`Service::assign`], saying whether anything changed (for bulk results).
    pub async fn assign_changed(
        &self,
        p: &Principal,
        id: Uuid,
        to: Option<String>,
    ) -> Result<bool> {
        Ok(self.assign_outcome(p, id, to).await?.1)
    }

    async fn assign_outcome(
        &self,
        p: &Principal,
        id: Uuid,
        to: Option<String>,
    ) -> Result<(Team, bool)> {
        teamable(id)?;
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
                if let Some(u) = &to {
                    let person = accounts::get_user_w(ctx.read_tx(), u)?
                        .is_some_and(|r| r.kind == crate::store::accounts::UserKind::Person);
                    if !person {
                        return Err(DomainError::Unprocessable(format!(
                            "{u} is not a person of this node; assign the conversation to one of GET /api/v1/colleagues"
                        ))
                        .into());
                    }
                }
                let before = store_team::load_w(ctx, id)?;
                if before.assignee == to {
                    return Ok((before, 0));
                }
                let d = store_team::doc_for(ctx, id)?;
                team::set_assignee(d, to.as_deref(), &by, now).map_err(|e| team_corrupt(id, e))?;
                Ok(store_team::commit(ctx, id, &before, &by)?)
            })
            .await?;
        if seq > 0 {
            self.notify(id, seq);
        }
        Ok((t, seq > 0))
    }

    /// Writes an internal note on conversation `id`.
    pub async fn add_note(&self, p: &Principal, id: Uuid, body: String) -> Result<Note> {
        teamable(id)?;
        team::check_note_body(&body)?;
        // Whole milliseconds: what the document keeps, so the answer is what is stored.
        let now = self.now();
        let at = chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        let note = Note {
            id: new_id(),
            author: p.user.clone(),
            body,
            created_at: at,
            edited_at: None,
        };
        let n = note.clone();
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
                Ok(store_team::commit(ctx, id, &before, &n.author)?.1)
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
        teamable(id)?;
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
                let (after, seq) = store_team::commit(ctx, id, &before, &user)?;
                Ok((after.notes.into_iter().find(|n| n.id == note), seq))
            })
            .await?;
        self.notify(id, seq);
        Ok(out)
    }
}

/// A user of our org as colleagues see them: for assigning and for showing who wrote what.
#[derive(Debug, Clone)]
pub struct Colleague {
    pub name: String,
    pub display_name: Option<String>,
}

/// A display name: 1 to 100 characters of one line, no control or direction characters.
fn check_display_name(s: &str) -> Result<()> {
    crate::domain::check_text("display_name", s, 100, true)?;
    Ok(())
}

impl Service {
    /// Every person of this node (not integrations): whom a conversation can be assigned to.
    pub async fn colleagues(&self) -> Result<Vec<Colleague>> {
        let users = self.store.read(accounts::list_users).await?;
        Ok(users
            .into_iter()
            .filter(|u| u.kind == crate::store::accounts::UserKind::Person)
            .map(|u| Colleague {
                name: u.name,
                display_name: u.display_name,
            })
            .collect())
    }

    /// Sets (or with `None` removes) the display name of `user`: one's own, or anyone's for
    /// an admin.
    pub async fn set_display_name(
        &self,
        p: &Principal,
        user: &str,
        name: Option<String>,
    ) -> Result<Colleague> {
        if user != p.user {
            p.require_admin()?;
        }
        let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(n) = &name {
            check_display_name(n)?;
        }
        let user = user.to_string();
        self.store
            .write(move |ctx| -> Result<Colleague> {
                let mut u = accounts::get_user_w(ctx.read_tx(), &user)?
                    .ok_or_else(|| ServiceError::NotFound(format!("user {user} not found")))?;
                u.display_name = name;
                accounts::put_user(ctx.tx(), &u)?;
                Ok(Colleague {
                    name: u.name,
                    display_name: u.display_name,
                })
            })
            .await
    }

    /// How many conversations each folder lists for `p`, as the folder's own page counts
    /// them (so a folder's count and its list never disagree): `inbox`, `unread`, `tasks`,
    /// `action`, `resolved`, `all`, `mine` (open and assigned to `p`) and `unassigned` (open).
    pub async fn folder_counts(&self, p: &Principal) -> Result<Vec<(&'static str, u64)>> {
        use crate::domain::Facet;
        use crate::domain::summary::Folder;
        let mut out = Vec::new();
        let folders: [(&'static str, Folder, Option<Facet>); 8] = [
            ("inbox", Folder::Inbox, None),
            ("unread", Folder::Unread, None),
            ("tasks", Folder::Tasks, None),
            ("action", Folder::Action, None),
            ("resolved", Folder::Resolved, None),
            ("all", Folder::All, None),
            ("mine", Folder::Inbox, Some(Facet::Assignee(p.user.clone()))),
            ("unassigned", Folder::Inbox, Some(Facet::Unassigned)),
        ];
        for (name, folder, extra) in folders {
            let f = super::InboxFilter {
                filters: extra.into_iter().collect(),
                limit: 1,
                ..Default::default()
            };
            let view = super::InboxView {
                folder: Some(folder),
                sort: Default::default(),
            };
            out.push((name, self.inbox_view(p, f, view).await?.total));
        }
        Ok(out)
    }
}
