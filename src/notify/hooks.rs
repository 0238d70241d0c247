//! The webhook sender: works off `HOOK_QUEUE` (see `store::outbox`).
//!
//! Invariants:
//! - Per endpoint and conversation, deliveries go in the order queued: a delivery waits while
//!   an earlier one of the same conversation for the same endpoint is still pending (being
//!   sent, or waiting for its retry). Test events belong to no conversation and wait for none.
//! - The queue is read in pages on the blocking pool, and the store's writer is used only to
//!   record an outcome, never while a request is open: a slow receiver cannot slow a write.
//! - At most [`PARALLEL`] requests at once, each within the configured time limit.
//! - An attempt whose outcome was not recorded (a crash, a shutdown) is made again with the
//!   same `webhook-id`: delivery is at least once.

use crate::metrics::Channel;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::addr::{self, Policy};
use super::attempt::{self, Outcome};
use super::config::WebhookConfig;
use super::sign;
use crate::domain::hooks::{Delivery, Endpoint};
use crate::service::Service;
use crate::store::{StoreError, hook_queue, outbox};

/// Deliveries sent at once.
pub const PARALLEL: usize = 8;
/// Rows read per page of the queue.
const PAGE: usize = 256;
/// The longest the sender sleeps without looking at the queue.
const IDLE: Duration = Duration::from_secs(5);
/// The shortest time between two reads of the queue: a storm of commits is read in batches.
const COALESCE: Duration = Duration::from_millis(10);
/// Rows a read of the queue may cover per second of waiting before the next commit-triggered
/// read: a long queue (a dead receiver's retries) is read less often, so it cannot keep the
/// blocking pool busy during a storm of writes, while a short one is read at once.
const ROWS_PER_SEC: f64 = 20_000.0;
/// The most of a receiver's answer kept in the log.
const DETAIL_BYTES: usize = 200;

/// Deliveries of one conversation to one endpoint, which go one at a time, in order.
type Lane = (u128, u128);

fn lane(d: &Delivery) -> Option<Lane> {
    d.conversation.map(|c| (d.endpoint.as_u128(), c.as_u128()))
}

/// What one read of the queue found.
#[derive(Default)]
struct Plan {
    due: Vec<(u128, Delivery, Endpoint)>,
    /// Waiting for an endpoint that is disabled (to be failed, with why) or removed (`None`:
    /// to be dropped).
    orphans: Vec<(u128, Delivery, Option<String>)>,
    /// Removed endpoints with nothing left waiting: their tombstone goes.
    forget: Vec<u128>,
    /// Until the earliest waiting retry, if sooner than [`IDLE`].
    wake: Option<Duration>,
    /// Rows read.
    rows: usize,
}

pub async fn run(svc: Arc<Service>, cfg: WebhookConfig) {
    let mut closing = svc.closing();
    let mut watch = svc.outbox_watch();
    let cap = cfg.max_pending;
    if let Err(e) = svc
        .store()
        .write(move |ctx| outbox::set_max_pending(ctx.tx(), cap))
        .await
    {
        tracing::warn!(error = %e, "could not store webhooks.max_pending");
    }
    let client = match addr::client(&cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook deliveries are off: the HTTP client cannot be built");
            let _ = closing.wait_for(|c| *c).await;
            return;
        }
    };
    let policy = Policy::of(&cfg);
    let cfg = Arc::new(cfg);
    let mut tasks: JoinSet<(u128, Option<Lane>)> = JoinSet::new();
    let mut busy: HashSet<u128> = HashSet::new();
    let mut busy_lanes: HashSet<Lane> = HashSet::new();
    let mut last_rows = 0usize;
    loop {
        if *closing.borrow() {
            break;
        }
        let mut wake = IDLE;
        if tasks.len() < PARALLEL {
            let (b, bl) = (busy.clone(), busy_lanes.clone());
            let free = PARALLEL - tasks.len();
            let now = svc.clock().now();
            let s = svc.clone();
            let plan = s.store().read(move |tx| plan(tx, &b, &bl, free, now)).await;
            match plan {
                Ok(p) => {
                    last_rows = p.rows;
                    wake = p.wake.map_or(IDLE, |w| w.min(IDLE));
                    if !p.orphans.is_empty() {
                        fail_orphans(&svc, p.orphans).await;
                        wake = Duration::ZERO;
                    }
                    if !p.forget.is_empty() {
                        let f = p.forget;
                        let _ = svc
                            .store()
                            .write(move |ctx| -> Result<(), StoreError> {
                                for ep in &f {
                                    hook_queue::forget_removed(ctx.tx(), *ep)?;
                                }
                                Ok(())
                            })
                            .await;
                    }
                    for (key, d, ep) in p.due {
                        let l = lane(&d);
                        busy.insert(key);
                        if let Some(l) = l {
                            busy_lanes.insert(l);
                        }
                        let (svc, client, cfg) = (svc.clone(), client.clone(), cfg.clone());
                        tasks.spawn(async move {
                            deliver(&svc, &client, policy, &cfg, key, d, ep).await;
                            (key, l)
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the webhook queue"),
            }
        }
        tokio::select! {
            r = closing.changed() => if r.is_err() { break },
            _ = watch.changed() => {
                let spread = Duration::from_secs_f64(last_rows as f64 / ROWS_PER_SEC).min(IDLE);
                tokio::time::sleep(spread.max(COALESCE)).await;
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok((key, l)) = done {
                    busy.remove(&key);
                    if let Some(l) = l {
                        busy_lanes.remove(&l);
                    }
                }
            }
            _ = tokio::time::sleep(wake) => {}
        }
        // A panicked task left its key behind; its row is read again next round, which is
        // what must happen (at least once), so forget keys no task holds any more.
        if tasks.is_empty() {
            busy.clear();
            busy_lanes.clear();
        }
    }
    // Attempts still open are dropped; their outcome was not recorded, so they are made
    // again after the restart, with the same `webhook-id`.
    tasks.shutdown().await;
}

/// Picks up to `free` deliveries that may go now: the due ones among the first of each lane
/// (`store::hook_queue`), so a dead receiver's long queue is never read whole.
fn plan(
    tx: &redb::ReadTransaction,
    busy: &HashSet<u128>,
    busy_lanes: &HashSet<Lane>,
    free: usize,
    now: DateTime<Utc>,
) -> Result<Plan, StoreError> {
    let endpoints: std::collections::HashMap<u128, Endpoint> = outbox::list_endpoints(tx)?
        .into_iter()
        .map(|e| (e.id.as_u128(), e))
        .collect();
    let mut p = Plan::default();
    let now_ms = now.timestamp_millis();
    let (keys, next) = hook_queue::due(tx, now_ms, free + busy.len() + PAGE)?;
    p.rows = keys.len();
    if let Some(n) = next {
        p.wake = Some(Duration::from_millis((n - now_ms).max(0) as u64));
    }
    for (key, d) in outbox::deliveries_by_key(tx, &keys)? {
        if busy.contains(&key) || lane(&d).is_some_and(|l| busy_lanes.contains(&l)) {
            continue;
        }
        let ep = match endpoints.get(&d.endpoint.as_u128()) {
            Some(ep) if ep.disabled.is_none() => ep,
            Some(ep) => {
                if p.orphans.len() < PAGE {
                    let why = ep.disabled.as_ref().map(|x| x.reason.clone());
                    p.orphans.push((
                        key,
                        d,
                        Some(format!(
                            "the endpoint is disabled: {}",
                            why.unwrap_or_default()
                        )),
                    ));
                }
                continue;
            }
            None => {
                // The endpoint was removed: its rows go, a batch per round.
                if p.orphans.len() < PAGE {
                    p.orphans.push((key, d, None));
                }
                continue;
            }
        };
        if p.due.len() < free {
            p.due.push((key, d, ep.clone()));
        }
    }
    // What waits for a disabled or removed endpoint is failed or dropped whatever its due
    // time, a batch per round.
    for ep in endpoints.values().filter(|e| e.disabled.is_some()) {
        if p.orphans.len() >= PAGE {
            break;
        }
        let why = format!(
            "the endpoint is disabled: {}",
            ep.disabled
                .as_ref()
                .map(|x| x.reason.as_str())
                .unwrap_or("")
        );
        let keys = hook_queue::keys_of_endpoint(tx, ep.id.as_u128(), PAGE - p.orphans.len())?;
        for (key, d) in outbox::deliveries_by_key(tx, &keys)? {
            if !busy.contains(&key) && !p.orphans.iter().any(|(k, _, _)| *k == key) {
                p.orphans.push((key, d, Some(why.clone())));
            }
        }
    }
    for ep in hook_queue::removed(tx)? {
        if p.orphans.len() >= PAGE {
            break;
        }
        let keys = hook_queue::keys_of_endpoint(tx, ep, PAGE - p.orphans.len())?;
        if keys.is_empty() {
            p.forget.push(ep);
        }
        for (key, d) in outbox::deliveries_by_key(tx, &keys)? {
            if !busy.contains(&key) && !p.orphans.iter().any(|(k, _, _)| *k == key) {
                p.orphans.push((key, d, None));
            }
        }
    }
    Ok(p)
}

async fn fail_orphans(svc: &Service, rows: Vec<(u128, Delivery, Option<String>)>) {
    let r = svc
        .store()
        .write(move |ctx| {
            let tx = ctx.tx();
            for (key, mut d, why) in rows {
                match why {
                    None => outbox::drop_delivery(tx, key)?,
                    Some(why) => {
                        d.status = "failed".into();
                        d.last_error = Some(why);
                        outbox::update_delivery(tx, key, &d)?;
                    }
                }
            }
            Ok::<_, StoreError>(())
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot fail the deliveries of a disabled webhook");
    }
}

/// One attempt and its record.
async fn deliver(
    svc: &Service,
    client: &reqwest::Client,
    policy: Policy,
    cfg: &Arc<WebhookConfig>,
    key: u128,
    d: Delivery,
    ep: Endpoint,
) {
    let started = svc.clock().now();
    let out = send(client, policy, cfg.timeout, &ep, &d, started).await;
    match &out {
        Outcome::Delivered(_) => svc.metrics().notify.sent(Channel::Webhook),
        o => {
            svc.metrics().notify.failed(Channel::Webhook);
            tracing::info!(endpoint = %ep.id, msg_id = %d.msg_id, outcome = ?o, "webhook attempt failed")
        }
    }
    let now = svc.clock().now();
    let jitter = getrandom::u32()
        .map(|n| n as f64 / u32::MAX as f64)
        .unwrap_or(0.5);
    let cfg = cfg.clone();
    let id = ep.id;
    let r = svc
        .store()
        .write(move |ctx| {
            // The endpoint as it is now: another attempt may have changed its failure run.
            let Some(cur) = outbox::get_endpoint_w(ctx.read_tx(), id)? else {
                return Ok(());
            };
            let a = attempt::apply(d, cur, out, &cfg, now, jitter);
            let tx = ctx.tx();
            outbox::update_delivery(tx, key, &a.delivery)?;
            if let Some(ep) = &a.endpoint {
                outbox::put_endpoint(tx, ep)?;
            }
            if let Some(why) = &a.disabled {
                // What waits for it is failed by the sender in small batches (orphans), not
                // here: a long queue must not hold the writer in one transaction.
                tracing::warn!(endpoint = %id, reason = %why, "webhook endpoint disabled");
            }
            Ok::<_, StoreError>(())
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot record a webhook attempt; it is made again");
    }
}

/// Sends one delivery: a POST of the payload fixed at queue time, signed for this attempt.
async fn send(
    client: &reqwest::Client,
    policy: Policy,
    timeout: Duration,
    ep: &Endpoint,
    d: &Delivery,
    now: DateTime<Utc>,
) -> Outcome {
    let failed = |error: String| Outcome::Failed {
        status: None,
        error,
        retry_after: None,
    };
    let url = match reqwest::Url::parse(&ep.url) {
        Ok(u) => u,
        Err(e) => {
            return failed(format!(
                "the endpoint's URL does not parse ({e}); update it"
            ));
        }
    };
    // reqwest's resolver never sees an address written in the URL: check it here.
    if let Err(e) = addr::check_literal(&url, policy) {
        return failed(e);
    }
    // The receiver checks this against its own clock: the wall clock, whatever the node's
    // clock for scheduling says.
    let ts = Utc::now().timestamp();
    let signature = sign::header(&ep.secrets, &d.msg_id, ts, &d.payload, now);
    let req = client
        .post(url)
        .header("webhook-id", &d.msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(d.payload.clone());
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return failed(format!("no answer within {} s", timeout.as_secs()));
        }
        // Without the URL: a token in its query must not reach the log or the delivery log.
        Err(e) => {
            return failed(format!(
                "cannot reach the receiver: {}",
                crate::http_client::error_chain(&e.without_url())
            ));
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut detail = Vec::new();
    if !resp.status().is_success() {
        // A little of the answer helps the admin; the rest is not read.
        while detail.len() < DETAIL_BYTES {
            match resp.chunk().await {
                Ok(Some(c)) => detail.extend_from_slice(&c),
                _ => break,
            }
        }
    }
    let text: String = String::from_utf8_lossy(&detail)
        .chars()
        .filter(|c| !c.is_control())
        .take(DETAIL_BYTES)
        .collect();
    attempt::of_status(status, retry_after, text.trim())
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
