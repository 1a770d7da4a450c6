//! `watchdog check` speaks the monitoring-plugin convention even when it is
//! called wrongly (issue 15 item 12; CONTRACT section 5): a bad flag, a bad
//! value or a missing argument is UNKNOWN (3), never CRITICAL (2, clap's
//! default), which would page someone for a typo. Other subcommands keep 2.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_watchdog");

fn exit_code(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_usage_errors_exit_unknown() {
    for args in [
        &["check", "--target", "http://127.0.0.1:9/", "--no-such-flag"][..],
        &[
            "check",
            "--target",
            "http://127.0.0.1:9/",
            "--interval",
            "soon",
        ],
        &[
            "check",
            "--target",
            "http://127.0.0.1:9/",
            "--timeout",
            "-1s",
        ],
        &["check"],
        &["check", "--target"],
    ] {
        let (code, err) = exit_code(args);
        assert_eq!(code, 3, "{args:?} should be UNKNOWN; stderr:\n{err}");
        assert!(err.contains("error"), "{args:?}: no error said:\n{err}");
    }
}

#[test]
fn check_help_still_exits_zero_and_other_usage_errors_keep_two() {
    assert_eq!(exit_code(&["check", "--help"]).0, 0);
    assert_eq!(exit_code(&["--version"]).0, 0);
    assert_eq!(exit_code(&["run", "--no-such-flag"]).0, 2);
    assert_eq!(exit_code(&["no-such-command"]).0, 2);
}
