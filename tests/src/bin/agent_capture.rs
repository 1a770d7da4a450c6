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
use e2e::agent_cli::{ClaudeResult, ClaudeRun, CodexRun, OtlpExport, OtlpProtocol};
use e2e::agent_cli_capture::OtlpSink;
use e2e::fake_model::{FakeModel, Script, ToolCall, Usage};
use e2e::fake_model_openai::FakeResponses;
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
enum AgentArg {
    /// Claude Code against the fake Messages API.
    Claude,
    /// Codex CLI against the fake Responses API.
    Codex,
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
    /// Which CLI.
    #[arg(long, value_enum, default_value = "claude")]
    agent: AgentArg,
    /// The tool the fake model asks for (`Bash` for Claude Code; Codex
    /// names its shell tool differently: see its README).
    #[arg(long)]
    tool: Option<String>,
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
    /// Codex: the provider's request_max_retries / stream_max_retries.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Codex: export traces too.
    #[arg(long)]
    traces: bool,
    /// Also write each model API request body as `model-request-NN.json`.
    #[arg(long)]
    dump_bodies: bool,
    /// More environment for the CLI, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
}

/// The fake model API in use, whichever the agent speaks.
enum Model {
    Anthropic(FakeModel),
    OpenAi(FakeResponses),
}

impl Model {
    fn requests(&self) -> Vec<e2e::fake_model_http::Recorded> {
        match self {
            Model::Anthropic(m) => m.requests(),
            Model::OpenAi(m) => m.requests(),
        }
    }
}

fn tool_call(tool: &str, command: &str) -> ToolCall {
    if tool == "Bash" {
        return ToolCall::bash(command);
    }
    // Codex's shell tools take the command as one string (`shell_command`,
    // `exec_command`: `cmd`) or as argv (`shell`).
    let input = match tool {
        "shell" => serde_json::json!({"command": ["bash", "-lc", command]}),
        "exec_command" => serde_json::json!({"cmd": command}),
        _ => serde_json::json!({"command": command}),
    };
    ToolCall {
        name: tool.to_owned(),
        input,
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tool = args.tool.clone().unwrap_or_else(|| match args.agent {
        AgentArg::Claude => "Bash".into(),
        AgentArg::Codex => "exec_command".into(),
    });
    let script = match args.script {
        ScriptArg::Answer => Script::Answer("The answer is 4.".into()),
        ScriptArg::Tools => Script::Tools {
            calls: vec![
                tool_call(&tool, "ls"),
                tool_call(&tool, "echo hello"),
                tool_call(&tool, "cat /etc/hostname"),
            ],
            then: "Done: listed, echoed, read.".into(),
        },
        ScriptArg::Loop => Script::SameTool(tool_call(&tool, "ls")),
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
    let mut env = Vec::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected KEY=VALUE"))?;
        env.push((k.to_owned(), v.to_owned()));
    }
    let prompt = "List the files here, then say hello.";
    let (model, mut cmd) = match args.agent {
        AgentArg::Claude => {
            let bin = tools::claude().context("no claude binary")?;
            let model = FakeModel::start(script)?;
            let mut run =
                ClaudeRun::new(&bin, dir.path(), &model.base_url(), prompt)?.with_otlp(otlp);
            run.env = env;
            (Model::Anthropic(model), run.command())
        }
        AgentArg::Codex => {
            let bin = tools::codex().context("no codex binary")?;
            let model = FakeResponses::start(script, Usage::default())?;
            let mut run =
                CodexRun::new(&bin, dir.path(), &model.base_url(), prompt)?.with_otlp(otlp);
            run.env = env;
            run.traces = args.traces;
            run.retries = args.retries;
            let cmd = run.command()?;
            std::fs::create_dir_all(&args.out)?;
            std::fs::write(args.out.join("config.toml"), run.config_toml())?;
            (Model::OpenAi(model), cmd)
        }
    };
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    cmd.stdout(Stdio::from(std::fs::File::create(&stdout_path)?))
        .stderr(Stdio::from(std::fs::File::create(&stderr_path)?));
    let started = Instant::now();
    let mut proc = Proc::spawn("agent", &mut cmd)?;
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
        "agent {} after {:.1}s",
        status.map_or("was stopped".to_owned(), |s| format!("exited with {s}")),
        started.elapsed().as_secs_f64()
    );
    // Let the last export land (the CLI flushes at exit).
    std::thread::sleep(Duration::from_millis(1500));
    drop(proc);
    let n = sink.write_fixtures(&args.out)?;
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stdout_name = match args.agent {
        AgentArg::Claude => "cli-stdout.json",
        AgentArg::Codex => "cli-stdout.jsonl",
    };
    std::fs::write(args.out.join(stdout_name), &stdout)?;
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    if !stderr.is_empty() {
        std::fs::write(args.out.join("cli-stderr.txt"), &stderr)?;
        eprintln!("stderr: {stderr}");
    }
    if let AgentArg::Claude = args.agent {
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
    }
    let model_log: Vec<_> = model
        .requests()
        .iter()
        .map(|r| {
            let body = r.json();
            let b = |k: &str| body.as_ref().and_then(|b| b.get(k)).cloned();
            let tools: Option<Vec<serde_json::Value>> = body
                .as_ref()
                .and_then(|b| b.get("tools"))
                .and_then(|t| t.as_array())
                .map(|t| {
                    t.iter()
                        .map(|x| x.get("name").or_else(|| x.get("type")).cloned().unwrap_or_default())
                        .collect()
                });
            serde_json::json!({
                "method": r.method, "uri": r.uri,
                "after_start_s": (r.at - started).as_secs_f64(),
                "headers": r.headers.iter()
                    .filter(|(k, _)| k != "x-api-key" && k != "authorization")
                    .map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>(),
                "model": b("model"),
                "stream": b("stream"),
                "max_tokens": b("max_tokens"),
                "messages": b("messages").or_else(|| b("input")).and_then(|m| m.as_array().map(Vec::len)),
                "tools": tools,
                "bytes": r.body.len(),
            })
        })
        .collect();
    if args.dump_bodies {
        for (i, r) in model.requests().iter().enumerate() {
            std::fs::write(args.out.join(format!("model-request-{i:02}.json")), &r.body)?;
        }
    }
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
