//! The alert state machine: inactive → pending → firing → resolved.
//!
//! Pure: each step takes the rule's verdict for one key, the target's
//! running clock and the timestamp to write, and returns the event to log,
//! if any. The `for` timer counts only time between two observations that
//! both saw the condition hold, so a gap (target down, section degraded,
//! not enough data) neither fires, resolves nor resets an alert, and the
//! time spent in the gap never counts towards `for`: a missed poll is
//! "unknown", not "fine". `keep_firing_for` is counted the same way.

use serde::{Deserialize, Serialize};
use shared_schema::{AlertEvent, AlertLine, Labels, Severity, Timestamp};

use crate::dur::Dur;

/// What a rule found for one subject while its condition holds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Finding {
    /// Identifying labels (never values).
    pub labels: Labels,
    /// One sentence for a human.
    pub summary: String,
    /// The measured value.
    pub value: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
    /// How long the condition had already held when first seen (a delta that
    /// spans the interval before it): counted towards `for` and `since`.
    #[serde(default)]
    pub already_held_s: Option<f64>,
    /// The job of the agent the finding is about, when it is about one
    /// ([`crate::rules::PerAgent::about`] sets it with the labels): the
    /// job a diagnosis asks `GET /agents/{job_id}` about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    /// The `for` of the agent's `per_agent` override, resolved by the rule
    /// when it made the finding (none: the rule's own `for`).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<Dur>,
}

/// One observation of one alert's condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The condition holds.
    True(Finding),
    /// The condition does not hold (or the subject is gone).
    False,
    /// Not known this time: a gap.
    Unknown,
}

/// How the last observation of an alert went (only whether it was known and true).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Last {
    /// The condition held.
    True,
    /// It did not.
    False,
    /// Not known.
    Unknown,
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The condition holds but not yet for `for`.
    Pending,
    /// Announced.
    Firing,
}

/// The timings of one rule, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// `for`.
    pub for_s: f64,
    /// `keep_firing_for`.
    pub keep_firing_for_s: f64,
    /// `[notify] repeat_interval`; 0 turns reminders off.
    pub repeat_s: f64,
}

/// How far short of `for` a hold may fall and still fire, in seconds
/// (capped at a tenth of `for`, so a short `for` keeps its meaning).
///
/// A hold is counted in target clock from poll to poll, and each poll's
/// clock carries its own request's latency: `for = "3s"` held over three
/// 1 s polls reads 2.998 s on one watchdog and 3.002 s on its HA replica.
/// Without the slack the first fires a whole poll later than the second,
/// which reorders the replicas' first posts to Alertmanager and moves
/// `startsAt` (issue 22); Prometheus does not meet this because it
/// evaluates on a scheduled grid, not at the time an answer arrived.
pub const FOR_SLACK_S: f64 = 0.1;

/// Whether a condition held for `held_s` has waited out `for_s`.
fn held_long_enough(held_s: f64, for_s: f64) -> bool {
    held_s >= for_s - FOR_SLACK_S.min(for_s / 10.0)
}

/// One pending or firing alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule's name.
    pub rule: String,
    /// The target's name.
    pub target: String,
    /// The alert's identity.
    pub key: String,
    /// Where it is.
    pub phase: Phase,
    /// What the rule found the last time the condition held.
    pub finding: Finding,
    /// When the condition first held.
    pub since: Timestamp,
    /// Seconds the condition has been seen to hold (gaps excluded).
    pub held_s: f64,
    /// While firing with the condition false: seconds it has been seen false.
    pub false_s: Option<f64>,
    /// The target clock at the last observation, and what it saw.
    pub last_clock: f64,
    /// What the last observation saw.
    pub last: Last,
    /// Target clock of the last `firing`/`repeat` line.
    pub sent_clock: f64,
    /// The diagnosis of the last `firing`/`repeat` line, once the binary
    /// completed it (re-sent with the firing set, shown by the outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
}

/// The result of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to say; the alert stays.
    Quiet,
    /// Write this event; the alert stays.
    Emit(AlertEvent),
    /// The alert ends; write `resolved` if it was firing.
    End {
        /// Whether it had fired.
        was_firing: bool,
    },
}

impl Alert {
    /// A new pending alert whose condition holds at `ts` (and, by the
    /// finding's `already_held_s`, for that long before it).
    pub fn new(
        rule: &str,
        target: &str,
        key: String,
        finding: Finding,
        clock: f64,
        ts: Timestamp,
    ) -> Self {
        let held = finding
            .already_held_s
            .filter(|h| h.is_finite() && *h > 0.0)
            .unwrap_or(0.0);
        Self {
            rule: rule.to_owned(),
            target: target.to_owned(),
            key,
            phase: Phase::Pending,
            finding,
            since: ts.plus_seconds(-held),
            held_s: held,
            false_s: None,
            last_clock: clock,
            last: Last::True,
            sent_clock: clock,
            diagnosis: None,
        }
    }

    /// A brand-new alert's first step: it may fire at once when `for` is 0.
    pub fn start(&mut self, timing: &Timing) -> Step {
        self.maybe_fire(timing)
    }

    fn maybe_fire(&mut self, timing: &Timing) -> Step {
        if self.phase == Phase::Pending && held_long_enough(self.held_s, timing.for_s) {
            self.phase = Phase::Firing;
            self.sent_clock = self.last_clock;
            return Step::Emit(AlertEvent::Firing);
        }
        Step::Quiet
    }

    fn maybe_repeat(&mut self, clock: f64, timing: &Timing) -> Step {
        if self.phase == Phase::Firing
            && timing.repeat_s > 0.0
            && clock - self.sent_clock >= timing.repeat_s
        {
            self.sent_clock = clock;
            return Step::Emit(AlertEvent::Repeat);
        }
        Step::Quiet
    }

    /// Advances the alert by one observation at target clock `clock`.
    pub fn step(&mut self, observed: Observed, clock: f64, timing: &Timing) -> Step {
        let span = (clock - self.last_clock).max(0.0);
        let last = self.last;
        self.last_clock = clock;
        match observed {
            Observed::True(mut finding) => {
                self.last = Last::True;
                // The rule made the labels anew; the ones every output
                // already holds stay the one copy while they are the same.
                finding.labels = finding.labels.dedup_with(&self.finding.labels);
                self.finding = finding;
                self.false_s = None;
                if last == Last::True {
                    self.held_s += span;
                }
                match self.maybe_fire(timing) {
                    Step::Quiet => self.maybe_repeat(clock, timing),
                    fired => fired,
                }
            }
            Observed::False => {
                self.last = Last::False;
                if self.phase == Phase::Pending {
                    return Step::End { was_firing: false };
                }
                let seen_false =
                    self.false_s.unwrap_or(0.0) + if last == Last::False { span } else { 0.0 };
                self.false_s = Some(seen_false);
                if seen_false >= timing.keep_firing_for_s {
                    return Step::End { was_firing: true };
                }
                self.maybe_repeat(clock, timing)
            }
            Observed::Unknown => {
                self.last = Last::Unknown;
                self.maybe_repeat(clock, timing)
            }
        }
    }

    /// A `resolved` line must not read like the problem is still there, so it
    /// says how long the alert lasted and quotes the last finding as past.
    fn summary_for(&self, event: AlertEvent, ts: Timestamp) -> String {
        if event != AlertEvent::Resolved {
            return self.finding.summary.clone();
        }
        let lasted = crate::dur::human_secs(ts.seconds_since(&self.since));
        format!(
            "resolved after {lasted}; last seen: {}",
            self.finding.summary
        )
    }

    /// The log line for `event` at `ts`, without a diagnosis: the binary
    /// completes `firing` and `repeat` lines with a fresh one.
    pub fn line(&self, event: AlertEvent, severity: Severity, ts: Timestamp) -> AlertLine {
        AlertLine {
            ts,
            event,
            rule: self.rule.clone(),
            severity,
            target: self.target.clone(),
            key: self.key.clone(),
            labels: self.finding.labels.clone(),
            summary: self.summary_for(event, ts),
            value: self.finding.value,
            threshold: self.finding.threshold,
            since: self.since,
            diagnosis: None,
            sink: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            labels: Default::default(),
            summary: "s".into(),
            value: Some(1.0),
            threshold: Some(0.5),
            ..Finding::default()
        }
    }

    fn t() -> Timestamp {
        Timestamp::parse("2026-11-22T10:00:00Z").unwrap()
    }

    const TIMING: Timing = Timing {
        for_s: 60.0,
        keep_firing_for_s: 30.0,
        repeat_s: 3600.0,
    };

    #[test]
    fn fires_after_for_and_a_gap_does_not_count() {
        let mut a = Alert::new("r", "t", "k".into(), finding(), 0.0, t());
        assert_eq!(a.start(&TIMING), Step::Quiet);
        assert_eq!(
            a.step(Observed::True(finding()), 30.0, &TIMING),
            Step::Quiet
        );
        assert_eq!(a.step(Observed::Unknown, 45.0, &TIMING), Step::Quiet);
        // 45 → 75 follows an unknown: not counted.
        assert_eq!(
            a.step(Observed::True(finding()), 75.0, &TIMING),
            Step::Quiet
        );
        assert_eq!(a.held_s, 30.0);
        assert_eq!(
            a.step(Observed::True(finding()), 105.0, &TIMING),
            Step::Emit(AlertEvent::Firing)
        );
        assert_eq!(a.since, t());
    }

    #[test]
    fn keep_firing_for_damps_and_repeat_reminds() {
        let mut a = Alert::new("r", "t", "k".into(), finding(), 0.0, t());
        a.start(&Timing {
            for_s: 0.0,
            ..TIMING
        });
        assert_eq!(a.phase, Phase::Firing);
        assert_eq!(a.step(Observed::False, 15.0, &TIMING), Step::Quiet);
        assert_eq!(a.step(Observed::False, 30.0, &TIMING), Step::Quiet);
        assert_eq!(
            a.step(Observed::True(finding()), 45.0, &TIMING),
            Step::Quiet
        );
        assert_eq!(a.step(Observed::False, 60.0, &TIMING), Step::Quiet);
        assert_eq!(
            a.step(Observed::False, 90.0, &TIMING),
            Step::End { was_firing: true }
        );
        let mut b = Alert::new("r", "t", "k".into(), finding(), 0.0, t());
        b.start(&Timing {
            for_s: 0.0,
            ..TIMING
        });
        assert_eq!(
            b.step(Observed::Unknown, 3600.0, &TIMING),
            Step::Emit(AlertEvent::Repeat)
        );
    }

    #[test]
    fn a_hold_short_of_for_by_a_polls_latency_fires_on_that_poll() {
        let timing = Timing {
            for_s: 3.0,
            ..TIMING
        };
        // Polls 1 s apart whose answers came a few ms early or late: the
        // third poll fires on either replica, not the fourth on one.
        for clocks in [[1.0, 2.0, 2.998], [1.001, 2.0, 3.002]] {
            let mut a = Alert::new("r", "t", "k".into(), finding(), 0.0, t());
            a.start(&timing);
            let steps: Vec<Step> = clocks
                .iter()
                .map(|c| a.step(Observed::True(finding()), *c, &timing))
                .collect();
            assert_eq!(
                steps,
                [Step::Quiet, Step::Quiet, Step::Emit(AlertEvent::Firing)],
                "{clocks:?}"
            );
        }
        // A poll short by more than the slack waits for the next one.
        let mut a = Alert::new("r", "t", "k".into(), finding(), 0.0, t());
        a.start(&timing);
        assert_eq!(
            a.step(Observed::True(finding()), 2.85, &timing),
            Step::Quiet
        );
        // A short `for` keeps its meaning: the slack is a tenth of it.
        assert!(!held_long_enough(0.17, 0.2));
        assert!(held_long_enough(0.181, 0.2));
        assert!(held_long_enough(0.0, 0.0));
    }

    #[test]
    fn pending_ends_quietly_when_false() {
        let mut a = Alert::new("r", "t", "k".into(), finding(), 0.0, t());
        a.start(&TIMING);
        assert_eq!(
            a.step(Observed::False, 15.0, &TIMING),
            Step::End { was_firing: false }
        );
    }
}
