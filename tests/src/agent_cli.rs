//! Starting the real agent CLIs the way an orchestrator does: Claude Code
//! non-interactively (`claude -p ... --output-format json`) against a fake
//! model API on loopback, with a home directory of its own, no outside
//! traffic, and its OpenTelemetry export pointed where the test says.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The OTLP wire format an agent is told to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`.
    Protobuf,
    /// `http/json`.
    Json,
}

impl OtlpProtocol {
    /// The `OTEL_EXPORTER_OTLP_PROTOCOL` value.
    pub fn env_value(self) -> &'static str {
        match self {
            OtlpProtocol::Protobuf => "http/protobuf",
            OtlpProtocol::Json => "http/json",
        }
    }
}

/// Where and how the agent exports its telemetry.
#[derive(Debug, Clone)]
pub struct OtlpExport {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://127.0.0.1:<port>`).
    pub endpoint: String,
    /// Wire format.
    pub protocol: OtlpProtocol,
    /// `orchestrator.job_id` in `OTEL_RESOURCE_ATTRIBUTES`; `None` leaves
    /// attribution to the socket.
    pub job_id: Option<i64>,
    /// `OTEL_LOGS_EXPORT_INTERVAL` and `OTEL_METRIC_EXPORT_INTERVAL`, ms.
    pub interval_ms: u64,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (e.g. `Authorization=Bearer x`).
    pub headers: Option<String>,
}

impl OtlpExport {
    /// To `endpoint` in `protocol`, every 500 ms, without a job id.
    pub fn new(endpoint: &str, protocol: OtlpProtocol) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            protocol,
            job_id: None,
            interval_ms: 500,
            headers: None,
        }
    }

    /// With `orchestrator.job_id=<id>`.
    pub fn job(mut self, id: i64) -> Self {
        self.job_id = Some(id);
        self
    }
}

/// The model the tests ask Claude Code for (it prices tokens by it).
pub const CLAUDE_MODEL: &str = "claude-sonnet-4-5-20250929";

/// What every agent CLI run has: the binary, a home and a working
/// directory of its own, the fake model's URL, the prompt, the telemetry
/// export and extra environment (one struct, so Claude Code and Codex runs
/// are set up and launched alike).
#[derive(Debug, Clone)]
pub struct CliRun {
    /// The binary ([`crate::tools::claude`], [`crate::tools::codex`]).
    pub bin: PathBuf,
    /// Its `HOME` (config and session files go there).
    pub home: PathBuf,
    /// Its working directory (where its tools run).
    pub workdir: PathBuf,
    /// The fake model's URL (`ANTHROPIC_BASE_URL`, or the provider's `base_url`).
    pub model_url: String,
    /// The prompt.
    pub prompt: String,
    /// The telemetry export, if any.
    pub otlp: Option<OtlpExport>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl CliRun {
    /// A run in `dir`: it makes `dir/home/<home_sub>` and `dir/work`.
    fn new(
        bin: &Path,
        dir: &Path,
        home_sub: &str,
        model_url: &str,
        prompt: &str,
    ) -> std::io::Result<Self> {
        let home = dir.join("home");
        let workdir = dir.join("work");
        std::fs::create_dir_all(home.join(home_sub))?;
        std::fs::create_dir_all(&workdir)?;
        Ok(Self {
            bin: bin.to_owned(),
            home,
            workdir,
            model_url: model_url.to_owned(),
            prompt: prompt.to_owned(),
            otlp: None,
            env: Vec::new(),
        })
    }

    /// `bin args...` in the working directory with stdin null and a
    /// cleared environment (only `PATH`, `HOME`, `TMPDIR`, `TERM`, `LANG`
    /// and `SHELL`), so that nothing of the host (a real key, a proxy, a
    /// user config) leaks in.
    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .env("TMPDIR", std::env::temp_dir())
            .env("TERM", "dumb")
            .env("LANG", "C.UTF-8")
            .env("SHELL", "/bin/bash");
        cmd
    }

    /// The end of every command: `orchestrator.job_id` when the export
    /// names a job, then the extra environment (which wins).
    fn finish(&self, cmd: &mut Command) {
        if let Some(job) = self.otlp.as_ref().and_then(|o| o.job_id) {
            cmd.env(
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("orchestrator.job_id={job}"),
            );
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }
}

/// Makes a run type (a struct with a `cli: CliRun` field) read and write
/// its [`CliRun`] fields as its own (`run.home`, `run.env`, ...).
macro_rules! runs_as_a_cli {
    ($run:ty) => {
        impl std::ops::Deref for $run {
            type Target = CliRun;
            fn deref(&self) -> &CliRun {
                &self.cli
            }
        }

        impl std::ops::DerefMut for $run {
            fn deref_mut(&mut self) -> &mut CliRun {
                &mut self.cli
            }
        }
    };
}

/// One Claude Code run: `claude -p <prompt> --output-format json`.
#[derive(Debug, Clone)]
pub struct ClaudeRun {
    /// What every CLI run has (its fields read through `Deref`).
    pub cli: CliRun,
    /// More `--allowedTools` than `Bash`.
    pub allowed_tools: Vec<String>,
}

runs_as_a_cli!(ClaudeRun);

impl ClaudeRun {
    /// A run in `dir` (it makes `dir/home` and `dir/work`).
    pub fn new(bin: &Path, dir: &Path, model_url: &str, prompt: &str) -> std::io::Result<Self> {
        Ok(Self {
            cli: CliRun::new(bin, dir, "", model_url, prompt)?,
            allowed_tools: vec!["Bash".into()],
        })
    }

    /// With telemetry exported as `otlp` says.
    pub fn with_otlp(mut self, otlp: OtlpExport) -> Self {
        self.cli.otlp = Some(otlp);
        self
    }

    /// The command, ready to spawn (stdin null; stdout/stderr for the caller).
    ///
    /// The environment is cleared first so that nothing of the host (a real
    /// key, a proxy, a user config) leaks in: only `PATH` is kept.
    pub fn command(&self) -> Command {
        let tools = self.allowed_tools.join(",");
        let mut cmd = self.cli.command([
            "-p",
            self.prompt.as_str(),
            "--output-format",
            "json",
            "--model",
            CLAUDE_MODEL,
            "--allowedTools",
            tools.as_str(),
        ]);
        cmd.env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("ANTHROPIC_BASE_URL", &self.model_url)
            .env("ANTHROPIC_API_KEY", "test")
            .env("ANTHROPIC_SMALL_FAST_MODEL", CLAUDE_MODEL)
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("DISABLE_BUG_COMMAND", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("CLAUDE_CODE_DISABLE_TERMINAL_TITLE", "1")
            .env("NO_PROXY", "*");
        if let Some(otlp) = &self.otlp {
            let interval = otlp.interval_ms.to_string();
            cmd.env("CLAUDE_CODE_ENABLE_TELEMETRY", "1")
                .env("OTEL_LOGS_EXPORTER", "otlp")
                .env("OTEL_METRICS_EXPORTER", "otlp")
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", otlp.protocol.env_value())
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint)
                .env("OTEL_LOG_TOOL_DETAILS", "1")
                .env("OTEL_METRIC_EXPORT_INTERVAL", &interval)
                .env("OTEL_LOGS_EXPORT_INTERVAL", &interval);
            if let Some(h) = &otlp.headers {
                cmd.env("OTEL_EXPORTER_OTLP_HEADERS", h);
            }
        }
        self.cli.finish(&mut cmd);
        cmd
    }
}

/// What `--output-format json` says at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaudeResult {
    /// `is_error`.
    pub is_error: bool,
    /// `num_turns`.
    pub num_turns: Option<u64>,
    /// `total_cost_usd`.
    pub total_cost_usd: Option<f64>,
    /// `usage.input_tokens`.
    pub input_tokens: Option<u64>,
    /// `usage.output_tokens`.
    pub output_tokens: Option<u64>,
    /// `usage.cache_read_input_tokens`.
    pub cache_read_tokens: Option<u64>,
    /// `usage.cache_creation_input_tokens`.
    pub cache_creation_tokens: Option<u64>,
    /// `session_id`.
    pub session_id: Option<String>,
    /// `result` (the answer text).
    pub result: Option<String>,
    /// The whole object.
    pub raw: Value,
}

impl ClaudeResult {
    /// Parses the last JSON object line of the CLI's stdout.
    pub fn parse(stdout: &str) -> anyhow::Result<Self> {
        let raw: Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok())
            .ok_or_else(|| anyhow::anyhow!("no JSON result in claude's stdout: {stdout:?}"))?;
        let u = |key: &str| {
            raw.pointer(&format!("/usage/{key}"))
                .and_then(Value::as_u64)
        };
        Ok(Self {
            is_error: raw.get("is_error").and_then(Value::as_bool).unwrap_or(true),
            num_turns: raw.get("num_turns").and_then(Value::as_u64),
            total_cost_usd: raw.get("total_cost_usd").and_then(Value::as_f64),
            input_tokens: u("input_tokens"),
            output_tokens: u("output_tokens"),
            cache_read_tokens: u("cache_read_input_tokens"),
            cache_creation_tokens: u("cache_creation_input_tokens"),
            session_id: raw
                .get("session_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            result: raw.get("result").and_then(Value::as_str).map(str::to_owned),
            raw,
        })
    }
}

/// The model the tests ask Codex for.
pub const CODEX_MODEL: &str = "gpt-5-codex";

/// One Codex CLI run: `codex exec <prompt> --json` with its own
/// `CODEX_HOME` whose `config.toml` names the fake provider and, when
/// given, the `[otel]` exporters.
#[derive(Debug, Clone)]
pub struct CodexRun {
    /// What every CLI run has (its fields read through `Deref`); `HOME`
    /// holds `CODEX_HOME` (`.codex`), `model_url` is the provider's
    /// `base_url` (`http://127.0.0.1:<port>/v1`).
    pub cli: CliRun,
    /// Export traces too (Codex's spans are many: about 800 kB of JSON for
    /// one short answer).
    pub traces: bool,
    /// The provider's `request_max_retries` and `stream_max_retries`.
    pub retries: u32,
}

runs_as_a_cli!(CodexRun);

impl CodexRun {
    /// A run in `dir` (it makes `dir/home/.codex` and `dir/work`).
    pub fn new(bin: &Path, dir: &Path, model_url: &str, prompt: &str) -> std::io::Result<Self> {
        Ok(Self {
            cli: CliRun::new(bin, dir, ".codex", model_url, prompt)?,
            traces: false,
            retries: 0,
        })
    }

    /// With telemetry exported as `otlp` says.
    pub fn with_otlp(mut self, otlp: OtlpExport) -> Self {
        self.cli.otlp = Some(otlp);
        self
    }

    /// `CODEX_HOME`.
    pub fn codex_home(&self) -> PathBuf {
        self.home.join(".codex")
    }

    /// The `config.toml` this run writes.
    pub fn config_toml(&self) -> String {
        let mut text = format!(
            r#"model = "{CODEX_MODEL}"
model_provider = "fake"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.fake]
name = "fake"
base_url = "{url}"
wire_api = "responses"
env_key = "FAKE_OPENAI_API_KEY"
request_max_retries = {retries}
stream_max_retries = {retries}
"#,
            url = self.model_url,
            retries = self.retries,
        );
        if let Some(otlp) = &self.otlp {
            let protocol = match otlp.protocol {
                OtlpProtocol::Protobuf => "binary",
                OtlpProtocol::Json => "json",
            };
            let e = otlp.endpoint.trim_end_matches('/');
            text.push_str(&format!(
                r#"
[otel]
environment = "test"
log_user_prompt = false
exporter = {{ otlp-http = {{ endpoint = "{e}/v1/logs", protocol = "{protocol}" }} }}
metrics_exporter = {{ otlp-http = {{ endpoint = "{e}/v1/metrics", protocol = "{protocol}" }} }}
"#
            ));
            if self.traces {
                text.push_str(&format!(
                    "trace_exporter = {{ otlp-http = {{ endpoint = \"{e}/v1/traces\", protocol = \"{protocol}\" }} }}\n"
                ));
            }
        }
        text
    }

    /// Writes the config and returns the command (stdin null).
    pub fn command(&self) -> std::io::Result<Command> {
        std::fs::write(self.codex_home().join("config.toml"), self.config_toml())?;
        let mut cmd = self.cli.command([
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--ephemeral",
            self.prompt.as_str(),
        ]);
        cmd.env("CODEX_HOME", self.codex_home())
            .env("FAKE_OPENAI_API_KEY", "test")
            .env("NO_PROXY", "*");
        if let Some(otlp) = &self.otlp {
            let interval = otlp.interval_ms.to_string();
            cmd.env("OTEL_METRIC_EXPORT_INTERVAL", &interval)
                .env("OTEL_BLRP_SCHEDULE_DELAY", &interval)
                .env("OTEL_BSP_SCHEDULE_DELAY", &interval);
        }
        self.cli.finish(&mut cmd);
        Ok(cmd)
    }
}
