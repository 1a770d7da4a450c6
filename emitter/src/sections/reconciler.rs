//! Section `reconciler`: the newest reconciler tick and how many there were.
//!
//! `actions_by_type` and `invariant_violations` are stored as JSON text; a
//! row whose JSON does not parse degrades the section rather than being
//! passed on half-read.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension};
use shared_schema::{Envelope, InvariantViolation, Reconciler, SideEffects};

use crate::sql::{normalise_time, real, table_exists, text, uint};
use crate::{SectionError, SectionResult, Session};

/// Fills `env.reconciler`, or leaves `null` and marks it degraded.
pub(crate) fn collect(session: &mut dyn Session, env: &mut Envelope) {
    match session.reconciler() {
        Ok(reconciler) => env.reconciler = reconciler,
        Err(err) => super::degrade(env, "reconciler", &err),
    }
}

/// The newest `reconciler_ticks` row; `None` when the table is absent or empty.
pub fn read(conn: &Connection) -> SectionResult<Option<Reconciler>> {
    if !table_exists(conn, "reconciler_ticks")? {
        return Ok(None);
    }
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM reconciler_ticks")?
        .query_row([], |row| row.get(0))?;
    newest(conn, u64::try_from(total).ok())
}

/// The newest tick (one rowid seek) with `ticks_total` given by the caller.
pub fn newest(conn: &Connection, total: Option<u64>) -> SectionResult<Option<Reconciler>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, wall_clock_ms, events_drained, actions_emitted, actions_by_type,
                side_effects_attempted, side_effects_succeeded, side_effects_failed,
                pending_event_count, invariant_violations
         FROM reconciler_ticks ORDER BY id DESC LIMIT 1",
    )?;
    let row = stmt
        .query_row([], |row| {
            Ok((
                text(row, 0)?,
                real(row, 1)?,
                uint(row, 2)?,
                uint(row, 3)?,
                text(row, 4)?,
                [uint(row, 5)?, uint(row, 6)?, uint(row, 7)?],
                uint(row, 8)?,
                text(row, 9)?,
            ))
        })
        .optional()?;
    let Some((at, wall_clock_ms, drained, emitted, by_type, effects, pending, violations)) = row
    else {
        return Ok(None);
    };
    let last_tick_at =
        normalise_time(at).ok_or_else(|| SectionError::Data("newest tick has no `at`".into()))?;
    let [attempted, succeeded, failed] = effects;
    Ok(Some(Reconciler {
        ticks_total: total,
        last_tick_at: Some(last_tick_at),
        wall_clock_ms,
        events_drained: drained,
        actions_emitted: emitted,
        actions_by_type: parse_actions(by_type.as_deref())?,
        side_effects: effects.iter().any(Option::is_some).then_some(SideEffects {
            attempted,
            succeeded,
            failed,
        }),
        pending_event_count: pending,
        invariant_violations: parse_violations(violations.as_deref())?,
    }))
}

/// `actions_by_type` JSON; empty or null text is unknown.
pub fn parse_actions(text: Option<&str>) -> SectionResult<Option<BTreeMap<String, u64>>> {
    match text.map(str::trim) {
        None | Some("") | Some("null") => Ok(None),
        Some(t) => serde_json::from_str(t).map(Some).map_err(|e| {
            SectionError::Data(format!(
                "actions_by_type is not a JSON object of counts: {e}"
            ))
        }),
    }
}

/// `invariant_violations` JSON; empty or null text means none reported.
pub fn parse_violations(text: Option<&str>) -> SectionResult<Vec<InvariantViolation>> {
    match text.map(str::trim) {
        None | Some("") | Some("null") => Ok(Vec::new()),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            SectionError::Data(format!(
                "invariant_violations is not a JSON array of violations: {e}"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_schema::InvariantId;

    #[test]
    fn parses_stored_json() {
        let a = parse_actions(Some(r#"{"spawn": 2, "kill": 0}"#))
            .expect("valid")
            .expect("present");
        assert_eq!(a.get("spawn"), Some(&2));
        assert_eq!(parse_actions(None).expect("none"), None);
        assert_eq!(parse_actions(Some(" ")).expect("blank"), None);
        let v = parse_violations(Some(
            r#"[{"invariant": 3, "message": "two running jobs", "subject": "task 7"},
                {"invariant": "no_orphans", "message": "orphan"}]"#,
        ))
        .expect("valid");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].invariant, InvariantId::Number(3));
        assert_eq!(v[1].invariant, InvariantId::Name("no_orphans".into()));
        assert_eq!(v[1].subject, None);
    }

    #[test]
    fn bad_json_is_an_error_not_a_guess() {
        assert!(parse_actions(Some("{spawn: 2")).is_err());
        assert!(parse_actions(Some(r#"{"spawn": -1}"#)).is_err());
        assert!(parse_violations(Some("[1, 2]")).is_err());
        assert!(parse_violations(Some("nope")).is_err());
    }
}
