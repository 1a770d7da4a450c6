//! A generic JSON webhook: `POST` of the alert line (or of a JSON array of
//! lines when `batch` is set) for every `firing`, `resolved` and `repeat`.
//!
//! The rate limit (governor) is checked before a request: past it the
//! events are given back (and become `dropped` lines) rather than queued
//! for later, because a late page is worse than an honest "dropped" in the
//! alert log. Retries wait for the limiter, so they never break it either.
//!
//! ```toml
//! [[notify.webhook]]
//! url = "http://127.0.0.1:9099/hook"
//! rate = "10/min"          # N/s, N/min or N/h; past it: a "dropped" line
//! timeout = "10s"
//! max_retries = 3
//! queue = 1024
//! batch = 20               # optional: POST a JSON array of up to 20 lines
//! ```

use std::path::Path;

use bytes::Bytes;
use reqwest::Url;
use serde::{Deserialize, Serialize, Serializer};
use shared_schema::AlertLine;

use super::config::{check_tls, redact};
use super::delivery::{Delivery, Endpoint, Unknown};
use super::group::{Group, Grouping};
use super::registry::{SinkConfig, Started};
use super::sink::{BoxFuture, Sink};
use crate::exporter::Exporter;
use crate::target::check_url;
use crate::tls::TlsConfig;

/// One `[[notify.webhook]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Name in metrics and `dropped` lines; `webhook[<index>]` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where to POST.
    #[serde(serialize_with = "redacted_url")]
    pub url: String,
    /// TLS settings for an https `url`; none: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// POST a JSON array of up to this many lines instead of one object each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// `rate`, `timeout`, `max_retries`, `queue`, `backoff`, `backoff_max`.
    #[serde(flatten)]
    pub delivery: Delivery,
    /// `group_by`, `group_wait`, `group_interval`.
    #[serde(flatten)]
    pub grouping: Grouping,
    /// Keys no field took: an error at start.
    #[serde(flatten, skip_serializing_if = "Unknown::is_empty")]
    pub unknown: Unknown,
}

fn redacted_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact(url, true))
}

impl WebhookConfig {
    /// Every key of the table, the delivery and grouping keys included.
    pub fn keys() -> Vec<&'static str> {
        let own = ["name", "url", "tls_config", "batch"];
        super::delivery::all_keys(&own)
    }

    /// A webhook for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            name: None,
            url: url.into(),
            tls_config: None,
            batch: None,
            delivery: Delivery::default(),
            grouping: Grouping::default(),
            unknown: Unknown::default(),
        }
    }

    /// The name in metrics and `dropped` lines.
    pub fn sink_name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("webhook[{index}]"))
    }
}

impl SinkConfig for WebhookConfig {
    fn names(&self, index: usize) -> Vec<String> {
        vec![self.sink_name(index)]
    }

    fn validate(&self, index: usize) -> anyhow::Result<()> {
        let name = self.sink_name(index);
        let table = format!("notify.webhook {name}");
        self.unknown.reject(&table, &Self::keys())?;
        check_url(&self.url, true).map_err(|e| anyhow::anyhow!("{table}: {e}"))?;
        self.delivery.validate(&table)?;
        self.grouping.validate(&table)?;
        check_tls(self.tls_config.as_ref())
            .map_err(|e| anyhow::anyhow!("{table}: tls_config: {e}"))?;
        anyhow::ensure!(self.batch != Some(0), "{table}: batch must be at least 1");
        Ok(())
    }

    fn anchor_tls(&mut self, base: &Path) {
        self.tls_config = self.tls_config.take().map(|t| t.anchored(base));
    }

    fn start(&self, index: usize, exporter: &Exporter) -> anyhow::Result<Vec<Started>> {
        let name = self.sink_name(index);
        let sink = Webhook::new(&name, self, exporter.clone())?;
        Started::one(name, sink, &self.delivery, &self.grouping)
    }

    fn example() -> &'static str {
        "url = \"http://h:1\"\n"
    }
}

/// The sink of one `[[notify.webhook]]`.
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
