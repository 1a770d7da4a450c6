//! The pure core, assembled: one [`Observation`] of one target in, the
//! alert lines to write and the figures for the outputs out.
//!
//! Per target it keeps the delta history, the pending and firing alerts and
//! a running clock (seconds) that drives every `for` and `repeat_interval`:
//! it advances by the emitter's own Δt between two envelopes (monotonic
//! when possible) and by the watchdog's Δt otherwise (failed polls, or an
//! emitter clock that stopped), so time is never counted twice and a
//! frozen emitter clock cannot freeze `target_stale`. No I/O, no clock
//! reads: `now` comes with each observation, so the live loop, `replay` and
//! `check` run the very same code.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared_schema::{read_value, AlertEvent, AlertLine, Envelope, ReadError, Reading, Timestamp};

use crate::alerts::{Alert, Finding, Observed, Phase, Step, Timing};
use crate::delta::{Deltas, Receipt, TargetHistory};
use crate::error::StateError;
use crate::rules::{AgentFigures, Clock, Ctx, DynRule, Outcome, RuleSet, RuleStates, Verdict};
use crate::view::{AgentSample, FiringCount, PollOutcome};

/// The default `[notify] repeat_interval`: a firing alert is repeated every 4h.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// One poll of one target, as the core sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The watchdog's clock when the poll ended (`received_at` in a replay).
    pub now: Timestamp,
    /// How the poll ended.
    pub outcome: PollOutcome,
    /// The envelope, when the outcome is `Ok`.
    pub envelope: Option<Envelope>,
}

impl Observation {
    /// A poll whose body was read (through the one reader).
    pub fn from_body(now: Timestamp, body: &[u8]) -> Self {
        Self::from_read(now, shared_schema::read_envelope(body))
    }

    /// A recorded envelope.
    pub fn from_value(now: Timestamp, value: serde_json::Value) -> Self {
        Self::from_read(now, read_value(value))
    }

    /// The tolerant reader's verdict on a body.
    pub fn from_read(now: Timestamp, read: Result<Reading, ReadError>) -> Self {
        match read {
            // The reader's problems are set-aside sections; they show as
            // `degraded` in the envelope, and `validate` reports them in words.
            Ok(Reading::Enabled { envelope, .. }) => Self {
                now,
                outcome: PollOutcome::Ok,
                envelope: Some(envelope),
            },
            Ok(Reading::Disabled) => Self {
                now,
                outcome: PollOutcome::Disabled,
                envelope: None,
            },
            Err(ReadError::NewerVersion { found, .. }) => Self {
                now,
                outcome: PollOutcome::SchemaIncompatible { found },
                envelope: None,
            },
            Err(e) => Self::failed(now, format!("unparsable body: {e}")),
        }
    }

    /// A poll that failed (connect, timeout, HTTP >= 400, body too large or unparsable).
    pub fn failed(now: Timestamp, reason: impl Into<String>) -> Self {
        Self {
            now,
            outcome: PollOutcome::Failed {
                reason: reason.into(),
            },
            envelope: None,
        }
    }
}

/// What the core remembers of one target (this is what the state file keeps).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TargetState {
    /// Delta baselines.
    pub history: TargetHistory,
    /// What each rule keeps of this target (idle timers, rate windows).
    #[serde(default)]
    pub rules: RuleStates,
    /// The running clock, seconds.
    pub clock_s: f64,
    /// The watchdog's clock at the previous observation.
    pub last_watchdog: Option<Timestamp>,
    /// Whether the previous observation carried an envelope.
    pub last_had_envelope: bool,
    /// Pending and firing alerts by key. Boxed: a B-tree node holds eleven
    /// entries inline, so a target with one alert paid for eleven (3 KiB).
    pub alerts: BTreeMap<String, Box<Alert>>,
}

/// One alert line the engine emitted, with what it still needs before it
/// goes out.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// The line, as the rule's alert says it now.
    pub line: AlertLine,
    /// The job to ask `GET /agents/{job_id}` about before the line goes out:
    /// a `firing` or `repeat` line of a rule about one agent's process.
    /// `None`: it goes out as it is.
    pub diagnose: Option<i64>,
    /// The `for` in force for this alert, seconds: the rule's, or its
    /// agent's `per_agent` override (`backtest` calls a firing shorter
    /// than it a flap).
    pub for_s: f64,
}

impl Emitted {
    /// A line that needs nothing more.
    pub fn ready(line: AlertLine) -> Self {
        Self {
            line,
            diagnose: None,
            for_s: 0.0,
        }
    }
}

/// The result of one observation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    /// Alert lines to write, in order, each with what it still needs. The
    /// core does no I/O: for a line that wants a diagnosis the live loop
    /// fetches it (bounded), tells the engine ([`Engine::set_diagnosis`])
    /// and completes the line before writing it; `replay` ignores it.
    pub emitted: Vec<Emitted>,
    /// Derived per-agent figures.
    pub agents: Vec<AgentSample>,
    /// Alerts of this target firing now, per rule.
    pub firing: Vec<FiringCount>,
}

impl Evaluation {
    /// The lines to write, in order.
    pub fn lines(&self) -> impl Iterator<Item = &AlertLine> {
        self.emitted.iter().map(|e| &e.line)
    }

    /// The lines to write, as they are (for `replay` and `check`, which
    /// fetch no diagnosis).
    pub fn into_lines(self) -> Vec<AlertLine> {
        self.emitted.into_iter().map(|e| e.line).collect()
    }
}

/// The state file's body.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    version: u32,
    targets: BTreeMap<String, TargetState>,
}

pub(crate) const SAVED_VERSION: u32 = 1;

/// Every target's deltas and alerts under one rule set.
#[derive(Debug)]
pub struct Engine {
    rules: RuleSet,
    repeat_s: f64,
    for_met: bool,
    targets: BTreeMap<String, TargetState>,
}

impl Engine {
    /// An engine with no history.
    pub fn new(rules: RuleSet, repeat_interval: Duration) -> Self {
        Self {
            rules,
            repeat_s: repeat_interval.as_secs_f64(),
            for_met: false,
            targets: BTreeMap::new(),
        }
    }

    /// Treats every `for` as already met, and `keep_firing_for` as 0, so the
    /// alerts are those of the conditions now (for `watchdog check`).
    pub fn with_for_met(mut self) -> Self {
        self.for_met = true;
        self
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Evaluates one observation of `target`, with no receipt of the
    /// watchdog's own clock (an emitter's wall-clock step is then not told).
    pub fn observe(&mut self, target: &str, obs: &Observation) -> Evaluation {
        self.observe_received(target, obs, None)
    }

    /// Evaluates one observation of `target` received at `received` on the
    /// watchdog's monotonic clock: a Δt of the emitter's wall clock that
    /// disagrees with the watchdog's own is not trusted (no delta, the idle
    /// timers restart, the running clock advances by the watchdog's Δt).
    pub fn observe_received(
        &mut self,
        target: &str,
        obs: &Observation,
        received: Option<Receipt>,
    ) -> Evaluation {
        let state = self.targets.entry(target.to_owned()).or_default();
        let env = obs.envelope.as_ref();

        let instant = env.map(|e| state.history.instant_of(e).received_at(received));
        let emitter_dt = match (instant, state.history.last) {
            (Some(now), Some(prev)) if state.last_had_envelope && !now.stepped_since(&prev) => {
                Some(
                    now.seconds_since(&prev)
                        .unwrap_or_else(|| now.wall.seconds_since(&prev.wall)),
                )
            }
            _ => None,
        };
        let watchdog_dt = state.last_watchdog.map(|w| obs.now.seconds_since(&w));
        let dt = emitter_dt
            .filter(|d| *d > 0.0)
            .or(watchdog_dt)
            .unwrap_or(0.0);
        if dt.is_finite() && dt > 0.0 {
            state.clock_s += dt;
        }
        state.last_watchdog = Some(obs.now);
        state.last_had_envelope = env.is_some();
        let clock = state.clock_s;

        let deltas = match (env, instant) {
            (Some(e), Some(i)) => state.history.observe(e, i),
            _ => Deltas::default(),
        };
        let ctx = Ctx {
            target,
            outcome: &obs.outcome,
            envelope: env,
            deltas: &deltas,
            clock_s: clock,
        };
        let emitter_ts = env.map_or(obs.now, |e| e.generated_at);

        let mut lines = Vec::new();
        for rule in self.rules.rules.iter().filter(|r| r.common().enabled) {
            let rule = rule.as_ref();
            let base_timing = Timing {
                for_s: if self.for_met {
                    0.0
                } else {
                    rule.common().for_.as_secs_f64()
                },
                keep_firing_for_s: if self.for_met {
                    0.0
                } else {
                    rule.common().keep_firing_for.as_secs_f64()
                },
                repeat_s: self.repeat_s,
            };
            // `per_agent` may set another `for` for an agent's alerts: the
            // rule put it in the finding.
            let for_met = self.for_met;
            let timing_of = |f: &Finding| Timing {
                for_s: match f.for_ {
                    Some(over) if !for_met => over.as_secs_f64(),
                    _ => base_timing.for_s,
                },
                ..base_timing
            };
            let ts = match rule.clock() {
                Clock::Emitter => emitter_ts,
                Clock::Watchdog => obs.now,
            };
            let severity = rule.common().severity;
            let emit = |alert: &Alert, event: AlertEvent, lines: &mut Vec<Emitted>| {
                lines.push(Emitted {
                    line: alert.line(event, severity, ts),
                    diagnose: wants_diagnosis(rule, alert, event),
                    for_s: timing_of(&alert.finding).for_s,
                });
            };
            let outcome = rule.evaluate(&ctx, &mut state.rules);
            let whole_rule_unknown = matches!(outcome, Outcome::Unknown);
            // Keys of this rule's alerts seen this round (only those: a
            // subject with no alert and no finding needs no bookkeeping).
            let mut seen: HashSet<String> = HashSet::new();
            let has_alerts = of_rule(&state.alerts, rule.name()).next().is_some();
            if let Outcome::Subjects(subjects) = outcome {
                for (subject, verdict) in subjects {
                    if matches!(verdict, Verdict::Unknown) && !has_alerts {
                        continue; // nothing pending: an unknown changes nothing
                    }
                    let key = if subject.is_empty() {
                        format!("{}|{target}", rule.name())
                    } else {
                        format!("{}|{target}|{subject}", rule.name())
                    };
                    if seen.contains(&key) {
                        continue; // a duplicate subject: the first one speaks for it
                    }
                    let step = match (state.alerts.get_mut(&key), verdict) {
                        (Some(alert), Verdict::Firing(f)) => {
                            let timing = timing_of(&f);
                            alert.step(Observed::True(f), clock, &timing)
                        }
                        (Some(alert), Verdict::Unknown) => {
                            let timing = timing_of(&alert.finding);
                            alert.step(Observed::Unknown, clock, &timing)
                        }
                        (None, Verdict::Firing(f)) => {
                            let timing = timing_of(&f);
                            let mut alert =
                                Alert::new(rule.name(), target, key.clone(), f, clock, ts);
                            let step = alert.start(&timing);
                            state.alerts.insert(key.clone(), Box::new(alert));
                            step
                        }
                        (None, Verdict::Unknown) => continue,
                    };
                    apply(&mut state.alerts, &key, step, &mut lines, &emit);
                    seen.insert(key);
                }
            }
            let others: Vec<String> = of_rule(&state.alerts, rule.name())
                .filter(|(k, _)| !seen.contains(*k))
                .map(|(k, _)| k.clone())
                .collect();
            for key in others {
                let observed = if whole_rule_unknown {
                    Observed::Unknown
                } else {
                    Observed::False
                };
                let step = match state.alerts.get_mut(&key) {
                    Some(alert) => {
                        let timing = timing_of(&alert.finding);
                        alert.step(observed, clock, &timing)
                    }
                    None => continue,
                };
                apply(&mut state.alerts, &key, step, &mut lines, &emit);
            }
        }

        // The figures per agent: the delta's fraction (computed once, there),
        // then what the rules that own a figure (stuck_agent: idle time) add.
        let ids: Vec<_> = deltas.agents.iter().map(|d| d.id).collect();
        let mut figures: Vec<AgentFigures> = deltas
            .agents
            .iter()
            .map(|d| AgentFigures {
                cpu_fraction: d.cpu_fraction(),
                idle_s: None,
            })
            .collect();
        for rule in self.rules.rules.iter().filter(|r| r.common().enabled) {
            rule.figures(&state.rules, &ids, &mut figures);
        }
        let agents = deltas
            .agents
            .iter()
            .zip(figures)
            .map(|(d, f)| {
                let a = d.agent;
                AgentSample {
                    agent: a.agent.clone(),
                    id: d.id,
                    cpu_fraction: f.cpu_fraction,
                    runtime_s: a.runtime_s,
                    idle_s: f.idle_s,
                }
            })
            .collect();
        let firing = self.firing_counts(target);
        Evaluation {
            emitted: lines,
            agents,
            firing,
        }
    }

    /// Keeps the diagnosis the binary found for alert `key` of `target`
    /// (`None`: the last fetch gave none), so the firing set re-sent to
    /// sinks and shown by the outputs carries it.
    pub fn set_diagnosis(&mut self, target: &str, key: &str, diagnosis: Option<String>) {
        if let Some(alert) = self
            .targets
            .get_mut(target)
            .and_then(|s| s.alerts.get_mut(key))
        {
            alert.diagnosis = diagnosis;
        }
    }

    /// The job to ask about for a diagnosis of `alert`, when its rule is
    /// about an agent's process (for `check`, which asks once per alert).
    pub fn diagnosis_job(&self, alert: &Alert) -> Option<i64> {
        let rule = self.rules.get(&alert.rule)?;
        wants_diagnosis(rule, alert, AlertEvent::Firing)
    }

    fn firing_counts(&self, target: &str) -> Vec<FiringCount> {
        let Some(state) = self.targets.get(target) else {
            return Vec::new();
        };
        let mut out: Vec<FiringCount> = Vec::new();
        for rule in &self.rules.rules {
            let count = of_rule(&state.alerts, rule.name())
                .filter(|(_, a)| a.phase == Phase::Firing)
                .count();
            if count > 0 {
                out.push(FiringCount {
                    rule: rule.name().to_owned(),
                    severity: rule.common().severity,
                    count,
                });
            }
        }
        out
    }

    /// Switches to new rules and repeat interval, keeping every baseline and
    /// alert; alerts of rules that are now disabled (or gone) resolve.
    pub fn reconfigure(
        &mut self,
        rules: RuleSet,
        repeat_interval: Duration,
        now: Timestamp,
    ) -> Vec<AlertLine> {
        let old_severity: BTreeMap<&'static str, shared_schema::Severity> = self
            .rules
            .rules
            .iter()
            .map(|r| (r.name(), r.common().severity))
            .collect();
        self.rules = rules;
        self.repeat_s = repeat_interval.as_secs_f64();
        let mut lines = Vec::new();
        for state in self.targets.values_mut() {
            let rules = &self.rules;
            state.alerts.retain(|_, a| {
                if rules.get(&a.rule).is_some_and(|r| r.common().enabled) {
                    return true;
                }
                if a.phase == Phase::Firing {
                    // The rule is off now, so its severity is whatever it was
                    // configured to; the line says the alert is over.
                    let severity = old_severity
                        .get(a.rule.as_str())
                        .copied()
                        .unwrap_or(shared_schema::Severity::Warning);
                    lines.push(a.line(AlertEvent::Resolved, severity, now));
                }
                false
            });
        }
        lines
    }

    /// Drops a target that is no longer configured (its alerts end silently:
    /// nothing is watched any more, so nothing resolved).
    pub fn forget_target(&mut self, target: &str) {
        self.targets.remove(target);
    }

    /// Drops a target that went away while the watchdog runs (removed from
    /// a targets file): its firing alerts end with a `resolved` line at
    /// `now`, so sinks are not left with ghosts; pending ones end silently.
    pub fn retire_target(&mut self, target: &str, now: Timestamp) -> Vec<AlertLine> {
        let Some(state) = self.targets.remove(target) else {
            return Vec::new();
        };
        state
            .alerts
            .values()
            .filter(|a| a.phase == Phase::Firing)
            .map(|a| {
                let severity = self
                    .rules
                    .get(&a.rule)
                    .map_or(shared_schema::Severity::Warning, |r| r.common().severity);
                a.line(AlertEvent::Resolved, severity, now)
            })
            .collect()
    }

    /// Every pending and firing alert of `target`, with its rule's
    /// severity (for the status page and `/api/v1/alerts`).
    pub fn alerts_of(&self, target: &str) -> Vec<(&Alert, shared_schema::Severity)> {
        let Some(state) = self.targets.get(target) else {
            return Vec::new();
        };
        state
            .alerts
            .values()
            .filter_map(|a| self.rules.get(&a.rule).map(|r| (&**a, r.common().severity)))
            .collect()
    }

    /// Names of the targets with history.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(String::as_str)
    }

    /// A `firing` line for every alert firing now (to re-sync sinks).
    ///
    /// Shared (`Arc`): every sink that follows the set (one per
    /// Alertmanager peer) holds the same lines, not a copy each.
    pub fn firing_lines(&self) -> Vec<Arc<AlertLine>> {
        let mut out = Vec::new();
        for state in self.targets.values() {
            for a in state.alerts.values().filter(|a| a.phase == Phase::Firing) {
                let severity = self
                    .rules
                    .get(&a.rule)
                    .map_or(shared_schema::Severity::Warning, |r| r.common().severity);
                let mut line = a.line(AlertEvent::Firing, severity, a.since);
                line.set_diagnosis(a.diagnosis.clone());
                out.push(Arc::new(line));
            }
        }
        out
    }

    /// How many alerts fire now, over all targets.
    pub fn firing_total(&self) -> usize {
        self.targets
            .values()
            .map(|s| {
                s.alerts
                    .values()
                    .filter(|a| a.phase == Phase::Firing)
                    .count()
            })
            .sum()
    }

    /// Every firing alert with its rule's severity (for `check`).
    pub fn firing_alerts(&self) -> Vec<(&Alert, shared_schema::Severity)> {
        let mut out = Vec::new();
        for state in self.targets.values() {
            for a in state.alerts.values().filter(|a| a.phase == Phase::Firing) {
                if let Some(rule) = self.rules.get(&a.rule) {
                    out.push((&**a, rule.common().severity));
                }
            }
        }
        out
    }

    /// The state file's body: baselines and pending/firing alerts of every target.
    pub fn save(&self) -> Vec<u8> {
        serde_json::to_vec(&self.saved()).unwrap_or_default()
    }

    /// The state file's body to serialize where it goes: in a storm it is
    /// megabytes (about 1.9 KiB a pending or firing alert), and built as
    /// one buffer first, by doubling, it was the largest single allocation
    /// of the watchdog's peak (16.8 MiB at 9,000 firing alerts).
    pub fn saved(&self) -> SavedRef<'_> {
        SavedRef {
            version: SAVED_VERSION,
            targets: &self.targets,
        }
    }

    /// Takes over a saved state; alerts of rules that are not enabled are
    /// dropped without a line (for tests and fuzzing; a restart uses
    /// [`Engine::restore_for`], which resolves them).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<usize, StateError> {
        let mut targets = parse_saved(bytes)?;
        for state in targets.values_mut() {
            let rules = &self.rules;
            state
                .alerts
                .retain(|_, a| rules.get(&a.rule).is_some_and(|r| r.common().enabled));
        }
        let alerts = targets.values().map(|s| s.alerts.len()).sum();
        self.targets = targets;
        Ok(alerts)
    }

    /// Takes over a saved state at a restart, as a reload would take over
    /// the running one: the firing alerts of targets `watched` no longer
    /// names, and of rules no longer enabled, end with a `resolved` line at
    /// `now` (so sinks are not left with ghosts); pending ones end silently.
    pub fn restore_for(
        &mut self,
        bytes: &[u8],
        watched: impl Fn(&str) -> bool,
        now: Timestamp,
    ) -> Result<Restored, StateError> {
        let mut targets = parse_saved(bytes)?;
        let rules = &self.rules;
        let severity = |a: &Alert| {
            rules
                .get(&a.rule)
                .map_or(shared_schema::Severity::Warning, |r| r.common().severity)
        };
        let mut resolved = Vec::new();
        targets.retain(|name, state| {
            let keep = watched(name);
            state.alerts.retain(|_, a| {
                if keep && rules.get(&a.rule).is_some_and(|r| r.common().enabled) {
                    return true;
                }
                if a.phase == Phase::Firing {
                    resolved.push(a.line(AlertEvent::Resolved, severity(a), now));
                }
                false
            });
            keep
        });
        let alerts = targets.values().map(|s| s.alerts.len()).sum();
        self.targets = targets;
        Ok(Restored { alerts, resolved })
    }
}

/// What a restart made of a saved state ([`Engine::restore_for`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Restored {
    /// Pending and firing alerts taken over.
    pub alerts: usize,
    /// A `resolved` line for each firing alert whose target or rule is gone.
    pub resolved: Vec<AlertLine>,
}

/// Reads a state file's body.
fn parse_saved(bytes: &[u8]) -> Result<BTreeMap<String, TargetState>, StateError> {
    let saved: Saved = serde_json::from_slice(bytes)?;
    if saved.version != SAVED_VERSION {
        return Err(StateError::Version {
            found: saved.version,
            expected: SAVED_VERSION,
        });
    }
    Ok(saved.targets)
}

/// The engine's state as the state file holds it ([`Engine::saved`]).
#[derive(Debug, Serialize)]
pub struct SavedRef<'a> {
    version: u32,
    targets: &'a BTreeMap<String, TargetState>,
}

/// The alerts of one rule. Keys begin with `rule|` (CONTRACT.md section 5:
/// `stuck_agent|orch-1|job=7|...`), so one rule's alerts are one contiguous
/// range of the map: a rule with no alerts costs one lookup per poll, not a
/// walk over every alert for every rule (a walk per rule over 1,000 pending alerts at
/// 10,000 agents).
fn of_rule<'a>(
    alerts: &'a BTreeMap<String, Box<Alert>>,
    rule: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Alert)> + 'a {
    let from = format!("{rule}|");
    alerts
        .range::<str, _>((
            std::ops::Bound::Included(from.as_str()),
            std::ops::Bound::Unbounded,
        ))
        .take_while(move |(k, _)| k.starts_with(&from))
        .filter(move |(_, a)| a.rule == rule)
        .map(|(k, a)| (k, &**a))
}

/// The job of a `firing`/`repeat` line of a rule about an agent's process.
fn wants_diagnosis(rule: &dyn DynRule, alert: &Alert, event: AlertEvent) -> Option<i64> {
    if !rule.diagnose() || !matches!(event, AlertEvent::Firing | AlertEvent::Repeat) {
        return None;
    }
    alert.finding.job_id
}

fn apply(
    alerts: &mut BTreeMap<String, Box<Alert>>,
    key: &str,
    step: Step,
    lines: &mut Vec<Emitted>,
    emit: &impl Fn(&Alert, AlertEvent, &mut Vec<Emitted>),
) {
    match step {
        Step::Quiet => {}
        Step::Emit(event) => {
            if let Some(a) = alerts.get(key) {
                emit(a, event, lines);
            }
        }
        Step::End { was_firing } => {
            if let Some(a) = alerts.remove(key) {
                if was_firing {
                    emit(&a, AlertEvent::Resolved, lines);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shared_schema::Agent;

    fn arb_agent() -> impl Strategy<Value = Agent> {
        (
            0i64..4,
            proptest::option::of(0i64..3),
            proptest::option::of(0i64..3),
            proptest::option::of(any::<u32>()),
            proptest::option::of(0u64..3),
            proptest::option::of(any::<u32>()),
            proptest::option::of(-10.0f64..10_000.0),
        )
            .prop_map(|(job_id, run_id, pid, ticks, start, io, runtime)| Agent {
                job_id,
                run_id,
                pid,
                cpu_ticks: ticks.map(u64::from),
                tree_cpu_ticks: ticks.map(|t| u64::from(t) / 2),
                start_ticks: start,
                io_rchar: io.map(u64::from),
                io_wchar: io.map(|_| 0),
                runtime_s: runtime,
                ..Agent::default()
            })
    }

    #[test]
    fn of_rule_finds_exactly_the_alerts_of_one_rule() {
        let ts = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        let mut alerts = BTreeMap::new();
        // `queue` sorts before `queue_depth` and `queue_stalled`, and `|`
        // after `_`: a prefix range must not take the neighbours' alerts.
        for (rule, key) in [
            ("queue", "queue|t"),
            ("queue", "queue|t|x"),
            ("queue_depth", "queue_depth|t"),
            ("queue_stalled", "queue_stalled|t"),
            ("queuez", "queuez|t"),
            ("a", "a|t"),
        ] {
            let f = crate::rules::finding("s".into(), None, None);
            alerts.insert(
                key.to_owned(),
                Box::new(Alert::new(rule, "t", key.into(), f, 0.0, ts)),
            );
        }
        let keys = |rule| {
            of_rule(&alerts, rule)
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys("queue"), ["queue|t", "queue|t|x"]);
        assert_eq!(keys("queue_depth"), ["queue_depth|t"]);
        assert_eq!(keys("a"), ["a|t"]);
        assert!(keys("stuck_agent").is_empty());
        assert!(keys("z").is_empty());
    }

    #[test]
    fn a_retired_target_resolves_its_firing_alerts_and_forgets_the_rest() {
        let mut engine = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
        let t0 = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        let mut e = Envelope::new(t0);
        e.queue = Some(shared_schema::Queue {
            depth: Some(80),
            breaker: Some(shared_schema::Breaker {
                state: Some("open".into()),
                ..shared_schema::Breaker::default()
            }),
            ..shared_schema::Queue::default()
        });
        let obs = Observation {
            now: t0,
            outcome: PollOutcome::Ok,
            envelope: Some(e),
        };
        let ev = engine.observe("t", &obs);
        assert!(ev.lines().any(|l| l.rule == "breaker_open"));
        // breaker_open fires at once; queue_depth is pending (for 2m).
        let rules: Vec<(String, shared_schema::Severity)> = engine
            .alerts_of("t")
            .iter()
            .map(|(a, s)| (a.rule.clone(), *s))
            .collect();
        assert_eq!(rules.len(), 2, "{rules:?}");
        let later = t0.plus_seconds(5.0);
        let lines = engine.retire_target("t", later);
        assert_eq!(lines.len(), 1, "only the firing alert resolves: {lines:?}");
        assert_eq!(lines[0].event, AlertEvent::Resolved);
        assert_eq!(lines[0].rule, "breaker_open");
        assert_eq!(lines[0].ts, later);
        assert!(engine.alerts_of("t").is_empty());
        assert_eq!(engine.targets().count(), 0);
        assert!(engine.retire_target("t", later).is_empty());
    }

    /// Issue 24 item 6: a restart with a target removed or a rule disabled
    /// resolves the saved firing alerts they had, as a reload does.
    #[test]
    fn a_restore_resolves_saved_alerts_of_targets_and_rules_gone() {
        let mut engine = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
        let t0 = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        let mut e = Envelope::new(t0);
        e.queue = Some(shared_schema::Queue {
            depth: Some(80),
            breaker: Some(shared_schema::Breaker {
                state: Some("open".into()),
                ..shared_schema::Breaker::default()
            }),
            ..shared_schema::Queue::default()
        });
        let obs = Observation {
            now: t0,
            outcome: PollOutcome::Ok,
            envelope: Some(e),
        };
        for t in ["kept", "gone"] {
            let ev = engine.observe(t, &obs);
            assert!(ev.lines().any(|l| l.rule == "breaker_open"));
        }
        let saved = engine.save();
        let later = t0.plus_seconds(30.0);

        // Same config: everything is taken over, nothing resolves.
        let mut same = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
        let r = same.restore_for(&saved, |_| true, later).unwrap();
        assert_eq!((r.alerts, r.resolved.len()), (4, 0), "{r:?}");

        // `gone` removed: its firing alert resolves, its pending one ends silently.
        let mut fewer = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
        let r = fewer.restore_for(&saved, |t| t == "kept", later).unwrap();
        assert_eq!(r.alerts, 2);
        let resolved: Vec<(&str, &str, AlertEvent)> = r
            .resolved
            .iter()
            .map(|l| (l.target.as_str(), l.rule.as_str(), l.event))
            .collect();
        assert_eq!(resolved, [("gone", "breaker_open", AlertEvent::Resolved)]);
        assert_eq!(r.resolved[0].ts, later);
        assert_eq!(r.resolved[0].since, t0);
        assert_eq!(fewer.targets().collect::<Vec<_>>(), ["kept"]);

        // breaker_open disabled: it resolves on both targets, with its severity.
        let off = RuleSet::build(
            &[(
                "breaker_open".to_owned(),
                serde_json::json!({"enabled": false}),
            )]
            .into_iter()
            .collect(),
        )
        .unwrap();
        let mut disabled = Engine::new(off, Duration::from_secs(60));
        let r = disabled.restore_for(&saved, |_| true, later).unwrap();
        assert_eq!(r.alerts, 2, "queue_depth stays pending");
        assert_eq!(r.resolved.len(), 2, "{r:?}");
        assert!(r.resolved.iter().all(|l| l.rule == "breaker_open"
            && l.event == AlertEvent::Resolved
            && l.severity == shared_schema::Severity::Critical));
        assert_eq!(disabled.firing_total(), 0);
    }

    proptest! {
        #[test]
        fn any_sequence_of_polls_evaluates_without_panic(
            polls in proptest::collection::vec(
                (proptest::collection::vec(arb_agent(), 0..6), -100i64..100, proptest::option::of(0u64..3), any::<bool>(), any::<bool>()),
                1..12,
            )
        ) {
            let mut engine = Engine::new(RuleSet::defaults(), Duration::from_secs(60));
            let t0 = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
            let mut at = 0.0;
            for (agents, step, boot, down, degraded) in polls {
                at += step as f64;
                let now = t0.plus_seconds(at);
                let obs = if down {
                    Observation::failed(now, "refused")
                } else {
                    let mut e = Envelope::new(now);
                    e.clk_tck = Some(100);
                    e.monotonic_ms = Some((1_000_000.0 + at * 1000.0) as u64);
                    e.boot_id = boot.map(|b| b.to_string());
                    e.agents = agents;
                    if degraded {
                        e.mark_degraded(shared_schema::Section::Agents);
                    }
                    Observation { now, outcome: PollOutcome::Ok, envelope: Some(e) }
                };
                let ev = engine.observe("t", &obs);
                for a in &ev.agents {
                    if let Some(f) = a.cpu_fraction {
                        prop_assert!(f >= 0.0 && f.is_finite());
                    }
                    if let Some(i) = a.idle_s {
                        prop_assert!(i >= 0.0);
                    }
                }
                let mut keys: Vec<&str> = ev.lines().map(|l| l.key.as_str()).collect();
                let n = keys.len();
                keys.sort_unstable();
                keys.dedup();
                prop_assert_eq!(n, keys.len(), "one line per key per poll");
            }
        }
    }
}
