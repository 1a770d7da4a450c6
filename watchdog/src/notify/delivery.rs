//! The delivery keys every HTTP sink shares (`rate`, `timeout`,
//! `max_retries`, `queue`, `backoff`, `backoff_max`), declared once and
//! flattened into each sink's table, so a new sink does not re-declare
//! them and cannot give them other defaults.
//!
//! `#[serde(flatten)]` and `deny_unknown_fields` do not combine in serde,
//! so a sink that flattens [`Delivery`] catches what is left in an
//! [`Unknown`] map and [`Unknown::reject`] turns a typo into an error that
//! names the key.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use edges::dur::Dur;
use governor::{DefaultDirectRateLimiter, RateLimiter};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::backoff::Backoff;
use super::config::Rate;
use super::group::Group;
use super::post::{PostError, Poster};
use crate::exporter::Exporter;
use crate::tls::TlsConfig;
use shared_schema::AlertLine;

/// The delivery keys of one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// At most this many requests; past it events are dropped. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Per request.
    #[serde(default = "timeout")]
    pub timeout: Dur,
    /// Retries after the first attempt (5xx, 429, connect errors, timeouts).
    #[serde(default = "max_retries")]
    pub max_retries: u32,
    /// Events waiting for this sink at most; past it events are dropped.
    #[serde(default = "queue")]
    pub queue: usize,
    /// First retry waits up to this long (full jitter), doubling each time.
    #[serde(default = "backoff")]
    pub backoff: Dur,
    /// Retries never wait longer than this (a receiver's `Retry-After` may
    /// ask for longer, up to [`MAX_RETRY_AFTER`]).
    #[serde(default = "backoff_max")]
    pub backoff_max: Dur,
}

/// The keys [`Delivery`] adds to a sink's table.
pub const KEYS: [&str; 6] = [
    "rate",
    "timeout",
    "max_retries",
    "queue",
    "backoff",
    "backoff_max",
];

/// A sink's own keys followed by the delivery and grouping keys: the
/// list an unknown key is told about, and the reference's table.
pub fn all_keys(own: &[&'static str]) -> Vec<&'static str> {
    own.iter()
        .chain(KEYS.iter())
        .chain(super::group::KEYS.iter())
        .copied()
        .collect()
}

/// The longest `Retry-After` a sink honours; a receiver asking for more
/// gets the event back as `dropped` rather than a page hours late.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl Default for Delivery {
    fn default() -> Self {
        Self {
            rate: None,
            timeout: timeout(),
            max_retries: max_retries(),
            queue: queue(),
            backoff: backoff(),
            backoff_max: backoff_max(),
        }
    }
}

impl Delivery {
    /// The retry waits these keys describe.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: self.backoff.0,
            cap: self.backoff_max.0,
        }
    }

    /// What serde cannot check, for the sink called `name`.
    pub fn validate(&self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.queue > 0, "{name}: queue must be at least 1");
        anyhow::ensure!(
            !self.timeout.0.is_zero(),
            "{name}: timeout must be above 0s"
        );
        Ok(())
    }
}

/// Where one sink POSTs, with its rate limit and retries: what a sink that
/// sends one JSON body per event needs besides the body itself.
#[derive(Debug)]
pub struct Endpoint {
    name: String,
    url: Url,
    limiter: Option<DefaultDirectRateLimiter>,
    poster: Poster,
}

/// Why an [`Endpoint`] did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Over the sink's `rate`: not sent at all.
    #[error("over the rate limit")]
    RateLimited,
    /// Sent, and given up after the retries.
    #[error(transparent)]
    Post(#[from] PostError),
}

impl Endpoint {
    /// The endpoint `url` of the sink `name`, delivering as `delivery` says,
    /// over TLS as `tls` says (system roots when `None`).
    pub fn new(
        name: &str,
        url: Url,
        delivery: &Delivery,
        tls: Option<&TlsConfig>,
        exporter: Exporter,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            url,
            limiter: delivery.rate.map(|r| RateLimiter::direct(r.quota())),
            poster: Poster::with_tls(
                name,
                delivery.timeout.0,
                delivery.max_retries,
                delivery.backoff(),
                exporter,
                tls,
            )?,
        })
    }

    /// The sink's name, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// POSTs one JSON body: refused past the rate limit (a late page is
    /// worse than an honest `dropped` line), else retried as [`Poster`] does.
    pub async fn send(&self, body: Bytes) -> Result<(), SendError> {
        if let Some(limiter) = &self.limiter {
            if limiter.check().is_err() {
                return Err(SendError::RateLimited);
            }
        }
        self.poster
            .post_json(&self.url, body, self.limiter.as_ref())
            .await?;
        Ok(())
    }

    /// Sends one JSON body per line (`None`: that event has no message);
    /// gives back the lines not delivered, for `dropped` lines.
    pub async fn send_each(
        &self,
        lines: Vec<AlertLine>,
        body: impl Fn(&AlertLine) -> Option<serde_json::Value>,
    ) -> Vec<AlertLine> {
        let mut failed = Vec::new();
        for line in lines {
            let Some(body) = body(&line) else {
                continue;
            };
            if let Err(err) = self.send(Bytes::from(body.to_string())).await {
                tracing::warn!(sink = %self.name, key = %line.key, error = %err, "not delivered");
                failed.push(line);
            }
        }
        failed
    }

    /// Sends one group's message; gives back its lines when not delivered.
    pub async fn send_group(&self, group: Group, body: serde_json::Value) -> Vec<AlertLine> {
        match self.send(Bytes::from(body.to_string())).await {
            Ok(()) => Vec::new(),
            Err(err) => {
                tracing::warn!(sink = %self.name, group = %group.key, error = %err, "not delivered");
                group.lines
            }
        }
    }
}

/// The keys of a sink's table that no field took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Unknown(pub BTreeMap<String, toml::Value>);

impl Unknown {
    /// An error naming the first unknown key of `table` and the keys it
    /// takes (`known`), in serde's own words, if any key was unknown.
    pub fn reject(&self, table: &str, known: &[&str]) -> anyhow::Result<()> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(key) => {
                let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                anyhow::bail!(
                    "{table}: unknown field `{key}`, expected one of {}",
                    list.join(", ")
                )
            }
        }
    }

    /// Whether nothing was left over (for `skip_serializing_if`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A secret given inline (`key`) or in a file (`key_file`, read with the
/// one token-file reader): exactly one of the two, never echoed in errors.
pub fn secret(
    table: &str,
    key: &str,
    inline: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    match (inline, file) {
        (Some(value), None) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        (Some(_), None) => anyhow::bail!("{table}: {key} is empty"),
        (None, Some(path)) => {
            edges::token_file::read(path).map_err(|e| anyhow::anyhow!("{table}: {key}_file: {e}"))
        }
        (Some(_), Some(_)) => anyhow::bail!("{table}: give {key} or {key}_file, not both"),
        (None, None) => anyhow::bail!("{table}: {key} or {key}_file is required"),
    }
}

fn timeout() -> Dur {
    Dur::secs(10)
}
fn max_retries() -> u32 {
    3
}
fn queue() -> usize {
    1024
}
fn backoff() -> Dur {
    Dur(Duration::from_millis(500))
}
fn backoff_max() -> Dur {
    Dur::secs(30)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sink {
        url: String,
        #[serde(flatten)]
        delivery: Delivery,
        #[serde(flatten)]
        unknown: Unknown,
    }

    #[test]
    fn flattened_keys_parse_with_their_defaults_and_typos_are_named() {
        let s: Sink = toml::from_str("url = \"x\"\nrate = \"2/s\"\ntimeout = \"3s\"\n").unwrap();
        assert_eq!(s.url, "x");
        assert_eq!(s.delivery.rate.unwrap().to_string(), "2/s");
        assert_eq!(s.delivery.timeout.0, Duration::from_secs(3));
        assert_eq!(s.delivery.max_retries, 3);
        assert_eq!(s.delivery.backoff().cap, Duration::from_secs(30));
        s.unknown.reject("notify.slack[0]", &["url"]).unwrap();

        let typo: Sink = toml::from_str("url = \"x\"\nmax_retry = 3\n").unwrap();
        let err = typo
            .unknown
            .reject("notify.slack[0]", &["url", "rate"])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "notify.slack[0]: unknown field `max_retry`, expected one of `url`, `rate`"
        );
    }

    #[test]
    fn keys_are_every_field_delivery_writes() {
        let d = Delivery {
            rate: "1/s".parse().ok(),
            ..Delivery::default()
        };
        let written = toml::Value::try_from(&d).unwrap();
        let mut keys: Vec<&str> = written
            .as_table()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut want = KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
    }

    #[test]
    fn a_bad_duration_names_the_form() {
        let err = toml::from_str::<Sink>("url = \"x\"\ntimeout = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
    }
}
