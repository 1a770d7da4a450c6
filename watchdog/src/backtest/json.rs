//! The report for CI: one JSON object, its shape documented in
//! docs/REFERENCE.md ("watchdog backtest") and fixed by these types. Times
//! are RFC 3339 on the alerts' own clocks; durations are seconds.

use serde::Serialize;
use shared_schema::{Severity, Timestamp};

use super::compare::{Diff, Spread, Stats};
use super::episodes::Fired;
use super::{verdict, Report, Row, RuleSetting};

/// The shape's version: bumped only if a key changes meaning or goes.
pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct Out<'a> {
    version: u32,
    files: Vec<String>,
    records: usize,
    skipped: usize,
    targets: usize,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    a: Config<'a>,
    b: Option<Config<'a>>,
    rules: Vec<RuleOut<'a>>,
    total: RowOut,
    alerts: Vec<AlertOut<'a>>,
}

#[derive(Serialize)]
struct Config<'a> {
    config: &'a str,
    alerts: usize,
}

#[derive(Serialize)]
struct RuleOut<'a> {
    rule: &'a str,
    setting: SettingOut,
    verdict: String,
    #[serde(flatten)]
    row: RowOut,
}

#[derive(Serialize)]
struct SettingOut {
    a: Option<SettingOne>,
    b: Option<SettingOne>,
}

#[derive(Serialize)]
struct SettingOne {
    enabled: bool,
    for_s: f64,
}

#[derive(Serialize)]
struct RowOut {
    a: StatsOut,
    b: Option<StatsOut>,
    diff: Option<DiffOut>,
}

#[derive(Serialize)]
struct SpreadOut {
    min: f64,
    median: f64,
    max: f64,
}

#[derive(Serialize)]
struct StatsOut {
    fired: usize,
    still_firing: usize,
    flaps: usize,
    firing_s: f64,
    duration_s: Option<SpreadOut>,
    delay_s: Option<SpreadOut>,
}

#[derive(Serialize)]
struct DiffOut {
    added: usize,
    removed: usize,
    both: usize,
    earlier: usize,
    later: usize,
    added_flaps: usize,
    shift_s: Option<SpreadOut>,
}

#[derive(Serialize)]
struct AlertOut<'a> {
    rule: &'a str,
    target: &'a str,
    key: &'a str,
    subject: &'a str,
    severity: Severity,
    labels: &'a shared_schema::Labels,
    change: Option<&'static str>,
    shift_s: Option<f64>,
    a: Option<OneOut<'a>>,
    b: Option<OneOut<'a>>,
}

#[derive(Serialize)]
struct OneOut<'a> {
    since: Timestamp,
    firing: Timestamp,
    resolved: Option<Timestamp>,
    fired_for_s: f64,
    delay_s: f64,
    repeats: usize,
    for_s: f64,
    flap: bool,
    summary: &'a str,
    value: Option<f64>,
    threshold: Option<f64>,
}

fn spread(s: Option<Spread>) -> Option<SpreadOut> {
    s.map(|s| SpreadOut {
        min: s.min,
        median: s.median,
        max: s.max,
    })
}

fn stats(s: &Stats) -> StatsOut {
    StatsOut {
        fired: s.fired,
        still_firing: s.still_firing,
        flaps: s.flaps,
        firing_s: s.firing_s,
        duration_s: spread(s.duration),
        delay_s: spread(s.delay),
    }
}

fn diff(d: &Diff) -> DiffOut {
    DiffOut {
        added: d.added,
        removed: d.removed,
        both: d.both,
        earlier: d.earlier,
        later: d.later,
        added_flaps: d.added_flaps,
        shift_s: spread(d.shift),
    }
}

fn row(r: &Row) -> RowOut {
    RowOut {
        a: stats(&r.a),
        b: r.b.as_ref().map(stats),
        diff: r.diff.as_ref().map(diff),
    }
}

fn one(f: &Fired) -> OneOut<'_> {
    OneOut {
        since: f.since,
        firing: f.firing,
        resolved: f.resolved,
        fired_for_s: f.duration_s(),
        delay_s: f.delay_s(),
        repeats: f.repeats,
        for_s: f.for_s,
        flap: f.flap,
        summary: &f.summary,
        value: f.value,
        threshold: f.threshold,
    }
}

fn setting(s: Option<&RuleSetting>) -> Option<SettingOne> {
    s.map(|s| SettingOne {
        enabled: s.enabled,
        for_s: s.for_s,
    })
}

/// The report as one JSON object (with a final newline).
pub fn render(r: &Report) -> String {
    let out = Out {
        version: VERSION,
        files: r.files.iter().map(|p| p.display().to_string()).collect(),
        records: r.replayed.records,
        skipped: r.replayed.skipped,
        targets: r.targets,
        from: r.span.map(|s| s.0),
        to: r.span.map(|s| s.1),
        a: Config {
            config: &r.a.name,
            alerts: r.a.alerts.len(),
        },
        b: r.b.as_ref().map(|b| Config {
            config: &b.name,
            alerts: b.alerts.len(),
        }),
        rules: r
            .rules
            .iter()
            .filter_map(|x| {
                let name = x.rule.as_deref()?;
                Some(RuleOut {
                    rule: name,
                    setting: SettingOut {
                        a: setting(r.a.settings.get(name)),
                        b: setting(r.b.as_ref().and_then(|b| b.settings.get(name))),
                    },
                    verdict: verdict(x),
                    row: row(x),
                })
            })
            .collect(),
        total: row(&r.total),
        alerts: r
            .pairs
            .iter()
            .filter_map(|p| {
                let any = r.alert(p)?;
                Some(AlertOut {
                    rule: &any.rule,
                    target: &any.target,
                    key: &any.key,
                    subject: any.subject(),
                    severity: any.severity,
                    labels: &any.labels,
                    change: p.change.map(super::compare::Change::as_str),
                    shift_s: p.shift_s,
                    a: r.alert_a(p).map(one),
                    b: r.alert_b(p).map(one),
                })
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_else(|e| {
        // Only non-string map keys could fail; there are none.
        format!("{{\"error\":{:?}}}", e.to_string())
    });
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::super::episodes::tests::{line, t};
    use super::super::episodes::Tracker;
    use super::super::{assemble, SideReport};
    use super::*;
    use crate::replay::Replayed;
    use shared_schema::AlertEvent::{Firing, Resolved};

    /// The documented shape: top-level keys, one alert with both sides.
    #[test]
    fn the_report_is_one_object_of_the_documented_shape() {
        let k = "stuck_agent|orch|job=7";
        let side = |name: &str, firing: f64| {
            let mut tr = Tracker::default();
            tr.line(&line(Firing, k, firing, 0.0));
            tr.line(&line(Resolved, k, 2000.0, 0.0));
            SideReport {
                name: name.into(),
                alerts: tr.finish(|_| t(3000.0), |_| 600.0),
                settings: BTreeMap::from([(
                    "stuck_agent".to_owned(),
                    RuleSetting {
                        enabled: true,
                        for_s: firing,
                    },
                )]),
            }
        };
        let r = assemble(
            vec!["rec.jsonl.1".into(), "rec.jsonl".into()],
            Replayed {
                records: 10,
                skipped: 0,
                alerts: 4,
            },
            1,
            Some((t(0.0), t(3000.0))),
            side("a.toml", 600.0),
            Some(side("b.toml", 300.0)),
        );
        let v: serde_json::Value = serde_json::from_str(&render(&r)).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "a", "alerts", "b", "files", "from", "records", "rules", "skipped", "targets",
                "to", "total", "version"
            ]
        );
        assert_eq!(v["files"][0], "rec.jsonl.1");
        assert_eq!(v["from"], "2026-11-22T10:00:00.000Z");
        assert_eq!(v["rules"][0]["rule"], "stuck_agent");
        assert_eq!(v["rules"][0]["setting"]["b"]["for_s"], 300.0);
        assert_eq!(v["rules"][0]["diff"]["earlier"], 1);
        assert_eq!(v["rules"][0]["diff"]["shift_s"]["median"], -300.0);
        assert_eq!(v["total"]["a"]["fired"], 1);
        assert_eq!(v["total"]["b"]["delay_s"]["max"], 300.0);
        let alert = &v["alerts"][0];
        assert_eq!(alert["change"], "earlier");
        assert_eq!(alert["subject"], "job=7");
        assert_eq!(alert["a"]["firing"], "2026-11-22T10:10:00.000Z");
        assert_eq!(alert["b"]["fired_for_s"], 1700.0);
        assert_eq!(alert["b"]["summary"], "summary of stuck_agent|orch|job=7");
    }
}
