//! The exporter's gauges and the `/metrics` + `/healthz` server, scraped as
//! Prometheus would: values, label sets, series that come and go, and
//! `promtool check metrics` on the output.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use shared_schema::{Envelope, Severity, Timestamp};
use watchdog::delta::AgentId;
use watchdog::exporter::Exporter;
use watchdog::http::{self, Health};
use watchdog::view::{AgentSample, FiringCount, PollOutcome, PollView};

const NOW: &str = "2026-11-22T10:00:00Z";

/// The one place a `PollView` is built, so a new field is a one-line fix.
fn view<'a>(
    target: &'a str,
    outcome: &'a PollOutcome,
    envelope: Option<&'a Envelope>,
    agents: &'a [AgentSample],
    firing: &'a [FiringCount],
) -> PollView<'a> {
    PollView {
        target,
        outcome,
        duration: Duration::from_millis(30),
        now: Timestamp::parse(NOW).unwrap(),
        schema_version: envelope.map(|e| e.schema_version),
        envelope,
        agents,
        firing,
    }
}

fn envelope(json: serde_json::Value) -> Envelope {
    let mut base = serde_json::json!({
        "schema_version": 1, "generated_at": NOW, "stages": [], "agents": [],
        "queue": null, "cost": null
    });
    for (k, v) in json.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn full_envelope() -> Envelope {
    envelope(serde_json::json!({
        "stages": [
            {"task_id": 1, "stage": "review", "age_in_stage_s": 120.0},
            {"task_id": 2, "stage": "review", "age_in_stage_s": 300.5},
            {"task_id": 3, "stage": "build", "age_in_stage_s": null}
        ],
        "queue": {
            "counts": {"queued": 3, "running": 2, "done": 10, "failed": 1, "cancelled": 0},
            "depth": 3, "max_concurrency": 4,
            "breaker": {"state": "open", "consecutive_failures": 5, "opened_at": null}
        },
        "agents": [
            {"agent": "dev", "job_id": 7, "run_id": 42, "pid": 1234, "runtime_s": 600.0},
            {"agent": null, "job_id": 8, "run_id": null, "pid": null, "runtime_s": 5.0}
        ],
        "cost": {"running": [], "aggregate": {"runs": 3, "cost_usd": 1.25, "input_tokens": 100,
            "output_tokens": 50, "cache_read_tokens": null, "cache_creation_tokens": 7}},
        "reconciler": {"wall_clock_ms": 250.0, "pending_event_count": 12,
            "invariant_violations": [{"invariant": 3, "message": "two running jobs"}]},
        "errors": {"total": 6, "by_subsystem": [{"subsystem": "git", "total": 4}, {"subsystem": "llm", "total": 2}]}
    }))
}

fn agent(job_id: i64, cpu: Option<f64>) -> AgentSample {
    AgentSample {
        agent: Some("dev".into()),
        id: AgentId {
            job_id,
            run_id: Some(42),
            pid: Some(1234),
            start_ticks: None,
        },
        cpu_fraction: cpu,
        runtime_s: Some(600.0),
        idle_s: Some(30.0),
    }
}

type Labels = BTreeMap<String, String>;

/// Every sample of `name` as (labels, value).
fn samples(text: &str, name: &str) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (metric, value) = line.rsplit_once(' ').unwrap();
        let (metric_name, labels) = match metric.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (metric, ""),
        };
        if metric_name != name {
            continue;
        }
        let labels = labels
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        out.push((labels, value.parse().unwrap()));
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The value of the one sample of `name` with exactly these labels.
fn value(text: &str, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
    let want = labels(pairs);
    samples(text, name)
        .into_iter()
        .find(|(l, _)| *l == want)
        .map(|(_, v)| v)
}

fn promtool_check(text: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!ci, "CI=true but promtool is not runnable: {err}");
            eprintln!("note: promtool not found ({err}); skipping `promtool check metrics`");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_good_poll_sets_every_envelope_gauge() {
    let exporter = Exporter::new();
    let env = full_envelope();
    let agents = [
        agent(7, Some(0.25)),
        AgentSample {
            agent: None,
            id: AgentId {
                job_id: 8,
                run_id: None,
                pid: None,
                start_ticks: None,
            },
            cpu_fraction: Some(0.0),
            runtime_s: Some(5.0),
            idle_s: None,
        },
    ];
    let firing = [FiringCount {
        rule: "breaker_open".into(),
        severity: Severity::Critical,
        count: 1,
    }];
    exporter.observe(&view(
        "orch-1",
        &PollOutcome::Ok,
        Some(&env),
        &agents,
        &firing,
    ));
    let text = exporter.encode();
    let t = ("target", "orch-1");

    assert_eq!(value(&text, "watchdog_target_up", &[t]), Some(1.0));
    assert_eq!(value(&text, "watchdog_target_enabled", &[t]), Some(1.0));
    assert_eq!(
        value(&text, "watchdog_target_schema_version", &[t]),
        Some(1.0)
    );
    let now = Timestamp::parse(NOW).unwrap().unix_seconds_f64();
    assert_eq!(
        value(&text, "watchdog_last_success_timestamp_seconds", &[t]),
        Some(now)
    );
    let dev = [
        t,
        ("agent", "dev"),
        ("job_id", "7"),
        ("run_id", "42"),
        ("pid", "1234"),
    ];
    assert_eq!(
        value(&text, "watchdog_agent_cpu_fraction", &dev),
        Some(0.25)
    );
    assert_eq!(
        value(&text, "watchdog_agent_runtime_seconds", &dev),
        Some(600.0)
    );
    assert_eq!(
        value(&text, "watchdog_agent_idle_seconds", &dev),
        Some(30.0)
    );
    let unknown = [
        t,
        ("agent", ""),
        ("job_id", "8"),
        ("run_id", ""),
        ("pid", ""),
    ];
    assert_eq!(
        value(&text, "watchdog_agent_cpu_fraction", &unknown),
        Some(0.0),
        "a measured 0 is a series"
    );
    assert_eq!(
        samples(&text, "watchdog_agent_idle_seconds").len(),
        1,
        "unknown idle time is no series"
    );
    assert_eq!(value(&text, "watchdog_agents_running", &[t]), Some(2.0));
    assert_eq!(
        value(&text, "watchdog_stage_tasks", &[t, ("stage", "review")]),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "watchdog_stage_tasks", &[t, ("stage", "build")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_stage_oldest_age_seconds",
            &[t, ("stage", "review")]
        ),
        Some(300.5)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_stage_oldest_age_seconds",
            &[t, ("stage", "build")]
        ),
        None,
        "no known age, no series"
    );
    for (status, n) in [
        ("queued", 3.0),
        ("running", 2.0),
        ("done", 10.0),
        ("failed", 1.0),
        ("cancelled", 0.0),
    ] {
        assert_eq!(
            value(&text, "watchdog_queue_jobs", &[t, ("status", status)]),
            Some(n)
        );
    }
    assert_eq!(value(&text, "watchdog_queue_depth", &[t]), Some(3.0));
    assert_eq!(
        value(&text, "watchdog_queue_max_concurrency", &[t]),
        Some(4.0)
    );
    assert_eq!(value(&text, "watchdog_breaker_open", &[t]), Some(1.0));
    assert_eq!(
        value(&text, "watchdog_reconciler_wall_clock_seconds", &[t]),
        Some(0.25)
    );
    assert_eq!(
        value(&text, "watchdog_reconciler_pending_events", &[t]),
        Some(12.0)
    );
    assert_eq!(
        value(&text, "watchdog_reconciler_invariant_violations", &[t]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "watchdog_error_events", &[t, ("subsystem", "git")]),
        Some(4.0)
    );
    assert_eq!(
        value(&text, "watchdog_error_events", &[t, ("subsystem", "llm")]),
        Some(2.0)
    );
    assert_eq!(value(&text, "watchdog_cost_usd", &[t]), Some(1.25));
    assert_eq!(
        value(&text, "watchdog_tokens", &[t, ("kind", "input")]),
        Some(100.0)
    );
    assert_eq!(
        value(&text, "watchdog_tokens", &[t, ("kind", "cache_creation")]),
        Some(7.0)
    );
    assert_eq!(
        value(&text, "watchdog_tokens", &[t, ("kind", "cache_read")]),
        None,
        "null tokens are unknown, not 0"
    );
    assert_eq!(
        value(
            &text,
            "watchdog_alerts_firing",
            &[t, ("rule", "breaker_open"), ("severity", "critical")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "watchdog_polls_total", &[t, ("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "watchdog_poll_duration_seconds_count", &[t]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_poll_duration_seconds_bucket",
            &[t, ("le", "0.05")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_poll_duration_seconds_bucket",
            &[t, ("le", "0.025")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    promtool_check(&text);
}

#[test]
fn an_agent_that_exits_loses_its_series_in_the_same_poll() {
    let exporter = Exporter::new();
    let env = full_envelope();
    let both = [agent(7, Some(0.5)), agent(9, Some(0.1))];
    exporter.observe(&view("orch-1", &PollOutcome::Ok, Some(&env), &both, &[]));
    let text = exporter.encode();
    assert_eq!(samples(&text, "watchdog_agent_cpu_fraction").len(), 2);
    assert_eq!(samples(&text, "watchdog_agent_runtime_seconds").len(), 2);

    let one = [agent(7, Some(0.5))];
    exporter.observe(&view("orch-1", &PollOutcome::Ok, Some(&env), &one, &[]));
    let text = exporter.encode();
    for name in [
        "watchdog_agent_cpu_fraction",
        "watchdog_agent_runtime_seconds",
        "watchdog_agent_idle_seconds",
    ] {
        let jobs: Vec<String> = samples(&text, name)
            .into_iter()
            .map(|(l, _)| l["job_id"].clone())
            .collect();
        assert_eq!(jobs, ["7"], "{name}");
    }
}

#[test]
fn a_first_sample_without_cpu_fraction_has_no_cpu_series() {
    let exporter = Exporter::new();
    let env = full_envelope();
    let agents = [agent(7, None)];
    exporter.observe(&view("orch-1", &PollOutcome::Ok, Some(&env), &agents, &[]));
    let text = exporter.encode();
    assert!(samples(&text, "watchdog_agent_cpu_fraction").is_empty());
    assert!(
        !text.contains("watchdog_agent_cpu_fraction"),
        "not even a HELP line without series"
    );
    assert_eq!(samples(&text, "watchdog_agent_runtime_seconds").len(), 1);

    // A later sample with a fraction, then a reset back to None, removes it again.
    let agents = [agent(7, Some(0.3))];
    exporter.observe(&view("orch-1", &PollOutcome::Ok, Some(&env), &agents, &[]));
    assert_eq!(
        samples(&exporter.encode(), "watchdog_agent_cpu_fraction").len(),
        1
    );
    let agents = [agent(7, None)];
    exporter.observe(&view("orch-1", &PollOutcome::Ok, Some(&env), &agents, &[]));
    assert!(samples(&exporter.encode(), "watchdog_agent_cpu_fraction").is_empty());
}

#[test]
fn stages_statuses_subsystems_and_alerts_that_are_gone_are_removed() {
    let exporter = Exporter::new();
    let firing = [
        FiringCount {
            rule: "stage_age".into(),
            severity: Severity::Warning,
            count: 2,
        },
        FiringCount {
            rule: "breaker_open".into(),
            severity: Severity::Critical,
            count: 1,
        },
    ];
    exporter.observe(&view(
        "orch-1",
        &PollOutcome::Ok,
        Some(&full_envelope()),
        &[],
        &firing,
    ));
    let text = exporter.encode();
    assert_eq!(samples(&text, "watchdog_alerts_firing").len(), 2);
    assert_eq!(samples(&text, "watchdog_error_events").len(), 2);

    let later = envelope(serde_json::json!({
        "stages": [{"stage": "build", "age_in_stage_s": 10.0}],
        "queue": {"counts": {"queued": 0, "running": 0, "done": 11, "failed": 1, "cancelled": 0, "paused": 2},
                  "depth": null, "breaker": {"state": "closed"}},
        "errors": {"total": 4, "by_subsystem": [{"subsystem": "git", "total": 4}]},
        "cost": null
    }));
    let firing = [FiringCount {
        rule: "stage_age".into(),
        severity: Severity::Warning,
        count: 1,
    }];
    exporter.observe(&view(
        "orch-1",
        &PollOutcome::Ok,
        Some(&later),
        &[],
        &firing,
    ));
    let text = exporter.encode();
    let t = ("target", "orch-1");
    let stages: Vec<String> = samples(&text, "watchdog_stage_tasks")
        .into_iter()
        .map(|(l, _)| l["stage"].clone())
        .collect();
    assert_eq!(stages, ["build"]);
    assert_eq!(
        value(
            &text,
            "watchdog_stage_oldest_age_seconds",
            &[t, ("stage", "build")]
        ),
        Some(10.0)
    );
    assert_eq!(samples(&text, "watchdog_queue_jobs").len(), 6);
    assert_eq!(
        value(&text, "watchdog_queue_jobs", &[t, ("status", "paused")]),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "watchdog_queue_depth", &[t]),
        None,
        "null depth"
    );
    assert_eq!(value(&text, "watchdog_queue_max_concurrency", &[t]), None);
    assert_eq!(value(&text, "watchdog_breaker_open", &[t]), Some(0.0));
    assert_eq!(samples(&text, "watchdog_error_events").len(), 1);
    assert_eq!(value(&text, "watchdog_cost_usd", &[t]), None);
    assert!(samples(&text, "watchdog_tokens").is_empty());
    assert!(samples(&text, "watchdog_reconciler_pending_events").is_empty());
    assert_eq!(
        samples(&text, "watchdog_alerts_firing"),
        vec![(
            labels(&[t, ("rule", "stage_age"), ("severity", "warning")]),
            1.0
        )]
    );
    promtool_check(&text);
}

#[test]
fn a_failed_poll_keeps_the_last_seen_series_and_counts_the_poll() {
    let exporter = Exporter::new();
    let env = full_envelope();
    let agents = [agent(7, Some(0.25))];
    exporter.observe(&view("orch-1", &PollOutcome::Ok, Some(&env), &agents, &[]));
    let failed = PollOutcome::Failed {
        reason: "connection refused".into(),
    };
    let firing = [FiringCount {
        rule: "target_down".into(),
        severity: Severity::Critical,
        count: 1,
    }];
    exporter.observe(&view("orch-1", &failed, None, &[], &firing));
    let text = exporter.encode();
    let t = ("target", "orch-1");
    assert_eq!(value(&text, "watchdog_target_up", &[t]), Some(0.0));
    assert_eq!(
        value(&text, "watchdog_polls_total", &[t, ("outcome", "error")]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "watchdog_polls_total", &[t, ("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "watchdog_poll_duration_seconds_count", &[t]),
        Some(2.0)
    );
    assert_eq!(
        samples(&text, "watchdog_agent_cpu_fraction").len(),
        1,
        "unknown is not gone"
    );
    assert_eq!(value(&text, "watchdog_queue_depth", &[t]), Some(3.0));
    assert_eq!(
        value(&text, "watchdog_target_schema_version", &[t]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_alerts_firing",
            &[t, ("rule", "target_down"), ("severity", "critical")]
        ),
        Some(1.0)
    );
}

#[test]
fn a_degraded_section_keeps_its_last_series() {
    let exporter = Exporter::new();
    let agents = [agent(7, Some(0.25))];
    exporter.observe(&view(
        "orch-1",
        &PollOutcome::Ok,
        Some(&full_envelope()),
        &agents,
        &[],
    ));
    let degraded =
        envelope(serde_json::json!({"degraded": ["agents", "queue"], "agents": [], "queue": null}));
    exporter.observe(&view("orch-1", &PollOutcome::Ok, Some(&degraded), &[], &[]));
    let text = exporter.encode();
    let t = ("target", "orch-1");
    assert_eq!(samples(&text, "watchdog_agent_cpu_fraction").len(), 1);
    assert_eq!(value(&text, "watchdog_queue_depth", &[t]), Some(3.0));
    assert_eq!(
        value(
            &text,
            "watchdog_section_degraded",
            &[t, ("section", "agents")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_section_degraded",
            &[t, ("section", "cost")]
        ),
        Some(0.0)
    );
    assert!(
        samples(&text, "watchdog_stage_tasks").is_empty(),
        "stages were read: empty now"
    );
}

#[test]
fn disabled_and_incompatible_targets() {
    let exporter = Exporter::new();
    exporter.observe(&view(
        "orch-1",
        &PollOutcome::Ok,
        Some(&full_envelope()),
        &[agent(7, Some(0.1))],
        &[],
    ));
    exporter.observe(&view("orch-1", &PollOutcome::Disabled, None, &[], &[]));
    let mut v2 = view(
        "orch-2",
        &PollOutcome::SchemaIncompatible { found: 2 },
        None,
        &[],
        &[],
    );
    v2.schema_version = Some(2);
    let incompatible = PollOutcome::SchemaIncompatible { found: 2 };
    v2.outcome = &incompatible;
    exporter.observe(&v2);
    let text = exporter.encode();
    let t1 = ("target", "orch-1");
    let t2 = ("target", "orch-2");
    assert_eq!(value(&text, "watchdog_target_up", &[t1]), Some(1.0));
    assert_eq!(value(&text, "watchdog_target_enabled", &[t1]), Some(0.0));
    assert!(samples(&text, "watchdog_agent_cpu_fraction").is_empty());
    assert!(samples(&text, "watchdog_queue_depth").is_empty());
    assert!(
        value(&text, "watchdog_last_success_timestamp_seconds", &[t1]).is_some(),
        "the last success stays known"
    );
    assert_eq!(value(&text, "watchdog_target_up", &[t2]), Some(0.0));
    assert_eq!(
        value(&text, "watchdog_target_schema_version", &[t2]),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_polls_total",
            &[t2, ("outcome", "schema_incompatible")]
        ),
        Some(1.0)
    );
}

#[test]
fn forget_target_removes_every_series_of_that_target_only() {
    let exporter = Exporter::new();
    let env = full_envelope();
    let agents = [agent(7, Some(0.25))];
    let firing = [FiringCount {
        rule: "queue_depth".into(),
        severity: Severity::Warning,
        count: 1,
    }];
    for target in ["orch-1", "orch-2"] {
        exporter.observe(&view(
            target,
            &PollOutcome::Ok,
            Some(&env),
            &agents,
            &firing,
        ));
    }
    exporter.forget_target("orch-1");
    let text = exporter.encode();
    let leftovers: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("target=\"orch-1\""))
        .collect();
    assert!(leftovers.is_empty(), "left over: {leftovers:#?}");
    assert_eq!(
        value(&text, "watchdog_target_up", &[("target", "orch-2")]),
        Some(1.0)
    );
    assert_eq!(samples(&text, "watchdog_agent_cpu_fraction").len(), 1);
}

#[test]
fn notification_and_config_self_metrics() {
    let exporter = Exporter::new();
    exporter.register_sink("webhook[0]");
    exporter.notification("webhook[0]", "delivered");
    exporter.notification("webhook[0]", "delivered");
    exporter.sink_queue_depth("webhook[0]", 3);
    let at = Timestamp::parse(NOW).unwrap();
    exporter.config_loaded(true, at);
    exporter.config_loaded(false, at.plus_seconds(60.0));
    let text = exporter.encode();
    let s = ("sink", "webhook[0]");
    assert_eq!(
        value(
            &text,
            "watchdog_notifications_total",
            &[s, ("outcome", "delivered")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_notifications_total",
            &[s, ("outcome", "dropped")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "watchdog_notification_queue_depth", &[s]),
        Some(3.0)
    );
    assert_eq!(
        value(&text, "watchdog_config_last_load_successful", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "watchdog_config_last_load_success_timestamp_seconds",
            &[]
        ),
        Some(at.unix_seconds_f64())
    );
    promtool_check(&text);
}

async fn start_server(
    exporter: Exporter,
    health: Health,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, exporter, health, async move {
        let _ = stop_rx.await;
    }));
    (base, stop_tx, server)
}

#[tokio::test]
async fn the_server_serves_metrics_and_health_and_shuts_down() {
    let exporter = Exporter::new();
    let env = full_envelope();
    exporter.observe(&view(
        "orch-1",
        &PollOutcome::Ok,
        Some(&env),
        &[agent(7, Some(0.25))],
        &[],
    ));
    let health = Health::default();
    let (base, stop, server) = start_server(exporter, health.clone()).await;
    let client = reqwest::Client::new();

    let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = resp.text().await.unwrap();
    assert_eq!(
        value(&text, "watchdog_target_up", &[("target", "orch-1")]),
        Some(1.0)
    );
    promtool_check(&text);

    let resp = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "loops not running yet");
    health.set(true);
    let resp = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");

    let resp = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client.post(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 405);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops after shutdown")
        .unwrap()
        .unwrap();
    let after = client.get(format!("{base}/healthz")).send().await;
    assert!(after.is_err(), "listener closed after shutdown");
}

#[tokio::test]
async fn a_client_that_never_sends_headers_does_not_block_others() {
    use tokio::io::AsyncWriteExt;
    let (base, stop, server) = start_server(Exporter::new(), Health::default()).await;
    // A half-sent request head holds one connection open...
    let addr = base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // ...while other clients are served.
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("shutdown is not held up by a slow client")
        .unwrap()
        .unwrap();
}

#[test]
fn duplicate_agents_and_odd_label_values_never_break_the_output() {
    let exporter = Exporter::new();
    let mut odd = agent(7, Some(0.5));
    odd.agent = Some("dev \"quoted\"\nnext\\line".into());
    let twice = [odd.clone(), odd, agent(7, Some(0.1)), agent(7, Some(0.2))];
    exporter.observe(&view(
        "orch,1",
        &PollOutcome::Ok,
        Some(&full_envelope()),
        &twice,
        &[],
    ));
    let text = exporter.encode();
    let cpu_lines = text
        .lines()
        .filter(|l| l.starts_with("watchdog_agent_cpu_fraction{"))
        .count();
    assert_eq!(
        cpu_lines, 2,
        "one series per label set, the last value wins"
    );
    assert!(
        text.contains(r#"agent="dev \"quoted\"\nnext\\line""#),
        "{text}"
    );
    promtool_check(&text);
}
