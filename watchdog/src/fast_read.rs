//! A fast path in front of the tolerant reader, for the common case of a
//! well-formed envelope.
//!
//! `shared_schema::read_envelope` parses into a `serde_json::Value` and then
//! converts each section on its own, so one bad section never spoils the
//! rest; for a large fleet that is two passes over every agent. Here the
//! body is first parsed straight into the envelope's types in one pass. If
//! anything at all is off (a wrong type anywhere, a newer or older version,
//! a disabled emitter, duplicate keys), the typed parse fails or is
//! rejected and the tolerant reader reads the body instead, so the result
//! is the one the tolerant reader gives. The tests hold the two paths to
//! the same output.
//!
//! One known exception, found by `fuzz/fuzz_targets/fast_read.rs`: inside
//! the value of an UNKNOWN key, which neither path reads, this path skips a
//! number beyond `f64` range (`2e400`) or a lone UTF-16 surrogate escape
//! (`"\ud944"`) where the tolerant reader rejects the whole body as not
//! JSON. Such a body is accepted here and read exactly as without that key;
//! no value any rule sees differs. `watchdog validate` still reports it.

use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use shared_schema::{
    read_envelope, Agent, Cost, Envelope, Errors, Queue, ReadError, Reading, Reconciler, Stage,
    Timestamp, SCHEMA_VERSION,
};

/// The envelope with every key optional, so a missing `stages`/`agents`
/// (degraded for the tolerant reader) can be told from an empty one.
#[derive(Debug, Deserialize)]
struct Typed {
    schema_version: u64,
    enabled: Option<bool>,
    generated_at: Timestamp,
    monotonic_ms: Option<u64>,
    boot_id: Option<String>,
    host: Option<String>,
    clk_tck: Option<u64>,
    degraded: Option<Vec<String>>,
    stages: Option<Vec<Stage>>,
    queue: Option<ObjOnly<Queue>>,
    agents: Option<Vec<Agent>>,
    cost: Option<ObjOnly<Cost>>,
    reconciler: Option<ObjOnly<Reconciler>>,
    errors: Option<ObjOnly<Errors>>,
}

/// `T` read from a JSON object only. Serde's derived structs also accept an
/// array (fields by position); the tolerant reader does not, for the envelope
/// and its object sections, so neither may the fast path.
#[derive(Debug)]
struct ObjOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(PhantomData)).map(ObjOnly)
    }
}

/// Reads a body exactly as `read_envelope` does, faster when it is well formed.
pub fn read(bytes: &[u8]) -> Result<Reading, ReadError> {
    // serde_json skips the strings of unknown keys without checking their
    // UTF-8, where the tolerant reader's `Value` parse rejects the body: only
    // valid UTF-8 takes the fast path (found by fuzz/fuzz_targets/fast_read.rs).
    let Ok(text) = std::str::from_utf8(bytes) else {
        return read_envelope(bytes);
    };
    match serde_json::from_str::<ObjOnly<Typed>>(text) {
        Ok(ObjOnly(t)) if t.schema_version == SCHEMA_VERSION && t.enabled != Some(false) => {
            Ok(Reading::Enabled {
                envelope: t.into_envelope(),
                problems: Vec::new(),
            })
        }
        _ => read_envelope(bytes),
    }
}

impl Typed {
    fn into_envelope(self) -> Envelope {
        let mut e = Envelope::new(self.generated_at);
        e.schema_version = self.schema_version;
        e.monotonic_ms = self.monotonic_ms;
        e.boot_id = self.boot_id;
        e.host = self.host;
        e.clk_tck = self.clk_tck;
        e.degraded = self.degraded.unwrap_or_default();
        // As the tolerant reader: a required array that is missing or null is
        // unknown, not empty.
        e.stages = self.stages.unwrap_or_else(|| {
            e.mark_degraded("stages");
            Vec::new()
        });
        e.queue = self.queue.map(|o| o.0);
        e.agents = self.agents.unwrap_or_else(|| {
            e.mark_degraded("agents");
            Vec::new()
        });
        e.cost = self.cost.map(|o| o.0);
        e.reconciler = self.reconciler.map(|o| o.0);
        e.errors = self.errors.map(|o| o.0);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(body: &str) {
        let fast = read(body.as_bytes());
        let slow = read_envelope(body.as_bytes());
        match (&fast, &slow) {
            (
                Ok(Reading::Enabled { envelope: a, .. }),
                Ok(Reading::Enabled { envelope: b, .. }),
            ) => {
                assert_eq!(a, b, "{body}")
            }
            _ => assert_eq!(fast, slow, "{body}"),
        }
    }

    #[test]
    fn invalid_utf8_in_an_unknown_key_is_not_json_on_both_paths() {
        // Regression (fuzz/fast_read): 0xFF bytes inside an unknown key's
        // object were accepted by the typed pass, rejected by the tolerant one.
        let body = b"{\"schema_version\":1,\"generated_at\":\"2026-11-22T10:00:00Z\",\"futur\":{\"q\xff\xff\":1},\"agents\":[],\"stages\":[]}";
        assert!(
            matches!(read(body), Err(ReadError::NotJson(_))),
            "{:?}",
            read(body)
        );
        assert_eq!(read(body), read_envelope(body));
    }

    #[test]
    fn both_paths_read_every_shape_the_same() {
        let full = r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00.123Z","monotonic_ms":5,"boot_id":"b","host":"h",
            "clk_tck":100,"degraded":["cost"],"stages":[{"task_id":1,"work_item":null,"stage":"build","age_in_stage_s":3.5,"repo":null}],
            "queue":{"counts":{"queued":1,"running":0,"done":0,"failed":0,"cancelled":0},"depth":1,"retries":null,
            "breaker":{"state":"open","consecutive_failures":2,"opened_at":null},"max_concurrency":2,"poll_interval":1.5},
            "agents":[{"agent":"dev","run_id":1,"job_id":7,"repo":null,"pid":9,"runtime_s":1.0,"model":null,"effort":null,
            "cpu_ticks":3,"start_ticks":4,"tree_cpu_ticks":5,"io_rchar":6,"io_wchar":7,"state":"S","new":1}],
            "cost":null,"reconciler":{"ticks_total":1,"last_tick_at":"x","wall_clock_ms":2.5,"events_drained":1,"actions_emitted":1,
            "actions_by_type":{"a":1},"side_effects":{"attempted":1,"succeeded":1,"failed":0},"pending_event_count":0,
            "invariant_violations":[{"invariant":3,"message":"m","subject":null},{"invariant":"x","message":"m"}]},
            "errors":{"total":2,"by_subsystem":[{"subsystem":"git","total":2,"last_at":null}]},"future":{"x":[1]}}"#;
        same(full);
        for body in [
            r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z"}"#,
            r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","stages":null,"agents":[],"degraded":null}"#,
            r#"{"schema_version":1,"enabled":false}"#,
            r#"{"schema_version":2,"generated_at":"2026-11-22T10:00:00Z","agents":[]}"#,
            r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","agents":[{"job_id":"seven"}],"stages":[]}"#,
            r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","queue":[],"agents":[],"stages":[]}"#,
            r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","monotonic_ms":-1,"agents":[],"stages":[]}"#,
            r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","agents":[],"agents":[],"stages":[]}"#,
            r#"{"schema_version":1.0,"generated_at":"2026-11-22T10:00:00Z"}"#,
            r#"{"schema_version":1,"generated_at":"yesterday"}"#,
            r#"[1]"#,
            r#"[1,"2026-11-22T10:00:00Z"]"#,
            r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","cost":[[]],"errors":[5],"reconciler":[1],"agents":[],"stages":[]}"#,
            r#"{"schema_version":1,"generated_at":"2026-11-22T10:00:00Z","agents":[[7]],"stages":[]}"#,
            "not json",
        ] {
            same(body);
        }
    }
}
