//! Notifications: one [`Sink`] per target of notifications, each behind its
//! own bounded queue and worker task, so a slow or dead sink never blocks
//! polling or another sink. Whatever a sink cannot deliver comes back as a
//! `dropped` [`AlertLine`] on the channel given to [`Notifier::start`], for
//! the alert log: nothing is lost silently.
//!
//! Layout: `config` (the `[notify]` table), `sink` (the trait), `queue`
//! (queue + worker, counting, `dropped` lines), `post` + `backoff` (one
//! JSON POST with retries), `delivery` (the delivery keys every HTTP sink
//! shares, and its endpoint), and one file per sink: `webhook`,
//! `alertmanager`, `slack`, `pagerduty`. Adding a sink is one new file
//! (its config and its [`Sink`]) plus its `pub mod` and its loop in
//! [`Notifier::start`] here, its field of [`config::NotifyConfig`] and that
//! field's duplicate-name check, and a bad-key case in `reference.rs`.

pub mod alertmanager;
pub mod backoff;
pub mod config;
pub mod delivery;
pub mod group;
pub mod pagerduty;
pub mod post;
pub mod queue;
pub mod sink;
pub mod slack;
pub mod webhook;

use std::sync::Arc;

use shared_schema::{AlertEvent, AlertLine};
use tokio::sync::mpsc;

pub use config::NotifyConfig;
pub use group::Grouping;
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
        let mut sinks = Vec::new();
        let mut add =
            |name: &str, sink: Box<dyn Sink>, capacity: usize, grouping: Option<&Grouping>| {
                tracing::info!(
                    sink = name,
                    capacity,
                    grouped = grouping.is_some_and(Grouping::is_on),
                    "notification sink started"
                );
                sinks.push(SinkQueue::spawn(
                    name,
                    sink,
                    capacity,
                    grouping,
                    exporter.clone(),
                    dropped.clone(),
                ));
            };
        for (i, cfg) in config.webhook.iter().enumerate() {
            let name = cfg.sink_name(i);
            let sink = webhook::Webhook::new(&name, cfg, exporter.clone())?;
            add(
                &name,
                Box::new(sink),
                cfg.delivery.queue,
                Some(&cfg.grouping),
            );
        }
        for (i, cfg) in config.slack.iter().enumerate() {
            let (name, url) = (cfg.sink_name(i), cfg.resolve_url(i)?);
            let sink = slack::Slack::new(&name, url, cfg, exporter.clone())?;
            add(
                &name,
                Box::new(sink),
                cfg.delivery.queue,
                Some(&cfg.grouping),
            );
        }
        for (i, cfg) in config.pagerduty.iter().enumerate() {
            let (name, (url, key)) = (cfg.sink_name(i), cfg.resolve(i)?);
            let sink = pagerduty::PagerDuty::new(&name, url, key, cfg, exporter.clone())?;
            add(
                &name,
                Box::new(sink),
                cfg.delivery.queue,
                Some(&cfg.grouping),
            );
        }
        if let Some(cfg) = &config.alertmanager {
            for (i, url) in cfg.url.iter().enumerate() {
                let name = format!("alertmanager[{i}]");
                let sink = alertmanager::Alertmanager::new(&name, url, cfg, exporter.clone())?;
                // Alertmanager groups by itself.
                add(&name, Box::new(sink), cfg.queue, None);
            }
        }
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
