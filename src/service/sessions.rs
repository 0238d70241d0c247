//! Browser sign-in: sessions for the web UI, with a CSRF token each, and a brake on repeated
//! failed sign-ins (per user name and per client address, kept in memory).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::*;
use crate::store::sessions::SessionRecord;
use crate::store::{accounts, sessions};

/// How long a sign-in lasts.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::days(7);
/// Failed attempts forgiven without delay.
const FREE_FAILURES: u32 = 3;
/// Failures older than this are forgotten.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// Bound on remembered keys, so a flood of names cannot grow memory without end.
const MAX_KEYS: usize = 10_000;

/// Failed sign-ins per key (`user:NAME`, `ip:ADDR`): after a few, each attempt on that key
/// waits longer before it is answered (0.5 s, 1 s, 2 s, … up to 10 s).
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn delay(&self, keys: &[String]) -> Duration {
        let Ok(map) = self.failures.lock() else {
            return MAX_DELAY;
        };
        keys.iter()
            .filter_map(|k| map.get(k))
            .filter(|(_, at)| at.elapsed() < FAILURE_WINDOW)
            .map(|(n, _)| backoff(*n))
            .max()
            .unwrap_or_default()
    }

    pub fn failed(&self, keys: &[String]) {
        if let Ok(mut map) = self.failures.lock() {
            if map.len() >= MAX_KEYS {
                map.retain(|_, (_, at)| at.elapsed() < FAILURE_WINDOW);
            }
            for k in keys {
                if map.len() >= MAX_KEYS && !map.contains_key(k) {
                    continue;
                }
                let e = map.entry(k.clone()).or_insert((0, Instant::now()));
                if e.1.elapsed() >= FAILURE_WINDOW {
                    e.0 = 0;
                }
                e.0 += 1;
                e.1 = Instant::now();
            }
        }
    }

    pub fn succeeded(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

fn backoff(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (failures - FREE_FAILURES).min(10);
    (Duration::from_millis(500) * 2u32.pow(exp)).min(MAX_DELAY)
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn random_secret(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    )
}

/// A new sign-in: the cookie value (shown once) and its record.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub record: SessionRecord,
    pub principal: Principal,
}

impl Service {
    /// Signs a user in with a password. A wrong name and a wrong password fail alike; after a
    /// few failures for the name or the address, answers are slowed down.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        from: Option<IpAddr>,
    ) -> Result<NewSession> {
        let mut keys = vec![format!("user:{}", name.to_lowercase())];
        if let Some(ip) = from {
            keys.push(format!("ip:{ip}"));
        }
        let wait = self.logins.delay(&keys);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if name.len() > 64 || password.len() > 1024 {
            self.logins.failed(&keys);
            return Err(ServiceError::LoginFailed);
        }
        let Some(principal) = self.verify_password(name, password).await? else {
            self.logins.failed(&keys);
            return Err(ServiceError::LoginFailed);
        };
        self.logins.succeeded(&keys[0]);
        let id = random_secret("ps_");
        let now = self.now();
        let record = SessionRecord {
            user: principal.user.clone(),
            csrf: random_secret(""),
            created_at: now,
            expires_at: now + SESSION_TTL,
        };
        let (h, r) = (hash(&id), record.clone());
        self.store
            .write(move |ctx| -> Result<_> {
                sessions::purge_expired(ctx.tx(), now)?;
                sessions::put(ctx.tx(), &h, &r)?;
                Ok(())
            })
            .await?;
        Ok(NewSession {
            id,
            record,
            principal,
        })
    }

    /// The signed-in user of a session cookie, if it is current and the user still exists.
    pub async fn session(&self, id: &str) -> Result<Option<(Principal, SessionRecord)>> {
        if !id.starts_with("ps_") || id.len() > 200 {
            return Ok(None);
        }
        let h = hash(id);
        let now = self.now();
        self.store
            .read(move |tx| -> Result<_> {
                let Some(s) = sessions::get(tx, &h)? else {
                    return Ok(None);
                };
                if s.expires_at <= now {
                    return Ok(None);
                }
                let Some(u) = accounts::get_user(tx, &s.user)? else {
                    return Ok(None);
                };
                Ok(Some((
                    Principal {
                        user: u.name,
                        admin: u.admin,
                    },
                    s,
                )))
            })
            .await
    }

    /// Ends a session; ending one that is already gone is not an error.
    pub async fn logout(&self, id: &str) -> Result<()> {
        let h = hash(id);
        self.store
            .write(move |ctx| -> Result<_> {
                sessions::remove(ctx.tx(), &h)?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_then_cap() {
        let t = LoginThrottle::default();
        let keys = vec!["user:x".to_string()];
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.delay(&keys), Duration::ZERO);
            t.failed(&keys);
        }
        assert_eq!(t.delay(&keys), Duration::from_millis(500));
        t.failed(&keys);
        assert_eq!(t.delay(&keys), Duration::from_secs(1));
        for _ in 0..20 {
            t.failed(&keys);
        }
        assert_eq!(t.delay(&keys), MAX_DELAY);
        assert_eq!(t.delay(&["ip:1.2.3.4".into()]), Duration::ZERO);
        t.succeeded("user:x");
        assert_eq!(t.delay(&keys), Duration::ZERO);
    }
}
