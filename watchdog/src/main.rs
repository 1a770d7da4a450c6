//! The `watchdog` binary: parses the command line, sets up logging on
//! stderr (stdout belongs to the alert log) and dispatches to the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use watchdog::config::{Config, Overrides};
use watchdog::dur::Dur;
use watchdog::engine::Engine;
use watchdog::rules::RuleSet;

/// Polls orchestrator emitters, applies rules, writes the alert log and serves gauges.
#[derive(Debug, Parser)]
#[command(name = "watchdog", version, about)]
#[deny(missing_docs)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[deny(missing_docs)]
enum Command {
    /// Poll targets, write alert lines to stdout (and --alert-log), serve /metrics.
    Run(RunArgs),
    /// Poll one target twice and exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Check(CheckArgs),
    /// Check an envelope (URL, FILE or - for stdin) against the contract.
    Validate(ValidateArgs),
    /// Feed --record files through the rules and print the alert lines.
    Replay(ReplayArgs),
    /// Report what a config (and a second one, against it) would have fired over --record files.
    Backtest(BacktestArgs),
}

#[derive(Debug, Args)]
#[deny(missing_docs)]
struct RunArgs {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Target to poll: URL or NAME=URL (the emitter's base URL or its /metrics); repeatable; replaces [[target]].
    #[arg(long, value_name = "URL | NAME=URL")]
    target: Vec<String>,
    /// Time between polls, e.g. 15s.
    #[arg(long, value_name = "DURATION")]
    interval: Option<Dur>,
    /// Time a poll may take, e.g. 10s.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<Dur>,
    /// Address of the metrics server (/metrics, /healthz).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Append alert lines to this file too.
    #[arg(long, value_name = "FILE")]
    alert_log: Option<PathBuf>,
    /// Append each polled envelope to this file (input of `replay` and `backtest`).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Rotate the --record file before it passes this size (e.g. 64MiB); no cap by default.
    #[arg(long, value_name = "SIZE")]
    record_max_bytes: Option<watchdog::record::ByteSize>,
    /// Rotated --record files kept (FILE.1 ... FILE.N; default 5).
    #[arg(long, value_name = "N")]
    record_keep: Option<u32>,
    /// Keep pending/firing alerts and baselines in this file across restarts.
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// Watch only shard I of N of the targets (Prometheus' hashmod of the target name), e.g. 0/3.
    #[arg(long, value_name = "I/N")]
    shard: Option<watchdog::shard::Shard>,
    /// TLS and basic auth of the metrics server (Prometheus exporter-toolkit format).
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Print the effective config as TOML (secrets never shown) and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Debug, Args)]
#[deny(missing_docs)]
struct CheckArgs {
    /// TOML config file (for [rules.*]).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The target: URL or NAME=URL.
    #[arg(long, value_name = "URL")]
    target: String,
    /// Time between the two polls.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    interval: Dur,
    /// Time a poll may take.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<Dur>,
}

#[derive(Debug, Args)]
#[deny(missing_docs)]
struct ValidateArgs {
    /// An http:// URL, a file, or - for stdin.
    input: String,
    /// Bearer token file, for an emitter that requires one.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Time the request may take.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    timeout: Dur,
}

#[derive(Debug, Args)]
#[deny(missing_docs)]
struct ReplayArgs {
    /// Files written by `run --record`, or patterns (`rec.jsonl*`); a file brings its rotated FILE.N along, oldest first.
    #[arg(required = true, value_name = "FILE")]
    file: Vec<PathBuf>,
    /// TOML config file (for [rules.*] and [notify] repeat_interval).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[deny(missing_docs)]
struct BacktestArgs {
    /// Files written by `run --record`, or patterns (`rec.jsonl*`); a file brings its rotated FILE.N along, oldest first.
    #[arg(required = true, value_name = "FILE")]
    file: Vec<PathBuf>,
    /// Config A: the rules in force.
    #[arg(long, value_name = "A.toml")]
    config: PathBuf,
    /// Config B, compared with A: the alerts it adds, removes, fires earlier or later.
    #[arg(long, value_name = "B.toml")]
    against: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Exit 1 when B adds alerts, removes some, or either or fires any at another time.
    #[arg(long, value_enum, requires = "against")]
    fail_on: Option<FailOnArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Aligned columns for a terminal.
    Text,
    /// One JSON object (docs/REFERENCE.md).
    Json,
    /// One self-contained HTML page with a timeline per rule.
    Html,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FailOnArg {
    /// B fires an alert A does not.
    Added,
    /// A fires an alert B does not.
    Removed,
    /// Added, removed, or a shared alert fired at another time.
    Any,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    // Log lines go through a queue that never waits for stderr's reader
    // (a stuck journald must not freeze the loop); plain stderr if the
    // writer thread cannot start.
    let stderr_log = watchdog::stderr::StderrLog::start().ok();
    let writer = match stderr_log.clone() {
        Some(log) => BoxMakeWriter::new(log),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("watchdog: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(dispatch(cli.command));
    if let Some(log) = stderr_log {
        // The last log lines ("stopped") must not die with the process.
        log.flush(std::time::Duration::from_secs(1));
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Prints a clap error (or `--help`/`--version`) and picks the exit code:
/// `check` speaks the monitoring-plugin convention, where a bad flag or
/// value is UNKNOWN (3), not CRITICAL (2, clap's default).
fn usage_error(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    if !err.use_stderr() {
        return ExitCode::SUCCESS; // --help, --version
    }
    let is_check = std::env::args_os()
        .skip(1)
        .find(|a| !a.to_string_lossy().starts_with('-'))
        .is_some_and(|a| a == "check");
    if is_check {
        ExitCode::from(watchdog::check::UNKNOWN as u8)
    } else {
        ExitCode::from(2)
    }
}

async fn dispatch(command: Command) -> i32 {
    match command {
        Command::Run(a) => run(a).await,
        Command::Check(a) => {
            let over = Overrides {
                config: a.config,
                targets: vec![a.target],
                timeout: a.timeout,
                ..Overrides::default()
            };
            watchdog::check::check(over, a.interval.0).await
        }
        Command::Validate(a) => {
            let token = match a
                .token_file
                .as_deref()
                .map(edges::token_file::read)
                .transpose()
            {
                Ok(t) => t,
                Err(e) => {
                    let _ = watchdog::validate_cmd::print(&format!(
                        "$: cannot read the token file: {e}\n"
                    ));
                    return 1;
                }
            };
            watchdog::validate_cmd::validate(&a.input, token, a.timeout.0).await
        }
        Command::Replay(a) => replay(a),
        Command::Backtest(a) => backtest(a),
    }
}

async fn run(a: RunArgs) -> i32 {
    let over = Overrides {
        config: a.config,
        targets: a.target,
        interval: a.interval,
        timeout: a.timeout,
        listen: a.listen,
        alert_log: a.alert_log,
        state_file: a.state_file,
        record: a.record,
        record_max_bytes: a.record_max_bytes,
        record_keep: a.record_keep,
        shard: a.shard,
        web_config_file: a.web_config_file,
    };
    if a.print_config {
        return match Config::load(&over) {
            // A closed or full stdout is exit 1, never a panic.
            Ok(c) => match watchdog::stdout::print_all(&c.to_toml()) {
                Ok(()) => 0,
                Err(e) => {
                    watchdog::stdout::note_unwritable(&e);
                    1
                }
            },
            Err(e) => {
                eprintln!("watchdog: {e}");
                2
            }
        };
    }
    match serve(over).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("watchdog: {e:#}");
            if e.downcast_ref::<watchdog::config::ConfigError>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// Loads the config, binds the metrics listener and wires the signals
/// into [`watchdog::run::run`]: SIGHUP reloads, SIGTERM/SIGINT stop.
async fn serve(over: Overrides) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use tokio::signal::unix::{signal, SignalKind};
    let config = Config::load(&over)?;
    watchdog::run::check(&config)?;
    // Past RLIMIT_FSIZE a write must fail (EFBIG, handled like a full disk),
    // not kill the process: a handler replaces SIGXFSZ's default action.
    let _xfsz =
        signal(SignalKind::from_raw(libc::SIGXFSZ)).context("installing the SIGXFSZ handler")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the metrics server to {}", config.listen))?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A reload already queued covers this SIGHUP too.
            if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = reload_tx.try_send(())
            {
                break;
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
    };
    watchdog::run::run(over, config, listener, reload_rx, shutdown).await
}

fn replay(a: ReplayArgs) -> i32 {
    let mut config = match Config::load(&Overrides {
        config: a.config,
        ..Overrides::default()
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("watchdog: {e}");
            return 2;
        }
    };
    let files = match watchdog::replay::inputs(&a.file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("watchdog: {e}");
            return 1;
        }
    };
    let rules = std::mem::replace(&mut config.rules, RuleSet::defaults());
    let mut engine = Engine::new(rules, config.repeat_interval());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match watchdog::replay::replay_files(&files, &mut engine, &mut out) {
        Ok(stats) => {
            let _ = out.flush();
            tracing::info!(
                files = files.len(),
                records = stats.records,
                skipped = stats.skipped,
                alerts = stats.alerts,
                "replayed"
            );
            0
        }
        Err((path, e)) => {
            eprintln!("watchdog: replay of {} failed: {e}", path.display());
            1
        }
    }
}

/// Exit 0, or 1 with `--fail-on` when such a difference exists; 2 for a
/// usage or config error and for input that cannot be read (1 is taken).
fn backtest(a: BacktestArgs) -> i32 {
    use watchdog::backtest::{self, FailOn, Side};
    let side = |path: &PathBuf| -> Result<Side, String> {
        let config = Config::load(&Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        })
        .map_err(|e| e.to_string())?;
        let repeat_interval = config.repeat_interval();
        Ok(Side {
            name: path.display().to_string(),
            rules: config.rules,
            repeat_interval,
        })
    };
    let sides = side(&a.config).and_then(|s| Ok((s, a.against.as_ref().map(side).transpose()?)));
    let (side_a, side_b) = match sides {
        Ok(s) => s,
        Err(e) => {
            eprintln!("watchdog: {e}");
            return 2;
        }
    };
    let files = match watchdog::replay::inputs(&a.file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("watchdog: {e}");
            return 2;
        }
    };
    let report = match backtest::backtest(&files, side_a, side_b) {
        Ok(r) => r,
        Err((path, e)) => {
            eprintln!("watchdog: cannot read {}: {e}", path.display());
            return 2;
        }
    };
    let text = match a.format {
        Format::Text => backtest::text::render(&report),
        Format::Json => backtest::json::render(&report),
        Format::Html => backtest::html::render(&report),
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("watchdog: cannot write the report: {e}");
        return 2;
    }
    tracing::info!(
        files = files.len(),
        records = report.replayed.records,
        skipped = report.replayed.skipped,
        "backtested"
    );
    let fail_on = a.fail_on.map(|f| match f {
        FailOnArg::Added => FailOn::Added,
        FailOnArg::Removed => FailOn::Removed,
        FailOnArg::Any => FailOn::Any,
    });
    i32::from(fail_on.is_some_and(|f| report.fails_on(f)))
}

/// One glibc malloc arena instead of one per thread that ever allocated:
/// the runtime's workers and blocking threads each got their own, and at
/// 100 targets x 100 agents the spare arenas held ~1.6 MiB of the 23 MiB
/// resident (`cargo bench -p watchdog --bench rss`, docs/PERFORMANCE.md).
/// The evaluation is one task, so the shared arena is not contended.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
