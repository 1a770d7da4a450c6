//! The `[notify]` table of the config file (CONTRACT.md section 5).
//!
//! Strict on input (`deny_unknown_fields`: a typo is an error, not a sink
//! that silently never fires) and safe on output: `Serialize` feeds
//! `--print-config`, so URLs are printed with their secrets (user info,
//! path and query of a webhook, which is where chat services put their
//! tokens) replaced by `REDACTED`.
//!
//! ```toml
//! [notify]
//! repeat_interval = "4h"
//! ```
//!
//! The struct itself is declared by the registry (`sink_kinds!` in
//! `notify/mod.rs`), one field per kind of sink; each kind's table is in
//! its own file. Here: what every kind shares (checking the whole table,
//! rates, URL redaction); durations are `crate::dur::Dur`.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::registry::Started;
use super::NotifyConfig;
use crate::exporter::Exporter;
pub use crate::target::redact;
use crate::tls::{ClientTlsError, TlsConfig};

/// A webhook's `rate`: the one rate type of `edges` (`N/s`, `N/min`,
/// `N/h`), with the governor quota this watchdog builds from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate(pub edges::rate::Rate);

impl Rate {
    /// `count` per `per`, `count` also the burst.
    pub fn quota(&self) -> governor::Quota {
        use edges::rate::Per;
        let count: NonZeroU32 = self.0.count;
        match self.0.per {
            Per::Second => governor::Quota::per_second(count),
            Per::Minute => governor::Quota::per_minute(count),
            Per::Hour => governor::Quota::per_hour(count),
        }
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        text.parse().map(Self)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl NotifyConfig {
    /// Takes relative `tls_config` paths from `base` (the config file's directory).
    pub fn anchor_tls(&mut self, base: &std::path::Path) {
        for (_, tables) in self.tables_mut() {
            for table in tables {
                table.anchor_tls(base);
            }
        }
    }

    /// Checks what serde cannot: URLs, sizes, intervals, secrets, and that
    /// no two sinks share a name (of any kind: the name labels metrics).
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut names = std::collections::HashSet::new();
        for (kind, tables) in self.tables() {
            for (i, table) in tables.iter().enumerate() {
                for name in table.names(i) {
                    anyhow::ensure!(
                        names.insert(name.clone()),
                        "notify.{kind}: two sinks are named {name:?}"
                    );
                }
                table.validate(i)?;
            }
        }
        Ok(())
    }

    /// Builds every sink, in registry and then config order.
    pub fn start(&self, exporter: &Exporter) -> anyhow::Result<Vec<Started>> {
        let mut started = Vec::new();
        for (_, tables) in self.tables() {
            for (i, table) in tables.iter().enumerate() {
                started.extend(table.start(i, exporter)?);
            }
        }
        Ok(started)
    }
}

/// Reads every file a `tls_config` names, so a bad one fails at start.
pub fn check_tls(tls: Option<&TlsConfig>) -> Result<(), ClientTlsError> {
    tls.map_or(Ok(()), |t| t.rustls().map(drop))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A `[notify]` table's body, as the kinds' own tests read it too.
    pub(in crate::notify) fn parse(text: &str) -> Result<NotifyConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn reads_the_documented_example() {
        let cfg = parse(
            r#"
            repeat_interval = "4h"
            [[webhook]]
            url = "http://127.0.0.1:9099/hooks/T000/secret-token?key=abc"
            rate = "10/min"
            batch = 20
            [[webhook]]
            name = "ops"
            url = "http://127.0.0.1:9099/"
            rate = "1/s"
            timeout = "2s"
            [alertmanager]
            url = ["http://am-1:9093", "http://am-2:9093"]
            heartbeat = "30s"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.repeat_interval, Some(crate::dur::Dur::secs(4 * 3600)));
        assert_eq!(cfg.webhook[0].delivery.rate.unwrap().to_string(), "10/min");
        assert_eq!(cfg.webhook[0].sink_name(0), "webhook[0]");
        assert_eq!(cfg.webhook[1].sink_name(1), "ops");
        assert_eq!(
            cfg.webhook[1].delivery.timeout.0,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(cfg.webhook[1].delivery.max_retries, 3);
        // The `[alertmanager]` table beside them: its own tests
        // (`notify::alertmanager::config`) read it.
        assert_eq!(cfg.alertmanager.as_ref().map(|am| am.url.len()), Some(2));
    }

    #[test]
    fn rates_parse_or_say_how_to_write_them() {
        for (text, want) in [("10/min", "10/min"), ("1/s", "1/s"), (" 5 / h ", "5/h")] {
            assert_eq!(text.parse::<Rate>().unwrap().to_string(), want);
        }
        // A bare count is per second, as for the emitter's --rate-limit (one parser).
        assert_eq!("10".parse::<Rate>().unwrap().to_string(), "10/s");
        for bad in ["0/s", "x/min", "10/day", "-1/s", ""] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.contains("N/s, N/min or N/h"), "{bad}: {err}");
        }
        let err = parse("[[webhook]]\nurl = \"http://x/\"\nrate = \"10/week\"\n").unwrap_err();
        assert!(err.to_string().contains("N/min"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let typo = parse("[[webhook]]\nurl = \"http://x/\"\nrat = \"1/s\"\n").unwrap();
        let err = typo.validate().unwrap_err().to_string();
        assert!(
            err.contains("unknown field `rat`, expected one of `name`, `url`"),
            "{err}"
        );
        assert!(parse("[alertmanager]\nurl = \"http://x\"\nresend = \"1m\"\n").is_err());
        assert!(parse("webhooks = []\n").is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let https = parse("[[webhook]]\nurl = \"https://chat.example/hook/secret\"\n").unwrap();
        https.validate().unwrap();
        let bad_ca = parse("[[webhook]]\nurl = \"https://chat.example/hook/secret\"\ntls_config = { ca_file = \"/nonexistent/ca.crt\" }\n").unwrap();
        let err = bad_ca.validate().unwrap_err().to_string();
        assert!(
            err.contains("tls_config") && err.contains("/nonexistent/ca.crt"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        let ftp = parse("[[webhook]]\nurl = \"ftp://chat.example/hook/secret\"\n").unwrap();
        let err = ftp.validate().unwrap_err().to_string();
        assert!(err.contains("scheme") && !err.contains("secret"), "{err}");
        let dup = parse("[[webhook]]\nname = \"a\"\nurl = \"http://x/\"\n[[webhook]]\nname = \"a\"\nurl = \"http://y/\"\n").unwrap();
        assert!(dup.validate().is_err());
        let none = parse("[alertmanager]\nurl = []\n").unwrap();
        assert!(none.validate().is_err());
    }

    #[test]
    fn printing_never_shows_a_secret_and_defaults_are_visible() {
        let cfg = parse(
            r#"
            [[webhook]]
            url = "http://user:pw@chat.example:8080/hooks/T000/secret-token?key=abc"
            [alertmanager]
            url = "http://admin:hunter2@am:9093/?token=abc"
            "#,
        )
        .unwrap();
        let printed = toml::to_string(&cfg).unwrap();
        for secret in ["pw", "secret-token", "abc", "hunter2", "T000"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(
            printed.contains("http://***@chat.example:8080/***?***"),
            "{printed}"
        );
        assert!(printed.contains("resend_interval = \"1m\""), "{printed}");
        assert!(printed.contains("timeout = \"10s\""), "{printed}");
    }

    #[test]
    fn every_kinds_tls_paths_are_taken_from_the_config_files_directory() {
        let tls = "tls_config = { ca_file = \"ca.crt\" }\n";
        let mut cfg = parse(&format!(
            "[[webhook]]\nurl = \"https://h/x\"\n{tls}[alertmanager]\nurl = \"https://am\"\n{tls}\
             [[slack]]\nurl = \"https://h/s\"\n{tls}[[pagerduty]]\nrouting_key = \"k\"\n{tls}"
        ))
        .unwrap();
        cfg.anchor_tls(std::path::Path::new("/etc/watchdog"));
        let want = Some(std::path::PathBuf::from("/etc/watchdog/ca.crt"));
        let ca = |t: &Option<TlsConfig>| t.as_ref().and_then(|t| t.ca_file.clone());
        assert_eq!(ca(&cfg.webhook[0].tls_config), want);
        assert_eq!(ca(&cfg.alertmanager.as_ref().unwrap().tls_config), want);
        assert_eq!(ca(&cfg.slack[0].tls_config), want);
        assert_eq!(ca(&cfg.pagerduty[0].tls_config), want);
    }

    #[test]
    fn two_sinks_of_any_kinds_may_not_share_a_name() {
        let same = parse(
            "[[webhook]]\nname = \"ops\"\nurl = \"http://x/\"\n[[slack]]\nname = \"ops\"\nurl = \"http://y/s\"\n",
        )
        .unwrap();
        let err = same.validate().unwrap_err().to_string();
        assert_eq!(err, "notify.slack: two sinks are named \"ops\"");
        let clash = parse("[alertmanager]\nurl = \"http://am\"\n[[webhook]]\nname = \"alertmanager[0]\"\nurl = \"http://x/\"\n").unwrap();
        let err = clash.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "notify.alertmanager: two sinks are named \"alertmanager[0]\""
        );
    }

    #[test]
    fn the_default_is_empty_and_prints_back() {
        let cfg = NotifyConfig::default();
        let printed = toml::to_string(&cfg).unwrap();
        assert_eq!(parse(&printed).unwrap(), cfg);
    }
}
