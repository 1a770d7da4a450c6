//! The demo binary, end to end with fast thresholds: it prints both
//! `/metrics` URLs, shows `stuck_agent` firing for the idle agent only,
//! wakes it, shows the resolution, and on SIGINT stops every process it
//! started (agents' children included).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::procs::{self, Proc};
use e2e::{bins, net, tools};

/// Processes whose working directory is under `dir` (the demo's agents run there).
fn processes_under(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            if cwd.to_string_lossy().starts_with(dir) {
                let cmd = std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!("{name}: {}", cmd.replace('\0', " ")));
            }
        }
    }
    found
}

#[test]
fn demo_tells_the_story_and_cleans_up_on_sigint() {
    let demo = env!("CARGO_BIN_EXE_demo");
    let emitter = bins::locate("emitter").unwrap();
    let emitter_path = emitter.clone();
    let otlp = e2e::agent_cli_demo::emitter_has_otlp(&emitter_path);
    let watchdog = bins::locate("watchdog").unwrap();
    let mut cmd = Command::new(demo);
    cmd.args([
        "--stuck-for",
        "5s",
        "--min-runtime",
        "2s",
        "--wake-after",
        "2",
        "--duration",
        "120",
    ]);
    // With the tools at hand, the full stack: Prometheus and Alertmanager too.
    let prom = tools::require("prometheus", "apt-get install prometheus").is_some();
    let am = tools::require(
        "prometheus-alertmanager",
        "apt-get install prometheus-alertmanager",
    )
    .is_some();
    if prom {
        cmd.arg("--with-prometheus");
    }
    if am {
        cmd.arg("--with-alertmanager");
    }
    cmd.env("EMITTER_BIN", emitter)
        .env("WATCHDOG_BIN", watchdog)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn("demo", &mut cmd).unwrap();
    let out = Arc::new(Mutex::new(Vec::<String>::new()));
    for stream in [
        Box::new(proc.child_mut().stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(proc.child_mut().stderr.take().unwrap()),
    ] {
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
    }
    let text = || out.lock().unwrap().join("\n");
    let has = |pred: &dyn Fn(&str) -> bool| out.lock().unwrap().iter().any(|l| pred(l));

    net::wait_for(
        "the resolved stuck_agent line (and, with OTLP, the looper's and the hung agent's alerts)",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            if let Ok(Some(status)) = proc.try_wait() {
                return Err(format!("demo exited early with {status}"));
            }
            let cli_story = !otlp
                || (has(&|l: &str| l.contains("FIRING") && l.contains("agent=hung"))
                    && has(&|l: &str| l.contains("FIRING") && l.contains("agent_looping")));
            if cli_story && has(&|l: &str| l.contains("RESOLVED") && l.contains("stuck_agent")) {
                Ok(())
            } else {
                Err("not yet".into())
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", text()));

    let all = text();
    assert!(
        all.contains("emitter  /metrics  http://127.0.0.1:"),
        "{all}"
    );
    assert!(
        all.contains("watchdog /metrics  http://127.0.0.1:"),
        "{all}"
    );
    assert!(all.contains(">>> waking agent idle"), "{all}");
    // Of the simulated orchestrator's four agents, only the idle one is stuck.
    let stuck: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("FIRING") && l.contains("stuck_agent"))
        .filter(|l| {
            ["busy", "idle", "io", "busy-child"]
                .iter()
                .any(|a| l.contains(&format!("agent={a} ")))
        })
        .collect();
    assert_eq!(
        stuck.len(),
        1,
        "stuck_agent fired once, for the idle agent only:\n{all}"
    );
    assert!(stuck[0].contains("agent=idle"), "{all}");
    // With the emitter's OTLP receiver, the agent-CLI look-alikes tell
    // their story too (within the run's first two minutes).
    if otlp {
        assert!(
            all.lines().any(|l| l.contains("FIRING")
                && l.contains("agent_looping")
                && l.contains("agent=looper")
                && l.contains("same Bash call")
                && l.contains('$')),
            "agent_looping with its count and cost:\n{all}"
        );
        let hung = || {
            all.lines().any(|l| {
                l.contains("FIRING")
                    && l.contains("stuck_agent")
                    && l.contains("agent=hung")
                    && l.contains("for a reply from")
            })
        };
        assert!(
            hung(),
            "stuck_agent for the hung agent with the reply diagnosis:\n{all}"
        );
        assert!(
            !all.lines().any(|l| l.contains("FIRING")
                && l.contains("stuck_agent")
                && l.contains("agent=looper")),
            "the looper is busy, not stuck:\n{all}"
        );
    }
    let dir = all
        .lines()
        .find_map(|l| l.trim().strip_prefix("directory"))
        .map(|d| d.trim().to_owned())
        .expect("the demo prints its directory");
    assert!(
        !processes_under(&dir).is_empty(),
        "the agents run under {dir}"
    );
    let pids: Vec<u32> = all
        .lines()
        .filter_map(|l| l.split("pid ").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        pids.len() >= 6,
        "emitter, watchdog and 4 agents: {pids:?}\n{all}"
    );
    if prom {
        let url = all
            .lines()
            .find_map(|l| l.trim().strip_prefix("prometheus"))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the demo prints Prometheus' URL");
        let base = url.trim_end_matches("/alerts");
        let up = net::get_json(&format!("{base}/api/v1/query?query=up")).unwrap();
        assert_eq!(up["status"], "success", "{up}");
    }
    if am {
        assert!(
            all.lines()
                .any(|l| l.trim().starts_with("alertmanager       http://127.0.0.1:")),
            "{all}"
        );
    }

    proc.signal(libc::SIGINT).unwrap();
    let status = net::wait_for(
        "the demo to exit after SIGINT",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            proc.try_wait()
                .map_err(|e| e.to_string())?
                .ok_or("still running".to_owned())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", text()));
    assert!(status.success(), "{status}\n{}", text());
    // Give the reader threads the last lines.
    net::wait_for(
        "the demo's last line",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            if has(&|l: &str| l.starts_with("stopped ")) {
                Ok(())
            } else {
                Err(text())
            }
        },
    )
    .unwrap();
    assert!(text().contains("stopping (signal)"), "{}", text());
    let alive: Vec<u32> = pids.iter().copied().filter(|p| procs::alive(*p)).collect();
    assert!(
        alive.is_empty(),
        "still alive after the demo exited: {alive:?}"
    );
    let left = processes_under(&dir);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
