//! Telling people and systems: the senders that work off the outbox (`store::outbox`).
//!
//! Rows are queued in the write transaction of the change that causes them; the senders
//! here only read them, send, and record the outcome in a later transaction. Delivery is at
//! least once, and a retry carries the same `Message-ID` / `webhook-id`. Every send has a
//! time limit, and no sender holds the store's writer while it talks to the network, so a
//! slow or dead SMTP server or receiver never slows a write.

pub mod addr;
mod attempt;
pub mod config;
mod hooks;
pub mod sign;

use std::sync::Arc;

use crate::service::Service;

/// Starts the senders; they stop when the service begins to shut down.
pub fn start(svc: Arc<Service>) {
    let hooks_cfg = svc.webhook_config();
    tokio::spawn(hooks::run(svc.clone(), hooks_cfg));
}
