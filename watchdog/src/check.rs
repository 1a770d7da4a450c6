//! `watchdog check`: a monitoring-plugin style one-shot. Two polls
//! `interval` apart (so CPU deltas and rates exist), every rule evaluated
//! with `for` treated as met, one line per alert (an alert about an agent
//! ends with its diagnosis, as in the alert log), and the exit code of the
//! worst: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (unreachable or invalid).
//! The first line is the plugin's status line ([`status_line`]): counts and
//! performance data for Nagios, Icinga and Sensu; the alert lines follow.
//! When no envelope could be read (unreachable, disabled, a bad config) the
//! one line is `UNKNOWN: why`, with no performance data: no count is known.
//! A newer `schema_version` is not "unknown": it is the critical
//! `schema_incompatible` rule, so it exits 2 with a line naming that rule.

use std::collections::BTreeMap;
use std::time::Duration;

use shared_schema::Severity;

use crate::config::{Config, Overrides};
use crate::engine::Engine;
use crate::poll::Poller;
use crate::rules::RuleSet;
use crate::view::PollOutcome;

/// Exit codes of the monitoring-plugin convention.
pub const OK: i32 = 0;
/// At least one warning.
pub const WARNING: i32 = 1;
/// At least one critical alert.
pub const CRITICAL: i32 = 2;
/// Unreachable, invalid envelope or unusable arguments.
pub const UNKNOWN: i32 = 3;

/// Runs the check; prints its lines on stdout and returns the exit code.
/// A stdout that cannot be written (closed, full) is UNKNOWN: the result
/// never reached the monitoring system, which must not read it as OK.
pub async fn check(over: Overrides, interval: Duration) -> i32 {
    let mut out = Vec::new();
    let code = evaluate(over, interval, &mut out).await;
    let mut text = out.join("\n");
    text.push('\n');
    match crate::stdout::print_all(&text) {
        Ok(()) => code,
        Err(e) => {
            crate::stdout::note_unwritable(&e);
            UNKNOWN
        }
    }
}

/// The check itself: its lines go to `out`, in order.
async fn evaluate(over: Overrides, interval: Duration, out: &mut Vec<String>) -> i32 {
    let mut config = match Config::load(&over) {
        Ok(c) => c,
        Err(e) => {
            out.push(format!("UNKNOWN: {e}"));
            return UNKNOWN;
        }
    };
    let Some(target) = config.targets.first().cloned() else {
        out.push("UNKNOWN: no target given".to_owned());
        return UNKNOWN;
    };
    let poller = match Poller::new(&target, config.timeout) {
        Ok(p) => p,
        Err(e) => {
            out.push(format!("UNKNOWN: {e}"));
            return UNKNOWN;
        }
    };
    let rules = std::mem::replace(&mut config.rules, RuleSet::defaults());
    let mut engine = Engine::new(rules, Duration::ZERO).with_for_met();
    let first = poller.poll().await;
    let received = crate::receipt::now();
    engine.observe_received(&target.name, &first.observation, received);
    tokio::time::sleep(interval).await;
    let second = poller.poll().await;
    let received = crate::receipt::now();
    let eval = engine.observe_received(&target.name, &second.observation, received);

    match &second.observation.outcome {
        PollOutcome::Failed { reason } => {
            out.push(format!(
                "UNKNOWN: target {} unreachable: {reason}",
                target.name
            ));
            return UNKNOWN;
        }
        // A newer schema is its own condition, the critical
        // `schema_incompatible` rule, evaluated below like any other.
        PollOutcome::SchemaIncompatible { .. } => {}
        PollOutcome::Disabled => {
            out.push(format!(
                "UNKNOWN: target {} is disabled (kill-switch off)",
                target.name
            ));
            return UNKNOWN;
        }
        PollOutcome::Ok => {}
    }

    let mut alerts = engine.firing_alerts();
    alerts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.key.cmp(&b.0.key)));
    let count = |s: Severity| alerts.iter().filter(|(_, sev)| *sev == s).count();
    let (critical, warning) = (count(Severity::Critical), count(Severity::Warning));
    let incompatible = matches!(
        second.observation.outcome,
        PollOutcome::SchemaIncompatible { .. }
    );
    // Only when `schema_incompatible` is disabled: nothing can be said.
    let code = if alerts.is_empty() && incompatible {
        UNKNOWN
    } else if critical > 0 {
        CRITICAL
    } else if warning > 0 {
        WARNING
    } else {
        OK
    };
    let perf = Perf {
        critical,
        warning,
        agents: second
            .observation
            .envelope
            .as_ref()
            .map_or(0, |e| e.agents.len()),
        max_idle_s: eval
            .agents
            .iter()
            .filter_map(|a| a.idle_s)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
        queue_depth: second
            .observation
            .envelope
            .as_ref()
            .and_then(|e| e.queue.as_ref())
            .and_then(|q| q.depth),
    };
    let found = diagnoses(&engine, &alerts, &target).await;
    out.push(status_line(code, &target.name, &perf));
    for (alert, severity) in &alerts {
        let word = match severity {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        };
        let mut summary = alert.finding.summary.clone();
        if let Some(d) = found.get(&alert.key) {
            summary = format!("{summary}: {d}");
        }
        out.push(format!("{word} {}: {summary} [{}]", alert.rule, alert.key));
    }
    if let (true, PollOutcome::SchemaIncompatible { found }) =
        (alerts.is_empty(), &second.observation.outcome)
    {
        out.push(format!(
            "UNKNOWN: target {} speaks schema_version {found}; this watchdog reads {}",
            target.name,
            shared_schema::SCHEMA_VERSION
        ));
    }
    code
}

/// The diagnosis of every alert about an agent, by alert key: the views
/// asked as the live loop asks them (a few at once, 2 s in all).
async fn diagnoses(
    engine: &Engine,
    alerts: &[(&crate::alerts::Alert, Severity)],
    target: &crate::config::Target,
) -> BTreeMap<String, String> {
    let Ok(up_close) = crate::up_close::UpClose::new() else {
        return BTreeMap::new();
    };
    let jobs: BTreeMap<&str, i64> = alerts
        .iter()
        .filter_map(|(a, _)| Some((a.key.as_str(), engine.diagnosis_job(a)?)))
        .collect();
    if jobs.is_empty() {
        return BTreeMap::new();
    }
    let deadline = tokio::time::Instant::now() + up_close.deadline();
    let found = crate::outbox::sentences(
        &up_close,
        &target.url,
        target.token.as_deref(),
        jobs.values().copied().collect(),
        deadline,
    )
    .await;
    jobs.into_iter()
        .filter_map(|(key, job)| Some((key.to_owned(), found.get(&job)?.clone()?)))
        .collect()
}

/// The figures of `check`'s first line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perf {
    /// Critical alerts firing.
    pub critical: usize,
    /// Warning alerts firing.
    pub warning: usize,
    /// Agents in the last envelope.
    pub agents: usize,
    /// The longest idle time of an agent, seconds (absent: not known yet).
    pub max_idle_s: Option<f64>,
    /// `queue.depth` (absent: not known).
    pub queue_depth: Option<u64>,
}

/// The word of an exit code, as the first line starts.
pub fn status_word(code: i32) -> &'static str {
    match code {
        OK => "OK",
        WARNING => "WARNING",
        CRITICAL => "CRITICAL",
        _ => "UNKNOWN",
    }
}

/// The first line, in the monitoring-plugin form (CONTRACT.md section 5):
/// `STATUS: N critical, M warning on TARGET | critical=N warning=M agents=K`
/// and, when known, `max_idle=Ss queue_depth=D`. Nagios, Icinga and Sensu
/// show the text before `|` and graph the performance data after it.
pub fn status_line(code: i32, target: &str, p: &Perf) -> String {
    // `|` would end the text early and a newline would end the line: a
    // target's name is the operator's, so neither may reach the output.
    let target: String = target
        .chars()
        .map(|c| if c == '|' || c.is_control() { '_' } else { c })
        .collect();
    let mut line = format!(
        "{}: {} critical, {} warning on {target} | critical={} warning={} agents={}",
        status_word(code),
        p.critical,
        p.warning,
        p.critical,
        p.warning,
        p.agents
    );
    if let Some(idle) = p.max_idle_s.filter(|v| v.is_finite()) {
        line.push_str(&format!(" max_idle={}s", (idle * 10.0).round() / 10.0));
    }
    if let Some(depth) = p.queue_depth {
        line.push_str(&format!(" queue_depth={depth}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One monitoring-plugin output line: `STATUS: text | perfdata`, each
    /// perfdata item `label=value[UOM][;warn;crit;min;max]` (the Monitoring
    /// Plugins development guidelines). Returns the status and the values.
    fn parse_plugin_line(line: &str) -> (String, String, Vec<(String, f64, String)>) {
        let (text, perf) = line.split_once(" | ").expect("a | before the perfdata");
        let (status, text) = text.split_once(": ").expect("STATUS: first");
        assert!(
            ["OK", "WARNING", "CRITICAL", "UNKNOWN"].contains(&status),
            "{status}"
        );
        assert!(!text.contains('|') && !line.contains('\n'), "{line}");
        let items = perf
            .split(' ')
            .map(|item| {
                let (label, rest) = item.split_once('=').expect("label=value");
                assert!(
                    label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{label}"
                );
                let value = rest.split(';').next().unwrap_or_default();
                let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
                let uom = &value[digits.len()..];
                assert!(
                    ["", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"].contains(&uom),
                    "{uom}"
                );
                (
                    label.to_owned(),
                    digits.parse::<f64>().expect("a number"),
                    uom.to_owned(),
                )
            })
            .collect();
        (status.to_owned(), text.to_owned(), items)
    }

    #[test]
    fn the_first_line_parses_as_a_monitoring_plugin_line() {
        let p = Perf {
            critical: 2,
            warning: 1,
            agents: 7,
            max_idle_s: Some(612.34),
            queue_depth: Some(3),
        };
        let line = status_line(CRITICAL, "orch-1", &p);
        assert_eq!(
            line,
            "CRITICAL: 2 critical, 1 warning on orch-1 | critical=2 warning=1 agents=7 max_idle=612.3s queue_depth=3"
        );
        let (status, text, perf) = parse_plugin_line(&line);
        assert_eq!(status, "CRITICAL");
        assert_eq!(text, "2 critical, 1 warning on orch-1");
        assert_eq!(
            perf,
            [
                ("critical".to_owned(), 2.0, String::new()),
                ("warning".to_owned(), 1.0, String::new()),
                ("agents".to_owned(), 7.0, String::new()),
                ("max_idle".to_owned(), 612.3, "s".to_owned()),
                ("queue_depth".to_owned(), 3.0, String::new()),
            ]
        );
    }

    #[test]
    fn unknown_figures_are_left_out_and_a_name_cannot_break_the_line() {
        let p = Perf {
            critical: 0,
            warning: 0,
            agents: 0,
            max_idle_s: None,
            queue_depth: None,
        };
        let line = status_line(OK, "a|b\nc", &p);
        assert_eq!(
            line,
            "OK: 0 critical, 0 warning on a_b_c | critical=0 warning=0 agents=0"
        );
        let (status, _, perf) = parse_plugin_line(&line);
        assert_eq!(status, "OK");
        assert_eq!(perf.len(), 3);
        assert_eq!(status_word(UNKNOWN), "UNKNOWN");
    }
}
