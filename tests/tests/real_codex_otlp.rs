//! The real Codex CLI (pinned 0.171.0) offline against the fake OpenAI
//! Responses API, exporting to the emitter's OTLP receiver: `activity`
//! equals the usage of its own `--json` `turn.completed` event, a loop
//! climbs in `tool_repeat`, and a model call that never returns shows in
//! `net_wait`. Codex reports no cost: `cost_usd` stays null.
//!
//! Needs `codex` on PATH or `$CODEX_BIN` (under `CI=true` a missing one
//! fails) and `cargo build -p emitter -p watchdog` first.

use std::time::Duration;

use e2e::agent_cli::OtlpProtocol;
use e2e::agent_cli_lab::{activity_of, lab, num, Cli, Session, JSON_SOCKET, PROTOBUF_JOB};
use e2e::fake_model::{Script, ToolCall, Usage};
use e2e::fake_model_openai::FakeResponses;
use e2e::tools;
use serde_json::Value;

fn activity_equals_the_turn_usage(protocol: OtlpProtocol, with_job_id: bool) {
    let Some(codex) = tools::codex() else { return };
    let lab = lab();
    let model = FakeResponses::start(
        Script::Tools {
            calls: vec![
                ToolCall::exec("ls"),
                ToolCall::exec("echo hello"),
                ToolCall::exec("cat /etc/hostname"),
            ],
            then: "Done.".into(),
        },
        Usage::default(),
    )
    .expect("fake model");
    let mut agent = lab
        .start_agent(
            Cli::Codex(&codex),
            "codex",
            &model.base_url(),
            "List, echo, read.",
            (protocol, with_job_id),
        )
        .expect("codex starts");
    let job = agent.job;
    let out = agent
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let usage = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("type").and_then(Value::as_str) == Some("turn.completed"))
        .and_then(|v| v.get("usage").cloned())
        .unwrap_or_else(|| panic!("no turn.completed in codex's output: {out}"));
    let activity = lab
        .emitter
        .wait_api_requests(job.job_id, 4)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    assert_eq!(
        activity.get("service").and_then(Value::as_str),
        Some("codex_exec")
    );
    assert_eq!(int(&activity, "input_tokens"), int(&usage, "input_tokens"));
    assert_eq!(
        int(&activity, "output_tokens"),
        int(&usage, "output_tokens")
    );
    assert_eq!(
        int(&activity, "cache_read_tokens"),
        int(&usage, "cached_input_tokens")
    );
    assert_eq!(int(&activity, "input_tokens"), Some(4800));
    assert!(
        activity.get("cost_usd").is_some_and(Value::is_null),
        "{activity}"
    );
    assert_eq!(int(&activity, "tool_calls"), Some(3), "{activity}");
    assert_eq!(int(&activity, "tool_repeat"), Some(1), "{activity}");
    assert_eq!(
        activity.get("last_tool").and_then(Value::as_str),
        Some("exec_command")
    );
}

#[test]
fn codex_protobuf_with_job_id() {
    activity_equals_the_turn_usage(OtlpProtocol::Protobuf, true);
}

#[test]
fn codex_json_attributed_by_socket() {
    activity_equals_the_turn_usage(OtlpProtocol::Json, false);
}

#[test]
fn codex_tool_repeat_climbs_for_a_loop() {
    let Some(codex) = tools::codex() else { return };
    let lab = lab();
    let (_model, agent) = lab
        .session(Cli::Codex(&codex), Session::Looping, PROTOBUF_JOB)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut seen: Vec<u64> = Vec::new();
    lab.emitter
        .wait_agent(
            agent.job.job_id,
            "tool_repeat to climb past 10",
            Duration::from_secs(30),
            Duration::from_millis(300),
            |row| {
                let a = activity_of(agent.job.job_id, row)?;
                let repeat = a.get("tool_repeat").and_then(Value::as_u64).unwrap_or(0);
                if seen.last() != Some(&repeat) {
                    seen.push(repeat);
                }
                (repeat >= 10)
                    .then_some(())
                    .ok_or(format!("tool_repeat {repeat}: {a}"))
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
}

#[test]
fn codex_hung_model_call_shows_in_net_wait() {
    let Some(codex) = tools::codex() else { return };
    let lab = lab();
    let (model, agent) = lab
        .session(Cli::Codex(&codex), Session::Hung, JSON_SOCKET)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let job = agent.job;
    let remote = format!("127.0.0.1:{}", model.port());
    let first = lab
        .emitter
        .wait_net_wait(job.job_id, &remote, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let s1 = num(&first, "/sent_ago_s").expect("sent_ago_s");
    lab.emitter
        .wait_sent_ago_grows(job.job_id, s1)
        .unwrap_or_else(|e| panic!("{e:#}"));
}
