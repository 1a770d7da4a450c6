//! The tolerant reader: bytes in, an [`Envelope`] plus the problems found.
//!
//! What makes the whole read fail ([`ReadError`]) is only what leaves nothing
//! usable: not JSON, not an object, no `schema_version`, a version this
//! reader does not know, or no usable `generated_at` (without a clock no
//! delta can be computed). Everything else is a [`Problem`] with its JSON
//! path: the section it sits in is read as its safe default and added to
//! `degraded`, exactly as if the emitter had failed to collect it, and the
//! other sections stay usable.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::envelope::{Envelope, SECTIONS};
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
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ReadError::NotJson(e.to_string()))?;
    read_value(value)
}

/// Reads an envelope from an already parsed JSON value.
pub fn read_value(value: Value) -> Result<Reading, ReadError> {
    let Value::Object(mut obj) = value else {
        return Err(ReadError::NotAnObject(kind_of(&value)));
    };
    let version = schema_version(&obj)?;
    let mut problems = Vec::new();

    match obj.get("enabled") {
        Some(Value::Bool(false)) => return Ok(Reading::Disabled),
        None | Some(Value::Null) | Some(Value::Bool(true)) => {}
        Some(other) => problems.push(problem(
            "enabled",
            format!("expected a boolean, found {}", kind_of(other)),
        )),
    }

    let generated_at = match obj.get("generated_at") {
        Some(Value::String(s)) => Timestamp::parse(s).map_err(|e| ReadError::Invalid {
            path: "generated_at".into(),
            message: e.to_string(),
        })?,
        None | Some(Value::Null) => {
            return Err(ReadError::Invalid {
                path: "generated_at".into(),
                message: "missing; an enabled envelope needs its clock".into(),
            })
        }
        Some(other) => {
            return Err(ReadError::Invalid {
                path: "generated_at".into(),
                message: format!("expected an RFC 3339 string, found {}", kind_of(other)),
            })
        }
    };

    let mut env = Envelope::new(generated_at);
    env.schema_version = version;
    env.monotonic_ms = optional(&mut obj, "monotonic_ms", &mut problems);
    env.boot_id = optional(&mut obj, "boot_id", &mut problems);
    env.host = optional(&mut obj, "host", &mut problems);
    env.clk_tck = optional(&mut obj, "clk_tck", &mut problems);
    env.degraded = optional::<Vec<String>>(&mut obj, "degraded", &mut problems).unwrap_or_default();

    // A required array that is missing or null is unknown, which for the
    // rules is the same as a failed collection: mark it degraded.
    env.stages = section_array(&mut obj, "stages", &mut env.degraded, &mut problems);
    env.agents = section_array(&mut obj, "agents", &mut env.degraded, &mut problems);
    env.queue = section_object(&mut obj, "queue", &mut env.degraded, &mut problems);
    env.cost = section_object(&mut obj, "cost", &mut env.degraded, &mut problems);
    env.reconciler = section_object(&mut obj, "reconciler", &mut env.degraded, &mut problems);
    env.errors = section_object(&mut obj, "errors", &mut env.degraded, &mut problems);
    debug_assert!(SECTIONS.len() == 6, "every section is read above");

    Ok(Reading::Enabled {
        envelope: env,
        problems,
    })
}

fn schema_version(obj: &Map<String, Value>) -> Result<u64, ReadError> {
    let version = match obj.get("schema_version") {
        None => return Err(ReadError::MissingSchemaVersion),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| ReadError::InvalidSchemaVersion(n.to_string()))?,
        Some(other) => return Err(ReadError::InvalidSchemaVersion(other.to_string())),
    };
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

/// An optional top-level key: missing or `null` is `None`; a wrong type is a
/// problem and also `None`.
fn optional<T: DeserializeOwned>(
    obj: &mut Map<String, Value>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match obj.remove(key) {
        None | Some(Value::Null) => None,
        Some(v) => match parse_at::<T>(key, v) {
            Ok(t) => Some(t),
            Err(p) => {
                problems.push(p);
                None
            }
        },
    }
}

fn section_array<T: DeserializeOwned>(
    obj: &mut Map<String, Value>,
    key: &str,
    degraded: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) -> Vec<T> {
    let parsed = match obj.remove(key) {
        None | Some(Value::Null) => {
            mark(degraded, key);
            return Vec::new();
        }
        Some(v) => parse_at::<Vec<T>>(key, v),
    };
    parsed.unwrap_or_else(|p| {
        problems.push(p);
        mark(degraded, key);
        Vec::new()
    })
}

fn section_object<T: DeserializeOwned>(
    obj: &mut Map<String, Value>,
    key: &str,
    degraded: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match obj.remove(key) {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => parse_at::<T>(key, v)
            .map_err(|p| {
                problems.push(p);
                mark(degraded, key);
            })
            .ok(),
        Some(other) => {
            problems.push(problem(
                key,
                format!("expected an object or null, found {}", kind_of(&other)),
            ));
            mark(degraded, key);
            None
        }
    }
}

fn mark(degraded: &mut Vec<String>, key: &str) {
    if !degraded.iter().any(|s| s == key) {
        degraded.push(key.to_owned());
    }
}

/// Deserialises `value` as `T`, naming the failing path below `prefix`.
fn parse_at<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let inner = err.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            prefix.to_owned()
        } else if inner.starts_with('[') {
            format!("{prefix}{inner}")
        } else {
            format!("{prefix}.{inner}")
        };
        problem(&path, err.into_inner().to_string())
    })
}

pub(crate) fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// A short name for the JSON type of `v`, for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
