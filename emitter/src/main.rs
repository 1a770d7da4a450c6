//! The `emitter` binary: parse the command line, set up logging, bind, serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edges::dur::Dur;
use edges::rate::Rate;
use emitter::sections::stages::DEFAULT_TERMINAL;
use emitter::{killswitch, ServeOptions, Snapshotter, SqliteSource};

/// Serves an AI-agent orchestrator's metrics envelope from its SQLite state and /proc.
#[derive(Debug, Parser)]
#[command(version)]
#[deny(missing_docs)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[deny(missing_docs)]
enum Command {
    /// Serve the envelope on GET /metrics.
    Serve(ServeArgs),
    /// Print one envelope on stdout, then exit.
    Snapshot(SourceArgs),
}

#[derive(Debug, clap::Args)]
#[deny(missing_docs)]
struct SourceArgs {
    /// The orchestrator's SQLite database (opened read-only, never created).
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// A stage left out of `stages`; repeat it to list several (replaces done, cancelled).
    #[arg(long = "terminal-stage", value_name = "STAGE")]
    terminal_stages: Vec<String>,
}

#[derive(Debug, clap::Args)]
#[deny(missing_docs)]
struct ServeArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// File holding the bearer token that requests must present (surrounding whitespace is not part of it).
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    /// Requests of clients holding the token, e.g. 10/s (or N/min, N/h); past it, 429.
    /// Clients without the token get a quarter of it, apart.
    #[arg(long, value_name = "N/s")]
    rate_limit: Option<Rate>,
    /// Serve a snapshot again while it is younger than this, e.g. 250ms (default: never).
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    reuse_snapshot: Dur,
    /// After SIGTERM, requests in flight may finish within this; then the process exits anyway.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    shutdown_grace: Dur,
    /// Receive the agents' OpenTelemetry over OTLP/HTTP here, e.g. 127.0.0.1:4318 (off unless given).
    #[arg(long, value_name = "ADDR")]
    otlp_listen: Option<SocketAddr>,
    /// TLS and basic auth (Prometheus exporter-toolkit format); basic auth admits like the token.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
}

impl SourceArgs {
    fn source(&self) -> SqliteSource {
        let terminal = if self.terminal_stages.is_empty() {
            DEFAULT_TERMINAL.iter().map(|s| (*s).to_owned()).collect()
        } else {
            self.terminal_stages.clone()
        };
        if !self.db.exists() {
            tracing::warn!(
                db = %self.db.display(),
                "database file does not exist; it will not be created, sections stay degraded until it appears"
            );
        }
        SqliteSource::new(&self.db).with_terminal_stages(terminal)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Snapshot(args) => snapshot(&args),
        Command::Serve(args) => serve(args),
    }
}

fn snapshot(args: &SourceArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let body = if killswitch::enabled() {
        Snapshotter::new(Arc::new(args.source()), "/proc")
            .body()
            .to_vec()
    } else {
        shared_schema::disabled_body().into_bytes()
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&body)
        .context("writing the envelope to stdout")?;
    out.write_all(b"\n")
        .context("writing the envelope to stdout")?;
    out.flush().context("writing the envelope to stdout")
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(path) => Some(edges::token_file::read(path)?),
        None => None,
    };
    let web_config = args
        .web_config_file
        .as_deref()
        .map(edges::web_config::WebConfig::load)
        .transpose()?;
    let options = ServeOptions {
        token,
        web_config,
        rate_limit: args.rate_limit,
        reuse_snapshot: args.reuse_snapshot.0,
        // The whole exit fits in the grace: draining, then leaving blocking tasks behind.
        shutdown_grace: args
            .shutdown_grace
            .0
            .saturating_sub(emitter::RUNTIME_SHUTDOWN),
        ..ServeOptions::default()
    };
    let sqlite = Arc::new(args.source.source());
    let db_path = sqlite.path().to_owned();
    let mut source: Arc<dyn emitter::Source> = sqlite;
    let otlp = match args.otlp_listen {
        Some(addr) => {
            let (receiver, wrapped) = start_otlp(addr, options.token.clone(), source)?;
            source = wrapped;
            Some(receiver)
        }
        None => None,
    };
    let served = emitter::run(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let local = listener.local_addr().context("reading the bound address")?;
        tracing::info!(
            listen = %local,
            db = %db_path.display(),
            auth = options.token.is_some(),
            tls = options.web_config.as_ref().is_some_and(edges::web_config::WebConfig::is_tls),
            basic_auth = options.web_config.as_ref().is_some_and(edges::web_config::WebConfig::has_users),
            rate_limit = %options.rate_limit.map_or_else(|| "none".to_owned(), |r| r.to_string()),
            kill_switch_on = !killswitch::enabled(),
            "serving GET /metrics and GET /agents/{{job_id}}"
        );
        let basic = options.web_config.as_ref().is_some_and(edges::web_config::WebConfig::has_users);
        if !local.ip().is_loopback() && options.token.is_none() && !basic {
            tracing::warn!(listen = %local, "listening beyond loopback without --token-file: anyone who can reach it can read the envelope");
        }
        if let Err(err) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %err, "could not notify the service manager");
        }
        emitter::serve(listener, source, options, shutdown_signal()).await?;
        anyhow::Ok(())
    })
    .context("starting the async runtime")?;
    if let Some(otlp) = otlp {
        if let Err(err) = otlp.stop() {
            tracing::warn!(error = %err, "the OTLP receiver ended with an error");
        }
    }
    served
}

/// Binds and starts the OTLP receiver; the source whose agents carry its activity.
fn start_otlp(
    addr: SocketAddr,
    token: Option<String>,
    source: Arc<dyn emitter::Source>,
) -> anyhow::Result<(emitter::otlp::Running, Arc<dyn emitter::Source>)> {
    use emitter::otlp::{OtlpOptions, Telemetry, WithActivity};
    if !addr.ip().is_loopback() && token.is_none() {
        // A usage error, like a bad flag: clap's exit code.
        eprintln!(
            "error: --otlp-listen {addr} is beyond loopback: give --token-file so that senders must present the token"
        );
        std::process::exit(2);
    }
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding --otlp-listen {addr}"))?;
    let telemetry = Telemetry::new(Arc::clone(&source), "/proc");
    let auth = token.is_some();
    let options = OtlpOptions {
        token,
        ..OtlpOptions::default()
    };
    let running = emitter::otlp::spawn(listener, Arc::clone(&telemetry), options)
        .context("starting the OTLP receiver")?;
    tracing::info!(
        otlp_listen = %running.local_addr,
        auth,
        "receiving OTLP/HTTP on POST /v1/logs, /v1/metrics, /v1/traces (protobuf or JSON; no gRPC)"
    );
    Ok((running, Arc::new(WithActivity::new(source, telemetry))))
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(error = %err, "no SIGTERM handler; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "stopping"),
    }
}
