//! `watchdog backtest` on records made by a real `watchdog run --record`
//! (rotated at a small `record_max_bytes`) over the real emitter and real
//! agent processes (issue 21):
//!
//! - under a changed `for`, `cpu_floor`, `per_agent` and an added rule, the
//!   JSON report holds, alert for alert, what two separate `watchdog
//!   replay` runs print, and its figures add up to them;
//! - `--fail-on` exits 1 on such a difference and 0 where there is none;
//! - the HTML page renders in headless Chromium (the page and a screenshot
//!   are kept under `target/tmp/backtest/`) and holds no unescaped input,
//!   though the agent's name and its summaries hold `<script>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::agents::AgentKind;
use e2e::lab::{Lab, OneAgent};
use e2e::stack::{Emitter, Watchdog, WatchdogOptions};
use e2e::tools;
use e2e::{bins, browser};
use serde_json::Value;
use shared_schema::{AlertEvent, AlertLine, RecordLine};

/// The cap of one record file: a few polls of the lab each.
const MAX_BYTES: u64 = 12_000;

/// One alert as both sides can tell it: (key, since, firing, resolved).
type Alert = (String, String, String, Option<String>);

/// The alerts of a replay's lines: a `firing` line opens one, the next
/// `resolved` of its key closes it (an independent reading of the log).
fn alerts_of_lines(lines: &[AlertLine]) -> Vec<Alert> {
    let mut out: Vec<Alert> = Vec::new();
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for l in lines {
        match l.event {
            AlertEvent::Firing => {
                open.insert(l.key.clone(), out.len());
                out.push((l.key.clone(), l.since.to_string(), l.ts.to_string(), None));
            }
            AlertEvent::Resolved => {
                if let Some(i) = open.remove(&l.key) {
                    out[i].3 = Some(l.ts.to_string());
                }
            }
            _ => {}
        }
    }
    out.sort();
    out
}

/// The alerts of one side (`"a"` or `"b"`) of a JSON report.
fn alerts_of_report(report: &Value, side: &str) -> Vec<Alert> {
    let mut out: Vec<Alert> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a[side].is_null())
        .map(|a| {
            let s = &a[side];
            (
                a["key"].as_str().unwrap().to_owned(),
                s["since"].as_str().unwrap().to_owned(),
                s["firing"].as_str().unwrap().to_owned(),
                s["resolved"].as_str().map(str::to_owned),
            )
        })
        .collect();
    out.sort();
    out
}

fn run(bin: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "{args:?} died: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn replay(bin: &Path, record: &Path, config: &Path) -> Vec<AlertLine> {
    let out = run(
        bin,
        &[
            "replay",
            &record.display().to_string(),
            "--config",
            &config.display().to_string(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The record files of `record`, oldest first, as the watchdog rotated them.
fn record_files(record: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(record.parent().unwrap())
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("rec.jsonl.")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(record.to_owned());
    files
}

/// Starts the emitter and a recording watchdog (config `a` plus the
/// recording keys) on `lab`, waits for `done`, then stops the watchdog.
fn record_run(
    emitter_bin: &Path,
    watchdog_bin: &Path,
    db: &Path,
    dir: &Path,
    target: &str,
    a: &WatchdogOptions,
    done: impl FnOnce(&Watchdog),
) -> PathBuf {
    let record = dir.join("rec.jsonl");
    let emitter = Emitter::start(emitter_bin, db, dir).unwrap();
    let options = a.clone();
    let recording = format!(
        "record = {:?}\nrecord_max_bytes = {MAX_BYTES}\nrecord_keep = 1000\n",
        record.display().to_string()
    );
    let mut w = Watchdog::start_with(
        watchdog_bin,
        dir,
        |addr, log| {
            // Top-level keys go before the first table.
            format!(
                "{recording}{}",
                options.to_toml(target, &emitter.url(), addr, log)
            )
        },
        None,
    )
    .unwrap();
    done(&w);
    w.proc.stop(Duration::from_secs(5)).unwrap();
    drop(emitter);
    record
}

#[test]
fn backtest_under_changed_rules_equals_two_replays_alert_for_alert() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let lab = Lab::start(&AgentKind::ALL, None).unwrap();
    let dir = lab.dir().to_owned();
    // A: the live config (interval 1s, stuck_agent for 5s).
    let a = WatchdogOptions::default();
    let (idle, idle_job) = lab.agent(AgentKind::Idle);
    let idle_job_id = idle_job.job_id.to_string();
    let record = record_run(&emitter_bin, &watchdog_bin, &lab.db, &dir, "e2e", &a, |w| {
        w.wait_line(
            "stuck_agent firing for the idle agent",
            Duration::from_secs(60),
            |l| {
                l.rule == "stuck_agent"
                    && l.labels.get("job_id") == Some(idle_job_id.as_str())
                    && l.event == AlertEvent::Firing
            },
        )
        .unwrap();
        idle.wake().unwrap();
        w.wait_line(
            "stuck_agent resolved for the woken agent",
            Duration::from_secs(30),
            |l| l.rule == "stuck_agent" && l.event == AlertEvent::Resolved,
        )
        .unwrap();
    });
    // B: a shorter `for`, a lower `cpu_floor`, a `per_agent` floor that
    // makes the busy agent "stuck", and an added rule (agent_runtime at 3s).
    let b = WatchdogOptions {
        stuck_for: "3s".into(),
        extra: "\n[rules.agent_runtime]\nmax = \"3s\"\n".into(),
        ..WatchdogOptions::default()
    };
    let write_config = |name: &str, o: &WatchdogOptions, floor: &str, per_agent: &str| {
        let listen = "127.0.0.1:1".parse().unwrap();
        let text = o
            .to_toml(
                "e2e",
                "http://127.0.0.1:1",
                listen,
                &dir.join("unused.jsonl"),
            )
            .replace(
                "cpu_floor = 0.02",
                &format!("cpu_floor = {floor}{per_agent}"),
            );
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let a_toml = write_config("a.toml", &a, "0.02", "");
    // A's agent_runtime never fires (2h): B adds the rule's alerts.
    let b_toml = write_config(
        "b.toml",
        &b,
        "0.01",
        "\nper_agent = { busy = { cpu_floor = 1.5, for = \"2s\" } }",
    );

    // The recording was rotated: several files, none past the cap, read
    // oldest first they run forward in time.
    let files = record_files(&record);
    assert!(files.len() >= 2, "no rotation: {files:?}");
    let mut last = None;
    let mut records = 0;
    for f in &files {
        assert!(
            std::fs::metadata(f).unwrap().len() <= MAX_BYTES,
            "{}",
            f.display()
        );
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let r = RecordLine::parse(line.as_bytes()).unwrap();
            assert!(
                last.map_or(true, |t| t <= r.received_at),
                "{} out of order",
                f.display()
            );
            last = Some(r.received_at);
            records += 1;
        }
    }

    // Two separate replays (`replay FILE` brings the rotated files along)...
    let replay_a = replay(&watchdog_bin, &record, &a_toml);
    let replay_b = replay(&watchdog_bin, &record, &b_toml);
    // ... and one backtest over the same files, given as a pattern.
    let pattern = dir.join("rec.jsonl*").display().to_string();
    let (a_arg, b_arg) = (a_toml.display().to_string(), b_toml.display().to_string());
    // `backtest <the files> --config A` and more.
    let backtest = |more: &[&str]| {
        let mut all = vec!["backtest", &pattern, "--config", &a_arg];
        all.extend_from_slice(more);
        run(&watchdog_bin, &all)
    };
    let out = backtest(&["--against", &b_arg, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], records);
    assert_eq!(report["skipped"], 0);
    assert_eq!(report["files"].as_array().unwrap().len(), files.len());

    let (from_a, from_b) = (alerts_of_lines(&replay_a), alerts_of_lines(&replay_b));
    assert_eq!(
        alerts_of_report(&report, "a"),
        from_a,
        "A: backtest against replay"
    );
    assert_eq!(
        alerts_of_report(&report, "b"),
        from_b,
        "B: backtest against replay"
    );

    // Per rule and in all, the figures count those alerts.
    let count = |alerts: &[Alert], rule: Option<&str>, still: bool| {
        alerts
            .iter()
            .filter(|a| rule.map_or(true, |r| a.0.starts_with(&format!("{r}|"))))
            .filter(|a| !still || a.3.is_none())
            .count()
    };
    for rule in report["rules"].as_array().unwrap() {
        let name = rule["rule"].as_str().unwrap();
        for (field, still) in [("fired", false), ("still_firing", true)] {
            for (side, from) in [("a", &from_a), ("b", &from_b)] {
                assert_eq!(rule[side][field], count(from, Some(name), still), "{name}");
            }
        }
    }
    assert_eq!(report["total"]["a"]["fired"], from_a.len());
    assert_eq!(report["total"]["b"]["fired"], from_b.len());

    // What changed, by subject: the idle agent's alert is shared and B
    // (for 3s) fires it earlier; the busy agent (per_agent) and
    // agent_runtime are only B's; the woken agent flapped under A.
    let alerts = report["alerts"].as_array().unwrap();
    let idle_alert = alerts
        .iter()
        .find(|x| x["rule"] == "stuck_agent" && x["labels"]["job_id"] == idle_job_id.as_str())
        .expect("the idle agent's alert");
    assert_eq!(idle_alert["change"], "earlier", "{idle_alert}");
    assert!(
        idle_alert["shift_s"].as_f64().unwrap() < 0.0,
        "{idle_alert}"
    );
    assert!(
        idle_alert["b"]["delay_s"].as_f64().unwrap() < idle_alert["a"]["delay_s"].as_f64().unwrap()
    );
    assert!(
        alerts.iter().any(|x| x["rule"] == "stuck_agent"
            && x["labels"]["agent"] == "busy"
            && x["change"] == "added"),
        "{report:#}"
    );
    let runtime = alerts
        .iter()
        .filter(|x| x["rule"] == "agent_runtime")
        .count();
    assert_eq!(runtime, AgentKind::ALL.len(), "one per agent");
    assert!(alerts
        .iter()
        .filter(|x| x["rule"] == "agent_runtime")
        .all(|x| x["change"] == "added" && x["a"].is_null()));
    let removed = alerts.iter().filter(|x| x["change"] == "removed").count();
    assert_eq!(report["total"]["diff"]["removed"], removed);
    assert_eq!(removed, 0, "B keeps every alert of A: {report:#}");
    let stuck = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "stuck_agent")
        .unwrap();
    assert_eq!(stuck["setting"]["a"]["for_s"], 5.0);
    assert_eq!(stuck["setting"]["b"]["for_s"], 3.0);

    // --fail-on: B adds, removes nothing, differs; A against itself never.
    let code = |args: &[&str]| backtest(args).status.code();
    assert_eq!(code(&["--against", &b_arg, "--fail-on", "added"]), Some(1));
    assert_eq!(
        code(&["--against", &b_arg, "--fail-on", "removed"]),
        Some(0)
    );
    assert_eq!(code(&["--against", &b_arg, "--fail-on", "any"]), Some(1));
    assert_eq!(code(&["--against", &a_arg, "--fail-on", "any"]), Some(0));
    // Usage errors, as replay's: exit 2 with a word on stderr.
    assert_eq!(
        code(&["--fail-on", "any"]),
        Some(2),
        "--fail-on needs --against"
    );
    assert_eq!(code(&["--against", "/nonexistent.toml"]), Some(2));
    let missing = run(
        &watchdog_bin,
        &["backtest", "/nonexistent/rec*", "--config", &a_arg],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no file matches")
            || String::from_utf8_lossy(&missing.stderr).contains("nonexistent")
    );

    // The text report: the same counts, aligned, for a person.
    let text = backtest(&["--against", &b_arg]);
    let text = String::from_utf8(text.stdout).unwrap();
    eprintln!("{text}");
    assert!(
        text.starts_with(&format!(
            "watchdog backtest: {} files, {records} records (0 skipped), 1 target",
            files.len()
        )),
        "{text}"
    );
    assert!(
        text.contains("\nagent_runtime  (for off -> 0s)\n")
            || text.contains("\nagent_runtime  (for 0s)\n"),
        "{text}"
    );
    assert!(text.contains("\nstuck_agent  (for 5s -> 3s)\n"), "{text}");
    drop(lab);
}

#[test]
fn the_html_report_renders_in_chromium_and_holds_no_unescaped_input() {
    let Some(browser) = tools::chromium() else {
        return;
    };
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    // A real agent process whose name is markup.
    let evil = "<script>alert(1)</script>";
    let one = OneAgent::start(evil).unwrap();
    drop(one.conn);
    let (dir, db, job) = (&one.dir, &one.db, &one.job);
    // agent_runtime fires at once (1s) and, under B (2s), a second later.
    let a = WatchdogOptions {
        extra: "\n[rules.agent_runtime]\nmax = \"1s\"\n".into(),
        ..WatchdogOptions::default()
    };
    let job_id = job.job_id.to_string();
    let record = record_run(
        &emitter_bin,
        &watchdog_bin,
        db,
        dir.path(),
        "orch-<1>",
        &a,
        |w| {
            w.wait_line("agent_runtime firing", Duration::from_secs(30), |l| {
                l.rule == "agent_runtime"
                    && l.labels.get("job_id") == Some(job_id.as_str())
                    && l.event == AlertEvent::Firing
            })
            .unwrap();
            // Long enough for B's later firing: three more polls.
            let records = || {
                record_files(&dir.path().join("rec.jsonl"))
                    .iter()
                    .map(|f| {
                        std::fs::read_to_string(f)
                            .unwrap_or_default()
                            .lines()
                            .count()
                    })
                    .sum::<usize>()
            };
            let now = records();
            e2e::net::wait_for(
                "three more polls",
                Duration::from_secs(30),
                Duration::from_millis(100),
                || {
                    let n = records();
                    (n >= now + 3).then_some(()).ok_or(format!("{n} records"))
                },
            )
            .unwrap();
        },
    );
    let listen = "127.0.0.1:1".parse().unwrap();
    let a_toml = dir.path().join("a.toml");
    std::fs::write(
        &a_toml,
        a.to_toml(
            "orch-<1>",
            "http://127.0.0.1:1",
            listen,
            &dir.path().join("x"),
        ),
    )
    .unwrap();
    let b_toml = dir.path().join("b <i>.toml");
    std::fs::write(
        &b_toml,
        a.to_toml(
            "orch-<1>",
            "http://127.0.0.1:1",
            listen,
            &dir.path().join("x"),
        )
        .replace("max = \"1s\"", "max = \"2s\""),
    )
    .unwrap();
    let out = run(
        &watchdog_bin,
        &[
            "backtest",
            &record.display().to_string(),
            "--config",
            &a_toml.display().to_string(),
            "--against",
            &b_toml.display().to_string(),
            "--format",
            "html",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).unwrap();
    // The page as written: the input only escaped.
    assert!(!page.to_ascii_lowercase().contains("<script"), "{page}");
    assert!(
        !page.contains("<i>") && !page.contains("orch-<1>"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("orch-&lt;1&gt;"), "{page}");

    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("backtest");
    std::fs::create_dir_all(&artefacts).unwrap();
    let html = artefacts.join("report.html");
    std::fs::write(&html, &page).unwrap();
    let url = format!("file://{}", html.display());
    let dom = browser::chromium(
        &browser,
        &dir.path().join("profile-dom"),
        "--dump-dom",
        &url,
        1400,
    )
    .unwrap();
    // The browser built no script element and shows the name as text.
    assert!(!dom.to_ascii_lowercase().contains("<script"), "{dom}");
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
    assert!(dom.contains("<h2>agent_runtime</h2>"), "{dom}");
    assert_eq!(
        dom.matches("<svg").count(),
        page.matches("<svg").count(),
        "{dom}"
    );
    assert!(dom.contains("<rect"), "{dom}");
    assert!(
        dom.contains("<td>later</td>"),
        "B (2s) fires later than A (1s): {dom}"
    );

    browser::screenshot(
        &browser,
        &dir.path().join("profile-shot"),
        &artefacts.join("report.png"),
        &url,
        1400,
    );
    eprintln!("backtest report and screenshot: {}", artefacts.display());
    drop(one.agent);
}
