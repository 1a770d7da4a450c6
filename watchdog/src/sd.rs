//! systemd integration: `READY=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`,
//! `RELOADING=1`. Every call is a no-op outside systemd (no `NOTIFY_SOCKET`)
//! and a failure to notify is logged, never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(state: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// The poll loops run.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A one-line summary for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Still alive and healthy.
pub fn watchdog_ping() {
    send(&[NotifyState::Watchdog]);
}

/// A config reload begins.
pub fn reloading() {
    send(&[
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
    ]);
}

/// Shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// How often to ping: half of `WATCHDOG_USEC`, when systemd asks for pings.
/// `WATCHDOG_PID`, when set, must name this process (sd_watchdog_enabled(3)
/// allows it to be unset, which `sd_notify::watchdog_enabled` does not).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2)).filter(|d| !d.is_zero())
}
