//! The webhook sender.

use std::sync::Arc;

use super::config::WebhookConfig;
use crate::service::Service;

pub async fn run(svc: Arc<Service>, _cfg: WebhookConfig) {
    let mut closing = svc.closing();
    let _ = closing.wait_for(|c| *c).await;
}
