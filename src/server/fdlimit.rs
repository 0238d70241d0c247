//! The open-file limit. Every peer link is a socket, and a socket is a file descriptor: a
//! hub with 10,000 partner nodes needs at least that many, plus the store, the log and the
//! HTTP clients. Distributions start services with a soft limit of 1,024 and a hard limit
//! far above it; a process may raise its own soft limit up to the hard one, so the node does
//! so at start instead of asking every operator to.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Below this many descriptors a node cannot hold 10,000 peer links: say so at start.
pub const HUB_NEEDS: u64 = 20_000;

/// What [`raise`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The soft limit in force afterwards (`None`: unlimited).
    pub limit: Option<u64>,
    /// Whether raising it to the hard limit failed.
    pub failed: bool,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and logs the limit in force (a warning,
/// naming what to change, when it is too low for a large hub or could not be raised).
pub fn raise() -> Outcome {
    let was = getrlimit(Resource::Nofile);
    let mut failed = false;
    let mut now = was;
    if was.current != was.maximum {
        let want = Rlimit {
            current: was.maximum,
            maximum: was.maximum,
        };
        match setrlimit(Resource::Nofile, want) {
            Ok(()) => now = want,
            Err(e) => {
                failed = true;
                tracing::warn!(
                    soft = ?was.current, hard = ?was.maximum, error = %e,
                    "could not raise the open-file limit; this node can hold fewer peer links than it could. Raise it with LimitNOFILE= in the systemd unit or ulimit -n before starting"
                );
            }
        }
    }
    let limit = now.current;
    match limit {
        Some(n) if n < HUB_NEEDS => tracing::warn!(
            limit = n,
            "the open-file limit is {n}: enough for about {} peer links. A hub with thousands of partner nodes needs {HUB_NEEDS} or more: set LimitNOFILE= in the systemd unit, or ulimit -n (and the hard limit, /etc/security/limits.conf) before starting",
            n.saturating_sub(256)
        ),
        Some(n) => tracing::info!(limit = n, "open-file limit"),
        None => tracing::info!(limit = "unlimited", "open-file limit"),
    }
    Outcome { limit, failed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let out = raise();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(out.limit, after.current);
        if !out.failed {
            assert_eq!(after.current, after.maximum);
        }
        // Raising again changes nothing.
        assert_eq!(raise().limit, out.limit);
    }
}
