//! Telling people and systems: the senders that work off the outbox (`store::outbox`).
//!
//! Rows are queued in the write transaction of the change that causes them; the senders
//! here only read them, send, and record the outcome in a later transaction. Delivery is at
//! least once, and a retry carries the same `Message-ID` / `webhook-id`. Every send has a
//! time limit, and no sender holds the store's writer while it talks to the network, so a
//! slow or dead SMTP server or receiver never slows a write.

pub mod addr;
mod attempt;
mod compose;
pub mod config;
mod hooks;
mod mail;
pub mod sign;
mod sweep;

use std::sync::Arc;

use crate::service::Service;

pub use mail::{MailError, check_address, send_test};

/// Starts the senders; they stop when the service begins to shut down.
pub fn start(svc: Arc<Service>) {
    let hooks_cfg = svc.webhook_config();
    tokio::spawn(hooks::run(svc.clone(), hooks_cfg));
    let email = svc.email_config();
    tokio::spawn(mail::run(svc.clone(), email.clone()));
    tokio::spawn(sweep::run(svc, email));
}

/// Runs the reminder and digest sweep once, now (tests move a manual clock, then call this).
pub async fn sweep_now(svc: &Arc<Service>) -> Result<(), MailError> {
    sweep::sweep_now(svc, &svc.email_config()).await
}

/// Completes when the service begins to shut down.
pub(crate) async fn closed(rx: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; it must not live across an await.
    let _ = rx.wait_for(|c| *c).await;
}
