//! From the alert lines of one replay to the alerts that fired: one
//! [`Fired`] per `firing` line, closed by its `resolved` line (or still
//! firing when the records end). Pure: the lines and the end of the
//! records come in, the list goes out.

use std::collections::HashMap;

use shared_schema::{AlertEvent, AlertLine, Labels, Severity, Timestamp};

use crate::engine::Emitted;

/// One alert that fired: from its `firing` line to its `resolved` one.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The rule's name.
    pub rule: String,
    /// The target's name.
    pub target: String,
    /// The alert's identity (CONTRACT.md section 3).
    pub key: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The subject's labels.
    pub labels: Labels,
    /// The summary of the `firing` line.
    pub summary: String,
    /// The value of the `firing` line.
    pub value: Option<f64>,
    /// The threshold of the `firing` line.
    pub threshold: Option<f64>,
    /// When the condition first held.
    pub since: Timestamp,
    /// The `ts` of the `firing` line.
    pub firing: Timestamp,
    /// The `ts` of the `resolved` line; `None`: still firing at the end.
    pub resolved: Option<Timestamp>,
    /// `resolved`, or the end of the records while it still fires.
    pub end: Timestamp,
    /// `repeat` lines written while it fired.
    pub repeats: usize,
    /// The rule's effective `for` for this subject, seconds.
    pub for_s: f64,
    /// Fired and resolved within `for` of each other: likely noise.
    pub flap: bool,
}

impl Fired {
    /// How long it fired, seconds (to the end of the records while it still fires).
    pub fn duration_s(&self) -> f64 {
        self.end.seconds_since(&self.firing).max(0.0)
    }

    /// Detection delay: from `since` to `firing`, seconds.
    pub fn delay_s(&self) -> f64 {
        self.firing.seconds_since(&self.since).max(0.0)
    }

    /// The subject: the key without `rule|target|` (`""` for the target itself).
    pub fn subject(&self) -> &str {
        let prefix_len = self.rule.len() + 1 + self.target.len();
        match self.key.get(prefix_len..) {
            Some(rest) if self.key.starts_with(&self.rule) => rest.strip_prefix('|').unwrap_or(""),
            _ => &self.key,
        }
    }
}

/// Collects the alert lines of one replay, in the order they were written.
#[derive(Debug, Default)]
pub struct Tracker {
    open: HashMap<String, Fired>,
    done: Vec<Fired>,
}

impl Tracker {
    /// Takes one line the engine emitted, with the `for` in force for its alert.
    pub fn emitted(&mut self, e: &Emitted) {
        self.line(&e.line);
        if e.line.event == AlertEvent::Firing {
            if let Some(f) = self.open.get_mut(&e.line.key) {
                f.for_s = e.for_s;
            }
        }
    }

    /// Takes one alert line.
    pub fn line(&mut self, l: &AlertLine) {
        match l.event {
            AlertEvent::Firing => {
                // A key fires again only after it resolved; should a second
                // `firing` come first, the first alert ends there.
                if let Some(mut old) = self.open.remove(&l.key) {
                    old.end = l.ts;
                    old.resolved = Some(l.ts);
                    self.done.push(old);
                }
                self.open.insert(
                    l.key.clone(),
                    Fired {
                        rule: l.rule.clone(),
                        target: l.target.clone(),
                        key: l.key.clone(),
                        severity: l.severity,
                        labels: l.labels.clone(),
                        summary: l.summary.clone(),
                        value: l.value,
                        threshold: l.threshold,
                        since: l.since,
                        firing: l.ts,
                        resolved: None,
                        end: l.ts,
                        repeats: 0,
                        for_s: 0.0,
                        flap: false,
                    },
                );
            }
            AlertEvent::Resolved => {
                if let Some(mut f) = self.open.remove(&l.key) {
                    f.resolved = Some(l.ts);
                    f.end = l.ts;
                    self.done.push(f);
                }
            }
            AlertEvent::Repeat => {
                if let Some(f) = self.open.get_mut(&l.key) {
                    f.repeats += 1;
                }
            }
            AlertEvent::Dropped => {}
        }
    }

    /// The alerts, ordered by rule, firing time and key; those still
    /// firing end at `end_of(alert)`; `for_of(alert)` is the rule's
    /// effective `for` (seconds) that decides a flap (the one
    /// [`Tracker::emitted`] took, for a replay).
    pub fn finish(
        self,
        end_of: impl Fn(&Fired) -> Timestamp,
        for_of: impl Fn(&Fired) -> f64,
    ) -> Vec<Fired> {
        let mut all = self.done;
        for (_, mut f) in self.open {
            let end = end_of(&f);
            f.end = if end > f.firing { end } else { f.firing };
            all.push(f);
        }
        for f in &mut all {
            f.for_s = for_of(f);
            f.flap = f.resolved.is_some() && f.duration_s() <= f.for_s;
        }
        all.sort_by(|x, y| {
            (x.rule.as_str(), x.firing, x.key.as_str()).cmp(&(
                y.rule.as_str(),
                y.firing,
                y.key.as_str(),
            ))
        });
        all
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn t(s: f64) -> Timestamp {
        Timestamp::parse("2026-11-22T10:00:00Z")
            .unwrap()
            .plus_seconds(s)
    }

    pub(crate) fn line(event: AlertEvent, key: &str, ts: f64, since: f64) -> AlertLine {
        let mut parts = key.split('|');
        AlertLine {
            ts: t(ts),
            event,
            rule: parts.next().unwrap().into(),
            severity: Severity::Warning,
            target: parts.next().unwrap().into(),
            key: key.into(),
            labels: Default::default(),
            summary: format!("summary of {key}"),
            value: Some(0.01),
            threshold: Some(0.02),
            since: t(since),
            diagnosis: None,
            sink: None,
        }
    }

    /// A key that fires twice gives two alerts; repeats are counted; one
    /// still firing ends at the end of the records; a resolve within `for`
    /// of the firing is a flap, one after it is not.
    #[test]
    fn firing_and_resolved_lines_make_alerts_and_short_ones_are_flaps() {
        use AlertEvent::*;
        let k = "stuck_agent|orch|job=7|run=1|pid=9";
        let mut tr = Tracker::default();
        for l in [
            line(Firing, k, 600.0, 0.0),
            line(Repeat, k, 700.0, 0.0),
            line(Resolved, k, 1300.0, 0.0), // fired 700 s > for
            line(Firing, k, 2000.0, 1400.0),
            line(Resolved, k, 2300.0, 1400.0), // fired 300 s <= for: a flap
            line(Firing, "target_down|orch", 2400.0, 2340.0),
            line(Dropped, "target_down|orch", 2400.0, 2340.0),
        ] {
            tr.line(&l);
        }
        let all = tr.finish(
            |_| t(3000.0),
            |f| if f.rule == "stuck_agent" { 600.0 } else { 60.0 },
        );
        assert_eq!(all.len(), 3);
        let (a, b, c) = (&all[0], &all[1], &all[2]);
        assert_eq!(
            (a.firing, a.resolved, a.repeats, a.flap),
            (t(600.0), Some(t(1300.0)), 1, false)
        );
        assert_eq!((a.duration_s(), a.delay_s()), (700.0, 600.0));
        assert_eq!(
            (b.firing, b.resolved, b.flap),
            (t(2000.0), Some(t(2300.0)), true)
        );
        assert_eq!(b.delay_s(), 600.0);
        assert_eq!(a.subject(), "job=7|run=1|pid=9");
        assert_eq!(c.rule, "target_down");
        assert_eq!((c.resolved, c.end, c.flap), (None, t(3000.0), false));
        assert_eq!(c.duration_s(), 600.0);
        assert_eq!(c.subject(), "");
    }
}
