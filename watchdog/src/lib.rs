//! # watchdog: the on-call side of the observability pair
//!
//! The binary's library: it polls emitters ([`poll`]), reads and checks the
//! config ([`config`]: TOML and flags into one validated [`config::Config`],
//! every error exit 2), writes the alert log, serves the gauges
//! ([`collector`], rendered at scrape time) and notifies sinks ([`notify`]);
//! [`run`] ties them to signals and timers.
//!
//! The pure core (deltas, rules, alert state, engine, view) is the
//! `watchdog-core` crate, re-exported here under its old paths; it takes
//! `now` and envelopes and returns events, so it is tested without sockets
//! or clocks, and Cargo keeps I/O out of it.

pub mod alert_log;
pub mod backtest;
pub mod check;
pub mod collector;
pub mod config;
pub mod dur;
pub mod http;
pub mod notify;
pub mod outbox;
pub mod poll;
pub mod receipt;
pub mod record;
pub mod reference;
pub mod replay;
pub mod run;
pub mod sd;
pub mod shard;
pub mod state;
pub mod stderr;
pub mod stdout;
pub mod target;
pub mod targets;
pub mod tls;
pub mod up_close;
pub mod validate_cmd;
pub mod web;

// The pure core lives in its own crate; these paths keep the binary's
// modules (and its users) reading `watchdog::engine` as before.
pub use watchdog_core::{alerts, delta, diagnose, engine, rules, view};

/// The exporter is the gauge collector now; the old path stays for its users.
pub use collector as exporter;
