//! The demo's two agent-CLI look-alikes, reporting over OTLP the way Claude
//! Code does (the record shapes of `tests/fixtures/otlp/claude-code/`):
//!
//! - `looper` keeps "making" the same Bash `ls` call: a thread posts one
//!   `claude_code.api_request` (with its cost) and one
//!   `claude_code.tool_result` per half second for its job, so
//!   `agent_looping` fires with the count and the spend.
//! - `hung` is a process that sends a Messages API request to a fake model
//!   that never answers and waits for the reply: `net_wait` shows it, and
//!   `stuck_agent` fires with the "for a reply from" diagnosis.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::fake_model::{FakeModel, Script};
use crate::procs::Proc;
use crate::statedb::{self, RunningJob};

/// Whether this emitter has the OTLP receiver (`--otlp-listen`).
pub fn emitter_has_otlp(bin: &Path) -> bool {
    Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--otlp-listen"))
        .unwrap_or(false)
}

/// The hidden mode of the demo binary that plays the hung agent: connect
/// to `addr`, send one streaming Messages request, wait for a reply forever.
pub fn hung_client(addr: &str) -> std::io::Result<()> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    let body = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"hello"}]}"#;
    write!(
        stream,
        "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\nanthropic-version: 2023-06-01\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = [0u8; 4096];
    while stream.read(&mut buf)? > 0 {}
    Ok(())
}

/// The two running look-alikes.
#[derive(Debug)]
pub struct DemoAgents {
    /// The looping one's process and job.
    pub looper: (Proc, RunningJob),
    /// The hung one's process and job.
    pub hung: (Proc, RunningJob),
    /// The fake model the hung one waits on.
    pub model: FakeModel,
    stop: Arc<AtomicBool>,
}

impl Drop for DemoAgents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl DemoAgents {
    /// Starts both, records them as running jobs in `conn` (run cost null,
    /// as until the CLI exits), and starts the looper's telemetry to
    /// `otlp` (`http://127.0.0.1:<port>`). `demo_exe` is re-run with
    /// `--hung-client` for the hung one.
    pub fn start(
        conn: &Connection,
        otlp: &str,
        demo_exe: &Path,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let model = FakeModel::start(Script::Hang)?;
        let mut cmd = Command::new("sleep");
        cmd.arg("100000").current_dir(dir).stdin(Stdio::null());
        let looper = Proc::spawn("looper", &mut cmd)?;
        let looper_job =
            statedb::insert_running_job(conn, "looper", looper.pid(), "app", "implement")?;
        let mut cmd = Command::new(demo_exe);
        cmd.arg("--hung-client")
            .arg(model.addr_string())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let hung = Proc::spawn("hung", &mut cmd)?;
        let hung_job = statedb::insert_running_job(conn, "hung", hung.pid(), "app", "implement")?;
        for job in [looper_job, hung_job] {
            conn.execute(
                "UPDATE agent_runs SET cost_usd = NULL, input_tokens = NULL, output_tokens = NULL,
                   cache_read_tokens = NULL, cache_creation_tokens = NULL WHERE id = ?1",
                [job.run_id],
            )?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let url = format!("{}/v1/logs", otlp.trim_end_matches('/'));
        let (looper_id, hung_id) = (looper_job.job_id, hung_job.job_id);
        std::thread::spawn(move || {
            let client = crate::net::client();
            let _ = client
                .post(&url)
                .header("content-type", "application/json")
                .body(
                    logs(
                        hung_id,
                        &[event(
                            "user_prompt",
                            &[("prompt_length", json!({"stringValue": "5"}))],
                        )],
                    )
                    .to_string(),
                )
                .send();
            while !flag.load(Ordering::SeqCst) {
                let records = [
                    event(
                        "api_request",
                        &[
                            (
                                "model",
                                json!({"stringValue": "claude-sonnet-4-5-20250929"}),
                            ),
                            ("input_tokens", json!({"intValue": 1200})),
                            ("output_tokens", json!({"intValue": 40})),
                            ("cache_read_tokens", json!({"intValue": 300})),
                            ("cache_creation_tokens", json!({"intValue": 100})),
                            ("cost_usd", json!({"doubleValue": 0.004665})),
                            ("duration_ms", json!({"intValue": 900})),
                        ],
                    ),
                    event(
                        "tool_result",
                        &[
                            ("tool_name", json!({"stringValue": "Bash"})),
                            ("success", json!({"stringValue": "true"})),
                            ("duration_ms", json!({"stringValue": "12"})),
                            (
                                "tool_parameters",
                                json!({"stringValue": r#"{"bash_command":"ls","full_command":"ls","description":"List files"}"#}),
                            ),
                        ],
                    ),
                ];
                let _ = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(logs(looper_id, &records).to_string())
                    .send();
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Ok(Self {
            looper: (looper, looper_job),
            hung: (hung, hung_job),
            model,
            stop,
        })
    }
}

fn event(name: &str, attrs: &[(&str, Value)]) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut attributes = vec![
        json!({"key": "event.name", "value": {"stringValue": name}}),
        json!({"key": "session.id", "value": {"stringValue": "demo-session"}}),
    ];
    attributes.extend(attrs.iter().map(|(k, v)| json!({"key": k, "value": v})));
    json!({"timeUnixNano": now.to_string(), "body": {"stringValue": format!("claude_code.{name}")},
           "attributes": attributes})
}

fn logs(job_id: i64, records: &[Value]) -> Value {
    json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "claude-code"}},
            {"key": "orchestrator.job_id", "value": {"stringValue": job_id.to_string()}}]},
        "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events"}, "logRecords": records}]}]})
}
