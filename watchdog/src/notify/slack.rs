//! `[[notify.slack]]`: a Slack incoming webhook, one message per event.
//!
//! Slack rejects the alert-log line (it wants `text` and/or `blocks`), so
//! this sink writes a message a person reads on a phone at 3 a.m.: the
//! event, rule, severity and target on the first line, the summary (with
//! its diagnosis) below, and the key and `since` in small print. `text`
//! carries the same words for notifications and clients without blocks.
//!
//! Everything that comes from an agent or a database (names, summaries)
//! is escaped as Slack asks (`&`, `<`, `>`), so an agent named
//! `<!channel>` cannot ping a channel, and cut to Slack's limits
//! (section text 3000 characters) on a character boundary.
//!
//! ```toml
//! [[notify.slack]]
//! url_file = "/etc/watchdog/slack-url"   # or url = "https://hooks.slack.com/services/..."
//! rate = "20/min"
//! ```

use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};
use shared_schema::{AlertEvent, AlertLine, Severity};

use super::config::redact;
use super::delivery::{secret, Delivery, Endpoint, Unknown};
use super::group::Group;
use super::registry::{SinkConfig, Started};
use super::sink::{BoxFuture, Sink};
use crate::exporter::Exporter;

/// Slack's limit on a section block's text.
const SECTION_MAX: usize = 3000;

/// One `[[notify.slack]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackConfig {
    /// Name in metrics and `dropped` lines; `slack[<index>]` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The incoming webhook's URL (its path is the secret).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "redacted"
    )]
    pub url: Option<String>,
    /// A file holding the URL, so the secret stays out of the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
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

fn redacted<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_str(&redact(url, true)),
        None => s.serialize_none(),
    }
}

impl SlackConfig {
    /// Every key of the table, the delivery and grouping keys included.
    pub fn keys() -> Vec<&'static str> {
        let own = ["name", "url", "url_file", "tls_config"];
        super::delivery::all_keys(&own)
    }

    /// The name in metrics and `dropped` lines.
    pub fn sink_name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("slack[{index}]"))
    }

    /// Checks the table and reads the URL (from `url_file` if given).
    pub fn resolve_url(&self, index: usize) -> anyhow::Result<Url> {
        let table = format!("notify.slack {}", self.sink_name(index));
        self.unknown.reject(&table, &Self::keys())?;
        self.delivery.validate(&table)?;
        self.grouping.validate(&table)?;
        if let Some(tls) = &self.tls_config {
            tls.rustls()
                .map_err(|e| anyhow::anyhow!("{table}: tls_config: {e}"))?;
        }
        let text = secret(&table, "url", self.url.as_deref(), self.url_file.as_deref())?;
        crate::target::check_url(&text, true).map_err(|e| anyhow::anyhow!("{table}: {e}"))
    }
}

impl SinkConfig for SlackConfig {
    fn names(&self, index: usize) -> Vec<String> {
        vec![self.sink_name(index)]
    }

    fn validate(&self, index: usize) -> anyhow::Result<()> {
        self.resolve_url(index).map(drop)
    }

    fn anchor_tls(&mut self, base: &Path) {
        self.tls_config = self.tls_config.take().map(|t| t.anchored(base));
    }

    fn start(&self, index: usize, exporter: &Exporter) -> anyhow::Result<Vec<Started>> {
        let (name, url) = (self.sink_name(index), self.resolve_url(index)?);
        let sink = Slack::new(&name, url, self, exporter.clone())?;
        Started::one(name, sink, &self.delivery, &self.grouping)
    }

    fn example() -> &'static str {
        "url = \"http://h:1/x\"\n"
    }
}

/// One Slack incoming webhook.
#[derive(Debug)]
pub struct Slack {
    endpoint: Endpoint,
}

impl Slack {
    /// The sink named `name`, posting to `url`.
    pub fn new(
        name: &str,
        url: Url,
        cfg: &SlackConfig,
        exporter: Exporter,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            endpoint: Endpoint::new(name, url, &cfg.delivery, cfg.tls_config.as_ref(), exporter)?,
        })
    }
}

/// Alerts one grouped message lists; the rest are counted.
const GROUP_LIST: usize = 10;

impl Sink for Slack {
    fn deliver_group(&mut self, group: Group) -> BoxFuture<'_, Vec<AlertLine>> {
        Box::pin(async move {
            let body = group_message(&group);
            self.endpoint.send_group(group, body).await
        })
    }

    fn deliver(&mut self, lines: Vec<AlertLine>) -> BoxFuture<'_, Vec<AlertLine>> {
        Box::pin(async move { self.endpoint.send_each(lines, |l| Some(message(l))).await })
    }
}

/// The Slack message for one alert event.
pub fn message(line: &AlertLine) -> Value {
    let (icon, word) = match (line.event, line.severity) {
        (AlertEvent::Resolved, _) => (":white_check_mark:", "RESOLVED"),
        (AlertEvent::Repeat, _) => (":repeat:", "STILL FIRING"),
        (_, Severity::Critical) => (":red_circle:", "FIRING"),
        (_, Severity::Warning) => (":large_orange_circle:", "FIRING"),
        (_, Severity::Info) => (":large_blue_circle:", "FIRING"),
    };
    let head = format!(
        "{word} {} ({}) on {}",
        line.rule, line.severity, line.target
    );
    let summary = cut(&escape(&line.summary), SECTION_MAX - 200);
    let section = format!("{icon} *{}*\n{summary}", escape(&head));
    let context = format!(
        "since {} · key `{}`",
        line.since,
        cut(&escape(&line.key), 500)
    );
    json!({
        "text": format!("{}: {}", escape(&head), summary),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": section}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    })
}

/// The Slack message for one group: the counts and the group on top, up
/// to ten alerts below, and how many more there are.
pub fn group_message(group: &Group) -> Value {
    let resolved = group.resolved();
    let (icon, word) = if group.firing > 0 {
        (":rotating_light:", "FIRING")
    } else {
        (":white_check_mark:", "RESOLVED")
    };
    let head = escape(&format!(
        "{word} {} firing, {resolved} resolved: {}",
        group.firing,
        group.title()
    ));
    let mut list = String::new();
    for line in group.lines.iter().take(GROUP_LIST) {
        let mark = if line.event == AlertEvent::Resolved {
            "resolved"
        } else {
            "firing"
        };
        list.push_str(&format!(
            "• _{mark}_ {}\n",
            cut(&escape(&line.summary), 250)
        ));
    }
    let more = group.lines.len().saturating_sub(GROUP_LIST);
    let footer = if more > 0 {
        format!("and {more} more in this group")
    } else {
        format!("group `{}`", cut(&escape(&group.key), 500))
    };
    json!({
        "text": head,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} *{head}*")}},
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(list.trim_end(), SECTION_MAX)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]},
        ],
    })
}

/// Slack's three control characters, escaped as its docs ask.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn line(event: AlertEvent, summary: &str) -> AlertLine {
        AlertLine {
            ts: "2026-11-22T10:10:00.000Z".parse().unwrap(),
            event,
            rule: "stuck_agent".into(),
            severity: Severity::Warning,
            target: "orch-1".into(),
            key: "stuck_agent|orch-1|job=7|run=42|pid=1234".into(),
            labels: Default::default(),
            summary: summary.into(),
            value: Some(0.003),
            threshold: Some(0.02),
            since: "2026-11-22T10:00:00.000Z".parse().unwrap(),
            diagnosis: None,
            sink: None,
        }
    }

    fn inline_cfg() -> SlackConfig {
        toml::from_str("url = \"http://slack-relay.local/services/T000/B000/secret\"\n").unwrap()
    }

    #[test]
    fn a_firing_alert_reads_as_one_line_for_a_phone() {
        let m = message(&line(
            AlertEvent::Firing,
            "agent dev (job 7, pid 1234) used 0.3% CPU",
        ));
        let text = m["text"].as_str().unwrap();
        assert_eq!(
            text,
            "FIRING stuck_agent (warning) on orch-1: agent dev (job 7, pid 1234) used 0.3% CPU"
        );
        let section = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.starts_with(":large_orange_circle: *FIRING stuck_agent"),
            "{section}"
        );
        let context = m["blocks"][1]["elements"][0]["text"].as_str().unwrap();
        assert!(context.contains("2026-11-22T10:00:00.000Z"), "{context}");
        assert!(context.contains("job=7"), "{context}");
    }

    #[test]
    fn input_cannot_ping_or_break_the_message() {
        let m = message(&line(
            AlertEvent::Resolved,
            "agent <!channel> & <https://x|y>",
        ));
        let body = m.to_string();
        assert!(!body.contains("<!channel>"), "{body}");
        assert!(m["text"]
            .as_str()
            .unwrap()
            .contains("&lt;!channel&gt; &amp; &lt;https://x|y&gt;"));
        assert!(m["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with(":white_check_mark: *RESOLVED"));
    }

    #[test]
    fn long_summaries_fit_slacks_limits() {
        let long = "é".repeat(10_000);
        let m = message(&line(AlertEvent::Firing, &long));
        let section = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.chars().count() <= SECTION_MAX,
            "{}",
            section.chars().count()
        );
        assert!(section.ends_with('…'));
    }

    #[test]
    fn the_url_comes_from_exactly_one_place_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slack-url");
        std::fs::write(
            &file,
            "http://slack-relay.local/services/T000/B000/secret\n",
        )
        .unwrap();
        let cfg: SlackConfig = toml::from_str(&format!("url_file = {:?}\n", file)).unwrap();
        let url = cfg.resolve_url(0).unwrap();
        assert_eq!(url.path(), "/services/T000/B000/secret");

        let both: SlackConfig = toml::from_str(&format!(
            "url = \"https://hooks.slack.com/services/T/B/s\"\nurl_file = {:?}\n",
            file
        ))
        .unwrap();
        assert!(both
            .resolve_url(0)
            .unwrap_err()
            .to_string()
            .contains("not both"));
        let neither: SlackConfig = toml::from_str("rate = \"1/s\"\n").unwrap();
        assert!(neither
            .resolve_url(0)
            .unwrap_err()
            .to_string()
            .contains("required"));
        let typo: SlackConfig =
            toml::from_str("url = \"https://h/x\"\nchanel = \"#ops\"\n").unwrap();
        assert!(typo
            .resolve_url(2)
            .unwrap_err()
            .to_string()
            .contains("unknown field `chanel`"));

        let mut full = inline_cfg();
        full.name = Some("ops".into());
        full.url_file = Some("/f".into());
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
        let mut want = SlackConfig::keys();
        want.sort_unstable();
        assert_eq!(keys, want, "KEYS lists every field");

        let inline: SlackConfig =
            toml::from_str("url = \"http://slack-relay.local/services/T000/B000/secret\"\n")
                .unwrap();
        let printed = toml::to_string(&inline).unwrap();
        assert!(!printed.contains("secret"), "{printed}");
        assert!(!printed.contains("T000"), "{printed}");
    }
}
