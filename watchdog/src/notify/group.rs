//! Grouped notifications, in Alertmanager's model: a sink with grouping on
//! sends one message per group of alerts (alerts that agree on the
//! `group_by` labels) instead of one per event. A new group waits
//! `group_wait` to gather its first alerts; after that, what changed in
//! the group goes out at most every `group_interval`. In an incident storm
//! (the model API is down and every agent hangs at once) an on-call
//! engineer gets one message per group, not ten thousand.
//!
//! The alert log stays one line per alert; only the sinks group. The
//! [`Grouper`] is pure state: events and instants in, due groups out, so
//! its timing is tested without a clock or a socket.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use edges::dur::Dur;
use serde::{Deserialize, Serialize};
use shared_schema::{AlertEvent, AlertLine};
use tokio::time::Instant;

/// The grouping keys of a sink's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grouping {
    /// The labels that make a group: `rule`, `target`, `severity` or any
    /// label of the alert line (`agent`, `repo`, ...).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// How long a new group gathers alerts before its first message.
    /// Setting this or `group_interval` turns grouping on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<Dur>,
    /// How long after a group's message the next one may follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<Dur>,
}

/// The keys [`Grouping`] adds to a sink's table.
pub const KEYS: [&str; 3] = ["group_by", "group_wait", "group_interval"];

/// Alertmanager's defaults, used once grouping is on.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

fn default_group_by() -> Vec<String> {
    vec!["rule".to_owned(), "target".to_owned()]
}

impl Default for Grouping {
    fn default() -> Self {
        Self {
            group_by: default_group_by(),
            group_wait: None,
            group_interval: None,
        }
    }
}

impl Grouping {
    /// Whether this sink groups at all (off unless a timing key is given:
    /// one message per event stays the default a receiver can rely on).
    pub fn is_on(&self) -> bool {
        self.group_wait.is_some() || self.group_interval.is_some()
    }

    /// What serde cannot check, for the sink called `name`.
    pub fn validate(&self, name: &str) -> anyhow::Result<()> {
        if self.is_on() {
            anyhow::ensure!(
                !self.group_by.is_empty(),
                "{name}: group_by needs at least one label"
            );
            anyhow::ensure!(
                !self.interval().is_zero(),
                "{name}: group_interval must be above 0s"
            );
        }
        Ok(())
    }

    fn wait(&self) -> Duration {
        self.group_wait.map_or(DEFAULT_WAIT, |d| d.0)
    }

    fn interval(&self) -> Duration {
        self.group_interval.map_or(DEFAULT_INTERVAL, |d| d.0)
    }
}

/// One message's worth of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// `group_by` name → value (empty when the alert has no such label).
    pub labels: BTreeMap<String, String>,
    /// The labels as one stable string, e.g. `rule=stuck_agent|target=orch-1`.
    pub key: String,
    /// What happened since the group's last message: the newest event of
    /// each alert, in the order the alerts first changed.
    pub lines: Vec<AlertLine>,
    /// Alerts of the group firing after these events.
    pub firing: usize,
}

impl Group {
    /// The group's labels as people read them: `stuck_agent on orch-1`
    /// when grouped by rule and target, else `name=value, ...`.
    pub fn title(&self) -> String {
        let rule = self.labels.get("rule");
        let target = self.labels.get("target");
        match (rule, target, self.labels.len()) {
            (Some(r), Some(t), 2) => format!("{r} on {t}"),
            (Some(r), None, 1) => r.clone(),
            _ => self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The JSON body of a grouped webhook message: the group, its counts
    /// and at most `cap` of its alert lines (`truncated` says how many
    /// more), in the spirit of Alertmanager's webhook.
    pub fn to_json(&self, cap: usize) -> serde_json::Value {
        let shown = &self.lines[..self.lines.len().min(cap)];
        serde_json::json!({
            "group_key": self.key,
            "group_labels": self.labels,
            "firing": self.firing,
            "resolved": self.resolved(),
            "alerts": shown,
            "truncated": self.lines.len() - shown.len(),
        })
    }

    /// How many of `lines` are `resolved`.
    pub fn resolved(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.event == AlertEvent::Resolved)
            .count()
    }
}

#[derive(Debug, Default)]
struct State {
    labels: BTreeMap<String, String>,
    /// Newest event per alert key since the last message, in arrival order.
    pending: Vec<AlertLine>,
    /// Where each key sits in `pending` (a storm adds ten thousand).
    slot: HashMap<String, usize>,
    firing: BTreeSet<String>,
    due: Option<Instant>,
    last_sent: Option<Instant>,
}

/// The groups of one sink.
#[derive(Debug)]
pub struct Grouper {
    grouping: Grouping,
    groups: BTreeMap<String, State>,
}

impl Grouper {
    /// Groups as `grouping` says.
    pub fn new(grouping: Grouping) -> Self {
        Self {
            grouping,
            groups: BTreeMap::new(),
        }
    }

    /// Takes in events that arrived at `now`.
    pub fn add(&mut self, lines: Vec<AlertLine>, now: Instant) {
        for line in lines {
            if line.event == AlertEvent::Dropped {
                continue;
            }
            let labels: BTreeMap<String, String> = self
                .grouping
                .group_by
                .iter()
                .map(|name| (name.clone(), label(&line, name)))
                .collect();
            let key = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("|");
            let (wait, interval) = (self.grouping.wait(), self.grouping.interval());
            let state = self.groups.entry(key).or_default();
            state.labels = labels;
            match line.event {
                AlertEvent::Resolved => state.firing.remove(&line.key),
                _ => state.firing.insert(line.key.clone()),
            };
            match state.slot.get(&line.key) {
                Some(&at) => state.pending[at] = line,
                None => {
                    state.slot.insert(line.key.clone(), state.pending.len());
                    state.pending.push(line);
                }
            }
            if state.due.is_none() {
                state.due = Some(match state.last_sent {
                    None => now + wait,
                    Some(sent) => (sent + interval).max(now),
                });
            }
        }
    }

    /// When the next group is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.groups.values().filter_map(|s| s.due).min()
    }

    /// The groups due at `now`, taken out of the pending state.
    pub fn take_due(&mut self, now: Instant) -> Vec<Group> {
        self.take(|due| due <= now, now)
    }

    /// Every group with pending events, due or not (at shutdown).
    pub fn take_all(&mut self, now: Instant) -> Vec<Group> {
        self.take(|_| true, now)
    }

    fn take(&mut self, ready: impl Fn(Instant) -> bool, now: Instant) -> Vec<Group> {
        let mut out = Vec::new();
        for (key, state) in &mut self.groups {
            if !state.due.is_some_and(&ready) {
                continue;
            }
            state.due = None;
            state.last_sent = Some(now);
            out.push(Group {
                labels: state.labels.clone(),
                key: key.clone(),
                lines: {
                    state.slot.clear();
                    std::mem::take(&mut state.pending)
                },
                firing: state.firing.len(),
            });
        }
        // A group with nothing firing and nothing pending is forgotten, so
        // the map follows what is live.
        self.groups
            .retain(|_, s| !s.firing.is_empty() || !s.pending.is_empty() || s.due.is_some());
        out
    }
}

/// The value of `name` for grouping: the line's own fields first.
fn label(line: &AlertLine, name: &str) -> String {
    match name {
        "rule" => line.rule.clone(),
        "target" => line.target.clone(),
        "severity" => line.severity.as_str().to_owned(),
        other => line.labels.get(other).unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use shared_schema::Severity;

    fn line(event: AlertEvent, rule: &str, target: &str, job: u32) -> AlertLine {
        AlertLine {
            ts: "2026-11-22T10:10:00.000Z".parse().unwrap(),
            event,
            rule: rule.into(),
            severity: Severity::Warning,
            target: target.into(),
            key: format!("{rule}|{target}|job={job}"),
            labels: BTreeMap::from([("agent".to_owned(), format!("a{}", job % 2))]).into(),
            summary: format!("job {job}"),
            value: None,
            threshold: None,
            since: "2026-11-22T10:00:00.000Z".parse().unwrap(),
            diagnosis: None,
            sink: None,
        }
    }

    fn grouping(wait: u64, interval: u64) -> Grouping {
        Grouping {
            group_wait: Some(Dur::secs(wait)),
            group_interval: Some(Dur::secs(interval)),
            ..Grouping::default()
        }
    }

    #[test]
    fn a_storm_is_one_message_per_group_after_group_wait() {
        let t0 = Instant::now();
        let mut g = Grouper::new(grouping(10, 60));
        let storm: Vec<AlertLine> = (0..10_000)
            .map(|j| {
                line(
                    AlertEvent::Firing,
                    "stuck_agent",
                    if j % 2 == 0 { "a" } else { "b" },
                    j,
                )
            })
            .collect();
        g.add(storm, t0);
        assert_eq!(g.next_due(), Some(t0 + Duration::from_secs(10)));
        assert!(
            g.take_due(t0 + Duration::from_secs(9)).is_empty(),
            "not before group_wait"
        );
        let sent = g.take_due(t0 + Duration::from_secs(10));
        let sizes: Vec<(String, usize, usize)> = sent
            .iter()
            .map(|s| (s.key.clone(), s.lines.len(), s.firing))
            .collect();
        assert_eq!(
            sizes,
            [
                ("rule=stuck_agent|target=a".to_owned(), 5000, 5000),
                ("rule=stuck_agent|target=b".to_owned(), 5000, 5000)
            ]
        );
        assert_eq!(g.next_due(), None);
    }

    #[test]
    fn later_changes_wait_for_group_interval_and_keep_the_newest_event() {
        let t0 = Instant::now();
        let mut g = Grouper::new(grouping(1, 60));
        g.add(vec![line(AlertEvent::Firing, "r", "t", 1)], t0);
        assert_eq!(g.take_due(t0 + Duration::from_secs(1)).len(), 1);

        let t1 = t0 + Duration::from_secs(5);
        g.add(
            vec![
                line(AlertEvent::Firing, "r", "t", 2),
                line(AlertEvent::Repeat, "r", "t", 1),
                line(AlertEvent::Resolved, "r", "t", 1),
            ],
            t1,
        );
        assert_eq!(
            g.next_due(),
            Some(t0 + Duration::from_secs(61)),
            "group_interval after the last message"
        );
        let sent = g.take_due(t0 + Duration::from_secs(61));
        assert_eq!(sent.len(), 1);
        let events: Vec<(&str, AlertEvent)> = sent[0]
            .lines
            .iter()
            .map(|l| (l.key.as_str(), l.event))
            .collect();
        assert_eq!(
            events,
            [
                ("r|t|job=2", AlertEvent::Firing),
                ("r|t|job=1", AlertEvent::Resolved)
            ]
        );
        assert_eq!((sent[0].firing, sent[0].resolved()), (1, 1));
    }

    #[test]
    fn a_change_long_after_the_last_message_goes_out_at_once() {
        let t0 = Instant::now();
        let mut g = Grouper::new(grouping(1, 60));
        g.add(vec![line(AlertEvent::Firing, "r", "t", 1)], t0);
        g.take_due(t0 + Duration::from_secs(1));
        let late = t0 + Duration::from_secs(600);
        g.add(vec![line(AlertEvent::Resolved, "r", "t", 1)], late);
        assert_eq!(g.next_due(), Some(late));
        let sent = g.take_due(late);
        assert_eq!((sent[0].firing, sent[0].resolved()), (0, 1));
        assert!(
            g.groups.is_empty(),
            "a group with nothing left is forgotten"
        );
    }

    #[test]
    fn any_label_groups_and_shutdown_takes_everything() {
        let t0 = Instant::now();
        let mut g = Grouper::new(Grouping {
            group_by: vec!["agent".into()],
            ..grouping(30, 60)
        });
        g.add(
            (0..4)
                .map(|j| line(AlertEvent::Firing, "r", "t", j))
                .collect(),
            t0,
        );
        let all = g.take_all(t0);
        let keys: Vec<&str> = all.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["agent=a0", "agent=a1"]);
    }

    #[test]
    fn grouping_is_off_unless_a_timing_is_given() {
        assert!(!Grouping::default().is_on());
        assert!(grouping(0, 60).is_on());
        let bad = Grouping {
            group_by: vec![],
            ..grouping(1, 1)
        };
        assert!(bad.validate("slack[0]").is_err());
    }
}
