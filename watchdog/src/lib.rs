//! # watchdog: the on-call side of the observability pair
//!
//! Polls emitters, derives per-agent CPU fractions from tick deltas, applies
//! rules with for-durations, writes the alert log, exposes Prometheus gauges
//! and notifies sinks. The core (deltas, rules, alert state) is pure: it
//! takes `now` and envelopes and returns events, so it is tested without
//! sockets or clocks; I/O lives at the edges.

pub mod alert_log;
pub mod alerts;
pub mod check;
pub mod config;
pub mod delta;
pub mod diagnose;
pub mod dur;
pub mod engine;
pub mod exporter;
pub mod http;
pub mod notify;
pub mod poll;
pub mod record;
pub mod replay;
pub mod rules;
pub mod run;
pub mod sd;
pub mod state;
pub mod stderr;
pub mod stdout;
pub mod up_close;
pub mod validate_cmd;
pub mod view;
