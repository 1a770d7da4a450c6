//! A real Prometheus scraping the real watchdog every second, with the
//! shipped alerting rules loaded: its query API sees the busy agent's CPU
//! fraction high, the idle one's at 0, `stuck_agent` firing once, and the
//! shipped `WatchdogAlertsFiring` rule firing for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use e2e::agents::AgentKind;
use e2e::ext::{self, query};
use e2e::lab::Lab;
use e2e::stack::{Emitter, Watchdog, WatchdogOptions};
use e2e::{bins, net, tools};

#[test]
fn prometheus_sees_cpu_fractions_and_the_stuck_alert() {
    let Some(prom_bin) = tools::require("prometheus", "apt-get install prometheus") else {
        return;
    };
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let lab = Lab::start(&[AgentKind::Busy, AgentKind::Idle], None).unwrap();
    let emitter = Emitter::start(&emitter_bin, &lab.db, lab.dir()).unwrap();
    let watchdog = Watchdog::start(
        &watchdog_bin,
        lab.dir(),
        "e2e",
        &emitter.url(),
        &WatchdogOptions::default(),
        None,
    )
    .unwrap();

    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/watchdog-rules.yml");
    let rules = rules.canonicalize().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules:?}\n\
         scrape_configs:\n  - job_name: watchdog\n    static_configs:\n      - targets: [\"{}\"]\n",
        watchdog.addr
    );
    let prom = ext::prometheus(&prom_bin, &config).unwrap();
    let ctx = |what: &str| format!("{what}\nprometheus log:\n{}", prom.log_tail());

    let (_, busy) = lab.agent(AgentKind::Busy);
    let (_, idle) = lab.agent(AgentKind::Idle);
    net::wait_for(
        "up{job=\"watchdog\"} == 1",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || match query(&prom, "up{job=\"watchdog\"}")?.as_slice() {
            [(_, v)] if *v == 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", ctx("scrape")));

    let busy_q = format!(
        "watchdog_agent_cpu_fraction{{target=\"e2e\",job_id=\"{}\"}}",
        busy.job_id
    );
    let busy_cpu = net::wait_for(
        "the busy agent's CPU fraction > 0.05",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || match query(&prom, &busy_q)?.as_slice() {
            [(labels, v)] if *v > 0.05 => Ok((labels.clone(), *v)),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", ctx("busy")));
    assert_eq!(busy_cpu.0["agent"], "busy");
    assert_eq!(busy_cpu.0["run_id"], busy.run_id.to_string());
    assert!(
        busy_cpu.1 <= 1.5,
        "one shell loop uses at most one core: {}",
        busy_cpu.1
    );

    let firing_q = "watchdog_alerts_firing{target=\"e2e\",rule=\"stuck_agent\"}";
    net::wait_for(
        "watchdog_alerts_firing{rule=\"stuck_agent\"} == 1",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || match query(&prom, firing_q)?.as_slice() {
            [(labels, v)] if *v == 1.0 => {
                assert_eq!(labels["severity"], "warning");
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", ctx("alerts firing")));

    let idle_q = format!(
        "watchdog_agent_cpu_fraction{{target=\"e2e\",job_id=\"{}\"}}",
        idle.job_id
    );
    match query(&prom, &idle_q).unwrap().as_slice() {
        [(labels, v)] => {
            assert_eq!(labels["agent"], "idle");
            assert!(*v < 0.02, "idle agent's CPU fraction {v}");
        }
        other => panic!("idle agent: {other:?}"),
    }
    let busy_now = query(&prom, &busy_q).unwrap();
    assert!(busy_now.iter().all(|(_, v)| *v > 0.05), "{busy_now:?}");
    let idle_s = query(
        &prom,
        &format!("watchdog_agent_idle_seconds{{job_id=\"{}\"}}", idle.job_id),
    )
    .unwrap();
    // Idle for the rule's `for` (5 s) when it fired, less the slack a hold
    // is allowed for a poll's latency (`watchdog_core::alerts::FOR_SLACK_S`):
    // five 1 s polls can add up to 4.999999999999999.
    assert!(idle_s.iter().any(|(_, v)| *v >= 4.9), "{idle_s:?}");

    // The shipped rules are loaded and WatchdogAlertsFiring fires for it.
    net::wait_for(
        "WatchdogAlertsFiring{rule=\"stuck_agent\"} firing",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let body = net::get_json(&format!("{}/api/v1/alerts", prom.base()))?;
            let alerts = body["data"]["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            alerts
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "WatchdogAlertsFiring"
                        && a["labels"]["rule"] == "stuck_agent"
                        && a["state"] == "firing"
                })
                .map(|_| ())
                .ok_or_else(|| format!("{alerts:?}"))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", ctx("rule alert")));
    let rules = net::get_json(&format!("{}/api/v1/rules", prom.base())).unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert!(groups.len() >= 2, "{rules}");
    for g in groups {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule {} is unhealthy: {r}", r["name"]);
        }
    }
}
