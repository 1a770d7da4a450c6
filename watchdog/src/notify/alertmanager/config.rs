//! `[notify.alertmanager]`: one table, one sink per URL (an HA cluster's
//! peers each get every alert).
//!
//! ```toml
//! [notify.alertmanager]
//! url = ["http://am-1:9093", "http://am-2:9093"]   # or one string
//! resend_interval = "1m"
//! heartbeat = true         # or an interval, e.g. "30s"
//! generator_url = "http://watchdog.example:9465/metrics"
//! tls_config = { ca_file = "am-ca.crt" }
//! ```

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::super::config::{check_tls, redact};
use super::super::registry::{SinkConfig, Started};
use super::Alertmanager;
use crate::dur::Dur;
use crate::exporter::Exporter;
use crate::target::check_url;
use crate::tls::TlsConfig;

/// `[notify.alertmanager]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// One base URL, or several (an HA cluster: each gets every alert).
    #[serde(
        deserialize_with = "one_or_many",
        serialize_with = "redacted_base_urls"
    )]
    pub url: Vec<String>,
    /// TLS settings for https URLs; none: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// Firing alerts are re-sent at least this often.
    #[serde(default = "default_resend")]
    pub resend_interval: Dur,
    /// An always-firing `WatchdogHeartbeat` alert for a dead-man's switch.
    #[serde(default, skip_serializing_if = "Heartbeat::is_off")]
    pub heartbeat: Heartbeat,
    /// `generatorURL` of every alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    /// Per request.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Retries after the first attempt.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Events waiting per Alertmanager at most.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// First retry waits up to this long (full jitter), doubling each time.
    #[serde(default = "default_backoff")]
    pub backoff: Dur,
    /// Retries never wait longer than this.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Dur,
}

impl AlertmanagerConfig {
    /// An Alertmanager sink for `urls` with every default.
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            url: urls,
            tls_config: None,
            resend_interval: default_resend(),
            heartbeat: Heartbeat::default(),
            generator_url: None,
            timeout: default_timeout(),
            max_retries: default_max_retries(),
            queue: default_queue(),
            backoff: default_backoff(),
            backoff_max: default_backoff_max(),
        }
    }

    /// `endsAt` of a firing alert is this far ahead: a few missed resends
    /// are tolerated, a dead watchdog's alerts expire.
    pub fn firing_horizon(&self) -> Duration {
        self.resend_interval.0.saturating_mul(4)
    }

    /// How often the heartbeat is sent, when on.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        match self.heartbeat {
            Heartbeat::Enabled(false) => None,
            Heartbeat::Enabled(true) => Some(self.resend_interval.0),
            Heartbeat::Every(d) => Some(d),
        }
    }
}

impl SinkConfig for AlertmanagerConfig {
    fn names(&self, _index: usize) -> Vec<String> {
        (0..self.url.len())
            .map(|i| format!("alertmanager[{i}]"))
            .collect()
    }

    fn validate(&self, _index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.url.is_empty(),
            "notify.alertmanager: url needs at least one address"
        );
        for url in &self.url {
            check_url(url, false).map_err(|e| anyhow::anyhow!("notify.alertmanager: {e}"))?;
        }
        check_tls(self.tls_config.as_ref())
            .map_err(|e| anyhow::anyhow!("notify.alertmanager: tls_config: {e}"))?;
        anyhow::ensure!(
            !self.resend_interval.0.is_zero(),
            "notify.alertmanager: resend_interval must be above 0s"
        );
        anyhow::ensure!(
            self.queue > 0,
            "notify.alertmanager: queue must be at least 1"
        );
        if let Heartbeat::Every(d) = self.heartbeat {
            anyhow::ensure!(
                !d.is_zero(),
                "notify.alertmanager: heartbeat must be above 0s"
            );
        }
        Ok(())
    }

    fn anchor_tls(&mut self, base: &Path) {
        self.tls_config = self.tls_config.take().map(|t| t.anchored(base));
    }

    fn start(&self, index: usize, exporter: &Exporter) -> anyhow::Result<Vec<Started>> {
        self.names(index)
            .into_iter()
            .zip(&self.url)
            .map(|(name, url)| {
                let sink = Alertmanager::new(&name, url, self, exporter.clone())?;
                Ok(Started {
                    name,
                    sink: Box::new(sink),
                    capacity: self.queue,
                    // Alertmanager groups by itself.
                    grouping: None,
                })
            })
            .collect()
    }

    fn example() -> &'static str {
        "url = \"http://h:1\"\n"
    }
}

/// `heartbeat = true | false | "30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// `true`: every `resend_interval`; `false`: off.
    Enabled(bool),
    /// At its own interval.
    Every(Duration),
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::Enabled(false)
    }
}

impl Heartbeat {
    fn is_off(&self) -> bool {
        *self == Self::Enabled(false)
    }
}

impl Serialize for Heartbeat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Enabled(b) => s.serialize_bool(*b),
            Self::Every(d) => s.collect_str(&Dur(*d)),
        }
    }
}

impl<'de> Deserialize<'de> for Heartbeat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Heartbeat;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or an interval such as \"30s\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Heartbeat, E> {
                Ok(Heartbeat::Enabled(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Heartbeat, E> {
                v.parse::<Dur>()
                    .map(|d| Heartbeat::Every(d.0))
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn redacted_base_urls<S: Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| redact(u, false)))
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d)? {
        OneOrMany::One(url) => Ok(vec![url]),
        OneOrMany::Many(urls) => Ok(urls),
    }
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_max_retries() -> u32 {
    3
}
fn default_queue() -> usize {
    1024
}
fn default_backoff() -> Dur {
    Dur(Duration::from_millis(500))
}
fn default_backoff_max() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_resend() -> Dur {
    Dur(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::tests::parse;

    #[test]
    fn reads_a_cluster_of_two_with_a_heartbeat() {
        let cfg = parse(
            "[alertmanager]\nurl = [\"http://am-1:9093\", \"http://am-2:9093\"]\nheartbeat = \"30s\"\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let am = cfg.alertmanager.as_ref().unwrap();
        assert_eq!(am.url.len(), 2);
        assert_eq!(am.names(0), ["alertmanager[0]", "alertmanager[1]"]);
        assert_eq!(am.resend_interval.0, Duration::from_secs(60));
        assert_eq!(am.heartbeat_interval(), Some(Duration::from_secs(30)));
        assert_eq!(am.firing_horizon(), Duration::from_secs(240));
    }

    #[test]
    fn one_url_may_be_a_string_and_heartbeat_a_bool() {
        let cfg = parse("[alertmanager]\nurl = \"http://am:9093\"\nheartbeat = true\n").unwrap();
        let am = cfg.alertmanager.unwrap();
        assert_eq!(am.url, ["http://am:9093"]);
        assert_eq!(am.heartbeat_interval(), Some(am.resend_interval.0));
    }

    #[test]
    fn bad_tables_are_errors_that_name_the_key() {
        assert!(parse("[alertmanager]\nurl = \"http://x\"\nresend = \"1m\"\n").is_err());
        let none = parse("[alertmanager]\nurl = []\n").unwrap();
        let err = none.validate().unwrap_err().to_string();
        assert_eq!(err, "notify.alertmanager: url needs at least one address");
        let zero = parse("[alertmanager]\nurl = \"http://x\"\nheartbeat = \"0s\"\n").unwrap();
        let err = zero.validate().unwrap_err().to_string();
        assert_eq!(err, "notify.alertmanager: heartbeat must be above 0s");
    }
}
