//! Notifications: one [`Sink`] per target of notifications, each behind its
//! own bounded queue and worker task, so a slow or dead sink never blocks
//! polling or another sink. Whatever a sink cannot deliver comes back as a
//! `dropped` [`AlertLine`] on the channel given to [`Notifier::start`], for
//! the alert log: nothing is lost silently.
//!
//! Layout: `config` (what the `[notify]` table checks as a whole),
//! `registry` (what a kind of sink gives the table, and the macro below),
//! `sink` (the trait), `queue` (queue + worker, counting, `dropped`
//! lines), `post` + `backoff` (one JSON POST with retries), `delivery`
//! (the delivery keys every HTTP sink shares, and its endpoint), `group`
//! (grouped notifications), and one file per kind of sink.
//!
//! Adding a kind of sink is one new file (its table, which implements
//! [`registry::SinkConfig`], and its [`Sink`]) and one line below; the
//! test in `registry` fails if anything else names it.

#[macro_use]
mod registry;

pub mod backoff;
pub mod config;
pub mod delivery;
pub mod group;
pub mod post;
pub mod queue;
pub mod sink;

sink_kinds! {
    webhook: Vec<webhook::WebhookConfig>,
    alertmanager: Option<alertmanager::AlertmanagerConfig>,
    slack: Vec<slack::SlackConfig>,
    pagerduty: Vec<pagerduty::PagerDutyConfig>,
}

use std::sync::Arc;

use shared_schema::{AlertEvent, AlertLine};
use tokio::sync::mpsc;

pub use group::Grouping;
pub use registry::{Kind, SinkConfig};
pub use sink::Sink;

use crate::exporter::Exporter;
use queue::SinkQueue;

/// Fans alert events out to every configured sink.
#[derive(Debug)]
pub struct Notifier {
    sinks: Vec<SinkQueue>,
}

impl Notifier {
    /// Starts one worker per configured sink. Lines a sink gives up on are
    /// sent to `dropped` (as `"event":"dropped"` lines naming the sink).
    /// Must be called inside a tokio runtime.
    pub fn start(
        config: &NotifyConfig,
        exporter: Exporter,
        dropped: mpsc::UnboundedSender<AlertLine>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let sinks = config
            .start(&exporter)?
            .into_iter()
            .map(|started| {
                tracing::info!(
                    sink = %started.name,
                    capacity = started.capacity,
                    grouped = started.grouping.as_ref().is_some_and(Grouping::is_on),
                    "notification sink started"
                );
                SinkQueue::spawn(
                    &started.name,
                    started.sink,
                    started.capacity,
                    started.grouping.as_ref(),
                    exporter.clone(),
                    dropped.clone(),
                )
            })
            .collect();
        Ok(Self { sinks })
    }

    /// The names of the running sinks, in config order.
    pub fn sink_names(&self) -> Vec<&str> {
        self.sinks.iter().map(SinkQueue::name).collect()
    }

    /// Hands one event (`firing`, `resolved`, `repeat`) to every sink without
    /// waiting; a full queue turns into a `dropped` line. `dropped` lines
    /// themselves are not notified.
    pub fn publish(&self, line: &AlertLine) {
        if line.event == AlertEvent::Dropped {
            return;
        }
        for sink in &self.sinks {
            sink.push(line);
        }
    }

    /// Whether any sink follows the firing set (Alertmanager does): when
    /// none does, it is not even built.
    pub fn follows_firing(&self) -> bool {
        self.sinks.iter().any(SinkQueue::follows_firing)
    }

    /// Tells sinks that re-send state (Alertmanager) which alerts fire now,
    /// e.g. after a restart or a reload built a new notifier.
    pub fn sync_firing(&self, firing: &[Arc<AlertLine>]) {
        for sink in &self.sinks {
            sink.sync_firing(firing);
        }
    }

    /// Stops accepting events and gives queued ones until `deadline` to go out;
    /// what is left is sent to `dropped`.
    pub async fn shutdown(self, deadline: std::time::Duration) {
        let now = tokio::time::Instant::now();
        // A deadline past what an Instant holds means "no deadline", not a panic.
        let at = now
            .checked_add(deadline)
            .unwrap_or_else(|| now + std::time::Duration::from_secs(86_400 * 365));
        let all = self.sinks.into_iter().map(|sink| sink.shutdown(at));
        // Concurrently: each sink gets the whole deadline, not what the
        // previous one left over.
        let handles: Vec<_> = all.map(tokio::spawn).collect();
        for handle in handles {
            if let Err(err) = handle.await {
                tracing::error!(error = %err, "sink shutdown failed");
            }
        }
    }
}
