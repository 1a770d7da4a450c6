//! The activity of each running job, as the contract's `activity` table
//! counts it: cumulative, raw counts, bounded in memory.
//!
//! One mutex guards it; both sides hold it only to add or copy a few
//! numbers (decoding and mapping happen before, outside), so a telemetry
//! flood never holds `GET /metrics` for longer than one batch's additions.
//!
//! Memory: at most [`MAX_JOBS`] jobs (only running ones: the receiver drops
//! the others with [`Store::retain`]), each with at most
//! [`MAX_SERIES_PER_JOB`] cumulative metric series and [`SPAN_RING`]
//! remembered span ids; strings are cut at [`super::map::MAX_TEXT`]. A
//! flood of new session ids therefore replaces one `session_id` string and
//! fills at most the series cap; points of series past the cap are dropped
//! and counted (never guessed: a series we cannot follow would count its
//! whole cumulative value again).
//!
//! Events against metrics: a request reported as an event (or a GenAI span)
//! and as a metric is counted once. Tokens come from events as soon as one
//! event of the job carried tokens, else from the token metrics; cost from
//! events as soon as one carried a cost, else from the cost metrics.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use shared_schema::{Activity, Agent, Timestamp};

use super::map::{Fact, MetricKind, Record, TokenKind, Usage};

/// Jobs tracked at once.
pub const MAX_JOBS: usize = 4096;
/// Cumulative metric series followed per job.
pub const MAX_SERIES_PER_JOB: usize = 256;
/// GenAI span ids remembered per job, to count a span and its event once.
pub const SPAN_RING: usize = 64;

/// Counters of what the receiver did, for `GET /stats` and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Records (log records, data points, spans) attributed to a running job.
    pub accepted: u64,
    /// Records whose `orchestrator.job_id` names no running job (and whose
    /// connection is not held by one either).
    pub unknown_job: u64,
    /// Records without `orchestrator.job_id` whose connection is held by no
    /// running job's process tree.
    pub no_job: u64,
    /// Records dropped because [`MAX_JOBS`] jobs were already tracked.
    pub jobs_full: u64,
    /// Cumulative metric points dropped past [`MAX_SERIES_PER_JOB`].
    pub series_dropped: u64,
    /// Jobs tracked now.
    pub jobs: u64,
}

/// Why a batch's records were not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unattributed {
    /// The attribute named a job that is not running.
    UnknownJob,
    /// No attribute, and the connection belongs to no running agent.
    NoJob,
}

/// All jobs' activity.
#[derive(Debug, Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<i64, Job>,
    stats: Stats,
}

/// One job's counters; what is not in [`Activity`] decides between sources.
#[derive(Debug)]
struct Job {
    service: Option<String>,
    session: Option<String>,
    first_seen: Timestamp,
    last_seen: Timestamp,
    api_requests: u64,
    api_errors: u64,
    last_api_at: Option<Timestamp>,
    /// Tokens from events, in [`TokenKind`] order.
    event_tokens: [u64; 4],
    event_has_tokens: bool,
    event_cost: Option<f64>,
    /// Tokens and cost from metrics.
    metric_tokens: [f64; 4],
    metric_cost: Option<f64>,
    /// Last value of each cumulative series.
    series: HashMap<u64, f64>,
    tool_calls: u64,
    tool_failures: u64,
    last_tool: Option<String>,
    last_tool_at: Option<Timestamp>,
    tool_repeat: u64,
    last_fingerprint: Option<u64>,
    spans: VecDeque<u64>,
}

impl Job {
    fn new(now: Timestamp) -> Self {
        Self {
            service: None,
            session: None,
            first_seen: now,
            last_seen: now,
            api_requests: 0,
            api_errors: 0,
            last_api_at: None,
            event_tokens: [0; 4],
            event_has_tokens: false,
            event_cost: None,
            metric_tokens: [0.0; 4],
            metric_cost: None,
            series: HashMap::new(),
            tool_calls: 0,
            tool_failures: 0,
            last_tool: None,
            last_tool_at: None,
            tool_repeat: 0,
            last_fingerprint: None,
            spans: VecDeque::new(),
        }
    }

    /// Adds one record; `false` when a metric point was dropped.
    fn add(&mut self, r: &Record, now: Timestamp) -> bool {
        self.last_seen = now;
        if r.service.is_some() {
            self.service.clone_from(&r.service);
        }
        if r.session.is_some() {
            self.session.clone_from(&r.session);
        }
        if let Some(span) = r.span {
            if self.spans.contains(&span) {
                return true;
            }
            if self.spans.len() >= SPAN_RING {
                self.spans.pop_front();
            }
            self.spans.push_back(span);
        }
        match &r.fact {
            None => {}
            Some(Fact::Request(usage)) => self.request(usage, now),
            Some(Fact::Error(n)) => self.api_errors = self.api_errors.saturating_add(*n),
            Some(Fact::Tool {
                name,
                failed,
                fingerprint,
            }) => {
                self.tool_calls += 1;
                self.tool_failures += u64::from(*failed);
                self.tool_repeat = if self.last_fingerprint == Some(*fingerprint) {
                    self.tool_repeat + 1
                } else {
                    1
                };
                self.last_fingerprint = Some(*fingerprint);
                self.last_tool = Some(name.clone());
                self.last_tool_at = Some(now);
            }
            Some(Fact::Metric {
                kind,
                value,
                series,
            }) => return self.metric(*kind, *value, *series),
        }
        true
    }

    fn request(&mut self, u: &Usage, now: Timestamp) {
        self.api_requests += 1;
        self.last_api_at = Some(now);
        if u.has_tokens {
            self.event_has_tokens = true;
            for (sum, add) in self.event_tokens.iter_mut().zip([
                u.input,
                u.output,
                u.cache_read,
                u.cache_creation,
            ]) {
                *sum = sum.saturating_add(add);
            }
        }
        if let Some(cost) = u.cost {
            self.event_cost = Some(self.event_cost.unwrap_or(0.0) + cost);
        }
    }

    fn metric(&mut self, kind: MetricKind, value: f64, series: Option<u64>) -> bool {
        let increase = match series {
            None => value,
            Some(key) => {
                let known = self.series.len();
                match self.series.get_mut(&key) {
                    Some(last) => {
                        // Below the last value: the series restarted.
                        let inc = if value >= *last { value - *last } else { value };
                        *last = value;
                        inc
                    }
                    None if known >= MAX_SERIES_PER_JOB => return false,
                    None => {
                        self.series.insert(key, value);
                        value
                    }
                }
            }
        };
        match kind {
            MetricKind::Cost => self.metric_cost = Some(self.metric_cost.unwrap_or(0.0) + increase),
            MetricKind::Tokens(t) => self.metric_tokens[index(t)] += increase,
        }
        true
    }

    fn activity(&self) -> Activity {
        let tokens = if self.event_has_tokens {
            self.event_tokens
        } else {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            self.metric_tokens.map(|t| t.round() as u64)
        };
        Activity {
            source: "otlp".to_owned(),
            service: self.service.clone(),
            session_id: self.session.clone(),
            first_seen_at: Some(self.first_seen),
            last_seen_at: Some(self.last_seen),
            api_requests: self.api_requests,
            api_errors: self.api_errors,
            last_api_at: self.last_api_at,
            input_tokens: tokens[0],
            output_tokens: tokens[1],
            cache_read_tokens: tokens[2],
            cache_creation_tokens: tokens[3],
            cost_usd: self
                .event_cost
                .or(self.metric_cost)
                .filter(|c| c.is_finite()),
            tool_calls: self.tool_calls,
            tool_failures: self.tool_failures,
            last_tool: self.last_tool.clone(),
            last_tool_at: self.last_tool_at,
            tool_repeat: self.tool_repeat,
        }
    }

    /// Heap and inline bytes, roughly: what a job costs in memory.
    fn approx_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        std::mem::size_of::<Self>()
            + text(&self.service)
            + text(&self.session)
            + text(&self.last_tool)
            + self.series.capacity() * (std::mem::size_of::<(u64, f64)>() + 1)
            + self.spans.capacity() * std::mem::size_of::<u64>()
    }
}

fn index(t: TokenKind) -> usize {
    match t {
        TokenKind::Input => 0,
        TokenKind::Output => 1,
        TokenKind::CacheRead => 2,
        TokenKind::CacheCreation => 3,
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `records` of one running job; returns how many were dropped
    /// (job cap reached, or metric series past the cap).
    pub fn add<'a>(
        &self,
        job_id: i64,
        records: impl IntoIterator<Item = &'a Record>,
        now: Timestamp,
    ) -> u64 {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let full = inner.jobs.len() >= MAX_JOBS;
        let job = match inner.jobs.get_mut(&job_id) {
            Some(job) => job,
            None if full => {
                let n = records.into_iter().count() as u64;
                inner.stats.jobs_full += n;
                return n;
            }
            None => inner.jobs.entry(job_id).or_insert_with(|| Job::new(now)),
        };
        let (mut accepted, mut dropped) = (0, 0);
        for r in records {
            if job.add(r, now) {
                accepted += 1;
            } else {
                dropped += 1;
            }
        }
        inner.stats.accepted += accepted;
        inner.stats.series_dropped += dropped;
        inner.stats.jobs = inner.jobs.len() as u64;
        dropped
    }

    /// Counts `n` records that belong to no running job.
    pub fn unattributed(&self, why: Unattributed, n: u64) {
        let mut inner = self.lock();
        match why {
            Unattributed::UnknownJob => inner.stats.unknown_job += n,
            Unattributed::NoJob => inner.stats.no_job += n,
        }
    }

    /// Forgets every job not in `running`.
    pub fn retain(&self, running: &HashSet<i64>) {
        let mut inner = self.lock();
        inner.jobs.retain(|id, _| running.contains(id));
        inner.stats.jobs = inner.jobs.len() as u64;
    }

    /// One job's activity; `None` while nothing was attributed to it.
    pub fn activity(&self, job_id: i64) -> Option<Activity> {
        self.lock().jobs.get(&job_id).map(Job::activity)
    }

    /// Sets `activity` of every agent, under one short lock.
    pub fn fill(&self, agents: &mut [Agent]) {
        let inner = self.lock();
        for agent in agents {
            agent.activity = inner.jobs.get(&agent.job_id).map(Job::activity);
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    /// Roughly how many bytes the tracked jobs take.
    pub fn approx_bytes(&self) -> usize {
        self.lock().jobs.values().map(Job::approx_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::map::JobAttr;

    fn rec(fact: Option<Fact>) -> Record {
        Record {
            job: JobAttr::Id(1),
            service: Some("claude-code".to_owned()),
            session: Some("s1".to_owned()),
            fact,
            span: None,
        }
    }

    fn tool(fp: u64) -> Record {
        rec(Some(Fact::Tool {
            name: "Bash".to_owned(),
            failed: fp == 9,
            fingerprint: fp,
        }))
    }

    fn now() -> Timestamp {
        Timestamp::now()
    }

    #[test]
    fn counts_requests_tokens_and_cost_from_events() {
        let store = Store::new();
        let usage = Usage {
            input: 100,
            output: 20,
            cache_read: 7,
            cache_creation: 3,
            has_tokens: true,
            cost: Some(0.5),
        };
        store.add(
            1,
            &[
                rec(Some(Fact::Request(usage))),
                rec(Some(Fact::Request(usage))),
                rec(Some(Fact::Error(1))),
            ],
            now(),
        );
        let a = store.activity(1).unwrap_or_default();
        assert_eq!((a.api_requests, a.api_errors), (2, 1));
        assert_eq!(
            (
                a.input_tokens,
                a.output_tokens,
                a.cache_read_tokens,
                a.cache_creation_tokens
            ),
            (200, 40, 14, 6)
        );
        assert_eq!(a.cost_usd, Some(1.0));
        assert_eq!(a.session_id.as_deref(), Some("s1"));
        assert!(a.last_api_at.is_some());
        assert_eq!(store.activity(2), None);
    }

    #[test]
    fn metrics_count_only_when_no_event_did() {
        let store = Store::new();
        let cost = |v| {
            rec(Some(Fact::Metric {
                kind: MetricKind::Cost,
                value: v,
                series: Some(5),
            }))
        };
        // Cumulative: 0.25 then 0.75 is 0.75 in all.
        store.add(1, &[cost(0.25), cost(0.75)], now());
        assert_eq!(store.activity(1).and_then(|a| a.cost_usd), Some(0.75));
        let usage = Usage {
            cost: Some(0.1),
            ..Usage::default()
        };
        store.add(1, &[rec(Some(Fact::Request(usage)))], now());
        assert_eq!(store.activity(1).and_then(|a| a.cost_usd), Some(0.1));
    }

    #[test]
    fn tool_repeat_counts_the_run_of_equal_fingerprints() {
        let store = Store::new();
        store.add(1, &[tool(1), tool(1), tool(1)], now());
        assert_eq!(store.activity(1).map(|a| a.tool_repeat), Some(3));
        store.add(1, &[tool(2)], now());
        assert_eq!(store.activity(1).map(|a| a.tool_repeat), Some(1));
        store.add(1, &[tool(9)], now());
        let a = store.activity(1).unwrap_or_default();
        assert_eq!((a.tool_calls, a.tool_failures), (5, 1));
        assert_eq!(a.last_tool.as_deref(), Some("Bash"));
    }

    #[test]
    fn a_span_and_its_event_count_once() {
        let store = Store::new();
        let mut r = rec(Some(Fact::Request(Usage::default())));
        r.span = Some(77);
        store.add(1, &[r.clone(), r], now());
        assert_eq!(store.activity(1).map(|a| a.api_requests), Some(1));
    }

    #[test]
    fn series_past_the_cap_are_dropped_not_guessed() {
        let store = Store::new();
        let points: Vec<Record> = (0..MAX_SERIES_PER_JOB as u64 + 10)
            .map(|i| {
                rec(Some(Fact::Metric {
                    kind: MetricKind::Tokens(TokenKind::Input),
                    value: 1.0,
                    series: Some(i),
                }))
            })
            .collect();
        assert_eq!(store.add(1, &points, now()), 10);
        assert_eq!(
            store.activity(1).map(|a| a.input_tokens),
            Some(MAX_SERIES_PER_JOB as u64)
        );
        assert_eq!(store.stats().series_dropped, 10);
    }

    #[test]
    fn only_running_jobs_are_kept() {
        let store = Store::new();
        store.add(1, &[tool(1)], now());
        store.add(2, &[tool(1)], now());
        store.retain(&HashSet::from([2]));
        assert_eq!(store.activity(1), None);
        assert!(store.activity(2).is_some());
        assert_eq!(store.stats().jobs, 1);
    }
}
