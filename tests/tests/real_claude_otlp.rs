//! The real Claude Code (pinned 2.1.328) under the real emitter with its
//! OTLP receiver: what the CLI reports about itself becomes
//! `agents[i].activity` exactly (equal to its own `--output-format json`
//! result), a loop shows in `tool_repeat`, and a model call that never
//! returns shows in `net_wait` with the fake API's port. Over http/protobuf
//! and http/json, with `orchestrator.job_id` and without it (attribution
//! by the loopback socket).
//!
//! Needs `claude` on PATH or `$CLAUDE_BIN` (under `CI=true` a missing one
//! fails) and `cargo build -p emitter -p watchdog` first.

use std::time::Duration;

use e2e::agent_cli::OtlpProtocol;
use e2e::agent_cli_lab::{activity_of, lab, num, Cli, Session, PROTOBUF_SOCKET};
use e2e::fake_model::{FakeModel, Script};
use e2e::tools;
use serde_json::Value;

/// Three different Bash calls, then an answer: the CLI's result and the
/// emitter's `activity` must agree on every count.
fn activity_equals_the_cli_result(protocol: OtlpProtocol, with_job_id: bool) {
    let Some(claude) = tools::claude() else {
        return;
    };
    let lab = lab();
    let model = FakeModel::start(Script::bash(
        &["ls", "echo hello", "cat /etc/hostname"],
        "Listed, echoed and read.",
    ))
    .expect("fake model");
    let mut agent = lab
        .start_agent(
            Cli::Claude(&claude),
            "claude",
            &model.base_url(),
            "List, echo, read.",
            (protocol, with_job_id),
        )
        .expect("claude starts");
    let job = agent.job;
    let result = agent
        .claude_result(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(result.num_turns, Some(4), "{}", result.raw);
    let cost = result.total_cost_usd.expect("total_cost_usd");
    assert!(cost > 0.0);

    // The CLI flushed its telemetry before it exited; the envelope has it
    // by the next snapshot.
    let activity = lab
        .emitter
        .wait_api_requests(job.job_id, 4)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let int = |k: &str| activity.get(k).and_then(Value::as_u64);
    assert_eq!(activity.get("source").and_then(Value::as_str), Some("otlp"));
    assert_eq!(
        activity.get("service").and_then(Value::as_str),
        Some("claude-code")
    );
    assert_eq!(
        activity.get("session_id").and_then(Value::as_str),
        result.session_id.as_deref()
    );
    assert_eq!(int("input_tokens"), result.input_tokens, "{activity}");
    assert_eq!(int("output_tokens"), result.output_tokens, "{activity}");
    assert_eq!(
        int("cache_read_tokens"),
        result.cache_read_tokens,
        "{activity}"
    );
    assert_eq!(
        int("cache_creation_tokens"),
        result.cache_creation_tokens,
        "{activity}"
    );
    let got = num(&activity, "/cost_usd").expect("activity.cost_usd");
    assert!(
        (got - cost).abs() < 1e-9,
        "activity.cost_usd {got} != the CLI's total_cost_usd {cost}"
    );
    assert_eq!(int("api_errors"), Some(0));
    assert_eq!(int("tool_calls"), Some(3), "{activity}");
    assert_eq!(int("tool_failures"), Some(0), "{activity}");
    assert_eq!(
        int("tool_repeat"),
        Some(1),
        "three different calls: {activity}"
    );
    assert_eq!(
        activity.get("last_tool").and_then(Value::as_str),
        Some("Bash")
    );
    for key in [
        "first_seen_at",
        "last_seen_at",
        "last_api_at",
        "last_tool_at",
    ] {
        assert!(
            activity.get(key).and_then(Value::as_str).is_some(),
            "{key} missing: {activity}"
        );
    }
    // The run's database cost is still null: the envelope says so, and the
    // telemetry is the only live figure.
    let env = lab.emitter.envelope().expect("envelope");
    let running = env
        .pointer("/cost/running")
        .and_then(Value::as_array)
        .and_then(|r| {
            r.iter()
                .find(|x| x.get("job_id").and_then(Value::as_i64) == Some(job.job_id))
        })
        .cloned()
        .expect("cost.running has the job");
    assert!(
        running.get("cost_usd").is_some_and(Value::is_null),
        "{running}"
    );
}

#[test]
fn protobuf_with_job_id() {
    activity_equals_the_cli_result(OtlpProtocol::Protobuf, true);
}

#[test]
fn json_with_job_id() {
    activity_equals_the_cli_result(OtlpProtocol::Json, true);
}

#[test]
fn protobuf_attributed_by_socket() {
    activity_equals_the_cli_result(OtlpProtocol::Protobuf, false);
}

#[test]
fn json_attributed_by_socket() {
    activity_equals_the_cli_result(OtlpProtocol::Json, false);
}

/// The model asks for the same `ls` forever: `tool_repeat` climbs with
/// `tool_calls`, and `cost_usd` with it.
fn tool_repeat_climbs(protocol: OtlpProtocol, with_job_id: bool) {
    let Some(claude) = tools::claude() else {
        return;
    };
    let lab = lab();
    let (_model, agent) = lab
        .session(
            Cli::Claude(&claude),
            Session::Looping,
            (protocol, with_job_id),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let job = agent.job;
    let mut seen: Vec<(u64, u64, f64)> = Vec::new();
    lab.emitter
        .wait_agent(
            job.job_id,
            "tool_repeat to climb past 20",
            Duration::from_secs(30),
            Duration::from_millis(300),
            |row| {
                let a = activity_of(job.job_id, row)?;
                let repeat = a.get("tool_repeat").and_then(Value::as_u64).unwrap_or(0);
                let calls = a.get("tool_calls").and_then(Value::as_u64).unwrap_or(0);
                let cost = num(a, "/cost_usd").unwrap_or(0.0);
                if seen.last().map(|l| l.0) != Some(repeat) {
                    seen.push((repeat, calls, cost));
                }
                if repeat >= 20 {
                    Ok(())
                } else {
                    Err(format!("tool_repeat {repeat}: {a}"))
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        seen.len() >= 3,
        "tool_repeat should be seen climbing, not jump once: {seen:?}"
    );
    for w in seen.windows(2) {
        assert!(w[1].0 > w[0].0, "tool_repeat went down: {seen:?}");
        assert!(w[1].2 >= w[0].2, "cost went down: {seen:?}");
    }
    for (repeat, calls, _) in &seen {
        // Every call is the same one: the streak is every call so far.
        assert_eq!(repeat, calls, "{seen:?}");
    }
    assert!(seen.last().is_some_and(|l| l.2 > 0.0), "{seen:?}");
    let a = lab.emitter.activity(job.job_id).expect("activity");
    assert_eq!(a.get("last_tool").and_then(Value::as_str), Some("Bash"));
}

#[test]
fn tool_repeat_climbs_for_a_loop_protobuf_with_job_id() {
    tool_repeat_climbs(OtlpProtocol::Protobuf, true);
}

#[test]
fn tool_repeat_climbs_for_a_loop_json_by_socket() {
    tool_repeat_climbs(OtlpProtocol::Json, false);
}

/// The fake API reads the request and never answers: `net_wait` names its
/// port, `sent_ago_s` grows, nothing was received, and the up-close view
/// shows the same times on that socket.
#[test]
fn a_hung_model_call_shows_in_net_wait() {
    let Some(claude) = tools::claude() else {
        return;
    };
    let lab = lab();
    let (model, agent) = lab
        .session(Cli::Claude(&claude), Session::Hung, PROTOBUF_SOCKET)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let job = agent.job;
    let remote = format!("127.0.0.1:{}", model.port());
    let first = lab
        .emitter
        .wait_net_wait(job.job_id, &remote, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let s1 = num(&first, "/sent_ago_s").expect("sent_ago_s");
    assert!(
        first.get("received_ago_s").is_some_and(Value::is_null),
        "nothing was ever received on that connection: {first}"
    );
    assert_eq!(
        first.get("pid").and_then(Value::as_u64),
        Some(u64::from(agent.pid()))
    );
    let later = lab
        .emitter
        .wait_sent_ago_grows(job.job_id, s1)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        later.get("remote").and_then(Value::as_str),
        Some(remote.as_str())
    );
    // The hung request never completed: no api_request was reported.
    let requests = lab
        .emitter
        .agent(job.job_id)
        .ok()
        .and_then(|a| a.pointer("/activity/api_requests").and_then(Value::as_u64))
        .unwrap_or(0);
    assert_eq!(requests, 0);
    // The up-close view shows the same socket with its times.
    let view = lab.emitter.up_close(job.job_id).expect("GET /agents/{id}");
    let socket = view
        .get("processes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p.get("sockets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find(|s| s.get("remote").and_then(Value::as_str) == Some(remote.as_str()))
        .unwrap_or_else(|| panic!("no socket to {remote} in {view}"));
    assert_eq!(
        socket.get("state").and_then(Value::as_str),
        Some("ESTABLISHED")
    );
    assert!(
        num(&socket, "/sent_ago_s").is_some_and(|s| s >= s1),
        "{socket}"
    );
}
