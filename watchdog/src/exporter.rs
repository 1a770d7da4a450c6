//! The watchdog's own `GET /metrics`: the gauges of CONTRACT.md section 4
//! in an owned `prometheus::Registry` (no global), with series of agents,
//! stages and alerts that are gone removed in the same poll.
//!
//! STUB: the API below is the seam the run loop is written against; the
//! bodies are filled in by the outputs work (issue 5).

use std::sync::Arc;

use crate::view::PollView;

/// Cheap to clone; every clone updates the same registry.
#[derive(Debug, Clone, Default)]
pub struct Exporter {
    _inner: Arc<()>,
}

impl Exporter {
    /// A fresh registry with every gauge registered and `watchdog_build_info` set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Updates every gauge of `view.target` from one evaluated poll.
    pub fn observe(&self, view: &PollView<'_>) {
        let _ = view;
    }

    /// Removes every series of a target that is no longer configured.
    pub fn forget_target(&self, target: &str) {
        let _ = target;
    }

    /// Counts one notification attempt's result (`delivered`, `retried`, `dropped`, ...).
    pub fn notification(&self, sink: &str, outcome: &str) {
        let _ = (sink, outcome);
    }

    /// Sets the queue depth of a sink.
    pub fn sink_queue_depth(&self, sink: &str, depth: usize) {
        let _ = (sink, depth);
    }

    /// Records a config (re)load: whether it was accepted, and when.
    pub fn config_loaded(&self, success: bool, at: shared_schema::Timestamp) {
        let _ = (success, at);
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        String::new()
    }
}
