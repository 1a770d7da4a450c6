//! The `[notify]` table of the config file (CONTRACT.md section 5).
//!
//! Strict on input (`deny_unknown_fields`: a typo is an error, not a sink
//! that silently never fires) and safe on output: `Serialize` feeds
//! `--print-config`, so URLs are printed with their secrets (user info,
//! path and query of a webhook, which is where chat services put their
//! tokens) replaced by `REDACTED`.
//!
//! ```toml
//! [notify]
//! repeat_interval = "4h"
//!
//! [[notify.webhook]]
//! url = "http://127.0.0.1:9099/hook"
//! rate = "10/min"          # N/s, N/min or N/h; past it: a "dropped" line
//! timeout = "10s"
//! max_retries = 3
//! queue = 1024
//! batch = 20               # optional: POST a JSON array of up to 20 lines
//!
//! [notify.alertmanager]
//! url = ["http://am-1:9093", "http://am-2:9093"]   # or one string
//! resend_interval = "1m"
//! heartbeat = true         # or an interval, e.g. "30s"
//! generator_url = "http://watchdog.example:9465/metrics"
//! tls_config = { ca_file = "am-ca.crt" }   # any sink; see crate::tls
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::delivery::{Delivery, Unknown};
use super::group::Grouping;
use crate::target::check_url;
pub use crate::target::redact;
use crate::tls::{ClientTlsError, TlsConfig};

/// `[notify]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// How often a firing alert is repeated in the log and to sinks.
    #[serde(default, with = "humantime_serde_opt")]
    pub repeat_interval: Option<Duration>,
    /// `[[notify.webhook]]`: each gets its own queue and worker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook: Vec<WebhookConfig>,
    /// `[notify.alertmanager]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerConfig>,
    /// `[[notify.slack]]` (page 3): Slack incoming webhooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slack: Vec<super::slack::SlackConfig>,
    /// `[[notify.pagerduty]]` (page 3): PagerDuty Events API v2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pagerduty: Vec<super::pagerduty::PagerDutyConfig>,
}

/// One `[[notify.webhook]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Name in metrics and `dropped` lines; `webhook[<index>]` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where to POST.
    #[serde(serialize_with = "redacted_webhook_url")]
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
    #[serde(default = "default_resend", with = "humantime_serde")]
    pub resend_interval: Duration,
    /// An always-firing `WatchdogHeartbeat` alert for a dead-man's switch.
    #[serde(default, skip_serializing_if = "Heartbeat::is_off")]
    pub heartbeat: Heartbeat,
    /// `generatorURL` of every alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    /// Per request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries after the first attempt.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Events waiting per Alertmanager at most.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// First retry waits up to this long (full jitter), doubling each time.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Retries never wait longer than this.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl AlertmanagerConfig {
    /// `endsAt` of a firing alert is this far ahead: a few missed resends
    /// are tolerated, a dead watchdog's alerts expire.
    pub fn firing_horizon(&self) -> Duration {
        self.resend_interval.saturating_mul(4)
    }

    /// How often the heartbeat is sent, when on.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        match self.heartbeat {
            Heartbeat::Enabled(false) => None,
            Heartbeat::Enabled(true) => Some(self.resend_interval),
            Heartbeat::Every(d) => Some(d),
        }
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
            Self::Every(d) => s.collect_str(&humantime::format_duration(*d)),
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
                parse_duration(v).map(Heartbeat::Every).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A webhook's `rate`: the one rate type of `edges` (`N/s`, `N/min`,
/// `N/h`), with the governor quota this watchdog builds from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate(pub edges::rate::Rate);

impl Rate {
    /// `count` per `per`, `count` also the burst.
    pub fn quota(&self) -> governor::Quota {
        use edges::rate::Per;
        let count: NonZeroU32 = self.0.count;
        match self.0.per {
            Per::Second => governor::Quota::per_second(count),
            Per::Minute => governor::Quota::per_minute(count),
            Per::Hour => governor::Quota::per_hour(count),
        }
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        text.parse().map(Self)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl NotifyConfig {
    /// Takes relative `tls_config` paths from `base` (the config file's directory).
    pub fn anchor_tls(&mut self, base: &std::path::Path) {
        let sinks = self
            .webhook
            .iter_mut()
            .map(|w| &mut w.tls_config)
            .chain(self.alertmanager.iter_mut().map(|a| &mut a.tls_config));
        for tls in sinks {
            *tls = tls.take().map(|t| t.anchored(base));
        }
    }

    /// Checks what serde cannot: URLs, sizes, intervals, unique names.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut names = std::collections::HashSet::new();
        for (i, w) in self.webhook.iter().enumerate() {
            let name = w.sink_name(i);
            anyhow::ensure!(
                names.insert(name.clone()),
                "notify.webhook: two webhooks are named {name:?}"
            );
            let table = format!("notify.webhook {name}");
            w.unknown.reject(&table, &WebhookConfig::keys())?;
            check_url(&w.url, true).map_err(|e| anyhow::anyhow!("{table}: {e}"))?;
            w.delivery.validate(&table)?;
            w.grouping.validate(&table)?;
            check_tls(w.tls_config.as_ref())
                .map_err(|e| anyhow::anyhow!("{table}: tls_config: {e}"))?;
            anyhow::ensure!(
                w.batch != Some(0),
                "notify.webhook {name}: batch must be at least 1"
            );
        }
        for (i, s) in self.slack.iter().enumerate() {
            s.resolve_url(i)?;
            anyhow::ensure!(
                names.insert(s.sink_name(i)),
                "notify.slack: two sinks are named {:?}",
                s.sink_name(i)
            );
        }
        for (i, p) in self.pagerduty.iter().enumerate() {
            p.resolve(i)?;
            anyhow::ensure!(
                names.insert(p.sink_name(i)),
                "notify.pagerduty: two sinks are named {:?}",
                p.sink_name(i)
            );
        }
        if let Some(am) = &self.alertmanager {
            anyhow::ensure!(
                !am.url.is_empty(),
                "notify.alertmanager: url needs at least one address"
            );
            for url in &am.url {
                check_url(url, false).map_err(|e| anyhow::anyhow!("notify.alertmanager: {e}"))?;
            }
            check_tls(am.tls_config.as_ref())
                .map_err(|e| anyhow::anyhow!("notify.alertmanager: tls_config: {e}"))?;
            anyhow::ensure!(
                !am.resend_interval.is_zero(),
                "notify.alertmanager: resend_interval must be above 0s"
            );
            anyhow::ensure!(
                am.queue > 0,
                "notify.alertmanager: queue must be at least 1"
            );
            if let Heartbeat::Every(d) = am.heartbeat {
                anyhow::ensure!(
                    !d.is_zero(),
                    "notify.alertmanager: heartbeat must be above 0s"
                );
            }
        }
        Ok(())
    }
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
}

/// Reads every file a `tls_config` names, so a bad one fails at start.
fn check_tls(tls: Option<&TlsConfig>) -> Result<(), ClientTlsError> {
    tls.map_or(Ok(()), |t| t.rustls().map(drop))
}

fn redacted_webhook_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact(url, true))
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

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_retries() -> u32 {
    3
}
fn default_queue() -> usize {
    1024
}
fn default_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    // The one duration type: human forms, at most 30 days.
    text.parse::<edges::dur::Dur>().map(|d| d.0)
}

fn format_duration(d: &Duration) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else {
        humantime::format_duration(*d).to_string()
    }
}

mod humantime_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| super::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotifyConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn reads_the_documented_example() {
        let cfg = parse(
            r#"
            repeat_interval = "4h"
            [[webhook]]
            url = "http://127.0.0.1:9099/hooks/T000/secret-token?key=abc"
            rate = "10/min"
            batch = 20
            [[webhook]]
            name = "ops"
            url = "http://127.0.0.1:9099/"
            rate = "1/s"
            timeout = "2s"
            [alertmanager]
            url = ["http://am-1:9093", "http://am-2:9093"]
            heartbeat = "30s"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.repeat_interval, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(cfg.webhook[0].delivery.rate.unwrap().to_string(), "10/min");
        assert_eq!(cfg.webhook[0].sink_name(0), "webhook[0]");
        assert_eq!(cfg.webhook[1].sink_name(1), "ops");
        assert_eq!(cfg.webhook[1].delivery.timeout.0, Duration::from_secs(2));
        assert_eq!(cfg.webhook[1].delivery.max_retries, 3);
        let am = cfg.alertmanager.as_ref().unwrap();
        assert_eq!(am.url.len(), 2);
        assert_eq!(am.resend_interval, Duration::from_secs(60));
        assert_eq!(am.heartbeat_interval(), Some(Duration::from_secs(30)));
        assert_eq!(am.firing_horizon(), Duration::from_secs(240));
    }

    #[test]
    fn one_alertmanager_url_may_be_a_string_and_heartbeat_a_bool() {
        let cfg = parse("[alertmanager]\nurl = \"http://am:9093\"\nheartbeat = true\n").unwrap();
        let am = cfg.alertmanager.unwrap();
        assert_eq!(am.url, ["http://am:9093"]);
        assert_eq!(am.heartbeat_interval(), Some(am.resend_interval));
    }

    #[test]
    fn rates_parse_or_say_how_to_write_them() {
        for (text, want) in [("10/min", "10/min"), ("1/s", "1/s"), (" 5 / h ", "5/h")] {
            assert_eq!(text.parse::<Rate>().unwrap().to_string(), want);
        }
        // A bare count is per second, as for the emitter's --rate-limit (one parser).
        assert_eq!("10".parse::<Rate>().unwrap().to_string(), "10/s");
        for bad in ["0/s", "x/min", "10/day", "-1/s", ""] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.contains("N/s, N/min or N/h"), "{bad}: {err}");
        }
        let err = parse("[[webhook]]\nurl = \"http://x/\"\nrate = \"10/week\"\n").unwrap_err();
        assert!(err.to_string().contains("N/min"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let typo = parse("[[webhook]]\nurl = \"http://x/\"\nrat = \"1/s\"\n").unwrap();
        let err = typo.validate().unwrap_err().to_string();
        assert!(
            err.contains("unknown field `rat`, expected one of `name`, `url`"),
            "{err}"
        );
        assert!(parse("[alertmanager]\nurl = \"http://x\"\nresend = \"1m\"\n").is_err());
        assert!(parse("webhooks = []\n").is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let https = parse("[[webhook]]\nurl = \"https://chat.example/hook/secret\"\n").unwrap();
        https.validate().unwrap();
        let bad_ca = parse("[[webhook]]\nurl = \"https://chat.example/hook/secret\"\ntls_config = { ca_file = \"/nonexistent/ca.crt\" }\n").unwrap();
        let err = bad_ca.validate().unwrap_err().to_string();
        assert!(
            err.contains("tls_config") && err.contains("/nonexistent/ca.crt"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        let ftp = parse("[[webhook]]\nurl = \"ftp://chat.example/hook/secret\"\n").unwrap();
        let err = ftp.validate().unwrap_err().to_string();
        assert!(err.contains("scheme") && !err.contains("secret"), "{err}");
        let dup = parse("[[webhook]]\nname = \"a\"\nurl = \"http://x/\"\n[[webhook]]\nname = \"a\"\nurl = \"http://y/\"\n").unwrap();
        assert!(dup.validate().is_err());
        let none = parse("[alertmanager]\nurl = []\n").unwrap();
        assert!(none.validate().is_err());
    }

    #[test]
    fn printing_never_shows_a_secret_and_defaults_are_visible() {
        let cfg = parse(
            r#"
            [[webhook]]
            url = "http://user:pw@chat.example:8080/hooks/T000/secret-token?key=abc"
            [alertmanager]
            url = "http://admin:hunter2@am:9093/?token=abc"
            "#,
        )
        .unwrap();
        let printed = toml::to_string(&cfg).unwrap();
        for secret in ["pw", "secret-token", "abc", "hunter2", "T000"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(
            printed.contains("http://***@chat.example:8080/***?***"),
            "{printed}"
        );
        assert!(printed.contains("resend_interval = \"1m\""), "{printed}");
        assert!(printed.contains("timeout = \"10s\""), "{printed}");
    }

    #[test]
    fn the_default_is_empty_and_prints_back() {
        let cfg = NotifyConfig::default();
        let printed = toml::to_string(&cfg).unwrap();
        assert_eq!(parse(&printed).unwrap(), cfg);
    }
}
