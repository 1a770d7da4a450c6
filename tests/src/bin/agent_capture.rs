//! Runs the real Claude Code once against the fake Messages API with its
//! telemetry going to a capture sink, and writes what it sent: the OTLP
//! POSTs as fixture files (`tests/fixtures/otlp/claude-code/...`) and a
//! log of every request it made to the model API.
//!
//! ```sh
//! cargo run -p e2e --bin agent_capture -- --script tools --protocol json \
//!     --out tests/fixtures/otlp/claude-code/tools-json
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use e2e::agent_cli::{ClaudeResult, ClaudeRun, OtlpExport, OtlpProtocol};
use e2e::agent_cli_capture::OtlpSink;
use e2e::fake_model::{FakeModel, Script, ToolCall};
use e2e::procs::Proc;
use e2e::tools;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScriptArg {
    /// One answer.
    Answer,
    /// Three different tool calls, then an answer.
    Tools,
    /// The same `ls` forever (stopped after --seconds).
    Loop,
    /// The model call never returns (stopped after --seconds).
    Hang,
    /// 429 on every call.
    RateLimit,
    /// 529 on every call.
    Overloaded,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Protobuf,
    Json,
}

/// Captures what the real Claude Code sends.
#[derive(Debug, Parser)]
#[command(name = "agent_capture")]
#[deny(missing_docs)]
struct Args {
    /// What the fake model does.
    #[arg(long, value_enum, default_value = "tools")]
    script: ScriptArg,
    /// OTLP wire format.
    #[arg(long, value_enum, default_value = "protobuf")]
    protocol: ProtocolArg,
    /// Where to write the fixture files.
    #[arg(long)]
    out: PathBuf,
    /// Stop the CLI after this many seconds if it has not exited.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// `orchestrator.job_id` to set in OTEL_RESOURCE_ATTRIBUTES (0: none).
    #[arg(long, default_value_t = 42)]
    job_id: i64,
    /// More environment for the CLI, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = tools::claude().context("no claude binary")?;
    let script = match args.script {
        ScriptArg::Answer => Script::Answer("The answer is 4.".into()),
        ScriptArg::Tools => Script::Tools {
            calls: vec![
                ToolCall::bash("ls"),
                ToolCall::bash("echo hello"),
                ToolCall::bash("cat /etc/hostname"),
            ],
            then: "Done: listed, echoed, read.".into(),
        },
        ScriptArg::Loop => Script::SameTool(ToolCall::bash("ls")),
        ScriptArg::Hang => Script::Hang,
        ScriptArg::RateLimit => Script::Error {
            status: 429,
            retry_after_s: Some(1),
        },
        ScriptArg::Overloaded => Script::Error {
            status: 529,
            retry_after_s: None,
        },
    };
    let model = FakeModel::start(script)?;
    let sink = OtlpSink::start()?;
    let dir = tempfile::tempdir()?;
    let protocol = match args.protocol {
        ProtocolArg::Protobuf => OtlpProtocol::Protobuf,
        ProtocolArg::Json => OtlpProtocol::Json,
    };
    let mut otlp = OtlpExport::new(&sink.endpoint(), protocol);
    if args.job_id != 0 {
        otlp = otlp.job(args.job_id);
    }
    let run = ClaudeRun::new(
        &bin,
        dir.path(),
        &model.base_url(),
        "List the files here, then say hello.",
    )?
    .with_otlp(otlp);
    let mut run = run;
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected KEY=VALUE"))?;
        run.env.push((k.to_owned(), v.to_owned()));
    }
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut cmd = run.command();
    cmd.stdout(Stdio::from(std::fs::File::create(&stdout_path)?))
        .stderr(Stdio::from(std::fs::File::create(&stderr_path)?));
    let started = Instant::now();
    let mut proc = Proc::spawn("claude", &mut cmd)?;
    let deadline = started + Duration::from_secs(args.seconds);
    let status = loop {
        if let Some(s) = proc.try_wait()? {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "claude {} after {:.1}s",
        status.map_or("was stopped".to_owned(), |s| format!("exited with {s}")),
        started.elapsed().as_secs_f64()
    );
    // Let the last export land (the CLI flushes at exit).
    std::thread::sleep(Duration::from_millis(1500));
    drop(proc);
    let n = sink.write_fixtures(&args.out)?;
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    std::fs::write(args.out.join("cli-stdout.json"), &stdout)?;
    eprintln!(
        "stderr: {}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    match ClaudeResult::parse(&stdout) {
        Ok(r) => eprintln!(
            "result: turns {:?} cost {:?} in {:?} out {:?} cache_read {:?} cache_creation {:?}",
            r.num_turns,
            r.total_cost_usd,
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_creation_tokens
        ),
        Err(e) => eprintln!("{e}"),
    }
    let model_log: Vec<_> = model
        .requests()
        .iter()
        .map(|r| {
            let body = r.json();
            serde_json::json!({
                "method": r.method, "uri": r.uri,
                "after_start_s": (r.at - started).as_secs_f64(),
                "headers": r.headers.iter().filter(|(k, _)| k != "x-api-key" && k != "authorization")
                    .map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>(),
                "model": body.as_ref().and_then(|b| b.get("model")).cloned(),
                "stream": body.as_ref().and_then(|b| b.get("stream")).cloned(),
                "max_tokens": body.as_ref().and_then(|b| b.get("max_tokens")).cloned(),
                "messages": body.as_ref().and_then(|b| b.get("messages")).and_then(|m| m.as_array()).map(Vec::len),
                "tools": body.as_ref().and_then(|b| b.get("tools")).and_then(|m| m.as_array()).map(Vec::len),
                "bytes": r.body.len(),
            })
        })
        .collect();
    std::fs::write(
        args.out.join("model-requests.json"),
        serde_json::to_string_pretty(&model_log)? + "\n",
    )?;
    eprintln!(
        "{n} OTLP posts, {} model API requests, written to {}",
        model_log.len(),
        args.out.display()
    );
    Ok(())
}
