//! `stuck_agent` on page 1 and 2: `sleep`, `cat` on a pipe, resets, gaps, restore,
//! the idle time the view shows, and `per_agent`.

use shared_schema::{Agent, AlertEvent};

use crate::engine::Observation;
use crate::rules::test_kit::{
    agent_unprobed as agent, busy_env, calm_env as env, drive_15s as drive, engine, idle_env, obs,
    of_rule, t0, T,
};

#[test]
fn idle_agent_fires_once_after_for_and_resolves_when_busy() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 1200, idle_env);
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    let l = stuck[0];
    assert_eq!(l.event, AlertEvent::Firing);
    assert_eq!(l.key, "stuck_agent|orch-1|job=7|run=42|pid=1234");
    // Idle from the first sample (0 s): `for` 10m later it fires, as in the
    // contract's example (since 10:00, ts 10:10, "for 10m").
    assert_eq!(l.ts, t0().plus_seconds(600.0));
    assert_eq!(l.since, t0());
    assert_eq!(l.labels.get("agent"), Some("dev"));
    assert_eq!(l.labels.get("pid"), Some("1234"));
    assert!(
        l.summary.starts_with("agent dev (job 7, pid 1234) used 0."),
        "{}",
        l.summary
    );
    assert!(
        l.summary.contains("% CPU and did no I/O for 10m"),
        "{}",
        l.summary
    );
    assert_eq!(l.threshold, Some(0.02));
    assert!(l.value.unwrap() < 0.02);

    let lines = drive(&mut en, 1215, 1215, busy_env);
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].event, AlertEvent::Resolved);
    assert_eq!(stuck[0].key, l.key);
    // A resolution must not read as if the agent were still stuck.
    assert!(
        stuck[0]
            .summary
            .starts_with("resolved after 20m 15s; last seen: agent dev (job 7, pid 1234) used 0."),
        "{}",
        stuck[0].summary
    );
}

#[test]
fn busy_agent_never_fires() {
    let mut en = engine("");
    assert!(of_rule(&drive(&mut en, 0, 3600, busy_env), "stuck_agent").is_empty());
}

#[test]
fn flat_cpu_with_growing_io_never_fires() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 3600, |s| {
        let mut e = env(s);
        // 200 KiB every 15 s: above the default io_floor of 512 KiB/min
        // (growth below the floor is an idle event loop, see stuck_agent's tests).
        e.agents = vec![agent(600.0 + s, 0, 1000 + (s as u64 / 15) * 204_800)];
        e
    });
    assert!(of_rule(&lines, "stuck_agent").is_empty());
}

#[test]
fn young_agent_is_not_stuck() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 1200, |s| {
        let mut e = env(s);
        e.agents = vec![agent(s.min(100.0), 0, 0)];
        e
    });
    assert!(of_rule(&lines, "stuck_agent").is_empty());
}

#[test]
fn pid_reuse_restarts_the_idle_timer() {
    let mut en = engine("");
    let mut lines = drive(&mut en, 0, 450, idle_env);
    // At 465 s the pid names another process: no delta, the timer restarts.
    lines.extend(drive(&mut en, 465, 1050, |s| {
        let mut e = idle_env(s);
        e.agents[0].start_ticks = Some(999);
        e
    }));
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "fired across a pid reuse"
    );
    let lines = drive(&mut en, 1065, 1095, |s| {
        let mut e = idle_env(s);
        e.agents[0].start_ticks = Some(999);
        e
    });
    // The new process's first sample is at 465: idle from there, 600 s later.
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].ts, t0().plus_seconds(1065.0));
}

#[test]
fn clock_step_back_with_steady_monotonic_keeps_counting() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 900, |s| {
        let mut e = idle_env(s);
        if s >= 300.0 {
            // The wall clock jumped an hour back at 300 s; monotonic did not.
            e.generated_at = t0().plus_seconds(s - 3600.0);
        }
        e
    });
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(
        stuck[0].ts,
        t0().plus_seconds(600.0 - 3600.0),
        "ts on the emitter's clock"
    );
    assert!(of_rule(&lines, "target_stale").is_empty());
}

#[test]
fn reboot_restarts_the_idle_timer_and_is_no_delta() {
    let mut en = engine("");
    let mut lines = drive(&mut en, 0, 450, idle_env);
    lines.extend(drive(&mut en, 465, 1050, |s| {
        let mut e = idle_env(s);
        e.boot_id = Some("boot-b".into());
        e.monotonic_ms = Some((s * 1000.0) as u64 - 400_000);
        e
    }));
    assert!(of_rule(&lines, "stuck_agent").is_empty());
}

#[test]
fn a_frozen_emitter_neither_resolves_a_stuck_agent_nor_fires_target_down() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 630, idle_env);
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1);
    let mut lines = Vec::new();
    for s in (645..=900).step_by(15) {
        let mut o = obs(idle_env(630.0));
        o.now = t0().plus_seconds(f64::from(s));
        lines.extend(en.observe(T, &o).into_lines());
    }
    assert!(of_rule(&lines, "stuck_agent").is_empty(), "{lines:?}");
    assert_eq!(of_rule(&lines, "target_stale").len(), 1);
    assert!(of_rule(&lines, "target_down").is_empty());
}

#[test]
fn missed_polls_do_not_count_towards_for() {
    let mut en = engine("");
    let mut lines = drive(&mut en, 0, 300, idle_env);
    // Down from 315 to 600: unknown, not idle.
    for s in (315..=600).step_by(15) {
        lines.extend(
            en.observe(
                T,
                &Observation::failed(t0().plus_seconds(f64::from(s)), "connection refused"),
            )
            .into_lines(),
        );
    }
    lines.extend(drive(&mut en, 615, 900, idle_env));
    // Held 300 s before the gap and 285 s after it: not yet 600.
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "the gap counted as idle"
    );
    // 300 s held before the gap (0..300); the first poll after it (615)
    // starts counting again, so 300 s more: it fires at 915.
    let more = drive(&mut en, 915, 960, idle_env);
    let stuck = of_rule(&more, "stuck_agent");
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].ts, t0().plus_seconds(915.0));
    assert_eq!(stuck[0].since, t0(), "since survives the gap");
}

#[test]
fn degraded_agents_section_neither_fires_nor_resolves() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 630, idle_env);
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1);
    let lines = drive(&mut en, 645, 2000, |s| {
        let mut e = env(s);
        e.mark_degraded("agents");
        e
    });
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "resolved during a degraded section"
    );
    assert_eq!(
        en.firing_alerts()
            .iter()
            .filter(|(a, _)| a.rule == "stuck_agent")
            .count(),
        1
    );
}

#[test]
fn duplicate_agents_never_fail_and_alert_once() {
    let mut en = engine("");
    let lines = drive(&mut en, 0, 700, |s| {
        let mut e = idle_env(s);
        let dup = e.agents[0].clone();
        e.agents.push(dup);
        let mut other = e.agents[0].clone();
        other.job_id = 8; // another job, same pid: a distinct agent
        e.agents.push(other);
        e
    });
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 2, "{stuck:?}");
    assert_ne!(stuck[0].key, stuck[1].key);
}

#[test]
fn keep_firing_for_damps_a_flapping_agent() {
    let mut en = engine("[stuck_agent]\nkeep_firing_for = \"2m\"\n");
    let mut lines = drive(&mut en, 0, 630, idle_env);
    // Busy for 30 s, idle for 30 s, over and over.
    lines.extend(drive(&mut en, 645, 1500, |s| {
        if (s as u64 / 30) % 2 == 0 {
            busy_env(s)
        } else {
            idle_env(s)
        }
    }));
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(stuck[0].event, AlertEvent::Firing);
}

#[test]
fn unknown_keys_in_an_envelope_are_ignored() {
    let mut en = engine("");
    let body = br#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","clk_tck":100,"future_key":{"x":1},
        "stages":[],"queue":null,"agents":[{"job_id":1,"pid":2,"cpu_ticks":1,"new_field":true,"agent":"a","run_id":null,
        "repo":null,"runtime_s":1,"model":null,"effort":null,"state":"S"}],"cost":null}"#;
    let ev = en.observe(T, &Observation::from_body(t0(), body));
    assert!(ev.emitted.is_empty(), "{:?}", ev.emitted);
    assert_eq!(ev.agents.len(), 1);
}

/// The idle time the outputs show is the one stuck_agent keeps (issue 11
/// item 3): it grows while the agent idles, is `None` on the first sample,
/// and is not made up when the rule is off.
#[test]
fn idle_seconds_in_the_view_come_from_stuck_agent() {
    let mut en = engine("");
    let first = en.observe(T, &obs(idle_env(0.0)));
    assert_eq!(first.agents[0].idle_s, None, "first sample: not known yet");
    en.observe(T, &obs(idle_env(15.0)));
    let third = en.observe(T, &obs(idle_env(30.0)));
    assert_eq!(third.agents[0].idle_s, Some(30.0));
    assert!(third.agents[0].cpu_fraction.is_some());
    // Busy: the timer is at 0.
    let busy = en.observe(T, &obs(busy_env(45.0)));
    assert_eq!(busy.agents[0].idle_s, Some(0.0));

    let mut off = engine("[stuck_agent]\nenabled = false\n");
    for s in [0.0, 15.0] {
        off.observe(T, &obs(idle_env(s)));
    }
    let ev = off.observe(T, &obs(idle_env(30.0)));
    assert_eq!(ev.agents[0].idle_s, None, "no owner, no idle time");
    assert!(
        ev.agents[0].cpu_fraction.is_some(),
        "the delta still gives a fraction"
    );
}

/// Idle timers survive a restart through the state file, by identity.
#[test]
fn idle_timers_are_saved_and_restored_with_the_state() {
    let mut en = engine("");
    for s in [0.0, 15.0, 30.0] {
        en.observe(T, &obs(idle_env(s)));
    }
    let saved = en.save();
    let mut again = engine("");
    again.restore(&saved).unwrap();
    let ev = again.observe(T, &obs(idle_env(45.0)));
    assert_eq!(ev.agents[0].idle_s, Some(45.0));
}

#[test]
fn per_agent_overrides_cpu_floor_and_for_by_agent_name() {
    // reviewer: floor 0.5% and 30m; everyone else: the defaults (2%, 10m).
    let mut en =
        engine("[stuck_agent]\nper_agent = { reviewer = { cpu_floor = 0.005, for = \"30m\" } }\n");
    // The idle agent uses 1% CPU: idle for the default floor, busy for the reviewer's.
    let one_percent = |s: f64, name: &str| {
        let mut e = env(s);
        // 100 ticks/s: one tick a second is 1% of a CPU.
        e.agents = vec![Agent {
            agent: Some(name.to_owned()),
            ..agent(600.0 + s, s as u64, 1000)
        }];
        e
    };
    let lines = drive(&mut en, 0, 2400, |s| one_percent(s, "reviewer"));
    assert!(of_rule(&lines, "stuck_agent").is_empty(), "{lines:?}");
    let mut en =
        engine("[stuck_agent]\nper_agent = { reviewer = { cpu_floor = 0.05, for = \"30m\" } }\n");
    let lines = drive(&mut en, 0, 1500, |s| one_percent(s, "reviewer"));
    assert!(
        of_rule(&lines, "stuck_agent").is_empty(),
        "30m not reached: {lines:?}"
    );
    let lines = drive(&mut en, 1515, 2100, |s| one_percent(s, "reviewer"));
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1, "{lines:?}");
    let mut en =
        engine("[stuck_agent]\nper_agent = { reviewer = { cpu_floor = 0.05, for = \"30m\" } }\n");
    let lines = drive(&mut en, 0, 900, |s| one_percent(s, "dev"));
    assert_eq!(
        of_rule(&lines, "stuck_agent").len(),
        1,
        "dev keeps the 10m default: {lines:?}"
    );
}
