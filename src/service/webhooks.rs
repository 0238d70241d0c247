//! Webhook endpoints, managed by admins: create (the URL checked against the outbound
//! address rules now; every delivery is checked again as it connects), update, delete, the
//! test event, secret rotation with an overlap, re-enabling, the delivery log.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{Principal, Result, Service, ServiceError};
use crate::domain::DomainError;
use crate::domain::hooks::{EVENT_TYPES, Endpoint, Secret, TEST_EVENT};
use crate::notify::{addr, sign};
use crate::store::outbox;

pub use crate::domain::hooks::{Delivery, Disabled};

/// How long resolving a URL's host may take when it is checked.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest description.
const MAX_DESCRIPTION: usize = 500;
/// The most deliveries a log answer lists.
pub const MAX_LOG: usize = outbox::LOG_KEEP;

/// An endpoint as admins see it: never its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub disabled: Option<Disabled>,
    pub failing_since: Option<DateTime<Utc>>,
    /// Deliveries waiting.
    pub pending: u64,
}

impl Webhook {
    fn of(e: Endpoint, pending: u64) -> Webhook {
        Webhook {
            id: e.id,
            url: e.url,
            events: e.events,
            description: e.description,
            created_at: e.created_at,
            created_by: e.created_by,
            disabled: e.disabled,
            failing_since: e.failing_since,
            pending,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

/// A new secret, shown once.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub secret: String,
    /// Until when the previous secret still signs beside it.
    pub previous_expires_at: Option<DateTime<Utc>>,
}

fn not_found(id: Uuid) -> ServiceError {
    ServiceError::NotFound(format!(
        "webhook {id} not found; `GET /api/v1/webhooks` lists them"
    ))
}

/// Event types: at least one, each known, none twice.
pub fn check_events(events: &[String]) -> Result<()> {
    if events.is_empty() {
        return Err(DomainError::invalid(
            "events",
            format!("name at least one event type: {}", EVENT_TYPES.join(", ")),
        )
        .into());
    }
    let mut seen = HashSet::new();
    for e in events {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(DomainError::invalid(
                "events",
                format!(
                    "{e:?} is not an event type; use any of {}",
                    EVENT_TYPES.join(", ")
                ),
            )
            .into());
        }
        if !seen.insert(e) {
            return Err(DomainError::invalid(
                "events",
                format!("{e:?} is named twice; name it once"),
            )
            .into());
        }
    }
    Ok(())
}

fn check_description(d: &Option<String>) -> Result<Option<String>> {
    let d = d
        .as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if d.as_ref()
        .is_some_and(|s| s.chars().count() > MAX_DESCRIPTION)
    {
        return Err(DomainError::invalid(
            "description",
            format!("use at most {MAX_DESCRIPTION} characters"),
        )
        .into());
    }
    Ok(d)
}

impl Service {
    /// A URL's form and, as it resolves now, its addresses against the `[webhooks]` rules.
    async fn check_hook_url(&self, url: &str) -> Result<()> {
        let policy = addr::Policy::of(&self.webhook_config());
        addr::check_url(url, policy, RESOLVE_TIMEOUT)
            .await
            .map_err(|e| DomainError::invalid("url", e).into())
    }

    async fn webhook_info(&self, id: Uuid) -> Result<Webhook> {
        self.store
            .read(move |tx| -> Result<_> {
                let ep = outbox::get_endpoint(tx, id)?.ok_or_else(|| not_found(id))?;
                let n = outbox::pending_count(tx, id)?;
                Ok(Webhook::of(ep, n))
            })
            .await
    }

    pub async fn webhooks(&self, p: &Principal) -> Result<Vec<Webhook>> {
        p.require_admin()?;
        self.store
            .read(move |tx| -> Result<_> {
                let mut out = Vec::new();
                for ep in outbox::list_endpoints(tx)? {
                    let n = outbox::pending_count(tx, ep.id)?;
                    out.push(Webhook::of(ep, n));
                }
                Ok(out)
            })
            .await
    }

    pub async fn webhook(&self, p: &Principal, id: Uuid) -> Result<Webhook> {
        p.require_admin()?;
        self.webhook_info(id).await
    }

    /// Creates an endpoint; answers it with its secret, which is not shown again.
    pub async fn add_webhook(
        &self,
        p: &Principal,
        url: &str,
        events: Vec<String>,
        description: Option<String>,
    ) -> Result<(Webhook, String)> {
        p.require_admin()?;
        let description = check_description(&description)?;
        check_events(&events)?;
        self.check_hook_url(url).await?;
        let now = self.now();
        let secret = sign::new_secret();
        let ep = Endpoint {
            id: Uuid::now_v7(),
            url: url.to_string(),
            events,
            description,
            secrets: vec![Secret {
                secret: secret.clone(),
                created_at: now,
                expires_at: None,
            }],
            created_at: now,
            created_by: p.user.clone(),
            disabled: None,
            failing_since: None,
        };
        let stored = ep.clone();
        self.store
            .write(move |ctx| -> Result<_> { Ok(outbox::put_endpoint(ctx.tx(), &stored)?) })
            .await?;
        Ok((Webhook::of(ep, 0), secret))
    }

    pub async fn update_webhook(
        &self,
        p: &Principal,
        id: Uuid,
        change: WebhookChange,
    ) -> Result<Webhook> {
        p.require_admin()?;
        if let Some(e) = &change.events {
            check_events(e)?;
        }
        let description = match &change.description {
            Some(_) => Some(check_description(&change.description)?),
            None => None,
        };
        if let Some(u) = &change.url {
            self.check_hook_url(u).await?;
        }
        self.store
            .write(move |ctx| -> Result<_> {
                let mut ep =
                    outbox::get_endpoint_w(ctx.read_tx(), id)?.ok_or_else(|| not_found(id))?;
                if let Some(u) = change.url {
                    ep.url = u;
                }
                if let Some(e) = change.events {
                    ep.events = e;
                }
                if let Some(d) = description {
                    ep.description = d;
                }
                Ok(outbox::put_endpoint(ctx.tx(), &ep)?)
            })
            .await?;
        self.webhook_info(id).await
    }

    /// Removes an endpoint, what waits for it and its log.
    pub async fn remove_webhook(&self, p: &Principal, id: Uuid) -> Result<()> {
        p.require_admin()?;
        self.store
            .write(move |ctx| -> Result<_> {
                if outbox::get_endpoint_w(ctx.read_tx(), id)?.is_none() {
                    return Err(not_found(id));
                }
                outbox::remove_endpoint(ctx.tx(), id)?;
                Ok(())
            })
            .await
    }

    /// Queues a `webhook.test` delivery now; answers its `msg_id`.
    pub async fn test_webhook(&self, p: &Principal, id: Uuid) -> Result<String> {
        p.require_admin()?;
        let now = self.now();
        let body = serde_json::json!({
            "type": TEST_EVENT,
            "timestamp": now,
            "data": {"webhook_id": id, "requested_by": p.user},
        });
        let msg_id = self
            .store
            .write(move |ctx| -> Result<_> {
                let ep = outbox::get_endpoint_w(ctx.read_tx(), id)?.ok_or_else(|| not_found(id))?;
                if let Some(d) = &ep.disabled {
                    return Err(DomainError::Conflict(format!(
                        "the endpoint is disabled ({}); enable it first",
                        d.reason
                    ))
                    .into());
                }
                outbox::try_queue_delivery(ctx.tx(), &ep, TEST_EVENT, None, &body, now)?
                    .ok_or_else(|| {
                        DomainError::Conflict(
                            "too many deliveries are waiting for this endpoint; it is disabled now: fix the receiver, then enable it".into(),
                        )
                        .into()
                    })
            })
            .await?;
        self.outbox_changed();
        Ok(msg_id)
    }

    /// A new secret signs from now on; the previous one beside it until the overlap ends.
    /// Secrets already expired are dropped.
    pub async fn rotate_webhook(&self, p: &Principal, id: Uuid) -> Result<Rotated> {
        p.require_admin()?;
        let now = self.now();
        let overlap =
            TimeDelta::from_std(self.webhook_config().rotate_overlap).unwrap_or(TimeDelta::days(1));
        let secret = sign::new_secret();
        let new = secret.clone();
        let previous_expires_at = self
            .store
            .write(move |ctx| -> Result<_> {
                let mut ep =
                    outbox::get_endpoint_w(ctx.read_tx(), id)?.ok_or_else(|| not_found(id))?;
                let until = now + overlap;
                let mut old = sign::live(&ep.secrets, now);
                for s in &mut old {
                    // An older overlap that ends sooner keeps its end.
                    s.expires_at = Some(s.expires_at.map_or(until, |e| e.min(until)));
                }
                let previous = old.first().and_then(|s| s.expires_at);
                ep.secrets = std::iter::once(Secret {
                    secret: new,
                    created_at: now,
                    expires_at: None,
                })
                .chain(old)
                .collect();
                outbox::put_endpoint(ctx.tx(), &ep)?;
                Ok(previous)
            })
            .await?;
        Ok(Rotated {
            secret,
            previous_expires_at,
        })
    }

    /// Takes a disabled endpoint back into service, its run of failures forgotten.
    pub async fn enable_webhook(&self, p: &Principal, id: Uuid) -> Result<Webhook> {
        p.require_admin()?;
        self.store
            .write(move |ctx| -> Result<_> {
                let mut ep =
                    outbox::get_endpoint_w(ctx.read_tx(), id)?.ok_or_else(|| not_found(id))?;
                ep.disabled = None;
                ep.failing_since = None;
                Ok(outbox::put_endpoint(ctx.tx(), &ep)?)
            })
            .await?;
        self.webhook_info(id).await
    }

    /// The endpoint's deliveries, newest first: waiting ones, then its log.
    pub async fn webhook_deliveries(
        &self,
        p: &Principal,
        id: Uuid,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        p.require_admin()?;
        let limit = limit.clamp(1, MAX_LOG);
        self.store
            .read(move |tx| -> Result<_> {
                if outbox::get_endpoint(tx, id)?.is_none() {
                    return Err(not_found(id));
                }
                Ok(outbox::deliveries(tx, id, limit)?)
            })
            .await
    }
}
