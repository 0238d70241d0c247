//! `/webhooks` (admin): endpoints that get Standard Webhooks deliveries, their secrets, test
//! events and delivery logs. The payloads sent are documented as `WebhookEvent`.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::Tags;
use super::auth::BearerAuth;
use super::error::ApiError;
use crate::service::{Delivery, Service, Webhook, WebhookChange};

pub struct WebhooksApi {
    pub svc: Arc<Service>,
}

/// Why an endpoint gets no deliveries.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DisabledOut {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A webhook endpoint; its secret is shown only when created or rotated.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookOut {
    pub id: Uuid,
    pub url: String,
    /// The event types it gets (the test event always).
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// Set while the endpoint gets no deliveries; `POST …/enable` takes it back.
    pub disabled: Option<DisabledOut>,
    /// When its current run of failed attempts began.
    pub failing_since: Option<DateTime<Utc>>,
    /// Deliveries waiting.
    pub pending: u64,
}

impl From<Webhook> for WebhookOut {
    fn from(w: Webhook) -> Self {
        WebhookOut {
            id: w.id,
            url: w.url,
            events: w.events,
            description: w.description,
            created_at: w.created_at,
            created_by: w.created_by,
            disabled: w.disabled.map(|d| DisabledOut {
                at: d.at,
                reason: d.reason,
            }),
            failing_since: w.failing_since,
            pending: w.pending,
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookOut>,
}

/// A new endpoint, with its signing secret: store it now, it is not shown again.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreatedWebhookOut {
    #[oai(flatten)]
    pub webhook: WebhookOut,
    /// `whsec_` + base64: verify deliveries with it (any Standard Webhooks library).
    pub secret: String,
}

#[derive(Debug, Object)]
pub struct NewWebhook {
    /// `http://` or `https://`, at most 2000 characters, no user info, no fragment.
    #[oai(validator(max_length = 2000))]
    pub url: String,
    /// One or more of the event types (see `WebhookEvent`), each once.
    #[oai(validator(max_items = 32))]
    pub events: Vec<String>,
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
}

/// Fields to change; those left out stay.
#[derive(Debug, Object)]
pub struct WebhookPatch {
    #[oai(validator(max_length = 2000))]
    pub url: Option<String>,
    #[oai(validator(max_items = 32))]
    pub events: Option<Vec<String>>,
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TestOut {
    /// The `webhook-id` the test delivery is sent with.
    pub msg_id: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RotatedOut {
    /// The new secret, which signs from now on: store it now, it is not shown again.
    pub secret: String,
    /// Until when the previous secret signs beside it (both signatures are sent).
    pub previous_expires_at: Option<DateTime<Utc>>,
}

/// One delivery and its last attempt.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryOut {
    /// The `webhook-id`, the same on every attempt.
    pub msg_id: String,
    pub event_type: String,
    /// Null for the test event.
    pub conversation_id: Option<Uuid>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> Self {
        let pending = d.status == "pending";
        DeliveryOut {
            msg_id: d.msg_id,
            event_type: d.event_type,
            conversation_id: d.conversation,
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: d.created_at,
            last_attempt_at: d.last_attempt_at,
            next_attempt_at: pending.then_some(d.next_attempt_at),
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<DeliveryOut>,
}

/// What a delivery's body holds: `{type, timestamp, data}` (Standard Webhooks). Fields of
/// `data` that do not belong to an event type are left out.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookEvent {
    /// `conversation.created`, `message.created`, `conversation.resolved`,
    /// `conversation.reopened`, `conversation.updated`, `task.progress_changed`,
    /// `task.due_date_changed`, `task.due_soon`, `task.overdue`, or `webhook.test`.
    #[oai(rename = "type")]
    pub event_type: String,
    /// When the delivery was queued.
    pub timestamp: DateTime<Utc>,
    pub data: WebhookEventData,
}

/// The conversation as both orgs see it, and what happened.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookEventData {
    pub conversation_id: Uuid,
    /// `message` or `task`.
    pub kind: String,
    pub subject: String,
    pub reference_id: Option<String>,
    pub topic: Option<WebhookTopic>,
    /// The other org's id.
    pub partner: String,
    /// `open` or `resolved`.
    pub state: String,
    pub progress: Option<String>,
    pub due_date: Option<NaiveDate>,
    /// Who did it (absent for reminders).
    pub by: Option<WebhookActor>,
    /// When it happened (absent for reminders).
    pub at: Option<DateTime<Utc>>,
    /// With `conversation.created` and `message.created`.
    pub message: Option<WebhookMessage>,
    /// With `task.progress_changed`.
    pub progress_from: Option<String>,
    pub progress_to: Option<String>,
    /// With `task.due_date_changed`.
    pub due_date_from: Option<NaiveDate>,
    pub due_date_to: Option<NaiveDate>,
    /// With `conversation.updated`: which field changed.
    pub field: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookTopic {
    pub kind: String,
    #[oai(rename = "ref")]
    pub reference: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookActor {
    pub org: String,
    pub user: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookMessage {
    pub id: Uuid,
    /// At most 8 KiB of characters; the full text is `GET /conversations/{id}` away.
    pub body: String,
    pub body_truncated: bool,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Json<CreatedWebhookOut>),
}

#[derive(ApiResponse)]
pub enum Accepted {
    /// Queued; the delivery log shows how it went.
    #[oai(status = 202)]
    Accepted(Json<TestOut>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

type R<T> = Result<T, ApiError>;

#[OpenApi(tag = "Tags::Webhooks")]
impl WebhooksApi {
    /// Webhook endpoints (admin)
    #[oai(path = "/webhooks", method = "get", operation_id = "listWebhooks")]
    async fn list(&self, auth: BearerAuth) -> R<Json<WebhookList>> {
        let webhooks = self.svc.webhooks(&auth.0).await?;
        Ok(Json(WebhookList {
            webhooks: webhooks.into_iter().map(Into::into).collect(),
        }))
    }

    /// Add a webhook endpoint (admin); the answer holds its secret, shown once
    #[oai(path = "/webhooks", method = "post", operation_id = "addWebhook")]
    async fn add(&self, auth: BearerAuth, body: Json<NewWebhook>) -> R<Created> {
        let b = body.0;
        let (w, secret) = self
            .svc
            .add_webhook(&auth.0, &b.url, b.events, b.description)
            .await?;
        Ok(Created::Created(Json(CreatedWebhookOut {
            webhook: w.into(),
            secret,
        })))
    }

    /// An example of what deliveries carry (documentation of the payload)
    #[oai(
        path = "/webhooks/event-example",
        method = "get",
        operation_id = "webhookEventExample"
    )]
    async fn example(&self, auth: BearerAuth) -> R<Json<WebhookEvent>> {
        auth.0.require_admin()?;
        Ok(Json(example(self.svc.now())))
    }

    /// One webhook endpoint (admin)
    #[oai(path = "/webhooks/:id", method = "get", operation_id = "getWebhook")]
    async fn get(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Json<WebhookOut>> {
        Ok(Json(self.svc.webhook(&auth.0, id.0).await?.into()))
    }

    /// Change a webhook endpoint's URL, events or description (admin)
    #[oai(path = "/webhooks/:id", method = "put", operation_id = "updateWebhook")]
    async fn update(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<WebhookPatch>,
    ) -> R<Json<WebhookOut>> {
        let b = body.0;
        let change = WebhookChange {
            url: b.url,
            events: b.events,
            description: b.description,
        };
        Ok(Json(
            self.svc.update_webhook(&auth.0, id.0, change).await?.into(),
        ))
    }

    /// Remove a webhook endpoint with its waiting deliveries and log (admin)
    #[oai(
        path = "/webhooks/:id",
        method = "delete",
        operation_id = "removeWebhook"
    )]
    async fn remove(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Deleted> {
        self.svc.remove_webhook(&auth.0, id.0).await?;
        Ok(Deleted::Deleted)
    }

    /// Send a `webhook.test` event now (admin)
    #[oai(
        path = "/webhooks/:id/test",
        method = "post",
        operation_id = "testWebhook"
    )]
    async fn test(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Accepted> {
        let msg_id = self.svc.test_webhook(&auth.0, id.0).await?;
        Ok(Accepted::Accepted(Json(TestOut { msg_id })))
    }

    /// Give a webhook endpoint a new secret; the previous one signs beside it for a while (admin)
    #[oai(
        path = "/webhooks/:id/rotate",
        method = "post",
        operation_id = "rotateWebhookSecret"
    )]
    async fn rotate(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Json<RotatedOut>> {
        let r = self.svc.rotate_webhook(&auth.0, id.0).await?;
        Ok(Json(RotatedOut {
            secret: r.secret,
            previous_expires_at: r.previous_expires_at,
        }))
    }

    /// Take a disabled webhook endpoint back into service (admin)
    #[oai(
        path = "/webhooks/:id/enable",
        method = "post",
        operation_id = "enableWebhook"
    )]
    async fn enable(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Json<WebhookOut>> {
        Ok(Json(self.svc.enable_webhook(&auth.0, id.0).await?.into()))
    }

    /// A webhook endpoint's deliveries, newest first (admin)
    #[oai(
        path = "/webhooks/:id/deliveries",
        method = "get",
        operation_id = "webhookDeliveries"
    )]
    async fn deliveries(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        /// At most this many (1 to 200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
    ) -> R<Json<DeliveryList>> {
        let limit = limit.0.unwrap_or(50);
        if limit == 0 || limit as usize > crate::service::MAX_LOG {
            return Err(ApiError::bad_request(format!(
                "limit: give 1 to {}",
                crate::service::MAX_LOG
            )));
        }
        let d = self
            .svc
            .webhook_deliveries(&auth.0, id.0, limit as usize)
            .await?;
        Ok(Json(DeliveryList {
            deliveries: d.into_iter().map(Into::into).collect(),
        }))
    }
}

/// A `message.created` event as it is sent.
fn example(now: DateTime<Utc>) -> WebhookEvent {
    WebhookEvent {
        event_type: "message.created".into(),
        timestamp: now,
        data: WebhookEventData {
            conversation_id: Uuid::nil(),
            kind: "task".into(),
            subject: "Replace the damaged pallet".into(),
            reference_id: Some("RMA-1042".into()),
            topic: Some(WebhookTopic {
                kind: "order".into(),
                reference: "PO-77812".into(),
            }),
            partner: "bolt".into(),
            state: "open".into(),
            progress: Some("in_progress".into()),
            due_date: now.date_naive().succ_opt(),
            by: Some(WebhookActor {
                org: "bolt".into(),
                user: "kim".into(),
            }),
            at: Some(now),
            message: Some(WebhookMessage {
                id: Uuid::nil(),
                body: "The new pallet ships tomorrow.".into(),
                body_truncated: false,
            }),
            progress_from: None,
            progress_to: None,
            due_date_from: None,
            due_date_to: None,
            field: None,
        },
    }
}
