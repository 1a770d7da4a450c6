//! Notifications: one [`Sink`] per target of notifications, each behind its
//! own bounded queue and worker task, so a slow or dead sink never blocks
//! polling or another sink. Whatever a sink cannot deliver comes back as a
//! `dropped` [`AlertLine`] on the channel given to [`Notifier::start`], for
//! the alert log: nothing is lost silently.
//!
//! STUB: the API below is the seam the run loop is written against; the
//! bodies are filled in by the notifications work (issue 5).

pub mod config;

use shared_schema::AlertLine;
use tokio::sync::mpsc;

pub use config::NotifyConfig;

use crate::exporter::Exporter;

/// Fans alert events out to every configured sink.
#[derive(Debug)]
pub struct Notifier {}

impl Notifier {
    /// Starts one worker per configured sink. Lines a sink gives up on are
    /// sent to `dropped` (as `"event":"dropped"` lines naming the sink).
    pub fn start(
        config: &NotifyConfig,
        exporter: Exporter,
        dropped: mpsc::UnboundedSender<AlertLine>,
    ) -> anyhow::Result<Self> {
        let _ = (config, exporter, dropped);
        Ok(Self {})
    }

    /// Hands one event (`firing`, `resolved`, `repeat`) to every sink without
    /// waiting; a full queue turns into a `dropped` line.
    pub fn publish(&self, line: &AlertLine) {
        let _ = line;
    }

    /// Tells sinks that re-send state (Alertmanager) which alerts fire now,
    /// e.g. after a restart or a reload built a new notifier.
    pub fn sync_firing(&self, firing: &[AlertLine]) {
        let _ = firing;
    }

    /// Stops accepting events and gives queued ones until `deadline` to go out;
    /// what is left is sent to `dropped`.
    pub async fn shutdown(self, deadline: std::time::Duration) {
        let _ = deadline;
    }
}
