//! A generic JSON webhook: `POST` of the alert line (or of a JSON array of
//! lines when `batch` is set) for every `firing`, `resolved` and `repeat`.
//!
//! The rate limit (governor) is checked before a request: past it the
//! events are given back (and become `dropped` lines) rather than queued
//! for later, because a late page is worse than an honest "dropped" in the
//! alert log. Retries wait for the limiter, so they never break it either.

use bytes::Bytes;
use reqwest::Url;
use shared_schema::AlertLine;

use super::config::{redact, WebhookConfig};
use super::delivery::Endpoint;
use super::group::Group;
use super::sink::{BoxFuture, Sink};
use crate::exporter::Exporter;

/// One `[[notify.webhook]]`.
#[derive(Debug)]
pub struct Webhook {
    endpoint: Endpoint,
    batch: Option<usize>,
}

impl Webhook {
    /// Builds the sink named `name` from its config.
    pub fn new(name: &str, cfg: &WebhookConfig, exporter: Exporter) -> anyhow::Result<Self> {
        let url = Url::parse(&cfg.url)
            .map_err(|e| anyhow::anyhow!("{name}: invalid url {}: {e}", redact(&cfg.url, true)))?;
        Ok(Self {
            endpoint: Endpoint::new(name, url, &cfg.delivery, cfg.tls_config.as_ref(), exporter)?,
            batch: cfg.batch,
        })
    }

    fn body(&self, lines: &[AlertLine]) -> serde_json::Result<Vec<u8>> {
        match (self.batch, lines) {
            (None, [line]) => serde_json::to_vec(line),
            _ => serde_json::to_vec(lines),
        }
    }
}

/// Alert lines one grouped message carries at most; the rest are counted.
const GROUP_CAP: usize = 100;

impl Sink for Webhook {
    fn max_batch(&self) -> usize {
        self.batch.unwrap_or(1)
    }

    fn deliver_group(&mut self, group: Group) -> BoxFuture<'_, Vec<AlertLine>> {
        Box::pin(async move {
            let body = group.to_json(GROUP_CAP);
            self.endpoint.send_group(group, body).await
        })
    }

    fn deliver(&mut self, lines: Vec<AlertLine>) -> BoxFuture<'_, Vec<AlertLine>> {
        Box::pin(async move {
            let body = match self.body(&lines) {
                Ok(body) => Bytes::from(body),
                Err(err) => {
                    tracing::error!(sink = %self.endpoint.name(), error = %err, "alert line not serialisable");
                    return lines;
                }
            };
            match self.endpoint.send(body).await {
                Ok(()) => Vec::new(),
                Err(err) => {
                    tracing::warn!(sink = %self.endpoint.name(), events = lines.len(), error = %err, "webhook failed");
                    lines
                }
            }
        })
    }
}
