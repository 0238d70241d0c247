//! `/me/notifications` and `/users/{name}/notifications`: where and about what a user is
//! mailed.

use std::collections::BTreeMap;
use std::sync::Arc;

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::Tags;
use super::auth::BearerAuth;
use super::error::ApiError;
use crate::service::{NotifySettings, NotifyUpdate, Service};

pub struct NotificationsApi {
    pub svc: Arc<Service>,
}

/// One kind of notification and how this user gets it.
#[derive(Debug, Object)]
pub struct KindSetting {
    /// `new_conversation`, `partner_replied`, `task_assigned`, `task_progress`,
    /// `state_changed`, `due_soon`, `overdue` or `colleague_activity`.
    pub kind: String,
    /// What the settings page calls it.
    pub label: String,
    /// `immediate`, `digest` (the daily digest) or `never`.
    pub mode: String,
    /// The mode a user who chose nothing gets.
    pub default: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Notifications {
    pub user: String,
    /// Where mail goes; absent: nothing is mailed.
    pub email: Option<String>,
    /// Each kind's mode, as `{kind: mode}`.
    pub preferences: BTreeMap<String, String>,
    /// Every kind with its label and default, for a settings form.
    pub kinds: Vec<KindSetting>,
}

#[derive(Debug, Object)]
pub struct NotificationsUpdate {
    /// The address to mail; `""` removes it; absent keeps it.
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    /// `{kind: mode}` for the kinds to change; the others keep their mode.
    pub preferences: Option<BTreeMap<String, String>>,
}

impl From<NotifySettings> for Notifications {
    fn from(s: NotifySettings) -> Self {
        Notifications {
            user: s.user,
            email: s.email,
            preferences: s
                .modes
                .iter()
                .map(|(k, m)| (k.as_str().to_string(), m.as_str().to_string()))
                .collect(),
            kinds: s
                .modes
                .iter()
                .map(|(k, m)| KindSetting {
                    kind: k.as_str().into(),
                    label: k.label().into(),
                    mode: m.as_str().into(),
                    default: k.default_mode().as_str().into(),
                })
                .collect(),
        }
    }
}

fn update(b: NotificationsUpdate) -> NotifyUpdate {
    NotifyUpdate {
        email: b.email,
        modes: b.preferences.unwrap_or_default(),
    }
}

type R<T> = Result<T, ApiError>;

#[OpenApi(tag = "Tags::Admin")]
impl NotificationsApi {
    /// My email address and notification preferences
    #[oai(
        path = "/me/notifications",
        method = "get",
        operation_id = "myNotifications"
    )]
    async fn mine(&self, auth: BearerAuth) -> R<Json<Notifications>> {
        Ok(Json(self.svc.notify_settings(&auth.0, None).await?.into()))
    }

    /// Change my email address or notification preferences
    #[oai(
        path = "/me/notifications",
        method = "put",
        operation_id = "setMyNotifications"
    )]
    async fn set_mine(
        &self,
        auth: BearerAuth,
        body: Json<NotificationsUpdate>,
    ) -> R<Json<Notifications>> {
        let s = self
            .svc
            .set_notify_settings(&auth.0, None, update(body.0))
            .await?;
        Ok(Json(s.into()))
    }

    /// A user's email address and notification preferences (admin, or the user)
    #[oai(
        path = "/users/:name/notifications",
        method = "get",
        operation_id = "userNotifications"
    )]
    async fn user(&self, auth: BearerAuth, name: Path<String>) -> R<Json<Notifications>> {
        Ok(Json(
            self.svc
                .notify_settings(&auth.0, Some(&name.0))
                .await?
                .into(),
        ))
    }

    /// Change a user's email address or notification preferences (admin, or the user)
    #[oai(
        path = "/users/:name/notifications",
        method = "put",
        operation_id = "setUserNotifications"
    )]
    async fn set_user(
        &self,
        auth: BearerAuth,
        name: Path<String>,
        body: Json<NotificationsUpdate>,
    ) -> R<Json<Notifications>> {
        let s = self
            .svc
            .set_notify_settings(&auth.0, Some(&name.0), update(body.0))
            .await?;
        Ok(Json(s.into()))
    }
}
