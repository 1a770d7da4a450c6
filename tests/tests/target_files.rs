//! `target_files` live (CONTRACT.md section 5, issue 13): the real
//! watchdog, a `[[target]]` and a `file_sd` directory, with real emitters
//! on real SQLite files. A target added to a file starts polling; a file
//! that breaks is reported (gauge) and its targets keep being polled; a
//! file naming a target already named is refused; a target removed stops,
//! its firing alert ends with a `resolved` line and only its own series,
//! alerts and page rows go.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use e2e::bins;
use e2e::net::{get_json, wait_for};
use e2e::stack::{alert_log_key, config_head, sample, Emitter, Watchdog};
use e2e::statedb;
use shared_schema::AlertEvent;

const WAIT: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_millis(200);

/// Writes `text` to `path` the way a config manager does: a temporary
/// file in the same directory, renamed over the target.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn targets_files_add_break_refuse_and_remove_live() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db_a = dir.path().join("a.db");
    let db_b = dir.path().join("b.db");
    statedb::create(&db_a).unwrap();
    let conn_b = statedb::create(&db_b).unwrap();
    // Target b has a firing alert (critical, for 0s) to be resolved on removal.
    statedb::set_worker_state(&conn_b, "breaker_state", "open").unwrap();
    let dir_a = dir.path().join("ea");
    let dir_b = dir.path().join("eb");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let emitter_a = Emitter::start(&emitter_bin, &db_a, &dir_a).unwrap();
    let emitter_b = Emitter::start(&emitter_bin, &db_b, &dir_b).unwrap();

    let targets = dir.path().join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    let fleet = targets.join("fleet.json");
    write_atomically(
        &fleet,
        &format!(
            r#"[{{"targets": ["{}"], "labels": {{"name": "orch-b"}}}}]"#,
            emitter_b.addr
        ),
    );
    let fixed_url = emitter_a.url();
    let w = Watchdog::start_with(
        &watchdog_bin,
        dir.path(),
        |listen, alert_log| {
            let top = format!(
                "{}\ntarget_files = [\"targets/*.json\"]",
                alert_log_key(alert_log)
            );
            config_head("1s", "2s", listen, &top, "fixed", &fixed_url)
        },
        None,
    )
    .unwrap();

    // The file's target is polled and its alert fires.
    let fired = w
        .wait_line("breaker_open firing on orch-b", WAIT, |l| {
            l.target == "orch-b" && l.rule == "breaker_open" && l.event == AlertEvent::Firing
        })
        .unwrap();
    let api = wait_for("orch-b's alert in /api/v1/alerts", WAIT, EVERY, || {
        let body = get_json(&format!("http://{}/api/v1/alerts", w.addr))?;
        let found = body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["key"] == fired.key.as_str() && a["state"] == "firing");
        found.then_some(body).ok_or("not there yet".to_owned())
    })
    .unwrap();
    assert_eq!(api["alerts"][0]["severity"], "critical", "{api}");

    // Added: a second file with a new name for emitter a.
    let extra = targets.join("extra.json");
    write_atomically(
        &extra,
        &format!(r#"[{{"targets": ["{}"]}}]"#, emitter_a.addr),
    );
    let added = emitter_a.addr.to_string();
    wait_for("the added target to be polled", WAIT, EVERY, || {
        let text = w.scrape()?;
        match sample(&text, "watchdog_target_up", &[("target", &added)]) {
            Some(1.0) => Ok(()),
            other => Err(format!("watchdog_target_up {other:?}")),
        }
    })
    .unwrap();

    // Broken: reported by the gauge, and its target is still polled.
    std::fs::write(&fleet, "[{\"targets\": [\"half-writ").unwrap();
    let fleet_label = fleet.display().to_string();
    wait_for("the broken file's gauge", WAIT, EVERY, || {
        let text = w.scrape()?;
        match sample(
            &text,
            "watchdog_target_file_errors",
            &[("file", &fleet_label)],
        ) {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap();
    let before = w.ok_polls("orch-b");
    wait_for(
        "orch-b still polled while its file is broken",
        WAIT,
        EVERY,
        || {
            let now = w.ok_polls("orch-b");
            (now >= before + 2.0)
                .then_some(())
                .ok_or(format!("{before} -> {now}"))
        },
    )
    .unwrap();

    // Refused: a name taken by [[target]]; nothing changes.
    let dup = targets.join("dup.json");
    write_atomically(
        &dup,
        &format!(
            r#"[{{"targets": ["{}"], "labels": {{"name": "fixed"}}}}]"#,
            emitter_b.addr
        ),
    );
    let dup_label = dup.display().to_string();
    wait_for("the duplicate file's gauge", WAIT, EVERY, || {
        let text = w.scrape()?;
        match sample(
            &text,
            "watchdog_target_file_errors",
            &[("file", &dup_label)],
        ) {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap();
    std::fs::remove_file(&dup).unwrap();

    // Removed: the file is fixed without orch-b.
    write_atomically(&fleet, "[]");
    let resolved = w
        .wait_line("orch-b's alert resolved on removal", WAIT, |l| {
            l.key == fired.key && l.event == AlertEvent::Resolved
        })
        .unwrap();
    assert_eq!(resolved.rule, "breaker_open");
    assert_eq!(resolved.target, "orch-b");
    wait_for(
        "orch-b's series to go, the others' to stay",
        WAIT,
        EVERY,
        || {
            let text = w.scrape()?;
            if text.contains("target=\"orch-b\"") {
                return Err("orch-b still has series".into());
            }
            for t in ["fixed", added.as_str()] {
                if sample(&text, "watchdog_target_up", &[("target", t)]) != Some(1.0) {
                    return Err(format!("{t} lost its series:\n{text}"));
                }
            }
            match sample(
                &text,
                "watchdog_target_file_errors",
                &[("file", &fleet_label)],
            ) {
                Some(0.0) => Ok(()),
                other => Err(format!("fleet.json reads again: {other:?}")),
            }
        },
    )
    .unwrap();
    let body = get_json(&format!("http://{}/api/v1/alerts", w.addr)).unwrap();
    assert!(
        !body.to_string().contains("orch-b"),
        "orch-b's alerts gone from the API: {body}"
    );
    let (status, page) = e2e::net::get(&format!("http://{}/", w.addr)).unwrap();
    assert_eq!(status, 200);
    assert!(!page.contains("orch-b"), "orch-b gone from the page");
    assert!(page.contains("<tr data-target=\"fixed\">"), "{page}");
    // Two more polls of the others later, orch-b is still not polled.
    let fixed_before = w.ok_polls("fixed");
    wait_for("two more polls of fixed", WAIT, EVERY, || {
        let now = w.ok_polls("fixed");
        (now >= fixed_before + 2.0)
            .then_some(())
            .ok_or(format!("{now}"))
    })
    .unwrap();
    assert_eq!(w.ok_polls("orch-b"), 0.0);
    // Exactly one firing and one resolved line for that alert.
    let events: Vec<AlertEvent> = w
        .lines()
        .iter()
        .filter(|l| l.key == fired.key)
        .map(|l| l.event)
        .collect();
    assert_eq!(events, [AlertEvent::Firing, AlertEvent::Resolved]);
}

#[test]
fn a_name_given_twice_at_start_is_a_config_error() {
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.json"),
        r#"[{"targets": ["127.0.0.1:9"], "labels": {"name": "fixed"}}]"#,
    )
    .unwrap();
    let config = dir.path().join("w.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ntarget_files = [\"*.json\"]\n[[target]]\nname = \"fixed\"\nurl = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(watchdog_bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"fixed\"") && err.contains("t.json"), "{err}");
}

/// Issue 24 item 2: a target moved from `z.json` to `a.json` the way a
/// config manager does it (first added to `a.json`, then removed from
/// `z.json`) is polled throughout, its alert never resolves, and `a.json`,
/// refused while both named it, is taken up without being touched again.
#[test]
fn a_target_moved_to_another_file_keeps_polling_and_firing() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let conn = statedb::create(&db).unwrap();
    statedb::set_worker_state(&conn, "breaker_state", "open").unwrap();
    let edir = dir.path().join("ex");
    std::fs::create_dir_all(&edir).unwrap();
    let emitter = Emitter::start(&emitter_bin, &db, &edir).unwrap();
    let targets = dir.path().join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    let (a, z) = (targets.join("a.json"), targets.join("z.json"));
    let group = |name: &str| {
        format!(
            r#"{{"targets": ["{}"], "labels": {{"name": "{name}"}}}}"#,
            emitter.addr
        )
    };
    write_atomically(&a, &format!("[{}]", group("orch-a")));
    write_atomically(&z, &format!("[{}]", group("orch-x")));
    let w = Watchdog::start_with(
        &watchdog_bin,
        dir.path(),
        |listen, alert_log| {
            format!(
                "interval = \"1s\"\ntimeout = \"2s\"\nlisten = \"{listen}\"\nalert_log = {alert_log:?}\ntarget_files = [\"targets/*.json\"]\n"
            )
        },
        None,
    )
    .unwrap();
    let fired = w
        .wait_line("breaker_open firing on orch-x", WAIT, |l| {
            l.target == "orch-x" && l.rule == "breaker_open" && l.event == AlertEvent::Firing
        })
        .unwrap();
    let gauge = |w: &Watchdog, file: &Path| {
        let text = w.scrape().unwrap_or_default();
        sample(
            &text,
            "watchdog_target_file_errors",
            &[("file", &file.display().to_string())],
        )
    };

    write_atomically(&a, &format!("[{}, {}]", group("orch-a"), group("orch-x")));
    wait_for(
        "a.json refused while z.json names orch-x",
        WAIT,
        EVERY,
        || match gauge(&w, &a) {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap();
    write_atomically(&z, "[]");
    wait_for(
        "a.json taken up once z.json lets go",
        WAIT,
        EVERY,
        || match gauge(&w, &a) {
            Some(0.0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap();
    let before = w.ok_polls("orch-x");
    wait_for("orch-x polled on after the move", WAIT, EVERY, || {
        let now = w.ok_polls("orch-x");
        (now >= before + 3.0)
            .then_some(())
            .ok_or(format!("{before} -> {now}"))
    })
    .unwrap();
    let events: Vec<AlertEvent> = w
        .lines()
        .iter()
        .filter(|l| l.key == fired.key && l.event != AlertEvent::Repeat)
        .map(|l| l.event)
        .collect();
    assert_eq!(
        events,
        [AlertEvent::Firing],
        "orch-x's alert never resolved"
    );
}
