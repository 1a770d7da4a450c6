//! The files under `deploy/` are checked by the tools that will read them:
//! `promtool` (rules and their unit tests, the scrape config), `amtool`
//! (the Alertmanager route), `systemd-analyze verify` (the units), and the
//! Grafana dashboard is parsed and every query checked against the
//! contract's gauge names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{contract, tools};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let Some(promtool) = tools::require("promtool", "apt-get install prometheus") else {
        return;
    };
    let dir = deploy().join("prometheus");
    let out = run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg("watchdog-rules.yml")
        .current_dir(&dir));
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg("watchdog-rules.test.yml")
        .current_dir(&dir));
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run(Command::new(&promtool)
        .arg("check")
        .arg("config")
        .arg("prometheus.yml")
        .current_dir(&dir));
    assert!(out.contains("is valid prometheus config file"), "{out}");
}

#[test]
fn every_alerting_rule_names_contract_gauges_and_has_a_unit_test() {
    let dir = deploy().join("prometheus");
    let rules = std::fs::read_to_string(dir.join("watchdog-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("watchdog-rules.test.yml")).unwrap();
    let mut alerts = Vec::new();
    for line in rules.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            alerts.push(name.to_owned());
        }
        if let Some(expr) = line.strip_prefix("expr: ") {
            for name in contract::watchdog_names(expr) {
                assert!(
                    contract::is_contract_series(&name),
                    "rule expr {expr:?} names {name}, not a contract gauge"
                );
            }
        }
    }
    assert!(alerts.len() >= 10, "{alerts:?}");
    for must in [
        "WatchdogAbsent",
        "WatchdogTargetDown",
        "AgentStuck",
        "QueueDeep",
        "BreakerOpen",
        "ReconcilerInvariantViolations",
        "WatchdogAlertsFiring",
        "AgentGone",
        "AgentNoPid",
        "RunCostHigh",
        "AgentLooping",
        "AgentWaitingForReply",
        "AgentApiErrors",
    ] {
        assert!(alerts.iter().any(|a| a == must), "missing alert {must}");
        assert!(
            tests.contains(&format!("alertname: {must}")),
            "alert {must} has no promtool test"
        );
    }
}

#[test]
fn amtool_accepts_the_alertmanager_config_and_routes_by_severity() {
    let Some(amtool) = tools::optional("amtool", "comes with Debian's prometheus-alertmanager")
    else {
        return;
    };
    let config = deploy().join("alertmanager/alertmanager.yml");
    let out = run(Command::new(&amtool).arg("check-config").arg(&config));
    assert!(out.contains("SUCCESS"), "{out}");
    for (labels, receiver) in [
        (
            &["alertname=stuck_agent", "severity=warning", "target=orch-1"][..],
            "chat",
        ),
        (
            &[
                "alertname=target_down",
                "severity=critical",
                "target=orch-1",
            ][..],
            "pager",
        ),
        (
            &[
                "alertname=BreakerOpen",
                "severity=critical",
                "target=orch-1",
            ][..],
            "pager",
        ),
        (
            &["alertname=WatchdogHeartbeat", "severity=none"][..],
            "deadmans-switch",
        ),
    ] {
        let out = run(Command::new(&amtool)
            .args(["config", "routes", "test", "--config.file"])
            .arg(&config)
            .arg(format!("--verify.receivers={receiver}"))
            .args(labels));
        assert!(
            out.lines().any(|l| l.trim() == receiver),
            "{labels:?} -> {out}"
        );
    }
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("group_by: [target, alertname]"));
    assert!(text.contains("alertname = \"target_down\"") && text.contains("equal: [target]"));
}

#[test]
fn grafana_dashboard_is_valid_json_over_contract_gauges() {
    let text = std::fs::read_to_string(deploy().join("grafana/watchdog.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("watchdog.json is valid JSON");
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let target = vars
        .iter()
        .find(|v| v["name"] == "target")
        .expect("a `target` variable");
    assert!(
        target["query"].to_string().contains("watchdog_target_up"),
        "{target}"
    );

    // Panels: unique ids, on the 24-column grid, never overlapping.
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = std::collections::BTreeSet::new();
    let mut boxes: Vec<(i64, i64, i64, i64)> = Vec::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_i64().unwrap()),
            "duplicate panel id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        );
        assert!(
            x >= 0 && w > 0 && x + w <= 24 && h > 0,
            "panel {} off the grid: {g}",
            p["title"]
        );
        for &(bx, by, bw, bh) in &boxes {
            let overlap = x < bx + bw && bx < x + w && y < by + bh && by < y + h;
            assert!(!overlap, "panel {} overlaps another at {g}", p["title"]);
        }
        boxes.push((x, y, w, h));
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {} ignores the data source variable",
                p["title"]
            );
        }
    }

    let mut exprs = Vec::new();
    let mut stack: Vec<&serde_json::Value> = vec![&dash["panels"]];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(e)) = map.get("expr") {
                    exprs.push(e.clone());
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    assert!(exprs.len() >= 20, "only {} queries", exprs.len());
    let mut used = std::collections::BTreeSet::new();
    for expr in &exprs {
        let names = contract::watchdog_names(expr);
        assert!(!names.is_empty(), "query {expr:?} names no watchdog gauge");
        for name in names {
            assert!(
                contract::is_contract_series(&name),
                "query {expr:?} names {name}, not a contract gauge"
            );
            used.insert(name);
        }
        if !expr.contains("watchdog_notifications_total") && !expr.contains("watchdog_build_info") {
            assert!(
                expr.contains("$target"),
                "query {expr:?} ignores the target variable"
            );
        }
    }
    for must in [
        "watchdog_agent_cpu_fraction",
        "watchdog_agent_idle_seconds",
        "watchdog_queue_depth",
        "watchdog_stage_tasks",
        "watchdog_reconciler_wall_clock_seconds",
        "watchdog_reconciler_pending_events",
        "watchdog_reconciler_invariant_violations",
        "watchdog_cost_usd",
        "watchdog_alerts_firing",
        "watchdog_agent_cost_usd",
        "watchdog_agent_api_requests_total",
        "watchdog_agent_tool_calls_total",
        "watchdog_agent_tool_repeat",
        "watchdog_agent_net_wait_seconds",
    ] {
        assert!(used.contains(must), "the dashboard shows no {must}");
    }
}

/// `systemd-analyze verify` wants ExecStart= to exist: check copies whose
/// ExecStart points at /bin/true, keeping every other line as shipped.
#[test]
fn systemd_analyze_verifies_the_units() {
    let Some(analyze) = tools::optional("systemd-analyze", "part of systemd") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for unit in ["emitter", "watchdog"] {
        let text =
            std::fs::read_to_string(deploy().join(format!("systemd/{unit}.service"))).unwrap();
        let bin = format!("/usr/local/bin/{unit}");
        assert!(
            text.contains(&format!("ExecStart={bin} ")),
            "{unit}.service runs {bin}"
        );
        let path = tmp.path().join(format!("{unit}.service"));
        std::fs::write(&path, text.replace(&bin, "/bin/true")).unwrap();
        units.push(path);
    }
    let out = Command::new(&analyze)
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

#[test]
fn units_carry_the_hardening_and_the_example_config_every_key() {
    let sd = deploy().join("systemd");
    let watchdog = std::fs::read_to_string(sd.join("watchdog.service")).unwrap();
    let emitter = std::fs::read_to_string(sd.join("emitter.service")).unwrap();
    for (unit, text) in [("watchdog", &watchdog), ("emitter", &emitter)] {
        for line in [
            "Type=notify",
            "Restart=on-failure",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=\n",
        ] {
            assert!(text.contains(line), "{unit}.service lacks {line:?}");
        }
    }
    for line in [
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=watchdog",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(watchdog.contains(line), "watchdog.service lacks {line:?}");
    }
    for line in ["ProtectProc=default", "ReadOnlyPaths=", "User="] {
        assert!(emitter.contains(line), "emitter.service lacks {line:?}");
    }
    assert!(!emitter.contains("DynamicUser=yes"));

    let toml = std::fs::read_to_string(sd.join("watchdog.toml")).unwrap();
    for key in [
        "interval",
        "timeout",
        "listen",
        "alert_log",
        "state_file",
        "[[target]]",
        "name",
        "url",
        "token_file",
        "repeat_interval",
        "[[notify.webhook]]",
        "rate",
        "[notify.alertmanager]",
        // Unset by default, so --print-config (below) cannot list them.
        "max_usd",
        "max_usd_per_hour",
    ] {
        assert!(toml.contains(key), "watchdog.toml does not show {key}");
    }
    // The rules and their keys come from the one registry, by way of the
    // real binary's `--print-config` (every rule at its defaults).
    let rules = registry_rules();
    assert!(rules.len() >= 15, "the registry lists {rules:?}");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    for (rule, keys) in &rules {
        assert!(
            toml.contains(&format!("[rules.{rule}]")),
            "watchdog.toml has no [rules.{rule}] (the registry has it)"
        );
        assert!(
            readme.contains(&format!("| `{rule}` |")),
            "README.md's rule table has no row for {rule} (the registry has it)"
        );
        for key in keys {
            assert!(
                toml.contains(&format!("{key} =")),
                "watchdog.toml does not show [rules.{rule}] {key}"
            );
        }
    }
}

/// Every rule of the registry with its keys: `watchdog run --print-config`
/// with no config prints `[rules.NAME]` for each, every key at its default.
fn registry_rules() -> Vec<(String, Vec<String>)> {
    let watchdog = e2e::bins::locate("watchdog").unwrap();
    let out = run(Command::new(&watchdog).arg("run").arg("--print-config"));
    let mut rules: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_rule = false;
    for line in out.lines() {
        if let Some(name) = line
            .strip_prefix("[rules.")
            .and_then(|r| r.strip_suffix(']'))
        {
            // `[rules.stage_age.per_stage]` is a key of stage_age, not a rule.
            match name.split_once('.') {
                None => {
                    rules.push((name.to_owned(), Vec::new()));
                    in_rule = true;
                }
                Some((_, key)) => {
                    if let Some(r) = rules.last_mut() {
                        r.1.push(key.to_owned());
                    }
                }
            }
        } else if line.starts_with('[') {
            in_rule = false;
        } else if let (true, Some((key, _))) = (in_rule, line.split_once(" = ")) {
            if let Some(r) = rules.last_mut() {
                r.1.push(key.trim().to_owned());
            }
        }
    }
    rules
}

/// The pure core holds no runtime or I/O crate: Cargo, not a comment, keeps
/// it so (issue 11 item 2).
#[test]
fn the_core_crate_depends_on_no_runtime_or_io_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run(Command::new(cargo)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args([
            "tree",
            "-p",
            "watchdog-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ]));
    assert!(out.contains("watchdog-core"), "{out}");
    let forbidden = [
        "tokio",
        "mio",
        "hyper",
        "reqwest",
        "prometheus",
        "toml",
        "rusqlite",
        "governor",
        "socket2",
        "libc",
        "tracing",
        "clap",
        "notify",
    ];
    for line in out.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            !forbidden
                .iter()
                .any(|f| name == *f || name.starts_with(&format!("{f}-"))),
            "watchdog-core pulls in {name}, a runtime or I/O crate:\n{out}"
        );
    }
}

/// The shipped Alertmanager config in a real Alertmanager: a target's
/// `target_down` inhibits its other alerts, not another target's.
#[test]
fn shipped_alertmanager_config_inhibits_a_down_targets_other_alerts() {
    let Some(am_bin) = tools::require(
        "prometheus-alertmanager",
        "apt-get install prometheus-alertmanager",
    ) else {
        return;
    };
    let config = std::fs::read_to_string(deploy().join("alertmanager/alertmanager.yml")).unwrap();
    let am = e2e::ext::alertmanager(&am_bin, &config).unwrap();
    let alert = |name: &str, target: &str, severity: &str| {
        serde_json::json!({"labels": {"alertname": name, "target": target, "severity": severity, "job_id": "7"},
                           "annotations": {"summary": format!("{name} on {target}")}})
    };
    let body = serde_json::json!([
        alert("target_down", "orch-1", "critical"),
        alert("stuck_agent", "orch-1", "warning"),
        alert("stuck_agent", "orch-2", "warning"),
    ]);
    let resp = e2e::net::client()
        .post(format!("{}/api/v2/alerts", am.base()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text());
    let state = |alerts: &[serde_json::Value], name: &str, target: &str| {
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == name && a["labels"]["target"] == target)
            .map(|a| a["status"]["state"].as_str().unwrap_or_default().to_owned())
    };
    e2e::net::wait_for(
        "inhibition to apply",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(200),
        || {
            let alerts = e2e::net::get_json(&format!("{}/api/v2/alerts", am.base()))?;
            let alerts = alerts.as_array().cloned().unwrap_or_default();
            let got = (
                state(&alerts, "target_down", "orch-1"),
                state(&alerts, "stuck_agent", "orch-1"),
                state(&alerts, "stuck_agent", "orch-2"),
            );
            let want = (
                Some("active".to_owned()),
                Some("suppressed".to_owned()),
                Some("active".to_owned()),
            );
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", am.log_tail()));
}

/// The example config is accepted by the real watchdog as shipped, and
/// with every commented-out key switched on (so no key in it is a typo).
#[test]
fn the_real_watchdog_accepts_the_example_config_with_every_key_on() {
    let watchdog = e2e::bins::locate("watchdog").unwrap();
    let shipped = deploy().join("systemd/watchdog.toml");
    let out = run(Command::new(&watchdog)
        .arg("run")
        .arg("--config")
        .arg(&shipped)
        .arg("--print-config"));
    assert!(out.contains("orch-1"), "{out}");

    let text = std::fs::read_to_string(&shipped).unwrap();
    let mut all_on = String::new();
    let mut switched = 0;
    for line in text.lines() {
        let body = line.strip_prefix("# ").unwrap_or("");
        let is_table = body.starts_with('[') && body.trim_end().ends_with(']');
        let is_key = body.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        if (is_table || is_key) && !body.starts_with("token_file") {
            all_on.push_str(body);
            switched += 1;
        } else {
            all_on.push_str(line);
        }
        all_on.push('\n');
    }
    assert!(switched > 60, "only {switched} keys switched on");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("all-on.toml");
    std::fs::write(&path, &all_on).unwrap();
    let out = run(Command::new(&watchdog)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .arg("--print-config"));
    for key in [
        "orch-2",
        "cpu_floor",
        "max_usd_per_hour",
        "per_stage",
        "webhook",
        "alertmanager",
    ] {
        assert!(out.contains(key), "--print-config lacks {key}:\n{out}");
    }
}

#[test]
fn demo_script_is_executable_posix_sh_and_runs_the_demo_binary() {
    use std::os::unix::fs::PermissionsExt;
    let script = deploy().join("demo.sh");
    let mode = std::fs::metadata(&script).unwrap().permissions().mode();
    assert!(
        mode & 0o111 != 0,
        "deploy/demo.sh is not executable ({mode:o})"
    );
    run(Command::new("sh").arg("-n").arg(&script));
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#!/bin/sh\n"), "POSIX sh, no bash needed");
    assert!(text.contains("cargo build --release -p emitter -p watchdog -p e2e"));
    assert!(text.contains("exec \"$target_dir/release/demo\" \"$@\""));
}
