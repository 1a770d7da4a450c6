//! Where the envelope's sections come from.
//!
//! The emitter does not care whether an orchestrator keeps its state in
//! SQLite or in memory: it asks a [`Source`] for a [`Session`] (one
//! consistent view, e.g. one read transaction or one read lock) and asks that
//! session for each section on its own. A failing section is an `Err`; the
//! snapshot turns it into the section's safe default and names it in
//! `degraded`. An optional section whose data simply does not exist is
//! `Ok(None)`, which is not a failure. [`crate::SqliteSource`] is the default
//! implementation; a Rust orchestrator can implement these two traits over
//! its own state and serve the same envelope.
//!
//! Sessions return agents without their `/proc` figures: the snapshot fills
//! those in from one pass over `/proc`.

use shared_schema::{Agent, Cost, Errors, Queue, Reconciler, Stage, Timestamp};

/// Why one section could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    /// The state could not be opened at all (missing file, permissions, ...).
    #[error("state unavailable: {0}")]
    Unavailable(String),
    /// A query failed (busy or locked database, missing table or column, ...).
    #[error("query failed: {0}")]
    Query(#[from] rusqlite::Error),
    /// Reading one table failed (busy or locked database, missing table, ...).
    #[error("read failed: {0}")]
    Read(String),
    /// The data was read but makes no sense (bad JSON, negative sums, ...).
    #[error("bad data: {0}")]
    Data(String),
}

/// The outcome of collecting one section.
pub type SectionResult<T> = Result<T, SectionError>;

/// A provider of orchestrator state.
pub trait Source: Send + Sync {
    /// Starts one snapshot's reads. Never fails: a session over state that
    /// cannot be opened answers every section with the reason.
    fn session(&self) -> Box<dyn Session + '_>;
}

/// One consistent view of the state, used for one snapshot.
pub trait Session {
    /// Tasks not in a terminal stage, their age measured against `now`.
    fn stages(&mut self, now: &Timestamp) -> SectionResult<Vec<Stage>>;
    /// The job queue.
    fn queue(&mut self) -> SectionResult<Queue>;
    /// One entry per running job, `/proc` fields left `None`.
    fn agents(&mut self, now: &Timestamp) -> SectionResult<Vec<Agent>>;
    /// Cost of running jobs and totals over all runs.
    fn cost(&mut self) -> SectionResult<Cost>;
    /// The newest reconciler tick; `Ok(None)` when there is none to report.
    fn reconciler(&mut self) -> SectionResult<Option<Reconciler>>;
    /// Error events by subsystem; `Ok(None)` when the orchestrator keeps none.
    fn errors(&mut self) -> SectionResult<Option<Errors>>;
}
