//! What the watchdog shows people and scripts on its listener besides the
//! gauges: the status page (`GET /`, [`status`]) and the alerts API
//! (`GET /api/v1/alerts`, [`api`]), CONTRACT.md section 5.
//!
//! Both render from a [`Board`]: the evaluation loop puts one small card
//! per target on it after each poll (built outside the lock, swapped in
//! under it), and a request takes a [`Snapshot`] (the lock held only to
//! clone a list of `Arc`s) and renders from that. So a page or an API call
//! never holds up a poll, and a poll never waits for a slow client.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use shared_schema::alert::diagnosed_summary;
use shared_schema::{AlertEvent, AlertLine, Envelope, Labels, Severity, Timestamp};

use crate::alerts::{Alert, Phase};
use crate::delta::AgentId;
use crate::view::{AgentSample, PollOutcome};

pub mod api;
pub mod status;

/// Whether an alert has fired yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, not yet for `for`.
    Pending,
    /// Announced.
    Firing,
}

/// One pending or firing alert, as the page and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    /// Rule name.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// Pending or firing.
    pub state: AlertState,
    /// The target's name.
    pub target: String,
    /// The alert's identity (as in the alert log).
    pub key: String,
    /// Identifying labels.
    pub labels: Labels,
    /// One sentence (ends with `: ` and the diagnosis when there is one).
    pub summary: String,
    /// The measured value.
    pub value: Option<f64>,
    /// When the condition first held.
    pub since: Timestamp,
    /// What the agent's process waits on, when a diagnosis was found.
    pub diagnosis: Option<String>,
}

impl AlertRow {
    /// The row of one of the engine's alerts.
    pub fn of(alert: &Alert, severity: Severity) -> Self {
        Self {
            rule: alert.rule.clone(),
            severity,
            state: match alert.phase {
                Phase::Pending => AlertState::Pending,
                Phase::Firing => AlertState::Firing,
            },
            target: alert.target.clone(),
            key: alert.key.clone(),
            labels: alert.finding.labels.clone(),
            // As the alert line says it (CONTRACT.md section 3).
            summary: diagnosed_summary(&alert.finding.summary, None, alert.diagnosis.as_deref()),
            value: alert.finding.value,
            since: alert.since,
            diagnosis: alert.diagnosis.clone(),
        }
    }
}

/// One agent of a target's last envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    /// `job_id`.
    pub job_id: i64,
    /// `agent`.
    pub agent: Option<String>,
    /// `run_id`.
    pub run_id: Option<i64>,
    /// `pid`.
    pub pid: Option<i64>,
    /// CPU fraction over the last poll interval (absent until two samples).
    pub cpu_fraction: Option<f64>,
    /// Seconds idle, as `stuck_agent` counts them.
    pub idle_s: Option<f64>,
    /// `runtime_s`.
    pub runtime_s: Option<f64>,
    /// The process state letter.
    pub state: Option<String>,
    /// Whether the process exists.
    pub alive: Option<bool>,
}

/// What the page knows of one target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetCard {
    /// Its name.
    pub name: String,
    /// `Some(true)` when the last poll got an answer, `None` before the first.
    pub up: Option<bool>,
    /// `false` when the emitter's kill-switch is off.
    pub enabled: Option<bool>,
    /// `schema_version` last seen.
    pub schema_version: Option<u64>,
    /// When the last poll ended.
    pub last_poll: Option<Timestamp>,
    /// When a poll last read an enabled envelope.
    pub last_success: Option<Timestamp>,
    /// Why the last poll failed (cleared by a good one).
    pub last_error: Option<String>,
    /// The agents of the last envelope whose `agents` section was known.
    pub agents: Vec<AgentRow>,
    /// Pending and firing alerts.
    pub alerts: Vec<AlertRow>,
}

impl TargetCard {
    /// The card after one evaluated poll; `prev` is the card before it
    /// (agents are kept through a failed poll or a degraded section: a
    /// missed poll is "unknown", not "no agents").
    pub fn after_poll(
        prev: Option<&TargetCard>,
        name: &str,
        now: Timestamp,
        outcome: &PollOutcome,
        envelope: Option<&Envelope>,
        samples: &[AgentSample],
        alerts: Vec<AlertRow>,
    ) -> Self {
        // Field by field, not `prev.clone()`: the agents and alerts are
        // replaced by most polls, and cloning them first was a copy of
        // every target's rows at each poll.
        let agents_known = matches!((outcome, envelope), (PollOutcome::Ok, Some(e))
            if !e.is_degraded(shared_schema::Section::Agents));
        let mut card = TargetCard {
            name: name.to_owned(),
            up: prev.and_then(|p| p.up),
            enabled: prev.and_then(|p| p.enabled),
            schema_version: prev.and_then(|p| p.schema_version),
            last_poll: Some(now),
            last_success: prev.and_then(|p| p.last_success),
            last_error: prev.and_then(|p| p.last_error.clone()),
            agents: match (envelope, outcome) {
                (Some(e), _) if agents_known => agent_rows(e, samples),
                (_, PollOutcome::Disabled) => Vec::new(),
                _ => prev.map(|p| p.agents.clone()).unwrap_or_default(),
            },
            alerts,
        };
        match outcome {
            PollOutcome::Ok => {
                card.up = Some(true);
                card.enabled = Some(true);
                card.last_success = Some(now);
                card.last_error = None;
                if let Some(e) = envelope {
                    card.schema_version = Some(e.schema_version);
                }
            }
            PollOutcome::Disabled => {
                card.up = Some(true);
                card.enabled = Some(false);
                card.last_error = None;
            }
            PollOutcome::SchemaIncompatible { found } => {
                card.up = Some(false);
                card.schema_version = Some(*found);
                card.last_error = Some(format!(
                    "schema_version {found} is newer than this watchdog reads ({})",
                    shared_schema::SCHEMA_VERSION
                ));
            }
            PollOutcome::Failed { reason } => {
                card.up = Some(false);
                card.last_error = Some(reason.clone());
            }
        }
        card
    }
}

/// The envelope's agents with the derived figures of the same poll.
fn agent_rows(e: &Envelope, samples: &[AgentSample]) -> Vec<AgentRow> {
    let by_id: HashMap<AgentId, &AgentSample> = samples.iter().map(|s| (s.id.slot(), s)).collect();
    e.agents
        .iter()
        .map(|a| {
            let s = by_id.get(&AgentId::of(a).slot());
            AgentRow {
                job_id: a.job_id,
                agent: a.agent.clone(),
                run_id: a.run_id,
                pid: a.pid,
                cpu_fraction: s.and_then(|s| s.cpu_fraction),
                idle_s: s.and_then(|s| s.idle_s),
                runtime_s: a.runtime_s,
                state: a.state.clone(),
                alive: a.alive,
            }
        })
        .collect()
}

#[derive(Debug, Default)]
struct Shared {
    targets: BTreeMap<String, Arc<TargetCard>>,
    /// The diagnosis of each alert whose last line carried one, by key.
    diagnoses: HashMap<String, String>,
    interval: Duration,
}

/// The cards of every target; cheap to clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub struct Board(Arc<Mutex<Shared>>);

/// What one request renders: the cards as they were when it came in.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// One card per target, by name.
    pub targets: Vec<Arc<TargetCard>>,
    /// Diagnoses by alert key.
    pub diagnoses: HashMap<String, String>,
    /// The poll interval (the page refreshes that often).
    pub interval: Duration,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere must not take the page down with it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The poll interval, for the page's refresh.
    pub fn set_interval(&self, interval: Duration) {
        self.lock().interval = interval;
    }

    /// A target that is watched but not polled yet shows as such.
    pub fn add_target(&self, name: &str) {
        self.lock()
            .targets
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(TargetCard {
                    name: name.to_owned(),
                    ..TargetCard::default()
                })
            });
    }

    /// The card of `name` as it is now.
    pub fn card(&self, name: &str) -> Option<Arc<TargetCard>> {
        self.lock().targets.get(name).cloned()
    }

    /// Puts a new card up (built by the caller, outside the lock).
    pub fn put(&self, card: TargetCard) {
        let card = Arc::new(card);
        self.lock().targets.insert(card.name.clone(), card);
    }

    /// Replaces the alerts of `name` (after a reload resolved some).
    pub fn set_alerts(&self, name: &str, alerts: Vec<AlertRow>) {
        let Some(old) = self.card(name) else { return };
        let mut card = (*old).clone();
        card.alerts = alerts;
        self.put(card);
    }

    /// A target that is no longer watched goes, with its alerts' diagnoses.
    pub fn remove_target(&self, name: &str) {
        let mut shared = self.lock();
        if let Some(card) = shared.targets.remove(name) {
            for a in &card.alerts {
                shared.diagnoses.remove(&a.key);
            }
        }
    }

    /// Takes note of alert lines as they are written: the diagnosis of a
    /// `firing` or `repeat` line stays with its alert until it resolves.
    pub fn note_lines(&self, lines: &[AlertLine]) {
        let mut shared = self.lock();
        for line in lines {
            match (line.event, &line.diagnosis) {
                (AlertEvent::Firing | AlertEvent::Repeat, Some(d)) => {
                    shared.diagnoses.insert(line.key.clone(), d.clone());
                }
                (AlertEvent::Resolved, _) => {
                    shared.diagnoses.remove(&line.key);
                }
                _ => {}
            }
        }
    }

    /// The cards now; the lock is held only to clone the `Arc`s.
    pub fn snapshot(&self) -> Snapshot {
        let shared = self.lock();
        Snapshot {
            targets: shared.targets.values().cloned().collect(),
            diagnoses: shared.diagnoses.clone(),
            interval: shared.interval,
        }
    }
}

impl Snapshot {
    /// Every pending and firing alert, firing first, then the most severe,
    /// then the oldest; each with its diagnosis when a line carried one.
    pub fn alerts(&self) -> Vec<AlertRow> {
        let mut out: Vec<AlertRow> = self
            .targets
            .iter()
            .flat_map(|t| t.alerts.iter())
            .map(|a| {
                let mut a = a.clone();
                if let Some(d) = self.diagnoses.get(&a.key) {
                    a.summary = diagnosed_summary(&a.summary, a.diagnosis.as_deref(), Some(d));
                    a.diagnosis = Some(d.clone());
                }
                a
            })
            .collect();
        out.sort_by(|a, b| {
            b.state
                .cmp(&a.state)
                .then(b.severity.cmp(&a.severity))
                .then(a.since.cmp(&b.since))
                .then_with(|| a.key.cmp(&b.key))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_schema::Agent;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn envelope() -> Envelope {
        let mut e = Envelope::new(ts("2026-11-22T10:00:00Z"));
        e.agents = vec![Agent {
            job_id: 7,
            agent: Some("dev".into()),
            pid: Some(1234),
            runtime_s: Some(600.0),
            state: Some("S".into()),
            ..Agent::default()
        }];
        e
    }

    fn sample() -> AgentSample {
        AgentSample {
            agent: Some("dev".into()),
            id: AgentId {
                job_id: 7,
                run_id: None,
                pid: Some(1234),
                start_ticks: None,
            },
            cpu_fraction: Some(0.003),
            runtime_s: Some(600.0),
            idle_s: Some(120.0),
        }
    }

    #[test]
    fn a_row_gets_its_agents_figures_even_when_its_pid_was_reused_in_the_same_envelope() {
        // The deltas keep one agent per (job, run, pid) slot, the first row;
        // a duplicate row with other `start_ticks` shows the same figures.
        let mut e = envelope();
        e.agents[0].start_ticks = Some(100);
        let mut twin = e.agents[0].clone();
        twin.start_ticks = Some(200);
        e.agents.push(twin);
        let mut s = sample();
        s.id.start_ticks = Some(100);
        let rows = agent_rows(&e, &[s]);
        let figures: Vec<_> = rows.iter().map(|r| (r.cpu_fraction, r.idle_s)).collect();
        assert_eq!(figures, vec![(Some(0.003), Some(120.0)); 2]);
    }

    #[test]
    fn a_failed_poll_keeps_the_agents_and_says_why() {
        let now = ts("2026-11-22T10:00:01Z");
        let e = envelope();
        let ok = TargetCard::after_poll(
            None,
            "orch-1",
            now,
            &PollOutcome::Ok,
            Some(&e),
            &[sample()],
            vec![],
        );
        assert_eq!(ok.up, Some(true));
        assert_eq!(ok.agents.len(), 1);
        assert_eq!(ok.agents[0].idle_s, Some(120.0));
        assert_eq!(ok.agents[0].state.as_deref(), Some("S"));
        let later = ts("2026-11-22T10:00:16Z");
        let failed = TargetCard::after_poll(
            Some(&ok),
            "orch-1",
            later,
            &PollOutcome::Failed {
                reason: "connection refused".into(),
            },
            None,
            &[],
            vec![],
        );
        assert_eq!(failed.up, Some(false));
        assert_eq!(failed.last_error.as_deref(), Some("connection refused"));
        assert_eq!(failed.last_success, Some(now));
        assert_eq!(failed.agents, ok.agents);
        let off = TargetCard::after_poll(
            Some(&failed),
            "orch-1",
            later,
            &PollOutcome::Disabled,
            None,
            &[],
            vec![],
        );
        assert_eq!((off.up, off.enabled), (Some(true), Some(false)));
        assert!(off.agents.is_empty() && off.last_error.is_none());
    }

    #[test]
    fn a_diagnosis_from_a_line_joins_its_alert_until_it_resolves() {
        let board = Board::default();
        let row = AlertRow {
            rule: "stuck_agent".into(),
            severity: Severity::Warning,
            state: AlertState::Firing,
            target: "orch-1".into(),
            key: "stuck_agent|orch-1|job=7".into(),
            labels: Default::default(),
            summary: "agent dev (job 7) idle".into(),
            value: Some(0.003),
            since: ts("2026-11-22T10:00:00Z"),
            diagnosis: None,
        };
        board.put(TargetCard {
            name: "orch-1".into(),
            alerts: vec![row.clone()],
            ..TargetCard::default()
        });
        let mut line = AlertRow::of_line_for_test(&row);
        line.diagnosis = Some("blocked reading stdin (pipe)".into());
        board.note_lines(&[line.clone()]);
        let a = board.snapshot().alerts();
        assert_eq!(
            a[0].diagnosis.as_deref(),
            Some("blocked reading stdin (pipe)")
        );
        assert_eq!(
            a[0].summary,
            "agent dev (job 7) idle: blocked reading stdin (pipe)"
        );
        line.event = AlertEvent::Resolved;
        board.note_lines(&[line]);
        assert_eq!(board.snapshot().alerts()[0].diagnosis, None);
        board.remove_target("orch-1");
        assert!(board.snapshot().alerts().is_empty());
    }

    #[test]
    fn an_engine_alert_with_a_diagnosis_shows_it_as_the_line_does() {
        let finding = crate::alerts::Finding {
            labels: BTreeMap::from([("job_id".to_owned(), "7".to_owned())]).into(),
            summary: "agent dev (job 7, pid 1234) used 0.3% CPU and did no I/O for 10m".into(),
            value: Some(0.003),
            threshold: Some(0.02),
            already_held_s: None,
            ..Default::default()
        };
        let mut alert = Alert::new(
            "stuck_agent",
            "orch-1",
            "stuck_agent|orch-1|job=7".into(),
            finding,
            0.0,
            ts("2026-11-22T10:00:00Z"),
        );
        let row = AlertRow::of(&alert, Severity::Warning);
        assert_eq!(
            (row.state, row.diagnosis.as_deref()),
            (AlertState::Pending, None)
        );
        alert.diagnosis = Some("blocked reading stdin (pipe)".into());
        let row = AlertRow::of(&alert, Severity::Warning);
        assert_eq!(
            row.diagnosis.as_deref(),
            Some("blocked reading stdin (pipe)")
        );
        assert!(row
            .summary
            .ends_with("for 10m: blocked reading stdin (pipe)"));
        // The same sentence from a line does not double it.
        let board = Board::default();
        board.put(TargetCard {
            name: "orch-1".into(),
            alerts: vec![row.clone()],
            ..TargetCard::default()
        });
        let mut line = row.of_line_for_test();
        line.diagnosis = row.diagnosis.clone();
        board.note_lines(&[line]);
        assert_eq!(board.snapshot().alerts()[0].summary, row.summary);
    }

    impl AlertRow {
        fn of_line_for_test(&self) -> AlertLine {
            AlertLine {
                ts: self.since,
                event: AlertEvent::Firing,
                rule: self.rule.clone(),
                severity: self.severity,
                target: self.target.clone(),
                key: self.key.clone(),
                labels: self.labels.clone(),
                summary: self.summary.clone(),
                value: self.value,
                threshold: None,
                since: self.since,
                diagnosis: None,
                sink: None,
            }
        }
    }
}
