//! The report for a terminal: a header, one table of figures per rule and
//! config, then per rule its verdict and its alerts by subject, in aligned
//! columns. Control characters of the input (agent names, summaries) are
//! shown escaped, never sent to the terminal.

use std::fmt::Write;

use super::compare::{Change, Spread, Stats};
use super::episodes::Fired;
use super::{clock, human, signed, verdict, Report, Row};

/// The report as text.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    header(&mut out, r);
    let _ = writeln!(out);
    figures(&mut out, r);
    for row in &r.rules {
        let Some(rule) = &row.rule else { continue };
        let _ = writeln!(out);
        let _ = writeln!(out, "{}{}", clean(rule), settings(r, rule));
        let _ = writeln!(out, "  {}", verdict(row));
        alerts(&mut out, r, rule);
    }
    out
}

fn header(out: &mut String, r: &Report) {
    let span = r.span.map_or_else(String::new, |(lo, hi)| {
        format!(
            ", {} to {} ({})",
            clock(&lo),
            clock(&hi),
            human(hi.seconds_since(&lo))
        )
    });
    let _ = writeln!(
        out,
        "watchdog backtest: {} file{}, {} records ({} skipped), {} target{}{span}",
        r.files.len(),
        if r.files.len() == 1 { "" } else { "s" },
        r.replayed.records,
        r.replayed.skipped,
        r.targets,
        if r.targets == 1 { "" } else { "s" },
    );
    let _ = writeln!(out, "  A  {}", clean(&r.a.name));
    if let Some(b) = &r.b {
        let _ = writeln!(out, "  B  {}", clean(&b.name));
    }
    if r.pairs.is_empty() {
        let _ = writeln!(out, "no alert fired");
    }
}

/// ` (for 10m 00s -> 5m 00s)`, ` (only in B)`: what changed in the rule.
fn settings(r: &Report, rule: &str) -> String {
    let a = r.a.settings.get(rule);
    let b = r.b.as_ref().and_then(|b| b.settings.get(rule));
    let shown = |s: Option<&super::RuleSetting>| match s {
        Some(s) if s.enabled => human(s.for_s),
        _ => "off".to_owned(),
    };
    match (a, b, &r.b) {
        (_, _, None) => format!("  (for {})", shown(a)),
        (a, b, Some(_)) if shown(a) == shown(b) => format!("  (for {})", shown(a)),
        (a, b, Some(_)) => format!("  (for {} -> {})", shown(a), shown(b)),
    }
}

fn spread(s: Option<Spread>, pick: fn(&Spread) -> f64) -> String {
    s.map_or_else(|| "-".to_owned(), |s| human(pick(&s)))
}

fn stats_cells(s: &Stats) -> Vec<String> {
    vec![
        s.fired.to_string(),
        s.still_firing.to_string(),
        s.flaps.to_string(),
        human(s.firing_s),
        spread(s.delay, |s| s.median),
        spread(s.delay, |s| s.max),
    ]
}

fn figures(out: &mut String, r: &Report) {
    let mut head: Vec<&str> = vec![
        "RULE",
        "",
        "FIRED",
        "STILL FIRING",
        "FLAPS",
        "FIRING TIME",
        "DELAY MEDIAN",
        "DELAY MAX",
    ];
    if r.b.is_some() {
        head.extend([
            "ONLY A",
            "ONLY B",
            "BOTH",
            "EARLIER",
            "LATER",
            "SHIFT MEDIAN",
        ]);
    }
    let mut rows = vec![head.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()];
    for row in r.rules.iter().chain(std::iter::once(&r.total)) {
        rows.extend(row_cells(row));
    }
    table(out, "", &rows, &[0, 1]);
}

fn row_cells(row: &Row) -> Vec<Vec<String>> {
    let name = row
        .rule
        .as_deref()
        .map_or_else(|| "total".to_owned(), clean);
    let mut first = vec![name, "A".to_owned()];
    first.extend(stats_cells(&row.a));
    let Some(b) = &row.b else {
        return vec![first];
    };
    let mut second = vec![String::new(), "B".to_owned()];
    second.extend(stats_cells(b));
    if let Some(d) = &row.diff {
        first.extend(std::iter::repeat(String::new()).take(6));
        second.extend([
            d.removed.to_string(),
            d.added.to_string(),
            d.both.to_string(),
            d.earlier.to_string(),
            d.later.to_string(),
            d.shift.map_or_else(|| "-".to_owned(), |s| signed(s.median)),
        ]);
    }
    vec![first, second]
}

fn fired_for(f: &Fired) -> String {
    let mut s = human(f.duration_s());
    if f.resolved.is_none() {
        s.push_str(" (still)");
    } else if f.flap {
        s.push_str(" (flap)");
    }
    s
}

fn alerts(out: &mut String, r: &Report, rule: &str) {
    let with_b = r.b.is_some();
    let mut rows: Vec<Vec<String>> = Vec::new();
    rows.push(if with_b {
        [
            "CHANGE",
            "TARGET",
            "SUBJECT",
            "A FIRING",
            "A FIRED FOR",
            "B FIRING",
            "B FIRED FOR",
            "SHIFT",
            "DELAY",
            "SUMMARY",
        ]
        .map(str::to_owned)
        .to_vec()
    } else {
        [
            "TARGET",
            "SUBJECT",
            "SINCE",
            "FIRING",
            "DELAY",
            "FIRED FOR",
            "SUMMARY",
        ]
        .map(str::to_owned)
        .to_vec()
    });
    for p in r.pairs_of(rule) {
        let Some(any) = r.alert(p) else { continue };
        let subject = if any.subject().is_empty() {
            "(the target)".to_owned()
        } else {
            clean(any.subject())
        };
        if with_b {
            let (a, b) = (r.alert_a(p), r.alert_b(p));
            let newest = b.or(a).unwrap_or(any);
            rows.push(vec![
                p.change.map_or("", Change::as_str).to_owned(),
                clean(&any.target),
                subject,
                a.map_or_else(|| "-".to_owned(), |f| clock(&f.firing)),
                a.map_or_else(|| "-".to_owned(), fired_for),
                b.map_or_else(|| "-".to_owned(), |f| clock(&f.firing)),
                b.map_or_else(|| "-".to_owned(), fired_for),
                p.shift_s.map_or_else(|| "-".to_owned(), signed),
                human(newest.delay_s()),
                clean(&newest.summary),
            ]);
        } else {
            rows.push(vec![
                clean(&any.target),
                subject,
                clock(&any.since),
                clock(&any.firing),
                human(any.delay_s()),
                fired_for(any),
                clean(&any.summary),
            ]);
        }
    }
    let left = if with_b {
        vec![0, 1, 2, 3, 4, 5, 6]
    } else {
        vec![0, 1, 2, 3, 5]
    };
    table(out, "  ", &rows, &left);
}

/// Aligned columns: `left` ones padded on the right, the rest on the left;
/// the last column is never padded.
fn table(out: &mut String, indent: &str, rows: &[Vec<String>], left: &[usize]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i + 1 == cols {
                line.push_str(cell);
            } else if left.contains(&i) {
                line.push_str(cell);
                line.extend(std::iter::repeat(' ').take(pad));
            } else {
                line.extend(std::iter::repeat(' ').take(pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Input text with control characters escaped (`\u{1b}`), never raw.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::episodes::tests::{line, t};
    use super::super::episodes::Tracker;
    use super::super::{assemble, SideReport};
    use super::*;
    use crate::replay::Replayed;
    use shared_schema::AlertEvent::{Firing, Resolved};
    use std::collections::BTreeMap;

    #[test]
    fn columns_align_and_control_characters_are_escaped() {
        let k = "stuck_agent|orch|job=7";
        let mut a = Tracker::default();
        a.line(&line(Firing, k, 600.0, 0.0));
        a.line(&line(Resolved, k, 2000.0, 0.0));
        let mut b = Tracker::default();
        let mut l = line(Firing, k, 300.0, 0.0);
        l.summary = "agent \u{1b}[31mred\u{1b}[0m is stuck".into();
        b.line(&l);
        let side = |name: &str, tr: Tracker| SideReport {
            name: name.into(),
            alerts: tr.finish(|_| t(3000.0), |_| 600.0),
            settings: BTreeMap::new(),
        };
        let r = assemble(
            vec!["rec.jsonl".into()],
            Replayed {
                records: 200,
                skipped: 1,
                alerts: 3,
            },
            1,
            Some((t(0.0), t(3000.0))),
            side("a.toml", a),
            Some(side("b.toml", b)),
        );
        let text = render(&r);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("agent \\u{1b}[31mred"), "{text}");
        assert!(
            text.starts_with(
                "watchdog backtest: 1 file, 200 records (1 skipped), 1 target, \
             2026-11-22 10:00:00 to 2026-11-22 10:50:00 (50m 00s)\n"
            ),
            "{text}"
        );
        // The alert row: B fires 5 minutes earlier and still fires at the end.
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with("earlier"))
            .unwrap();
        let cells: Vec<&str> = row
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cells[..8],
            [
                "earlier",
                "orch",
                "job=7",
                "2026-11-22 10:10:00",
                "23m 20s",
                "2026-11-22 10:05:00",
                "45m 00s (still)",
                "-5m 00s"
            ],
            "{text}"
        );
        // Every line of the figures table is as wide as its header or less.
        let figures: Vec<&str> = text.lines().skip(4).take_while(|l| !l.is_empty()).collect();
        let header = figures[0];
        let col = header.find("FIRED").unwrap();
        for l in &figures[1..] {
            assert!(
                l.len() >= col + 5 && l[..col + 5].ends_with(|c: char| c.is_ascii_digit()),
                "{l:?}\n{text}"
            );
        }
    }
}
