//! The configuration: a TOML file (CONTRACT.md section 5) overlaid with
//! command-line flags, checked into one [`Config`].
//!
//! Strict where a typo would silently change behaviour: unknown keys and
//! unknown rule names are rejected with the key and the file named. Tokens
//! are read from `token_file` when the config is loaded and never printed;
//! `--print-config` shows the file's path, never its content.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dur::Dur;
use crate::notify::NotifyConfig;
use crate::record::{ByteSize, Rotation};
use crate::rules::RuleSet;
use crate::shard::Shard;
// The target and its URL checks moved to their own leaf module; these
// paths stay for the code that reads them from here.
pub use crate::target::{derived_name, poll_url, redact_userinfo, Target, TargetError};
use crate::tls::TlsConfig;
use edges::web_config::WebConfigError;
use watchdog_core::error::RuleConfigError;

/// Default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default listen address of the metrics server (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9465";
/// [`DEFAULT_LISTEN`] as an address (a test keeps the two equal).
const DEFAULT_LISTEN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9465);

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    interval: Option<Dur>,
    timeout: Option<Dur>,
    listen: Option<SocketAddr>,
    alert_log: Option<PathBuf>,
    state_file: Option<PathBuf>,
    record: Option<PathBuf>,
    record_max_bytes: Option<ByteSize>,
    record_keep: Option<u32>,
    shard: Option<Shard>,
    #[serde(default)]
    target_files: Vec<String>,
    /// TLS and basic auth of the listener (exporter-toolkit format).
    web_config_file: Option<PathBuf>,
    #[serde(default)]
    target: Vec<FileTarget>,
    #[serde(default)]
    rules: BTreeMap<String, toml::Table>,
    #[serde(default)]
    notify: NotifyConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTarget {
    name: Option<String>,
    url: String,
    token_file: Option<PathBuf>,
    tls_config: Option<TlsConfig>,
}

/// What the command line may override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--target URL` or `NAME=URL`, replacing the file's `[[target]]` list.
    pub targets: Vec<String>,
    /// `--interval`.
    pub interval: Option<Dur>,
    /// `--timeout`.
    pub timeout: Option<Dur>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--alert-log`.
    pub alert_log: Option<PathBuf>,
    /// `--state-file`.
    pub state_file: Option<PathBuf>,
    /// `--record`.
    pub record: Option<PathBuf>,
    /// `--record-max-bytes`.
    pub record_max_bytes: Option<ByteSize>,
    /// `--shard i/n`.
    pub shard: Option<Shard>,
    /// `--record-keep`.
    pub record_keep: Option<u32>,
    /// `--web.config.file`.
    pub web_config_file: Option<PathBuf>,
}

/// The effective configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it came from.
    pub source: Option<PathBuf>,
    /// Time between two polls of a target.
    pub interval: Duration,
    /// Time a poll may take.
    pub timeout: Duration,
    /// Where the metrics server listens.
    pub listen: SocketAddr,
    /// Where alert lines are appended (besides stdout).
    pub alert_log: Option<PathBuf>,
    /// Where pending/firing alerts and baselines are kept across restarts.
    pub state_file: Option<PathBuf>,
    /// Where polled envelopes are recorded.
    pub record: Option<PathBuf>,
    /// The cap of one recording file (`record_max_bytes`); `None`: no cap.
    pub record_max_bytes: Option<u64>,
    /// Rotated recording files kept (`record_keep`).
    pub record_keep: u32,
    /// `shard = "i/n"`: only the targets of this shard are watched.
    pub shard: Option<Shard>,
    /// The targets of `[[target]]` (or `--target`).
    pub targets: Vec<Target>,
    /// `target_files`: patterns of `file_sd` files ([`crate::targets`]),
    /// relative ones made absolute from the config file's directory.
    pub target_files: Vec<String>,
    /// The rules.
    pub rules: RuleSet,
    /// `[notify]`.
    pub notify: NotifyConfig,
    /// `web_config_file` (or `--web.config.file`): TLS and basic auth of
    /// the listener, already checked once.
    pub web_config_file: Option<PathBuf>,
}

/// Where a setting came from, as an error names it: the config file, or
/// `the command line` when no `--config` was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The `--config` file.
    File(PathBuf),
    /// Flags only, no `--config`.
    CommandLine,
}

impl Origin {
    fn of(file: Option<&Path>) -> Self {
        file.map_or(Self::CommandLine, |p| Self::File(p.to_owned()))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::CommandLine => f.write_str("the command line"),
        }
    }
}

/// A config that cannot be used: what went wrong, with the file (or flag)
/// and the key named. The messages are part of the interface (the tests and
/// the docs quote them), each in the `file: key: problem` form it has always had.
///
/// An underlying error (`error`) is kept typed, but it is not returned by
/// [`std::error::Error::source`]: the message already quotes it, and the
/// `{:#}` of an `anyhow` chain (how `watchdog run` prints a config error,
/// and the reload log line) would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("{}: cannot read the config file: {error}", .file.display())]
    Read {
        /// The `--config` file.
        file: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not TOML of the config's shape: bad syntax, an unknown
    /// key, a value of the wrong type (`message` names the key).
    #[error("{}: {message}", .file.display())]
    Parse {
        /// The `--config` file.
        file: PathBuf,
        /// The TOML parser's message, userinfo of URLs redacted (it quotes
        /// the offending line, which may hold a target's password); that is
        /// why the parser's error itself is not kept.
        message: String,
    },
    /// A `[rules]` table the rule set cannot be built from.
    #[error("{file}: {error}")]
    Rules {
        /// The file of the `[rules]` tables.
        file: Origin,
        /// Which rule and key, and why.
        error: RuleConfigError,
    },
    /// A `[[target]]` table of the file is wrong.
    #[error("{file}: [[target]] {error}")]
    Target {
        /// The file of the table.
        file: Origin,
        /// What is wrong, with the key named (`key `url`: ...`).
        error: TargetError,
    },
    /// A `--target` flag is wrong.
    #[error("--target {spec}: {error}")]
    TargetFlag {
        /// The flag's value, as given, with any password masked.
        spec: String,
        /// What is wrong, with the key named.
        error: TargetError,
    },
    /// Two targets (of the file, or of the `--target` flags) have one name.
    #[error("{file}: two targets are named {name:?}; give them distinct names")]
    DuplicateTarget {
        /// Where the targets came from.
        file: Origin,
        /// The name both have.
        name: String,
    },
    /// A pattern of `target_files` is wrong.
    #[error("{file}: key `target_files`: {error}")]
    TargetFiles {
        /// The file of the key.
        file: Origin,
        /// What is wrong with the pattern.
        error: crate::targets::PatternError,
    },
    /// A number or duration outside what the key allows.
    #[error("{file}: key `{key}` must be {bound}")]
    OutOfRange {
        /// The file of the key (or the command line, for its flag).
        file: Origin,
        /// The key.
        key: &'static str,
        /// What it must be: `longer than 0s`, `at most 1000`.
        bound: String,
    },
    /// `[notify]` is wrong (its message names the table and key).
    #[error("{file}: {error:#}")]
    Notify {
        /// The file of `[notify]`.
        file: Origin,
        /// What is wrong.
        error: anyhow::Error,
    },
    /// The file's `web_config_file` cannot be used.
    #[error("{file}: key `web_config_file`: {error}")]
    WebConfigFile {
        /// The file of the key.
        file: Origin,
        /// Why the web config is refused.
        error: WebConfigError,
    },
    /// `--web.config.file` cannot be used.
    #[error("--web.config.file: {error}")]
    WebConfigFlag {
        /// Why the web config is refused.
        error: WebConfigError,
    },
    /// Nothing to poll: no `--target`, `[[target]]` or `target_files`.
    #[error("no target: give --target URL, a [[target]] table or target_files in --config")]
    NoTarget,
    /// A `target_files` file names a target another one (or `[[target]]`)
    /// names too, at the start.
    #[error("{}: {problem}", .file.display())]
    TargetFile {
        /// The targets file.
        file: PathBuf,
        /// What it names twice.
        problem: crate::targets::FileProblem,
    },
    /// The `state_file` is there but not a regular file.
    #[error("{error}")]
    StateFile {
        /// Why, with the path named.
        error: crate::state::StateFileError,
    },
}

impl Config {
    /// Reads the file named in `over` (if any) and applies the overrides.
    pub fn load(over: &Overrides) -> Result<Self, ConfigError> {
        let (file, source) = match &over.config {
            Some(path) => (read_file(path)?, Some(path.clone())),
            None => (FileConfig::default(), None),
        };
        let origin = Origin::of(source.as_deref());
        // Each `[rules.NAME]` goes to its rule's settings through serde; the
        // core never sees TOML.
        let tables: BTreeMap<String, serde_json::Value> = file
            .rules
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect();
        let rules = RuleSet::build(&tables).map_err(|error| ConfigError::Rules {
            file: origin.clone(),
            error,
        })?;

        let base = source
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        let mut targets = Vec::new();
        if over.targets.is_empty() {
            for t in file.target {
                let tls = t.tls_config.map(|c| c.anchored(base));
                targets.push(
                    Target::new(t.name, &t.url, t.token_file)
                        .and_then(|target| target.with_tls(tls))
                        .map_err(|error| ConfigError::Target {
                            file: origin.clone(),
                            error,
                        })?,
                );
            }
        } else {
            for spec in &over.targets {
                let (name, url) = match spec.split_once('=') {
                    Some((n, u)) if !n.contains('/') && !n.contains(':') => (Some(n.to_owned()), u),
                    _ => (None, spec.as_str()),
                };
                targets.push(Target::new(name.clone(), url, None).map_err(|error| {
                    // The flag as given, but never its password: the
                    // message goes to a terminal, a journal, a check's output.
                    let shown = crate::target::redact_userinfo(url);
                    ConfigError::TargetFlag {
                        spec: name.map_or(shown.clone(), |n| format!("{n}={shown}")),
                        error,
                    }
                })?);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &targets {
            if !seen.insert(t.name.as_str()) {
                return Err(ConfigError::DuplicateTarget {
                    file: origin,
                    name: t.name.clone(),
                });
            }
        }

        let mut target_files = Vec::new();
        for pattern in &file.target_files {
            crate::targets::check_pattern(pattern).map_err(|error| ConfigError::TargetFiles {
                file: origin.clone(),
                error,
            })?;
            target_files.push(base.join(pattern).to_string_lossy().into_owned());
        }

        let interval = over
            .interval
            .or(file.interval)
            .map_or(DEFAULT_INTERVAL, |d| d.0);
        if interval.is_zero() {
            return Err(ConfigError::OutOfRange {
                file: origin,
                key: "interval",
                bound: "longer than 0s".into(),
            });
        }
        let timeout = over
            .timeout
            .or(file.timeout)
            .map_or(DEFAULT_TIMEOUT, |d| d.0);
        if timeout.is_zero() {
            return Err(ConfigError::OutOfRange {
                file: origin,
                key: "timeout",
                bound: "longer than 0s".into(),
            });
        }
        let listen = over.listen.or(file.listen).unwrap_or(DEFAULT_LISTEN_ADDR);
        let record_max_bytes = over.record_max_bytes.or(file.record_max_bytes).map(|b| b.0);
        if record_max_bytes == Some(0) {
            return Err(ConfigError::OutOfRange {
                file: origin,
                key: "record_max_bytes",
                bound: "larger than 0".into(),
            });
        }
        let record_keep = over
            .record_keep
            .or(file.record_keep)
            .unwrap_or(crate::record::DEFAULT_KEEP);
        if record_keep > crate::record::MAX_KEEP {
            return Err(ConfigError::OutOfRange {
                file: origin,
                key: "record_keep",
                bound: format!("at most {}", crate::record::MAX_KEEP),
            });
        }
        // `[notify]` is checked here, with everything else: a bad sink is a
        // config error (exit 2) in every command, not a failure of `run` later.
        let mut notify = file.notify;
        notify.anchor_tls(base);
        notify.validate().map_err(|error| ConfigError::Notify {
            file: origin.clone(),
            error,
        })?;
        let web_config_file = match &over.web_config_file {
            Some(p) => Some(p.clone()),
            None => file.web_config_file.map(|p| base.join(p)),
        };
        if let Some(path) = &web_config_file {
            edges::web_config::WebConfig::load(path).map_err(|error| {
                if over.web_config_file.is_some() {
                    ConfigError::WebConfigFlag { error }
                } else {
                    ConfigError::WebConfigFile {
                        file: origin.clone(),
                        error,
                    }
                }
            })?;
        }
        Ok(Self {
            source,
            interval,
            timeout,
            listen,
            alert_log: over.alert_log.clone().or(file.alert_log),
            state_file: over.state_file.clone().or(file.state_file),
            record: over.record.clone().or(file.record),
            record_max_bytes,
            record_keep,
            shard: over.shard.or(file.shard),
            targets,
            target_files,
            rules,
            notify,
            web_config_file,
        })
    }

    /// `[notify] repeat_interval`, defaulting to 4h.
    pub fn repeat_interval(&self) -> Duration {
        self.notify
            .repeat_interval
            .map_or(crate::engine::DEFAULT_REPEAT_INTERVAL, |d| d.0)
    }

    /// The targets of `all` this watchdog's shard owns (all without a shard).
    pub fn my_share(&self, all: Vec<Target>) -> Vec<Target> {
        match self.shard {
            None => all,
            Some(shard) => all.into_iter().filter(|t| shard.owns(&t.name)).collect(),
        }
    }

    /// How `--record` rotates.
    pub fn record_rotation(&self) -> Rotation {
        Rotation {
            max_bytes: self.record_max_bytes,
            keep: self.record_keep,
        }
    }

    /// The effective config as TOML, secrets left out (`--print-config`).
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            interval: Dur,
            timeout: Dur,
            listen: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            alert_log: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            state_file: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            record: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            record_max_bytes: Option<u64>,
            record_keep: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            shard: Option<Shard>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            target_files: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            web_config_file: Option<&'a Path>,
            target: Vec<OutTarget<'a>>,
            rules: toml::Table,
            notify: toml::Value,
        }
        #[derive(Serialize)]
        struct OutTarget<'a> {
            name: &'a str,
            url: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            token_file: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            tls_config: Option<&'a TlsConfig>,
        }
        let mut notify =
            toml::Value::try_from(&self.notify).unwrap_or(toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = &mut notify {
            t.entry("repeat_interval")
                .or_insert_with(|| toml::Value::String(Dur(self.repeat_interval()).to_string()));
        }
        let out = Out {
            interval: Dur(self.interval),
            timeout: Dur(self.timeout),
            listen: self.listen.to_string(),
            alert_log: self.alert_log.as_deref(),
            state_file: self.state_file.as_deref(),
            record: self.record.as_deref(),
            record_max_bytes: self.record_max_bytes,
            record_keep: self.record_keep,
            shard: self.shard,
            target_files: &self.target_files,
            web_config_file: self.web_config_file.as_deref(),
            target: self
                .targets
                .iter()
                .map(|t| OutTarget {
                    name: &t.name,
                    url: redact_userinfo(&t.url),
                    token_file: t.token_file.as_deref(),
                    tls_config: t.tls.as_ref(),
                })
                .collect(),
            rules: rules_table(&self.rules),
            notify,
        };
        let mut text =
            String::from("# effective watchdog configuration (secrets are never shown)\n");
        text.push_str(&toml::to_string(&out).unwrap_or_else(|e| format!("# cannot render: {e}\n")));
        text
    }
}

/// `[rules.*]` with every effective value, as TOML.
/// TOML has no null: an unset key (`cost_budget.max_usd`) is left out.
pub fn rules_table(rules: &RuleSet) -> toml::Table {
    fn strip_nulls(v: &mut serde_json::Value) {
        if let serde_json::Value::Object(m) = v {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
    }
    let mut v = serde_json::Value::Object(rules.to_value());
    strip_nulls(&mut v);
    match toml::Value::try_from(v) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        file: path.to_owned(),
        error,
    })?;
    // A TOML error quotes the offending line, which may hold a target's password.
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        file: path.to_owned(),
        message: edges::redact::in_text(e.to_string().trim_end()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_config_and_web_config_file_read_with_paths_from_the_config_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("ca.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        std::fs::write(
            dir.path().join("web.yml"),
            "tls_server_config:\n  cert_file: ca.crt\n  key_file: k.pem\n",
        )
        .unwrap();
        let cfg = dir.path().join("watchdog.toml");
        std::fs::write(
            &cfg,
            "web_config_file = \"web.yml\"\n[[target]]\nurl = \"https://orch:9464\"\ntls_config = { ca_file = \"ca.crt\", cert_file = \"ca.crt\", key_file = \"k.pem\", server_name = \"localhost\" }\n",
        )
        .unwrap();
        let over = Overrides {
            config: Some(cfg.clone()),
            ..Overrides::default()
        };
        let c = Config::load(&over).unwrap();
        let tls = c.targets[0].tls.as_ref().unwrap();
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(dir.path().join("ca.crt").as_path())
        );
        assert_eq!(
            c.web_config_file.as_deref(),
            Some(dir.path().join("web.yml").as_path())
        );
        assert!(
            c.to_toml().contains("server_name = \"localhost\""),
            "{}",
            c.to_toml()
        );
        // A bad key or file names them.
        std::fs::write(
            &cfg,
            "[[target]]\nurl = \"https://orch:9464\"\ntls_config = { ca_fil = \"x\" }\n",
        )
        .unwrap();
        assert!(Config::load(&over)
            .unwrap_err()
            .to_string()
            .contains("ca_fil"));
        std::fs::write(
            &cfg,
            "[[target]]\nurl = \"https://orch:9464\"\ntls_config = { ca_file = \"nope.crt\" }\n",
        )
        .unwrap();
        let e = Config::load(&over).unwrap_err().to_string();
        assert!(e.contains("ca_file") && e.contains("nope.crt"), "{e}");
        std::fs::write(&cfg, "web_config_file = \"nope.yml\"\n").unwrap();
        let e = Config::load(&over).unwrap_err().to_string();
        assert!(
            e.contains("web_config_file") && e.contains("nope.yml"),
            "{e}"
        );
    }
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn load_file(f: &tempfile::NamedTempFile) -> Result<Config, ConfigError> {
        Config::load(&Overrides {
            config: Some(f.path().to_owned()),
            ..Overrides::default()
        })
    }

    #[test]
    fn every_section_5_key_reads() {
        let token = write("s3cret-token\n");
        let f = write(&format!(
            r#"
interval = "30s"
timeout = "5s"
listen = "127.0.0.1:19465"
alert_log = "/tmp/alerts.jsonl"
state_file = "/tmp/state.json"
[[target]]
name = "orch-1"
url = "http://127.0.0.1:9464"
token_file = "{}"
[rules.stuck_agent]
for = "15m"
cpu_floor = 0.05
[rules.stage_age]
per_stage = {{ review = "4h" }}
[notify]
repeat_interval = "1h 30m"
"#,
            token.path().display()
        ));
        let c = load_file(&f).unwrap();
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.targets[0].url, "http://127.0.0.1:9464/metrics");
        assert_eq!(c.targets[0].token.as_deref(), Some("s3cret-token"));
        assert_eq!(c.repeat_interval(), Duration::from_secs(5400));
        assert_eq!(
            c.rules.get("stuck_agent").unwrap().common().for_,
            Dur::secs(900)
        );
        let printed = c.to_toml();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("cpu_floor = 0.05"), "{printed}");
        assert!(printed.contains("[rules.queue_depth]"), "{printed}");
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let f = write("intervall = \"15s\"\n");
        let e = load_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("intervall") && e.contains(&f.path().display().to_string()),
            "{e}"
        );
        let f = write("[rules.stuck_agent]\ncpu_flor = 0.1\n");
        let e = load_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("cpu_flor") && e.contains(&f.path().display().to_string()),
            "{e}"
        );
        let f = write("[rules.stuck]\n");
        let e = load_file(&f).unwrap_err().to_string();
        assert!(e.contains("unknown rule `stuck`"), "{e}");
        let f = write("[[target]]\nurl = \"http://x\"\ntoken = \"inline\"\n");
        assert!(load_file(&f).unwrap_err().to_string().contains("token"));
    }

    #[test]
    fn flags_override_the_file_and_names_derive_from_host_port() {
        let f = write("interval = \"30s\"\n[[target]]\nurl = \"http://a:1\"\n");
        let c = Config::load(&Overrides {
            config: Some(f.path().to_owned()),
            targets: vec![
                "http://127.0.0.1:9464/metrics".into(),
                "b=http://b:2/".into(),
            ],
            interval: Some(Dur::secs(5)),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets[0].name, "127.0.0.1:9464");
        assert_eq!(c.targets[1].name, "b");
        assert_eq!(c.targets[1].url, "http://b:2/metrics");
    }

    #[test]
    fn target_files_are_taken_from_the_config_files_directory() {
        let f = write("target_files = [\"targets/*.json\", \"/etc/w/fleet.json\"]\n");
        let c = load_file(&f).unwrap();
        let dir = f.path().parent().unwrap();
        assert_eq!(
            c.target_files,
            [
                dir.join("targets/*.json").to_string_lossy().into_owned(),
                "/etc/w/fleet.json".to_owned()
            ]
        );
        assert!(c.to_toml().contains("target_files = ["), "{}", c.to_toml());
        let f = write("target_files = [\"/etc/*/fleet.json\"]\n");
        let e = load_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("target_files") && e.contains("last path component"),
            "{e}"
        );
    }

    #[test]
    fn the_default_listen_address_is_default_listen() {
        assert_eq!(
            DEFAULT_LISTEN.parse::<SocketAddr>(),
            Ok(DEFAULT_LISTEN_ADDR)
        );
        assert_eq!(load_file(&write("")).unwrap().listen, DEFAULT_LISTEN_ADDR);
    }

    /// Issue 23: what went wrong is a variant, its parts kept typed; the
    /// message is still `file: key: problem`.
    #[test]
    fn config_errors_say_what_went_wrong_in_their_variant() {
        let missing = PathBuf::from("/nonexistent/watchdog.toml");
        match Config::load(&Overrides {
            config: Some(missing.clone()),
            ..Overrides::default()
        }) {
            Err(ConfigError::Read { file, error }) => {
                assert_eq!(file, missing);
                assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        let f = write("[rules.stuck]\n");
        match load_file(&f) {
            Err(ConfigError::Rules { file, error }) => {
                assert_eq!(file, Origin::File(f.path().to_owned()));
                assert_eq!(error.rule(), "stuck");
            }
            other => panic!("{other:?}"),
        }
        let f = write("record_keep = 5000\n");
        let e = load_file(&f).unwrap_err();
        assert!(
            matches!(
                &e,
                ConfigError::OutOfRange {
                    key: "record_keep",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{}: key `record_keep` must be at most {}",
                f.path().display(),
                crate::record::MAX_KEEP
            )
        );
        let e = Config::load(&Overrides {
            targets: vec!["a=http://x:1".into(), "a=http://y:1".into()],
            ..Overrides::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the command line: two targets are named \"a\"; give them distinct names"
        );
        // The message quotes the cause once, not again as a source.
        assert!(std::error::Error::source(&e).is_none());
        let e = Config::load(&Overrides {
            targets: vec!["ftp://u:hunter2@h:1".into()],
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                &e,
                ConfigError::TargetFlag {
                    error: TargetError::Url {
                        error: crate::target::UrlError::Scheme { .. }
                    },
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "--target ftp://***@h:1: key `url`: \"ftp://***@h:1\": scheme \"ftp\" is not http or https"
        );
        // A named flag keeps its name; the password is masked there too.
        let e = Config::load(&Overrides {
            targets: vec!["orch=http://u:hunter2@h:0/metrics".into()],
            ..Overrides::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--target orch=http://***@h:0/metrics: key `url`: \"http://***@h:0/metrics\": port must be 1-65535"
        );
    }

    /// Issue 21: the rotation keys of `--record`, as numbers or with units;
    /// flags win; nonsense names the key.
    #[test]
    fn record_rotation_keys_read_and_flags_override_them() {
        let f = write(
            "record = \"/var/lib/w/rec.jsonl\"\nrecord_max_bytes = \"64MiB\"\nrecord_keep = 3\n",
        );
        let c = load_file(&f).unwrap();
        assert_eq!(c.record.as_deref(), Some(Path::new("/var/lib/w/rec.jsonl")));
        assert_eq!(c.record_max_bytes, Some(64 << 20));
        assert_eq!(c.record_keep, 3);
        assert!(
            c.to_toml().contains("record_max_bytes = 67108864"),
            "{}",
            c.to_toml()
        );
        let c = Config::load(&Overrides {
            config: Some(f.path().to_owned()),
            record: Some("/tmp/other.jsonl".into()),
            record_max_bytes: Some(ByteSize(1000)),
            record_keep: Some(0),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!((c.record_max_bytes, c.record_keep), (Some(1000), 0));
        assert_eq!(c.record.as_deref(), Some(Path::new("/tmp/other.jsonl")));
        let c = load_file(&write("")).unwrap();
        assert_eq!(c.record_rotation(), Rotation::default());
        for (text, key) in [
            ("record_max_bytes = 0\n", "record_max_bytes"),
            ("record_max_bytes = \"lots\"\n", "record_max_bytes"),
            ("record_keep = 5000\n", "record_keep"),
            ("record_keep = -1\n", "record_keep"),
        ] {
            let e = load_file(&write(text)).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}

#[cfg(test)]
mod example {
    use super::*;

    /// The example config shipped with the crate stays valid and says the defaults.
    #[test]
    fn the_example_config_loads_and_matches_the_defaults() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("watchdog.example.toml");
        let c = Config::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap();
        let defaults = rules_table(&RuleSet::defaults());
        let mut loaded = rules_table(&c.rules);
        // The overrides the example shows on purpose.
        if let Some(toml::Value::Table(t)) = loaded.get_mut("stage_age") {
            t.insert("per_stage".into(), toml::Value::Table(toml::Table::new()));
        }
        if let Some(toml::Value::Table(t)) = loaded.get_mut("stuck_agent") {
            t.insert("per_agent".into(), toml::Value::Table(toml::Table::new()));
        }
        assert_eq!(
            loaded, defaults,
            "the example's rule values drifted from the defaults"
        );
        // Every rule of the one registry has its section in the example.
        let text = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("watchdog.example.toml"),
        )
        .unwrap();
        for name in crate::rules::names() {
            assert!(
                text.contains(&format!("[rules.{name}]")),
                "watchdog.example.toml has no [rules.{name}]: add it"
            );
        }
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.repeat_interval(), crate::engine::DEFAULT_REPEAT_INTERVAL);
    }
}
