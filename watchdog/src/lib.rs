//! # watchdog: the on-call side of the observability pair
//!
//! Polls emitters, derives per-agent CPU fractions from tick deltas, applies
//! rules with for-durations, writes the alert log, exposes Prometheus gauges
//! and notifies sinks. The core (deltas, rules, alert state) is pure: it
//! takes `now` and envelopes and returns events, so it is tested without
//! sockets or clocks; I/O lives at the edges.

pub mod alert_log;
pub mod check;
pub mod collector;
pub mod config;
pub mod dur;
pub mod fast_read;
pub mod http;
pub mod notify;
pub mod poll;
pub mod record;
pub mod replay;
pub mod run;
pub mod sd;
pub mod state;
pub mod validate_cmd;

// The pure core lives in its own crate; these paths keep the binary's
// modules (and its users) reading `watchdog::engine` as before.
pub use watchdog_core::{alerts, delta, engine, rules, view};

/// The exporter is the gauge collector now; the old path stays for its users.
pub use collector as exporter;
