//! The shipped units under a real systemd (booted as PID 1 of a new PID +
//! mount namespace, see `e2e::systemd_ns`): both reach `active (running)`
//! through `READY=1`; `systemctl reload watchdog` refuses a bad file while
//! the old config keeps running, then applies a changed threshold; alert
//! lines reach the journal; a SIGSTOPped watchdog is restarted by
//! `WatchdogSec=`; `systemd-analyze security` keeps the scores of the
//! shipped units (emitter 1.7, watchdog 1.4).
//!
//! Skipped with a note where systemd cannot boot (not root, tools missing);
//! under `CI=true` it must run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::stack::sample;
use e2e::systemd_ns::{self, Booted, Layout};
use e2e::{bins, net, statedb, tools};
use shared_schema::{AlertEvent, AlertLine};

/// The shipped `WatchdogSec=60s`, shortened by a drop-in so the test waits
/// seconds, not a minute; everything else is the shipped unit.
const WATCHDOG_SEC: u64 = 6;
/// The shipped unit's `RestartSec=`.
const RESTART_SEC: u64 = 5;
/// `systemd-analyze security --offline` of the shipped units, as
/// docs/RELIABILITY.md records them (emitter 1.7, watchdog 1.4): the units
/// as loaded by the running systemd must not score worse.
const MAX_EXPOSURE_WATCHDOG: f64 = 1.4;
const MAX_EXPOSURE_EMITTER: f64 = 1.7;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/systemd")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/systemd/watchdog.toml no longer holds exactly one {from:?}"
    );
    text.replacen(from, to, 1)
}

/// The shipped `watchdog.toml`, pointed at the emitter, polling every
/// second, with `[rules.stuck_agent]` set to `stuck` (raw TOML lines).
fn watchdog_toml(emitter: &str, listen: &str, stuck: &str) -> String {
    let text = deploy("watchdog.toml");
    let text = replace_once(&text, "# interval = \"15s\"", "interval = \"1s\"");
    let text = replace_once(
        &text,
        "# listen = \"127.0.0.1:9465\"",
        &format!("listen = \"{listen}\""),
    );
    let text = replace_once(
        &text,
        "url = \"http://127.0.0.1:9464/metrics\"",
        &format!("url = \"{emitter}\""),
    );
    replace_once(
        &text,
        "# min_runtime = \"2m\"",
        &format!("min_runtime = \"1s\"\n{stuck}"),
    )
}

fn alert_lines(journal: &str) -> Vec<AlertLine> {
    journal
        .lines()
        .filter_map(|l| serde_json::from_str::<AlertLine>(l).ok())
        .collect()
}

fn scrape(listen: &str) -> Result<String, String> {
    match net::get(&format!("http://{listen}/metrics"))? {
        (200, body) => Ok(body),
        (status, body) => Err(format!("HTTP {status}: {body}")),
    }
}

/// `watchdog_last_success_timestamp_seconds`: when the target last
/// answered a poll (0 before the first).
fn last_success(listen: &str) -> f64 {
    scrape(listen)
        .ok()
        .and_then(|t| sample(&t, "watchdog_last_success_timestamp_seconds", &[]))
        .unwrap_or(0.0)
}

fn root_dir() -> tempfile::TempDir {
    // Under target/ (CARGO_TARGET_TMPDIR), never under /tmp: the namespace
    // mounts a private tmpfs over /tmp before systemd starts.
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("systemd-real-")
        .tempdir_in(base)
        .unwrap()
}

#[test]
fn shipped_units_run_under_a_real_systemd() {
    if let Some(why) = systemd_ns::unsupported() {
        assert!(
            !tools::in_ci(),
            "CI=true requires a bootable systemd: {why}"
        );
        eprintln!("note: skipping, systemd cannot boot here: {why}");
        return;
    }
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let dir = root_dir();
    let emitter_listen = net::free_addr().unwrap().to_string();
    let watchdog_listen = net::free_addr().unwrap().to_string();
    let emitter_url = format!("http://{emitter_listen}/metrics");

    let dropin = format!(
        "# e2e: the shipped WatchdogSec=60s, shortened so the test waits seconds\n[Service]\nWatchdogSec={WATCHDOG_SEC}s\n"
    );
    let emitter_env = format!(
        "ORCH_DB=/var/lib/orchestrator/state.db\nEMITTER_LISTEN={emitter_listen}\nEMITTER_ARGS=\nRUST_LOG=info\n"
    );
    let emitter_unit = deploy("emitter.service");
    let watchdog_unit = deploy("watchdog.service");
    let watchdog_env = deploy("watchdog.env");
    let layout = Layout::prepare(
        dir.path(),
        &[("emitter", &emitter_bin), ("watchdog", &watchdog_bin)],
        &[
            ("emitter.service", &emitter_unit),
            ("watchdog.service", &watchdog_unit),
            ("watchdog.service.d/e2e.conf", &dropin),
        ],
        &[("emitter", &emitter_env), ("watchdog", &watchdog_env)],
    )
    .unwrap();
    let db = layout.orch_dir().join("state.db");
    let conn = statedb::create(&db).unwrap();
    // A `for` no idle agent reaches during the test: pending, never firing.
    let first = watchdog_toml(&emitter_url, &watchdog_listen, "for = \"1h\"");
    let config = layout.etc_watchdog().join("watchdog.toml");
    std::fs::write(&config, &first).unwrap();

    let mut machine = match Booted::boot(&layout, Duration::from_secs(90)) {
        Ok(m) => m,
        Err(e) if !tools::in_ci() => {
            eprintln!("note: skipping, systemd did not boot here: {e:#}");
            return;
        }
        Err(e) => panic!("CI=true requires a bootable systemd: {e:#}"),
    };
    let ctx = |m: &Booted| {
        format!(
            "\n--- watchdog journal:\n{}\n--- emitter journal:\n{}",
            m.journal("watchdog"),
            m.journal("emitter")
        )
    };

    // Both units reach active (running); Type=notify means through READY=1.
    for unit in ["emitter", "watchdog"] {
        let started = machine.run(&["systemctl", "start", unit]).unwrap();
        assert!(
            started.status.success(),
            "systemctl start {unit}: {}{}",
            String::from_utf8_lossy(&started.stderr),
            ctx(&machine)
        );
        assert_eq!(machine.prop(unit, "Type").unwrap(), "notify");
        assert_eq!(machine.prop(unit, "ActiveState").unwrap(), "active");
        assert_eq!(
            machine.prop(unit, "SubState").unwrap(),
            "running",
            "{}",
            ctx(&machine)
        );
    }
    assert_eq!(machine.prop("emitter", "User").unwrap(), "orchestrator");
    assert_eq!(machine.prop("watchdog", "DynamicUser").unwrap(), "yes");
    assert_eq!(
        machine.prop("watchdog", "WatchdogUSec").unwrap(),
        format!("{WATCHDOG_SEC}s")
    );

    // One idle agent inside the namespace (the emitter reads its /proc there).
    let agent = machine
        .sh("systemd-run --unit=e2e-agent-idle -p User=orchestrator /bin/sleep 1000000 2>&1 && systemctl show -p MainPID --value e2e-agent-idle")
        .unwrap();
    let agent_pid: u32 = agent.lines().last().unwrap().trim().parse().unwrap();
    let job = statedb::insert_running_job(&conn, "idle", agent_pid, "app", "implement").unwrap();
    let job_id = job.job_id.to_string();
    let idle_for = |text: &str| {
        sample(
            text,
            "watchdog_agent_idle_seconds",
            &[("job_id", job_id.as_str())],
        )
    };
    net::wait_for(
        "the watchdog to see the agent idle for 4 s",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || match idle_for(&scrape(&watchdog_listen)?) {
            Some(s) if s >= 4.0 => Ok(()),
            other => Err(format!("idle seconds {other:?}")),
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}{}", ctx(&machine)));
    let pid_before = machine.prop("watchdog", "MainPID").unwrap();

    // A bad file is refused; the old config keeps running. The bad file
    // would fire at once (for = 2s) if any of it were applied.
    std::fs::write(
        &config,
        watchdog_toml(
            &emitter_url,
            &watchdog_listen,
            "for = \"2s\"\ncpu_floor = -1.0",
        ),
    )
    .unwrap();
    machine.sh("systemctl reload watchdog").unwrap();
    net::wait_for(
        "the reload to be rejected in the journal",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            // The watchdog's own words; only "reload" and "reject" are relied on.
            let j = machine.journal("watchdog").to_lowercase();
            if j.lines()
                .any(|l| l.contains("reload") && l.contains("reject"))
            {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}{}", ctx(&machine)));
    let polled = last_success(&watchdog_listen);
    net::wait_for(
        "3 s more of good polls after the rejected reload",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let now = last_success(&watchdog_listen);
            if now >= polled + 3.0 {
                Ok(())
            } else {
                Err(format!("last success {now} (was {polled})"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}{}", ctx(&machine)));
    assert_eq!(machine.prop("watchdog", "MainPID").unwrap(), pid_before);
    assert_eq!(machine.prop("watchdog", "SubState").unwrap(), "running");
    let text = scrape(&watchdog_listen).unwrap();
    assert!(idle_for(&text).unwrap() >= 6.0, "{text}");
    assert!(
        sample(&text, "watchdog_alerts_firing", &[("rule", "stuck_agent")]).unwrap_or(0.0) == 0.0,
        "the rejected config was applied:\n{text}"
    );
    assert!(
        !alert_lines(&machine.journal("watchdog"))
            .iter()
            .any(|l| l.rule == "stuck_agent"),
        "{}",
        ctx(&machine)
    );

    // A changed threshold takes effect on reload: for = 2s fires.
    std::fs::write(
        &config,
        watchdog_toml(&emitter_url, &watchdog_listen, "for = \"2s\""),
    )
    .unwrap();
    machine.sh("systemctl reload watchdog").unwrap();
    let firing = net::wait_for(
        "the stuck_agent firing line in the journal",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            alert_lines(&machine.journal("watchdog"))
                .into_iter()
                .find(|l| l.rule == "stuck_agent" && l.event == AlertEvent::Firing)
                .ok_or_else(|| "no firing line yet".to_owned())
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}{}", ctx(&machine)));
    assert_eq!(
        firing.labels.get("job_id"),
        Some(job_id.as_str()),
        "{firing:?}"
    );
    assert_eq!(
        firing.labels.get("pid"),
        Some(agent_pid.to_string().as_str()),
        "{firing:?}"
    );
    assert_eq!(machine.prop("watchdog", "MainPID").unwrap(), pid_before);
    // The alert log in the StateDirectory has it too.
    let log = machine
        .sh("cat /var/lib/watchdog/alerts.jsonl")
        .unwrap_or_default();
    assert!(
        alert_lines(&log).iter().any(|l| l.key == firing.key),
        "alerts.jsonl: {log}"
    );

    // SIGSTOP: no WATCHDOG=1 pings; systemd restarts it within WatchdogSec
    // (+ RestartSec and the start itself).
    machine
        .sh("systemctl kill --kill-whom=main --signal=SIGSTOP watchdog")
        .unwrap();
    let stopped_at = Instant::now();
    let limit = Duration::from_secs(WATCHDOG_SEC + RESTART_SEC + 15);
    let new_pid = net::wait_for(
        "the stopped watchdog to be restarted",
        limit,
        Duration::from_millis(200),
        || {
            let pid = machine
                .prop("watchdog", "MainPID")
                .map_err(|e| e.to_string())?;
            let sub = machine
                .prop("watchdog", "SubState")
                .map_err(|e| e.to_string())?;
            if pid != pid_before && pid != "0" && sub == "running" {
                Ok(pid)
            } else {
                Err(format!("MainPID {pid} {sub}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}{}", ctx(&machine)));
    let took = stopped_at.elapsed();
    eprintln!("watchdog restarted after SIGSTOP in {took:?} (WatchdogSec={WATCHDOG_SEC}s, RestartSec={RESTART_SEC}s), pid {pid_before} -> {new_pid}");
    assert!(took >= Duration::from_secs(WATCHDOG_SEC), "{took:?}");
    let journal = machine
        .sh("journalctl -u watchdog --no-pager -o cat")
        .unwrap();
    assert!(
        journal.contains("Watchdog timeout"),
        "no watchdog timeout in:\n{journal}"
    );
    assert!(machine.prop("watchdog", "NRestarts").unwrap() != "0");
    // state_file: the restarted watchdog keeps the alert firing without a
    // second `firing` line.
    net::wait_for(
        "the restarted watchdog to report the alert firing",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let text = scrape(&watchdog_listen)?;
            match sample(&text, "watchdog_alerts_firing", &[("rule", "stuck_agent")]) {
                Some(v) if v >= 1.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}{}", ctx(&machine)));
    let firing_lines = alert_lines(&machine.journal("watchdog"))
        .into_iter()
        .filter(|l| l.key == firing.key && l.event == AlertEvent::Firing)
        .count();
    assert_eq!(firing_lines, 1, "{}", ctx(&machine));

    // The hardening scores of the shipped units.
    for (unit, max) in [
        ("watchdog.service", MAX_EXPOSURE_WATCHDOG),
        ("emitter.service", MAX_EXPOSURE_EMITTER),
    ] {
        let out = machine
            .run(&["systemd-analyze", "security", "--no-pager", unit])
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        let score = systemd_ns::exposure(&report)
            .unwrap_or_else(|| panic!("no score for {unit}:\n{report}"));
        eprintln!("systemd-analyze security {unit}: {score}");
        assert!(score <= max, "{unit}: exposure {score} > {max}:\n{report}");
    }

    let systemd_pid = machine.pid();
    assert!(
        machine.poweroff(Duration::from_secs(30)),
        "systemd did not power off within 30 s"
    );
    assert!(!e2e::procs::alive(systemd_pid));
}
