//! The tables of `docs/REFERENCE.md` that the code can write itself, so the
//! reference cannot drift from it: every rule with its keys and defaults
//! (from the one registry, [`crate::rules::ALL`]), every gauge with its type,
//! labels and help (from a scrape of a fully fed exporter), and every key
//! of the config file (from the parser's own list of known fields).
//!
//! `tests/tests/reference_doc.rs` compares these with the committed file
//! (and regenerates it with `REGENERATE_REFERENCE=1`); a rule added to the
//! registry appears in the reference without anyone editing it by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use prometheus::proto::MetricType;
use serde_json::Value;
use shared_schema::{
    Agent, Breaker, Cost, CostAggregate, Envelope, Errors, Queue, Reconciler, Severity, Stage,
    SubsystemErrors, Timestamp,
};

use crate::config::{Config, Overrides};
use crate::delta::AgentId;
use crate::exporter::Exporter;
use crate::rules::{RuleSet, ALL};
use crate::view::{AgentSample, FiringCount, PollOutcome, PollView};

/// The SQL of CONTRACT.md section 2, the one copy the tests and the demo use.
pub fn schema_block() -> String {
    format!("```sql\n{}```\n", shared_schema::state::SCHEMA_SQL)
}

/// Keys every rule has (listed once in the reference, not per rule).
pub const COMMON_RULE_KEYS: [&str; 4] = ["enabled", "severity", "for", "keep_firing_for"];

/// The rules table: one row per rule of the registry, in its order.
pub fn rules_table() -> String {
    let values = RuleSet::defaults().to_value();
    let mut out = String::from(
        "| rule | severity | `for` | its own keys (defaults) | `per_agent` |\n|---|---|---|---|---|\n",
    );
    for entry in ALL {
        let Some(Value::Object(v)) = values.get(entry.name) else {
            continue;
        };
        let text = |k: &str| v.get(k).map(plain).unwrap_or_default();
        let own: Vec<String> = v
            .iter()
            .filter(|(k, _)| !COMMON_RULE_KEYS.contains(&k.as_str()) && *k != "per_agent")
            .map(|(k, val)| match val {
                Value::Null => format!("`{k}` (unset: off)"),
                Value::Object(m) if m.is_empty() => format!("`{k}` (none)"),
                _ => format!("`{k} = {}`", toml_value(val)),
            })
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {} | {} |",
            entry.name,
            text("severity"),
            text("for"),
            if own.is_empty() {
                "none".to_owned()
            } else {
                own.join(", ")
            },
            if entry.per_agent { "yes" } else { "no" },
        );
    }
    out
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A value as it is written in the TOML file.
fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// The gauges table: every metric family the watchdog exposes, with its
/// type, labels and help, as a scrape shows them.
pub fn gauges_table() -> String {
    let mut out = String::from("| name | type | labels | meaning |\n|---|---|---|---|\n");
    for (name, (kind, labels, help)) in families() {
        let labels = if labels.is_empty() {
            "none".to_owned()
        } else {
            labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "| `{name}` | {kind} | {labels} | {help} |");
    }
    out
}

/// name -> (type, label names, help) of every family, from an exporter fed
/// one poll with every section filled, a sink, a config load, the stdout
/// writer and a broken targets file: so that every family has a series.
pub fn families() -> BTreeMap<String, (String, Vec<String>, String)> {
    let exporter = Exporter::new();
    let registry = exporter.registry();
    let now = Timestamp::now();
    let envelope = full_envelope(now);
    let agents = [AgentSample {
        agent: Some("dev".into()),
        id: AgentId {
            job_id: 7,
            run_id: Some(42),
            pid: Some(1234),
            start_ticks: None,
        },
        cpu_fraction: Some(0.5),
        runtime_s: Some(60.0),
        idle_s: Some(0.0),
    }];
    let firing = [FiringCount {
        rule: "stuck_agent".into(),
        severity: Severity::Warning,
        count: 1,
    }];
    exporter.observe(&PollView {
        target: "t",
        outcome: &PollOutcome::Ok,
        duration: Duration::from_millis(5),
        now,
        schema_version: Some(1),
        envelope: Some(&envelope),
        agents: &agents,
        firing: &firing,
    });
    exporter.register_sink("webhook");
    exporter.config_loaded(true, now);
    let _stdout = crate::stdout::StdoutLines::start_on(registry, 1, std::io::sink());
    let mut files = crate::targets::TargetFiles::new(
        vec!["/nonexistent/watchdog-reference/targets.json".into()],
        Some(registry),
    );
    let _ = files.scan(&Default::default());

    let mut out = BTreeMap::new();
    for mf in registry.gather() {
        let kind = match mf.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "untyped",
        };
        let mut labels: Vec<String> = mf
            .get_metric()
            .first()
            .map(|m| m.get_label().iter().map(|l| l.name().to_owned()).collect())
            .unwrap_or_default();
        // `target` first, as the reference reads it.
        labels.sort_by_key(|l| (l != "target", l.clone()));
        out.insert(
            mf.name().to_owned(),
            (kind.to_owned(), labels, mf.help().to_owned()),
        );
    }
    out
}

fn full_envelope(now: Timestamp) -> Envelope {
    let mut e = Envelope::new(now);
    e.agents = vec![Agent {
        job_id: 7,
        run_id: Some(42),
        agent: Some("dev".into()),
        pid: Some(1234),
        runtime_s: Some(60.0),
        activity: Some(shared_schema::Activity {
            api_requests: 3,
            tool_calls: 5,
            tool_repeat: 1,
            cost_usd: Some(0.25),
            ..shared_schema::Activity::default()
        }),
        net_wait: Some(shared_schema::NetWait {
            remote: "160.79.104.10:443".into(),
            sent_ago_s: 4.0,
            received_ago_s: Some(5.0),
            pid: Some(1234),
        }),
        ..Agent::default()
    }];
    e.stages = vec![Stage {
        task_id: Some(1),
        work_item: None,
        stage: "review".into(),
        age_in_stage_s: Some(10.0),
        repo: None,
    }];
    e.queue = Some(Queue {
        counts: [("queued".to_owned(), 1)].into_iter().collect(),
        depth: Some(1),
        max_concurrency: Some(2),
        breaker: Some(Breaker {
            state: Some("closed".into()),
            ..Breaker::default()
        }),
        ..Queue::default()
    });
    e.reconciler = Some(Reconciler {
        wall_clock_ms: Some(12.0),
        pending_event_count: Some(3),
        ..Reconciler::default()
    });
    e.errors = Some(Errors {
        total: Some(1),
        by_subsystem: vec![SubsystemErrors {
            subsystem: "git".into(),
            total: Some(1),
            last_at: None,
        }],
    });
    e.cost = Some(Cost {
        running: Vec::new(),
        aggregate: Some(CostAggregate {
            runs: Some(1),
            cost_usd: Some(1.5),
            input_tokens: Some(10),
            output_tokens: Some(10),
            cache_read_tokens: Some(10),
            cache_creation_tokens: Some(10),
        }),
    });
    e
}

/// Every key the config file accepts, per table (`""` is the top level),
/// as the parser itself lists them when it meets an unknown one.
pub fn config_keys() -> BTreeMap<String, Vec<String>> {
    let mut probes = vec![
        (String::new(), "zz_unknown = 1\n".to_owned()),
        (
            "target".to_owned(),
            "[[target]]\nurl = \"http://h:1\"\nzz_unknown = 1\n".to_owned(),
        ),
        ("notify".to_owned(), "[notify]\nzz_unknown = 1\n".to_owned()),
    ];
    probes.extend(
        crate::notify::NotifyConfig::sink_kinds()
            .into_iter()
            .map(|kind| {
                let text = format!("{}\n{}zz_unknown = 1\n", kind.header(), kind.example);
                (format!("notify.{}", kind.name), text)
            }),
    );
    let dir = std::env::temp_dir().join(format!("watchdog-reference-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut out = BTreeMap::new();
    for (table, text) in probes {
        let path = dir.join("probe.toml");
        if std::fs::write(&path, text).is_err() {
            continue;
        }
        let err = match Config::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        }) {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        let keys = err
            .split_once("expected one of ")
            .map(|(_, list)| {
                list.split(", ")
                    .map(|k| k.trim().trim_matches('`').to_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.insert(table, keys);
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}
