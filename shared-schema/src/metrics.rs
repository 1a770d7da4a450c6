//! The names of the watchdog's metric families (CONTRACT.md section 4):
//! what dashboards and alerting rules may name. Read here once: the
//! watchdog's collector checks it exposes each, the deploy files' checks
//! that they name no other.

/// The metric families of section 4 (the watchdog may expose more:
/// additions are allowed, renames are not).
pub const FAMILIES: &[&str] = &[
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
