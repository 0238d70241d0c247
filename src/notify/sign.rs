//! Standard Webhooks 1.0 signatures: `v1,` + base64 of HMAC-SHA256 over
//! `{msg_id}.{timestamp}.{body}`, keyed with the bytes after `whsec_`. The header carries one
//! signature per valid secret, space-separated, so a receiver can rotate without downtime.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::hooks::Secret;

pub const PREFIX: &str = "whsec_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a webhook secret must be `whsec_` followed by base64; rotate the endpoint's secret")]
pub struct BadSecret;

/// A new secret: `whsec_` + base64 of 32 random bytes (the spec asks for 24 to 64).
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    if getrandom::fill(&mut b).is_err() {
        // The OS source does not fail where Parley runs; fall back to v4 UUIDs (random too)
        // rather than to a predictable key.
        b[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        b[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    format!("{PREFIX}{}", STANDARD.encode(b))
}

/// One signature, `v1,<base64>`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Result<String, BadSecret> {
    let key = STANDARD
        .decode(secret.strip_prefix(PREFIX).ok_or(BadSecret)?)
        .map_err(|_| BadSecret)?;
    if key.is_empty() {
        return Err(BadSecret);
    }
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| BadSecret)?;
    m.update(format!("{msg_id}.{timestamp}.").as_bytes());
    m.update(body.as_bytes());
    Ok(format!("v1,{}", STANDARD.encode(m.finalize().into_bytes())))
}

/// The `webhook-signature` header: a signature for every secret not yet expired at `now`,
/// newest first. Secrets that fail to decode are skipped (they cannot be made by Parley).
pub fn header(
    secrets: &[Secret],
    msg_id: &str,
    timestamp: i64,
    body: &str,
    now: DateTime<Utc>,
) -> String {
    secrets
        .iter()
        .filter(|s| s.expires_at.is_none_or(|e| e > now))
        .filter_map(|s| sign(&s.secret, msg_id, timestamp, body).ok())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The secrets still valid at `now` (expired ones are dropped on rotation and when signing).
pub fn live(secrets: &[Secret], now: DateTime<Utc>) -> Vec<Secret> {
    secrets
        .iter()
        .filter(|s| s.expires_at.is_none_or(|e| e > now))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official library's known answer.
    #[test]
    fn known_answer() {
        let s = sign(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
        assert_eq!(s, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn secrets_are_fresh_and_well_formed() {
        let a = new_secret();
        assert!(a.starts_with(PREFIX));
        let raw = STANDARD.decode(&a[PREFIX.len()..]).unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(a, new_secret());
        assert_eq!(sign("nope", "m", 1, "b"), Err(BadSecret));
        assert_eq!(sign("whsec_!!", "m", 1, "b"), Err(BadSecret));
    }

    #[test]
    fn the_header_signs_with_every_live_secret() {
        let now = Utc::now();
        let s = |secret: String, expires_at| Secret {
            secret,
            created_at: now,
            expires_at,
        };
        let (a, b, c) = (new_secret(), new_secret(), new_secret());
        let list = [
            s(a.clone(), None),
            s(b.clone(), Some(now + chrono::TimeDelta::hours(1))),
            s(c, Some(now - chrono::TimeDelta::seconds(1))),
        ];
        let h = header(&list, "msg_x", 7, "{}", now);
        let want = format!(
            "{} {}",
            sign(&a, "msg_x", 7, "{}").unwrap(),
            sign(&b, "msg_x", 7, "{}").unwrap()
        );
        assert_eq!(h, want);
        assert_eq!(live(&list, now).len(), 2);
    }
}
