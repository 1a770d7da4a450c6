//! The real Codex CLI (pinned 0.171.0) offline against the fake OpenAI
//! Responses API, exporting to the emitter's OTLP receiver: `activity`
//! equals the usage of its own `--json` `turn.completed` event, a loop
//! climbs in `tool_repeat`, and a model call that never returns shows in
//! `net_wait`. Codex reports no cost: `cost_usd` stays null.
//!
//! Needs `codex` on PATH or `$CODEX_BIN` (under `CI=true` a missing one
//! fails) and `cargo build -p emitter -p watchdog` first.

use std::time::Duration;

use e2e::agent_cli::{CodexRun, OtlpExport, OtlpProtocol};
use e2e::agent_cli_lab::{num, AgentLab};
use e2e::fake_model::{Script, ToolCall, Usage};
use e2e::fake_model_openai::FakeResponses;
use e2e::{bins, net, tools};
use serde_json::{json, Value};

fn lab() -> AgentLab {
    let emitter = bins::locate("emitter").unwrap_or_else(|e| panic!("{e:#}"));
    AgentLab::start(&emitter, &[]).unwrap_or_else(|e| panic!("{e:#}"))
}

fn exec(cmd: &str) -> ToolCall {
    ToolCall {
        name: "exec_command".into(),
        input: json!({ "cmd": cmd }),
    }
}

fn activity_equals_the_turn_usage(protocol: OtlpProtocol, with_job_id: bool) {
    let Some(codex) = tools::codex() else { return };
    let lab = lab();
    let model = FakeResponses::start(
        Script::Tools {
            calls: vec![exec("ls"), exec("echo hello"), exec("cat /etc/hostname")],
            then: "Done.".into(),
        },
        Usage::default(),
    )
    .expect("fake model");
    let job = lab.add_job("codex").expect("job rows");
    let dir = lab.agent_dir("codex").expect("agent dir");
    let mut otlp = OtlpExport::new(&lab.emitter.otlp_endpoint(), protocol);
    if with_job_id {
        otlp = otlp.job(job.job_id);
    }
    let run = CodexRun::new(&codex, &dir, &model.base_url(), "List, echo, read.")
        .expect("run dirs")
        .with_otlp(otlp);
    let mut agent = lab
        .spawn(job, "codex", run.command().expect("config"), &dir)
        .expect("codex starts");
    let out = agent
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let usage = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("type").and_then(Value::as_str) == Some("turn.completed"))
        .and_then(|v| v.get("usage").cloned())
        .unwrap_or_else(|| panic!("no turn.completed in codex's output: {out}"));
    let activity = net::wait_for(
        "activity with all 4 requests",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let a = lab.emitter.activity(job.job_id)?;
            match a.get("api_requests").and_then(Value::as_u64) {
                Some(4) => Ok(a),
                other => Err(format!("api_requests {other:?}: {a}")),
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nemitter: {}", lab.emitter.log_tail()));
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
    let model =
        FakeResponses::start(Script::SameTool(exec("ls")), Usage::default()).expect("fake model");
    let job = lab.add_job("looper").expect("job rows");
    let dir = lab.agent_dir("looper").expect("agent dir");
    let run = CodexRun::new(&codex, &dir, &model.base_url(), "Keep listing.")
        .expect("run dirs")
        .with_otlp(
            OtlpExport::new(&lab.emitter.otlp_endpoint(), OtlpProtocol::Protobuf).job(job.job_id),
        );
    let _agent = lab
        .spawn(job, "codex", run.command().expect("config"), &dir)
        .expect("codex starts");
    let mut seen: Vec<u64> = Vec::new();
    net::wait_for(
        "tool_repeat to climb past 10",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let a = lab.emitter.activity(job.job_id)?;
            let repeat = a.get("tool_repeat").and_then(Value::as_u64).unwrap_or(0);
            if seen.last() != Some(&repeat) {
                seen.push(repeat);
            }
            (repeat >= 10)
                .then_some(())
                .ok_or(format!("tool_repeat {repeat}: {a}"))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nemitter: {}", lab.emitter.log_tail()));
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
}

#[test]
fn codex_hung_model_call_shows_in_net_wait() {
    let Some(codex) = tools::codex() else { return };
    let lab = lab();
    let model = FakeResponses::start(Script::Hang, Usage::default()).expect("fake model");
    let job = lab.add_job("hung").expect("job rows");
    let dir = lab.agent_dir("hung").expect("agent dir");
    let run = CodexRun::new(&codex, &dir, &model.base_url(), "Say hi.")
        .expect("run dirs")
        .with_otlp(OtlpExport::new(
            &lab.emitter.otlp_endpoint(),
            OtlpProtocol::Json,
        ));
    let _agent = lab
        .spawn(job, "codex", run.command().expect("config"), &dir)
        .expect("codex starts");
    let remote = format!("127.0.0.1:{}", model.port());
    let first = net::wait_for(
        "net_wait naming the fake model",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let a = lab.emitter.agent(job.job_id)?;
            let nw = a.get("net_wait").cloned().unwrap_or(Value::Null);
            (nw.get("remote").and_then(Value::as_str) == Some(remote.as_str()))
                .then(|| nw.clone())
                .ok_or(format!("net_wait {nw}"))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nemitter: {}", lab.emitter.log_tail()));
    let s1 = num(&first, "/sent_ago_s").expect("sent_ago_s");
    net::wait_for(
        "sent_ago_s to grow by 2 s",
        Duration::from_secs(10),
        Duration::from_millis(250),
        || {
            let a = lab.emitter.agent(job.job_id)?;
            match num(&a, "/net_wait/sent_ago_s") {
                Some(s) if s >= s1 + 2.0 => Ok(()),
                other => Err(format!("sent_ago_s {other:?}")),
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
}
