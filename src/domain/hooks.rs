//! Webhook endpoints and what they are sent: event types, the endpoint record and the JSON
//! payload of each event. Pure; `store::outbox` queues deliveries, `notify::hooks` sends them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::activity::{Activity, What};
use super::{Conversation, OrgId};

/// Every event type an endpoint can ask for.
pub const EVENT_TYPES: &[&str] = &[
    "conversation.created",
    "message.created",
    "conversation.resolved",
    "conversation.reopened",
    "conversation.updated",
    "task.progress_changed",
    "task.due_date_changed",
    "task.due_soon",
    "task.overdue",
];

/// Sent by "send test event"; every endpoint takes it, whatever it subscribed to.
pub const TEST_EVENT: &str = "webhook.test";

/// A message body longer than this is cut in a payload (the spec asks for payloads of a few
/// KB); `body_truncated` says so, and the full text is one API call away.
pub const BODY_CHARS: usize = 8 * 1024;

/// One signing secret: `whsec_` + base64 of 32 random bytes. After a rotation the old secret
/// keeps signing beside the new one until `expires_at`, so a receiver can switch over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub secret: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why an endpoint no longer gets deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub at: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    /// Event types from [`EVENT_TYPES`]; every delivery of another type skips this endpoint.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// Newest first.
    pub secrets: Vec<Secret>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub disabled: Option<Disabled>,
    /// When the current run of failed attempts began; cleared by any success.
    pub failing_since: Option<DateTime<Utc>>,
}

impl Endpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        self.disabled.is_none()
            && (event_type == TEST_EVENT || self.events.iter().any(|e| e == event_type))
    }
}

/// One queued delivery: the same `msg_id` (the `webhook-id` header) on every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub msg_id: String,
    pub endpoint: Uuid,
    pub event_type: String,
    /// `None` for the test event.
    pub conversation: Option<Uuid>,
    /// The JSON body, fixed when queued: a retry sends the same bytes.
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// `pending`, `delivered`, `failed` (retries exhausted or the endpoint said 410).
    pub status: String,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// The `webhook-id` of a delivery: `msg_` and the delivery's id, `[a-zA-Z0-9_]` only.
pub fn msg_id(delivery: Uuid) -> String {
    format!("msg_{}", delivery.simple())
}

/// The payload of one activity: `{type, timestamp, data}` as the spec lays out. The data
/// holds the conversation as both orgs see it and nothing of our org alone.
pub fn payload(me: &OrgId, conv: &Conversation, a: &Activity, now: DateTime<Utc>) -> Value {
    let mut data = json!({
        "conversation_id": conv.id,
        "kind": conv.kind.as_str(),
        "subject": conv.subject,
        "reference_id": conv.reference_id,
        "topic": conv.topic.as_ref().map(|t| json!({"kind": t.kind.as_str(), "ref": t.reference})),
        "partner": conv.participants.other(me).as_str(),
        "state": conv.state.as_str(),
        "progress": conv.progress.map(|p| p.as_str()),
        "due_date": conv.due_date,
        "by": {"org": a.by.org.as_str(), "user": a.by.user},
        "at": a.at,
    });
    let msg = match &a.what {
        What::Created => conv.messages.first(),
        What::Message { id } => conv.messages.iter().find(|m| m.id == *id),
        _ => None,
    };
    if let Some(m) = msg {
        let cut: String = m.body.chars().take(BODY_CHARS).collect();
        data["message"] = json!({
            "id": m.id,
            "body_truncated": cut.len() < m.body.len(),
            "body": cut,
        });
    }
    match &a.what {
        What::Progress { from, to } => {
            data["progress_from"] = json!(from.map(|p| p.as_str()));
            data["progress_to"] = json!(to.map(|p| p.as_str()));
        }
        What::DueDate { from, to } => {
            data["due_date_from"] = json!(from);
            data["due_date_to"] = json!(to);
        }
        What::Updated { field } => data["field"] = json!(field),
        _ => {}
    }
    json!({"type": a.what.event_type(), "timestamp": now, "data": data})
}

/// The payload of a reminder (`task.due_soon`, `task.overdue`).
pub fn reminder_payload(
    me: &OrgId,
    conv: &Conversation,
    event_type: &str,
    now: DateTime<Utc>,
) -> Value {
    json!({"type": event_type, "timestamp": now, "data": {
        "conversation_id": conv.id,
        "kind": conv.kind.as_str(),
        "subject": conv.subject,
        "reference_id": conv.reference_id,
        "partner": conv.participants.other(me).as_str(),
        "state": conv.state.as_str(),
        "progress": conv.progress.map(|p| p.as_str()),
        "due_date": conv.due_date,
    }})
}
