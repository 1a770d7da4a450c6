//! A real Alertmanager receiving the real watchdog's alerts
//! (`[notify.alertmanager] url`): the stuck_agent alert arrives with its
//! labels, and leaves the active alerts once the agent is woken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::agents::AgentKind;
use e2e::ext;
use e2e::lab::Lab;
use e2e::stack::{watch_lab, WatchdogOptions};
use e2e::{net, tools};
use serde_json::Value;

const CONFIG: &str = r#"
route:
  receiver: blackhole
  group_by: [target, alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: blackhole
"#;

fn stuck_alerts(base: &str, job_id: &str) -> Result<Vec<Value>, String> {
    let body = net::get_json(&format!(
        "{base}/api/v2/alerts?active=true&silenced=true&inhibited=true"
    ))?;
    let alerts = body.as_array().cloned().unwrap_or_default();
    Ok(alerts
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "stuck_agent" && a["labels"]["job_id"] == job_id)
        .collect())
}

#[test]
fn alertmanager_gets_the_stuck_alert_with_its_labels_and_its_resolution() {
    let Some(am_bin) = tools::alertmanager() else {
        return;
    };
    let am = ext::alertmanager(&am_bin, CONFIG).unwrap();
    let lab = Lab::start(&[AgentKind::Busy, AgentKind::Idle], None).unwrap();
    let options = WatchdogOptions {
        alertmanager: Some(am.base()),
        ..WatchdogOptions::default()
    };
    let (_emitter, watchdog) = watch_lab(&lab, &options).unwrap();
    let ctx = |what: &str| {
        format!(
            "{what}\nalertmanager log:\n{}\nwatchdog log:\n{}",
            am.log_tail(),
            e2e::stack::tail(&watchdog.log)
        )
    };

    let (idle, idle_job) = lab.agent(AgentKind::Idle);
    let (_, busy_job) = lab.agent(AgentKind::Busy);
    let job_id = idle_job.job_id.to_string();
    let alert = net::wait_for(
        "stuck_agent in Alertmanager",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || match stuck_alerts(&am.base(), &job_id)?.as_slice() {
            [a] => Ok(a.clone()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", ctx("firing")));
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "stuck_agent", "{alert}");
    assert_eq!(labels["target"], "e2e", "{alert}");
    assert_eq!(labels["job_id"], job_id, "{alert}");
    assert_eq!(labels["pid"], idle.pid().to_string(), "{alert}");
    assert_eq!(labels["severity"], "warning", "{alert}");
    assert_eq!(labels["agent"], "idle", "{alert}");
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert!(
        alert["annotations"]
            .as_object()
            .is_some_and(|a| !a.is_empty()),
        "{alert}"
    );
    assert!(stuck_alerts(&am.base(), &busy_job.job_id.to_string())
        .unwrap()
        .is_empty());

    idle.wake().unwrap();
    net::wait_for(
        "stuck_agent to leave Alertmanager's active alerts",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let active: Vec<Value> = stuck_alerts(&am.base(), &job_id)?
                .into_iter()
                .filter(|a| {
                    let ends = a["endsAt"]
                        .as_str()
                        .and_then(|t| shared_schema::Timestamp::parse_lenient(t).ok());
                    let ended = ends.is_some_and(|t| t <= shared_schema::Timestamp::now());
                    a["status"]["state"] == "active" && !ended
                })
                .collect();
            if active.is_empty() {
                Ok(())
            } else {
                Err(format!("{active:?}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", ctx("resolved")));
    // The watchdog wrote the resolution too.
    assert!(watchdog
        .lines()
        .iter()
        .any(|l| l.rule == "stuck_agent" && l.event == shared_schema::AlertEvent::Resolved));
}
