//! Lenient reading of SQLite values.
//!
//! SQLite columns are dynamically typed and orchestrators are written in
//! many languages, so an integer may arrive as `5`, `5.0` or `"5"`. These
//! helpers take any of those forms and give `None` for what cannot be read,
//! so one odd cell is "unknown" instead of a failed section.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row};
use shared_schema::Timestamp;

/// Column `i` as text (numbers are written out).
pub fn text(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(v) => Some(v.to_string()),
        ValueRef::Real(v) => Some(v.to_string()),
        ValueRef::Null | ValueRef::Blob(_) => None,
    })
}

/// Column `i` as an integer.
pub fn int(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<i64>> {
    Ok(int_of(row.get_ref(i)?))
}

/// Column `i` as a non-negative integer.
pub fn uint(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<u64>> {
    Ok(int_of(row.get_ref(i)?).and_then(|v| u64::try_from(v).ok()))
}

/// Column `i` as a finite number.
pub fn real(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<f64>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Integer(v) => Some(v as f64),
        ValueRef::Real(v) => Some(v),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        ValueRef::Null | ValueRef::Blob(_) => None,
    }
    .filter(|v: &f64| v.is_finite()))
}

fn int_of(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Integer(v) => Some(v),
        ValueRef::Real(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(v as i64),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        _ => None,
    }
}

/// Parses a non-negative integer written as text (worker_state values).
pub fn parse_uint(text: &str) -> Option<u64> {
    let t = text.trim();
    t.parse::<u64>().ok().or_else(|| {
        t.parse::<f64>()
            .ok()
            .filter(|v| v.fract() == 0.0 && *v >= 0.0 && *v < 9.0e15)
            .map(|v| v as u64)
    })
}

/// A stored timestamp in the contract's form where it parses, else as stored.
pub fn normalise_time(text: Option<String>) -> Option<String> {
    text.map(|t| match Timestamp::parse_lenient(&t) {
        Ok(ts) => ts.to_string(),
        Err(_) => t,
    })
}

/// Seconds from a stored timestamp to `now`; `None` when it does not parse.
pub fn seconds_since(stored: Option<&str>, now: &Timestamp) -> Option<f64> {
    let then = Timestamp::parse_lenient(stored?).ok()?;
    Some(now.seconds_since(&then))
}

/// Whether a table (or view) of that name exists: optional tables may be absent.
pub fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1",
    )?
    .query_row([name], |_| Ok(()))
    .optional()
    .map(|found| found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_in_any_storage_class() {
        let conn = Connection::open_in_memory().expect("memory db");
        let row = |sql: &str| {
            conn.query_row(sql, [], |r| {
                Ok((int(r, 0)?, uint(r, 0)?, real(r, 0)?, text(r, 0)?))
            })
            .expect("row")
        };
        assert_eq!(
            row("SELECT 5"),
            (Some(5), Some(5), Some(5.0), Some("5".into()))
        );
        assert_eq!(
            row("SELECT 5.0"),
            (Some(5), Some(5), Some(5.0), Some("5".into()))
        );
        assert_eq!(
            row("SELECT ' 7 '"),
            (Some(7), Some(7), Some(7.0), Some(" 7 ".into()))
        );
        assert_eq!(
            row("SELECT -1"),
            (Some(-1), None, Some(-1.0), Some("-1".into()))
        );
        assert_eq!(row("SELECT 'x'"), (None, None, None, Some("x".into())));
        assert_eq!(row("SELECT NULL"), (None, None, None, None));
        assert_eq!(
            row("SELECT 1.5"),
            (None, None, Some(1.5), Some("1.5".into()))
        );
    }

    #[test]
    fn normalises_sqlite_and_rfc3339_times() {
        assert_eq!(
            normalise_time(Some("2026-11-22 10:00:05".into())).as_deref(),
            Some("2026-11-22T10:00:05.000Z")
        );
        assert_eq!(
            normalise_time(Some("2026-11-22T12:00:05.5+02:00".into())).as_deref(),
            Some("2026-11-22T10:00:05.500Z")
        );
        assert_eq!(normalise_time(Some("soon".into())).as_deref(), Some("soon"));
        assert_eq!(normalise_time(None), None);
    }

    #[test]
    fn ages_are_measured_on_the_given_clock() {
        let now = Timestamp::parse("2026-11-22T10:01:00Z").expect("valid");
        assert_eq!(seconds_since(Some("2026-11-22 10:00:00"), &now), Some(60.0));
        assert_eq!(seconds_since(Some("never"), &now), None);
        assert_eq!(seconds_since(None, &now), None);
    }

    #[test]
    fn parses_worker_state_integers() {
        assert_eq!(parse_uint(" 4\n"), Some(4));
        assert_eq!(parse_uint("4.0"), Some(4));
        assert_eq!(parse_uint("-4"), None);
        assert_eq!(parse_uint("four"), None);
    }
}
