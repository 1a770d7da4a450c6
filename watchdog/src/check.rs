//! `watchdog check`: a monitoring-plugin style one-shot. Two polls
//! `interval` apart (so CPU deltas and rates exist), every rule evaluated
//! with `for` treated as met, one line per alert (an alert about an agent
//! ends with its diagnosis, as in the alert log), and the exit code of the
//! worst: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (unreachable or invalid).
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
pub async fn check(over: Overrides, interval: Duration) -> i32 {
    let mut config = match Config::load(&over) {
        Ok(c) => c,
        Err(e) => {
            println!("UNKNOWN: {e}");
            return UNKNOWN;
        }
    };
    let Some(target) = config.targets.first().cloned() else {
        println!("UNKNOWN: no target given");
        return UNKNOWN;
    };
    let poller = match Poller::new(&target, config.timeout) {
        Ok(p) => p,
        Err(e) => {
            println!("UNKNOWN: {e}");
            return UNKNOWN;
        }
    };
    let rules = std::mem::replace(&mut config.rules, RuleSet::defaults());
    let mut engine = Engine::new(rules, Duration::ZERO).with_for_met();
    let first = poller.poll().await;
    engine.observe(&target.name, &first.observation);
    tokio::time::sleep(interval).await;
    let second = poller.poll().await;
    let eval = engine.observe(&target.name, &second.observation);

    match &second.observation.outcome {
        PollOutcome::Failed { reason } => {
            println!("UNKNOWN: target {} unreachable: {reason}", target.name);
            return UNKNOWN;
        }
        // A newer schema is its own condition, the critical
        // `schema_incompatible` rule, evaluated below like any other.
        PollOutcome::SchemaIncompatible { .. } => {}
        PollOutcome::Disabled => {
            println!(
                "UNKNOWN: target {} is disabled (kill-switch off)",
                target.name
            );
            return UNKNOWN;
        }
        PollOutcome::Ok => {}
    }

    let mut alerts = engine.firing_alerts();
    alerts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.key.cmp(&b.0.key)));
    let found = diagnoses(&engine, &alerts, &target).await;
    let mut code = OK;
    for (alert, severity) in &alerts {
        let word = match severity {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        };
        code = code.max(match severity {
            Severity::Critical => CRITICAL,
            Severity::Warning => WARNING,
            Severity::Info => OK,
        });
        let mut summary = alert.finding.summary.clone();
        if let Some(d) = found.get(&alert.key) {
            summary = format!("{summary}: {d}");
        }
        println!("{word} {}: {summary} [{}]", alert.rule, alert.key);
    }
    if let (true, PollOutcome::SchemaIncompatible { found }) =
        (alerts.is_empty(), &second.observation.outcome)
    {
        // Only when `schema_incompatible` is disabled: nothing can be said.
        println!(
            "UNKNOWN: target {} speaks schema_version {found}; this watchdog reads {}",
            target.name,
            shared_schema::SCHEMA_VERSION
        );
        return UNKNOWN;
    }
    if alerts.is_empty() {
        println!(
            "OK: target {} answers; {} agents, no alerts",
            target.name,
            eval.agents.len()
        );
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
