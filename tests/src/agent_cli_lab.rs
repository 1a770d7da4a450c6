//! The real-agent lab: a state database, the real emitter with its OTLP
//! receiver (`--otlp-listen`), and real agent CLIs recorded as running jobs
//! the way an orchestrator records them (the job first, then its pid once
//! the process is started), each against a fake model API on loopback.
//! The `real_claude_*` and `real_codex_*` tests and the demo build on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{params, Connection};
use serde_json::Value;
use shared_schema::{AlertEvent, AlertLine};

use crate::agent_cli::{ClaudeResult, ClaudeRun, CodexRun, OtlpExport, OtlpProtocol};
use crate::fake_model::{FakeModel, Script, ToolCall, Usage};
use crate::fake_model_openai::FakeResponses;
use crate::net;
use crate::procs::Proc;
use crate::stack::{logged_head, tail, Emitter, Watchdog};
use crate::statedb;

/// A running `emitter serve --otlp-listen`.
#[derive(Debug)]
pub struct OtlpEmitter {
    /// The process.
    pub proc: Proc,
    /// `/metrics` and `/agents/{id}` listen here.
    pub addr: SocketAddr,
    /// The OTLP receiver listens here.
    pub otlp_addr: SocketAddr,
    /// Its stderr.
    pub log: PathBuf,
}

impl OtlpEmitter {
    /// Starts `bin serve --db db --listen <free> --otlp-listen <free>` plus
    /// `extra` arguments, and waits until `/metrics` answers and the
    /// receiver accepts connections.
    pub fn start(bin: &Path, db: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let otlp_addr = net::free_addr()?;
        let mut args = vec!["--otlp-listen".to_owned(), otlp_addr.to_string()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let Emitter { proc, addr, log } = Emitter::start_with(bin, db, dir, &args, || {
            std::net::TcpStream::connect_timeout(&otlp_addr, Duration::from_millis(200))
                .map(|_| ())
                .map_err(|e| format!("OTLP receiver {otlp_addr}: {e}"))
        })?;
        Ok(Self {
            proc,
            addr,
            otlp_addr,
            log,
        })
    }

    /// `http://<addr>/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// `http://<otlp addr>`: an agent's `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}", self.otlp_addr)
    }

    /// The envelope.
    pub fn envelope(&self) -> Result<Value, String> {
        net::get_json(&self.url())
    }

    /// `agents[i]` of `job_id` in a fresh envelope.
    pub fn agent(&self, job_id: i64) -> Result<Value, String> {
        let env = self.envelope()?;
        env.get("agents")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|x| x.get("job_id").and_then(Value::as_i64) == Some(job_id))
            })
            .cloned()
            .ok_or_else(|| format!("job {job_id} is not among the envelope's agents: {env}"))
    }

    /// `agents[i].activity` of `job_id`, once it is not null.
    pub fn activity(&self, job_id: i64) -> Result<Value, String> {
        activity_of(job_id, &self.agent(job_id)?).cloned()
    }

    /// Polls [`OtlpEmitter::agent`] of `job_id` every `every` until `done`
    /// gives a value: the wait of every test on what the envelope says of
    /// one agent (a failure carries the emitter's log).
    pub fn wait_agent<T>(
        &self,
        job_id: i64,
        what: &str,
        timeout: Duration,
        every: Duration,
        mut done: impl FnMut(&Value) -> Result<T, String>,
    ) -> anyhow::Result<T> {
        net::wait_for(what, timeout, every, || done(&self.agent(job_id)?))
            .with_context(|| format!("emitter: {}", self.log_tail()))
    }

    /// The activity once it counts `n` API requests (checked every 100 ms
    /// for up to 10 s): the CLI's telemetry has all come in.
    pub fn wait_api_requests(&self, job_id: i64, n: u64) -> anyhow::Result<Value> {
        self.wait_agent(
            job_id,
            &format!("activity with all {n} requests"),
            Duration::from_secs(10),
            Duration::from_millis(100),
            |agent| {
                let a = activity_of(job_id, agent)?;
                match a.get("api_requests").and_then(Value::as_u64) {
                    Some(got) if got == n => Ok(a.clone()),
                    other => Err(format!("api_requests {other:?}: {a}")),
                }
            },
        )
    }

    /// `net_wait` once it names `remote` (checked every 200 ms): the agent
    /// is seen waiting on the fake model.
    pub fn wait_net_wait(
        &self,
        job_id: i64,
        remote: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.wait_agent(
            job_id,
            "net_wait naming the fake model",
            timeout,
            Duration::from_millis(200),
            |a| {
                let nw = a.get("net_wait").cloned().unwrap_or(Value::Null);
                if nw.get("remote").and_then(Value::as_str) == Some(remote) {
                    Ok(nw)
                } else {
                    Err(format!("net_wait {nw}"))
                }
            },
        )
    }

    /// `net_wait` once its `sent_ago_s` is 2 s past `first` (checked every
    /// 250 ms for up to 10 s): the wait is seen growing.
    pub fn wait_sent_ago_grows(&self, job_id: i64, first: f64) -> anyhow::Result<Value> {
        self.wait_agent(
            job_id,
            "sent_ago_s to grow by 2 s",
            Duration::from_secs(10),
            Duration::from_millis(250),
            |a| {
                let nw = a.get("net_wait").cloned().unwrap_or(Value::Null);
                match num(&nw, "/sent_ago_s") {
                    Some(s) if s >= first + 2.0 => Ok(nw),
                    _ => Err(format!("net_wait {nw}")),
                }
            },
        )
    }

    /// `GET /agents/{job_id}`.
    pub fn up_close(&self, job_id: i64) -> Result<Value, String> {
        net::get_json(&format!("http://{}/agents/{job_id}", self.addr))
    }

    /// The last lines of its stderr.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

/// One job row set as an orchestrator writes it before the agent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// `jobs.id`.
    pub job_id: i64,
    /// `agent_runs.id`.
    pub run_id: i64,
}

/// A state database and the emitter (with its receiver) reading it.
#[derive(Debug)]
pub struct AgentLab {
    /// Where everything lives (removed on drop).
    pub dir: tempfile::TempDir,
    /// The database file.
    pub db: PathBuf,
    /// A writer connection.
    pub conn: Connection,
    /// The emitter.
    pub emitter: OtlpEmitter,
}

impl AgentLab {
    /// A new database and `emitter` (the binary) serving it with `extra` flags.
    pub fn start(emitter: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("agent-lab-").tempdir()?;
        let db = dir.path().join("state.db");
        let conn = statedb::create(&db)?;
        let emitter = OtlpEmitter::start(emitter, &db, dir.path(), extra)?;
        Ok(Self {
            dir,
            db,
            conn,
            emitter,
        })
    }

    /// The `watchdog` binary polling this lab's emitter every second with
    /// `rules` ([`watchdog_toml`]), in `dir/watchdog`.
    pub fn watchdog(&self, rules: &str) -> anyhow::Result<Watchdog> {
        let url = self.emitter.url();
        let dir = self.agent_dir("watchdog")?;
        Watchdog::start_with(
            &crate::bins::locate("watchdog")?,
            &dir,
            |listen, log| watchdog_toml(&url, listen, log, rules),
            None,
        )
    }

    /// The export to this lab's receiver over `protocol`, naming `job`
    /// when given (else attribution is by the loopback socket).
    pub fn otlp(&self, protocol: OtlpProtocol, job: Option<Job>) -> OtlpExport {
        let otlp = OtlpExport::new(&self.emitter.otlp_endpoint(), protocol);
        match job {
            Some(job) => otlp.job(job.job_id),
            None => otlp,
        }
    }

    /// Records a job `name` and starts `cli` for it in `dir/<name>`
    /// against `model_url`, exporting to this lab over `protocol` (naming
    /// the job when `with_job_id`): the start of every real-CLI test.
    pub fn start_agent(
        &self,
        cli: Cli<'_>,
        name: &str,
        model_url: &str,
        prompt: &str,
        (protocol, with_job_id): Export,
    ) -> anyhow::Result<AgentProc> {
        let job = self.add_job(name)?;
        let dir = self.agent_dir(name)?;
        let export = self.otlp(protocol, with_job_id.then_some(job));
        let (program, cmd) = match cli {
            Cli::Claude(bin) => (
                "claude",
                ClaudeRun::new(bin, &dir, model_url, prompt)?
                    .with_otlp(export)
                    .command(),
            ),
            Cli::Codex(bin) => (
                "codex",
                CodexRun::new(bin, &dir, model_url, prompt)?
                    .with_otlp(export)
                    .command()?,
            ),
        };
        self.spawn(job, program, cmd, &dir)
    }

    /// `cli` in `session` against the fake API it talks to; a hung Claude
    /// Code once its call is held (within 20 s).
    pub fn session(
        &self,
        cli: Cli<'_>,
        session: Session,
        otlp: Export,
    ) -> anyhow::Result<(Fake, AgentProc)> {
        let (fake, url) = match cli {
            Cli::Claude(_) => {
                let m = FakeModel::start(session.script(ToolCall::bash("ls")))?;
                let url = m.base_url();
                (Fake::Messages(m), url)
            }
            Cli::Codex(_) => {
                let script = session.script(ToolCall::exec("ls"));
                let r = FakeResponses::start(script, Usage::default())?;
                let url = r.base_url();
                (Fake::Responses(r), url)
            }
        };
        let (name, prompt) = session.job_and_prompt();
        let agent = self.start_agent(cli, name, &url, prompt, otlp)?;
        if session == Session::Hung && matches!(cli, Cli::Claude(_)) {
            fake.wait_held(1, Duration::from_secs(20))
                .context("claude calls the model")?;
        }
        Ok((fake, agent))
    }

    /// A directory of its own for one agent (`dir/<name>`).
    pub fn agent_dir(&self, name: &str) -> std::io::Result<PathBuf> {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// Records a task, a `running` job without a pid yet, and its run with
    /// every cost and token column null (the seed orchestrator fills them
    /// when the CLI exits), as an orchestrator does just before it starts
    /// the agent.
    pub fn add_job(&self, agent: &str) -> rusqlite::Result<Job> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO tasks (work_item_id, repo, stage, stage_entered_at)
             VALUES (?1, 'app', 'implement', datetime('now'))",
            params![format!("WI-{agent}")],
        )?;
        let task_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO jobs (task_id, agent, repo, status, attempts, pid, model, effort, created_at, started_at)
             VALUES (?1, ?2, 'app', 'running', 1, NULL, 'sonnet', 'medium', datetime('now'), datetime('now'))",
            params![task_id, agent],
        )?;
        let job_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO agent_runs (job_id, agent, started_at) VALUES (?1, ?2, datetime('now'))",
            params![job_id, agent],
        )?;
        let run_id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Job { job_id, run_id })
    }

    /// Records the started agent's pid.
    pub fn set_pid(&self, job: Job, pid: u32) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE jobs SET pid = ?2 WHERE id = ?1",
            params![job.job_id, pid],
        )?;
        Ok(())
    }

    /// Starts `cmd` (an agent CLI) for `job`: stdout and stderr go to
    /// files in `dir`, and the pid is recorded at once.
    pub fn spawn(
        &self,
        job: Job,
        name: &str,
        mut cmd: Command,
        dir: &Path,
    ) -> anyhow::Result<AgentProc> {
        let stdout = dir.join("stdout");
        let stderr = dir.join("stderr");
        cmd.stdout(Stdio::from(std::fs::File::create(&stdout)?))
            .stderr(Stdio::from(std::fs::File::create(&stderr)?));
        let proc = Proc::spawn(name, &mut cmd)?;
        self.set_pid(job, proc.pid())?;
        Ok(AgentProc {
            proc,
            job,
            started: Instant::now(),
            stdout,
            stderr,
        })
    }
}

/// How a CLI exports to the lab (protocol, whether it names its job), as
/// [`AgentLab::start_agent`] and [`AgentLab::session`] take it.
pub type Export = (OtlpProtocol, bool);
/// http/protobuf, naming the job.
pub const PROTOBUF_JOB: Export = (OtlpProtocol::Protobuf, true);
/// http/protobuf, attributed by the socket.
pub const PROTOBUF_SOCKET: Export = (OtlpProtocol::Protobuf, false);
/// http/json, attributed by the socket.
pub const JSON_SOCKET: Export = (OtlpProtocol::Json, false);

/// Which real agent CLI a lab starts, with its binary.
#[derive(Debug, Clone, Copy)]
pub enum Cli<'a> {
    /// Claude Code ([`crate::tools::claude`]), against a [`FakeModel`].
    Claude(&'a Path),
    /// The Codex CLI ([`crate::tools::codex`]), against a [`FakeResponses`].
    Codex(&'a Path),
}

/// The fake API of an [`AgentLab::session`]; it reads as its server
/// (`port`, `held`, ...).
#[derive(Debug)]
pub enum Fake {
    /// Claude Code's.
    Messages(FakeModel),
    /// Codex's.
    Responses(FakeResponses),
}

impl std::ops::Deref for Fake {
    type Target = crate::fake_model_http::LoopbackServer;
    fn deref(&self) -> &Self::Target {
        match self {
            Fake::Messages(m) => m,
            Fake::Responses(r) => r,
        }
    }
}

/// The two sessions several real-CLI tests share: a model call that never
/// returns (job `hung`, "Say hi."), and the same `ls` asked for forever
/// (job `looper`, "Keep listing.").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// The fake reads the request and never answers.
    Hung,
    /// The fake asks for the same tool call on every request.
    Looping,
}

impl Session {
    /// The fake's script, `ls` being the CLI's own call of `ls`.
    fn script(self, ls: ToolCall) -> Script {
        match self {
            Session::Hung => Script::Hang,
            Session::Looping => Script::SameTool(ls),
        }
    }

    /// The job's name and the prompt.
    fn job_and_prompt(self) -> (&'static str, &'static str) {
        match self {
            Session::Hung => ("hung", "Say hi."),
            Session::Looping => ("looper", "Keep listing."),
        }
    }
}

/// A started agent CLI.
#[derive(Debug)]
pub struct AgentProc {
    /// The process (killed with its group on drop).
    pub proc: Proc,
    /// Its job.
    pub job: Job,
    /// When it was started.
    pub started: Instant,
    /// Its stdout file.
    pub stdout: PathBuf,
    /// Its stderr file.
    pub stderr: PathBuf,
}

impl AgentProc {
    /// The pid.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits for the CLI to exit on its own within `timeout`; its stdout.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.proc.try_wait()? {
                let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
                anyhow::ensure!(
                    status.success(),
                    "{} exited with {status}\nstdout: {out}\nstderr: {}",
                    self.proc.name(),
                    tail(&self.stderr)
                );
                return Ok(out);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} did not exit within {timeout:?}\nstderr: {}",
                    self.proc.name(),
                    tail(&self.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for Claude Code to exit and parses its `--output-format json`
    /// result, which must not be an error.
    pub fn claude_result(&mut self, timeout: Duration) -> anyhow::Result<ClaudeResult> {
        let out = self.wait_exit(timeout)?;
        let result = ClaudeResult::parse(&out).context("claude's result")?;
        anyhow::ensure!(!result.is_error, "claude reported an error: {}", result.raw);
        Ok(result)
    }
}

/// A watchdog config polling `emitter_url` every second with `rules`
/// (TOML text of `[rules.*]` tables) and nothing else switched off.
pub fn watchdog_toml(
    emitter_url: &str,
    listen: SocketAddr,
    alert_log: &Path,
    rules: &str,
) -> String {
    format!(
        r#"# generated by the e2e crate (agent_cli_lab)
{head}
[rules.target_down]
for = "10s"

[rules.agent_no_pid]
for = "1m"

{rules}

[notify]
repeat_interval = "1h"
"#,
        head = logged_head(listen, alert_log, "lab", emitter_url),
    )
}

/// The lab of the real-CLI tests: a new database and the workspace's
/// emitter with no extra flags (panics with why it could not start).
pub fn lab() -> AgentLab {
    let emitter = crate::bins::locate("emitter").unwrap_or_else(|e| panic!("{e:#}"));
    AgentLab::start(&emitter, &[]).unwrap_or_else(|e| panic!("{e:#}"))
}

/// `activity` of `agent` (the `agents[i]` of job `job_id`) once it is not
/// null: for waits on the telemetry of one agent.
pub fn activity_of(job_id: i64, agent: &Value) -> Result<&Value, String> {
    match agent.get("activity") {
        Some(a) if !a.is_null() => Ok(a),
        _ => Err(format!("job {job_id} has no activity yet: {agent}")),
    }
}

/// A number at a JSON pointer, for assertions.
pub fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

/// Whether an alert line is `rule` firing for job `job`.
pub fn firing_for(job: i64, rule: &'static str) -> impl Fn(&AlertLine) -> bool {
    move |l: &AlertLine| {
        l.event == AlertEvent::Firing
            && l.rule == rule
            && l.labels.get("job_id") == Some(job.to_string().as_str())
    }
}
