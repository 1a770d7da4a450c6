//! The one reader: bytes in, an [`Envelope`] plus the problems found.
//!
//! Live polls, `check`, `replay` and `validate` all go through here, so
//! they cannot disagree about a body. It works in two steps and builds no
//! `serde_json::Value` tree:
//! 1. one pass over the bytes reads the top level, keeping each known key's
//!    value as borrowed raw JSON ([`RawValue`]) and skipping unknown keys;
//! 2. each section is then read into its typed form on its own, straight
//!    from its raw text. A section that fails is a [`Problem`] with its JSON
//!    path, is read as its safe default and is added to `degraded`, exactly
//!    as if the emitter had failed to collect it; the others stand.
//!
//! What makes the whole read fail ([`ReadError`]) is only what leaves nothing
//! usable: not JSON (invalid UTF-8 included), not an object, no
//! `schema_version`, a version this reader does not know, or no usable
//! `generated_at` (without a clock no delta can be computed).
//!
//! Lists are capped ([`crate::envelope::caps`]): past the cap the rest is
//! skipped without allocating and a problem says "`path` truncated at N";
//! the items kept stand and the section is not degraded. So the memory a body
//! costs is bounded by its size, whatever it holds (issue 15 #8).
//!
//! Unknown keys are skipped as JSON syntax only: a number beyond `f64`
//! range or a lone UTF-16 surrogate escape inside an unknown key's value is
//! not an error (the contract: readers ignore keys they do not know). The
//! same in a known key is a problem of that key's section.

use std::fmt;

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;

use crate::envelope::{capped_vec, caps, Envelope, Section};
use crate::{Timestamp, SCHEMA_VERSION};

/// The result of reading a body that has a supported `schema_version`.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Reading {
    /// The emitter's kill-switch is off: `{"schema_version":1,"enabled":false}`.
    Disabled,
    /// An enabled envelope; `problems` lists what was set aside while reading.
    Enabled {
        /// The envelope, with unreadable sections defaulted and marked degraded.
        envelope: Envelope,
        /// What could not be read, each with its JSON path.
        problems: Vec<Problem>,
    },
}

/// One thing wrong with an envelope, named by its JSON path (`agents[3].pid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `$`-less JSON path, e.g. `queue.counts.queued` or `agents[0]`.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a body could not be read at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// The body is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("not a JSON object (found {0})")]
    NotAnObject(&'static str),
    /// The object has no `schema_version` key.
    #[error("no schema_version")]
    MissingSchemaVersion,
    /// `schema_version` is not a non-negative integer.
    #[error("schema_version is not a non-negative integer (found {0})")]
    InvalidSchemaVersion(String),
    /// The emitter speaks a newer major version than this reader.
    #[error("schema_version {found} is newer than the supported {supported}")]
    NewerVersion {
        /// The version in the body.
        found: u64,
        /// The newest version this reader knows.
        supported: u64,
    },
    /// The emitter speaks a version older than any this reader knows.
    #[error("schema_version {found} is older than the supported {supported}")]
    OlderVersion {
        /// The version in the body.
        found: u64,
        /// The oldest version this reader knows.
        supported: u64,
    },
    /// A key without which the envelope is unusable is missing or wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// JSON path of the key.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads an envelope from raw bytes. See the module docs for what fails.
pub fn read_envelope(bytes: &[u8]) -> Result<Reading, ReadError> {
    let text = utf8(bytes)?;
    let top = Top::scan(text)?;
    read_top(&top)
}

/// Reads an envelope from an already parsed JSON value (for tests and
/// tools that build bodies as values): written out and read by
/// [`read_envelope`], so there is only one reader.
pub fn read_value(value: serde_json::Value) -> Result<Reading, ReadError> {
    let bytes = serde_json::to_vec(&value).map_err(|e| ReadError::NotJson(e.to_string()))?;
    read_envelope(&bytes)
}

/// The body as text: JSON is UTF-8, and checking it once here also covers
/// the unknown keys, whose strings the skip does not look into.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, ReadError> {
    std::str::from_utf8(bytes).map_err(|e| ReadError::NotJson(format!("invalid UTF-8: {e}")))
}

/// The top level of a body: each key the contract knows, as raw JSON.
#[derive(Debug, Default)]
pub(crate) struct Top<'a> {
    pub(crate) schema_version: Option<&'a RawValue>,
    pub(crate) enabled: Option<&'a RawValue>,
    pub(crate) generated_at: Option<&'a RawValue>,
    pub(crate) monotonic_ms: Option<&'a RawValue>,
    pub(crate) boot_id: Option<&'a RawValue>,
    pub(crate) host: Option<&'a RawValue>,
    pub(crate) clk_tck: Option<&'a RawValue>,
    pub(crate) degraded: Option<&'a RawValue>,
    /// Indexed as [`Section::ALL`].
    pub(crate) sections: [Option<&'a RawValue>; 6],
}

/// A top-level key, matched without allocating.
enum Key {
    SchemaVersion,
    Enabled,
    GeneratedAt,
    MonotonicMs,
    BootId,
    Host,
    ClkTck,
    Degraded,
    Section(usize),
    Other,
}

impl Key {
    fn of(s: &str) -> Key {
        match s {
            "schema_version" => Key::SchemaVersion,
            "enabled" => Key::Enabled,
            "generated_at" => Key::GeneratedAt,
            "monotonic_ms" => Key::MonotonicMs,
            "boot_id" => Key::BootId,
            "host" => Key::Host,
            "clk_tck" => Key::ClkTck,
            "degraded" => Key::Degraded,
            other => match Section::ALL.iter().position(|s| s.as_str() == other) {
                Some(i) => Key::Section(i),
                None => Key::Other,
            },
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(Key::of(s))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// The top level, or the JSON kind found instead of an object.
#[allow(clippy::large_enum_variant)] // one per read, on the stack, never in a collection
enum TopOrNot<'a> {
    Top(Top<'a>),
    Not(&'static str),
}

impl<'de> serde::Deserialize<'de> for TopOrNot<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopOrNot<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut top = Top::default();
                // A repeated key: the last one wins, as in any JSON object.
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::SchemaVersion => &mut top.schema_version,
                        Key::Enabled => &mut top.enabled,
                        Key::GeneratedAt => &mut top.generated_at,
                        Key::MonotonicMs => &mut top.monotonic_ms,
                        Key::BootId => &mut top.boot_id,
                        Key::Host => &mut top.host,
                        Key::ClkTck => &mut top.clk_tck,
                        Key::Degraded => &mut top.degraded,
                        Key::Section(i) => &mut top.sections[i],
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<&'de RawValue>()?);
                }
                Ok(TopOrNot::Top(top))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TopOrNot::Not("an array"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(TopOrNot::Not("null"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(TopOrNot::Not("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(TopOrNot::Not("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(TopOrNot::Not("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(TopOrNot::Not("a number"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(TopOrNot::Not("a string"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'a> Top<'a> {
    /// One pass over `text`: every known key kept raw, unknown keys skipped.
    pub(crate) fn scan(text: &'a str) -> Result<Top<'a>, ReadError> {
        match serde_json::from_str::<TopOrNot<'a>>(text) {
            Ok(TopOrNot::Top(top)) => Ok(top),
            Ok(TopOrNot::Not(kind)) => Err(ReadError::NotAnObject(kind)),
            Err(e) => Err(ReadError::NotJson(e.to_string())),
        }
    }

    /// The raw value of top-level `key`, when the body has it (known keys only).
    pub(crate) fn get(&self, key: &str) -> Option<&'a RawValue> {
        match Key::of(key) {
            Key::SchemaVersion => self.schema_version,
            Key::Enabled => self.enabled,
            Key::GeneratedAt => self.generated_at,
            Key::MonotonicMs => self.monotonic_ms,
            Key::BootId => self.boot_id,
            Key::Host => self.host,
            Key::ClkTck => self.clk_tck,
            Key::Degraded => self.degraded,
            Key::Section(i) => self.sections[i],
            Key::Other => None,
        }
    }

    fn section(&self, s: Section) -> Option<&'a RawValue> {
        self.sections[s as usize]
    }

    /// `schema_version`, checked: present, an integer, and one we read.
    pub(crate) fn version(&self) -> Result<u64, ReadError> {
        let Some(raw) = self.schema_version else {
            return Err(ReadError::MissingSchemaVersion);
        };
        let version = serde_json::from_str::<u64>(raw.get())
            .map_err(|_| ReadError::InvalidSchemaVersion(excerpt(raw.get())))?;
        match version {
            v if v > SCHEMA_VERSION => Err(ReadError::NewerVersion {
                found: v,
                supported: SCHEMA_VERSION,
            }),
            0 => Err(ReadError::OlderVersion {
                found: 0,
                supported: 1,
            }),
            v => Ok(v),
        }
    }
}

/// The JSON kind of a raw value, from its first byte.
pub(crate) fn raw_kind(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw_kind(raw) == "null"
}

/// At most 40 characters of a raw value, for messages.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

fn read_top(top: &Top<'_>) -> Result<Reading, ReadError> {
    let version = top.version()?;
    let mut problems = Vec::new();

    if let Some(raw) = top.enabled {
        match raw.get() {
            "false" => return Ok(Reading::Disabled),
            "true" | "null" => {}
            _ => problems.push(problem(
                "enabled",
                format!("expected a boolean, found {}", raw_kind(raw)),
            )),
        }
    }

    let generated_at = match top.generated_at {
        Some(raw) if raw_kind(raw) == "a string" => {
            let text: std::borrow::Cow<'_, str> =
                serde_json::from_str(raw.get()).map_err(|e| ReadError::Invalid {
                    path: "generated_at".into(),
                    message: message_of(&e),
                })?;
            Timestamp::parse(&text).map_err(|e| ReadError::Invalid {
                path: "generated_at".into(),
                message: e.to_string(),
            })?
        }
        None => return Err(missing_clock()),
        Some(raw) if is_null(raw) => return Err(missing_clock()),
        Some(raw) => {
            return Err(ReadError::Invalid {
                path: "generated_at".into(),
                message: format!("expected an RFC 3339 string, found {}", raw_kind(raw)),
            })
        }
    };

    let mut env = Envelope::new(generated_at);
    env.schema_version = version;
    env.monotonic_ms = optional(top.monotonic_ms, "monotonic_ms", &mut problems);
    env.boot_id = optional(top.boot_id, "boot_id", &mut problems);
    env.host = optional(top.host, "host", &mut problems);
    env.clk_tck = optional(top.clk_tck, "clk_tck", &mut problems);
    env.degraded = top
        .degraded
        .filter(|raw| !is_null(raw))
        .and_then(|raw| {
            capped_list::<_, { caps::DEGRADED }>(raw, "degraded", &mut problems)
                .map_err(|p| problems.push(p))
                .ok()
        })
        .unwrap_or_default();

    // Arrays first, then objects: the order problems have always come in.
    for section in [
        Section::Stages,
        Section::Agents,
        Section::Queue,
        Section::Cost,
        Section::Reconciler,
        Section::Errors,
    ] {
        let raw = top.section(section);
        match section {
            // A required array that is missing or null is unknown, which for
            // the rules is the same as a failed collection: degraded.
            Section::Stages => {
                env.stages =
                    section_array::<_, { caps::STAGES }>(raw, section, &mut env, &mut problems)
            }
            Section::Agents => {
                env.agents =
                    section_array::<_, { caps::AGENTS }>(raw, section, &mut env, &mut problems)
            }
            Section::Queue => env.queue = section_object(raw, section, &mut env, &mut problems),
            Section::Cost => env.cost = section_object(raw, section, &mut env, &mut problems),
            Section::Reconciler => {
                env.reconciler = section_object(raw, section, &mut env, &mut problems)
            }
            Section::Errors => env.errors = section_object(raw, section, &mut env, &mut problems),
        }
    }
    nested_caps(&mut env, &mut problems);

    Ok(Reading::Enabled {
        envelope: env,
        problems,
    })
}

fn missing_clock() -> ReadError {
    ReadError::Invalid {
        path: "generated_at".into(),
        message: "missing; an enabled envelope needs its clock".into(),
    }
}

/// An optional top-level key: missing or `null` is `None`; a wrong type is a
/// problem and also `None`.
fn optional<T: DeserializeOwned>(
    raw: Option<&RawValue>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let raw = raw.filter(|r| !is_null(r))?;
    parse_at::<T>(key, raw).map_err(|p| problems.push(p)).ok()
}

fn section_array<T: DeserializeOwned, const N: usize>(
    raw: Option<&RawValue>,
    section: Section,
    env: &mut Envelope,
    problems: &mut Vec<Problem>,
) -> Vec<T> {
    let Some(raw) = raw.filter(|r| !is_null(r)) else {
        env.mark_degraded(section);
        return Vec::new();
    };
    capped_list::<T, N>(raw, section.as_str(), problems).unwrap_or_else(|p| {
        problems.push(p);
        env.mark_degraded(section);
        Vec::new()
    })
}

/// A list of at most `N + 1` items (see `envelope::capped_vec`).
struct Capped<T, const N: usize>(Vec<T>);

impl<'de, T: serde::Deserialize<'de>, const N: usize> serde::Deserialize<'de> for Capped<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        capped_vec(d, N).map(Capped)
    }
}

/// A list read with its cap `N`: past it, the rest is skipped and said.
fn capped_list<T: DeserializeOwned, const N: usize>(
    raw: &RawValue,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Result<Vec<T>, Problem> {
    let mut items = parse_at::<Capped<T, N>>(path, raw)?.0;
    cut(&mut items, path, N, problems);
    Ok(items)
}

/// Truncates a list read with one item past its cap, and says so.
fn cut<T>(items: &mut Vec<T>, path: &str, cap: usize, problems: &mut Vec<Problem>) {
    if items.len() > cap {
        items.truncate(cap);
        items.shrink_to_fit();
        problems.push(problem(
            path,
            format!("{path} truncated at {cap}: the rest is not read"),
        ));
    }
}

/// The lists and maps inside sections, read with one item past their cap.
fn nested_caps(env: &mut Envelope, problems: &mut Vec<Problem>) {
    if let Some(q) = env.queue.as_mut() {
        if q.counts.len() > caps::MAP_ENTRIES {
            // Keep the statuses the contract names; drop the last of the rest.
            let extra = q
                .counts
                .keys()
                .rev()
                .find(|k| !crate::envelope::REQUIRED_JOB_STATUSES.contains(&k.as_str()))
                .cloned();
            if let Some(k) = extra {
                q.counts.remove(&k);
            }
            problems.push(problem(
                "queue.counts",
                format!(
                    "queue.counts truncated at {}: the rest is not read",
                    caps::MAP_ENTRIES
                ),
            ));
        }
    }
    if let Some(c) = env.cost.as_mut() {
        cut(&mut c.running, "cost.running", caps::COST_RUNNING, problems);
    }
    if let Some(r) = env.reconciler.as_mut() {
        cut(
            &mut r.invariant_violations,
            "reconciler.invariant_violations",
            caps::INVARIANT_VIOLATIONS,
            problems,
        );
        if let Some(m) = r.actions_by_type.as_mut() {
            if m.len() > caps::MAP_ENTRIES {
                m.pop_last();
                problems.push(problem(
                    "reconciler.actions_by_type",
                    format!(
                        "reconciler.actions_by_type truncated at {}: the rest is not read",
                        caps::MAP_ENTRIES
                    ),
                ));
            }
        }
    }
    if let Some(e) = env.errors.as_mut() {
        cut(
            &mut e.by_subsystem,
            "errors.by_subsystem",
            caps::BY_SUBSYSTEM,
            problems,
        );
    }
}

fn section_object<T: DeserializeOwned>(
    raw: Option<&RawValue>,
    section: Section,
    env: &mut Envelope,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let raw = raw.filter(|r| !is_null(r))?;
    let parsed = if raw_kind(raw) == "an object" {
        parse_at::<T>(section.as_str(), raw)
    } else {
        Err(problem(
            section.as_str(),
            format!("expected an object or null, found {}", raw_kind(raw)),
        ))
    };
    parsed
        .map_err(|p| {
            problems.push(p);
            env.mark_degraded(section);
        })
        .ok()
}

/// Deserialises `raw` as `T`, naming the failing path below `prefix`.
///
/// The common case (it reads) takes one plain typed pass; only a failure
/// is read again with path tracking, to name where.
fn parse_at<T: DeserializeOwned>(prefix: &str, raw: &RawValue) -> Result<T, Problem> {
    if let Ok(t) = serde_json::from_str::<T>(raw.get()) {
        return Ok(t);
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(t) => Ok(t), // not reached: the same bytes failed above
        Err(err) => {
            let inner = err.path().to_string();
            let path = if inner == "." || inner.is_empty() {
                prefix.to_owned()
            } else if inner.starts_with('[') {
                format!("{prefix}{inner}")
            } else {
                format!("{prefix}.{inner}")
            };
            Err(problem(&path, message_of(err.inner())))
        }
    }
}

/// A serde_json error in words, without its line and column: they count
/// inside one section's text and would only mislead.
fn message_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(s) => s.to_owned(),
        None => text,
    }
}

pub(crate) fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// A short name for the JSON type of `v`, for messages.
pub(crate) fn kind_of(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
