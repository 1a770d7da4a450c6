//! Agents as they fail in the field (issue 12), end to end: the real
//! emitter and watchdog, a real SQLite state file, and real failing
//! processes recorded as the pids of `running` jobs: a dead pid, a zombie,
//! `cat` on a pipe nobody writes, a client whose peer closed the connection
//! (`CLOSE_WAIT`), `sh -c 'sleep 600; echo'` and a process stopped with
//! `SIGSTOP`. Each must get the right rule within `for` + 2 polls (plus the
//! diagnosis bound) and the contract's phrase, in the summary and in
//! `diagnosis`; `watchdog check` must print the same diagnoses.
//!
//! Run with `--nocapture` to see one real alert line per case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::bins;
use e2e::field::{self, FieldProc};
use e2e::stack::{Emitter, Watchdog, WatchdogOptions};
use e2e::statedb;
use shared_schema::{AlertEvent, AlertLine, Severity};

/// The test config's poll interval, `stuck_agent` and `agent_gone` `for`.
const INTERVAL_S: f64 = 1.0;
const STUCK_FOR_S: f64 = 3.0;
const GONE_FOR_S: f64 = 2.0;
/// Room on top of `for` + 2 polls: the diagnosis fetch may hold a line up
/// to 2 s (CONTRACT.md section 3), plus the start of the first poll.
const SLACK_S: f64 = 2.0 + 1.0;

/// One case: the process, its job, and what its alert must say.
struct Case {
    name: &'static str,
    proc: FieldProc,
    job_id: i64,
    rule: &'static str,
    severity: Severity,
    for_s: f64,
    /// In the summary (the rule's own words, or the diagnosis).
    summary_has: Vec<String>,
    /// In `diagnosis` (`None`: no diagnosis expected).
    diagnosis_has: Option<Vec<String>>,
}

#[test]
fn each_field_failure_fires_its_rule_with_the_contracts_diagnosis() {
    if !field::tools_present() {
        return;
    }
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let dir = tempfile::Builder::new()
        .prefix("field-liveness-")
        .tempdir()
        .unwrap();
    let db = dir.path().join("state.db");
    let conn = statedb::create(&db).unwrap();

    let spawned: Vec<(&'static str, FieldProc)> = vec![
        ("dead", field::dead_pid().unwrap()),
        ("zombie", field::zombie().unwrap()),
        ("cat-pipe", field::stdin_pipe().unwrap()),
        ("close-wait", field::close_wait().unwrap()),
        ("wait-child", field::waiting_for_child().unwrap()),
        ("stopped", field::stopped().unwrap()),
    ];
    let mut cases = Vec::new();
    for (name, proc) in spawned {
        let job =
            statedb::insert_running_job(&conn, name, proc.pid(), "field", "implement").unwrap();
        let pid = proc.pid();
        let (rule, severity, for_s, summary_has, diagnosis_has) = match name {
            "dead" => (
                "agent_gone",
                Severity::Critical,
                GONE_FOR_S,
                vec!["no such process".to_owned()],
                None,
            ),
            "zombie" => (
                "agent_gone",
                Severity::Critical,
                GONE_FOR_S,
                vec!["exited, not reaped (zombie)".to_owned()],
                Some(vec![format!("(pid {pid})"), "zombie".to_owned()]),
            ),
            "cat-pipe" => (
                "stuck_agent",
                Severity::Warning,
                STUCK_FOR_S,
                vec!["blocked reading stdin (pipe)".to_owned()],
                Some(vec![
                    format!("cat (pid {pid})"),
                    "blocked reading stdin (pipe)".to_owned(),
                ]),
            ),
            "close-wait" => {
                let remote = proc.remote.expect("the peer's address").to_string();
                (
                    "stuck_agent",
                    Severity::Warning,
                    STUCK_FOR_S,
                    vec!["CLOSE_WAIT".to_owned()],
                    Some(vec!["CLOSE_WAIT".to_owned(), remote]),
                )
            }
            "wait-child" => {
                let child = proc.related.expect("the shell's child");
                (
                    "stuck_agent",
                    Severity::Warning,
                    STUCK_FOR_S,
                    vec!["waiting for child".to_owned()],
                    Some(vec![
                        format!("sh (pid {pid})"),
                        "waiting for child".to_owned(),
                        format!("sleep (pid {child})"),
                    ]),
                )
            }
            "stopped" => (
                "stuck_agent",
                Severity::Warning,
                STUCK_FOR_S,
                vec!["stopped".to_owned()],
                Some(vec![format!("sleep (pid {pid})"), "stopped".to_owned()]),
            ),
            _ => unreachable!(),
        };
        cases.push(Case {
            name,
            proc,
            job_id: job.job_id,
            rule,
            severity,
            for_s,
            summary_has,
            diagnosis_has,
        });
    }
    drop(conn);

    let emitter = Emitter::start(&emitter_bin, &db, dir.path()).unwrap();
    let options = WatchdogOptions {
        interval: "1s".into(),
        stuck_for: "3s".into(),
        min_runtime: "0s".into(),
        alertmanager: None,
        extra: "\n[rules.agent_gone]\nfor = \"2s\"\n".into(),
    };
    // Each line stamped as it arrives, to hold the watchdog to `for` + 2 polls.
    let (tx, rx) = mpsc::channel::<(String, Option<AlertLine>)>();
    let started = Instant::now();
    let watchdog = Watchdog::start(
        &watchdog_bin,
        dir.path(),
        "field",
        &emitter.url(),
        &options,
        Some(tx),
    )
    .unwrap();
    let (stamped_tx, stamped) = mpsc::channel::<(f64, String, AlertLine)>();
    std::thread::spawn(move || {
        for (raw, parsed) in rx {
            if let Some(line) = parsed {
                let _ = stamped_tx.send((started.elapsed().as_secs_f64(), raw, line));
            }
        }
    });

    // Every case's firing line, or the deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<(f64, String, AlertLine)> = Vec::new();
    let first_of = |seen: &[(f64, String, AlertLine)], c: &Case| {
        seen.iter()
            .find(|(_, _, l)| {
                l.rule == c.rule
                    && l.event == AlertEvent::Firing
                    && l.labels.get("job_id") == Some(c.job_id.to_string().as_str())
            })
            .cloned()
    };
    while cases.iter().any(|c| first_of(&seen, c).is_none()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match stamped.recv_timeout(left) {
            Ok(s) => seen.push(s),
            Err(_) => {
                let missing: Vec<&str> = cases
                    .iter()
                    .filter(|c| first_of(&seen, c).is_none())
                    .map(|c| c.name)
                    .collect();
                panic!(
                    "no firing line within 30 s for {missing:?}; lines: {:#?}\nwatchdog stderr:\n{}",
                    seen.iter().map(|(_, raw, _)| raw).collect::<Vec<_>>(),
                    e2e::stack::tail(&watchdog.log)
                );
            }
        }
    }

    for c in &cases {
        let (at, raw, line) = first_of(&seen, c).unwrap();
        println!("{} ({:.1}s after start): {raw}", c.name, at);
        assert_eq!(line.severity, c.severity, "{raw}");
        assert_eq!(line.target, "field");
        assert_eq!(line.labels.get("agent"), Some(c.name), "{raw}");
        assert_eq!(
            line.labels.get("pid"),
            Some(c.proc.pid().to_string().as_str())
        );
        let bound = c.for_s + 2.0 * INTERVAL_S + SLACK_S;
        assert!(
            at <= bound,
            "{}: fired {at:.1}s after start, past for + 2 polls (+{SLACK_S}s) = {bound}s",
            c.name
        );
        for s in &c.summary_has {
            assert!(line.summary.contains(s.as_str()), "{}: {raw}", c.name);
        }
        match &c.diagnosis_has {
            None => assert_eq!(line.diagnosis, None, "{}: {raw}", c.name),
            Some(want) => {
                let d = line
                    .diagnosis
                    .as_deref()
                    .unwrap_or_else(|| panic!("{}: no diagnosis in {raw}", c.name));
                for s in want {
                    assert!(d.contains(s.as_str()), "{}: {d:?} lacks {s:?}", c.name);
                }
                assert!(
                    line.summary.ends_with(&format!(": {d}")),
                    "{}: the summary ends with the diagnosis: {raw}",
                    c.name
                );
            }
        }
    }

    // Gone and zombie processes are agent_gone's, never stuck_agent's; and no
    // stuck agent is called gone. Checked after the stuck ones fired, so the
    // dead and zombie jobs had as long to (wrongly) look stuck.
    for c in &cases {
        let job = c.job_id.to_string();
        let wrong_rule = if c.rule == "agent_gone" {
            "stuck_agent"
        } else {
            "agent_gone"
        };
        let wrong: Vec<_> = seen
            .iter()
            .filter(|(_, _, l)| {
                l.rule == wrong_rule && l.labels.get("job_id") == Some(job.as_str())
            })
            .map(|(_, raw, _)| raw)
            .collect();
        assert!(wrong.is_empty(), "{}: {wrong_rule} lines {wrong:?}", c.name);
    }

    // The alert log file has the same completed lines (stdout may show a
    // line a moment before the file has it: waited for, bounded).
    let want: Vec<AlertLine> = cases
        .iter()
        .filter(|c| c.diagnosis_has.is_some())
        .map(|c| first_of(&seen, c).unwrap().2)
        .collect();
    e2e::net::wait_for(
        "the alert log file to hold every diagnosed line",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let log = watchdog.alert_log_lines().map_err(|e| e.to_string())?;
            let missing: Vec<&str> = want
                .iter()
                .filter(|w| {
                    !log.iter()
                        .any(|l| l.key == w.key && l.diagnosis == w.diagnosis)
                })
                .map(|w| w.key.as_str())
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        },
    )
    .unwrap();

    // `watchdog check` (for treated as met) prints the same diagnoses.
    let out = Command::new(&watchdog_bin)
        .arg("check")
        .arg("--config")
        .arg(&watchdog.config)
        .arg("--target")
        .arg(emitter.url())
        .arg("--interval")
        .arg("1s")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("watchdog check:\n{text}");
    assert_eq!(out.status.code(), Some(2), "critical (agent_gone): {text}");
    for c in &cases {
        let line = text
            .lines()
            .find(|l| l.contains(&format!(" {}: agent {} (job {}", c.rule, c.name, c.job_id)))
            .unwrap_or_else(|| panic!("{}: no {} line in check output:\n{text}", c.name, c.rule));
        for s in c.summary_has.iter().chain(c.diagnosis_has.iter().flatten()) {
            assert!(
                line.contains(s.as_str()),
                "{}: {line:?} lacks {s:?}",
                c.name
            );
        }
    }
}
