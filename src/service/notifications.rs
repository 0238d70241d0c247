//! A user's email address and notification preferences; `parley email test`.

use std::collections::BTreeMap;

use crate::domain::DomainError;
use crate::domain::notify::{Mode, NotifyKind, Prefs, UserNotify, check_email};
use crate::store::accounts;

use super::{Principal, Result, Service, ServiceError, UserKind};

/// What a user is sent, as the settings page and the API show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    pub user: String,
    pub email: Option<String>,
    /// Every kind with its effective mode (the default where the user chose nothing).
    pub modes: Vec<(NotifyKind, Mode)>,
}

/// A change to a user's settings: `email` `None` keeps the address, `Some("")` removes it;
/// each listed kind gets its mode, the others keep theirs.
#[derive(Debug, Clone, Default)]
pub struct NotifyUpdate {
    pub email: Option<String>,
    pub modes: BTreeMap<String, String>,
}

fn settings(name: &str, n: &UserNotify) -> NotifySettings {
    NotifySettings {
        user: name.to_string(),
        email: n.email.clone(),
        modes: NotifyKind::ALL
            .iter()
            .map(|k| (*k, n.prefs.mode(*k)))
            .collect(),
    }
}

fn not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(format!(
        "no user {name:?} on this node; `GET /api/v1/users` lists them"
    ))
}

/// An update as checked: the new address (`Some(None)` removes it) and the modes to set.
type Parsed = (Option<Option<String>>, Vec<(NotifyKind, Mode)>);

/// Checks the whole update before anything is stored.
fn parse(u: &NotifyUpdate, cfg: &crate::notify::config::EmailConfig) -> Result<Parsed> {
    let email = match u.email.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(e) => {
            let e = check_email(e)?;
            crate::notify::check_address(&e).map_err(|why| DomainError::invalid("email", why))?;
            if !cfg.domain_allowed(&e) {
                return Err(DomainError::invalid(
                    "email",
                    format!(
                        "{e} is not at a domain this node mails to ({}); use an address there, or ask an admin to add the domain to allowed_domains in [email]",
                        cfg.allowed_domains.join(", ")
                    ),
                )
                .into());
            }
            Some(Some(e))
        }
    };
    let mut modes = Vec::new();
    for (k, m) in &u.modes {
        let kind = NotifyKind::parse(k).ok_or_else(|| {
            DomainError::invalid(
                "preferences",
                format!(
                    "{k:?} is not a notification kind; use one of {}",
                    NotifyKind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let mode = Mode::parse(m).ok_or_else(|| {
            DomainError::invalid(
                "preferences",
                format!("{m:?} for {k} is not a mode; use immediate, digest or never"),
            )
        })?;
        modes.push((kind, mode));
    }
    Ok((email, modes))
}

impl Service {
    /// The settings of `user` (`None`: the caller's own). Another user's need an admin.
    pub async fn notify_settings(
        &self,
        p: &Principal,
        user: Option<&str>,
    ) -> Result<NotifySettings> {
        let name = match user {
            Some(u) if u != p.user => {
                p.require_admin()?;
                u.to_string()
            }
            _ => p.user.clone(),
        };
        let n = name.clone();
        let u = self
            .store
            .read(move |tx| accounts::get_user(tx, &n))
            .await?
            .ok_or_else(|| not_found(&name))?;
        Ok(settings(&u.name, &u.notify))
    }

    /// Changes the settings of `user` (`None`: the caller's own); all of it or none.
    pub async fn set_notify_settings(
        &self,
        p: &Principal,
        user: Option<&str>,
        update: NotifyUpdate,
    ) -> Result<NotifySettings> {
        let name = match user {
            Some(u) if u != p.user => {
                p.require_admin()?;
                u.to_string()
            }
            _ => p.user.clone(),
        };
        let (email, modes) = parse(&update, &self.email_config())?;
        self.store
            .write(move |ctx| -> Result<NotifySettings> {
                let mut u = accounts::get_user_w(ctx.read_tx(), &name)?.ok_or_else(|| not_found(&name))?;
                if u.kind == UserKind::Integration && matches!(email, Some(Some(_))) {
                    return Err(DomainError::Unprocessable(format!(
                        "{name} is an integration, which gets no mail; add a webhook for it instead (POST /api/v1/webhooks)"
                    ))
                    .into());
                }
                if let Some(e) = email {
                    u.notify.email = e;
                }
                let mut prefs: Prefs = u.notify.prefs.clone();
                for (k, m) in modes {
                    // A kind set to its default is stored as "no choice", so that a later
                    // change of the default reaches this user too.
                    if m == k.default_mode() {
                        prefs.0.remove(&k);
                    } else {
                        prefs.0.insert(k, m);
                    }
                }
                u.notify.prefs = prefs;
                accounts::put_user(ctx.tx(), &u)?;
                Ok(settings(&u.name, &u.notify))
            })
            .await
    }
}
