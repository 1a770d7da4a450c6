//! Targets from files: `target_files = ["/etc/watchdog/targets/*.json"]`
//! in Prometheus' `file_sd` form (CONTRACT.md section 5), re-read when they
//! change, so a config manager can add and remove orchestrator hosts
//! without a restart.
//!
//! ```json
//! [{"targets": ["10.0.0.5:9464"], "labels": {"name": "orch-1", "token_file": "/etc/watchdog/orch-1.token"}},
//!  {"targets": ["10.0.0.6:9464", "10.0.0.7:9464"]}]
//! ```
//!
//! Each `host:port` is polled at `http://host:port/metrics`. Without a
//! `name` label a target is named by its `host:port`; a `name` names one
//! target, so it may only label a group of one. `token_file` (relative
//! paths are taken from the targets file's directory) is read as the
//! `[[target]]` key is; other labels are ignored, as relabelling is not
//! this tool's business.
//!
//! TLS (file_sd has no per-target TLS in Prometheus, so these are labels
//! of this tool, in the manner of `token_file`): `__scheme__` = `https`
//! polls `https://host:port/metrics` (Prometheus' own label for it; a
//! target written `https://host:port` does the same), and the labels
//! `tls_ca_file`, `tls_cert_file`, `tls_key_file`, `tls_server_name`,
//! `tls_insecure_skip_verify` (`true`/`false`) are the keys of
//! `tls_config` ([`crate::tls`]), paths relative to the targets file.
//!
//! As in Prometheus, only the last path component of a pattern may hold
//! wildcards (`*` any run of characters, `?` one); a relative pattern is
//! taken from the config file's directory.
//!
//! A file is re-read when its size, mtime or inode changes (checked every
//! few seconds: cheap, and it also catches a rename over the file, which is
//! how config managers write). A file that cannot be read or parsed, or
//! that names a target already named elsewhere, is reported (a log line and
//! `watchdog_target_file_errors{file} 1`) and its previous targets are kept:
//! a half-written file never stops the polling of anything. Names are
//! judged from the latest text of all files together at every scan, so a
//! file refused as a duplicate is taken up as soon as the other file lets
//! go of the name, without being touched again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use prometheus::{GaugeVec, Opts, Registry};
use serde::Deserialize;

use crate::target::{Target, TargetError};

/// The largest targets file read (a fleet of thousands is a few hundred KiB).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Name of the gauge that says which files are broken.
pub const ERRORS_GAUGE: &str = "watchdog_target_file_errors";

/// Why the text of a targets file gives no targets (the file itself is
/// named by whoever reports it: [`FileError`], the log line). A cause is a
/// field, not a [`std::error::Error::source`]: the message quotes it.
#[derive(Debug, thiserror::Error)]
pub enum TargetsFileError {
    /// The file cannot be read (or its metadata cannot).
    #[error("cannot read: {error}")]
    Read {
        /// Why.
        error: std::io::Error,
    },
    /// It is a directory, a FIFO, a device...
    #[error("not a regular file")]
    NotRegular,
    /// It is larger than [`MAX_FILE_BYTES`].
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// [`MAX_FILE_BYTES`].
        limit: u64,
    },
    /// It is not JSON of the `file_sd` shape.
    #[error(
        "not a file_sd list ([{{\"targets\": [\"host:port\"], \"labels\": {{...}}}}]): {error}"
    )]
    NotFileSd {
        /// serde_json's error.
        error: serde_json::Error,
    },
    /// A `name` label on a group of more (or fewer) than one target.
    #[error("group {group}: label `name` names one target, but the group lists {count}")]
    NameOfMany {
        /// The group's index in the file.
        group: usize,
        /// How many targets it lists.
        count: usize,
    },
    /// The `tls_*` labels of a group are wrong.
    #[error("group {group}: {problem}")]
    TlsLabels {
        /// The group's index in the file.
        group: usize,
        /// Which label, and why.
        problem: crate::tls::TlsLabelError,
    },
    /// `__scheme__` is not http or https.
    #[error("group {group}: label `__scheme__` is {scheme:?}, not http or https")]
    Scheme {
        /// The group's index in the file.
        group: usize,
        /// The label's value.
        scheme: String,
    },
    /// One target of a group cannot be polled.
    #[error("group {group}, target {target:?}: {error}")]
    Target {
        /// The group's index in the file.
        group: usize,
        /// The target, as written in the file.
        target: String,
        /// Why.
        error: TargetError,
    },
}

/// A `target_files` pattern that cannot be used ([`check_pattern`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A wildcard outside the last path component.
    #[error("target_files pattern {pattern:?}: only its last path component may hold `*` or `?`")]
    WildcardInDirectory {
        /// The pattern, as written.
        pattern: String,
    },
    /// The pattern ends in no file name (`/`, `..`).
    #[error("target_files pattern {pattern:?} names no file (e.g. \"targets/*.json\")")]
    NoFileName {
        /// The pattern, as written.
        pattern: String,
    },
}

/// One group of a `file_sd` file.
#[derive(Debug, Deserialize)]
struct Group {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Reads the targets of one `file_sd` text; `file` names it in errors and
/// anchors relative `token_file` paths.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Target>, TargetsFileError> {
    let groups: Vec<Group> =
        serde_json::from_str(text).map_err(|error| TargetsFileError::NotFileSd { error })?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, g) in groups.into_iter().enumerate() {
        let name = g.labels.get("name").cloned();
        if name.is_some() && g.targets.len() != 1 {
            return Err(TargetsFileError::NameOfMany {
                group: i,
                count: g.targets.len(),
            });
        }
        let token_file = g.labels.get("token_file").map(|t| dir.join(t));
        let tls = crate::tls::from_labels(&g.labels, dir)
            .map_err(|problem| TargetsFileError::TlsLabels { group: i, problem })?;
        let scheme = match g.labels.get("__scheme__").map(String::as_str) {
            None | Some("http") => "http",
            Some("https") => "https",
            Some(other) => {
                return Err(TargetsFileError::Scheme {
                    group: i,
                    scheme: other.to_owned(),
                })
            }
        };
        for t in &g.targets {
            let url = if t.contains("://") {
                t.clone()
            } else {
                format!("{scheme}://{t}")
            };
            let target = Target::new(name.clone(), &url, token_file.clone())
                .and_then(|target| target.with_tls(tls.clone()))
                .map_err(|error| TargetsFileError::Target {
                    group: i,
                    target: t.clone(),
                    error,
                })?;
            out.push(target);
        }
    }
    Ok(out)
}

/// Checks a pattern: wildcards only in the last component.
pub fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    let path = Path::new(pattern);
    let dir = path.parent().map(|d| d.to_string_lossy().into_owned());
    if dir.is_some_and(|d| d.contains(['*', '?'])) {
        return Err(PatternError::WildcardInDirectory {
            pattern: pattern.to_owned(),
        });
    }
    if path.file_name().is_none() {
        return Err(PatternError::NoFileName {
            pattern: pattern.to_owned(),
        });
    }
    Ok(())
}

/// `*` any run of characters, `?` one character; nothing else is special.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative match with one backtrack point: linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The files a pattern matches now, sorted.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let Some(file) = path.file_name().map(|f| f.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    if !file.contains(['*', '?']) {
        return vec![path.to_owned()];
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new(); // a directory not there (yet) has no files
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| wildcard(&file, &e.file_name().to_string_lossy()))
        .map(|e| dir.join(e.file_name()))
        .collect();
    out.sort();
    out
}

/// What identifies one version of a file.
type Signature = (Option<SystemTime>, u64, u64);

fn signature(path: &Path) -> Result<Signature, TargetsFileError> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).map_err(|error| TargetsFileError::Read { error })?;
    if !m.is_file() {
        return Err(TargetsFileError::NotRegular);
    }
    Ok((m.modified().ok(), m.len(), m.ino()))
}

fn read(path: &Path) -> Result<String, TargetsFileError> {
    let f = std::fs::File::open(path).map_err(|error| TargetsFileError::Read { error })?;
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| TargetsFileError::Read { error })?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(TargetsFileError::TooLarge {
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(text)
}

/// Why a file's latest text is not used ([`FileError`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FileProblem {
    /// The file cannot be read, or its text gives no targets. In an
    /// [`Arc`]: a [`TargetsFileError`] may hold an I/O error, which is not
    /// `Clone`, and the problem is kept from scan to scan.
    #[error("{error}")]
    Unusable {
        /// Why.
        error: Arc<TargetsFileError>,
    },
    /// The file names one target twice.
    #[error("two targets are named {name:?}; give them distinct names")]
    NamedTwice {
        /// The name.
        name: String,
    },
    /// The file names a target that `[[target]]` or another file names.
    #[error("two targets are named {name:?} (here and in [[target]] or another targets file); give them distinct names")]
    NameTaken {
        /// The name.
        name: String,
    },
}

impl FileProblem {
    /// It names a target already named (a config error at start).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::NamedTwice { .. } | Self::NameTaken { .. })
    }
}

/// Two problems are the same when they read the same: a problem is
/// reported again only when what it says changes (the causes inside, an
/// I/O error, a JSON error, have no equality of their own).
impl PartialEq for FileProblem {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for FileProblem {}

#[derive(Debug)]
struct FileState {
    signature: Option<Signature>,
    /// What the file said when last read: its targets, or why they cannot be used.
    latest: Result<Vec<Target>, FileProblem>,
    /// The targets in use: `latest` unless it was refused, then the previous ones.
    targets: Vec<Target>,
    /// The problem of this scan, if any.
    problem: Option<FileProblem>,
    /// The problem of the scan before (one is reported when it starts or changes).
    reported: Option<FileProblem>,
    /// Read again in this scan (its problem, if any, is reported afresh).
    reread: bool,
}

impl Default for FileState {
    fn default() -> Self {
        Self {
            signature: None,
            latest: Ok(Vec::new()),
            targets: Vec::new(),
            problem: None,
            reported: None,
            reread: false,
        }
    }
}

impl FileState {
    /// Its latest text asks for something other than what is in use.
    fn wants_change(&self) -> bool {
        self.latest.as_ref().is_ok_and(|t| *t != self.targets)
    }
}

/// What a scan found wrong with one file (its previous targets are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub file: PathBuf,
    /// Why; [`FileProblem::is_duplicate`] when it names a target already
    /// named elsewhere (a config error at start).
    pub error: FileProblem,
}

/// The targets files and what each last gave.
#[derive(Debug)]
pub struct TargetFiles {
    patterns: Vec<String>,
    files: BTreeMap<PathBuf, FileState>,
    gauge: Option<GaugeVec>,
}

impl TargetFiles {
    /// Watches `patterns` (already checked, made absolute by the config);
    /// with `registry`, broken files show as `watchdog_target_file_errors`.
    pub fn new(patterns: Vec<String>, registry: Option<&Registry>) -> Self {
        let gauge = registry.and_then(|r| {
            let g = GaugeVec::new(
                Opts::new(
                    ERRORS_GAUGE,
                    "1 when the last read of a target_files file failed (its previous targets are kept), else 0.",
                ),
                &["file"],
            )
            .ok()?;
            match r.register(Box::new(g.clone())) {
                Ok(()) => Some(g),
                Err(e) => {
                    tracing::error!(error = %e, "target file gauge not registered");
                    None
                }
            }
        });
        Self {
            patterns,
            files: BTreeMap::new(),
            gauge,
        }
    }

    /// Watches other patterns from now on (a reload); the next scan reads them.
    pub fn set_patterns(&mut self, patterns: Vec<String>) {
        self.patterns = patterns;
    }

    /// Whether any pattern is configured.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Every target the files give now, in file order.
    pub fn targets(&self) -> Vec<Target> {
        self.files
            .values()
            .flat_map(|f| f.targets.iter().cloned())
            .collect()
    }

    /// Looks at every file again: files that appeared or changed are read,
    /// files that went away drop their targets. `fixed` are the names of
    /// the `[[target]]` targets, which a file may not take. Returns whether
    /// the set of targets changed, and the errors met this time (each file's
    /// error is reported once, until it changes).
    ///
    /// The targets in use are judged from all files together, every scan:
    /// a file refused for naming a target another file names is taken up
    /// at the first scan where that other file no longer does, so a target
    /// moved from one file to another (added to its new file first) is
    /// never dropped.
    pub fn scan(&mut self, fixed: &BTreeSet<String>) -> (bool, Vec<FileError>) {
        let mut now: BTreeSet<PathBuf> = BTreeSet::new();
        for p in &self.patterns {
            now.extend(expand(p));
        }
        let mut changed = false;
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|f| !now.contains(*f))
            .cloned()
            .collect();
        for f in gone {
            if let Some(state) = self.files.remove(&f) {
                changed |= !state.targets.is_empty();
                tracing::info!(file = %f.display(), targets = state.targets.len(), "targets file gone");
            }
            if let Some(g) = &self.gauge {
                let _ = g.remove_label_values(&[&f.to_string_lossy()]);
            }
        }
        for file in now {
            let state = self.files.entry(file.clone()).or_default();
            refresh(&file, state);
        }
        changed |= self.judge(fixed);
        let mut errors = Vec::new();
        for (file, state) in &mut self.files {
            let reread = std::mem::take(&mut state.reread);
            if let Some(p) = &state.problem {
                if reread || state.reported.as_ref() != Some(p) {
                    tracing::error!(file = %file.display(), error = %p, kept = state.targets.len(),
                        "targets file not used; its previous targets are kept");
                    errors.push(FileError {
                        file: file.clone(),
                        error: p.clone(),
                    });
                }
            } else if state.reported.is_some() {
                tracing::info!(file = %file.display(), targets = state.targets.len(), "targets file used again");
            }
            state.reported = state.problem.clone();
            if let Some(g) = &self.gauge {
                if let Ok(g) = g.get_metric_with_label_values(&[&file.to_string_lossy()]) {
                    g.set(if state.problem.is_some() { 1.0 } else { 0.0 });
                }
            }
        }
        (changed, errors)
    }

    /// Decides which targets each file gives, from every file's latest
    /// text; returns whether that changed anything. Names are taken by
    /// `fixed` first, then by the files whose targets in use stand as they
    /// are, then by the files that ask for a change, in name order: a file
    /// that would take a name already taken is refused and keeps its
    /// previous targets (less any name taken meanwhile).
    fn judge(&mut self, fixed: &BTreeSet<String>) -> bool {
        let mut order: Vec<&PathBuf> = self.files.keys().collect();
        // Stable: name order within each half.
        order.sort_by_key(|f| self.files.get(*f).is_some_and(FileState::wants_change));
        let order: Vec<PathBuf> = order.into_iter().cloned().collect();
        let mut taken = fixed.clone();
        let mut changed = false;
        for file in order {
            let Some(state) = self.files.get_mut(&file) else {
                continue;
            };
            let (targets, problem) = match &state.latest {
                Ok(latest) => match clash(latest, &taken) {
                    None => (latest.clone(), None),
                    Some(name) => (
                        without(&state.targets, &taken),
                        Some(FileProblem::NameTaken { name }),
                    ),
                },
                Err(p) => (without(&state.targets, &taken), Some(p.clone())),
            };
            taken.extend(targets.iter().map(|t| t.name.clone()));
            if targets != state.targets {
                changed = true;
                tracing::info!(file = %file.display(), targets = targets.len(), "targets file used");
            }
            state.targets = targets;
            state.problem = problem;
        }
        changed
    }
}

/// Reads `file` again when it changed since `state` was made.
fn refresh(file: &Path, state: &mut FileState) {
    let sig = signature(file);
    let unchanged = match (&sig, &state.signature) {
        (Ok(s), Some(old)) => s == old,
        (Err(_), None) => state.latest.is_err(),
        _ => false,
    };
    if unchanged {
        return;
    }
    state.signature = sig.as_ref().ok().copied();
    state.reread = true;
    state.latest = sig
        .and_then(|_| read(file))
        .and_then(|text| parse(&text, file))
        .map_err(|error| FileProblem::Unusable {
            error: Arc::new(error),
        })
        .and_then(|targets| match clash(&targets, &BTreeSet::new()) {
            None => Ok(targets),
            Some(name) => Err(FileProblem::NamedTwice { name }),
        });
}

/// The first name of `targets` already in `taken` or given twice.
fn clash(targets: &[Target], taken: &BTreeSet<String>) -> Option<String> {
    let mut seen = BTreeSet::new();
    targets
        .iter()
        .find(|t| taken.contains(&t.name) || !seen.insert(t.name.as_str()))
        .map(|t| t.name.clone())
}

/// `targets` less those whose name is taken.
fn without(targets: &[Target], taken: &BTreeSet<String>) -> Vec<Target> {
    targets
        .iter()
        .filter(|t| !taken.contains(&t.name))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell_in_one_component() {
        assert!(wildcard("*.json", "a.json"));
        assert!(wildcard("*.json", ".json"));
        assert!(!wildcard("*.json", "a.json.tmp"));
        assert!(wildcard("orch-?.json", "orch-1.json"));
        assert!(!wildcard("orch-?.json", "orch-12.json"));
        assert!(wildcard("*-*.json", "a-b-c.json"));
        assert!(wildcard("*", ""));
        assert!(check_pattern("/etc/w/*/x.json").is_err());
        assert!(check_pattern("/etc/w/*.json").is_ok());
    }

    #[test]
    fn a_file_sd_file_gives_named_and_unnamed_targets() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t.token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let file = dir.path().join("fleet.json");
        let text = r#"[{"targets": ["10.0.0.5:9464"], "labels": {"name": "orch-1", "token_file": "t.token", "team": "x"}},
                       {"targets": ["10.0.0.6:9464", "h7:9464"]}]"#;
        let t = parse(text, &file).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].name, "orch-1");
        assert_eq!(t[0].url, "http://10.0.0.5:9464/metrics");
        assert_eq!(t[0].token.as_deref(), Some("s3cret"));
        assert_eq!(t[1].name, "10.0.0.6:9464");
        assert_eq!(t[2].url, "http://h7:9464/metrics");
        let e = parse(
            r#"[{"targets": ["a:1", "b:2"], "labels": {"name": "x"}}]"#,
            &file,
        )
        .unwrap_err();
        assert!(
            matches!(e, TargetsFileError::NameOfMany { group: 0, count: 2 }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "group 0: label `name` names one target, but the group lists 2"
        );
        assert!(parse("{\"targets\": []}", &file)
            .unwrap_err()
            .to_string()
            .contains("file_sd"));
        let e = parse(r#"[{"targets": ["a:0"]}]"#, &file).unwrap_err();
        assert!(
            matches!(&e, TargetsFileError::Target { group: 0, target, .. } if target == "a:0"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "group 0, target \"a:0\": key `url`: \"http://a:0\": port must be 1-65535"
        );
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn a_scan_follows_changes_and_keeps_the_targets_of_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("*.json").to_string_lossy().into_owned();
        let registry = Registry::new();
        let mut files = TargetFiles::new(vec![pattern], Some(&registry));
        let fixed = BTreeSet::from(["fixed".to_owned()]);
        assert_eq!(files.scan(&fixed), (false, vec![]));

        let a = dir.path().join("a.json");
        std::fs::write(&a, r#"[{"targets": ["h:1"], "labels": {"name": "one"}}]"#).unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "x").unwrap();
        assert_eq!(files.scan(&fixed), (true, vec![]));
        assert_eq!(files.targets()[0].name, "one");
        assert_eq!(
            files.scan(&fixed),
            (false, vec![]),
            "unchanged: not re-read"
        );

        std::fs::write(
            &a,
            r#"[{"targets": ["h:1"], "labels": {"name": "one"}}, {"tar"#,
        )
        .unwrap();
        let (changed, errors) = files.scan(&fixed);
        assert!(!changed);
        assert_eq!(errors.len(), 1);
        assert_eq!(files.targets().len(), 1, "previous targets kept");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(&format!("{ERRORS_GAUGE}{{file=\"{}\"}} 1", a.display())),
            "{text}"
        );
        assert_eq!(files.scan(&fixed), (false, vec![]), "reported once");

        // A name taken by [[target]] or another file: that file is refused.
        let b = dir.path().join("b.json");
        std::fs::write(&b, r#"[{"targets": ["h:2"], "labels": {"name": "fixed"}}]"#).unwrap();
        let (changed, errors) = files.scan(&fixed);
        assert!(
            !changed && errors[0].error.to_string().contains("\"fixed\""),
            "{errors:?}"
        );

        std::fs::write(&a, r#"[{"targets": ["h:1", "h:3"]}]"#).unwrap();
        std::fs::remove_file(&b).unwrap();
        assert_eq!(files.scan(&fixed), (true, vec![]));
        let names: Vec<String> = files.targets().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["h:1", "h:3"]);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(&format!("{ERRORS_GAUGE}{{file=\"{}\"}} 0", a.display())),
            "{text}"
        );
        assert!(
            !text.contains("b.json"),
            "a gone file's series goes: {text}"
        );

        std::fs::remove_file(&a).unwrap();
        assert_eq!(files.scan(&fixed), (true, vec![]));
        assert!(files.targets().is_empty());
    }

    /// Issue 24 item 2: a target moved from one file to another (first
    /// added to its new file, then removed from its old one) is never
    /// dropped, and the file refused meanwhile is taken up again at the
    /// next scan, with no change of its own.
    #[test]
    fn a_target_moved_between_files_stays_and_the_refused_file_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("*.json").to_string_lossy().into_owned();
        let mut files = TargetFiles::new(vec![pattern], None);
        let fixed = BTreeSet::new();
        let a = dir.path().join("a.json");
        let z = dir.path().join("z.json");
        std::fs::write(
            &a,
            r#"[{"targets": ["h:1"], "labels": {"name": "orch-a"}}]"#,
        )
        .unwrap();
        std::fs::write(
            &z,
            r#"[{"targets": ["h:9"], "labels": {"name": "orch-x"}}]"#,
        )
        .unwrap();
        assert_eq!(files.scan(&fixed), (true, vec![]));
        let names =
            |f: &TargetFiles| -> Vec<String> { f.targets().into_iter().map(|t| t.name).collect() };

        // a.json takes orch-x while z.json still names it: a.json is
        // refused, and both targets stay.
        std::fs::write(
            &a,
            r#"[{"targets": ["h:1"], "labels": {"name": "orch-a"}},
                {"targets": ["h:9"], "labels": {"name": "orch-x"}}]"#,
        )
        .unwrap();
        let (changed, errors) = files.scan(&fixed);
        assert!(!changed);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, a);
        assert!(
            errors[0].error.is_duplicate() && errors[0].error.to_string().contains("orch-x"),
            "{errors:?}"
        );
        assert_eq!(names(&files), ["orch-a", "orch-x"]);

        // z.json lets go of it: a.json now holds, without being touched.
        let tmp = dir.path().join("z.tmp");
        std::fs::write(&tmp, "[]").unwrap();
        std::fs::rename(&tmp, &z).unwrap();
        let (_, errors) = files.scan(&fixed);
        assert_eq!(errors, vec![]);
        assert_eq!(names(&files), ["orch-a", "orch-x"], "orch-x never dropped");
        assert_eq!(files.targets()[1].url, "http://h:9/metrics");
        assert_eq!(files.scan(&fixed), (false, vec![]));

        // A refused file is retried every scan: z.json takes orch-x back
        // (refused: a.json has it); a.json drops it; z.json then holds.
        std::fs::write(
            &z,
            r#"[{"targets": ["h:9"], "labels": {"name": "orch-x"}}]"#,
        )
        .unwrap();
        let (changed, errors) = files.scan(&fixed);
        assert!(
            !changed && errors.len() == 1 && errors[0].file == z,
            "{errors:?}"
        );
        std::fs::write(
            &a,
            r#"[{"targets": ["h:1"], "labels": {"name": "orch-a"}}]"#,
        )
        .unwrap();
        let (_, errors) = files.scan(&fixed);
        assert_eq!(errors, vec![]);
        assert_eq!(names(&files), ["orch-a", "orch-x"]);
    }
}
