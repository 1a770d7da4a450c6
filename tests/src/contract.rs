//! The gauge names of CONTRACT.md section 4, for checking that every
//! dashboard panel and alerting rule names a gauge that exists.

/// Every metric family the watchdog exposes (section 4).
pub const GAUGES: &[&str] = &[
    "watchdog_target_up",
    "watchdog_target_enabled",
    "watchdog_target_schema_version",
    "watchdog_last_success_timestamp_seconds",
    "watchdog_agent_cpu_fraction",
    "watchdog_agent_runtime_seconds",
    "watchdog_agent_idle_seconds",
    "watchdog_agents_running",
    "watchdog_stage_tasks",
    "watchdog_stage_oldest_age_seconds",
    "watchdog_queue_jobs",
    "watchdog_queue_depth",
    "watchdog_queue_max_concurrency",
    "watchdog_breaker_open",
    "watchdog_reconciler_wall_clock_seconds",
    "watchdog_reconciler_pending_events",
    "watchdog_reconciler_invariant_violations",
    "watchdog_error_events",
    "watchdog_cost_usd",
    "watchdog_tokens",
    "watchdog_alerts_firing",
    "watchdog_poll_duration_seconds",
    "watchdog_polls_total",
    "watchdog_notifications_total",
    "watchdog_build_info",
    // New in page 3.
    "watchdog_agent_cost_usd",
    "watchdog_agent_api_requests_total",
    "watchdog_agent_tool_calls_total",
    "watchdog_agent_tool_repeat",
    "watchdog_agent_net_wait_seconds",
];

/// Families that are histograms (their series carry `_bucket`, `_sum`, `_count`).
pub const HISTOGRAMS: &[&str] = &["watchdog_poll_duration_seconds"];

/// Whether `series` (a name as written in PromQL) is a contract gauge or
/// one of a contract histogram's series.
pub fn is_contract_series(series: &str) -> bool {
    if GAUGES.contains(&series) {
        return true;
    }
    HISTOGRAMS.iter().any(|h| {
        series
            .strip_prefix(h)
            .is_some_and(|suffix| matches!(suffix, "_bucket" | "_sum" | "_count"))
    })
}

/// Every `watchdog_*` identifier in a PromQL expression.
pub fn watchdog_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("watchdog_") {
        let start = i + pos;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        // `job="watchdog"` is a label value, not a metric: "watchdog_" never
        // appears there, but a quoted name would; skip quoted occurrences.
        let quoted = start > 0 && bytes[start - 1] == b'"';
        if !preceded && !quoted {
            names.push(expr[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_in_expressions() {
        assert_eq!(
            watchdog_names("histogram_quantile(0.9, rate(watchdog_poll_duration_seconds_bucket{target=~\"$t\"}[5m])) / watchdog_queue_depth"),
            vec!["watchdog_poll_duration_seconds_bucket", "watchdog_queue_depth"]
        );
        assert!(is_contract_series("watchdog_poll_duration_seconds_bucket"));
        assert!(!is_contract_series("watchdog_queue_depht"));
        assert!(!is_contract_series("watchdog_queue_depth_bucket"));
    }
}
