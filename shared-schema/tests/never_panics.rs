//! The reader and `validate` never panic, whatever arrives on the wire.

use proptest::prelude::*;
use serde_json::{Map, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z_]{0,12}".prop_map(Value::String),
        Just(Value::String("2026-11-22T10:00:00Z".into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys drawn mostly from the contract, so the walk goes deep.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "schema_version",
            "enabled",
            "generated_at",
            "monotonic_ms",
            "clk_tck",
            "degraded",
            "stages",
            "queue",
            "agents",
            "cost",
            "reconciler",
            "errors",
            "counts",
            "depth",
            "breaker",
            "state",
            "job_id",
            "pid",
            "cpu_ticks",
            "running",
            "aggregate",
            "invariant_violations",
            "invariant",
            "by_subsystem",
            "subsystem",
            "total",
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,6}",
    ]
}

/// An envelope-shaped object: a valid version and clock, arbitrary sections.
fn arb_envelope() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), arb_json()), 0..10).prop_map(|kv| {
        let mut obj: Map<String, Value> = kv.into_iter().collect();
        obj.insert("schema_version".into(), Value::from(1));
        obj.insert("generated_at".into(), Value::from("2026-11-22T10:00:00Z"));
        Value::Object(obj)
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = shared_schema::read_envelope(&bytes);
        let _ = shared_schema::validate(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = shared_schema::read_envelope(&bytes);
        let _ = shared_schema::validate(&bytes);
    }

    #[test]
    fn envelope_shaped_json_reads_and_problems_match_degraded(v in arb_envelope()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let reading = shared_schema::read_envelope(&bytes);
        // A valid version and clock always give a usable envelope.
        let Ok(shared_schema::Reading::Enabled { envelope, problems }) = reading else {
            // `enabled: false` is the one other legal answer.
            prop_assert_eq!(v.get("enabled"), Some(&Value::Bool(false)));
            return Ok(());
        };
        // Every problem inside a section left that section degraded.
        for p in &problems {
            let section = p.path.split(['.', '[']).next().unwrap_or_default();
            if shared_schema::SECTIONS.contains(&section) {
                prop_assert!(envelope.is_degraded(section), "{} not degraded", section);
            }
        }
    }
}
