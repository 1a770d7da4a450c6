//! # watchdog-core: the watchdog's pure core
//!
//! Deltas between two envelopes ([`delta`]), the rules of CONTRACT.md
//! section 3 ([`rules`]), the pending -> firing -> resolved life of an alert
//! ([`alerts`]), the engine that runs one observation through all of them
//! ([`engine`]), what the outputs see of the result ([`view`]) and the
//! sentence that says what an agent waits on ([`diagnose`]).
//!
//! Nothing here does I/O or reads a clock: `now` comes with each
//! observation, so the live loop, `replay` and `check` run the very same
//! code. Cargo keeps it so: this crate depends on shared-schema, serde and
//! the pure part of edges only (no runtime, no HTTP, no filesystem).

pub mod alerts;
pub mod delta;
pub mod diagnose;
pub mod engine;
pub mod error;
pub mod rules;
pub mod view;

/// Durations come from the shared edge crate: one `Dur` for every binary.
pub mod dur {
    pub use edges::dur::*;
}
