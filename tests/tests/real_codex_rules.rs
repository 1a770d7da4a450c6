//! The watchdog's page-3 rules judging the real Codex CLI (pinned 0.171.0,
//! offline against the fake Responses API): a model call that never
//! returns fires `stuck_agent` with the "for a reply from" diagnosis; a
//! loop fires `agent_looping` and never `stuck_agent`. (Codex reports no
//! cost, so `run_cost` from telemetry has nothing to judge for it.)
//!
//! Needs `codex` on PATH or `$CODEX_BIN` (under `CI=true` a missing one
//! fails) and `cargo build -p emitter -p watchdog` first.

use std::time::{Duration, Instant};

use e2e::agent_cli::{CodexRun, OtlpExport, OtlpProtocol};
use e2e::agent_cli_lab::{firing_for, AgentLab};
use e2e::fake_model::{Script, ToolCall, Usage};
use e2e::fake_model_openai::FakeResponses;
use e2e::stack::Watchdog;
use e2e::{bins, tools};
use serde_json::json;

const RULES: &str = r#"
[rules.stuck_agent]
for = "5s"
min_runtime = "1s"

[rules.agent_looping]
max_repeats = 5
"#;

fn bin(name: &str) -> std::path::PathBuf {
    bins::locate(name).unwrap_or_else(|e| panic!("{e:#}"))
}

fn start(lab: &AgentLab) -> Watchdog {
    lab.watchdog(RULES).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn codex_hung_call_fires_stuck_agent_with_the_reply_diagnosis() {
    let Some(codex) = tools::codex() else { return };
    let lab = AgentLab::start(&bin("emitter"), &[]).unwrap_or_else(|e| panic!("{e:#}"));
    let wd = start(&lab);
    let model = FakeResponses::start(Script::Hang, Usage::default()).expect("fake model");
    let job = lab.add_job("hung").expect("job rows");
    let dir = lab.agent_dir("hung").expect("agent dir");
    let run = CodexRun::new(&codex, &dir, &model.base_url(), "Say hi.")
        .expect("run dirs")
        .with_otlp(
            OtlpExport::new(&lab.emitter.otlp_endpoint(), OtlpProtocol::Protobuf).job(job.job_id),
        );
    let _agent = lab
        .spawn(job, "codex", run.command().expect("config"), &dir)
        .expect("codex starts");
    let line = wd
        .wait_line(
            "stuck_agent for the hung codex",
            Duration::from_secs(30),
            firing_for(job.job_id, "stuck_agent"),
        )
        .unwrap_or_else(|e| panic!("{e:#}\nemitter: {}", lab.emitter.log_tail()));
    let remote = format!("127.0.0.1:{}", model.port());
    let d = line.diagnosis.clone().unwrap_or_default();
    assert!(
        d.contains("for a reply from") && d.contains(&remote),
        "diagnosis {d:?} should name {remote}"
    );
}

#[test]
fn codex_loop_fires_agent_looping_never_stuck_agent() {
    let Some(codex) = tools::codex() else { return };
    let lab = AgentLab::start(&bin("emitter"), &[]).unwrap_or_else(|e| panic!("{e:#}"));
    let wd = start(&lab);
    let call = ToolCall {
        name: "exec_command".into(),
        input: json!({"cmd": "ls"}),
    };
    let model = FakeResponses::start(Script::SameTool(call), Usage::default()).expect("fake model");
    let job = lab.add_job("looper").expect("job rows");
    let dir = lab.agent_dir("looper").expect("agent dir");
    let run = CodexRun::new(&codex, &dir, &model.base_url(), "Keep listing.")
        .expect("run dirs")
        .with_otlp(OtlpExport::new(
            &lab.emitter.otlp_endpoint(),
            OtlpProtocol::Json,
        ));
    let _agent = lab
        .spawn(job, "codex", run.command().expect("config"), &dir)
        .expect("codex starts");
    let line = wd
        .wait_line(
            "agent_looping for codex",
            Duration::from_secs(30),
            firing_for(job.job_id, "agent_looping"),
        )
        .unwrap_or_else(|e| panic!("{e:#}\nemitter: {}", lab.emitter.log_tail()));
    assert!(line.summary.contains("exec_command"), "{}", line.summary);
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let stuck: Vec<_> = wd
        .lines()
        .into_iter()
        .filter(|l| l.rule == "stuck_agent")
        .collect();
    assert!(stuck.is_empty(), "a looping agent is not stuck: {stuck:?}");
}
