//! The report as one self-contained HTML page: the figures, then per rule
//! its verdict, a timeline (inline SVG: one row per subject, A's alerts
//! above B's, the detection delay pale, the firing solid, flaps outlined
//! red) and its alerts. No script, nothing fetched (a CSP that forbids
//! both), every piece of input escaped as the status page escapes it.

use std::fmt::Write;

use shared_schema::Timestamp;

use super::compare::{Change, Spread, Stats};
use super::episodes::Fired;
use super::{clock, human, signed, verdict, Report, Row};
use crate::web::status::esc;

/// Subjects drawn per timeline at most; the rest are counted.
pub const MAX_SUBJECTS: usize = 200;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1a202c}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #cbd5e0}\
table{border-collapse:collapse;margin:.5em 0}th,td{padding:2px 8px;text-align:left;\
border-bottom:1px solid #e2e8f0;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.added{color:#c05621}.removed{color:#2b6cb0}.earlier,.later{color:#6b46c1}\
.verdict{font-weight:600}.key span{display:inline-block;width:1em;height:.8em;margin:0 .3em 0 1em}\
svg{display:block;margin:.5em 0}.meta td{border:none;padding:0 8px 0 0}";

const COLOR_A: &str = "#2b6cb0";
const COLOR_B: &str = "#dd6b20";

/// The report as a page.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let title = match &r.total.diff {
        Some(d) => format!(
            "watchdog backtest: {} added, {} removed, {} earlier, {} later",
            d.added, d.removed, d.earlier, d.later
        ),
        None => format!("watchdog backtest: {} alerts", r.total.a.fired),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    meta(&mut out, r);
    figures(&mut out, r);
    let (lo, hi) = bounds(r);
    for row in &r.rules {
        let Some(rule) = &row.rule else { continue };
        let _ = writeln!(
            out,
            "<section id=\"rule-{}\"><h2>{}</h2><p class=\"verdict\">{}</p>",
            esc(rule),
            esc(rule),
            esc(&verdict(row))
        );
        timeline(&mut out, r, rule, lo, hi);
        alerts(&mut out, r, rule);
        out.push_str("</section>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn meta(out: &mut String, r: &Report) {
    out.push_str("<table class=\"meta\">");
    let files: Vec<String> = r
        .files
        .iter()
        .map(|p| esc(&p.display().to_string()))
        .collect();
    let _ = write!(
        out,
        "<tr><td>files</td><td>{}</td></tr>",
        files.join("<br>")
    );
    let _ = write!(
        out,
        "<tr><td>records</td><td>{} ({} skipped), {} target{}</td></tr>",
        r.replayed.records,
        r.replayed.skipped,
        r.targets,
        if r.targets == 1 { "" } else { "s" }
    );
    if let Some((lo, hi)) = r.span {
        let _ = write!(
            out,
            "<tr><td>span</td><td>{} to {} UTC ({})</td></tr>",
            clock(&lo),
            clock(&hi),
            human(hi.seconds_since(&lo))
        );
    }
    let _ = write!(
        out,
        "<tr><td><span style=\"color:{COLOR_A}\">&#9632;</span> A</td><td>{}</td></tr>",
        esc(&r.a.name)
    );
    if let Some(b) = &r.b {
        let _ = write!(
            out,
            "<tr><td><span style=\"color:{COLOR_B}\">&#9632;</span> B</td><td>{}</td></tr>",
            esc(&b.name)
        );
    }
    out.push_str("</table>\n");
}

fn spread(s: Option<Spread>, pick: fn(&Spread) -> f64) -> String {
    s.map_or_else(|| "-".to_owned(), |s| human(pick(&s)))
}

fn stats_cells(out: &mut String, s: &Stats) {
    let _ = write!(
        out,
        "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td>",
        s.fired,
        s.still_firing,
        s.flaps,
        human(s.firing_s),
        spread(s.delay, |s| s.median),
        spread(s.delay, |s| s.max)
    );
}

fn figures(out: &mut String, r: &Report) {
    out.push_str(
        "<table id=\"figures\"><tr><th>rule</th><th></th><th>fired</th><th>still firing</th>\
         <th>flaps</th><th>firing time</th><th>delay median</th><th>delay max</th>",
    );
    if r.b.is_some() {
        out.push_str(
            "<th>only A</th><th>only B</th><th>both</th><th>earlier</th><th>later</th><th>shift median</th>",
        );
    }
    out.push_str("</tr>\n");
    for row in r.rules.iter().chain(std::iter::once(&r.total)) {
        figure_rows(out, row);
    }
    out.push_str("</table>\n");
}

fn figure_rows(out: &mut String, row: &Row) {
    let name = row.rule.as_deref().map_or_else(|| "total".to_owned(), esc);
    let span = if row.b.is_some() { 2 } else { 1 };
    let _ = write!(out, "<tr><td rowspan=\"{span}\">{name}</td><td>A</td>");
    stats_cells(out, &row.a);
    if row.diff.is_some() {
        out.push_str("<td colspan=\"6\"></td>");
    }
    out.push_str("</tr>\n");
    if let Some(b) = &row.b {
        out.push_str("<tr><td>B</td>");
        stats_cells(out, b);
        if let Some(d) = &row.diff {
            let _ = write!(
                out,
                "<td class=\"n removed\">{}</td><td class=\"n added\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                d.removed,
                d.added,
                d.both,
                d.earlier,
                d.later,
                d.shift.map_or_else(|| "-".to_owned(), |s| signed(s.median))
            );
        }
        out.push_str("</tr>\n");
    }
}

/// The time axis: the records' span widened to every alert's span.
fn bounds(r: &Report) -> (Timestamp, Timestamp) {
    let all =
        r.a.alerts
            .iter()
            .chain(r.b.iter().flat_map(|b| b.alerts.iter()));
    let mut lo = r.span.map(|s| s.0);
    let mut hi = r.span.map(|s| s.1);
    for f in all {
        lo = Some(lo.map_or(f.since, |l| l.min(f.since)));
        hi = Some(hi.map_or(f.end, |h| h.max(f.end)));
    }
    let lo = lo.unwrap_or_else(Timestamp::now);
    let hi = hi.unwrap_or(lo);
    (lo, hi)
}

const LABEL_W: f64 = 260.0;
const PLOT_W: f64 = 720.0;
const LANE_H: f64 = 8.0;

fn timeline(out: &mut String, r: &Report, rule: &str, lo: Timestamp, hi: Timestamp) {
    // Subjects by first firing, each once.
    let mut keys: Vec<&Fired> = Vec::new();
    for p in r.pairs_of(rule) {
        if let Some(f) = r.alert(p) {
            if !keys.iter().any(|k| k.key == f.key) {
                keys.push(f);
            }
        }
    }
    let more = keys.len().saturating_sub(MAX_SUBJECTS);
    keys.truncate(MAX_SUBJECTS);
    let lanes = if r.b.is_some() { 2.0 } else { 1.0 };
    let row_h = lanes * LANE_H + 6.0;
    let height = 24.0 + row_h * keys.len() as f64;
    let width = LABEL_W + PLOT_W + 20.0;
    let span = hi.seconds_since(&lo).max(1.0);
    let x = |t: &Timestamp| LABEL_W + (t.seconds_since(&lo) / span).clamp(0.0, 1.0) * PLOT_W;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"timeline of {}\">",
        esc(rule)
    );
    // The axis: start, middle, end.
    for (i, frac) in [0.0, 0.5, 1.0].iter().enumerate() {
        let tx = LABEL_W + frac * PLOT_W;
        let anchor = ["start", "middle", "end"][i];
        let _ = writeln!(
            out,
            "<line x1=\"{tx:.1}\" y1=\"16\" x2=\"{tx:.1}\" y2=\"{height}\" stroke=\"#e2e8f0\"/>\
             <text x=\"{tx:.1}\" y=\"12\" font-size=\"11\" text-anchor=\"{anchor}\" fill=\"#4a5568\">{}</text>",
            clock(&lo.plus_seconds(span * frac))
        );
    }
    for (row, k) in keys.iter().enumerate() {
        let y = 24.0 + row_h * row as f64;
        let label = shorten(&format!("{} {}", k.target, k.subject()), 40);
        let _ = writeln!(
            out,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"11\" fill=\"#1a202c\">{}</text>",
            y + lanes * LANE_H - 1.0,
            esc(&label)
        );
        let sides = [
            ("A", COLOR_A, Some(&r.a.alerts)),
            ("B", COLOR_B, r.b.as_ref().map(|b| &b.alerts)),
        ];
        for (lane, (name, color, alerts)) in sides.iter().enumerate() {
            let Some(alerts) = alerts else { continue };
            let ly = y + lane as f64 * LANE_H;
            for f in alerts.iter().filter(|f| f.key == k.key) {
                let (xs, xf, xe) = (x(&f.since), x(&f.firing), x(&f.end));
                let tip = format!(
                    "{name}: since {}, firing {} ({} delay), {} {}: {}",
                    clock(&f.since),
                    clock(&f.firing),
                    human(f.delay_s()),
                    if f.resolved.is_some() {
                        "fired for"
                    } else {
                        "still firing after"
                    },
                    human(f.duration_s()),
                    f.summary
                );
                let stroke = if f.flap {
                    " stroke=\"#e53e3e\" stroke-width=\"1.5\""
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "<g><title>{}</title><rect x=\"{xs:.1}\" y=\"{ly:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                     fill=\"{color}\" fill-opacity=\"0.25\"/><rect x=\"{xf:.1}\" y=\"{ly:.1}\" width=\"{:.1}\" \
                     height=\"{:.1}\" fill=\"{color}\"{stroke}/></g>",
                    esc(&tip),
                    (xf - xs).max(0.0),
                    LANE_H - 1.0,
                    (xe - xf).max(1.5),
                    LANE_H - 1.0
                );
            }
        }
    }
    out.push_str("</svg>\n");
    if more > 0 {
        let _ = writeln!(
            out,
            "<p>{more} more subject{} not drawn (the table lists them all).</p>",
            if more == 1 { "" } else { "s" }
        );
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('\u{2026}');
    s
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
    out.push_str("<table class=\"alerts\"><tr>");
    if with_b {
        out.push_str(
            "<th>change</th><th>target</th><th>subject</th><th>A firing</th><th>A fired for</th>\
             <th>B firing</th><th>B fired for</th><th>shift</th><th>delay</th><th>summary</th>",
        );
    } else {
        out.push_str(
            "<th>target</th><th>subject</th><th>since</th><th>firing</th><th>delay</th>\
             <th>fired for</th><th>summary</th>",
        );
    }
    out.push_str("</tr>\n");
    let dash = || "-".to_owned();
    for p in r.pairs_of(rule) {
        let Some(any) = r.alert(p) else { continue };
        let subject = if any.subject().is_empty() {
            "(the target)".to_owned()
        } else {
            esc(any.subject())
        };
        if with_b {
            let (a, b) = (r.alert_a(p), r.alert_b(p));
            let newest = b.or(a).unwrap_or(any);
            let change = p.change.map_or("", Change::as_str);
            let _ = writeln!(
                out,
                "<tr class=\"{change}\"><td>{change}</td><td>{}</td><td>{subject}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&any.target),
                a.map_or_else(dash, |f| clock(&f.firing)),
                a.map_or_else(dash, fired_for),
                b.map_or_else(dash, |f| clock(&f.firing)),
                b.map_or_else(dash, fired_for),
                p.shift_s.map_or_else(dash, signed),
                human(newest.delay_s()),
                esc(&newest.summary)
            );
        } else {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{subject}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(&any.target),
                clock(&any.since),
                clock(&any.firing),
                human(any.delay_s()),
                fired_for(any),
                esc(&any.summary)
            );
        }
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::episodes::tests::{line, t};
    use super::super::episodes::Tracker;
    use super::super::{assemble, SideReport};
    use super::*;
    use crate::replay::Replayed;
    use shared_schema::AlertEvent::Firing;
    use std::collections::BTreeMap;

    /// Input that holds markup (target, subject, summary, config name)
    /// comes out as text; the page has no script and fetches nothing.
    #[test]
    fn every_input_is_escaped_and_the_page_is_self_contained() {
        let k = "stuck_agent|<b>orch</b>|job=\"7\"";
        let mut l = line(Firing, k, 600.0, 0.0);
        l.summary = "agent <script>alert(1)</script> & 'co' is stuck".into();
        let mut tr = Tracker::default();
        tr.line(&l);
        let a = SideReport {
            name: "<i>a</i>.toml".into(),
            alerts: tr.finish(|_| t(900.0), |_| 300.0),
            settings: BTreeMap::new(),
        };
        let r = assemble(
            vec!["<rec>.jsonl".into()],
            Replayed::default(),
            1,
            Some((t(0.0), t(900.0))),
            a,
            None,
        );
        let page = render(&r);
        for raw in ["<script", "<b>", "<i>", "<rec>", "'co'", "=\"7\""] {
            assert!(!page.contains(raw), "{raw} unescaped:\n{page}");
        }
        assert!(page.contains("agent &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;co&#39;"));
        assert!(page.contains("&lt;b&gt;orch&lt;/b&gt;"));
        assert!(page.contains("default-src 'none'"));
        assert!(
            !page.contains("http://") || page.matches("http://").count() == 1,
            "only the SVG namespace"
        );
        assert_eq!(page.matches("<svg").count(), 1);
        assert_eq!(page.matches("<rect").count(), 2, "pending and firing");
    }
}
