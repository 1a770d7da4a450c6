//! One snapshot's sections, read from the state the refresh left: the
//! session holds the source's lock for its whole life, so every section is
//! built from the same state, and a table whose read failed degrades only
//! the sections built on it.

use std::sync::MutexGuard;

use shared_schema::{Agent, Cost, Errors, Queue, Reconciler, Stage, Timestamp};

use super::{Built, Inner};
use crate::sections::queue;
use crate::{SectionError, SectionResult, Session};

pub(super) struct SqliteSession<'a> {
    pub(super) inner: MutexGuard<'a, Inner>,
    /// Nothing could be read, and why.
    pub(super) unavailable: Option<String>,
}

impl SqliteSession<'_> {
    /// The state, or the reason one of `tables` could not be read.
    fn state(&mut self, tables: &[&str]) -> SectionResult<&mut Built> {
        if let Some(why) = &self.unavailable {
            return Err(SectionError::Unavailable(why.clone()));
        }
        let built = self
            .inner
            .built
            .as_mut()
            .ok_or_else(|| SectionError::Unavailable("no connection".into()))?;
        for t in tables {
            if let Some(why) = built.failed.get(t) {
                return Err(SectionError::Read(format!("reading {t}: {why}")));
            }
        }
        Ok(built)
    }
}

impl Session for SqliteSession<'_> {
    fn stages(&mut self, now: &Timestamp) -> SectionResult<Vec<Stage>> {
        Ok(self.state(&["tasks"])?.state.stages(now))
    }

    fn queue(&mut self) -> SectionResult<Queue> {
        let built = self.state(&["jobs"])?;
        let worker = built
            .worker
            .as_ref()
            .map_err(|e| SectionError::Read(e.clone()))?
            .clone();
        let (counts, retries) = built.state.queue_counts();
        Ok(queue::assemble(counts, retries, &worker))
    }

    fn agents(&mut self, now: &Timestamp) -> SectionResult<Vec<Agent>> {
        Ok(self.state(&["jobs", "agent_runs"])?.state.agents(now))
    }

    fn cost(&mut self) -> SectionResult<Cost> {
        Ok(self.state(&["jobs", "agent_runs"])?.state.cost())
    }

    fn reconciler(&mut self) -> SectionResult<Option<Reconciler>> {
        let built = self.state(&["reconciler_ticks"])?;
        built.reconciler.clone().map_err(SectionError::Data)
    }

    fn errors(&mut self) -> SectionResult<Option<Errors>> {
        Ok(self.state(&["error_events"])?.state.errors())
    }
}
