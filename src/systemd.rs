//! Telling a service manager (systemd's `Type=notify`) when the node is ready and when it
//! stops. Each call is a no-op when `NOTIFY_SOCKET` is unset, as it is outside systemd.
//!
//! Invariant: `READY=1` is sent only once every listener is bound and the HTTP server is
//! about to accept, so a unit ordered `After=parley.service` finds the node answering.

use sd_notify::NotifyState;

/// The node serves: `READY=1` with a one-line status for `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown has begun: `STOPPING=1`, before requests in flight are finished.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing requests in flight"),
    ]);
}

fn send(states: &[NotifyState]) {
    // A manager that cannot be told is not a reason to stop serving; it will time the start
    // out by itself and say so in its own log.
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify the service manager (NOTIFY_SOCKET)");
    }
}
