//! One watchdog watching two orchestrators ("monitor many hosts"): each
//! emitter has its own database and agents, and the job ids collide on
//! purpose. Only the idle agent of host-b is stuck, under `target=host-b`;
//! when host-a's emitter dies, `target_down` fires for host-a alone and
//! host-b's series and alerts carry on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::agents::AgentKind;
use e2e::lab::Lab;
use e2e::stack::{sample, Emitter, Watchdog, WatchdogOptions};
use e2e::{bins, net};
use shared_schema::AlertEvent;

#[test]
fn one_watchdog_two_hosts_alerts_stay_per_target() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let lab_a = Lab::start(&[AgentKind::Busy], None).unwrap();
    let lab_b = Lab::start(&[AgentKind::Idle], None).unwrap();
    assert_eq!(
        lab_a.agents[0].1.job_id, lab_b.agents[0].1.job_id,
        "same job id on both hosts"
    );
    let mut emitter_a = Emitter::start(&emitter_bin, &lab_a.db, lab_a.dir()).unwrap();
    let emitter_b = Emitter::start(&emitter_bin, &lab_b.db, lab_b.dir()).unwrap();
    let options = WatchdogOptions {
        extra: format!(
            "\n[[target]]\nname = \"host-b\"\nurl = \"{}\"\n",
            emitter_b.url()
        ),
        ..WatchdogOptions::default()
    };
    let watchdog = Watchdog::start(
        &watchdog_bin,
        lab_a.dir(),
        "host-a",
        &emitter_a.url(),
        &options,
        None,
    )
    .unwrap();

    let fired = watchdog
        .wait_line("stuck_agent on host-b", Duration::from_secs(60), |l| {
            l.rule == "stuck_agent" && l.event == AlertEvent::Firing
        })
        .unwrap();
    assert_eq!(fired.target, "host-b", "{fired:?}");
    assert!(fired.key.contains("|host-b|"), "{}", fired.key);
    assert_eq!(
        fired.labels.get("pid"),
        Some(lab_b.agents[0].0.pid().to_string().as_str())
    );

    let metrics = watchdog.scrape().unwrap();
    for host in ["host-a", "host-b"] {
        assert_eq!(
            sample(&metrics, "watchdog_target_up", &[("target", host)]),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "watchdog_agents_running", &[("target", host)]),
            Some(1.0),
            "{metrics}"
        );
    }
    assert_eq!(
        sample(
            &metrics,
            "watchdog_alerts_firing",
            &[("target", "host-b"), ("rule", "stuck_agent")]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            "watchdog_alerts_firing",
            &[("target", "host-a"), ("rule", "stuck_agent")]
        )
        .unwrap_or(0.0)
            == 0.0
    );

    // host-a's emitter dies: target_down (for = 5s) on host-a only.
    emitter_a.proc.kill().unwrap();
    let down = watchdog
        .wait_line("target_down for host-a", Duration::from_secs(30), |l| {
            l.rule == "target_down" && l.event == AlertEvent::Firing
        })
        .unwrap();
    assert_eq!(down.target, "host-a");
    let metrics = net::wait_for(
        "host-a down in the gauges",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let m = watchdog.scrape()?;
            match sample(&m, "watchdog_target_up", &[("target", "host-a")]) {
                Some(v) if v < 0.5 => Ok(m),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .unwrap();
    assert_eq!(
        sample(&metrics, "watchdog_target_up", &[("target", "host-b")]),
        Some(1.0),
        "{metrics}"
    );
    let lines = watchdog.lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.target == "host-b" && l.rule == "target_down"),
        "host-b was never down: {lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.key == fired.key && l.event == AlertEvent::Resolved),
        "host-b's stuck alert must not resolve because host-a went down: {lines:?}"
    );
}
