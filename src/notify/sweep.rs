//! The timed side of notifications: due-soon and overdue reminders, and the daily digest at
//! the configured local time.

use std::sync::Arc;

use chrono::{Datelike, Local};
use uuid::Uuid;

use super::compose;
use super::config::EmailConfig;
use super::mail::{self, MailError};
use crate::service::Service;
use crate::store::outbox;
use crate::store::reminders;

pub async fn run(svc: Arc<Service>, cfg: EmailConfig) {
    let mut closing = svc.closing();
    loop {
        if let Err(e) = sweep_now(&svc, &cfg).await {
            tracing::warn!(error = %e, "reminders and digests will be tried again shortly");
        }
        tokio::select! {
            // Reminders go out within `sweep` of becoming due; the digest within it of its time.
            _ = tokio::time::sleep(cfg.sweep) => {}
            _ = super::closed(&mut closing) => return,
        }
    }
}

/// One sweep at the service clock's now: reminders that became due, and the digest if its
/// time of day has come and it did not go out today yet.
pub async fn sweep_now(svc: &Arc<Service>, cfg: &EmailConfig) -> Result<(), MailError> {
    let now = svc.clock().now();
    let local = now.with_timezone(&Local);
    let today = local.date_naive();
    let soon = reminders::add_working_days(today, cfg.due_soon_working_days);
    let n = svc
        .store()
        .write(move |ctx| reminders::sweep(ctx.tx(), today, soon, now))
        .await?;
    if n > 0 {
        tracing::info!(tasks = n, "due-date reminders queued");
        svc.outbox_changed();
    }
    let day = today.num_days_from_ce();
    if local.time() >= cfg.digest_time {
        let last = svc.store().read(outbox::digest_day).await?;
        if last.is_none_or(|l| l < day) {
            digest(svc, cfg, now, day).await?;
        }
    }
    Ok(())
}

async fn digest(
    svc: &Arc<Service>,
    cfg: &EmailConfig,
    now: chrono::DateTime<chrono::Utc>,
    day: i32,
) -> Result<(), MailError> {
    let users = svc.store().read(outbox::digest_items).await?;
    let ui = mail::ui_url(cfg, svc);
    let mut sent = 0;
    for (user, rows) in users {
        let mut ids: Vec<Uuid> = rows.iter().map(|(_, i)| i.conversation).collect();
        ids.sort();
        ids.dedup();
        let u = user.clone();
        let loaded = svc.store().read(move |tx| mail::load(tx, &u, &ids)).await?;
        let keys: Vec<u128> = rows.iter().map(|(k, _)| *k).collect();
        let m = loaded.as_ref().and_then(|l| {
            let to = l.email.as_deref()?;
            cfg.smtp.as_ref()?;
            let ctx = l.context(ui.as_deref(), now);
            let infos = l.group(&rows, |_| true);
            (!infos.is_empty()).then(|| compose::digest_mail(&ctx, &user, to, infos))
        });
        sent += usize::from(m.is_some());
        let u = user.clone();
        svc.store()
            .write(move |ctx| outbox::fold_digest(ctx.tx(), &u, &keys, m.as_ref()))
            .await?;
    }
    svc.store()
        .write(move |ctx| outbox::set_digest_day(ctx.tx(), day))
        .await?;
    if sent > 0 {
        tracing::info!(users = sent, "daily digests queued");
        svc.outbox_changed();
    }
    Ok(())
}
