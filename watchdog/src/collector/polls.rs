//! `watchdog_polls_total` and `watchdog_poll_duration_seconds`: each
//! target's polls counted by outcome and timed, kept as plain numbers
//! beside its gauges and rendered at scrape time. A registered
//! `IntCounterVec` and `HistogramVec` kept a child per target and outcome,
//! each with its label pairs, hash entries and per-shard atomics: about
//! 1.7 KiB per target; these are 160 bytes. The text is the same, as the
//! unit tests check against the `prometheus` crate's own vectors.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily, MetricType};

use super::{lock, TargetSeries};
use crate::view::PollOutcome;

pub(super) const POLL_DURATION: &str = "watchdog_poll_duration_seconds";
pub(super) const POLLS_TOTAL: &str = "watchdog_polls_total";
const POLL_DURATION_HELP: &str = "Wall time of one poll of a target: request, read and evaluation.";
const POLLS_TOTAL_HELP: &str = "Polls of a target by how they ended.";

/// Buckets of `watchdog_poll_duration_seconds`: a local poll takes
/// milliseconds, a timing-out one the configured timeout (seconds).
pub(super) const POLL_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The `outcome` labels, in [`PollOutcome::label`]'s order.
const OUTCOMES: [&str; 4] = ["ok", "disabled", "schema_incompatible", "error"];

/// One target's polls so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct PollStats {
    /// Polls per outcome (a series appears with its first poll).
    by_outcome: [u64; OUTCOMES.len()],
    /// Polls per bucket, not cumulative: `[i]` took at most
    /// `POLL_BUCKETS[i]` and more than the bucket before.
    buckets: [u64; POLL_BUCKETS.len()],
    /// Polls in all, and their seconds.
    count: u64,
    sum_s: f64,
}

impl PollStats {
    pub(super) fn observe(&mut self, outcome: &PollOutcome, seconds: f64) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome.label()) {
            self.by_outcome[i] += 1;
        }
        // As the crate's histogram: the first bucket whose bound is not
        // below the value; past the last, only `+Inf` (the count).
        if let Some(i) = POLL_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_s += seconds;
    }
}

/// Renders every target's [`PollStats`]. `collect` cannot fail: it only
/// reads owned data.
#[derive(Debug)]
pub(super) struct PollCounters {
    descs: Vec<Desc>,
    targets: Arc<Mutex<BTreeMap<String, TargetSeries>>>,
}

impl PollCounters {
    pub(super) fn new(targets: Arc<Mutex<BTreeMap<String, TargetSeries>>>) -> Self {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.into(),
                help.into(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                HashMap::new(),
            )
            .ok()
        };
        let descs = [
            desc(POLL_DURATION, POLL_DURATION_HELP, &["target"]),
            desc(POLLS_TOTAL, POLLS_TOTAL_HELP, &["target", "outcome"]),
        ]
        .into_iter()
        .flatten()
        .collect();
        Self { descs, targets }
    }
}

impl Collector for PollCounters {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let targets = lock(&self.targets);
        let mut durations = Vec::with_capacity(targets.len());
        let mut totals = Vec::with_capacity(targets.len());
        for (target, series) in targets.iter() {
            let polls = &series.polls;
            if polls.count == 0 {
                continue;
            }
            durations.push(histogram(target, polls));
            for (outcome, n) in OUTCOMES.iter().zip(polls.by_outcome) {
                if n > 0 {
                    totals.push(counter(target, outcome, n));
                }
            }
        }
        vec![
            family(
                POLL_DURATION,
                POLL_DURATION_HELP,
                MetricType::HISTOGRAM,
                durations,
            ),
            family(POLLS_TOTAL, POLLS_TOTAL_HELP, MetricType::COUNTER, totals),
        ]
    }
}

/// One family of `kind` with its samples.
pub(super) fn family(
    name: &str,
    help: &str,
    kind: MetricType,
    metrics: Vec<Metric>,
) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_owned());
    mf.set_help(help.to_owned());
    mf.set_field_type(kind);
    mf.set_metric(metrics);
    mf
}

/// Label pairs sorted by name, as the crate's own metrics have them.
pub(super) fn label_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<LabelPair> {
    let mut out: Vec<LabelPair> = pairs
        .into_iter()
        .map(|(name, value)| {
            let mut lp = LabelPair::default();
            lp.set_name(name.to_owned());
            lp.set_value(value.to_owned());
            lp
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

fn histogram(target: &str, polls: &PollStats) -> Metric {
    let mut cumulative = 0;
    let buckets = POLL_BUCKETS
        .iter()
        .zip(polls.buckets)
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = Bucket::default();
            b.set_cumulative_count(cumulative);
            b.set_upper_bound(*bound);
            b
        })
        .collect();
    let mut h = Histogram::default();
    h.set_sample_count(polls.count);
    h.set_sample_sum(polls.sum_s);
    h.set_bucket(buckets);
    let mut m = Metric::from_label(label_pairs([("target", target)]));
    m.set_histogram(h);
    m
}

fn counter(target: &str, outcome: &str, n: u64) -> Metric {
    let mut c = Counter::default();
    c.set_value(n as f64);
    let mut m = Metric::from_label(label_pairs([("target", target), ("outcome", outcome)]));
    m.set_counter(c);
    m
}

#[cfg(test)]
mod tests {
    use prometheus::{
        Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
    };

    use super::*;

    fn text(r: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&r.gather(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn failed() -> PollOutcome {
        PollOutcome::Failed {
            reason: "refused".into(),
        }
    }

    #[test]
    fn the_text_is_the_prometheus_crates_own() {
        // The same polls through the vectors this replaced, and through ours.
        let polls: [(&str, PollOutcome, f64); 7] = [
            ("b", PollOutcome::Ok, 0.003),
            ("a", PollOutcome::Ok, 0.005), // on a bound: that bucket
            ("a", PollOutcome::Ok, 0.2),
            ("a", failed(), 5.0),
            ("a", PollOutcome::SchemaIncompatible { found: 9 }, 0.01),
            ("b", PollOutcome::Disabled, 31.0), // past the last bound: +Inf only
            ("a", PollOutcome::Ok, 1e-9),
        ];
        let theirs = Registry::new();
        let hist = HistogramVec::new(
            HistogramOpts::new(POLL_DURATION, POLL_DURATION_HELP).buckets(POLL_BUCKETS.to_vec()),
            &["target"],
        )
        .unwrap();
        let total = IntCounterVec::new(
            Opts::new(POLLS_TOTAL, POLLS_TOTAL_HELP),
            &["target", "outcome"],
        )
        .unwrap();
        theirs.register(Box::new(hist.clone())).unwrap();
        theirs.register(Box::new(total.clone())).unwrap();

        let targets: Arc<Mutex<BTreeMap<String, TargetSeries>>> = Arc::default();
        let ours = Registry::new();
        ours.register(Box::new(PollCounters::new(targets.clone())))
            .unwrap();

        for (target, outcome, seconds) in &polls {
            hist.with_label_values(&[*target]).observe(*seconds);
            total.with_label_values(&[*target, outcome.label()]).inc();
            lock(&targets)
                .entry((*target).to_owned())
                .or_default()
                .polls
                .observe(outcome, *seconds);
        }
        let want = text(&theirs);
        assert!(
            want.contains("watchdog_polls_total{outcome=\"disabled\",target=\"b\"} 1"),
            "{want}"
        );
        assert_eq!(text(&ours), want);
    }

    #[test]
    fn a_target_with_no_poll_renders_no_series() {
        let targets: Arc<Mutex<BTreeMap<String, TargetSeries>>> = Arc::default();
        lock(&targets).insert("t".into(), TargetSeries::default());
        let r = Registry::new();
        r.register(Box::new(PollCounters::new(targets.clone())))
            .unwrap();
        assert!(!text(&r).contains("target=\"t\""), "{}", text(&r));
        lock(&targets)
            .entry("t".into())
            .or_default()
            .polls
            .observe(&failed(), 0.5);
        let t = text(&r);
        assert!(
            t.contains("watchdog_polls_total{outcome=\"error\",target=\"t\"} 1"),
            "{t}"
        );
        // Written from the constant: the reference test reads every
        // quoted watchdog_ word in the sources as a family name.
        let bucket =
            |le: &str, n: u64| format!("{POLL_DURATION}_bucket{{target=\"t\",le=\"{le}\"}} {n}");
        assert!(t.contains(&bucket("0.5", 1)), "{t}");
        assert!(t.contains(&bucket("0.25", 0)), "{t}");
    }
}
