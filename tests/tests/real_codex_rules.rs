//! The watchdog's page-3 rules judging the real Codex CLI (pinned 0.171.0,
//! offline against the fake Responses API): a model call that never
//! returns fires `stuck_agent` with the "for a reply from" diagnosis; a
//! loop fires `agent_looping` and never `stuck_agent`. (Codex reports no
//! cost, so `run_cost` from telemetry has nothing to judge for it.)
//!
//! Needs `codex` on PATH or `$CODEX_BIN` (under `CI=true` a missing one
//! fails) and `cargo build -p emitter -p watchdog` first.

use std::time::Duration;

use e2e::agent_cli_lab::{firing_for, lab, Cli, Session, JSON_SOCKET, PROTOBUF_JOB};
use e2e::tools;

const RULES: &str = r#"
[rules.stuck_agent]
for = "5s"
min_runtime = "1s"

[rules.agent_looping]
max_repeats = 5
"#;

#[test]
fn codex_hung_call_fires_stuck_agent_with_the_reply_diagnosis() {
    let Some(codex) = tools::codex() else { return };
    let lab = lab();
    let wd = lab.watchdog(RULES).expect("watchdog");
    let (model, agent) = lab
        .session(Cli::Codex(&codex), Session::Hung, PROTOBUF_JOB)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let line = wd
        .wait_line(
            "stuck_agent for the hung codex",
            Duration::from_secs(30),
            firing_for(agent.job.job_id, "stuck_agent"),
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
    let lab = lab();
    let wd = lab.watchdog(RULES).expect("watchdog");
    let (_model, agent) = lab
        .session(Cli::Codex(&codex), Session::Looping, JSON_SOCKET)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let line = wd
        .wait_line(
            "agent_looping for codex",
            Duration::from_secs(30),
            firing_for(agent.job.job_id, "agent_looping"),
        )
        .unwrap_or_else(|e| panic!("{e:#}\nemitter: {}", lab.emitter.log_tail()));
    assert!(line.summary.contains("exec_command"), "{}", line.summary);
    let stuck = wd.rule_lines_after("stuck_agent", Duration::from_secs(8));
    assert!(stuck.is_empty(), "a looping agent is not stuck: {stuck:?}");
}
