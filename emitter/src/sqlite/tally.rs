//! The incremental state, pure: what was read of each table, kept between
//! snapshots, and the sections derived from it. No I/O here.
//!
//! Every table's rowid space is cut into blocks of [`BLOCK`] ids. A row is
//! either *frozen* (a finished job, a finished run, an error event, a tick,
//! a task in a terminal stage) and only adds to its block's tally, or *live*
//! (a job or task not in a terminal state, a run without `finished_at`) and
//! is kept whole, to be re-read by primary key every snapshot. A block's
//! tally is only ever added to (new rows, a live row that froze) or replaced
//! whole (the recount re-read that block in one transaction), never
//! subtracted from, so sums do not drift.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shared_schema::{
    Agent, Cost, CostAggregate, Errors, Queue, Retries, RunningCost, Stage, SubsystemErrors,
    Timestamp, REQUIRED_JOB_STATUSES,
};

use crate::sql::{normalise_time, seconds_since};

/// Rowids per block: one block is re-read in one short transaction.
pub const BLOCK: i64 = 1024;

/// Job statuses after which a job is not expected to change; any other
/// status is live and re-read every snapshot. A job that leaves one of
/// these again (re-opened) is found by the recount.
pub const TERMINAL_JOB_STATUSES: [&str; 8] = [
    "done",
    "failed",
    "cancelled",
    "canceled",
    "succeeded",
    "completed",
    "error",
    "killed",
];

/// The block holding `id`.
pub fn block_of(id: i64) -> i64 {
    id.div_euclid(BLOCK)
}

/// The first and last id of block `b`.
pub fn block_range(b: i64) -> (i64, i64) {
    let lo = b.saturating_mul(BLOCK);
    (lo, lo.saturating_add(BLOCK - 1))
}

/// A row as read: it adds to a tally, or it is kept to be re-read.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<F, L> {
    /// Finished: counted once in its block.
    Frozen(F),
    /// Not finished: kept whole and re-read by primary key.
    Live(L),
}

/// What a block remembers of its frozen rows.
pub trait Tally: Default + Clone + PartialEq {
    /// One frozen row.
    type Row;
    /// Counts one frozen row.
    fn add(&mut self, row: &Self::Row);
    /// Adds another block's tally.
    fn merge(&mut self, other: &Self);
}

/// One table's incremental state.
#[derive(Debug, Clone)]
pub struct Table<T: Tally, L> {
    /// Per-block tallies of frozen rows.
    pub blocks: BTreeMap<i64, T>,
    /// Live rows by id.
    pub live: BTreeMap<i64, L>,
    /// The highest id read: rows above it are new.
    pub hwm: Option<i64>,
    /// The lowest id seen at the last bounds check.
    pub min: Option<i64>,
    /// Sum of all blocks; `None` when a block was replaced since.
    total: Option<T>,
}

impl<T: Tally, L> Default for Table<T, L> {
    fn default() -> Self {
        Self {
            blocks: BTreeMap::new(),
            live: BTreeMap::new(),
            hwm: None,
            min: None,
            total: Some(T::default()),
        }
    }
}

impl<T: Tally, L: PartialEq> Table<T, L> {
    /// A row above the high-water mark.
    pub fn add_new(&mut self, id: i64, entry: Entry<T::Row, L>) {
        self.hwm = Some(self.hwm.map_or(id, |h| h.max(id)));
        self.apply(id, entry);
    }

    /// A live row re-read by id: `None` when it was deleted.
    pub fn update_live(&mut self, id: i64, entry: Option<Entry<T::Row, L>>) {
        self.live.remove(&id);
        if let Some(entry) = entry {
            self.apply(id, entry);
        }
    }

    fn apply(&mut self, id: i64, entry: Entry<T::Row, L>) {
        match entry {
            Entry::Frozen(row) => {
                self.blocks.entry(block_of(id)).or_default().add(&row);
                if let Some(total) = &mut self.total {
                    total.add(&row);
                }
            }
            Entry::Live(row) => {
                self.live.insert(id, row);
            }
        }
    }

    /// Block `b` re-read whole in one transaction: its rows (only those at
    /// or below the high-water mark) replace what was known of it. True
    /// when that changed anything.
    pub fn replace_block(&mut self, b: i64, rows: Vec<(i64, Entry<T::Row, L>)>) -> bool {
        let (lo, hi) = block_range(b);
        let stale: Vec<i64> = self.live.range(lo..=hi).map(|(id, _)| *id).collect();
        let old_live: Vec<(i64, L)> = stale
            .into_iter()
            .filter_map(|id| self.live.remove(&id).map(|l| (id, l)))
            .collect();
        let old = self.blocks.remove(&b).unwrap_or_default();
        let mut tally = T::default();
        let mut live = Vec::new();
        for (id, entry) in rows {
            match entry {
                Entry::Frozen(row) => tally.add(&row),
                Entry::Live(row) => live.push((id, row)),
            }
        }
        let changed = tally != old || live != old_live;
        if changed {
            self.total = None;
        }
        if tally != T::default() {
            self.blocks.insert(b, tally);
        }
        self.live.extend(live);
        changed
    }

    /// Forgets every block below `b` (pruned history).
    pub fn drop_blocks_below(&mut self, b: i64) {
        let keep = self.blocks.split_off(&b);
        if !self.blocks.is_empty() {
            self.total = None;
        }
        self.blocks = keep;
        let (lo, _) = block_range(b);
        self.live = self.live.split_off(&lo);
    }

    /// Forgets what is known above `id` (rows at the top were deleted).
    pub fn truncate_above(&mut self, id: Option<i64>) {
        match id {
            Some(id) => {
                let b = block_of(id);
                if self.blocks.range(b + 1..).next().is_some() {
                    self.total = None;
                }
                self.blocks.split_off(&(b + 1));
                self.live.split_off(&(id + 1));
            }
            None => {
                self.blocks.clear();
                self.live.clear();
                self.total = None;
            }
        }
        self.hwm = id;
    }

    /// The sum over every block.
    pub fn total(&mut self) -> &T {
        let blocks = &self.blocks;
        self.total.get_or_insert_with(|| {
            let mut sum = T::default();
            for t in blocks.values() {
                sum.merge(t);
            }
            sum
        })
    }
}

/// A row that is never live (error events, ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {}

// ---- jobs ----

/// The fields of a job the sections need.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub status: Option<String>,
    pub agent: Option<String>,
    pub repo: Option<String>,
    pub pid: Option<i64>,
    pub model: Option<String>,
    pub effort: Option<String>,
    pub started_at: Option<String>,
    /// `attempts > 1` as SQLite computes it.
    pub retried: Option<i64>,
    /// `MAX(attempts - 1, 0)` as SQLite computes it.
    pub retries: Option<i64>,
}

impl JobRow {
    /// Frozen when its status is terminal.
    pub fn entry(self) -> Entry<JobRow, JobRow> {
        match &self.status {
            Some(s) if TERMINAL_JOB_STATUSES.contains(&s.as_str()) => Entry::Frozen(self),
            _ => Entry::Live(self),
        }
    }
}

/// Job counts per status and retries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobTally {
    pub counts: BTreeMap<String, u64>,
    pub retried_jobs: u64,
    pub total_retries: u64,
}

impl Tally for JobTally {
    type Row = JobRow;
    fn add(&mut self, row: &JobRow) {
        if let Some(s) = &row.status {
            *self.counts.entry(s.clone()).or_insert(0) += 1;
        }
        let pos = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        self.retried_jobs += pos(row.retried);
        self.total_retries += pos(row.retries);
    }
    fn merge(&mut self, other: &Self) {
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_insert(0) += v;
        }
        self.retried_jobs += other.retried_jobs;
        self.total_retries += other.total_retries;
    }
}

// ---- agent_runs ----

/// A run as the aggregate sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub job_id: Option<i64>,
    /// cost_usd and the four token columns where they are positive numbers.
    pub sums: [Option<f64>; 5],
}

/// Runs and their sums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTally {
    pub runs: u64,
    pub sums: [f64; 5],
}

impl Tally for RunTally {
    type Row = RunRow;
    fn add(&mut self, row: &RunRow) {
        self.runs += 1;
        for (s, v) in self.sums.iter_mut().zip(row.sums) {
            *s += v.unwrap_or(0.0);
        }
    }
    fn merge(&mut self, other: &Self) {
        self.runs += other.runs;
        for (s, v) in self.sums.iter_mut().zip(other.sums) {
            *s += v;
        }
    }
}

/// The newest run of a running job, as `cost.running` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDetail {
    pub agent: Option<String>,
    pub cost_usd: Option<f64>,
    pub tokens: [Option<u64>; 4],
}

// ---- tasks ----

/// A task not in a terminal stage.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub work_item: Option<String>,
    pub repo: Option<String>,
    pub stage: Option<String>,
    pub entered: Option<String>,
}

/// Tasks in a terminal stage count for nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Nothing;

impl Tally for Nothing {
    type Row = ();
    fn add(&mut self, _: &()) {}
    fn merge(&mut self, _: &Self) {}
}

// ---- error_events ----

/// One error event: its subsystem and `created_at` with `T` made a space.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRow {
    pub subsystem: Option<String>,
    pub at: Option<String>,
}

/// Events per subsystem and the newest time of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorTally {
    pub total: u64,
    pub by_subsystem: BTreeMap<String, (u64, Option<String>)>,
}

impl ErrorTally {
    fn add_one(&mut self, subsystem: &str, n: u64, at: Option<&String>) {
        let e = self
            .by_subsystem
            .entry(subsystem.to_owned())
            .or_insert((0, None));
        e.0 += n;
        if at.is_some() && at > e.1.as_ref() {
            e.1 = at.cloned();
        }
    }
}

impl Tally for ErrorTally {
    type Row = ErrorRow;
    fn add(&mut self, row: &ErrorRow) {
        self.total += 1;
        if let Some(s) = &row.subsystem {
            self.add_one(s, 1, row.at.as_ref());
        }
    }
    fn merge(&mut self, other: &Self) {
        self.total += other.total;
        for (s, (n, at)) in &other.by_subsystem {
            self.add_one(s, *n, at.as_ref());
        }
    }
}

// ---- reconciler_ticks ----

/// Ticks are only counted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Count(pub u64);

impl Tally for Count {
    type Row = ();
    fn add(&mut self, _: &()) {
        self.0 += 1;
    }
    fn merge(&mut self, other: &Self) {
        self.0 += other.0;
    }
}

/// Everything remembered of one database between snapshots.
#[derive(Debug, Default)]
pub struct State {
    pub jobs: Table<JobTally, JobRow>,
    pub runs: Table<RunTally, RunRow>,
    pub tasks: Table<Nothing, TaskRow>,
    /// `None` when the table does not exist.
    pub errors: Option<Table<ErrorTally, Never>>,
    /// `None` when the table does not exist.
    pub ticks: Option<Table<Count, Never>>,
    /// Run ids of each live job, for its newest run when there is no index.
    pub job_runs: HashMap<i64, BTreeSet<i64>>,
    /// Newest run of each running job, from the index when there is one.
    pub newest_by_index: Option<HashMap<i64, Option<i64>>>,
    /// The newest run of each running job, read by id every snapshot.
    pub run_details: HashMap<i64, RunDetail>,
}

impl State {
    /// A run read (new, re-read or recounted): remember it under its job if that job is live.
    pub fn note_run(&mut self, id: i64, job_id: Option<i64>) {
        if let Some(set) = job_id.and_then(|j| self.job_runs.get_mut(&j)) {
            set.insert(id);
        }
    }

    /// Forgets the run ids of a range before it is re-read.
    pub fn forget_runs(&mut self, lo: i64, hi: i64) {
        for set in self.job_runs.values_mut() {
            let stale: Vec<i64> = set.range(lo..=hi).copied().collect();
            for id in stale {
                set.remove(&id);
            }
        }
    }

    /// Forgets `run` as a run of `job` (it was deleted or moved); false when
    /// there was nothing to forget (the newest run then came from an index).
    pub fn forget_run_of(&mut self, job: i64, run: i64) -> bool {
        if let Some(map) = &mut self.newest_by_index {
            // The index answered from the live table; a miss there is real.
            return map.insert(job, None).is_some_and(|r| r.is_some());
        }
        self.job_runs
            .get_mut(&job)
            .is_some_and(|set| set.remove(&run))
    }

    /// Keeps `job_runs` to exactly the live jobs.
    pub fn sync_job_runs(&mut self) {
        let live = &self.jobs.live;
        self.job_runs.retain(|id, _| live.contains_key(id));
        for id in live.keys() {
            self.job_runs.entry(*id).or_default();
        }
    }

    /// Running jobs, oldest first.
    pub fn running(&self) -> impl Iterator<Item = (i64, &JobRow)> {
        self.jobs
            .live
            .iter()
            .filter(|(_, j)| j.status.as_deref() == Some("running"))
            .map(|(id, j)| (*id, j))
    }

    /// The newest run id of a live job.
    pub fn newest_run(&self, job: i64) -> Option<i64> {
        match &self.newest_by_index {
            Some(map) => map.get(&job).copied().flatten(),
            None => self
                .job_runs
                .get(&job)
                .and_then(|s| s.iter().next_back().copied()),
        }
    }

    /// Section `stages`.
    pub fn stages(&self, now: &Timestamp) -> Vec<Stage> {
        self.tasks
            .live
            .iter()
            .filter_map(|(id, t)| {
                Some(Stage {
                    task_id: Some(*id),
                    work_item: t.work_item.clone(),
                    stage: t.stage.clone()?,
                    age_in_stage_s: seconds_since(t.entered.as_deref(), now),
                    repo: t.repo.clone(),
                })
            })
            .collect()
    }

    /// Section `queue` without `worker_state`.
    pub fn queue_counts(&mut self) -> (BTreeMap<String, u64>, Retries) {
        let mut sum = self.jobs.total().clone();
        for row in self.jobs.live.values() {
            sum.add(row);
        }
        let mut counts: BTreeMap<String, u64> = REQUIRED_JOB_STATUSES
            .iter()
            .map(|s| ((*s).to_owned(), 0))
            .collect();
        for (k, v) in sum.counts {
            *counts.entry(k).or_insert(0) += v;
        }
        let retries = Retries {
            retried_jobs: Some(sum.retried_jobs),
            total_retries: Some(sum.total_retries),
        };
        (counts, retries)
    }

    /// Section `agents`, `/proc` fields left unknown.
    pub fn agents(&self, now: &Timestamp) -> Vec<Agent> {
        self.running()
            .map(|(id, j)| Agent {
                job_id: id,
                agent: j.agent.clone(),
                repo: j.repo.clone(),
                pid: j.pid,
                runtime_s: seconds_since(j.started_at.as_deref(), now),
                model: j.model.clone(),
                effort: j.effort.clone(),
                run_id: self.newest_run(id),
                ..Agent::default()
            })
            .collect()
    }

    /// Section `cost`.
    pub fn cost(&mut self) -> Cost {
        let running = self
            .running()
            .map(|(id, j)| {
                let run_id = self.newest_run(id);
                let d = run_id
                    .and_then(|r| self.run_details.get(&r))
                    .cloned()
                    .unwrap_or_default();
                RunningCost {
                    job_id: Some(id),
                    agent: j.agent.clone().or(d.agent),
                    run_id,
                    cost_usd: d.cost_usd,
                    input_tokens: d.tokens[0],
                    output_tokens: d.tokens[1],
                    cache_read_tokens: d.tokens[2],
                    cache_creation_tokens: d.tokens[3],
                }
            })
            .collect();
        let mut sum = self.runs.total().clone();
        for row in self.runs.live.values() {
            sum.add(row);
        }
        Cost {
            running,
            aggregate: Some(aggregate(&sum)),
        }
    }

    /// Section `errors`; `None` when the table is absent.
    pub fn errors(&mut self) -> Option<Errors> {
        let t = self.errors.as_mut()?.total();
        Some(Errors {
            total: Some(t.total),
            by_subsystem: t
                .by_subsystem
                .iter()
                .map(|(s, (n, at))| SubsystemErrors {
                    subsystem: s.clone(),
                    total: Some(*n),
                    last_at: normalise_time(at.clone()),
                })
                .collect(),
        })
    }

    /// How many ticks there are; `None` when the table is absent.
    pub fn ticks_total(&mut self) -> Option<u64> {
        Some(self.ticks.as_mut()?.total().0)
    }

    /// How many blocks the recount walks.
    pub fn blocks(&self) -> usize {
        let span = |hwm: Option<i64>, min: Option<i64>| match (hwm, min) {
            (Some(h), Some(m)) => usize::try_from(block_of(h) - block_of(m) + 1).unwrap_or(0),
            _ => 1,
        };
        span(self.jobs.hwm, self.jobs.min)
            + span(self.runs.hwm, self.runs.min)
            + span(self.tasks.hwm, self.tasks.min)
            + self.errors.as_ref().map_or(0, |t| span(t.hwm, t.min))
            + self.ticks.as_ref().map_or(0, |t| span(t.hwm, t.min))
    }
}

/// Sums as the contract wants them: a sum that is not finite (or does not
/// fit) is `null`, never a smaller number.
pub fn aggregate(sum: &RunTally) -> CostAggregate {
    let count = |v: f64| (v.is_finite() && (0.0..1.8e19).contains(&v)).then(|| v.round() as u64);
    CostAggregate {
        runs: Some(sum.runs),
        cost_usd: Some(sum.sums[0]).filter(|v| v.is_finite()),
        input_tokens: count(sum.sums[1]),
        output_tokens: count(sum.sums[2]),
        cache_read_tokens: count(sum.sums[3]),
        cache_creation_tokens: count(sum.sums[4]),
    }
}

/// Section `queue` from the counts and `worker_state`.
pub fn queue(
    counts: BTreeMap<String, u64>,
    retries: Retries,
    worker: &HashMap<String, Option<String>>,
) -> Queue {
    crate::sections::queue::assemble(counts, retries, worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str, at: &str) -> Entry<ErrorRow, Never> {
        Entry::Frozen(ErrorRow {
            subsystem: Some(s.into()),
            at: Some(at.into()),
        })
    }

    #[test]
    fn replacing_a_block_recounts_without_drift() {
        let mut t: Table<ErrorTally, Never> = Table::default();
        for id in 1..=3000 {
            t.add_new(
                id,
                err(
                    if id % 2 == 0 { "git" } else { "llm" },
                    "2026-01-01 00:00:00",
                ),
            );
        }
        assert_eq!(t.total().total, 3000);
        // Block 1 (ids 1024..=2047) now holds half its rows.
        let rows = (1024..2048)
            .step_by(2)
            .map(|id| (id, err("git", "2026-02-01 00:00:00")))
            .collect();
        t.replace_block(1, rows);
        let total = t.total().clone();
        assert_eq!(total.total, 3000 - 512);
        assert_eq!(
            total.by_subsystem.get("git").and_then(|e| e.1.as_deref()),
            Some("2026-02-01 00:00:00")
        );
        t.drop_blocks_below(2);
        assert_eq!(t.total().total, 3000 - 2047);
    }

    #[test]
    fn a_non_finite_sum_is_null() {
        let agg = aggregate(&RunTally {
            runs: 2,
            sums: [f64::INFINITY, 5.0, 1e30, 0.0, 0.0],
        });
        assert_eq!(agg.cost_usd, None);
        assert_eq!(agg.input_tokens, Some(5));
        assert_eq!(agg.output_tokens, None);
        assert_eq!(agg.runs, Some(2));
    }

    #[test]
    fn blocks_cover_negative_ids() {
        assert_eq!(block_of(-1), -1);
        assert_eq!(block_range(-1), (-1024, -1));
        assert_eq!(block_of(1023), 0);
        assert_eq!(block_of(1024), 1);
    }
}
