//! Headless Chromium for the tests that render a page (the status page,
//! the backtest report): one way to start it, bounded in time.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::Proc;

/// Runs chromium headless on `url` with `mode` (`--dump-dom` or
/// `--screenshot=FILE`) in a window `height` pixels tall, a fresh profile and
/// nothing fetched in the background; returns its stdout. Bounded: a browser
/// that does not finish within 60 s is killed and is an error.
pub fn chromium(
    bin: &Path,
    profile: &Path,
    mode: &str,
    url: &str,
    height: u32,
) -> Result<String, String> {
    let out = profile.with_extension("out");
    let err = profile.with_extension("err");
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ])
    .arg(format!("--window-size=1280,{height}"))
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(mode)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::from(file(&out)?))
    .stderr(Stdio::from(file(&err)?));
    let stderr = || std::fs::read_to_string(&err).unwrap_or_default();
    let mut proc = Proc::spawn("chromium", &mut cmd).map_err(|e| format!("chromium: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = proc.try_wait().map_err(|e| format!("chromium: {e}"))? {
            break status;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "chromium {mode} did not finish in 60 s:\n{}",
                stderr()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        return Err(format!("chromium {mode}: {status}\n{}", stderr()));
    }
    std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))
}

/// A screenshot of `url` (a window `height` pixels tall, profile
/// `profile`) written to `shot`, checked to be a PNG with something in it
/// (over 10,000 bytes: a blank page compresses to a few KiB); its bytes.
/// The one screenshot check of the browser tests.
pub fn screenshot(bin: &Path, profile: &Path, shot: &Path, url: &str, height: u32) -> Vec<u8> {
    chromium(
        bin,
        profile,
        &format!("--screenshot={}", shot.display()),
        url,
        height,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let png = std::fs::read(shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "screenshot of {} bytes", png.len());
    png
}
