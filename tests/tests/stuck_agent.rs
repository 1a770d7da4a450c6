//! The real emitter and watchdog against a real SQLite file and real agent
//! processes, with short thresholds: the idle agent, and only it, gets a
//! `stuck_agent` firing line on stdout and in the alert log; waking it
//! (same pid, it starts working) resolves the alert with the same key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::agents::AgentKind;
use e2e::lab::Lab;
use e2e::stack::{sample, watch_lab, WatchdogOptions};
use shared_schema::{AlertEvent, Severity};

#[test]
fn only_the_idle_agent_is_stuck_and_waking_it_resolves_the_alert() {
    let lab = Lab::start(&AgentKind::ALL, None).unwrap();
    let options = WatchdogOptions::default(); // interval 1s, for 5s, min_runtime 2s
    let (_emitter, watchdog) = watch_lab(&lab, &options).unwrap();

    let (idle, idle_job) = lab.agent(AgentKind::Idle);
    let idle_job_id = idle_job.job_id.to_string();
    let is_idle = |l: &shared_schema::AlertLine| {
        l.rule == "stuck_agent" && l.labels.get("job_id") == Some(idle_job_id.as_str())
    };
    let fired = watchdog
        .wait_line(
            "stuck_agent firing for the idle agent",
            Duration::from_secs(60),
            |l| is_idle(l) && l.event == AlertEvent::Firing,
        )
        .unwrap();
    assert_eq!(fired.severity, Severity::Warning);
    assert_eq!(fired.target, "e2e");
    assert_eq!(fired.labels.get("agent"), Some("idle"));
    assert_eq!(
        fired.labels.get("pid"),
        Some(idle.pid().to_string().as_str())
    );
    assert_eq!(
        fired.labels.get("run_id"),
        Some(idle_job.run_id.to_string().as_str())
    );
    assert_eq!(fired.threshold, Some(0.02));
    let value = fired.value.expect("a CPU fraction in value");
    assert!(
        (0.0..0.02).contains(&value),
        "idle agent's CPU fraction {value}"
    );
    assert!(fired.key.starts_with("stuck_agent|e2e|"), "{}", fired.key);
    assert!(!fired.summary.is_empty());
    assert!(fired.since <= fired.ts);

    // Give the other agents the same chance to (wrongly) be stuck: wait
    // until the idle agent has been idle for `for` + 3 s by the gauges.
    let idle_pid = idle.pid().to_string();
    e2e::net::wait_for(
        "the idle agent's idle time to reach 8s",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let text = watchdog.scrape()?;
            let secs = sample(&text, "watchdog_agent_idle_seconds", &[("pid", &idle_pid)])
                .ok_or("no idle series")?;
            if secs >= 8.0 {
                Ok(())
            } else {
                Err(format!("idle for {secs}s"))
            }
        },
    )
    .unwrap();
    let metrics = watchdog.scrape().unwrap();
    for (agent, job) in &lab.agents {
        if agent.kind == AgentKind::Idle {
            continue;
        }
        let job_id = job.job_id.to_string();
        let wrong: Vec<_> = watchdog
            .lines()
            .into_iter()
            .filter(|l| l.rule == "stuck_agent" && l.labels.get("job_id") == Some(job_id.as_str()))
            .collect();
        assert!(
            wrong.is_empty(),
            "{} agent got stuck_agent lines: {wrong:?}",
            agent.kind.name()
        );
        let pid = agent.pid().to_string();
        let idle_s = sample(&metrics, "watchdog_agent_idle_seconds", &[("pid", &pid)]);
        assert!(
            idle_s.unwrap_or(0.0) < 5.0,
            "{} idle for {idle_s:?}s\n{metrics}",
            agent.kind.name()
        );
    }
    let firing = sample(
        &metrics,
        "watchdog_alerts_firing",
        &[("rule", "stuck_agent")],
    );
    assert_eq!(firing, Some(1.0), "{metrics}");

    // Wake it: same process, now busy.
    idle.wake().unwrap();
    let resolved = watchdog
        .wait_line(
            "stuck_agent resolved for the woken agent",
            Duration::from_secs(30),
            |l| is_idle(l) && l.event == AlertEvent::Resolved,
        )
        .unwrap();
    assert_eq!(resolved.key, fired.key, "one alert, one key");
    assert_eq!(resolved.labels, fired.labels);

    // The alert log file has the same two events (flushed before the next poll).
    let log = e2e::net::wait_for(
        "the alert log to hold the resolved line",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let lines = watchdog.alert_log_lines().map_err(|e| e.to_string())?;
            if lines
                .iter()
                .any(|l| l.key == fired.key && l.event == AlertEvent::Resolved)
            {
                Ok(lines)
            } else {
                Err(format!("{} lines", lines.len()))
            }
        },
    )
    .unwrap();
    let events: Vec<_> = log
        .iter()
        .filter(|l| l.key == fired.key)
        .map(|l| l.event)
        .collect();
    assert_eq!(
        events,
        vec![AlertEvent::Firing, AlertEvent::Resolved],
        "{log:?}"
    );
    assert!(
        log.iter()
            .all(|l| l.rule != "stuck_agent" || l.key == fired.key),
        "{log:?}"
    );
}
