//! `agent_api_errors` from the growth of `activity.api_errors` within `window`.

use shared_schema::{AlertEvent, Envelope};

use crate::rules::test_kit::{activity, agent, drive, engine, env, of_rule, run, t0};

/// Agent dev with `errors` failed requests so far, first heard of at `first` s.
fn erring(s: f64, errors: u64, first: Option<f64>) -> Envelope {
    let mut e = env(s);
    let mut a = agent(600.0 + s, (s * 30.0) as u64, 0);
    let mut act = activity(5, 2);
    act.api_errors = errors;
    act.first_seen_at = first.map(|f| t0().plus_seconds(f));
    a.activity = Some(act);
    e.agents = vec![a];
    e
}

#[test]
fn more_than_max_within_the_window_fires_and_a_calm_window_resolves() {
    let mut en = engine("");
    // One error every 30 s: 10 in 5m, not more than 10.
    let lines = drive(&mut en, 0.0, 900.0, 15.0, |s| {
        erring(s, (s / 30.0) as u64, None)
    });
    assert!(of_rule(&lines, "agent_api_errors").is_empty(), "{lines:?}");
    // A rate limit: 3 failed requests every 15 s from 915 s on.
    let lines = drive(&mut en, 915.0, 975.0, 15.0, |s| {
        erring(s, 30 + 3 * ((s - 900.0) / 15.0) as u64, None)
    });
    let l = of_rule(&lines, "agent_api_errors");
    assert_eq!(l.len(), 1, "{lines:?}");
    assert_eq!(l[0].event, AlertEvent::Firing);
    assert_eq!(l[0].key, "agent_api_errors|orch-1|job=7|run=42|pid=1234");
    assert!(
        l[0].summary.starts_with("agent dev (job 7, pid 1234) had ")
            && l[0]
                .summary
                .contains(" failed model requests in 5m (max 10)"),
        "{}",
        l[0].summary
    );
    assert!(l[0].value.unwrap() > 10.0);
    // The errors stop: once the burst is out of the window it resolves.
    let lines = drive(&mut en, 990.0, 1400.0, 15.0, |s| erring(s, 42, None));
    let l = of_rule(&lines, "agent_api_errors");
    assert_eq!(l.len(), 1, "{lines:?}");
    assert_eq!(l[0].event, AlertEvent::Resolved);
}

#[test]
fn errors_reported_before_the_first_poll_count_when_first_seen_in_the_window() {
    let mut en = engine("");
    // Heard of 60 s ago, 25 errors already: a burst at start-up.
    let lines = run(&mut en, erring(60.0, 25, Some(0.0)));
    assert_eq!(of_rule(&lines, "agent_api_errors").len(), 1, "{lines:?}");
    // Heard of an hour ago: its old errors say nothing about the last 5m.
    let mut en = engine("");
    let lines = run(&mut en, erring(3600.0, 25, Some(0.0)));
    assert!(of_rule(&lines, "agent_api_errors").is_empty(), "{lines:?}");
    let lines = run(&mut en, erring(3615.0, 25, Some(0.0)));
    assert!(of_rule(&lines, "agent_api_errors").is_empty(), "{lines:?}");
}

#[test]
fn a_count_that_went_down_restarts_and_per_agent_sets_max() {
    let mut en =
        engine("[agent_api_errors]\nper_agent = { dev = { max = 100, window = \"1m\" } }\n");
    let lines = drive(&mut en, 0.0, 120.0, 15.0, |s| {
        erring(s, 5 * (s / 15.0) as u64, None)
    });
    assert!(of_rule(&lines, "agent_api_errors").is_empty(), "{lines:?}");
    let mut en = engine("[agent_api_errors]\nmax = 3\n");
    drive(&mut en, 0.0, 30.0, 15.0, |s| erring(s, 100, None));
    // The emitter restarted: 100 -> 2 is no negative growth, and no growth at all.
    let lines = drive(&mut en, 45.0, 60.0, 15.0, |s| erring(s, 2, None));
    assert!(of_rule(&lines, "agent_api_errors").is_empty(), "{lines:?}");
}
