//! Browser sign-in: sessions for the web UI, with a CSRF token each, behind the sign-in brake
//! (`brake.rs`), and the credential checks that keep live channels honest.

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::*;
use crate::store::sessions::SessionRecord;
use crate::store::{accounts, sessions};

/// How long a sign-in lasts.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::days(7);

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn random_secret(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    )
}

/// What a request signed in with, kept by live channels (event streams) to check it again
/// when credentials change, and at a session's expiry.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API token's secret.
    Token(String),
    /// A browser session's cookie value.
    Session(String),
}

/// A new sign-in: the cookie value (shown once) and its record.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    /// The device mark for the browser to keep (see the module doc).
    pub device: String,
    pub record: SessionRecord,
    pub principal: Principal,
}

impl Service {
    /// Sets how long a failed sign-in counts against its user name and address.
    pub fn set_signin_window(&self, window: Duration) {
        self.logins.set_window(window);
    }

    /// Signs a user in with a password. A wrong name and a wrong password fail alike. An
    /// attempt the brake does not admit fails at once, before any password hashing, with the
    /// time to wait (see the module doc); `device` is the mark of an earlier sign-in.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        from: Option<IpAddr>,
        device: Option<&str>,
    ) -> Result<NewSession> {
        let name = truncate(name, 65);
        let attempt =
            self.logins
                .admit(name, from, device)
                .map_err(|wait| ServiceError::SignInSlowed {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                })?;
        if name.len() > 64 || password.len() > 1024 {
            attempt.failed();
            return Err(ServiceError::LoginFailed);
        }
        let Some(principal) = self.verify_password(name, password).await? else {
            attempt.failed();
            return Err(ServiceError::LoginFailed);
        };
        attempt.succeeded();
        let id = random_secret("ps_");
        let now = self.now();
        let record = SessionRecord {
            user: principal.user.clone(),
            csrf: random_secret(""),
            created_at: now,
            expires_at: now + SESSION_TTL,
        };
        let (h, r) = (hash(&id), record.clone());
        self.store
            .write(move |ctx| -> Result<_> {
                sessions::purge_expired(ctx.tx(), now)?;
                sessions::put(ctx.tx(), &h, &r)?;
                Ok(())
            })
            .await?;
        Ok(NewSession {
            id,
            device: self.logins.device_mark(&principal.user),
            record,
            principal,
        })
    }

    /// The signed-in user of a session cookie, if it is current and the user still exists.
    pub async fn session(&self, id: &str) -> Result<Option<(Principal, SessionRecord)>> {
        if !id.starts_with("ps_") || id.len() > 200 {
            return Ok(None);
        }
        let h = hash(id);
        let now = self.now();
        self.store
            .read(move |tx| -> Result<_> {
                let Some(s) = sessions::get(tx, &h)? else {
                    return Ok(None);
                };
                if s.expires_at <= now {
                    return Ok(None);
                }
                let Some(u) = accounts::get_user(tx, &s.user)? else {
                    return Ok(None);
                };
                Ok(Some((
                    Principal {
                        user: u.name,
                        admin: u.admin,
                    },
                    s,
                )))
            })
            .await
    }

    /// Ends a session; ending one that is already gone is not an error. Live channels opened
    /// with it end too.
    pub async fn logout(&self, id: &str) -> Result<()> {
        let h = hash(id);
        self.store
            .write(move |ctx| -> Result<_> {
                sessions::remove(ctx.tx(), &h)?;
                Ok(())
            })
            .await?;
        self.credentials_changed();
        Ok(())
    }

    /// Tells live channels that some credential may have stopped working.
    pub(crate) fn credentials_changed(&self) {
        self.credentials.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever a credential may have stopped working: a live channel holding one
    /// checks it again with [`Service::still_valid`] and closes if it is gone.
    pub fn watch_credentials(&self) -> tokio::sync::watch::Receiver<u64> {
        self.credentials.subscribe()
    }

    /// Whether the credential a live channel was opened with still signs its user in.
    pub async fn still_valid(&self, c: &Credential) -> Result<bool> {
        Ok(match c {
            Credential::Token(t) => match self.authenticate(t).await {
                Ok(_) => true,
                Err(ServiceError::Unauthenticated) => false,
                Err(e) => return Err(e),
            },
            Credential::Session(id) => self.session(id).await?.is_some(),
        })
    }
}

/// At most `max` bytes of `s`, cut at a character boundary: names longer than any user name
/// are all counted under one key, so they cannot be used to make endless keys.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
