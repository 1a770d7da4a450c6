//! # shared-schema: the contract between the emitter and the watchdog
//!
//! An orchestrator's emitter serves one JSON **envelope** on `GET /metrics`;
//! the watchdog polls it. This crate is the single definition of that
//! envelope (CONTRACT.md section 1), of the watchdog's **alert-log line**
//! (section 3) and of the **record line** (section 5), so that neither side
//! can drift and an orchestrator written in another language can be checked
//! against it with [`validate()`].
//!
//! ## Versioning
//! [`SCHEMA_VERSION`] is the contract's major version, `1` today. Adding a
//! key or a section does not change it; renaming, removing or retyping a key
//! does. A body with a newer version is reported as
//! [`ReadError::NewerVersion`], its own condition, never as "unreachable"
//! and never as a panic, so a watchdog can say "upgrade me" and keep running.
//!
//! ## The one reader
//! [`read_envelope`] is what the watchdog uses on every poll, in `check`,
//! in `replay` and under `validate`: one pass over the bytes keeps each
//! section as raw JSON, then each section is read into its typed form on
//! its own (no `serde_json::Value` tree). It is tolerant:
//! - unknown keys are ignored at every level;
//! - a missing optional key or a `null` is kept as `None`, "unknown", and
//!   is never turned into `0`;
//! - `generated_at` is accepted in any RFC 3339 form, including the
//!   whole-second form of older emitters;
//! - `{"schema_version":1,"enabled":false}` reads as [`Reading::Disabled`];
//! - a section of the wrong type (or with a wrong value inside) is reported
//!   as a [`Problem`] with its JSON path, read as its safe default (`[]` or
//!   `None`) and added to `degraded`, exactly as if the emitter had failed
//!   to collect it; the other sections stay usable. A required array section
//!   (`stages`, `agents`) that is missing or `null` is likewise degraded:
//!   unknown is not empty;
//! - lists are capped ([`caps`]): past the cap the rest is skipped unread and
//!   a problem says "agents truncated at 20000", so what a body costs in
//!   memory is bounded by its size.
//!
//! The whole read fails ([`ReadError`]) only when nothing is usable: not
//! JSON, not an object, no or a bad `schema_version`, or no usable
//! `generated_at`.
//!
//! [`Section`] and [`BreakerState`] are the typed names of a section and of
//! the breaker's state; the wire fields stay text (a newer emitter may send
//! names this reader does not know) with typed accessors
//! ([`Envelope::is_degraded`] takes either, [`Breaker::state()`]).
//!
//! ## The writer
//! The same types serialise to exactly the section 1 form: every key
//! present, `null` where unknown, `generated_at` with milliseconds and `Z`.

pub mod agent_view;
pub mod alert;
pub mod envelope;
pub mod labels;
pub mod metrics;
pub mod read;
pub mod record;
pub mod state;
pub mod timestamp;
pub mod validate;

pub use agent_view::{AgentView, FdKind, FdMode, FdView, ProcessView, SocketView};
pub use alert::{AlertEvent, AlertLine, Severity};
pub use envelope::*;
pub use labels::Labels;
pub use read::{read_envelope, read_value, Problem, ReadError, Reading};
pub use record::{RecordError, RecordLine, RecordRef, Recorded};
pub use timestamp::{Timestamp, TimestampError};
pub use validate::{validate, validate_value};

/// The contract major version this crate reads and writes.
pub const SCHEMA_VERSION: u64 = 1;
