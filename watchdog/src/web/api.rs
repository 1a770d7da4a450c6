//! `GET /api/v1/alerts`: every pending and firing alert as JSON, for
//! scripts and chat bots (CONTRACT.md section 5):
//! `{"alerts":[{"rule","severity","state","target","key","labels","summary","value","since","diagnosis"}]}`.
//!
//! Every key is always there (`value` and `diagnosis` are `null` when
//! there is none), in the order of the status page: firing first, then
//! the most severe, then the oldest. Not capped: its size follows the
//! alerts, and those are bounded by the subjects the targets report.

use serde::Serialize;

use super::{AlertRow, Snapshot};

#[derive(Serialize)]
struct Body<'a> {
    alerts: &'a [AlertRow],
}

/// The body of `GET /api/v1/alerts`.
pub fn render(snap: &Snapshot) -> String {
    let alerts = snap.alerts();
    serde_json::to_string(&Body { alerts: &alerts })
        .unwrap_or_else(|e| format!("{{\"alerts\":[],\"error\":{:?}}}", e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::{json, Value};
    use shared_schema::{Severity, Timestamp};

    use super::*;
    use crate::web::{AlertState, TargetCard};

    #[test]
    fn the_body_has_the_contracts_shape_pending_included() {
        let row = |state, key: &str, severity| AlertRow {
            rule: "stuck_agent".into(),
            severity,
            state,
            target: "orch-1".into(),
            key: key.into(),
            labels: BTreeMap::from([("job_id".to_owned(), "7".to_owned())]).into(),
            summary: "idle".into(),
            value: Some(0.003),
            since: Timestamp::parse("2026-11-22T10:00:00Z").unwrap(),
            diagnosis: None,
        };
        let snap = Snapshot {
            targets: vec![Arc::new(TargetCard {
                name: "orch-1".into(),
                alerts: vec![
                    row(AlertState::Pending, "b", Severity::Critical),
                    row(AlertState::Firing, "a", Severity::Warning),
                ],
                ..TargetCard::default()
            })],
            diagnoses: [("a".to_owned(), "waiting on network".to_owned())].into(),
            interval: Duration::from_secs(15),
        };
        let body: Value = serde_json::from_str(&render(&snap)).unwrap();
        assert_eq!(
            body,
            json!({"alerts": [
                {"rule": "stuck_agent", "severity": "warning", "state": "firing", "target": "orch-1",
                 "key": "a", "labels": {"job_id": "7"}, "summary": "idle: waiting on network",
                 "value": 0.003, "since": "2026-11-22T10:00:00.000Z", "diagnosis": "waiting on network"},
                {"rule": "stuck_agent", "severity": "critical", "state": "pending", "target": "orch-1",
                 "key": "b", "labels": {"job_id": "7"}, "summary": "idle",
                 "value": 0.003, "since": "2026-11-22T10:00:00.000Z", "diagnosis": null},
            ]})
        );
    }
}
