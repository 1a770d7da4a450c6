//! The gauge names of CONTRACT.md section 4, for checking that every
//! dashboard panel and alerting rule names a gauge that exists.

pub use shared_schema::metrics::{FAMILIES as GAUGES, HISTOGRAMS};

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
