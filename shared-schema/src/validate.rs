//! `validate`: every way an envelope departs from CONTRACT.md section 1.
//!
//! The reader stops at the first problem of a section and moves on; this
//! walks the whole body and lists every problem with its JSON path, so an
//! orchestrator author sees all of them at once. Unknown keys are never a
//! problem (they are how the contract grows); a missing key that the
//! contract requires, a wrong type, or a value outside its set are.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::envelope::{REQUIRED_JOB_STATUSES, SECTIONS};
use crate::read::{kind_of, problem, utf8, Problem, Top};
use crate::{read_envelope, ReadError, Reading, Timestamp, SCHEMA_VERSION};

/// The shape of one value in the contract.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// A non-negative integer.
    UInt,
    /// Any integer.
    Int,
    /// Any number.
    Num,
    Str,
    Bool,
    /// An RFC 3339 string.
    Time,
    /// One of a fixed set of strings.
    OneOf(&'static [&'static str]),
    /// An integer or a string.
    IntOrStr,
    Obj(&'static [Field]),
    Arr(&'static Ty),
    /// An object whose values all have one type.
    Map(&'static Ty),
    /// `null` or the inner type.
    Null(&'static Ty),
}

#[derive(Debug, Clone, Copy)]
struct Field {
    key: &'static str,
    ty: Ty,
    /// Whether the key must be present (it may still be `null` where `ty` allows).
    required: bool,
}

const fn req(key: &'static str, ty: Ty) -> Field {
    Field {
        key,
        ty,
        required: true,
    }
}

const fn opt(key: &'static str, ty: Ty) -> Field {
    Field {
        key,
        ty,
        required: false,
    }
}

const N_UINT: Ty = Ty::Null(&Ty::UInt);
const N_INT: Ty = Ty::Null(&Ty::Int);
const N_NUM: Ty = Ty::Null(&Ty::Num);
const N_STR: Ty = Ty::Null(&Ty::Str);

const STAGE: &[Field] = &[
    req("task_id", N_INT),
    req("work_item", N_STR),
    req("stage", Ty::Str),
    req("age_in_stage_s", N_NUM),
    req("repo", N_STR),
];

const QUEUE: &[Field] = &[
    req("counts", Ty::Map(&Ty::UInt)),
    req("depth", N_UINT),
    req(
        "retries",
        Ty::Null(&Ty::Obj(&[
            req("retried_jobs", Ty::UInt),
            req("total_retries", Ty::UInt),
        ])),
    ),
    req(
        "breaker",
        Ty::Null(&Ty::Obj(&[
            req("state", Ty::OneOf(&["closed", "open", "half_open"])),
            req("consecutive_failures", N_UINT),
            req("opened_at", N_STR),
        ])),
    ),
    req("max_concurrency", N_UINT),
    req("poll_interval", N_NUM),
];

const AGENT: &[Field] = &[
    req("agent", N_STR),
    req("run_id", N_INT),
    req("job_id", Ty::Int),
    req("repo", N_STR),
    req("pid", N_INT),
    req("runtime_s", N_NUM),
    req("model", N_STR),
    req("effort", N_STR),
    req("cpu_ticks", N_UINT),
    opt("start_ticks", N_UINT),
    opt("tree_cpu_ticks", N_UINT),
    opt("io_rchar", N_UINT),
    opt("io_wchar", N_UINT),
    opt("state", N_STR),
    opt("alive", Ty::Null(&Ty::Bool)),
    opt("wchan", N_STR),
    opt("activity", Ty::Null(&Ty::Obj(ACTIVITY))),
    opt("net_wait", Ty::Null(&Ty::Obj(NET_WAIT))),
];

/// `agents[i].activity` (page 3).
const ACTIVITY: &[Field] = &[
    req("source", Ty::Str),
    req("service", N_STR),
    req("session_id", N_STR),
    req("first_seen_at", Ty::Time),
    req("last_seen_at", Ty::Time),
    req("api_requests", Ty::UInt),
    req("api_errors", Ty::UInt),
    req("last_api_at", Ty::Null(&Ty::Time)),
    req("input_tokens", Ty::UInt),
    req("output_tokens", Ty::UInt),
    req("cache_read_tokens", Ty::UInt),
    req("cache_creation_tokens", Ty::UInt),
    req("cost_usd", N_NUM),
    req("tool_calls", Ty::UInt),
    req("tool_failures", Ty::UInt),
    req("last_tool", N_STR),
    req("last_tool_at", Ty::Null(&Ty::Time)),
    req("tool_repeat", Ty::UInt),
];

/// `agents[i].net_wait` (page 3).
const NET_WAIT: &[Field] = &[
    req("remote", Ty::Str),
    req("sent_ago_s", Ty::Num),
    req("received_ago_s", N_NUM),
    req("pid", N_INT),
];

const TOKENS_RUNNING: &[Field] = &[
    req("run_id", N_INT),
    req("job_id", N_INT),
    req("agent", N_STR),
    req("cost_usd", N_NUM),
    req("input_tokens", N_UINT),
    req("output_tokens", N_UINT),
    req("cache_read_tokens", N_UINT),
    req("cache_creation_tokens", N_UINT),
];

const COST: &[Field] = &[
    req("running", Ty::Arr(&Ty::Obj(TOKENS_RUNNING))),
    req(
        "aggregate",
        Ty::Obj(&[
            req("runs", Ty::UInt),
            // Page 2: a sum that is not finite is null, never a smaller number.
            req("cost_usd", N_NUM),
            req("input_tokens", N_UINT),
            req("output_tokens", N_UINT),
            req("cache_read_tokens", N_UINT),
            req("cache_creation_tokens", N_UINT),
        ]),
    ),
];

const RECONCILER: &[Field] = &[
    req("ticks_total", Ty::UInt),
    req("last_tick_at", Ty::Str),
    req("wall_clock_ms", N_NUM),
    req("events_drained", N_UINT),
    req("actions_emitted", N_UINT),
    req("actions_by_type", Ty::Null(&Ty::Map(&Ty::UInt))),
    req(
        "side_effects",
        Ty::Null(&Ty::Obj(&[
            req("attempted", N_UINT),
            req("succeeded", N_UINT),
            req("failed", N_UINT),
        ])),
    ),
    req("pending_event_count", N_UINT),
    req(
        "invariant_violations",
        Ty::Arr(&Ty::Obj(&[
            req("invariant", Ty::IntOrStr),
            req("message", Ty::Str),
            opt("subject", N_STR),
        ])),
    ),
];

const ERRORS: &[Field] = &[
    req("total", Ty::UInt),
    req(
        "by_subsystem",
        Ty::Arr(&Ty::Obj(&[
            req("subsystem", Ty::Str),
            req("total", Ty::UInt),
            req("last_at", N_STR),
        ])),
    ),
];

const ENVELOPE: &[Field] = &[
    req("schema_version", Ty::UInt),
    opt("enabled", Ty::Bool),
    req("generated_at", Ty::Time),
    opt("monotonic_ms", Ty::UInt),
    opt("boot_id", Ty::Str),
    opt("host", Ty::Str),
    req("clk_tck", N_UINT),
    opt("degraded", Ty::Arr(&Ty::OneOf(&SECTIONS))),
    req("stages", Ty::Arr(&Ty::Obj(STAGE))),
    req("queue", Ty::Null(&Ty::Obj(QUEUE))),
    req("agents", Ty::Arr(&Ty::Obj(AGENT))),
    req("cost", Ty::Null(&Ty::Obj(COST))),
    opt("reconciler", Ty::Null(&Ty::Obj(RECONCILER))),
    opt("errors", Ty::Null(&Ty::Obj(ERRORS))),
];

/// Lists every problem of `bytes` as an envelope; empty means it fits the contract.
///
/// The top level is read by the one reader's own pass ([`crate::read`]), so
/// `validate` and the watchdog agree on what the body is; each known key is
/// then walked strictly, an array item by item (one item's tree at a time,
/// so a large body costs no more than its largest item). Whatever the reader
/// itself sets aside (a section it cannot read, a list past its cap) is
/// listed too, so a clean `validate` means a clean read.
pub fn validate(bytes: &[u8]) -> Vec<Problem> {
    let mut out = Vec::new();
    let text = match utf8(bytes) {
        Ok(t) => t,
        Err(e) => return vec![problem("$", e.to_string())],
    };
    let top = match Top::scan(text) {
        Ok(top) => top,
        Err(ReadError::NotAnObject(kind)) => {
            return vec![problem("$", format!("expected an object, found {kind}"))]
        }
        Err(e) => return vec![problem("$", e.to_string())],
    };
    match top
        .schema_version
        .map(|raw| serde_json::from_str::<u64>(raw.get()))
    {
        None => out.push(problem("schema_version", "missing")),
        Some(Err(_)) => out.push(problem("schema_version", "expected a non-negative integer")),
        Some(Ok(v)) if v != SCHEMA_VERSION => {
            out.push(problem(
                "schema_version",
                format!("version {v} is not the supported {SCHEMA_VERSION}"),
            ));
            return out;
        }
        Some(Ok(_)) => {}
    }
    if top.enabled.is_some_and(|raw| raw.get() == "false") {
        return out; // A disabled body carries nothing else.
    }
    // The top-level values as trees, except the arrays' items (walked one by one).
    let mut obj = Map::new();
    for field in ENVELOPE {
        match top.get(field.key) {
            None if field.required => out.push(problem(field.key, "missing")),
            None => {}
            Some(raw) => {
                if let Some(v) = walk_raw(raw, field.ty, field.key, &mut out) {
                    obj.insert(field.key.to_owned(), v);
                }
            }
        }
    }
    check_semantics(&obj, &mut out);
    if let Ok(Reading::Enabled { problems, .. }) = read_envelope(bytes) {
        for p in problems {
            // Said already when the walk named the same place or one above it.
            let said = out.iter().any(|o| {
                p.path == o.path
                    || p.path
                        .strip_prefix(o.path.as_str())
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            });
            if !said {
                out.push(p);
            }
        }
    }
    out
}

/// Walks one top-level value and returns it as a tree, except an array of
/// objects (`stages`, `agents`): its items are walked one by one and a
/// stand-in is returned (empty or one `null`), enough for the semantic
/// checks, which only ask whether such a section is empty.
fn walk_raw(raw: &RawValue, ty: Ty, path: &str, out: &mut Vec<Problem>) -> Option<Value> {
    if let Ty::Arr(item @ Ty::Obj(_)) = ty {
        if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
            for (i, it) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                match serde_json::from_str::<Value>(it.get()) {
                    Ok(v) => walk(&v, *item, &at, out),
                    Err(e) => out.push(problem(&at, format!("not JSON: {e}"))),
                }
            }
            let stand_in = if items.is_empty() {
                vec![]
            } else {
                vec![Value::Null]
            };
            return Some(Value::Array(stand_in));
        }
    }
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(v) => {
            walk(&v, ty, path, out);
            Some(v)
        }
        Err(e) => {
            out.push(problem(path, format!("not JSON: {e}")));
            None
        }
    }
}

/// Lists every problem of an already parsed envelope.
pub fn validate_value(value: &Value) -> Vec<Problem> {
    match serde_json::to_vec(value) {
        Ok(bytes) => validate(&bytes),
        Err(e) => vec![problem("$", format!("not JSON: {e}"))],
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_fields(obj: &Map<String, Value>, fields: &[Field], prefix: &str, out: &mut Vec<Problem>) {
    for field in fields {
        let path = join(prefix, field.key);
        match obj.get(field.key) {
            None if field.required => out.push(problem(&path, "missing")),
            None => {}
            Some(v) => walk(v, field.ty, &path, out),
        }
    }
}

fn walk(v: &Value, ty: Ty, path: &str, out: &mut Vec<Problem>) {
    let ok = match (ty, v) {
        (Ty::Null(_), Value::Null) => true,
        (Ty::Null(inner), _) => return walk(v, *inner, path, out),
        (Ty::UInt, Value::Number(n)) => n.is_u64(),
        (Ty::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Ty::Num, Value::Number(_)) => true,
        (Ty::Str, Value::String(_)) => true,
        (Ty::Bool, Value::Bool(_)) => true,
        (Ty::IntOrStr, Value::String(_)) => true,
        (Ty::IntOrStr, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Ty::Time, Value::String(s)) => {
            if Timestamp::parse(s).is_err() {
                out.push(problem(path, format!("not an RFC 3339 timestamp: {s:?}")));
            }
            true
        }
        (Ty::OneOf(set), Value::String(s)) => {
            if !set.contains(&s.as_str()) {
                out.push(problem(path, format!("{s:?} is not one of {set:?}")));
            }
            true
        }
        (Ty::Obj(fields), Value::Object(o)) => {
            walk_fields(o, fields, path, out);
            true
        }
        (Ty::Arr(item), Value::Array(items)) => {
            for (i, it) in items.iter().enumerate() {
                walk(it, *item, &format!("{path}[{i}]"), out);
            }
            true
        }
        (Ty::Map(item), Value::Object(o)) => {
            for (k, it) in o {
                walk(it, *item, &join(path, k), out);
            }
            true
        }
        _ => false,
    };
    if !ok {
        out.push(problem(
            path,
            format!("expected {}, found {}", describe(ty), describe_value(v)),
        ));
    }
}

fn describe(ty: Ty) -> String {
    match ty {
        Ty::UInt => "a non-negative integer".into(),
        Ty::Int => "an integer".into(),
        Ty::Num => "a number".into(),
        Ty::Str => "a string".into(),
        Ty::Bool => "a boolean".into(),
        Ty::Time => "an RFC 3339 string".into(),
        Ty::OneOf(set) => format!("one of {set:?}"),
        Ty::IntOrStr => "an integer or a string".into(),
        Ty::Obj(_) => "an object".into(),
        Ty::Arr(_) => "an array".into(),
        Ty::Map(_) => "an object".into(),
        Ty::Null(inner) => format!("{} or null", describe(*inner)),
    }
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.len() <= 40 => format!("the string {s:?}"),
        other => kind_of(other).to_owned(),
    }
}

/// What types alone cannot say.
fn check_semantics(obj: &Map<String, Value>, out: &mut Vec<Problem>) {
    if let Some(Value::Object(queue)) = obj.get("queue") {
        if let Some(Value::Object(counts)) = queue.get("counts") {
            for status in REQUIRED_JOB_STATUSES {
                if !counts.contains_key(status) {
                    out.push(problem(
                        &format!("queue.counts.{status}"),
                        "missing (0 where none)",
                    ));
                }
            }
            let queued = counts.get("queued").and_then(Value::as_u64);
            let depth = queue.get("depth").and_then(Value::as_u64);
            if let (Some(q), Some(d)) = (queued, depth) {
                if q != d {
                    out.push(problem(
                        "queue.depth",
                        format!("{d} differs from counts.queued {q}"),
                    ));
                }
            }
        }
    }
    if let Some(Value::Array(degraded)) = obj.get("degraded") {
        for (i, name) in degraded.iter().enumerate() {
            if let Some(name) = name.as_str() {
                if obj.get(name).is_some_and(|v| !is_safe_default(name, v)) {
                    out.push(problem(
                        &format!("degraded[{i}]"),
                        format!("section {name} is degraded but not at its safe default"),
                    ));
                }
            }
        }
    }
}

fn is_safe_default(section: &str, v: &Value) -> bool {
    match section {
        "stages" | "agents" => v.as_array().is_some_and(Vec::is_empty),
        _ => v.is_null(),
    }
}

/// The strict table and the serde types are two encodings of section 1:
/// these tests hold them to each other, so neither can drift alone.
#[cfg(test)]
mod drift {
    #![allow(clippy::unwrap_used)]
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::envelope::*;

    fn ts() -> Timestamp {
        Timestamp::parse("2026-11-22T09:59:00.000Z").unwrap()
    }

    /// Every `Option` set, every list and map holding one item.
    fn full() -> Envelope {
        let mut e = Envelope::new(Timestamp::parse("2026-11-22T10:00:00.123Z").unwrap());
        e.monotonic_ms = Some(5);
        e.boot_id = Some("b".into());
        e.host = Some("h".into());
        e.clk_tck = Some(100);
        e.degraded = vec![];
        e.stages = vec![Stage {
            task_id: Some(1),
            work_item: Some("WI".into()),
            stage: "build".into(),
            age_in_stage_s: Some(1.5),
            repo: Some("app".into()),
        }];
        let counts: BTreeMap<String, u64> = REQUIRED_JOB_STATUSES
            .iter()
            .map(|s| ((*s).to_owned(), 0))
            .collect();
        e.queue = Some(Queue {
            counts,
            depth: Some(0),
            retries: Some(Retries {
                retried_jobs: Some(1),
                total_retries: Some(2),
            }),
            breaker: Some(Breaker {
                state: Some("closed".into()),
                consecutive_failures: Some(0),
                opened_at: Some("t".into()),
            }),
            max_concurrency: Some(2),
            poll_interval: Some(1.5),
        });
        e.agents = vec![Agent {
            agent: Some("dev".into()),
            run_id: Some(1),
            job_id: 7,
            repo: Some("app".into()),
            pid: Some(9),
            runtime_s: Some(1.0),
            model: Some("m".into()),
            effort: Some("high".into()),
            cpu_ticks: Some(3),
            start_ticks: Some(4),
            tree_cpu_ticks: Some(5),
            io_rchar: Some(6),
            io_wchar: Some(7),
            state: Some("S".into()),
            alive: Some(true),
            wchan: Some("do_epoll_wait".into()),
            activity: Some(Activity {
                source: "otlp".into(),
                service: Some("claude-code".into()),
                session_id: Some("s".into()),
                first_seen_at: Some(ts()),
                last_seen_at: Some(ts()),
                api_requests: 3,
                api_errors: 1,
                last_api_at: Some(ts()),
                input_tokens: 10,
                output_tokens: 20,
                cache_read_tokens: 30,
                cache_creation_tokens: 40,
                cost_usd: Some(0.25),
                tool_calls: 5,
                tool_failures: 1,
                last_tool: Some("Bash".into()),
                last_tool_at: Some(ts()),
                tool_repeat: 2,
            }),
            net_wait: Some(NetWait {
                remote: "127.0.0.1:443".into(),
                sent_ago_s: 12.5,
                received_ago_s: Some(20.0),
                pid: Some(9),
            }),
        }];
        e.cost = Some(Cost {
            running: vec![RunningCost {
                run_id: Some(1),
                job_id: Some(7),
                agent: Some("dev".into()),
                cost_usd: Some(0.5),
                input_tokens: Some(1),
                output_tokens: Some(2),
                cache_read_tokens: Some(3),
                cache_creation_tokens: Some(4),
            }],
            aggregate: Some(CostAggregate {
                runs: Some(1),
                cost_usd: Some(0.5),
                input_tokens: Some(1),
                output_tokens: Some(2),
                cache_read_tokens: Some(3),
                cache_creation_tokens: Some(4),
            }),
        });
        e.reconciler = Some(Reconciler {
            ticks_total: Some(1),
            last_tick_at: Some("t".into()),
            wall_clock_ms: Some(2.5),
            events_drained: Some(1),
            actions_emitted: Some(1),
            actions_by_type: Some([("start_job".to_owned(), 1)].into_iter().collect()),
            side_effects: Some(SideEffects {
                attempted: Some(1),
                succeeded: Some(1),
                failed: Some(0),
            }),
            pending_event_count: Some(0),
            invariant_violations: vec![InvariantViolation {
                invariant: InvariantId::Number(3),
                message: "m".into(),
                subject: Some("task:1".into()),
            }],
        });
        e.errors = Some(Errors {
            total: Some(1),
            by_subsystem: vec![SubsystemErrors {
                subsystem: "git".into(),
                total: Some(1),
                last_at: Some("t".into()),
            }],
        });
        e
    }

    /// Every object field of the table, with its path in `full()`'s JSON
    /// (arrays through their first item).
    fn fields(ty: Ty, path: &str, out: &mut Vec<(String, Field)>) {
        match ty {
            Ty::Null(inner) | Ty::Arr(inner) => {
                let p = if matches!(ty, Ty::Arr(_)) {
                    format!("{path}[0]")
                } else {
                    path.to_owned()
                };
                fields(*inner, &p, out)
            }
            Ty::Obj(fs) => {
                for f in fs {
                    let p = join(path, f.key);
                    out.push((p.clone(), *f));
                    fields(f.ty, &p, out);
                }
            }
            _ => {}
        }
    }

    /// The value at a path of the `fields` form, for editing.
    fn at<'v>(v: &'v mut Value, path: &str) -> (&'v mut Map<String, Value>, String) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().unwrap().to_owned();
        let mut cur = v;
        for part in parts {
            let (key, index) = match part.strip_suffix("[0]") {
                Some(k) => (k, true),
                None => (part, false),
            };
            cur = &mut cur[key];
            if index {
                cur = &mut cur[0];
            }
        }
        match last.strip_suffix("[0]") {
            Some(_) => unreachable!("paths end in a key"),
            None => (cur.as_object_mut().unwrap(), last),
        }
    }

    /// What the reader says about a body: `None` when it reads it with no
    /// problem and nothing degraded, else what it objected to.
    fn reader_objects(v: &Value) -> Option<String> {
        match crate::read_value(v.clone()) {
            Ok(Reading::Enabled { envelope, problems })
                if problems.is_empty() && envelope.degraded.is_empty() =>
            {
                None
            }
            Ok(Reading::Disabled) => None,
            other => Some(format!("{other:?}")),
        }
    }

    #[test]
    fn the_table_has_exactly_the_keys_the_types_write() {
        let v = serde_json::to_value(full()).unwrap();
        fn same(v: &Value, ty: Ty, path: &str) {
            match (ty, v) {
                (Ty::Null(inner), _) => same(v, *inner, path),
                (Ty::Obj(fs), Value::Object(o)) => {
                    let table: BTreeSet<&str> = fs.iter().map(|f| f.key).collect();
                    let wire: BTreeSet<&str> = o.keys().map(String::as_str).collect();
                    assert_eq!(table, wire, "keys at {path:?}: table vs serialized types");
                    for f in fs {
                        same(&o[f.key], f.ty, &join(path, f.key));
                    }
                }
                // `degraded` is the one list of plain strings (empty in a
                // healthy envelope); every list of objects must be populated.
                (Ty::Arr(item), Value::Array(items)) if items.is_empty() => {
                    assert!(!matches!(item, Ty::Obj(_)), "{path}: populate it in full()");
                }
                (Ty::Arr(item), Value::Array(items)) => {
                    same(&items[0], *item, &format!("{path}[0]"));
                }
                (Ty::Arr(_) | Ty::Obj(_), other) => panic!("{path}: {other} in full()"),
                _ => {}
            }
        }
        same(&v, Ty::Obj(ENVELOPE), "");
        assert_eq!(validate_value(&v), vec![]);
        match crate::read_value(v).unwrap() {
            Reading::Enabled { envelope, problems } => {
                assert!(problems.is_empty(), "{problems:?}");
                assert_eq!(
                    envelope,
                    full(),
                    "the reader reads back what the types write"
                );
            }
            Reading::Disabled => panic!("enabled"),
        }
    }

    #[test]
    fn required_and_optional_agree_with_the_reader() {
        let base = serde_json::to_value(full()).unwrap();
        let mut all = Vec::new();
        fields(Ty::Obj(ENVELOPE), "", &mut all);
        assert!(
            all.len() > 80,
            "the walk reaches every level: {}",
            all.len()
        );
        for (path, field) in all {
            let mut v = base.clone();
            let (obj, key) = at(&mut v, &path);
            obj.remove(&key);
            let strict: Vec<String> = validate_value(&v).iter().map(|p| p.to_string()).collect();
            if field.required {
                assert!(
                    strict.contains(&format!("{path}: missing")),
                    "{path} is required by the table: {strict:?}"
                );
            } else {
                assert_eq!(strict, Vec::<String>::new(), "{path} is optional");
                // Optional for validate means the reader takes it missing too.
                assert_eq!(reader_objects(&v), None, "{path} missing");
            }
        }
    }

    #[test]
    fn a_wrong_type_or_a_null_is_judged_alike() {
        let base = serde_json::to_value(full()).unwrap();
        let mut all = Vec::new();
        fields(Ty::Obj(ENVELOPE), "", &mut all);
        for (path, field) in all {
            // A value of the wrong JSON kind: both must object.
            let wrong = match field.ty {
                Ty::Obj(_) | Ty::Arr(_) | Ty::Map(_) | Ty::Null(Ty::Obj(_) | Ty::Map(_)) => {
                    Value::from("x")
                }
                _ => serde_json::json!({"x": 1}),
            };
            let mut v = base.clone();
            let (obj, key) = at(&mut v, &path);
            obj.insert(key, wrong);
            assert!(!validate_value(&v).is_empty(), "validate on a wrong {path}");
            assert!(reader_objects(&v).is_some(), "the reader on a wrong {path}");

            // `null` where the table allows it: unknown, fine for both.
            if matches!(field.ty, Ty::Null(_)) {
                let mut v = base.clone();
                let (obj, key) = at(&mut v, &path);
                obj.insert(key, Value::Null);
                assert_eq!(validate_value(&v), vec![], "null {path}");
                assert_eq!(reader_objects(&v), None, "null {path}");
            }
        }
    }
}
