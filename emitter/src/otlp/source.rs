//! The envelope's side of the receiver: a [`Source`] around the real one
//! whose `agents` carry each job's `activity`, so every reader of the
//! running jobs (the snapshot, the up-close view) sees it without knowing
//! about OTLP, and whose running jobs feed the attribution in turn.

use std::sync::Arc;

use shared_schema::{Agent, Cost, Errors, Queue, Reconciler, Stage, Timestamp};

use super::Telemetry;
use crate::{SectionResult, Session, Source};

/// `inner` with `agents[i].activity` filled from the receiver's store.
pub struct WithActivity {
    inner: Arc<dyn Source>,
    telemetry: Arc<Telemetry>,
}

impl std::fmt::Debug for WithActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithActivity").finish_non_exhaustive()
    }
}

impl WithActivity {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Source>, telemetry: Arc<Telemetry>) -> Self {
        Self { inner, telemetry }
    }
}

impl Source for WithActivity {
    fn session(&self) -> Box<dyn Session + '_> {
        Box::new(ActivitySession {
            inner: self.inner.session(),
            telemetry: &self.telemetry,
        })
    }
}

struct ActivitySession<'a> {
    inner: Box<dyn Session + 'a>,
    telemetry: &'a Telemetry,
}

impl Session for ActivitySession<'_> {
    fn stages(&mut self, now: &Timestamp) -> SectionResult<Vec<Stage>> {
        self.inner.stages(now)
    }

    fn queue(&mut self) -> SectionResult<Queue> {
        self.inner.queue()
    }

    fn agents(&mut self, now: &Timestamp) -> SectionResult<Vec<Agent>> {
        let read_at = std::time::Instant::now();
        let mut agents = self.inner.agents(now)?;
        self.telemetry.attributor.note(read_at, &agents);
        self.telemetry.store.fill(&mut agents);
        Ok(agents)
    }

    fn cost(&mut self) -> SectionResult<Cost> {
        self.inner.cost()
    }

    fn reconciler(&mut self) -> SectionResult<Option<Reconciler>> {
        self.inner.reconciler()
    }

    fn errors(&mut self) -> SectionResult<Option<Errors>> {
        self.inner.errors()
    }
}
