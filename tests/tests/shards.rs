//! `shard = "i/n"` (issue 22): three watchdogs over one `target_files`
//! split six real emitters so that each is polled by exactly one of them,
//! the one Prometheus' `hashmod` of its name picks; killing one watchdog
//! leaves only its own shard unwatched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::bins;
use e2e::net::wait_for;
use e2e::stack::{Emitter, Watchdog};
use e2e::statedb;
use watchdog::shard::hashmod;

const WAIT: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_millis(200);
const TARGETS: usize = 6;

#[test]
fn three_shards_poll_each_target_exactly_once() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut emitters = Vec::new();
    let mut entries = Vec::new();
    for i in 0..TARGETS {
        let db = dir.path().join(format!("{i}.db"));
        statedb::create(&db).unwrap();
        let edir = dir.path().join(format!("e{i}"));
        std::fs::create_dir_all(&edir).unwrap();
        let e = Emitter::start(&emitter_bin, &db, &edir).unwrap();
        entries.push(format!(
            r#"{{"targets": ["{}"], "labels": {{"name": "orch-{i}"}}}}"#,
            e.addr
        ));
        emitters.push(e);
    }
    let fleet = dir.path().join("fleet.json");
    std::fs::write(&fleet, format!("[{}]", entries.join(","))).unwrap();

    let mut watchdogs = Vec::new();
    for shard in 0..3 {
        let wdir = dir.path().join(format!("w{shard}"));
        std::fs::create_dir_all(&wdir).unwrap();
        let w = Watchdog::start_with(
            &watchdog_bin,
            &wdir,
            |listen, alert_log| {
                format!(
                    "interval = \"500ms\"\ntimeout = \"2s\"\nlisten = \"{listen}\"\nalert_log = {alert_log:?}\nshard = \"{shard}/3\"\ntarget_files = [{:?}]\n",
                    fleet.display().to_string()
                )
            },
            None,
        )
        .unwrap();
        watchdogs.push(w);
    }
    let owner = |t: usize| hashmod(&format!("orch-{t}"), 3) as usize;
    // Every target is polled by its owner...
    wait_for("every target polled by its shard", WAIT, EVERY, || {
        let counts: Vec<f64> = (0..TARGETS)
            .map(|t| watchdogs[owner(t)].ok_polls(&format!("orch-{t}")))
            .collect();
        counts
            .iter()
            .all(|&n| n >= 2.0)
            .then_some(())
            .ok_or(format!("polls by owner: {counts:?}"))
    })
    .unwrap();
    // ... and by no other watchdog, ever.
    for t in 0..TARGETS {
        for (s, w) in watchdogs.iter().enumerate() {
            if s != owner(t) {
                assert_eq!(
                    w.ok_polls(&format!("orch-{t}")),
                    0.0,
                    "orch-{t} polled by shard {s}"
                );
            }
        }
    }

    // Kill shard 0's watchdog: the others go on with theirs and do not take its targets.
    let dead = 0;
    drop(watchdogs.remove(dead));
    let survivors: Vec<(usize, &Watchdog)> = (0..3)
        .filter(|&s| s != dead)
        .zip(watchdogs.iter())
        .collect();
    let before: Vec<f64> = (0..TARGETS)
        .map(|t| {
            survivors
                .iter()
                .map(|(_, w)| w.ok_polls(&format!("orch-{t}")))
                .sum()
        })
        .collect();
    wait_for(
        "the survivors keep polling their shards",
        WAIT,
        EVERY,
        || {
            (0..TARGETS)
                .filter(|&t| owner(t) != dead)
                .all(|t| {
                    let now: f64 = survivors
                        .iter()
                        .map(|(_, w)| w.ok_polls(&format!("orch-{t}")))
                        .sum();
                    now >= before[t] + 2.0
                })
                .then_some(())
                .ok_or_else(|| "not yet".to_owned())
        },
    )
    .unwrap();
    for t in (0..TARGETS).filter(|&t| owner(t) == dead) {
        for (s, w) in &survivors {
            assert_eq!(
                w.ok_polls(&format!("orch-{t}")),
                0.0,
                "orch-{t} of the dead shard polled by shard {s}"
            );
        }
    }
    drop(emitters);
}
