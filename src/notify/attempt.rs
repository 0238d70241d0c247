//! What one delivery attempt's outcome does to the delivery and its endpoint. Pure, so the
//! retry and disabling rules are tested without a network.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::config::WebhookConfig;
use crate::domain::hooks::{Delivery, Disabled, Endpoint};

/// The longest `Retry-After` honoured: a receiver cannot park a delivery for longer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx.
    Delivered(u16),
    /// 410 Gone: the receiver wants no more deliveries.
    Gone,
    /// Anything else: a status (with `Retry-After`, if it was a throttling answer), a
    /// timeout, a connection error, a refused address.
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

/// Sorts a response status into an outcome. `retry_after` is the header's seconds, if any;
/// it counts only for 429, 502, 503 and 504.
pub fn of_status(status: u16, retry_after: Option<u64>, detail: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered(status),
        410 => Outcome::Gone,
        _ => {
            let throttled = matches!(status, 429 | 502 | 503 | 504);
            let why = match status {
                300..=399 => " (redirects are not followed; give the final URL)",
                _ => "",
            };
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            };
            Outcome::Failed {
                status: Some(status),
                error: format!("the receiver answered HTTP {status}{why}{detail}"),
                retry_after: retry_after
                    .filter(|_| throttled)
                    .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER)),
            }
        }
    }
}

/// What to write back: the delivery as it now is, the endpoint if it changed, and whether
/// the endpoint's other waiting deliveries are to fail (it was disabled).
#[derive(Debug)]
pub struct Applied {
    pub delivery: Delivery,
    pub endpoint: Option<Endpoint>,
    pub disabled: Option<String>,
}

/// Applies `out` of the attempt made at `now`. `jitter` in [0, 1) spreads retries a little
/// (up to a tenth of the wait) so deliveries failed together do not retry together.
pub fn apply(
    mut d: Delivery,
    mut ep: Endpoint,
    out: Outcome,
    cfg: &WebhookConfig,
    now: DateTime<Utc>,
    jitter: f64,
) -> Applied {
    d.attempts += 1;
    d.last_attempt_at = Some(now);
    match out {
        Outcome::Delivered(code) => {
            d.status = "delivered".into();
            d.last_status_code = Some(code);
            d.last_error = None;
            let changed = ep.failing_since.take().is_some();
            Applied {
                delivery: d,
                endpoint: changed.then_some(ep),
                disabled: None,
            }
        }
        Outcome::Gone => {
            d.status = "failed".into();
            d.last_status_code = Some(410);
            let reason = format!(
                "the receiver answered 410 Gone at {}: it wants no more deliveries; enable the endpoint when it does",
                now.format("%Y-%m-%d %H:%M:%S UTC")
            );
            d.last_error = Some(reason.clone());
            ep.disabled = Some(Disabled {
                at: now,
                reason: reason.clone(),
            });
            Applied {
                delivery: d,
                endpoint: Some(ep),
                disabled: Some(reason),
            }
        }
        Outcome::Failed {
            status,
            error,
            retry_after,
        } => {
            d.last_status_code = status;
            d.last_error = Some(error.clone());
            let since = *ep.failing_since.get_or_insert(now);
            let failing_for = (now - since).to_std().unwrap_or_default();
            if failing_for > cfg.disable_after {
                let reason = format!(
                    "failing since {}: {error}; enable the endpoint once the receiver works again",
                    since.format("%Y-%m-%d %H:%M:%S UTC")
                );
                d.status = "failed".into();
                ep.disabled = Some(Disabled {
                    at: now,
                    reason: reason.clone(),
                });
                return Applied {
                    delivery: d,
                    endpoint: Some(ep),
                    disabled: Some(reason),
                };
            }
            // `retry[n - 1]` is the wait after the n-th failed attempt (`retry_secs` are the
            // gaps between attempts); past its end the delivery has failed.
            match cfg.retry.get(d.attempts as usize - 1) {
                None => d.status = "failed".into(),
                Some(wait) => {
                    let wait = (*wait).max(retry_after.unwrap_or_default());
                    let spread = wait.mul_f64(jitter.clamp(0.0, 1.0) / 10.0);
                    let wait = TimeDelta::from_std(wait + spread).unwrap_or(TimeDelta::MAX);
                    d.next_attempt_at = now.checked_add_signed(wait).unwrap_or(now);
                }
            }
            Applied {
                delivery: d,
                endpoint: Some(ep),
                disabled: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn fixtures() -> (Delivery, Endpoint, WebhookConfig) {
        let now = Utc::now();
        let ep = Endpoint {
            id: Uuid::now_v7(),
            url: "http://erp.lan/h".into(),
            events: vec!["message.created".into()],
            description: None,
            secrets: vec![],
            created_at: now,
            created_by: "admin".into(),
            disabled: None,
            failing_since: None,
        };
        let d = Delivery {
            msg_id: "msg_1".into(),
            endpoint: ep.id,
            event_type: "message.created".into(),
            conversation: None,
            payload: "{}".into(),
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            status: "pending".into(),
            last_status_code: None,
            last_error: None,
            last_attempt_at: None,
        };
        let cfg = WebhookConfig {
            retry: [0, 5, 300].map(Duration::from_secs).to_vec(),
            disable_after: Duration::from_secs(3600),
            ..Default::default()
        };
        (d, ep, cfg)
    }

    #[test]
    fn failures_follow_the_schedule_then_fail() {
        let (d, ep, cfg) = fixtures();
        let t0 = d.created_at;
        // Retried at once after the first failure (the schedule's first wait is 0).
        let a = apply(d, ep, of_status(500, None, ""), &cfg, t0, 0.9);
        assert_eq!(a.delivery.status, "pending");
        assert_eq!(a.delivery.next_attempt_at, t0);
        let ep = a.endpoint.unwrap();
        assert_eq!(ep.failing_since, Some(t0));
        let a = apply(a.delivery, ep, of_status(500, None, ""), &cfg, t0, 0.0);
        assert_eq!(a.delivery.next_attempt_at, t0 + TimeDelta::seconds(5));
        let t1 = t0 + TimeDelta::seconds(5);
        let a = apply(
            a.delivery,
            a.endpoint.unwrap(),
            of_status(301, None, ""),
            &cfg,
            t1,
            0.5,
        );
        assert!(
            a.delivery
                .last_error
                .as_deref()
                .unwrap()
                .contains("redirect")
        );
        // 300 s and at most a tenth more.
        let wait = a.delivery.next_attempt_at - t1;
        assert!(wait >= TimeDelta::seconds(300) && wait <= TimeDelta::seconds(330));
        let a = apply(
            a.delivery,
            a.endpoint.unwrap(),
            of_status(500, None, ""),
            &cfg,
            t1,
            0.0,
        );
        assert_eq!(a.delivery.status, "failed");
        assert_eq!(a.delivery.attempts, 4, "the first attempt and one per wait");
        assert!(a.disabled.is_none());
        // Failing since the first failure of the run, not the last.
        let ep = a.endpoint.unwrap();
        assert_eq!(ep.failing_since, Some(t0));
        // One success ends the run of failures.
        let (d, _, _) = fixtures();
        let a = apply(d, ep, Outcome::Delivered(204), &cfg, t1, 0.0);
        assert_eq!(a.delivery.status, "delivered");
        assert_eq!(a.endpoint.unwrap().failing_since, None);
    }

    #[test]
    fn throttling_waits_as_asked_within_a_cap() {
        let (d, ep, cfg) = fixtures();
        let t0 = d.created_at;
        let a = apply(
            d.clone(),
            ep.clone(),
            of_status(503, Some(120), ""),
            &cfg,
            t0,
            0.0,
        );
        assert_eq!(a.delivery.next_attempt_at, t0 + TimeDelta::seconds(120));
        let a = apply(
            d.clone(),
            ep.clone(),
            of_status(429, Some(10_000_000), ""),
            &cfg,
            t0,
            0.0,
        );
        assert_eq!(
            a.delivery.next_attempt_at,
            t0 + TimeDelta::from_std(MAX_RETRY_AFTER).unwrap()
        );
        // Not a throttling status: the header does not count.
        let a = apply(d, ep, of_status(500, Some(120), ""), &cfg, t0, 0.0);
        assert_eq!(a.delivery.next_attempt_at, t0);
    }

    #[test]
    fn gone_and_long_failing_disable_with_a_reason() {
        let (d, ep, cfg) = fixtures();
        let t0 = d.created_at;
        let a = apply(
            d.clone(),
            ep.clone(),
            of_status(410, None, ""),
            &cfg,
            t0,
            0.0,
        );
        assert_eq!(a.delivery.status, "failed");
        assert!(a.disabled.unwrap().contains("410"));
        assert!(a.endpoint.unwrap().disabled.is_some());
        let mut failing = ep;
        failing.failing_since = Some(t0 - TimeDelta::hours(2));
        let out = Outcome::Failed {
            status: None,
            error: "timed out".into(),
            retry_after: None,
        };
        let a = apply(d, failing, out, &cfg, t0, 0.0);
        let why = a.disabled.unwrap();
        assert!(
            why.starts_with("failing since") && why.contains("timed out"),
            "{why}"
        );
        assert_eq!(a.delivery.status, "failed");
    }
}
