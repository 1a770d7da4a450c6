//! The status page in a real browser (issue 13): the real emitter on a
//! real SQLite file with a real agent process, the real watchdog, and
//! Debian's headless Chromium rendering `GET /` (`--dump-dom` and
//! `--screenshot`). The DOM must show the target, the agent and the
//! firing alert; the screenshot must be a PNG with something in it.
//! Without Chromium a developer gets a note; under `CI=true` the test
//! fails (`.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::lab::OneAgent;
use e2e::net::wait_for;
use e2e::stack::{Emitter, Watchdog, WatchdogOptions};
use e2e::{bins, browser};
use e2e::{statedb, tools};
use shared_schema::AlertEvent;

#[test]
fn a_real_browser_shows_the_target_the_agent_and_the_firing_alert() {
    let Some(browser) = tools::chromium() else {
        return;
    };
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    // A real agent process, and a critical alert that fires at once.
    let one = OneAgent::start("reviewer").unwrap();
    let (dir, db, agent, job) = (&one.dir, &one.db, &one.agent, &one.job);
    statedb::set_worker_state(&one.conn, "breaker_state", "open").unwrap();
    statedb::set_worker_state(&one.conn, "breaker_failures", "5").unwrap();

    let emitter = Emitter::start(&emitter_bin, db, dir.path()).unwrap();
    let w = Watchdog::start(
        &watchdog_bin,
        dir.path(),
        "orch-<1>",
        &emitter.url(),
        &WatchdogOptions::default(),
        None,
    )
    .unwrap();
    let fired = w
        .wait_line("breaker_open firing", Duration::from_secs(30), |l| {
            l.rule == "breaker_open" && l.event == AlertEvent::Firing
        })
        .unwrap();
    let page_url = format!("http://{}/", w.addr);
    // Two polls in, the agent has a CPU fraction: the page has it all.
    wait_for(
        "the page to show the agent's CPU",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (status, page) = e2e::net::get(&page_url)?;
            (status == 200 && page.contains("<td class=\"n\">0.0%</td>"))
                .then_some(())
                .ok_or_else(|| format!("HTTP {status}"))
        },
    )
    .unwrap();

    let dom = browser::chromium(
        &browser,
        &dir.path().join("profile-dom"),
        "--dump-dom",
        &page_url,
        1024,
    )
    .unwrap();
    // The target, its name escaped (it holds `<` and `>`), up.
    assert!(
        dom.contains("<td>orch-&lt;1&gt;</td><td><span class=\"up\">up</span></td><td>yes</td>"),
        "{dom}"
    );
    // The agent: job, name, pid, state.
    let row = format!(
        "<tr data-job=\"{}\"><td>orch-&lt;1&gt;</td><td class=\"n\">{}</td><td>reviewer</td><td class=\"n\">{}</td>",
        job.job_id,
        job.job_id,
        agent.pid()
    );
    assert!(dom.contains(&row), "{row}\n{dom}");
    // The firing alert, critical, with its summary.
    assert!(
        dom.contains(
            "<td>firing</td><td class=\"sev\">critical</td><td>breaker_open</td><td>orch-&lt;1&gt;</td>"
        ),
        "{dom}"
    );
    assert!(
        dom.contains(&fired.summary.replace('<', "&lt;").replace('>', "&gt;")),
        "{dom}"
    );
    assert!(
        dom.contains("<title>watchdog: 1 firing (1 critical)</title>"),
        "{dom}"
    );
    // The browser ran no script of ours (there is none) and parsed one table per kind.
    for id in ["alerts-table", "targets-table", "agents-table"] {
        assert_eq!(dom.matches(&format!("id=\"{id}\"")).count(), 1, "{id}");
    }

    // A PNG, and not a blank 1280x1024 page (a few KiB): this one has text.
    let png = browser::screenshot(
        &browser,
        &dir.path().join("profile-shot"),
        &dir.path().join("status.png"),
        &page_url,
        1024,
    );
    // To look at it: STATUS_PAGE_SCREENSHOT=/tmp/status.png cargo test ...
    if let Some(keep) = std::env::var_os("STATUS_PAGE_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
    drop(one);
}
