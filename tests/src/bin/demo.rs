//! The one-command demo (`./deploy/demo.sh`): a simulated orchestrator with
//! real agent processes, the real emitter and watchdog, and the watchdog's
//! alert lines as they happen. The idle agent gets `stuck_agent`; the busy
//! one, the one doing I/O and the one whose child does the work do not.
//! Then the idle agent is woken and the alert resolves. Ctrl-C stops every
//! process the demo started.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use e2e::agent_cli::{ClaudeRun, OtlpExport, OtlpProtocol};
use e2e::agent_cli_demo::{self, DemoAgents};
use e2e::agent_cli_lab::OtlpEmitter;
use e2e::agents::AgentKind;
use e2e::fake_model::{FakeModel, Script as ModelScript, ToolCall};
use e2e::lab::Lab;
use e2e::orchestrator::Script;
use e2e::procs::Proc;
use e2e::stack::{self, Emitter, Watchdog, WatchdogOptions};
use e2e::statedb::RunningJob;
use e2e::{bins, ext, tools};
use shared_schema::{AlertEvent, AlertLine};

/// Runs a simulated orchestrator with real agent processes under the real
/// emitter and watchdog, and prints the watchdog's alerts as they happen.
#[derive(Debug, Parser)]
#[command(name = "demo", version)]
#[deny(missing_docs)]
struct Args {
    /// Exit on its own after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// The watchdog's poll interval.
    #[arg(long, default_value = "1s")]
    interval: String,
    /// How long an agent must be idle before stuck_agent fires.
    #[arg(long, default_value = "20s")]
    stuck_for: String,
    /// Agents younger than this are never stuck.
    #[arg(long, default_value = "5s")]
    min_runtime: String,
    /// Seconds after stuck_agent fires before the idle agent is woken.
    #[arg(long, default_value_t = 15)]
    wake_after: u64,
    /// Print only the concise line per alert event, not its JSON.
    #[arg(long)]
    no_json: bool,
    /// Keep the temporary directory (database, config, logs) on exit.
    #[arg(long)]
    keep: bool,
    /// Also start a real Prometheus (`prometheus` on PATH) scraping the
    /// watchdog every 2 s with deploy/prometheus/watchdog-rules.yml loaded.
    #[arg(long)]
    with_prometheus: bool,
    /// Also start a real Alertmanager (`prometheus-alertmanager` on PATH)
    /// and have the watchdog send its alerts there.
    #[arg(long)]
    with_alertmanager: bool,
    /// Also run the real Claude Code (`claude` on PATH or $CLAUDE_BIN)
    /// against the demo's own fake model API, looping on one tool call and
    /// reporting over OTLP.
    #[arg(long)]
    with_claude_code: bool,
    /// Internal: play the hung agent (send a model request to ADDR and
    /// wait for the reply forever).
    #[arg(long, hide = true, value_name = "ADDR")]
    hung_client: Option<String>,
}

const TARGET: &str = "demo";

fn main() {
    let args = Args::parse();
    if let Some(addr) = &args.hung_client {
        let _ = e2e::agent_cli_demo::hung_client(addr);
        return;
    }
    match run(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("demo: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Sets the returned flag on SIGINT or SIGTERM (instead of dying, so every
/// child is cleaned up).
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Install the handlers here, before any child is started.
    let (mut int, mut term) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        set.store(true, Ordering::SeqCst);
    });
    Ok(flag)
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let style = Style {
        color: std::io::stdout().is_terminal(),
    };
    let stop = stop_on_signals()?;
    let emitter_bin = bins::locate("emitter")?;
    let watchdog_bin = bins::locate("watchdog")?;

    let lab =
        Lab::start(&AgentKind::ALL, Some(Script::default())).context("starting the agents")?;
    let dir = lab.dir().to_path_buf();
    let db = lab.db.clone();
    let agents = &lab.agents;

    let alertmanager = if args.with_alertmanager {
        let bin = tools::which("prometheus-alertmanager")
            .context("--with-alertmanager: `prometheus-alertmanager` is not on PATH")?;
        Some(ext::alertmanager(&bin, ALERTMANAGER_CONFIG)?)
    } else {
        None
    };
    // The agent-CLI look-alikes need the emitter's OTLP receiver.
    let otlp = agent_cli_demo::emitter_has_otlp(&emitter_bin);
    let (emitter, otlp_emitter) = if otlp {
        let e = OtlpEmitter::start(&emitter_bin, &db, &dir, &[])?;
        (None, Some(e))
    } else {
        (Some(Emitter::start(&emitter_bin, &db, &dir)?), None)
    };
    let (emitter_url, emitter_pid) = match (&emitter, &otlp_emitter) {
        (Some(e), _) => (e.url(), e.proc.pid()),
        (_, Some(e)) => (e.url(), e.proc.pid()),
        _ => anyhow::bail!("no emitter"),
    };
    let conn = e2e::statedb::open(&db)?;
    let cli_agents = match &otlp_emitter {
        Some(e) => Some(
            DemoAgents::start(&conn, &e.otlp_endpoint(), &std::env::current_exe()?, &dir)
                .context("starting the agent-CLI look-alikes")?,
        ),
        None => None,
    };
    let claude = match (&otlp_emitter, args.with_claude_code) {
        (Some(e), true) => Some(start_claude(&conn, &e.otlp_endpoint(), &dir)?),
        (None, true) => anyhow::bail!("--with-claude-code: this emitter has no --otlp-listen"),
        _ => None,
    };
    let options = WatchdogOptions {
        interval: args.interval.clone(),
        stuck_for: args.stuck_for.clone(),
        min_runtime: args.min_runtime.clone(),
        alertmanager: alertmanager.as_ref().map(ext::Server::base),
        extra: DEMO_RULES.to_owned(),
    };
    let (tx, rx) = mpsc::channel();
    let mut watchdog = Watchdog::start(
        &watchdog_bin,
        &dir,
        TARGET,
        &emitter_url,
        &options,
        Some(tx),
    )?;

    let prometheus = if args.with_prometheus {
        let bin =
            tools::which("prometheus").context("--with-prometheus: `prometheus` is not on PATH")?;
        Some(ext::prometheus(&bin, &prometheus_config(watchdog.addr))?)
    } else {
        None
    };

    println!("{}", style.paint("1", "agent-watchdog demo"));
    println!("  directory          {}", dir.display());
    println!("  state database     {}", db.display());
    println!(
        "  emitter  /metrics  {}   (the raw JSON envelope; pid {})",
        emitter_url, emitter_pid
    );
    println!(
        "  watchdog /metrics  {}   (Prometheus gauges; pid {})",
        watchdog.metrics_url(),
        watchdog.proc.pid()
    );
    println!("  alert log          {}", watchdog.alert_log.display());
    println!("  watchdog config    {}", watchdog.config.display());
    println!("  agents:");
    for (agent, job) in agents {
        println!(
            "    {:<11} job {:<2} pid {:<7} {}",
            agent.kind.name(),
            job.job_id,
            agent.pid(),
            describe(agent.kind)
        );
    }
    if let Some(c) = &cli_agents {
        println!(
            "    {:<11} job {:<2} pid {:<7} keeps making the same Bash call, reporting it over OTLP (agent_looping)",
            "looper",
            c.looper.1.job_id,
            c.looper.0.pid()
        );
        println!(
            "    {:<11} job {:<2} pid {:<7} waits forever for a model reply from {} (stuck_agent, net_wait)",
            "hung",
            c.hung.1.job_id,
            c.hung.0.pid(),
            c.model.addr_string()
        );
    } else {
        println!("    (this emitter has no --otlp-listen: the agent-CLI look-alikes are left out)");
    }
    if let Some((proc, job, _)) = &claude {
        println!(
            "    {:<11} job {:<2} pid {:<7} the real Claude Code, looping on Bash ls against the demo's fake model API",
            "claude-code",
            job.job_id,
            proc.pid()
        );
    }
    let idle_job = agents
        .iter()
        .find(|(a, _)| a.kind == AgentKind::Idle)
        .map(|(_, j)| j.job_id.to_string())
        .unwrap_or_default();
    println!(
        "  expect: stuck_agent fires for `idle` (job {idle_job}) only, after ~{} + {}; it is then woken and the alert resolves.",
        args.min_runtime, args.stuck_for
    );
    println!("  also scripted: an invariant violation at ~40s, the breaker open at ~70s.");
    if cli_agents.is_some() {
        println!("  expect also: agent_looping for `looper` (count and cost), stuck_agent for `hung` \"waiting ... for a reply from\".");
    }
    println!("  try:  curl -s {} | head -c 600", emitter_url);
    println!(
        "        curl -s {} | grep -E 'watchdog_(agent_cpu_fraction|alerts_firing)'",
        watchdog.metrics_url()
    );
    if let Some(p) = &prometheus {
        println!(
            "  prometheus         {}/alerts   (scrapes the watchdog every 2s, shipped rules; pid {})",
            p.base(),
            p.proc.pid()
        );
        println!(
            "        {}/graph?g0.expr=watchdog_agent_cpu_fraction&g0.tab=0",
            p.base()
        );
    }
    if let Some(a) = &alertmanager {
        println!(
            "  alertmanager       {}/#/alerts   (the watchdog's alerts; pid {})",
            a.base(),
            a.proc.pid()
        );
    }
    println!("  Ctrl-C stops everything.\n");

    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs(d));
    let mut wake_at: Option<Instant> = None;
    let mut woken = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            println!("\nstopping (signal)");
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            println!(
                "\nstopping (--duration {}s reached)",
                args.duration.unwrap_or_default()
            );
            break;
        }
        if let Ok(Some(status)) = watchdog.proc.try_wait() {
            anyhow::bail!(
                "the watchdog exited ({status}); its log:\n{}",
                stack::tail(&watchdog.log)
            );
        }
        if wake_at.is_some_and(|w| Instant::now() >= w) && !woken {
            if let Some((agent, job)) = agents.iter().find(|(a, _)| a.kind == AgentKind::Idle) {
                agent.wake()?;
                println!(
                    "{}",
                    style.paint(
                        "1;36",
                        &format!(
                            "{}  >>> waking agent idle (job {}, pid {}): it starts working; stuck_agent should resolve",
                            clock(),
                            job.job_id,
                            agent.pid()
                        )
                    )
                );
            }
            woken = true;
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((raw, parsed)) => match parsed {
                Some(line) => {
                    print_line(&style, &line, &raw, !args.no_json);
                    let is_idle = agents.iter().any(|(a, j)| {
                        a.kind == AgentKind::Idle
                            && line.labels.get("job_id") == Some(j.job_id.to_string().as_str())
                    });
                    if line.rule == "stuck_agent"
                        && line.event == AlertEvent::Firing
                        && is_idle
                        && wake_at.is_none()
                    {
                        wake_at = Some(Instant::now() + Duration::from_secs(args.wake_after));
                        println!(
                            "{}",
                            style.paint(
                                "2",
                                &format!(
                                    "           (waking the idle agent in {}s)",
                                    args.wake_after
                                )
                            )
                        );
                    }
                }
                None => println!("{}", style.paint("2", &format!("watchdog: {raw}"))),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed: the watchdog is exiting; the check above reports it.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    // Stop in reverse order of dependence; Drop does the same if we bail.
    let count = 2
        + agents.len()
        + usize::from(prometheus.is_some())
        + usize::from(alertmanager.is_some())
        + if cli_agents.is_some() { 2 } else { 0 }
        + usize::from(claude.is_some());
    drop(claude);
    drop(cli_agents);
    drop(prometheus);
    let _ = watchdog.proc.stop(Duration::from_secs(5));
    drop(watchdog);
    drop(emitter);
    drop(alertmanager);
    if args.keep {
        let kept = lab.keep();
        println!("stopped {count} process groups; kept {}", kept.display());
    } else {
        drop(lab);
        println!("stopped {count} process groups; removed {}", dir.display());
    }
    Ok(())
}

/// A minimal Alertmanager config for `--with-alertmanager`: group per
/// target and rule, notify nobody (look at its UI).
const ALERTMANAGER_CONFIG: &str = r#"
route:
  receiver: ui-only
  group_by: [target, alertname]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: ui-only
"#;

/// Prometheus for `--with-prometheus`: the watchdog every 2 s, and the
/// shipped rules when the source tree is at hand.
fn prometheus_config(watchdog: std::net::SocketAddr) -> String {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/prometheus/watchdog-rules.yml");
    let rule_files = match rules.canonicalize() {
        Ok(path) => format!("rule_files:\n  - {:?}\n", path.display().to_string()),
        Err(_) => String::new(),
    };
    format!(
        "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n{rule_files}\
         scrape_configs:\n  - job_name: watchdog\n    static_configs:\n      - targets: [\"{watchdog}\"]\n"
    )
}

/// The demo's extra rules: short `for`s so the scripted incidents show.
/// The real Claude Code, looping on `ls` against a fake model of its own,
/// exporting to the emitter's receiver with its job id.
fn start_claude(
    conn: &rusqlite::Connection,
    otlp: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(Proc, RunningJob, FakeModel)> {
    let bin =
        tools::claude().context("--with-claude-code: no `claude` on PATH or in $CLAUDE_BIN")?;
    let model = FakeModel::start(ModelScript::SameTool(ToolCall::bash("ls")))?;
    let cdir = dir.join("claude-code");
    std::fs::create_dir_all(&cdir)?;
    // insert_running_job commits its own transaction; the run's cost is
    // then cleared so that only the agent's telemetry can price it.
    let job = e2e::statedb::insert_running_job(
        conn,
        "claude-code",
        std::process::id(),
        "app",
        "implement",
    )?;
    conn.execute(
        "UPDATE agent_runs SET cost_usd = NULL WHERE id = ?1",
        [job.run_id],
    )?;
    let run = ClaudeRun::new(&bin, &cdir, &model.base_url(), "Keep listing the files.")?
        .with_otlp(OtlpExport::new(otlp, OtlpProtocol::Json).job(job.job_id));
    let mut cmd = run.command();
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let proc = Proc::spawn("claude-code", &mut cmd)?;
    conn.execute(
        "UPDATE jobs SET pid = ?2 WHERE id = ?1",
        rusqlite::params![job.job_id, proc.pid()],
    )?;
    Ok((proc, job, model))
}

const DEMO_RULES: &str = r#"
[rules.breaker_open]
for = "3s"

[rules.reconciler_slow]
max_ms = 500
for = "10s"

[rules.queue_stalled]
for = "30s"

[rules.agent_looping]
max_repeats = 5
"#;

fn describe(kind: AgentKind) -> &'static str {
    match kind {
        AgentKind::Busy => "burns a core",
        AgentKind::Idle => "sleeps: no CPU, no I/O (will be woken)",
        AgentKind::Io => "little CPU, writes and reads a file every 200 ms",
        AgentKind::BusyChild => "waits; its child burns a core (use_tree)",
    }
}

/// The wall clock as `HH:MM:SS` (UTC), the same column as the alert lines.
fn clock() -> String {
    let now = shared_schema::Timestamp::now().to_string();
    now.get(11..19).unwrap_or(&now).to_owned()
}

fn print_line(style: &Style, line: &AlertLine, raw: &str, json: bool) {
    let ts = line.ts.to_string();
    let hms = ts.get(11..19).unwrap_or(&ts);
    let (word, code) = match line.event {
        AlertEvent::Firing => ("FIRING  ", "1;31"),
        AlertEvent::Resolved => ("RESOLVED", "1;32"),
        AlertEvent::Repeat => ("REPEAT  ", "33"),
        AlertEvent::Dropped => ("DROPPED ", "35"),
    };
    let subject: Vec<String> = ["agent", "job_id", "pid", "stage", "subsystem", "invariant"]
        .iter()
        .filter_map(|k| line.labels.get(k).map(|v| format!("{k}={v}")))
        .collect();
    println!(
        "{hms}  {}  {:<20} {:<8} {}  {}",
        style.paint(code, word),
        line.rule,
        line.severity.as_str(),
        subject.join(" "),
        line.summary
    );
    if json {
        println!("          {}", style.paint("2", raw));
    }
}
