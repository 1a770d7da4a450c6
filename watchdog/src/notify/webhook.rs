//! A generic JSON webhook: `POST` of the alert line (or of a JSON array of
//! lines when `batch` is set) for every `firing`, `resolved` and `repeat`.
//!
//! The rate limit (governor) is checked before a request: past it the
//! events are given back (and become `dropped` lines) rather than queued
//! for later, because a late page is worse than an honest "dropped" in the
//! alert log. Retries wait for the limiter, so they never break it either.

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, RateLimiter};
use reqwest::Url;
use shared_schema::AlertLine;

use super::config::{redact, WebhookConfig};
use super::group::Group;
use super::post::Poster;
use super::sink::{BoxFuture, Sink};
use crate::exporter::Exporter;

/// One `[[notify.webhook]]`.
#[derive(Debug)]
pub struct Webhook {
    name: String,
    url: Url,
    batch: Option<usize>,
    limiter: Option<DefaultDirectRateLimiter>,
    poster: Poster,
}

impl Webhook {
    /// Builds the sink named `name` from its config.
    pub fn new(name: &str, cfg: &WebhookConfig, exporter: Exporter) -> anyhow::Result<Self> {
        let url = Url::parse(&cfg.url)
            .map_err(|e| anyhow::anyhow!("{name}: invalid url {}: {e}", redact(&cfg.url, true)))?;
        let d = &cfg.delivery;
        Ok(Self {
            name: name.to_owned(),
            url,
            batch: cfg.batch,
            limiter: d.rate.map(|r| RateLimiter::direct(r.quota())),
            poster: Poster::new(name, d.timeout.0, d.max_retries, d.backoff(), exporter)?,
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
            if let Some(limiter) = &self.limiter {
                if limiter.check().is_err() {
                    tracing::warn!(sink = %self.name, group = %group.key, "over the rate limit");
                    return group.lines;
                }
            }
            let body = Bytes::from(group.to_json(GROUP_CAP).to_string());
            match self
                .poster
                .post_json(&self.url, body, self.limiter.as_ref())
                .await
            {
                Ok(()) => Vec::new(),
                Err(err) => {
                    tracing::warn!(sink = %self.name, group = %group.key, error = %err, "webhook failed");
                    group.lines
                }
            }
        })
    }

    fn deliver(&mut self, lines: Vec<AlertLine>) -> BoxFuture<'_, Vec<AlertLine>> {
        Box::pin(async move {
            if let Some(limiter) = &self.limiter {
                if limiter.check().is_err() {
                    tracing::warn!(sink = %self.name, events = lines.len(), "over the rate limit");
                    return lines;
                }
            }
            let body = match self.body(&lines) {
                Ok(body) => Bytes::from(body),
                Err(err) => {
                    tracing::error!(sink = %self.name, error = %err, "alert line not serialisable");
                    return lines;
                }
            };
            match self
                .poster
                .post_json(&self.url, body, self.limiter.as_ref())
                .await
            {
                Ok(()) => Vec::new(),
                Err(err) => {
                    tracing::warn!(sink = %self.name, events = lines.len(), error = %err, "webhook failed");
                    lines
                }
            }
        })
    }
}
