//! `[[notify.pagerduty]]`: PagerDuty's Events API v2, one event per alert
//! event: `trigger` on `firing` and `repeat`, `resolve` on `resolved`,
//! `dedup_key` = the alert's `key`, so a repeat updates the open incident
//! and the resolve closes it.
//!
//! PagerDuty caps `dedup_key` at 255 characters and `payload.summary` at
//! 1024; a longer key is cut and given a stable hash suffix (the same on
//! every replica, so HA pairs still dedup), a longer summary is cut. The
//! whole alert line goes in `payload.custom_details`.
//!
//! ```toml
//! [[notify.pagerduty]]
//! routing_key_file = "/etc/watchdog/pagerduty-key"   # or routing_key = "..."
//! # url = "https://events.pagerduty.com/v2/enqueue"  (the default)
//! ```

use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};
use shared_schema::{AlertEvent, AlertLine, Severity};

use super::delivery::{secret, Delivery, Endpoint, Unknown};
use super::group::Group;
use super::registry::{SinkConfig, Started};
use super::sink::{BoxFuture, Sink};
use crate::exporter::Exporter;

/// PagerDuty's Events API v2 enqueue endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// The API's limit on `dedup_key`.
const DEDUP_KEY_MAX: usize = 255;
/// The API's limit on `payload.summary`.
const SUMMARY_MAX: usize = 1024;

/// One `[[notify.pagerduty]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PagerDutyConfig {
    /// Name in metrics and `dropped` lines; `pagerduty[<index>]` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The integration's routing key (printed as `REDACTED`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "redacted"
    )]
    pub routing_key: Option<String>,
    /// A file holding the routing key, so it stays out of the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key_file: Option<PathBuf>,
    /// The Events API v2 endpoint.
    #[serde(default = "default_url")]
    pub url: String,
    /// TLS settings for the https URL; none: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<crate::tls::TlsConfig>,
    /// `rate`, `timeout`, `max_retries`, `queue`, `backoff`, `backoff_max`.
    #[serde(flatten)]
    pub delivery: Delivery,
    /// `group_by`, `group_wait`, `group_interval`.
    #[serde(flatten)]
    pub grouping: super::group::Grouping,
    /// Keys no field took: an error at start.
    #[serde(flatten, skip_serializing_if = "Unknown::is_empty")]
    pub unknown: Unknown,
}

fn default_url() -> String {
    DEFAULT_URL.to_owned()
}

fn redacted<S: Serializer>(key: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(_) => s.serialize_str(edges::redact::MASK),
        None => s.serialize_none(),
    }
}

impl PagerDutyConfig {
    /// Every key of the table, the delivery and grouping keys included.
    pub fn keys() -> Vec<&'static str> {
        let own = [
            "name",
            "routing_key",
            "routing_key_file",
            "url",
            "tls_config",
        ];
        super::delivery::all_keys(&own)
    }

    /// The name in metrics and `dropped` lines.
    pub fn sink_name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("pagerduty[{index}]"))
    }

    /// Checks the table; the endpoint and the routing key.
    pub fn resolve(&self, index: usize) -> anyhow::Result<(Url, String)> {
        let table = format!("notify.pagerduty {}", self.sink_name(index));
        self.unknown.reject(&table, &Self::keys())?;
        self.delivery.validate(&table)?;
        self.grouping.validate(&table)?;
        if let Some(tls) = &self.tls_config {
            tls.rustls()
                .map_err(|e| anyhow::anyhow!("{table}: tls_config: {e}"))?;
        }
        let key = secret(
            &table,
            "routing_key",
            self.routing_key.as_deref(),
            self.routing_key_file.as_deref(),
        )?;
        let url = crate::target::check_url(&self.url, false)
            .map_err(|e| anyhow::anyhow!("{table}: {e}"))?;
        Ok((url, key))
    }
}

impl SinkConfig for PagerDutyConfig {
    fn names(&self, index: usize) -> Vec<String> {
        vec![self.sink_name(index)]
    }

    fn validate(&self, index: usize) -> anyhow::Result<()> {
        self.resolve(index).map(drop)
    }

    fn anchor_tls(&mut self, base: &Path) {
        self.tls_config = self.tls_config.take().map(|t| t.anchored(base));
    }

    fn start(&self, index: usize, exporter: &Exporter) -> anyhow::Result<Vec<Started>> {
        let (name, (url, key)) = (self.sink_name(index), self.resolve(index)?);
        let sink = PagerDuty::new(&name, url, key, self, exporter.clone())?;
        Started::one(name, sink, &self.delivery, &self.grouping)
    }

    fn example() -> &'static str {
        "routing_key = \"k\"\nurl = \"http://h:1/x\"\n"
    }
}

/// One PagerDuty integration.
#[derive(Debug)]
pub struct PagerDuty {
    endpoint: Endpoint,
    routing_key: String,
}

impl PagerDuty {
    /// The sink named `name`.
    pub fn new(
        name: &str,
        url: Url,
        routing_key: String,
        cfg: &PagerDutyConfig,
        exporter: Exporter,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            endpoint: Endpoint::new(name, url, &cfg.delivery, cfg.tls_config.as_ref(), exporter)?,
            routing_key,
        })
    }
}

/// Alert lines one grouped event carries in `custom_details`.
const GROUP_CAP: usize = 50;

impl Sink for PagerDuty {
    fn deliver_group(&mut self, group: Group) -> BoxFuture<'_, Vec<AlertLine>> {
        Box::pin(async move {
            let body = group_event(&self.routing_key, &group);
            self.endpoint.send_group(group, body).await
        })
    }

    fn deliver(&mut self, lines: Vec<AlertLine>) -> BoxFuture<'_, Vec<AlertLine>> {
        Box::pin(async move {
            self.endpoint
                .send_each(lines, |l| event(&self.routing_key, l))
                .await
        })
    }
}

/// The Events API v2 body for one alert event; `None` for events that
/// PagerDuty has no action for (`dropped`).
pub fn event(routing_key: &str, line: &AlertLine) -> Option<Value> {
    let dedup_key = dedup_key(&line.key);
    match line.event {
        AlertEvent::Resolved => Some(json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        })),
        AlertEvent::Firing | AlertEvent::Repeat => Some(json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "client": "watchdog",
            "payload": {
                "summary": cut(&line.summary, SUMMARY_MAX),
                "source": line.target,
                "severity": severity(line.severity),
                "timestamp": line.since.to_string(),
                "class": line.rule,
                "component": line.labels.get("agent"),
                "group": line.target,
                "custom_details": line,
            },
        })),
        AlertEvent::Dropped => None,
    }
}

/// The Events API v2 body for one group: one incident per group
/// (`dedup_key` from the group's labels), triggered while any of its
/// alerts fires, resolved when none does.
pub fn group_event(routing_key: &str, group: &Group) -> Value {
    let dedup_key = dedup_key(&format!("group|{}", group.key));
    if group.firing == 0 {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let worst = group
        .lines
        .iter()
        .map(|l| l.severity)
        .max()
        .unwrap_or(Severity::Warning);
    let first = group
        .lines
        .iter()
        .find(|l| l.event != AlertEvent::Resolved)
        .map_or("", |l| l.summary.as_str());
    let summary = format!("{} firing: {}: {first}", group.firing, group.title());
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "watchdog",
        "payload": {
            "summary": cut(&summary, SUMMARY_MAX),
            "source": group.labels.get("target").cloned().unwrap_or_else(|| "watchdog".to_owned()),
            "severity": severity(worst),
            "class": group.labels.get("rule"),
            "group": group.key,
            "custom_details": group.to_json(GROUP_CAP),
        },
    })
}

/// PagerDuty's severities are `critical`, `error`, `warning`, `info`.
fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// The alert's key, or, past 255 bytes, its head and a stable FNV-1a hash.
fn dedup_key(key: &str) -> String {
    if key.len() <= DEDUP_KEY_MAX {
        return key.to_owned();
    }
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let suffix = format!("#{hash:016x}");
    let mut head = DEDUP_KEY_MAX - suffix.len();
    while !key.is_char_boundary(head) {
        head -= 1;
    }
    format!("{}{suffix}", &key[..head])
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max - 1) {
        Some((at, _)) if text.chars().count() > max => format!("{}…", &text[..at]),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    fn line(event: AlertEvent, key: &str) -> AlertLine {
        AlertLine {
            ts: "2026-11-22T10:10:00.000Z".parse().unwrap(),
            event,
            rule: "agent_looping".into(),
            severity: Severity::Critical,
            target: "orch-1".into(),
            key: key.into(),
            labels: BTreeMap::from([("agent".to_owned(), "dev".to_owned())]).into(),
            summary: "agent dev (job 7, pid 1234) made the same Bash call 37 times".into(),
            value: Some(37.0),
            threshold: Some(5.0),
            since: "2026-11-22T10:00:00.000Z".parse().unwrap(),
            diagnosis: None,
            sink: None,
        }
    }

    #[test]
    fn trigger_repeat_and_resolve_share_the_dedup_key() {
        let key = "agent_looping|orch-1|job=7|run=42|pid=1234";
        let t = event("R0UT1NG", &line(AlertEvent::Firing, key)).unwrap();
        let r = event("R0UT1NG", &line(AlertEvent::Repeat, key)).unwrap();
        let z = event("R0UT1NG", &line(AlertEvent::Resolved, key)).unwrap();
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(r["event_action"], "trigger");
        assert_eq!(z["event_action"], "resolve");
        for e in [&t, &r, &z] {
            assert_eq!(e["dedup_key"], key);
            assert_eq!(e["routing_key"], "R0UT1NG");
        }
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["source"], "orch-1");
        assert_eq!(t["payload"]["component"], "dev");
        assert_eq!(t["payload"]["custom_details"]["rule"], "agent_looping");
        assert!(event("R", &line(AlertEvent::Dropped, key)).is_none());
    }

    #[test]
    fn long_keys_and_summaries_fit_the_api_and_stay_stable() {
        let long = format!("stuck_agent|{}|job=7", "é".repeat(300));
        let a = dedup_key(&long);
        assert!(a.len() <= DEDUP_KEY_MAX, "{}", a.len());
        assert_eq!(a, dedup_key(&long), "the same on every replica");
        assert_ne!(a, dedup_key(&format!("{long}8")));
        let mut l = line(AlertEvent::Firing, "k");
        l.summary = "x".repeat(5000);
        let e = event("R", &l).unwrap();
        assert_eq!(
            e["payload"]["summary"].as_str().unwrap().chars().count(),
            SUMMARY_MAX
        );
    }

    #[test]
    fn the_routing_key_is_never_printed() {
        let default: PagerDutyConfig = toml::from_str("routing_key = \"R0UT1NGKEY\"\n").unwrap();
        assert_eq!(default.url, DEFAULT_URL);
        let cfg: PagerDutyConfig = toml::from_str(
            "routing_key = \"R0UT1NGKEY\"\nurl = \"http://pd-relay.local/v2/enqueue\"\n",
        )
        .unwrap();
        let (url, key) = cfg.resolve(0).unwrap();
        assert_eq!(key, "R0UT1NGKEY");
        assert_eq!(url.as_str(), "http://pd-relay.local/v2/enqueue");
        let printed = toml::to_string(&cfg).unwrap();
        assert!(!printed.contains("R0UT1NGKEY"), "{printed}");
        let mut full = cfg.clone();
        full.name = Some("pd".into());
        full.routing_key_file = Some("/f".into());
        full.delivery.rate = "1/s".parse().ok();
        full.tls_config = Some(crate::tls::TlsConfig::default());
        full.grouping.group_wait = Some(edges::dur::Dur::secs(1));
        full.grouping.group_interval = Some(edges::dur::Dur::secs(1));
        let written = toml::Value::try_from(&full).unwrap();
        let mut keys: Vec<&str> = written
            .as_table()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut want = PagerDutyConfig::keys();
        want.sort_unstable();
        assert_eq!(keys, want, "KEYS lists every field");
        let none: PagerDutyConfig = toml::from_str("").unwrap();
        assert!(none
            .resolve(0)
            .unwrap_err()
            .to_string()
            .contains("routing_key or routing_key_file"));
    }
}
