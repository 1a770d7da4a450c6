//! `GET /`: the status page, what is wrong right now for a person with a
//! browser (CONTRACT.md section 5).
//!
//! One server-rendered HTML document: the style is inline and there is no
//! script, font or image, so nothing is fetched from anywhere else and it
//! works on an air-gapped host. It reloads itself every poll interval
//! (`<meta http-equiv="refresh">`). Everything that comes from an envelope,
//! a config or a rule's summary is HTML-escaped.
//!
//! Bounded: at most [`MAX_ROWS`] rows per table, whatever the fleet. The
//! rows kept are those an on-call engineer needs first (firing before
//! pending and critical before warning; alerting agents, then the longest
//! idle; targets that are down first), and the page says how many were
//! left out and where to find them.

use std::collections::HashMap;
use std::fmt::Write as _;

use shared_schema::{Severity, Timestamp};

use super::{AgentRow, AlertRow, AlertState, Snapshot, TargetCard};

/// Rows per table at most.
pub const MAX_ROWS: usize = 500;

/// Renders the page at `now` (the watchdog's clock).
pub fn render(snap: &Snapshot, now: Timestamp) -> String {
    let alerts = snap.alerts();
    let agents: usize = snap.targets.iter().map(|t| t.agents.len()).sum();
    let mut out =
        String::with_capacity(16 * 1024 + 300 * (alerts.len() + agents).min(MAX_ROWS * 3));
    let firing = alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .count();
    let critical = alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing && a.severity == Severity::Critical)
        .count();
    let up = snap.targets.iter().filter(|t| t.up == Some(true)).count();
    let refresh = snap.interval.as_secs().max(1);
    let title = if firing == 0 {
        "watchdog: all quiet".to_owned()
    } else {
        format!("watchdog: {firing} firing ({critical} critical)")
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{refresh}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n\
         <h1>{title}</h1>\n<p id=\"summary\">{} targets ({up} up), {agents} agents, \
         {firing} alerts firing ({critical} critical), {} pending. \
         Page made at {} (watchdog clock); it reloads every {refresh}s. \
         Machine-readable: <a href=\"api/v1/alerts\">/api/v1/alerts</a>, \
         <a href=\"metrics\">/metrics</a>.</p>\n",
        snap.targets.len(),
        alerts.len() - firing,
        esc(&now.to_string()),
    );
    alerts_table(&mut out, &alerts, now);
    targets_table(&mut out, snap, now);
    agents_table(&mut out, snap, &alerts);
    out.push_str("</body></html>\n");
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1em;color:#111}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.critical td.sev,span.down{color:#fff;background:#b00}\
tr.warning td.sev{background:#fd5}tr.pending{color:#555}\
span.up{color:#060}.cap{font-style:italic}code{font-size:12px}";

fn alerts_table(out: &mut String, alerts: &[AlertRow], now: Timestamp) {
    out.push_str("<h2 id=\"alerts\">Alerts</h2>\n");
    if alerts.is_empty() {
        out.push_str("<p>No alert is pending or firing.</p>\n");
        return;
    }
    out.push_str(
        "<table id=\"alerts-table\"><thead><tr><th>state</th><th>severity</th><th>rule</th>\
         <th>target</th><th>subject</th><th>since</th><th>summary</th></tr></thead><tbody>\n",
    );
    for a in alerts.iter().take(MAX_ROWS) {
        let state = match a.state {
            AlertState::Firing => "firing",
            AlertState::Pending => "pending",
        };
        let subject: Vec<String> = a
            .labels
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
            .collect();
        let _ = writeln!(
            out,
            "<tr class=\"{state} {sev}\" data-key=\"{key}\"><td>{state}</td><td class=\"sev\">{sev}</td>\
             <td>{rule}</td><td>{target}</td><td>{subject}</td>\
             <td title=\"{since}\">{age} ago</td><td>{summary}</td></tr>",
            sev = a.severity.as_str(),
            key = esc(&a.key),
            rule = esc(&a.rule),
            target = esc(&a.target),
            subject = subject.join(" "),
            since = esc(&a.since.to_string()),
            age = duration(now.seconds_since(&a.since)),
            summary = esc(&a.summary),
        );
    }
    out.push_str("</tbody></table>\n");
    capped(
        out,
        alerts.len(),
        "alerts",
        "firing first, then the most severe and the oldest; all of them: /api/v1/alerts",
    );
}

fn targets_table(out: &mut String, snap: &Snapshot, now: Timestamp) {
    out.push_str("<h2 id=\"targets\">Targets</h2>\n");
    if snap.targets.is_empty() {
        out.push_str("<p>No target is configured.</p>\n");
        return;
    }
    let mut targets: Vec<&TargetCard> = snap.targets.iter().map(|t| &**t).collect();
    // Down first: that is what someone opening the page looks for.
    targets.sort_by_key(|t| (t.up != Some(false), t.name.as_str()));
    out.push_str(
        "<table id=\"targets-table\"><thead><tr><th>target</th><th>up</th><th>enabled</th>\
         <th>schema</th><th>agents</th><th>alerts</th><th>last successful poll</th>\
         <th>last error</th></tr></thead><tbody>\n",
    );
    for t in targets.iter().take(MAX_ROWS) {
        let up = match t.up {
            Some(true) => "<span class=\"up\">up</span>",
            Some(false) => "<span class=\"down\">down</span>",
            None => "not polled yet",
        };
        let enabled = match t.enabled {
            Some(true) => "yes",
            Some(false) => "no (kill-switch off)",
            None => "",
        };
        let last = t.last_success.map_or_else(
            || "never".to_owned(),
            |s| format!("{} ago", duration(now.seconds_since(&s))),
        );
        let _ = writeln!(
            out,
            "<tr data-target=\"{name}\"><td>{name}</td><td>{up}</td><td>{enabled}</td>\
             <td class=\"n\">{schema}</td><td class=\"n\">{agents}</td><td class=\"n\">{alerts}</td>\
             <td>{last}</td><td>{error}</td></tr>",
            name = esc(&t.name),
            schema = t.schema_version.map(|v| v.to_string()).unwrap_or_default(),
            agents = t.agents.len(),
            alerts = t.alerts.len(),
            error = esc(t.last_error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table>\n");
    capped(
        out,
        targets.len(),
        "targets",
        "down first; every target: watchdog_target_up in /metrics",
    );
}

fn agents_table(out: &mut String, snap: &Snapshot, alerts: &[AlertRow]) {
    out.push_str("<h2 id=\"agents\">Agents</h2>\n");
    // The alerts about each agent: (target, job_id) from their labels,
    // indexed once (a scan of every alert per row would be rows x alerts).
    let mut about: HashMap<(&str, i64), Vec<&AlertRow>> = HashMap::new();
    for a in alerts {
        if let Some(job) = a.labels.get("job_id").and_then(|j| j.parse().ok()) {
            about.entry((a.target.as_str(), job)).or_default().push(a);
        }
    }
    let mut rows: Vec<(&str, &AgentRow, Option<&Vec<&AlertRow>>)> = snap
        .targets
        .iter()
        .flat_map(|t| {
            let about = &about;
            t.agents
                .iter()
                .map(move |a| (t.name.as_str(), a, about.get(&(t.name.as_str(), a.job_id))))
        })
        .collect();
    if rows.is_empty() {
        out.push_str("<p>No agent is running.</p>\n");
        return;
    }
    let total = rows.len();
    type Row<'a> = (&'a str, &'a AgentRow, Option<&'a Vec<&'a AlertRow>>);
    let key = |r: &Row<'_>| {
        (
            r.2.is_none(),
            std::cmp::Reverse(r.1.idle_s.map(|v| v as i64)),
        )
    };
    if total > MAX_ROWS {
        rows.select_nth_unstable_by_key(MAX_ROWS, key);
        rows.truncate(MAX_ROWS);
    }
    rows.sort_by(|a, b| {
        key(a)
            .cmp(&key(b))
            .then((a.0, a.1.job_id).cmp(&(b.0, b.1.job_id)))
    });
    out.push_str(
        "<table id=\"agents-table\"><thead><tr><th>target</th><th>job</th><th>agent</th><th>pid</th>\
         <th>CPU</th><th>idle</th><th>runtime</th><th>state</th><th>alerts</th></tr></thead><tbody>\n",
    );
    for (target, a, hits) in &rows {
        let mut about = String::new();
        for al in hits.iter().flat_map(|v| v.iter()) {
            if !about.is_empty() {
                about.push_str("<br>");
            }
            let state = match al.state {
                AlertState::Firing => "",
                AlertState::Pending => ", pending",
            };
            let _ = write!(about, "{} ({}{state})", esc(&al.rule), al.severity.as_str());
            if let Some(d) = &al.diagnosis {
                let _ = write!(about, ": {}", esc(d));
            }
        }
        let state = match (a.state.as_deref(), a.alive) {
            (_, Some(false)) => "gone".to_owned(),
            (Some(s), _) => esc(s),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            out,
            "<tr data-job=\"{job}\"><td>{target}</td><td class=\"n\">{job}</td><td>{agent}</td>\
             <td class=\"n\">{pid}</td><td class=\"n\">{cpu}</td><td class=\"n\">{idle}</td>\
             <td class=\"n\">{runtime}</td><td>{state}</td><td>{about}</td></tr>",
            job = a.job_id,
            target = esc(target),
            agent = esc(a.agent.as_deref().unwrap_or("")),
            pid = a.pid.map(|p| p.to_string()).unwrap_or_default(),
            cpu = a.cpu_fraction.map_or_else(
                || "not enough data yet".to_owned(),
                |f| format!("{:.1}%", f * 100.0)
            ),
            idle = a.idle_s.map(duration).unwrap_or_default(),
            runtime = a.runtime_s.map(duration).unwrap_or_default(),
        );
    }
    out.push_str("</tbody></table>\n");
    capped(out, total, "agents", "alerting first, then the longest idle; every agent: watchdog_agent_idle_seconds in /metrics");
}

fn capped(out: &mut String, total: usize, what: &str, how: &str) {
    if total > MAX_ROWS {
        let _ = writeln!(
            out,
            "<p class=\"cap\">Showing {MAX_ROWS} of {total} {what} ({how}).</p>"
        );
    }
}

/// `1h 02m`, `12m 03s`, `45s`: how people read an age.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return String::new();
    }
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// HTML-escapes text for an element or a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn agent(job: i64, idle: f64) -> AgentRow {
        AgentRow {
            job_id: job,
            agent: Some("dev".into()),
            run_id: None,
            pid: Some(1000 + job),
            cpu_fraction: Some(0.003),
            idle_s: Some(idle),
            runtime_s: Some(3700.0),
            state: Some("S".into()),
            alive: Some(true),
        }
    }

    fn snapshot(agents: usize, name: &str) -> Snapshot {
        let alert = AlertRow {
            rule: "stuck_agent".into(),
            severity: Severity::Warning,
            state: AlertState::Firing,
            target: name.into(),
            key: format!("stuck_agent|{name}|job=3"),
            labels: BTreeMap::from([("job_id".to_owned(), "3".to_owned())]).into(),
            summary: "agent <dev> used 0.3% CPU & did no I/O".into(),
            value: Some(0.003),
            since: ts("2026-11-22T10:00:00Z"),
            diagnosis: None,
        };
        Snapshot {
            targets: vec![Arc::new(TargetCard {
                name: name.into(),
                up: Some(true),
                enabled: Some(true),
                schema_version: Some(1),
                last_success: Some(ts("2026-11-22T10:11:55Z")),
                agents: (0..agents as i64).map(|j| agent(j, j as f64)).collect(),
                alerts: vec![alert],
                ..TargetCard::default()
            })],
            diagnoses: Default::default(),
            interval: Duration::from_secs(15),
        }
    }

    #[test]
    fn everything_from_outside_is_escaped() {
        let page = render(
            &snapshot(4, "<script>alert(1)</script>"),
            ts("2026-11-22T10:12:00Z"),
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("agent &lt;dev&gt; used 0.3% CPU &amp; did no I/O"));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"15\">"));
        assert!(page.contains("12m 00s ago"), "{page}");
        // No outside fetch: no src=, no stylesheet link, no script at all.
        for banned in ["src=", "<link", "<script", "@import", "url("] {
            assert!(!page.contains(banned), "{banned}");
        }
    }

    #[test]
    fn the_page_is_capped_and_says_so_keeping_the_alerting_agent() {
        let page = render(&snapshot(2000, "orch-1"), ts("2026-11-22T10:12:00Z"));
        assert_eq!(page.matches("<tr data-job=").count(), MAX_ROWS);
        assert!(page.contains("Showing 500 of 2000 agents"), "cap not said");
        // Job 3 has the alert: kept, and first, though it is hardly idle.
        let first = page.find("<tr data-job=").unwrap();
        assert!(page[first..].starts_with("<tr data-job=\"3\">"));
        assert!(page.contains("stuck_agent (warning)"));
        // The longest idle come next.
        assert!(page.contains("<tr data-job=\"1999\">"));
        assert!(!page.contains("<tr data-job=\"10\">"));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(45.4), "45s");
        assert_eq!(duration(723.0), "12m 03s");
        assert_eq!(duration(3720.0), "1h 02m");
        assert_eq!(duration(90_000.0), "1d 01h");
        assert_eq!(duration(-3.0), "0s");
        assert_eq!(duration(f64::NAN), "");
    }
}
