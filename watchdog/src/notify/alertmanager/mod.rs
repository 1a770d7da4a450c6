//! One Alertmanager (`POST {url}/api/v2/alerts`). An HA cluster is one sink
//! per URL, each with its own queue, worker and state, so a dead peer
//! delays nobody.
//!
//! Alertmanager forgets an alert whose `endsAt` passes, so this sink keeps
//! the set of firing alerts (by key) from the events it sees and from
//! [`Sink::sync_firing`], re-sends all of them every `resend_interval` with
//! `endsAt` = now + 4 × `resend_interval`, and sends a resolved alert with
//! `endsAt` = the `ts` of its `resolved` line. When the watchdog dies its
//! alerts expire on their own; the optional `WatchdogHeartbeat` alert
//! expires too, which is what a dead-man's switch watches for.
//!
//! A failed POST of a new event is reported (a `dropped` line), and the
//! state still reaches Alertmanager at the next re-send: a firing alert
//! stays in the set, a resolved one is kept until a send succeeds.
//!
//! What an Alertmanager has accepted is remembered per endpoint past the
//! sink that sent it (`Accepted`): a reload builds new sinks, and these
//! must not re-post what is already there (700 SIGHUPs made 218 posts).
//! A new sink re-sends an alert at once only when Alertmanager has not
//! accepted it with the same labels and `startsAt`; the rest, and the
//! heartbeat, keep the rhythm of the sink before.
//!
//! HA replicas send the same `startsAt` (issue 22), from the first
//! notification on. Two replicas' `since` differ by their poll phase, and
//! Alertmanager notifies a new group at once when `startsAt` + its
//! `group_wait` is already past, which it always is for an alert that
//! waited out its `for`: whichever post arrives first is what the first
//! notification says. So the sink sends `startsAt` = `since` rounded down
//! to the whole second (`STARTS_GRID_MS`) and holds an alert's first post
//! until one grid step plus `FIRST_POST_HOLD` after its line's `ts`,
//! counted from that rounded `since` (`first_post_at`). Replicas whose
//! `since` fall in the same second send the same `startsAt`, whatever
//! the order; when a second boundary lies between them, the later
//! replica's first post comes a whole second after the earlier one's, and
//! before it the sink asks Alertmanager for the active alerts of its rule
//! and target (`GET /api/v2/alerts?filter=...`) and adopts the earlier
//! `startsAt` of one with exactly its labels. When the GET fails the alert
//! is posted with its own (rounded) `since`.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use serde::Serialize;
use serde_json::Value;
use shared_schema::{AlertEvent, AlertLine, Timestamp};
use tokio::time::Instant;

mod config;

pub use config::{AlertmanagerConfig, Heartbeat};

use super::backoff::Backoff;
use super::config::redact;
use super::post::Poster;
use super::sink::{BoxFuture, Sink};
use crate::exporter::Exporter;

/// `at + d`, or about a year on when that overflows: a huge interval must
/// not panic the sink's worker.
fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(86_400 * 365))
}

/// `d` in seconds, at most a century: `Timestamp::plus_seconds` panics
/// (inside `time`) on a duration far past the representable range.
fn seconds(d: Duration) -> f64 {
    const CENTURY_S: f64 = 100.0 * 365.25 * 86_400.0;
    d.as_secs_f64().min(CENTURY_S)
}

/// What one Alertmanager endpoint has accepted from this process.
#[derive(Debug, Default, Clone)]
struct Accepted {
    /// Firing alerts by key, with the [`identity`] they were accepted with.
    firing: BTreeMap<String, u64>,
    /// When the whole firing set was last re-sent.
    resent: Option<Instant>,
    /// When the heartbeat was last accepted.
    heartbeat: Option<Instant>,
}

/// [`Accepted`] by endpoint URL, for the life of the process.
fn accepted() -> &'static Mutex<HashMap<String, Accepted>> {
    static ACCEPTED: OnceLock<Mutex<HashMap<String, Accepted>>> = OnceLock::new();
    ACCEPTED.get_or_init(Mutex::default)
}

/// What makes Alertmanager see a new alert: its labels and `startsAt`
/// (annotations such as the summary change with every line and wait for
/// the next re-send).
fn identity(line: &AlertLine) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    line.rule.hash(&mut h);
    line.severity.as_str().hash(&mut h);
    line.target.hash(&mut h);
    line.labels.hash(&mut h);
    line.since.unix_ms().hash(&mut h);
    h.finish()
}

/// `alertname` of the always-firing heartbeat.
pub const HEARTBEAT_ALERTNAME: &str = "WatchdogHeartbeat";

/// One Alertmanager instance.
#[derive(Debug)]
pub struct Alertmanager {
    name: String,
    endpoint: Url,
    poster: Poster,
    exporter: Exporter,
    resend: Duration,
    horizon: Duration,
    heartbeat: Option<Duration>,
    generator_url: Option<String>,
    instance: String,
    started: Timestamp,
    firing: BTreeMap<String, Arc<AlertLine>>,
    /// Resolutions not yet accepted, with when they happened here.
    unsent_resolved: BTreeMap<String, (AlertLine, Instant)>,
    next_resend: Instant,
    next_heartbeat: Option<Instant>,
    /// For the GET of existing alerts (the same TLS and timeout as posts).
    client: reqwest::Client,
    /// `startsAt` per key once looked up in Alertmanager: the earlier of
    /// the line's `since` and an existing alert's.
    starts: BTreeMap<String, Timestamp>,
}

/// The precision of the `startsAt` sent: `since` rounded down to it, so
/// replicas whose polls fall in the same second send the same one.
const STARTS_GRID_MS: i64 = 1_000;

/// How long after its line's `ts` an alert's first post waits at least:
/// the outbox holds a line up to [`crate::up_close::DEADLINE`] for its
/// diagnosis, so a replica whose diagnosis came quickly must not overtake
/// one whose diagnosis was slow.
const FIRST_POST_HOLD: Duration =
    Duration::from_millis(crate::up_close::DEADLINE.as_millis() as u64 + 500);

/// `since` as sent to Alertmanager: rounded down to [`STARTS_GRID_MS`].
fn grid_start(since: Timestamp) -> Timestamp {
    let ms = since.unix_ms();
    Timestamp::from_unix_ms(ms - ms.rem_euclid(STARTS_GRID_MS)).unwrap_or(since)
}

/// When the first post of `line` may go: its rounded `since`, plus one grid
/// step, plus how long it took to fire (`ts - since`), plus the diagnosis
/// hold. Two replicas with `since` in different seconds get first posts at
/// least about a second apart, in the order of their `since`.
fn first_post_at(line: &AlertLine) -> Timestamp {
    let to_fire = line
        .ts
        .unix_ms()
        .saturating_sub(line.since.unix_ms())
        .max(0);
    let hold = i64::try_from(FIRST_POST_HOLD.as_millis()).unwrap_or(i64::MAX);
    let at = grid_start(line.since)
        .unix_ms()
        .saturating_add(STARTS_GRID_MS)
        .saturating_add(to_fire)
        .saturating_add(hold);
    Timestamp::from_unix_ms(at).unwrap_or(line.ts)
}

/// Alerts looked up in one GET at most (the filter is a regex of their
/// targets; it must stay a sane URL).
const LOOKUP_CHUNK: usize = 64;

/// The longest a batch waits for its first-post time (a line's `ts` far in
/// the future, from a skewed clock, must not stall the sink).
const MAX_FIRST_POST_WAIT: Duration = Duration::from_secs(10);

impl Alertmanager {
    /// The sink named `name` for the Alertmanager at `base_url`.
    pub fn new(
        name: &str,
        base_url: &str,
        cfg: &AlertmanagerConfig,
        exporter: Exporter,
    ) -> anyhow::Result<Self> {
        let endpoint = alerts_endpoint(base_url)
            .map_err(|e| anyhow::anyhow!("{name}: invalid url {}: {e}", redact(base_url, false)))?;
        let backoff = Backoff {
            base: cfg.backoff.0,
            cap: cfg.backoff_max.0,
        };
        let now = Instant::now();
        let heartbeat = cfg.heartbeat_interval();
        // A sink that replaces one (a reload) keeps its rhythm.
        let before = remembered(&endpoint);
        let next_resend = before.resent.map_or(after(now, cfg.resend_interval.0), |at| {
            after(at, cfg.resend_interval.0)
        });
        let next_heartbeat = match (heartbeat, before.heartbeat) {
            (Some(every), Some(at)) => Some(after(at, every)),
            // The first heartbeat goes out at once, so a fresh watchdog is seen alive.
            (Some(_), None) => Some(now),
            (None, _) => None,
        };
        let client = crate::tls::client_builder(cfg.tls_config.as_ref(), name)
            .map_err(|e| anyhow::anyhow!("{name}: tls_config: {e}"))?
            .timeout(cfg.timeout.0)
            .connect_timeout(cfg.timeout.0)
            .build()?;
        Ok(Self {
            client,
            starts: BTreeMap::new(),
            name: name.to_owned(),
            endpoint,
            poster: Poster::with_tls(
                name,
                cfg.timeout.0,
                cfg.max_retries,
                backoff,
                exporter.clone(),
                cfg.tls_config.as_ref(),
            )?,
            exporter,
            resend: cfg.resend_interval.0,
            horizon: cfg.firing_horizon(),
            heartbeat,
            generator_url: cfg.generator_url.clone(),
            instance: hostname(),
            started: Timestamp::now(),
            firing: BTreeMap::new(),
            unsent_resolved: BTreeMap::new(),
            next_resend,
            next_heartbeat,
        })
    }

    /// Notes what Alertmanager accepted in one successful POST.
    fn note_accepted(&self, update: impl FnOnce(&mut Accepted)) {
        if let Ok(mut all) = accepted().lock() {
            update(all.entry(self.endpoint.to_string()).or_default());
        }
    }

    /// The `startsAt` of `line`: its rounded `since`, or an earlier one
    /// adopted from Alertmanager.
    fn starts_at(&self, line: &AlertLine) -> Timestamp {
        let own = grid_start(line.since);
        self.starts.get(&line.key).map_or(own, |at| (*at).min(own))
    }

    /// Whether `line` is a new alert whose first post must still wait
    /// ([`first_post_at`]); a sink that has looked it up already posted it.
    fn unsettled(&self, line: &AlertLine, now: Timestamp) -> Option<Duration> {
        if line.event != AlertEvent::Firing || self.starts.contains_key(&line.key) {
            return None;
        }
        let wait = first_post_at(line).unix_ms().saturating_sub(now.unix_ms());
        u64::try_from(wait)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }

    /// The labels Alertmanager sees for `line`.
    fn labels(line: &AlertLine) -> BTreeMap<String, &str> {
        let mut labels = BTreeMap::new();
        for (k, v) in &line.labels {
            // Alertmanager treats an empty label as absent; skip it.
            if !v.is_empty() {
                labels.insert(label_name(k), v);
            }
        }
        labels.insert("alertname".into(), line.rule.as_str());
        labels.insert("severity".into(), line.severity.as_str());
        labels.insert("target".into(), line.target.as_str());
        labels
    }

    /// Looks up in Alertmanager the firing `lines` not looked up yet and
    /// notes the `startsAt` each will be sent with. A failed GET notes
    /// nothing: the alert is posted with its own `since`, and asked again
    /// before the next post.
    async fn adopt_starts<L: Borrow<AlertLine>>(&mut self, lines: &[L]) {
        let todo: Vec<&AlertLine> = lines
            .iter()
            .map(Borrow::borrow)
            .filter(|l| matches!(l.event, AlertEvent::Firing | AlertEvent::Repeat))
            .filter(|l| !self.starts.contains_key(&l.key))
            .collect();
        for chunk in todo.chunks(LOOKUP_CHUNK) {
            match self.existing(chunk).await {
                Ok(found) => {
                    for line in chunk {
                        let ours = Self::labels(line);
                        let theirs = found
                            .iter()
                            .filter(|(labels, _)| same_labels(labels, &ours))
                            .map(|(_, at)| *at)
                            .min();
                        let own = grid_start(line.since);
                        let at = theirs.map_or(own, |t| t.min(own));
                        if at != own {
                            tracing::debug!(sink = %self.name, key = %line.key, starts_at = %at, since = %line.since, "adopting the earlier startsAt already in Alertmanager");
                        }
                        self.starts.insert(line.key.clone(), at);
                    }
                }
                Err(err) => {
                    tracing::debug!(sink = %self.name, error = %err, "cannot look up existing alerts; posting with our own startsAt");
                }
            }
        }
    }

    /// The active alerts Alertmanager holds for the rules and targets of
    /// `lines`: their labels and `startsAt`.
    async fn existing(&self, lines: &[&AlertLine]) -> Result<Vec<(Value, Timestamp)>, String> {
        let mut rules: Vec<&str> = lines.iter().map(|l| l.rule.as_str()).collect();
        let mut targets: Vec<&str> = lines.iter().map(|l| l.target.as_str()).collect();
        rules.sort_unstable();
        rules.dedup();
        targets.sort_unstable();
        targets.dedup();
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("active", "true")
            .append_pair("silenced", "true")
            .append_pair("inhibited", "true")
            .append_pair("unprocessed", "true")
            .append_pair("filter", &regex_matcher("alertname", &rules))
            .append_pair("filter", &regex_matcher("target", &targets));
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(crate::poll::describe)?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(crate::poll::describe)?;
        let alerts: Vec<Value> =
            serde_json::from_slice(&body).map_err(|e| format!("GET /api/v2/alerts: {e}"))?;
        Ok(alerts
            .into_iter()
            .filter_map(|mut a| {
                let at = a["startsAt"]
                    .as_str()
                    .and_then(|t| Timestamp::parse_lenient(t).ok())?;
                Some((a.get_mut("labels").map(Value::take)?, at))
            })
            .collect())
    }

    /// The Alertmanager form of one alert line, borrowing from it.
    fn alert<'a>(&'a self, line: &'a AlertLine, now: Timestamp) -> AmAlert<'a> {
        let annotations = Annotations {
            summary: &line.summary,
            value: line.value.map(|v| v.to_string()),
            threshold: line.threshold.map(|t| t.to_string()),
            key: Some(&line.key),
            // What the agent waits on (CONTRACT.md section 3), for templates
            // that show it apart from the summary.
            diagnosis: line.diagnosis.as_deref(),
        };
        let ends_at = match line.event {
            AlertEvent::Resolved => line.ts,
            _ => now.plus_seconds(seconds(self.horizon)),
        };
        let starts_at = self.starts_at(line);
        // Alertmanager rejects the whole POST when an alert ends before it starts
        // (possible with a skewed emitter clock).
        let ends_at = ends_at.max(starts_at);
        AmAlert {
            labels: Self::labels(line),
            annotations,
            starts_at,
            ends_at,
            generator_url: self.generator_url.as_deref(),
        }
    }

    fn heartbeat_alert(&self, every: Duration, now: Timestamp) -> AmAlert<'_> {
        let mut labels = BTreeMap::new();
        labels.insert("alertname".into(), HEARTBEAT_ALERTNAME);
        labels.insert("severity".into(), "none");
        if !self.instance.is_empty() {
            labels.insert("instance".into(), self.instance.as_str());
        }
        AmAlert {
            labels,
            annotations: Annotations {
                summary: "The watchdog is running. This alert always fires; its absence means the watchdog stopped.",
                ..Annotations::default()
            },
            starts_at: self.started,
            ends_at: now.plus_seconds(seconds(every.saturating_mul(4))),
            generator_url: self.generator_url.as_deref(),
        }
    }

    async fn post(&self, body: Body) -> Result<(), super::post::PostError> {
        self.poster
            .post_json(&self.endpoint, body.finish(), None)
            .await
    }
}

impl Sink for Alertmanager {
    fn max_batch(&self) -> usize {
        64
    }

    fn deliver(&mut self, lines: Vec<AlertLine>) -> BoxFuture<'_, Vec<AlertLine>> {
        Box::pin(async move {
            // New alerts wait for their first-post time, so an HA replica
            // never overtakes the one that fired first (see the module doc).
            let now = Timestamp::now();
            if let Some(wait) = lines.iter().filter_map(|l| self.unsettled(l, now)).max() {
                tokio::time::sleep(wait.min(MAX_FIRST_POST_WAIT)).await;
            }
            self.adopt_starts(&lines).await;
            // Only the newest state of each alert matters to Alertmanager.
            let mut newest: BTreeMap<&str, &AlertLine> = BTreeMap::new();
            for line in &lines {
                match line.event {
                    AlertEvent::Firing | AlertEvent::Repeat => {
                        self.firing.insert(line.key.clone(), Arc::new(line.clone()));
                        self.unsent_resolved.remove(&line.key);
                    }
                    AlertEvent::Resolved => {
                        self.firing.remove(&line.key);
                        // A later firing of the same key is a new alert.
                        self.starts.remove(&line.key);
                        self.unsent_resolved
                            .insert(line.key.clone(), (line.clone(), Instant::now()));
                    }
                    AlertEvent::Dropped => continue,
                }
                newest.insert(&line.key, line);
            }
            let now = Timestamp::now();
            let mut alerts = Body::default();
            for l in newest.values() {
                alerts.push(&self.alert(l, now));
            }
            let keys: Vec<String> = newest.keys().map(|k| (*k).to_owned()).collect();
            if alerts.is_empty() {
                return Vec::new();
            }
            let sent: Vec<(String, Option<u64>)> = newest
                .values()
                .map(|l| {
                    let firing = matches!(l.event, AlertEvent::Firing | AlertEvent::Repeat);
                    (l.key.clone(), firing.then(|| identity(l)))
                })
                .collect();
            match self.post(alerts).await {
                Ok(()) => {
                    for key in keys {
                        self.unsent_resolved.remove(&key);
                    }
                    self.note_accepted(|a| {
                        for (key, id) in sent {
                            match id {
                                Some(id) => a.firing.insert(key, id),
                                None => a.firing.remove(&key),
                            };
                        }
                    });
                    Vec::new()
                }
                Err(err) => {
                    tracing::warn!(sink = %self.name, events = lines.len(), error = %err, "alertmanager failed");
                    lines
                }
            }
        })
    }

    /// Replaces the firing set. An alert Alertmanager has not accepted
    /// (with these labels and `startsAt`) is sent at once; the others wait
    /// for the next re-send, so a reload that changes nothing posts nothing.
    /// One that left the set without a `resolved` event reaching us (e.g.
    /// dropped on a full queue) is no longer re-sent and expires at its
    /// `endsAt`, at most 4 × `resend_interval` later.
    fn follows_firing(&self) -> bool {
        true
    }

    fn sync_firing(&mut self, firing: Vec<Arc<AlertLine>>) {
        let fresh: BTreeMap<String, Arc<AlertLine>> = firing
            .into_iter()
            .filter(|l| matches!(l.event, AlertEvent::Firing | AlertEvent::Repeat))
            .map(|l| (l.key.clone(), l))
            .collect();
        // A new alert still waiting for its first post goes with its event.
        let now = Timestamp::now();
        let due = |l: &AlertLine| self.unsettled(l, now).is_none();
        let urgent = match accepted().lock() {
            Ok(all) => {
                let known = all.get(self.endpoint.as_str());
                fresh.iter().any(|(k, l)| {
                    let id = identity(l);
                    // New to this sink (or changed), and not already there.
                    due(l)
                        && self.firing.get(k).map(|l| identity(l)) != Some(id)
                        && known.and_then(|a| a.firing.get(k)) != Some(&id)
                })
            }
            Err(_) => fresh
                .iter()
                .any(|(k, l)| due(l) && !self.firing.contains_key(k)),
        };
        if urgent {
            self.next_resend = Instant::now();
        }
        self.firing = fresh;
    }

    fn next_tick(&self) -> Option<Instant> {
        Some(match self.next_heartbeat {
            Some(hb) => hb.min(self.next_resend),
            None => self.next_resend,
        })
    }

    fn tick(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let at = Instant::now();
            let now = Timestamp::now();
            let mut alerts = Body::default();
            let mut resolved = Vec::new();
            let mut resent = false;
            let mut sent_firing: BTreeMap<String, u64> = BTreeMap::new();
            let mut beat = false;
            if at >= self.next_resend {
                // A sink built by a reload has looked up nothing yet.
                let fresh: Vec<Arc<AlertLine>> = self
                    .firing
                    .values()
                    .filter(|l| !self.starts.contains_key(&l.key))
                    .cloned()
                    .collect();
                if !fresh.is_empty() {
                    self.adopt_starts(&fresh).await;
                }
                resent = true;
                self.next_resend = after(at, self.resend);
                // A new alert's first post is its event's (`deliver`), at its time.
                let settled: Vec<&AlertLine> = self
                    .firing
                    .values()
                    .map(|l| &**l)
                    .filter(|l| self.unsettled(l, now).is_none())
                    .collect();
                sent_firing = settled
                    .iter()
                    .map(|l| (l.key.clone(), identity(l)))
                    .collect();
                for l in settled {
                    alerts.push(&self.alert(l, now));
                }
                // Past the horizon Alertmanager has expired the alert on its own.
                let horizon = self.horizon;
                self.unsent_resolved
                    .retain(|_, (_, resolved_at)| at.duration_since(*resolved_at) < horizon);
                for (l, _) in self.unsent_resolved.values() {
                    alerts.push(&self.alert(l, now));
                }
                resolved.extend(self.unsent_resolved.keys().cloned());
            }
            if let (Some(due), Some(every)) = (self.next_heartbeat, self.heartbeat) {
                if at >= due {
                    self.next_heartbeat = Some(after(at, every));
                    alerts.push(&self.heartbeat_alert(every, now));
                    beat = true;
                }
            }
            if alerts.is_empty() {
                return;
            }
            let n = alerts.len();
            match self.post(alerts).await {
                Ok(()) => {
                    self.note_accepted(|a| {
                        if resent {
                            // The whole set went: it is what Alertmanager holds now.
                            a.firing = sent_firing;
                            a.resent = Some(at);
                        }
                        if beat {
                            a.heartbeat = Some(at);
                        }
                    });
                    // Counted once noted: a sink built after the count
                    // sees what this post put in Alertmanager.
                    self.exporter.notifications(&self.name, "resent", n);
                    for key in resolved {
                        self.unsent_resolved.remove(&key);
                    }
                }
                Err(err) => {
                    self.exporter.notification(&self.name, "resend_failed");
                    tracing::warn!(sink = %self.name, alerts = n, error = %err, "alertmanager re-send failed");
                }
            }
        })
    }
}

/// What the Alertmanager at `endpoint` accepted so far.
fn remembered(endpoint: &Url) -> Accepted {
    accepted()
        .lock()
        .ok()
        .and_then(|all| all.get(endpoint.as_str()).cloned())
        .unwrap_or_default()
}

/// `{base}/api/v2/alerts`, keeping a path prefix of `base`.
fn alerts_endpoint(base: &str) -> Result<Url, String> {
    let mut url = Url::parse(base).map_err(|e| e.to_string())?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.join("api/v2/alerts").map_err(|e| e.to_string())
}

/// An Alertmanager filter `label=~"^(a|b)$"` matching exactly `values`
/// (Alertmanager anchors the regex; the quotes need escaping inside).
fn regex_matcher(label: &str, values: &[&str]) -> String {
    let alternatives: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
    let re = format!("({})", alternatives.join("|"));
    let quoted = re.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{label}=~\"{quoted}\"")
}

/// `value` with every regex metacharacter escaped.
fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
/// Whether Alertmanager's `labels` object is exactly `ours`.
fn same_labels(theirs: &Value, ours: &BTreeMap<String, &str>) -> bool {
    theirs.as_object().is_some_and(|m| {
        m.len() == ours.len()
            && ours
                .iter()
                .all(|(k, v)| m.get(k).and_then(Value::as_str) == Some(*v))
    })
}

/// One alert as `POST /api/v2/alerts` takes it, borrowed from its line:
/// a re-send of every firing alert builds one of these at a time.
#[derive(Debug, Serialize)]
struct AmAlert<'a> {
    labels: BTreeMap<String, &'a str>,
    annotations: Annotations<'a>,
    #[serde(rename = "startsAt")]
    starts_at: Timestamp,
    #[serde(rename = "endsAt")]
    ends_at: Timestamp,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<&'a str>,
}

/// An alert's annotations; absent ones are left out.
#[derive(Debug, Default, Serialize)]
struct Annotations<'a> {
    summary: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnosis: Option<&'a str>,
}

/// A POST body, written alert by alert: in a storm a re-send of 9,000
/// alerts holds its bytes (about 0.5 KB an alert), not a `Value` tree per
/// alert (heaptrack: 19 MB at the peak of the 1,000-target storm).
#[derive(Debug, Default)]
struct Body {
    json: Vec<u8>,
    alerts: u64,
}

impl Body {
    fn push(&mut self, alert: &AmAlert<'_>) {
        match serde_json::to_vec(alert) {
            Ok(one) => {
                self.json.push(if self.alerts == 0 { b'[' } else { b',' });
                self.json.extend_from_slice(&one);
                self.alerts += 1;
            }
            // Strings, numbers and maps of strings: not reachable.
            Err(e) => tracing::error!(error = %e, "alert not serialized"),
        }
    }

    fn len(&self) -> u64 {
        self.alerts
    }

    fn is_empty(&self) -> bool {
        self.alerts == 0
    }

    fn finish(mut self) -> Bytes {
        if self.alerts == 0 {
            return Bytes::from_static(b"[]");
        }
        self.json.push(b']');
        Bytes::from(self.json)
    }
}

fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_the_json_array_alertmanager_takes() {
        assert_eq!(&Body::default().finish()[..], b"[]");
        let ts = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        let alert = |summary, value: Option<&str>| AmAlert {
            labels: BTreeMap::from([("alertname".to_owned(), "stuck_agent")]),
            annotations: Annotations {
                summary,
                value: value.map(str::to_owned),
                key: Some("k"),
                ..Annotations::default()
            },
            starts_at: ts,
            ends_at: ts.plus_seconds(60.0),
            generator_url: None,
        };
        let mut body = Body::default();
        body.push(&alert("one", Some("0.003")));
        body.push(&alert("two", None));
        assert_eq!(body.len(), 2);
        let parsed: Value = serde_json::from_slice(&body.finish()).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([
                {"labels": {"alertname": "stuck_agent"},
                 "annotations": {"summary": "one", "value": "0.003", "key": "k"},
                 "startsAt": "2026-11-22T10:00:00.000Z", "endsAt": "2026-11-22T10:01:00.000Z"},
                {"labels": {"alertname": "stuck_agent"},
                 "annotations": {"summary": "two", "key": "k"},
                 "startsAt": "2026-11-22T10:00:00.000Z", "endsAt": "2026-11-22T10:01:00.000Z"}
            ])
        );
    }

    #[test]
    fn the_endpoint_keeps_a_path_prefix() {
        assert_eq!(
            alerts_endpoint("http://am:9093").unwrap().as_str(),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            alerts_endpoint("http://h/am").unwrap().as_str(),
            "http://h/am/api/v2/alerts"
        );
        assert_eq!(
            alerts_endpoint("http://h/am/").unwrap().as_str(),
            "http://h/am/api/v2/alerts"
        );
    }

    #[test]
    fn filters_match_exactly_the_names_given() {
        assert_eq!(
            regex_matcher("target", &["a.b", "c"]),
            r#"target=~"(a\\.b|c)""#
        );
        assert_eq!(
            regex_matcher("alertname", &["x\"y"]),
            r#"alertname=~"(x\"y)""#
        );
    }

    fn line_at(since_ms: i64, ts_ms: i64) -> AlertLine {
        let mut line: AlertLine = serde_json::from_value(serde_json::json!({
            "ts": "2026-12-06T10:00:00Z", "event": "firing", "rule": "stuck_agent",
            "severity": "warning", "target": "t", "key": "k", "summary": "s",
            "since": "2026-12-06T10:00:00Z",
        }))
        .unwrap();
        line.since = Timestamp::from_unix_ms(since_ms).unwrap();
        line.ts = Timestamp::from_unix_ms(ts_ms).unwrap();
        line
    }

    const T0: i64 = 1_796_551_200_000; // 2026-12-06T10:00:00Z, a whole second

    #[test]
    fn replicas_polling_in_the_same_second_send_the_same_starts_at() {
        let a = line_at(T0 + 331, T0 + 3_331);
        let b = line_at(T0 + 416, T0 + 3_416);
        assert_eq!(grid_start(a.since), grid_start(b.since));
        assert_eq!(grid_start(a.since).unix_ms(), T0);
    }

    #[test]
    fn across_a_second_boundary_the_later_replica_posts_a_second_later() {
        // 20 ms apart, but on both sides of T0 + 1 s: b must find a's alert.
        let a = line_at(T0 + 990, T0 + 3_990);
        let b = line_at(T0 + 1_010, T0 + 4_010);
        let gap = first_post_at(&b).unix_ms() - first_post_at(&a).unix_ms();
        assert_eq!(gap, 1_000);
        // Never before the diagnosis hold has passed since the line fired.
        let hold = FIRST_POST_HOLD.as_millis() as i64;
        assert!(first_post_at(&a).unix_ms() >= a.ts.unix_ms() + hold);
        assert_eq!(first_post_at(&a).unix_ms(), T0 + 1_000 + 3_000 + hold);
    }

    #[test]
    fn label_names_are_made_valid() {
        assert_eq!(label_name("job_id"), "job_id");
        assert_eq!(label_name("run-id"), "run_id");
        assert_eq!(label_name("1x"), "_1x");
        assert_eq!(label_name(""), "_");
    }
}
