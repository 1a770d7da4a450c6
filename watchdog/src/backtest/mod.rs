//! `watchdog backtest FILE... --config A.toml [--against B.toml]`: what a
//! config would have fired over recorded polls, and how a second one
//! differs (issue 21).
//!
//! The records are read once, through replay's reader, and each
//! observation goes to one engine per config: the same rules, the same
//! clocks, no side effects, no sleeping, the very alert lines two
//! `watchdog replay` runs print. Those lines become alerts
//! ([`episodes`]), the alerts are compared ([`compare`]), and the report
//! is written as text, JSON or HTML ([`text`], [`json`], [`html`]).

pub mod compare;
pub mod episodes;
pub mod html;
pub mod json;
pub mod text;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use shared_schema::Timestamp;

use crate::engine::{Engine, Observation};
use crate::replay::{for_each_record, Replayed};
use crate::rules::{Clock, RuleSet};
use compare::{Diff, Pair, Stats};
use episodes::{Fired, Tracker};

/// One config under test.
#[derive(Debug)]
pub struct Side {
    /// How the reports name it (its file).
    pub name: String,
    /// Its rules.
    pub rules: RuleSet,
    /// `[notify] repeat_interval`.
    pub repeat_interval: std::time::Duration,
}

/// What a config's rule is set to, for the reader of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSetting {
    /// `enabled`.
    pub enabled: bool,
    /// `for`, seconds (before any `per_agent` override).
    pub for_s: f64,
}

/// The alerts of one config.
#[derive(Debug)]
pub struct SideReport {
    /// How the reports name it.
    pub name: String,
    /// Its alerts, by rule, firing time and key.
    pub alerts: Vec<Fired>,
    /// Every rule's setting.
    pub settings: BTreeMap<String, RuleSetting>,
}

/// One rule's row (or the total's).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The rule's name (`None` for the total).
    pub rule: Option<String>,
    /// A's figures.
    pub a: Stats,
    /// B's figures.
    pub b: Option<Stats>,
    /// How B differs.
    pub diff: Option<Diff>,
}

/// The whole report.
#[derive(Debug)]
pub struct Report {
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// Records read and lines skipped.
    pub replayed: Replayed,
    /// Targets seen in the records.
    pub targets: usize,
    /// The first and last `received_at` of the records.
    pub span: Option<(Timestamp, Timestamp)>,
    /// Config A.
    pub a: SideReport,
    /// Config B, with `--against`.
    pub b: Option<SideReport>,
    /// Every alert, A's and B's matched.
    pub pairs: Vec<Pair>,
    /// One row per rule that fired in A or B, by name.
    pub rules: Vec<Row>,
    /// All rules together.
    pub total: Row,
}

impl Report {
    /// A's (or B's) alert of a pair.
    pub fn alert_a(&self, p: &Pair) -> Option<&Fired> {
        p.a.map(|i| &self.a.alerts[i])
    }

    /// B's alert of a pair.
    pub fn alert_b(&self, p: &Pair) -> Option<&Fired> {
        p.b.and_then(|i| self.b.as_ref().map(|b| &b.alerts[i]))
    }

    /// Either side's alert of a pair (A's first): its rule, key, subject.
    pub fn alert(&self, p: &Pair) -> Option<&Fired> {
        self.alert_a(p).or_else(|| self.alert_b(p))
    }

    /// The pairs of one rule.
    pub fn pairs_of<'a>(&'a self, rule: &'a str) -> impl Iterator<Item = &'a Pair> + 'a {
        self.pairs
            .iter()
            .filter(move |p| self.alert(p).is_some_and(|f| f.rule == rule))
    }

    /// Whether `--fail-on what` holds.
    pub fn fails_on(&self, what: FailOn) -> bool {
        let Some(d) = &self.total.diff else {
            return false;
        };
        match what {
            FailOn::Added => d.added > 0,
            FailOn::Removed => d.removed > 0,
            FailOn::Any => d.any(),
        }
    }
}

/// `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// B fires an alert A does not.
    Added,
    /// A fires an alert B does not.
    Removed,
    /// Any of those, or a shared alert firing at another time.
    Any,
}

/// Where the records of one target end, on each clock: still-firing
/// alerts are counted as firing up to there.
#[derive(Debug, Clone, Copy)]
struct Ends {
    emitter: Timestamp,
    watchdog: Timestamp,
}

struct Running {
    name: String,
    engine: Engine,
    tracker: Tracker,
}

/// Backtests `files` (in order) under `a` and, when given, `b`.
///
/// `Err` names the file that could not be read.
pub fn backtest(
    files: &[PathBuf],
    a: Side,
    b: Option<Side>,
) -> Result<Report, (PathBuf, std::io::Error)> {
    let start = |s: Side| Running {
        name: s.name,
        engine: Engine::new(s.rules, s.repeat_interval),
        tracker: Tracker::default(),
    };
    let mut sides: Vec<Running> = std::iter::once(start(a)).chain(b.map(start)).collect();
    let mut ends: HashMap<String, Ends> = HashMap::new();
    let mut span: Option<(Timestamp, Timestamp)> = None;
    let mut replayed = Replayed::default();
    let mut alerts = 0;
    for path in files {
        let file = std::fs::File::open(path).map_err(|e| (path.clone(), e))?;
        let name = path.display().to_string();
        for_each_record(
            std::io::BufReader::new(file),
            &name,
            &mut replayed,
            |target, obs: &Observation, received| {
                // One parse, one observation, every engine.
                for side in &mut sides {
                    let eval = side.engine.observe_received(target, obs, received);
                    alerts += eval.emitted.len();
                    for e in &eval.emitted {
                        side.tracker.emitted(e);
                    }
                }
                let emitter = obs.envelope.as_ref().map_or(obs.now, |e| e.generated_at);
                let e = ends.entry(target.to_owned()).or_insert(Ends {
                    emitter,
                    watchdog: obs.now,
                });
                e.emitter = e.emitter.max(emitter);
                e.watchdog = e.watchdog.max(obs.now);
                span = Some(match span {
                    None => (obs.now, obs.now),
                    Some((lo, hi)) => (lo.min(obs.now), hi.max(obs.now)),
                });
                Ok(())
            },
        )
        .map_err(|e| (path.clone(), e))?;
    }
    replayed.alerts = alerts;
    let mut reports = sides.into_iter().map(|s| finish(s, &ends));
    let a = reports.next().unwrap_or_else(|| SideReport {
        name: String::new(),
        alerts: Vec::new(),
        settings: BTreeMap::new(),
    });
    let b = reports.next();
    Ok(assemble(files.to_vec(), replayed, ends.len(), span, a, b))
}

fn finish(side: Running, ends: &HashMap<String, Ends>) -> SideReport {
    let rules = side.engine.rules();
    let end_of = |f: &Fired| {
        let clock = rules.get(&f.rule).map_or(Clock::Emitter, |r| r.clock());
        ends.get(&f.target).map_or(f.firing, |e| match clock {
            Clock::Emitter => e.emitter,
            Clock::Watchdog => e.watchdog,
        })
    };
    // The `for` each alert fired under, as the engine emitted it.
    let alerts = side.tracker.finish(end_of, |f: &Fired| f.for_s);
    let settings = rules
        .rules
        .iter()
        .map(|r| {
            (
                r.name().to_owned(),
                RuleSetting {
                    enabled: r.common().enabled,
                    for_s: r.common().for_.as_secs_f64(),
                },
            )
        })
        .collect();
    SideReport {
        name: side.name,
        alerts,
        settings,
    }
}

/// The pairs and rows of two (or one) lists of alerts: pure.
pub fn assemble(
    files: Vec<PathBuf>,
    replayed: Replayed,
    targets: usize,
    span: Option<(Timestamp, Timestamp)>,
    a: SideReport,
    b: Option<SideReport>,
) -> Report {
    let pairs = match &b {
        Some(b) => compare::pair(&a.alerts, &b.alerts),
        None => compare::alone(&a.alerts),
    };
    let names: BTreeSet<&str> = a
        .alerts
        .iter()
        .chain(b.iter().flat_map(|b| b.alerts.iter()))
        .map(|f| f.rule.as_str())
        .collect();
    let row = |rule: Option<&str>| {
        let keep = |f: &&Fired| rule.map_or(true, |r| f.rule == r);
        let b_alerts = b.as_ref().map(|b| b.alerts.as_slice());
        Row {
            rule: rule.map(str::to_owned),
            a: compare::stats(a.alerts.iter().filter(keep)),
            b: b_alerts.map(|x| compare::stats(x.iter().filter(keep))),
            diff: b_alerts.map(|x| {
                let of_rule = pairs.iter().filter(|p| {
                    let f = p.a.map(|i| &a.alerts[i]).or_else(|| p.b.map(|i| &x[i]));
                    f.is_some_and(|f| rule.map_or(true, |r| f.rule == r))
                });
                compare::diff(of_rule, x)
            }),
        }
    };
    let rules = names.iter().map(|n| row(Some(n))).collect();
    let total = row(None);
    Report {
        files,
        replayed,
        targets,
        span,
        a,
        b,
        pairs,
        rules,
        total,
    }
}

/// A timestamp for people: `2026-11-22 10:05:00`, UTC, to the second.
pub fn clock(ts: &Timestamp) -> String {
    let s = ts.to_string();
    format!("{} {}", &s[..10], &s[11..19])
}

/// Seconds for people: `45s`, `5m 00s`, `1h 05m`, `2d 03h`.
pub fn human(seconds: f64) -> String {
    crate::web::status::duration(seconds)
}

/// A signed shift for people: `-5m 00s` (earlier), `+12s` (later), `0s`.
pub fn signed(seconds: f64) -> String {
    if seconds < 0.0 {
        format!("-{}", human(-seconds))
    } else if seconds > 0.0 {
        format!("+{}", human(seconds))
    } else {
        "0s".to_owned()
    }
}

/// One sentence per rule for the person deciding, e.g. "B fires 3 more
/// alerts than A (3 added, 0 removed); on the 9 both fire, B fires 5m 00s
/// earlier (median); 2 of the added resolved within `for`: likely noise."
pub fn verdict(row: &Row) -> String {
    let Some(d) = &row.diff else {
        let s = &row.a;
        return format!(
            "{} alert{} fired, {} still firing, {} flap{}",
            s.fired,
            plural(s.fired),
            s.still_firing,
            s.flaps,
            plural(s.flaps)
        );
    };
    let mut parts = Vec::new();
    let net = d.added as i64 - d.removed as i64;
    parts.push(match net {
        0 => format!(
            "B fires as many alerts as A ({} added, {} removed)",
            d.added, d.removed
        ),
        n if n > 0 => format!(
            "B fires {n} more alert{} than A ({} added, {} removed)",
            plural(n.unsigned_abs() as usize),
            d.added,
            d.removed
        ),
        n => format!(
            "B fires {} fewer alert{} than A ({} added, {} removed)",
            -n,
            plural(n.unsigned_abs() as usize),
            d.added,
            d.removed
        ),
    });
    if let Some(shift) = d.shift {
        let when = if shift.median < 0.0 {
            format!("{} earlier", human(-shift.median))
        } else if shift.median > 0.0 {
            format!("{} later", human(shift.median))
        } else {
            "at the same time".to_owned()
        };
        parts.push(format!(
            "on the {} both fire, B fires {when} (median; {} earlier, {} later)",
            d.both, d.earlier, d.later
        ));
    }
    if d.added_flaps > 0 {
        parts.push(format!(
            "{} of the added resolved within `for`: likely noise",
            d.added_flaps
        ));
    }
    parts.join("; ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::episodes::tests::{line, t};
    use super::*;
    use shared_schema::AlertEvent::{Firing, Resolved};

    fn side(name: &str, lines: &[shared_schema::AlertLine]) -> SideReport {
        let mut tr = Tracker::default();
        for l in lines {
            tr.line(l);
        }
        SideReport {
            name: name.into(),
            alerts: tr.finish(|_| t(5000.0), |_| 300.0),
            settings: BTreeMap::new(),
        }
    }

    /// The rows add up per rule and in all, and `--fail-on` follows them.
    #[test]
    fn rows_per_rule_and_in_all_and_fail_on() {
        let k7 = "stuck_agent|orch|job=7";
        let k8 = "stuck_agent|orch|job=8";
        let down = "target_down|orch";
        let a = side(
            "a.toml",
            &[
                line(Firing, k7, 600.0, 0.0),
                line(Resolved, k7, 2000.0, 0.0),
            ],
        );
        let b = side(
            "b.toml",
            &[
                line(Firing, k7, 300.0, 0.0),
                line(Resolved, k7, 2000.0, 0.0),
                line(Firing, k8, 1000.0, 700.0),
                line(Resolved, k8, 1100.0, 700.0),
                line(Firing, down, 3000.0, 2940.0),
            ],
        );
        let r = assemble(vec![], Replayed::default(), 1, None, a, Some(b));
        assert_eq!(r.rules.len(), 2);
        let stuck = r.rules[0].diff.clone().unwrap();
        assert_eq!((stuck.added, stuck.removed, stuck.earlier), (1, 0, 1));
        let down_row = r.rules[1].diff.clone().unwrap();
        assert_eq!((down_row.added, down_row.both), (1, 0));
        let total = r.total.diff.clone().unwrap();
        assert_eq!((total.added, total.removed, total.both), (2, 0, 1));
        assert_eq!(r.total.b.as_ref().unwrap().fired, 3);
        assert_eq!(r.total.a.fired, 1);
        assert!(r.fails_on(FailOn::Added));
        assert!(!r.fails_on(FailOn::Removed));
        assert!(r.fails_on(FailOn::Any));
        assert_eq!(
            verdict(&r.rules[0]),
            "B fires 1 more alert than A (1 added, 0 removed); on the 1 both fire, \
             B fires 5m 00s earlier (median; 1 earlier, 0 later); \
             1 of the added resolved within `for`: likely noise"
        );
        // Without B nothing can differ.
        let alone = assemble(vec![], Replayed::default(), 1, None, side("a", &[]), None);
        assert!(!alone.fails_on(FailOn::Any));
        assert_eq!(signed(-300.0), "-5m 00s");
        assert_eq!(clock(&t(65.0)), "2026-11-22 10:01:05");
    }
}
