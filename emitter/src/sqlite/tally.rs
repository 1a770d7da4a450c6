//! The incremental state, pure: what was read of each table, kept between
//! snapshots, and the sections derived from it. No I/O here.
//!
//! Rows are keyed by `rowid` (the `id` itself with `id INTEGER PRIMARY
//! KEY`; SQLite's hidden key with `id INT PRIMARY KEY`, where `id` may be
//! a real, a text or NULL). A table's rows are in two parts:
//! - the *recent window*: the newest [`WINDOW`] rows, kept whole with a
//!   fingerprint of every column read, and re-read by one rowid range every
//!   snapshot. A row given a reused id (the newest rows deleted, new ones
//!   inserted before the next snapshot) is therefore seen at once;
//! - the *folded* part, every row at or below [`Table::folded`]: a row is
//!   either *frozen* (a finished job, a finished run, an error event, a
//!   tick, a task in a terminal stage) and only adds to the tally of its
//!   block of [`BLOCK`] rowids, or *live* (a job or task not in a terminal
//!   state, a run without `finished_at`) and is kept whole, to be re-read
//!   by primary key every snapshot.
//!
//! Identity: each block remembers its highest frozen row and that row's
//! fingerprint ([`Table::tops`]); the highest of them is the table's
//! *anchor*. Ids below the window can only be handed out again after the
//! anchor itself was deleted, so a snapshot checks the anchor (one lookup)
//! and, when it is gone or different, walks down the block tops to the
//! newest one still intact and re-reads everything above it.
//!
//! A block's tally is only ever added to (a row folded, a live row that
//! froze) or replaced whole (the recount re-read it in one transaction),
//! never subtracted from, so sums do not drift.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shared_schema::{
    Agent, Cost, CostAggregate, Errors, Queue, Retries, RunningCost, Stage, SubsystemErrors,
    Timestamp, REQUIRED_JOB_STATUSES,
};

use crate::sql::{normalise_time, seconds_since};

/// Rowids per block: one block is re-read in one short transaction.
pub const BLOCK: i64 = 1024;

/// Rows of each table kept whole and re-read by range every snapshot.
pub const WINDOW: usize = 128;

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
    type Row: Clone + PartialEq;
    /// Counts one frozen row.
    fn add(&mut self, row: &Self::Row);
    /// Adds another block's tally.
    fn merge(&mut self, other: &Self);
}

/// A row as read: its rowid, the fingerprint of every column read, its entry.
pub type Row<T, L> = (i64, u64, Entry<<T as Tally>::Row, L>);

/// One table's incremental state.
#[derive(Debug, Clone)]
pub struct Table<T: Tally, L> {
    /// Per-block tallies of folded frozen rows.
    pub blocks: BTreeMap<i64, T>,
    /// Per block, its highest folded frozen row and that row's fingerprint.
    pub tops: BTreeMap<i64, (i64, u64)>,
    /// Folded live rows by rowid.
    pub live: BTreeMap<i64, L>,
    /// The newest rows, above `folded`, kept whole.
    pub recent: BTreeMap<i64, (u64, Entry<T::Row, L>)>,
    /// Rows at or below this rowid are folded.
    pub folded: Option<i64>,
    /// The lowest id seen at the last bounds check.
    pub min: Option<i64>,
    /// Sum of all blocks; `None` when a block was replaced since.
    total: Option<T>,
}

impl<T: Tally, L> Default for Table<T, L> {
    fn default() -> Self {
        Self {
            blocks: BTreeMap::new(),
            tops: BTreeMap::new(),
            live: BTreeMap::new(),
            recent: BTreeMap::new(),
            folded: None,
            min: None,
            total: Some(T::default()),
        }
    }
}

impl<T: Tally, L: PartialEq + Clone> Table<T, L> {
    /// The newest folded frozen row and its fingerprint.
    pub fn anchor(&self) -> Option<(i64, u64)> {
        self.tops.last_key_value().map(|(_, top)| *top)
    }

    /// The highest rowid known.
    pub fn hwm(&self) -> Option<i64> {
        self.recent
            .last_key_value()
            .map(|(id, _)| *id)
            .max(self.folded)
    }

    /// Every live row, folded or recent, in rowid order.
    pub fn live_rows(&self) -> impl Iterator<Item = (i64, &L)> {
        let recent = self.recent.iter().filter_map(|(id, (_, e))| match e {
            Entry::Live(l) => Some((*id, l)),
            Entry::Frozen(_) => None,
        });
        self.live.iter().map(|(id, l)| (*id, l)).chain(recent)
    }

    /// Rowids of the rows a range read from above `after` must see again.
    pub fn known_above(&self, after: Option<i64>) -> Vec<i64> {
        let live = match after {
            Some(a) => self
                .live
                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            None => self.live.keys().copied().collect(),
        };
        live.into_iter()
            .chain(self.recent.keys().copied())
            .collect()
    }

    /// A row read by the range above the anchor.
    pub fn put(&mut self, id: i64, fp: u64, entry: Entry<T::Row, L>) {
        // A live row kept from before (unfolded, or folded above a boundary
        // that was lowered) is this row's old self: it is replaced here,
        // wherever the row goes now, or it would be counted twice.
        self.live.remove(&id);
        if self.folded.is_some_and(|f| id <= f) {
            // Between the anchor and the window: a live row re-read, or a
            // row new here (no frozen row is counted above the anchor).
            self.fold(id, fp, entry);
        } else {
            self.recent.insert(id, (fp, entry));
        }
    }

    /// A row read by the range whose rowid was known and is gone.
    pub fn forget(&mut self, id: i64) {
        self.live.remove(&id);
        self.recent.remove(&id);
    }

    /// A folded live row re-read by id: `None` when it was deleted.
    pub fn update_live(&mut self, id: i64, read: Option<(u64, Entry<T::Row, L>)>) {
        self.live.remove(&id);
        if let Some((fp, entry)) = read {
            self.fold(id, fp, entry);
        }
    }

    /// Folds the oldest recent rows until the window holds [`WINDOW`].
    pub fn fold_excess(&mut self) {
        while self.recent.len() > WINDOW {
            let Some((id, (fp, entry))) = self.recent.pop_first() else {
                break;
            };
            self.folded = Some(self.folded.map_or(id, |f| f.max(id)));
            self.fold(id, fp, entry);
        }
    }

    fn fold(&mut self, id: i64, fp: u64, entry: Entry<T::Row, L>) {
        match entry {
            Entry::Frozen(row) => {
                let b = block_of(id);
                self.blocks.entry(b).or_default().add(&row);
                if let Some(total) = &mut self.total {
                    total.add(&row);
                }
                let top = self.tops.entry(b).or_insert((id, fp));
                if id >= top.0 {
                    *top = (id, fp);
                }
            }
            Entry::Live(row) => {
                self.live.insert(id, row);
            }
        }
    }

    /// Forgets every folded frozen row above `intact` (the newest block top
    /// found unchanged; `None`: none was) so that the range read above it
    /// reads them again, and lowers the fold boundary to it.
    pub fn unfold_above(&mut self, intact: Option<i64>) {
        let keep_from = intact.map_or(i64::MIN, |t| block_of(t).saturating_add(1));
        let dropped = match intact {
            Some(_) if keep_from > block_of(i64::MAX) => BTreeMap::new(),
            Some(_) => self.blocks.split_off(&keep_from),
            None => std::mem::take(&mut self.blocks),
        };
        if !dropped.is_empty() {
            self.total = None;
        }
        match intact {
            Some(_) if keep_from > block_of(i64::MAX) => {}
            Some(_) => drop(self.tops.split_off(&keep_from)),
            None => self.tops.clear(),
        }
        // Recent rows above it are re-read too; live ones stay until then.
        let recent = std::mem::take(&mut self.recent);
        for (id, (_, entry)) in recent {
            if let Entry::Live(l) = entry {
                self.live.insert(id, l);
            }
        }
        self.folded = intact;
    }

    /// Lowers the fold boundary (the newest rows were deleted; their ids may
    /// be handed out again and must be read as new).
    pub fn lower_fold(&mut self, max: i64) {
        if self.folded.is_some_and(|f| f > max) {
            self.folded = Some(max);
        }
    }

    /// Rows `lo..=hi` re-read whole in one transaction (`lo` the first id
    /// of a block, `hi` the last of one or the fold boundary): they replace
    /// what was known of those blocks. True when that changed anything.
    pub fn replace_range(&mut self, lo: i64, hi: i64, rows: Vec<Row<T, L>>) -> bool {
        let (blo, bhi) = (block_of(lo), block_of(hi));
        let old_blocks = split_range(&mut self.blocks, blo, bhi);
        let old_tops = split_range(&mut self.tops, blo, bhi);
        let old_live = split_range(&mut self.live, lo, hi);
        let mut blocks: BTreeMap<i64, T> = BTreeMap::new();
        let mut tops: BTreeMap<i64, (i64, u64)> = BTreeMap::new();
        let mut live = BTreeMap::new();
        for (id, fp, entry) in rows {
            match entry {
                Entry::Frozen(row) => {
                    blocks.entry(block_of(id)).or_default().add(&row);
                    tops.insert(block_of(id), (id, fp));
                }
                Entry::Live(row) => {
                    live.insert(id, row);
                }
            }
        }
        blocks.retain(|_, t| *t != T::default());
        let changed = blocks != old_blocks || live != old_live || tops != old_tops;
        if blocks != old_blocks {
            self.total = None;
        }
        self.blocks.extend(blocks);
        self.tops.extend(tops);
        self.live.extend(live);
        changed
    }

    /// Forgets every block below the one holding `id` (pruned history).
    pub fn drop_blocks_below(&mut self, id: i64) {
        let b = block_of(id);
        let keep = self.blocks.split_off(&b);
        if !self.blocks.is_empty() {
            self.total = None;
        }
        self.blocks = keep;
        self.tops = self.tops.split_off(&b);
        let (lo, _) = block_range(b);
        self.live = self.live.split_off(&lo);
    }

    /// The sum over every frozen row, folded or recent.
    pub fn total(&mut self) -> T {
        let blocks = &self.blocks;
        let mut sum = self
            .total
            .get_or_insert_with(|| {
                let mut sum = T::default();
                for t in blocks.values() {
                    sum.merge(t);
                }
                sum
            })
            .clone();
        for (_, entry) in self.recent.values() {
            if let Entry::Frozen(row) = entry {
                sum.add(row);
            }
        }
        sum
    }
}

/// Takes the entries with keys in `lo..=hi` out of `map`.
fn split_range<V>(map: &mut BTreeMap<i64, V>, lo: i64, hi: i64) -> BTreeMap<i64, V> {
    let mut mid = map.split_off(&lo);
    if let Some(next) = hi.checked_add(1) {
        let mut above = mid.split_off(&next);
        map.append(&mut above);
    }
    mid
}

/// A row that is never live (error events, ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {}

// ---- jobs ----

/// The fields of a job the sections need.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// `jobs.id` when it is an integer (the rowid is the key; with `id INT
    /// PRIMARY KEY` the id may be a real, a text or NULL).
    pub id: Option<i64>,
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
    /// `agent_runs.id` when it is an integer.
    pub id: Option<i64>,
    pub agent: Option<String>,
    pub cost_usd: Option<f64>,
    pub tokens: [Option<u64>; 4],
}

// ---- tasks ----

/// A task not in a terminal stage.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// `tasks.id` when it is an integer.
    pub id: Option<i64>,
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

    /// Keeps `job_runs` to exactly the live jobs (by their `id`).
    pub fn sync_job_runs(&mut self) {
        let live: BTreeSet<i64> = self.jobs.live_rows().filter_map(|(_, j)| j.id).collect();
        self.job_runs.retain(|id, _| live.contains(id));
        for id in live {
            self.job_runs.entry(id).or_default();
        }
    }

    /// Running jobs with an integer id, oldest first: `(jobs.id, row)`.
    /// A running row whose id is a real, a text or NULL is counted in
    /// `queue` but cannot be an agent (`job_id` is an integer).
    pub fn running(&self) -> impl Iterator<Item = (i64, &JobRow)> {
        self.jobs
            .live_rows()
            .filter(|(_, j)| j.status.as_deref() == Some("running"))
            .filter_map(|(_, j)| Some((j.id?, j)))
    }

    /// The newest run (its rowid) of a live job.
    pub fn newest_run(&self, job: i64) -> Option<i64> {
        match &self.newest_by_index {
            Some(map) => map.get(&job).copied().flatten(),
            None => self
                .job_runs
                .get(&job)
                .and_then(|s| s.iter().next_back().copied()),
        }
    }

    /// The `agent_runs.id` of a run known by rowid.
    fn run_id(&self, rowid: Option<i64>) -> Option<i64> {
        let rowid = rowid?;
        self.run_details.get(&rowid).map_or(Some(rowid), |d| d.id)
    }

    /// Section `stages`.
    pub fn stages(&self, now: &Timestamp) -> Vec<Stage> {
        self.tasks
            .live_rows()
            .filter_map(|(_, t)| {
                Some(Stage {
                    task_id: t.id,
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
        let mut sum = self.jobs.total();
        for (_, row) in self.jobs.live_rows() {
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
                run_id: self.run_id(self.newest_run(id)),
                ..Agent::default()
            })
            .collect()
    }

    /// Section `cost`.
    pub fn cost(&mut self) -> Cost {
        let running = self
            .running()
            .map(|(id, j)| {
                let rowid = self.newest_run(id);
                let run_id = self.run_id(rowid);
                let d = rowid
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
        let mut sum = self.runs.total();
        for (_, row) in self.runs.live_rows() {
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
        let t = &t;
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
    fn replacing_a_range_recounts_without_drift() {
        let mut t: Table<ErrorTally, Never> = Table::default();
        for id in 1..=3000 {
            let sub = if id % 2 == 0 { "git" } else { "llm" };
            t.put(id, id as u64, err(sub, "2026-01-01 00:00:00"));
        }
        t.fold_excess();
        assert_eq!(t.total().total, 3000);
        assert_eq!(t.recent.len(), WINDOW);
        assert_eq!(t.folded, Some(3000 - WINDOW as i64));
        // Block 1 (ids 1024..=2047) now holds half its rows.
        let rows = (1024..2048)
            .step_by(2)
            .map(|id| (id, 0, err("git", "2026-02-01 00:00:00")))
            .collect();
        assert!(t.replace_range(1024, 2047, rows));
        let total = t.total();
        assert_eq!(total.total, 3000 - 512);
        assert_eq!(
            total.by_subsystem.get("git").and_then(|e| e.1.as_deref()),
            Some("2026-02-01 00:00:00")
        );
        assert_eq!(t.tops.get(&1), Some(&(2046, 0)));
        t.drop_blocks_below(2048);
        assert_eq!(t.total().total, 3000 - 2047);
    }

    #[test]
    fn unfolding_above_an_intact_top_forgets_only_what_is_above_it() {
        let mut t: Table<Count, Never> = Table::default();
        for id in 0..(3 * BLOCK) {
            t.put(id, 7, Entry::Frozen(()));
        }
        t.fold_excess();
        assert_eq!(t.anchor(), Some((3 * BLOCK - 1 - WINDOW as i64, 7)));
        t.unfold_above(Some(BLOCK - 1));
        assert_eq!(t.total().0, BLOCK as u64);
        assert_eq!(t.folded, Some(BLOCK - 1));
        assert!(t.recent.is_empty());
        t.unfold_above(None);
        assert_eq!(t.total().0, 0);
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
