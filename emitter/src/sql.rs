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
    text.map(|t| match parse_stored_time(&t) {
        Some(ts) => ts.to_string(),
        None => t,
    })
}

/// Seconds from a stored timestamp to `now`; `None` when it does not parse.
pub fn seconds_since(stored: Option<&str>, now: &Timestamp) -> Option<f64> {
    let then = parse_stored_time(stored?)?;
    Some(now.seconds_since(&then))
}

/// A timestamp in any form orchestrators are seen to write (a column read
/// as text, so numbers arrive written out):
/// - the contract's two: `datetime('now')` and RFC 3339;
/// - Unix epoch numbers: seconds (`1763805600`, `1763805600.5`) and, from
///   10^11 up, milliseconds (`1763805600123`);
/// - a Julian day number (`julianday('now')`, 10^6 up to 10^7);
/// - offsets without a colon (`+0000`) or after a space, a trailing zone
///   name (` UTC`), no seconds (`2026-11-22 10:00`), and Go's
///   `time.String()` (`2026-11-22 10:00:00.123456789 +0000 UTC`, with or
///   without its ` m=+0.01` monotonic reading).
///
/// A bare time without a zone is UTC, as the contract says.
pub fn parse_stored_time(text: &str) -> Option<Timestamp> {
    let t = text.trim();
    if let Ok(ts) = Timestamp::parse_lenient(t) {
        return Some(ts);
    }
    if let Ok(n) = t.parse::<f64>() {
        return from_number(n);
    }
    Timestamp::parse(&rfc3339_of(t)?).ok()
}

/// Epoch seconds or milliseconds, or a Julian day, by magnitude.
fn from_number(n: f64) -> Option<Timestamp> {
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    let ms = if (1e6..1e7).contains(&n) {
        // Julian day 2440587.5 is the Unix epoch.
        (n - 2_440_587.5) * 86_400_000.0
    } else if n >= 1e11 {
        n
    } else {
        n * 1000.0
    };
    (ms.abs() < 9.0e15).then(|| Timestamp::from_unix_ms(ms.round() as i64))?
}

/// Rewrites the looser text forms as RFC 3339; `None` when it is not one.
fn rfc3339_of(text: &str) -> Option<String> {
    let mut tokens: Vec<&str> = text.split_whitespace().collect();
    // Go's monotonic clock reading.
    if tokens.last().is_some_and(|t| t.starts_with("m=")) {
        tokens.pop();
    }
    // A zone name after the offset (Go) or alone (` UTC`, ` GMT`).
    let mut zone = None;
    if let Some(last) = tokens.last() {
        if last.len() > 1 && last.chars().all(|c| c.is_ascii_alphabetic()) {
            if matches!(*last, "UTC" | "GMT" | "Z") {
                zone = Some("Z".to_owned());
            }
            tokens.pop();
        }
    }
    if let Some(off) = tokens.last().and_then(|t| offset_of(t)) {
        zone = Some(off);
        tokens.pop();
    }
    let (date, time) = match tokens.as_slice() {
        [date, time] => ((*date).to_owned(), (*time).to_owned()),
        [both] => {
            let (d, t) = both.split_once('T')?;
            (d.to_owned(), t.to_owned())
        }
        _ => return None,
    };
    // An offset written on the time itself: `10:00:00+0000`, `10:00Z`.
    let (mut time, zone) = match time.find(['+', '-', 'Z', 'z']) {
        Some(i) => {
            let off = if time[i..].eq_ignore_ascii_case("z") {
                "Z".to_owned()
            } else {
                offset_of(&time[i..])?
            };
            (time[..i].to_owned(), Some(zone.unwrap_or(off)))
        }
        None => (time, zone),
    };
    // No seconds: `HH:MM`.
    if time.len() == 5 && time.as_bytes().get(2) == Some(&b':') {
        time.push_str(":00");
    }
    Some(format!("{date}T{time}{}", zone.as_deref().unwrap_or("Z")))
}

/// `+0000`, `+00:00`, `-0530`, `+00` as RFC 3339's `+HH:MM`.
fn offset_of(text: &str) -> Option<String> {
    let sign = text.chars().next().filter(|c| *c == '+' || *c == '-')?;
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match digits.len() {
        2 => Some(format!("{sign}{digits}:00")),
        4 => Some(format!("{sign}{}:{}", &digits[..2], &digits[2..])),
        _ => None,
    }
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

    /// Issue 24 #11: the forms orchestrators write all name the same instant.
    #[test]
    fn reads_the_timestamp_forms_orchestrators_write() {
        let want = Timestamp::parse("2026-11-22T10:00:00Z").expect("valid");
        for form in [
            "2026-11-22 10:00:00",
            "2026-11-22T10:00:00Z",
            "1795341600",
            "1795341600000",
            "1795341600.0",
            "2461366.9166666665",
            "2026-11-22 10:00:00 +0000",
            "2026-11-22T10:00:00+0000",
            "2026-11-22T11:00:00+0100",
            "2026-11-22 10:00",
            "2026-11-22T10:00Z",
            "2026-11-22 10:00:00 UTC",
            "2026-11-22 10:00:00 +0000 UTC",
            "2026-11-22 11:00:00 +0100 CET",
            "2026-11-22 10:00:00.000000000 +0000 UTC m=+0.000012",
        ] {
            let got = parse_stored_time(form).unwrap_or_else(|| panic!("{form} parses"));
            assert!(
                got.seconds_since(&want).abs() < 0.001,
                "{form}: {got} is not {want}"
            );
        }
        let go = parse_stored_time("2026-11-22 10:00:00.123456789 +0000 UTC").expect("go");
        assert!((go.seconds_since(&want) - 0.123).abs() < 0.001);
        for bad in [
            "soon",
            "",
            "0",
            "-5",
            "2026-11-22 10",
            "NaN",
            "2026-11-22 10:00:00 +5",
        ] {
            assert_eq!(parse_stored_time(bad), None, "{bad}");
        }
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
