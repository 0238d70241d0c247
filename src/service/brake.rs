//! The sign-in brake.
//!
//! The brake counts failed sign-ins per key — the user name (`user:NAME`) and the client
//! address (`ip:ADDR`) — over a sliding window (15 minutes by default). An attempt is admitted
//! only while every key it touches has room: failures in the window plus attempts still being
//! checked stay under the key's limit (5 for a user name, 20 for an address). Attempts in
//! flight count, so parallel guesses cannot slip past the limit; a refused attempt does no
//! password hashing and is answered at once with the time until a failure leaves the window.
//!
//! So that an attacker cannot lock a user out for good by guessing at the name without end, a
//! successful sign-in hands the browser a device mark (a keyed hash of the user name). An
//! attempt carrying a valid mark for the name it signs in as is counted against that mark
//! alone (same limit as a user name), not against the name or the address. Marks are keyed by
//! a secret made at start, so a restart forgets them, together with every count.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How long a failed sign-in counts against its keys, unless configured otherwise.
pub const SIGNIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures (plus attempts in flight) allowed per user name, or per device mark, in a window.
pub const USER_LIMIT: usize = 5;
/// The same per client address: several people may sign in from behind one address.
pub const ADDRESS_LIMIT: usize = 20;
/// Bound on remembered keys, so a flood of names cannot grow memory without end.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
struct KeyState {
    /// When each failure in the window happened, oldest first.
    failures: VecDeque<Instant>,
    in_flight: usize,
}

/// The sign-in brake (see the module doc). Counts live in memory only.
pub struct LoginThrottle {
    keys: Mutex<HashMap<String, KeyState>>,
    window: Mutex<Duration>,
    /// Keys the device marks; made at start from the OS random source.
    secret: [u8; 32],
}

impl Default for LoginThrottle {
    fn default() -> Self {
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        LoginThrottle {
            keys: Mutex::default(),
            window: Mutex::new(SIGNIN_WINDOW),
            secret,
        }
    }
}

/// An admitted attempt: holds its place on every key until it is settled. Dropped unsettled
/// (the request was cancelled mid-check), it counts as a failure.
pub struct Attempt<'a> {
    brake: &'a LoginThrottle,
    keys: Vec<String>,
    settled: bool,
}

impl Attempt<'_> {
    pub fn succeeded(mut self) {
        self.settled = true;
        self.brake.settle(&self.keys, false);
    }
    pub fn failed(mut self) {
        self.settled = true;
        self.brake.settle(&self.keys, true);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.brake.settle(&self.keys, true);
        }
    }
}

impl LoginThrottle {
    pub fn set_window(&self, window: Duration) {
        if let Ok(mut w) = self.window.lock() {
            *w = window;
        }
    }

    fn window(&self) -> Duration {
        self.window.lock().map(|w| *w).unwrap_or(SIGNIN_WINDOW)
    }

    /// The device mark for a user name: HMAC-SHA256 under this process's secret, hex.
    pub fn device_mark(&self, user: &str) -> String {
        hex(&hmac(&self.secret, user.to_lowercase().as_bytes()))
    }

    fn valid_mark(&self, user: &str, mark: &str) -> bool {
        let want = self.device_mark(user);
        want.len() == mark.len()
            && want
                .bytes()
                .zip(mark.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The keys an attempt counts against, with their limits.
    fn keys_for(
        &self,
        user: &str,
        from: Option<IpAddr>,
        mark: Option<&str>,
    ) -> Vec<(String, usize)> {
        let user = user.to_lowercase();
        if let Some(m) = mark.filter(|m| self.valid_mark(&user, m)) {
            return vec![(format!("device:{m}"), USER_LIMIT)];
        }
        let mut keys = vec![(format!("user:{user}"), USER_LIMIT)];
        if let Some(ip) = from {
            keys.push((format!("ip:{ip}"), ADDRESS_LIMIT));
        }
        keys
    }

    /// Admits an attempt, or says how long to wait before the next one can be admitted.
    pub fn admit(
        &self,
        user: &str,
        from: Option<IpAddr>,
        mark: Option<&str>,
    ) -> Result<Attempt<'_>, Duration> {
        let keys = self.keys_for(user, from, mark);
        let window = self.window();
        let now = Instant::now();
        let Ok(mut map) = self.keys.lock() else {
            return Err(window);
        };
        let mut wait = Duration::ZERO;
        for (k, limit) in &keys {
            let Some(s) = map.get_mut(k) else { continue };
            while s
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                s.failures.pop_front();
            }
            if s.failures.len() + s.in_flight >= *limit {
                // Room opens when the oldest failure leaves the window, or (when attempts
                // in flight fill the key) as soon as they are settled.
                let w = match s.failures.front() {
                    Some(t) if s.failures.len() >= *limit => window - now.duration_since(*t),
                    _ => Duration::from_secs(1),
                };
                wait = wait.max(w);
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        let new = keys.iter().filter(|(k, _)| !map.contains_key(k)).count();
        if map.len() + new > MAX_KEYS {
            map.retain(|_, s| {
                s.in_flight > 0
                    || s.failures
                        .back()
                        .is_some_and(|t| now.duration_since(*t) < window)
            });
            if map.len() + new > MAX_KEYS {
                // Too many names and addresses are failing at once to keep count of another:
                // refusing is the only answer that does not let guesses through uncounted.
                return Err(Duration::from_secs(60));
            }
        }
        for (k, _) in &keys {
            map.entry(k.clone()).or_default().in_flight += 1;
        }
        Ok(Attempt {
            brake: self,
            keys: keys.into_iter().map(|(k, _)| k).collect(),
            settled: false,
        })
    }

    fn settle(&self, keys: &[String], failed: bool) {
        let Ok(mut map) = self.keys.lock() else {
            return;
        };
        for k in keys {
            if let Some(s) = map.get_mut(k) {
                s.in_flight = s.in_flight.saturating_sub(1);
                if failed {
                    s.failures.push_back(Instant::now());
                }
                if s.in_flight == 0 && s.failures.is_empty() {
                    map.remove(k);
                }
            }
        }
    }
}

fn hmac(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, b) in key.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_attempts_are_bounded_and_a_device_mark_gets_its_own_room() {
        let t = LoginThrottle::default();
        let ip: Option<IpAddr> = "10.0.0.1".parse().ok();
        // Attempts in flight count: the sixth is refused before any of the five is settled.
        let held: Vec<_> = (0..USER_LIMIT)
            .map(|_| t.admit("Admin", ip, None).ok().unwrap())
            .collect();
        assert_eq!(
            t.admit("admin", None, None).err(),
            Some(Duration::from_secs(1))
        );
        held.into_iter().for_each(Attempt::failed);
        let wait = t.admit("admin", ip, None).err().unwrap();
        assert!(wait > SIGNIN_WINDOW - Duration::from_secs(5), "{wait:?}");
        // Another name from the same address still has room; a valid mark for the name too.
        assert!(t.admit("bob", ip, None).is_ok());
        let mark = t.device_mark("ADMIN");
        assert!(t.admit("admin", ip, Some(&mark)).is_ok());
        // A mark for another name, or a made-up one, is no way around the brake.
        assert!(t.admit("admin", ip, Some(&t.device_mark("bob"))).is_err());
        assert!(t.admit("admin", ip, Some("00")).is_err());
    }

    #[test]
    fn failures_leave_the_window() {
        let t = LoginThrottle::default();
        t.set_window(Duration::from_millis(50));
        for _ in 0..USER_LIMIT {
            t.admit("x", None, None).ok().unwrap().failed();
        }
        assert!(t.admit("x", None, None).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.admit("x", None, None).is_ok());
    }

    #[test]
    fn a_dropped_attempt_counts_as_failed() {
        let t = LoginThrottle::default();
        for _ in 0..USER_LIMIT {
            drop(t.admit("x", None, None).ok().unwrap());
        }
        assert!(t.admit("x", None, None).is_err());
    }
}
