//! Measures what the real Claude Code's process tree does per interval
//! (CPU ticks, `rchar + wchar`, processes, `wchan`) while it is hung on a
//! model call that never returns, and while it works: the figures behind
//! `stuck_agent`'s `io_floor` default (docs/RELIABILITY.md, "Real agent
//! CLIs").
//!
//! ```sh
//! cargo run -p e2e --bin agent_idle_probe -- --scenario hang --seconds 120
//! cargo run -p e2e --bin agent_idle_probe -- --scenario loop --seconds 60
//! cargo run -p e2e --bin agent_idle_probe -- --scenario sleep-tool --seconds 60
//! cargo run -p e2e --bin agent_idle_probe -- --scenario slow-stream --seconds 60
//! ```

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use e2e::agent_cli::{ClaudeRun, OtlpExport, OtlpProtocol};
use e2e::agent_cli_capture::OtlpSink;
use e2e::agent_cli_procfs::{sample_tree, wchan, TreeSample};
use e2e::fake_model::{FakeModel, Script, ToolCall};
use e2e::procs::Proc;
use e2e::tools;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    /// The model call never returns.
    Hang,
    /// The same Bash `ls` forever.
    Loop,
    /// Bash `sleep 55`: the agent waits on an idle child.
    SleepTool,
    /// A long answer streamed one word every 3 s.
    SlowStream,
}

/// Samples a real Claude Code's process tree.
#[derive(Debug, Parser)]
#[command(name = "agent_idle_probe")]
#[deny(missing_docs)]
struct Args {
    /// What the fake model makes the agent do.
    #[arg(long, value_enum, default_value = "hang")]
    scenario: Scenario,
    /// How long to sample.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 2)]
    every: u64,
    /// Seconds to let the agent start before the first sample.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Run without the OTLP export (telemetry is on by default, as a
    /// launcher using the emitter's receiver runs it).
    #[arg(long)]
    no_otlp: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = tools::claude().context("no claude binary (set $CLAUDE_BIN)")?;
    let script = match args.scenario {
        Scenario::Hang => Script::Hang,
        Scenario::Loop => Script::SameTool(ToolCall::bash("ls")),
        Scenario::SleepTool => Script::Tools {
            calls: vec![ToolCall::bash("sleep 55")],
            then: "slept".into(),
        },
        Scenario::SlowStream => Script::SlowAnswer {
            pieces: (0..1000).map(|i| format!("word{i} ")).collect(),
            pause: Duration::from_secs(3),
        },
    };
    let model = FakeModel::start(script)?;
    let sink = OtlpSink::start()?;
    let dir = tempfile::tempdir()?;
    let mut run = ClaudeRun::new(&bin, dir.path(), &model.base_url(), "Do the task.")?;
    if !args.no_otlp {
        let mut otlp = OtlpExport::new(&sink.endpoint(), OtlpProtocol::Protobuf).job(1);
        // The default export intervals of a real deployment would be
        // longer; 5 s keeps the exporter's own I/O in the figures.
        otlp.interval_ms = 5000;
        run = run.with_otlp(otlp);
    }
    let mut cmd = run.command();
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let proc = Proc::spawn("claude", &mut cmd)?;
    let pid = proc.pid();
    std::thread::sleep(Duration::from_secs(args.warmup));
    let every = Duration::from_secs(args.every);
    let mut prev = sample_tree(pid).context("claude exited during warm-up")?;
    let first = prev;
    let start = Instant::now();
    let mut next = start + every;
    let mut rows: Vec<(u64, u64)> = Vec::new();
    println!(
        "# scenario {:?}, pid {pid}, every {}s, otlp {}",
        args.scenario, args.every, !args.no_otlp
    );
    println!("#   t_s  d_ticks  d_rchar  d_wchar  procs  wchan");
    while start.elapsed() < Duration::from_secs(args.seconds) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += every;
        let Some(s) = sample_tree(pid) else {
            println!("# claude exited");
            break;
        };
        let d = delta(prev, s);
        println!(
            "{:7.1}  {:7}  {:7}  {:7}  {:5}  {}",
            start.elapsed().as_secs_f64(),
            d.ticks,
            d.rchar,
            d.wchar,
            s.processes,
            wchan(pid).unwrap_or_else(|| "-".into())
        );
        rows.push((d.ticks, d.rchar + d.wchar));
        prev = s;
    }
    let total = delta(first, prev);
    let secs = start.elapsed().as_secs_f64();
    let clk = clk_tck();
    let mut ticks: Vec<u64> = rows.iter().map(|r| r.0).collect();
    let mut io: Vec<u64> = rows.iter().map(|r| r.1).collect();
    ticks.sort_unstable();
    io.sort_unstable();
    println!(
        "# {} samples over {secs:.0}s: ticks per {}s min/median/max {}/{}/{}; rchar+wchar per {}s min/median/max {}/{}/{}",
        rows.len(),
        args.every,
        pct(&ticks, 0.0),
        pct(&ticks, 0.5),
        pct(&ticks, 1.0),
        args.every,
        pct(&io, 0.0),
        pct(&io, 0.5),
        pct(&io, 1.0),
    );
    println!(
        "# whole window: CPU fraction {:.4} ({} ticks at {clk}/s), rchar+wchar {:.0} B/min ({} B), model requests {}",
        total.ticks as f64 / clk / secs,
        total.ticks,
        (total.rchar + total.wchar) as f64 * 60.0 / secs,
        total.rchar + total.wchar,
        model.message_requests().len()
    );
    Ok(())
}

fn delta(a: TreeSample, b: TreeSample) -> TreeSample {
    TreeSample {
        ticks: b.ticks.saturating_sub(a.ticks),
        rchar: b.rchar.saturating_sub(a.rchar),
        wchar: b.wchar.saturating_sub(a.wchar),
        processes: b.processes,
    }
}

fn pct(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}
