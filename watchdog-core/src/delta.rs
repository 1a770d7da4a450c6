//! The delta engine: what two snapshots of one target say that one cannot.
//!
//! Pure: envelopes in, derived figures out, no clock reads. It turns
//! cumulative counters (CPU ticks, I/O bytes, finished jobs, error events,
//! cost) into fractions and rates, guarding every way a counter can lie: a
//! reused pid (`start_ticks` changed), ticks going down, a reboot (`boot_id`
//! changed, which also restarts `monotonic_ms`), a clock that did not move.
//! In each of those cases there is no figure ("not enough data"), never a
//! made-up zero.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use shared_schema::{Activity, Agent, Envelope, Timestamp};

/// One agent: a job's run in one process. Two rows with the same identity in
/// one envelope are one agent (the first row wins). `start_ticks` tells a
/// reused pid from the process it named before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentId {
    /// `jobs.id`.
    pub job_id: i64,
    /// Newest `agent_runs.id`.
    pub run_id: Option<i64>,
    /// `jobs.pid`.
    pub pid: Option<i64>,
    /// `start_ticks` of that pid.
    #[serde(default)]
    pub start_ticks: Option<u64>,
}

impl AgentId {
    /// The identity of one row of `agents`.
    pub fn of(agent: &Agent) -> Self {
        Self {
            job_id: agent.job_id,
            run_id: agent.run_id,
            pid: agent.pid,
            start_ticks: agent.start_ticks,
        }
    }

    /// The baseline slot: the identity without `start_ticks`, so a pid that
    /// now names another process is compared with, and seen as a reset of,
    /// the one before. The outputs match envelope rows to samples by it.
    pub fn slot(&self) -> Self {
        Self {
            start_ticks: None,
            ..*self
        }
    }
}

/// The hasher of the per-poll set that tells duplicate agent rows apart
/// (the per-agent maps were hash maps too, before [`AgentMap`]): SipHash
/// was half the engine's instructions when each identity was hashed 4-5
/// times a poll (callgrind, docs/PERFORMANCE.md). An [`AgentId`] is
/// four integers, so a folded multiply per integer does; the seed is drawn
/// once per process, so an emitter cannot aim its ids at one bucket without
/// knowing it (not cryptographic, and the agents list is capped anyway).
#[derive(Debug, Clone, Copy)]
pub struct IdHash {
    seed: u64,
}

impl Default for IdHash {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED
            .get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64));
        Self { seed }
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher { h: self.seed }
    }
}

/// The hasher [`IdHash`] builds.
#[derive(Debug, Clone, Copy)]
pub struct IdHasher {
    h: u64,
}

impl IdHasher {
    #[inline]
    fn mix(&mut self, x: u64) {
        // A folded 64x64->128 multiply: every input bit reaches every output bit.
        let m = u128::from(self.h ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15_u128 | 1 << 64);
        self.h = (m as u64) ^ ((m >> 64) as u64);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.mix(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.h
    }
}

/// What a target keeps per agent (baselines, idle timers, windows): a list
/// sorted by [`AgentId`] and sized to its agents, looked up by binary
/// search. A hash map of 10 agents held 16 buckets: 2.0 KiB of baselines
/// and 2.4 KiB of idle timers per 10-agent target, where the lists hold
/// 1.3 and 1.5. It is built whole each poll ([`AgentMap::from_unsorted`]),
/// and the previous poll's is taken apart ([`AgentMap::remove`]) meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentMap<V> {
    /// Sorted by id, one entry per id; `None`: taken by `remove` (no
    /// bigger where the value has a niche: baselines, idle timers, windows).
    entries: Vec<(AgentId, Option<V>)>,
}

impl<V> Default for AgentMap<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<V> AgentMap<V> {
    /// The map of `entries`, in any order; of two with one id, the later
    /// one is kept (as a map's second insert would).
    pub fn from_unsorted(entries: Vec<(AgentId, V)>) -> Self {
        let mut entries: Vec<(AgentId, Option<V>)> =
            entries.into_iter().map(|(id, v)| (id, Some(v))).collect();
        // Stable: of equal ids the later stays later, and `dedup_by`
        // keeps the first of a run, so move the later value into it.
        entries.sort_by_key(|e| e.0);
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1.take();
            }
            same
        });
        entries.shrink_to_fit();
        Self { entries }
    }

    fn find(&self, id: &AgentId) -> Option<usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(id)).ok()
    }

    /// The value of `id`.
    pub fn get(&self, id: &AgentId) -> Option<&V> {
        self.entries[self.find(id)?].1.as_ref()
    }

    /// Takes the value of `id` out (the entry stays, empty: the map is
    /// being replaced by the next poll's).
    pub fn remove(&mut self, id: &AgentId) -> Option<V> {
        let at = self.find(id)?;
        self.entries[at].1.take()
    }

    /// Every value, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&AgentId, &V)> {
        self.entries
            .iter()
            .filter_map(|(id, v)| Some((id, v.as_ref()?)))
    }

    /// Every value, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().filter_map(|(_, v)| v.as_mut())
    }

    /// How many agents have a value.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl<V> FromIterator<(AgentId, V)> for AgentMap<V> {
    fn from_iter<I: IntoIterator<Item = (AgentId, V)>>(entries: I) -> Self {
        Self::from_unsorted(entries.into_iter().collect())
    }
}

/// The watchdog's own monotonic clock when it received an envelope,
/// handed in as data (the core reads no clock): the live loop reads
/// `CLOCK_MONOTONIC`, `replay` takes the record's `received_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Which run of that clock (readings of two runs are not compared):
    /// a hash of the watchdog host's `boot_id`, or a fixed value in a replay.
    pub epoch: u64,
    /// Milliseconds on that clock.
    pub ms: u64,
}

/// A wall-clock Δt of the emitter is trusted when it is within this many
/// seconds of the watchdog's own Δt between the two receipts...
pub const STEP_TOLERANCE_S: f64 = 5.0;
/// ... plus this fraction of the watchdog's Δt (a poll's latency varies by
/// up to its timeout; an NTP slew is far below this).
pub const STEP_TOLERANCE_FRACTION: f64 = 0.25;

/// One reading of the emitter's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Instant {
    /// `generated_at`.
    pub wall: Timestamp,
    /// `monotonic_ms`.
    pub mono_ms: Option<u64>,
    /// Which boot this was on (an index of the boot ids seen), when `boot_id` is known.
    pub boot: Option<u64>,
    /// When the watchdog received the envelope, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<Receipt>,
}

impl Instant {
    /// Seconds from `prev` to `self`; `None` when a reboot lies between.
    /// `monotonic_ms` is used when both have it and the same boot, as it is
    /// immune to wall-clock steps.
    pub fn seconds_since(&self, prev: &Instant) -> Option<f64> {
        match (prev.boot, self.boot) {
            (Some(a), Some(b)) if a != b => None,
            (Some(_), Some(_)) => match (prev.mono_ms, self.mono_ms) {
                (Some(a), Some(b)) => Some((b as f64 - a as f64) / 1000.0),
                _ => Some(self.wall.seconds_since(&prev.wall)),
            },
            _ => Some(self.wall.seconds_since(&prev.wall)),
        }
    }

    /// The same instant, received by the watchdog at `received`.
    pub fn received_at(self, received: Option<Receipt>) -> Self {
        Self { received, ..self }
    }

    /// Whether the Δt from `prev` comes from `generated_at` (no
    /// `monotonic_ms` on both sides of one boot) and disagrees with the
    /// watchdog's own Δt between the two receipts beyond the tolerance: the
    /// emitter's wall clock was stepped, so that Δt measures nothing.
    /// `false` when the watchdog's Δt is unknown (no receipts, two runs of
    /// its clock, or a clock that did not advance).
    pub fn stepped_since(&self, prev: &Instant) -> bool {
        let monotonic = matches!((prev.boot, self.boot), (Some(a), Some(b)) if a == b)
            && prev.mono_ms.is_some()
            && self.mono_ms.is_some();
        let (Some(a), Some(b)) = (prev.received, self.received) else {
            return false;
        };
        if monotonic || a.epoch != b.epoch || b.ms <= a.ms {
            return false;
        }
        let watchdog = (b.ms - a.ms) as f64 / 1000.0;
        let emitter = self.wall.seconds_since(&prev.wall);
        (emitter - watchdog).abs() > STEP_TOLERANCE_S + STEP_TOLERANCE_FRACTION * watchdog
    }
}

/// Why an agent's delta was not computed and its idle timer restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// `start_ticks` changed: the pid names another process now.
    PidReused,
    /// A tick or I/O counter went down.
    CounterWentDown,
    /// `boot_id` changed.
    Reboot,
    /// The emitter's clock gives no usable Δt: it did not advance (Δt ≤ 0),
    /// or its wall clock was stepped (its Δt disagrees with the watchdog's
    /// own, [`Instant::stepped_since`]). Either way nothing was measured.
    ClockStill,
}

/// How one tick counter moved between the baseline and now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticks {
    /// Unknown in the baseline or now.
    Unknown,
    /// It went down (a counter that only grows was reset).
    WentDown,
    /// It grew by this much (or stayed).
    Grew(u64),
}

impl Ticks {
    fn of(prev: Option<u64>, now: Option<u64>) -> Self {
        match (prev, now) {
            (Some(a), Some(b)) if b >= a => Self::Grew(b - a),
            (Some(_), Some(_)) => Self::WentDown,
            _ => Self::Unknown,
        }
    }
}

/// What one agent's delta says: neutral facts, for whichever rule reads them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AgentStatus {
    /// The first sample of this agent: nothing to compare with.
    First,
    /// The counters cannot be compared with the baseline (another process,
    /// a reboot, a clock that did not advance).
    Reset(ResetReason),
    /// Neither tick counter, or `clk_tck`, is known on both sides; the
    /// baseline is kept so the next known reading spans the gap.
    Missing,
    /// A delta over `dt_s` seconds.
    Sample {
        /// Seconds between the baseline and now (> 0).
        dt_s: f64,
        /// `sysconf(_SC_CLK_TCK)`, when known.
        clk_tck: Option<u64>,
        /// Δ`cpu_ticks`.
        cpu: Ticks,
        /// Δ`tree_cpu_ticks`.
        tree: Ticks,
        /// Whether `io_rchar + io_wchar` grew; `None` when not known.
        io_grew: Option<bool>,
        /// By how many bytes it grew; `None` when not known (or it went down).
        io_bytes: Option<u64>,
        /// Whether the I/O counters went down.
        io_went_down: bool,
    },
}

/// What one agent's delta says, for one choice of counter (`use_tree`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// No figure: a first sample or unknown counters (the idle timer holds).
    Missing,
    /// No figure and the idle timer restarts.
    Reset(ResetReason),
    /// A CPU fraction over `dt_s`.
    Fraction {
        /// CPU seconds per second.
        fraction: f64,
        /// Seconds the delta spans.
        dt_s: f64,
        /// Whether the I/O counters grew; `None` when not known.
        io_grew: Option<bool>,
        /// By how many bytes they grew; `None` when not known.
        io_bytes: Option<u64>,
    },
}

impl AgentStatus {
    /// The CPU reading, preferring the process tree when `use_tree` and it is known.
    pub fn reading(&self, use_tree: bool) -> Reading {
        match *self {
            Self::First | Self::Missing => Reading::Missing,
            Self::Reset(r) => Reading::Reset(r),
            Self::Sample {
                dt_s,
                clk_tck,
                cpu,
                tree,
                io_grew,
                io_bytes,
                io_went_down,
            } => {
                let ticks = match (use_tree, tree) {
                    (true, Ticks::Grew(_) | Ticks::WentDown) => tree,
                    _ => cpu,
                };
                match ticks {
                    Ticks::Unknown => Reading::Missing,
                    Ticks::WentDown => Reading::Reset(ResetReason::CounterWentDown),
                    _ if io_went_down => Reading::Reset(ResetReason::CounterWentDown),
                    Ticks::Grew(t) => match clk_tck {
                        Some(tck) => Reading::Fraction {
                            fraction: t as f64 / tck as f64 / dt_s,
                            dt_s,
                            io_grew,
                            io_bytes,
                        },
                        None => Reading::Missing,
                    },
                }
            }
        }
    }
}

/// The facts of one agent in one envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFact<'e> {
    /// The row.
    pub agent: &'e Agent,
    /// Its identity.
    pub id: AgentId,
    /// The delta.
    pub status: AgentStatus,
}

impl AgentFact<'_> {
    /// The fraction of the last delta (process tree preferred), if there is one.
    pub fn cpu_fraction(&self) -> Option<f64> {
        match self.status.reading(true) {
            Reading::Fraction { fraction, .. } => Some(fraction),
            _ => None,
        }
    }
}

/// How much a counter that only grows grew over (about) a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Growth {
    /// Fewer than two comparable samples, or the counter was reset.
    Unknown,
    /// Grew by `increase` over `span_s` seconds.
    Known {
        /// The growth.
        increase: f64,
        /// The seconds it covers (about the window, less while history is short).
        span_s: f64,
    },
}

impl Growth {
    /// Growth per second, over at least `window_s` (a short history is not
    /// extrapolated: a burst right after start-up is diluted, not magnified).
    pub fn per_second_over(&self, window_s: f64) -> Option<f64> {
        match *self {
            Self::Known { increase, span_s } => {
                let span = span_s.max(window_s);
                (span > 0.0).then(|| increase / span)
            }
            Self::Unknown => None,
        }
    }
}

/// Everything derived from one envelope against its target's history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deltas<'e> {
    /// One per distinct agent, in envelope order; empty when `agents` is degraded.
    pub agents: Vec<AgentFact<'e>>,
    /// Whether the emitter's clock advanced since the previous envelope; `None` on the first.
    pub clock_advanced: Option<bool>,
    /// Whether `done + failed + cancelled` grew since the previous readable queue.
    pub jobs_finished: Option<bool>,
}

impl<'e> Deltas<'e> {
    /// The agents that report telemetry (`activity`), with it, in envelope
    /// order: what the telemetry rules judge.
    pub fn with_activity(&self) -> impl Iterator<Item = (&AgentFact<'e>, &'e Activity)> + '_ {
        self.agents
            .iter()
            .filter_map(|f| Some((f, f.agent.activity.as_ref()?)))
    }
}

/// The per-agent baseline kept between polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// When it was taken: shared by every agent of one poll (72 bytes
    /// each were a third of a baseline).
    #[serde(with = "shared_instant")]
    pub at: std::sync::Arc<Instant>,
    /// `start_ticks`.
    pub start_ticks: Option<u64>,
    /// `cpu_ticks`.
    pub cpu: Option<u64>,
    /// `tree_cpu_ticks`.
    pub tree: Option<u64>,
    /// `io_rchar + io_wchar`, when both are known.
    pub io: Option<u64>,
}

/// `Baseline::at` in the state file: the instant itself, as before it was
/// shared.
mod shared_instant {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Instant;

    pub fn serialize<S: Serializer>(at: &Arc<Instant>, s: S) -> Result<S::Ok, S::Error> {
        Instant::serialize(at, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Instant>, D::Error> {
        Instant::deserialize(d).map(Arc::new)
    }
}

/// A [`CounterWindow`] keeps its points (the newest aside) at least
/// `window / WINDOW_STEPS` apart, so it holds at most about 18 points
/// whatever the interval: 288 bytes. Keeping every poll's point cost a
/// 5m window polled each second 300 points (8 KiB with the deque's
/// doubling), and `agent_api_errors` keeps a window per agent, `run_cost`
/// one per run. The rate's base then lies up to a sixteenth of the window
/// (plus a poll) before the window's start instead of up to a poll.
pub const WINDOW_STEPS: f64 = 16.0;

/// Samples of one counter over a window, to derive a rate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CounterWindow {
    /// (target clock seconds, value), oldest first; all but the newest at
    /// least `window / WINDOW_STEPS` apart.
    pub points: VecDeque<(f64, f64)>,
}

impl CounterWindow {
    /// Adds a sample at `clock_s` and gives the rate over (about) `window_s`.
    /// A counter that went down restarts the window.
    pub fn push(&mut self, clock_s: f64, value: f64, window_s: f64) -> Growth {
        if self.points.back().is_some_and(|&(_, v)| value < v) {
            self.points.clear();
        }
        let n = self.points.len();
        // The newest point within a step of the one before: the new sample
        // takes its place (the rate needs the newest value, and a base no
        // finer than a step).
        if n >= 2 && self.points[n - 1].0 - self.points[n - 2].0 < window_s / WINDOW_STEPS {
            self.points[n - 1] = (clock_s, value);
        } else {
            if n == self.points.capacity() {
                // Grown one at a time: a window's few points, not a doubling.
                self.points.reserve_exact(1);
            }
            self.points.push_back((clock_s, value));
        }
        // Keep one point at or before the window's start so the rate covers it all.
        while self.points.len() > 2 && self.points[1].0 <= clock_s - window_s {
            self.points.pop_front();
        }
        match self.points.front() {
            Some(&(c0, v0)) if clock_s - c0 > 0.0 => Growth::Known {
                increase: value - v0,
                span_s: clock_s - c0,
            },
            _ => Growth::Unknown,
        }
    }
}

/// Counter windows by name (a subsystem, a run): a list, not a map, since
/// a target has one or a few, and a B-tree leaf holds room for eleven
/// (about 600 bytes for one subsystem). Serialized as a map, as the
/// `BTreeMap` it replaces was: the state file is unchanged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CounterWindows(Vec<(String, CounterWindow)>);

impl CounterWindows {
    /// The window of `name`, new and empty the first time (the name is
    /// copied only then, not on every poll).
    pub fn get_or_insert(&mut self, name: &str) -> &mut CounterWindow {
        let at = match self.0.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.0.reserve_exact(1);
                self.0.push((name.to_owned(), CounterWindow::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    /// Keeps the windows whose name `keep` says.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(n, _)| keep(n));
    }

    /// Forgets every window.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// How many windows are kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for CounterWindows {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(n, w)| (n, w)))
    }
}

impl<'de> Deserialize<'de> for CounterWindows {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, CounterWindow>::deserialize(d)?;
        Ok(Self(map.into_iter().collect()))
    }
}

/// Everything the delta engine remembers of one target.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TargetHistory {
    /// The previous envelope's clocks.
    pub last: Option<Instant>,
    /// Boot ids seen, newest last (their index is [`Instant::boot`]).
    pub boot_ids: Vec<String>,
    /// Per-agent baselines.
    #[serde(with = "as_pairs")]
    pub agents: AgentMap<Baseline>,
    /// `done + failed + cancelled` of the previous readable queue.
    pub finished: Option<u64>,
}

impl TargetHistory {
    /// The clocks of `env`, registering a new `boot_id`.
    pub fn instant_of(&mut self, env: &Envelope) -> Instant {
        let boot = env.boot_id.as_ref().map(|id| {
            match self.boot_ids.iter().position(|b| b == id) {
                Some(i) => i as u64,
                None => {
                    self.boot_ids.push(id.clone());
                    // Only the current and the previous boot ever matter.
                    if self.boot_ids.len() > 4 {
                        self.boot_ids.remove(0);
                        for b in self.agents.values_mut() {
                            let at = std::sync::Arc::make_mut(&mut b.at);
                            at.boot = at.boot.and_then(|x| x.checked_sub(1));
                        }
                        if let Some(l) = self.last.as_mut() {
                            l.boot = l.boot.and_then(|x| x.checked_sub(1));
                        }
                    }
                    (self.boot_ids.len() - 1) as u64
                }
            }
        });
        Instant {
            wall: env.generated_at,
            mono_ms: env.monotonic_ms,
            boot,
            received: None,
        }
    }

    /// Compares `env` with the history, updates the history, and returns the
    /// derived facts.
    pub fn observe<'e>(&mut self, env: &'e Envelope, now: Instant) -> Deltas<'e> {
        let mut out = Deltas {
            clock_advanced: self.last.map(|prev| match now.seconds_since(&prev) {
                Some(dt) => dt > 0.0,
                // A reboot: the wall clock is all there is to compare.
                None => now.wall > prev.wall,
            }),
            ..Deltas::default()
        };
        self.last = Some(now);

        if !env.is_degraded("agents") {
            out.agents = self.observe_agents(env, now);
        }
        if !env.is_degraded("queue") {
            if let Some(q) = &env.queue {
                let finished = ["done", "failed", "cancelled"]
                    .iter()
                    .map(|s| q.counts.get(*s).copied())
                    .sum::<Option<u64>>();
                out.jobs_finished = match (self.finished, finished) {
                    (Some(a), Some(b)) if b >= a => Some(b > a),
                    _ => None,
                };
                self.finished = finished;
            }
        }
        out
    }

    fn observe_agents<'e>(&mut self, env: &'e Envelope, now: Instant) -> Vec<AgentFact<'e>> {
        let clk_tck = env.clk_tck.filter(|&c| c > 0);
        let at = std::sync::Arc::new(now);
        let mut out = Vec::with_capacity(env.agents.len());
        let mut next: Vec<(AgentId, Baseline)> = Vec::with_capacity(env.agents.len());
        let mut seen: HashSet<AgentId, IdHash> =
            HashSet::with_capacity_and_hasher(env.agents.len(), IdHash::default());
        for agent in &env.agents {
            let id = AgentId::of(agent);
            let slot = id.slot();
            if !seen.insert(slot) {
                continue; // a duplicate row: the first one speaks for the agent
            }
            let io = agent
                .io_rchar
                .zip(agent.io_wchar)
                .map(|(r, w)| r.saturating_add(w));
            let mut base = Baseline {
                at: std::sync::Arc::clone(&at),
                start_ticks: agent.start_ticks,
                cpu: agent.cpu_ticks,
                tree: agent.tree_cpu_ticks,
                io,
            };
            let prev = self.agents.remove(&slot);
            let status = match &prev {
                None => AgentStatus::First,
                Some(p) => compare(p, &base, clk_tck),
            };
            if let (AgentStatus::Missing, Some(p)) = (status, &prev) {
                // Unknown counters: the old baseline stays so the next known
                // reading spans the gap.
                base = p.clone();
            }
            out.push(AgentFact { agent, id, status });
            next.push((slot, base));
        }
        // Agents that left the envelope are forgotten.
        self.agents = AgentMap::from_unsorted(next);
        out
    }
}

/// Compares one agent's new readings with its baseline.
fn compare(prev: &Baseline, now: &Baseline, clk_tck: Option<u64>) -> AgentStatus {
    let Some(dt) = now.at.seconds_since(&prev.at) else {
        return AgentStatus::Reset(ResetReason::Reboot);
    };
    if prev.start_ticks.is_some()
        && now.start_ticks.is_some()
        && prev.start_ticks != now.start_ticks
    {
        return AgentStatus::Reset(ResetReason::PidReused);
    }
    if dt <= 0.0 || now.at.stepped_since(&prev.at) {
        return AgentStatus::Reset(ResetReason::ClockStill);
    }
    let cpu = Ticks::of(prev.cpu, now.cpu);
    let tree = Ticks::of(prev.tree, now.tree);
    if cpu == Ticks::Unknown && tree == Ticks::Unknown {
        return AgentStatus::Missing;
    }
    let (io_grew, io_went_down) = match (prev.io, now.io) {
        (Some(x), Some(y)) => (Some(y > x), y < x),
        _ => (None, false),
    };
    let io_bytes = prev.io.zip(now.io).and_then(|(x, y)| y.checked_sub(x));
    AgentStatus::Sample {
        dt_s: dt,
        clk_tck,
        cpu,
        tree,
        io_grew,
        io_bytes,
        io_went_down,
    }
}

/// JSON maps need string keys; per-agent maps are kept as a list of pairs,
/// sorted by id.
pub(crate) mod as_pairs {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{AgentId, AgentMap};

    pub fn serialize<V: serde::Serialize, S: Serializer>(
        m: &AgentMap<V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<AgentMap<V>, D::Error> {
        Ok(AgentMap::from_unsorted(Vec::<(AgentId, V)>::deserialize(
            d,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(at_s: f64, mono: Option<u64>, boot: &str, agents: Vec<Agent>) -> Envelope {
        let t0 = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        let mut e = Envelope::new(t0.plus_seconds(at_s));
        e.monotonic_ms = mono;
        e.boot_id = Some(boot.into());
        e.clk_tck = Some(100);
        e.agents = agents;
        e
    }

    fn agent(ticks: u64, start: u64, io: u64) -> Agent {
        Agent {
            job_id: 7,
            run_id: Some(42),
            pid: Some(1234),
            cpu_ticks: Some(ticks),
            tree_cpu_ticks: Some(ticks),
            start_ticks: Some(start),
            io_rchar: Some(io),
            io_wchar: Some(0),
            ..Agent::default()
        }
    }

    /// The envelope is leaked so the facts may borrow it for the whole test.
    fn run(h: &mut TargetHistory, e: Envelope) -> Deltas<'static> {
        let e: &'static Envelope = Box::leak(Box::new(e));
        let now = h.instant_of(e);
        h.observe(e, now)
    }

    #[test]
    fn id_hash_tells_identities_apart_and_is_stable_in_a_process() {
        let id = |job, run, pid, start| AgentId {
            job_id: job,
            run_id: run,
            pid,
            start_ticks: start,
        };
        let h = IdHash::default();
        let a = id(7, Some(42), Some(1234), Some(1));
        assert_eq!(h.hash_one(a), IdHash::default().hash_one(a));
        // `None` and `Some(0)`, swapped fields: all different.
        let others = [
            id(7, Some(42), Some(1234), None),
            id(7, Some(42), Some(1234), Some(0)),
            id(7, Some(1234), Some(42), Some(1)),
            id(42, Some(7), Some(1234), Some(1)),
            id(7, None, Some(1234), Some(1)),
        ];
        for o in others {
            assert_ne!(h.hash_one(a), h.hash_one(o), "{o:?}");
        }
        let m: AgentMap<u32> = (0..10_000)
            .map(|i| (id(i, Some(i), None, None), 1))
            .collect();
        assert_eq!(m.len(), 10_000);
    }

    #[test]
    fn fraction_is_ticks_over_clk_tck_over_dt() {
        let mut h = TargetHistory::default();
        assert_eq!(
            run(&mut h, env(0.0, Some(0), "b", vec![agent(0, 1, 0)])).agents[0].status,
            AgentStatus::First
        );
        let d = run(&mut h, env(15.0, Some(10_000), "b", vec![agent(500, 1, 0)]));
        // 500 ticks / 100 per s / 10 s of monotonic time (the wall says 15).
        assert_eq!(d.agents[0].cpu_fraction(), Some(0.5));
    }

    #[test]
    fn wall_clock_step_back_is_ignored_when_monotonic_is_steady() {
        let mut h = TargetHistory::default();
        run(&mut h, env(100.0, Some(0), "b", vec![agent(0, 1, 0)]));
        let d = run(
            &mut h,
            env(-3600.0, Some(20_000), "b", vec![agent(20, 1, 0)]),
        );
        assert_eq!(d.agents[0].cpu_fraction(), Some(0.01));
        assert_eq!(d.clock_advanced, Some(true));
    }

    /// Issue 24 item 7: without `monotonic_ms`, a step of the emitter's
    /// wall clock gives a Δt the watchdog's own receipts contradict: no
    /// fraction (the timer restarts), instead of 0.2% over an hour.
    #[test]
    fn a_wall_clock_step_without_monotonic_is_told_by_the_watchdogs_receipts() {
        let seen = |ms: u64| {
            Some(Receipt {
                epoch: 9,
                ms: 1_000_000 + ms,
            })
        };
        let step = |h: &mut TargetHistory, at_s: f64, ticks: u64, received: Option<Receipt>| {
            let e: &'static Envelope =
                Box::leak(Box::new(env(at_s, None, "b", vec![agent(ticks, 1, 0)])));
            let now = h.instant_of(e).received_at(received);
            h.observe(e, now).agents[0].status
        };
        // 50% CPU, polled every 15 s; the emitter's clock jumps 1h ahead.
        let mut h = TargetHistory::default();
        step(&mut h, 0.0, 0, seen(0));
        assert!(
            matches!(step(&mut h, 15.0, 750, seen(15_000)), AgentStatus::Sample { dt_s, .. } if dt_s == 15.0)
        );
        assert_eq!(
            step(&mut h, 3630.0, 1500, seen(30_000)),
            AgentStatus::Reset(ResetReason::ClockStill)
        );
        // From the new baseline on, deltas are right again.
        let after = step(&mut h, 3645.0, 2250, seen(45_000));
        assert!(
            matches!(after, AgentStatus::Sample { dt_s, .. } if dt_s == 15.0),
            "{after:?}"
        );
        assert_eq!(
            after.reading(true),
            Reading::Fraction {
                fraction: 0.5,
                dt_s: 15.0,
                io_grew: Some(false),
                io_bytes: Some(0),
            }
        );
        // A step back smaller than Δt (Δt stays > 0) is told too.
        assert_eq!(
            step(&mut h, 3650.0, 3000, seen(60_000)),
            AgentStatus::Reset(ResetReason::ClockStill)
        );
        // Latency jitter within the tolerance is not a step.
        assert!(matches!(
            step(&mut h, 3668.0, 3750, seen(75_000)),
            AgentStatus::Sample { .. }
        ));

        // Receipts of two runs of the watchdog's clock are not compared;
        // without receipts it is as before (and monotonic_ms is trusted).
        let mut h = TargetHistory::default();
        step(&mut h, 0.0, 0, seen(0));
        let other_run = Some(Receipt {
            epoch: 1,
            ms: 15_000,
        });
        assert!(
            matches!(step(&mut h, 3615.0, 750, other_run), AgentStatus::Sample { dt_s, .. } if dt_s == 3615.0)
        );
        assert!(matches!(
            step(&mut h, 7230.0, 1500, None),
            AgentStatus::Sample { .. }
        ));
        let a = Instant {
            wall: Timestamp::parse("2026-11-22T10:00:00Z").unwrap(),
            mono_ms: Some(0),
            boot: Some(0),
            received: seen(0),
        };
        let b = Instant {
            wall: a.wall.plus_seconds(3615.0),
            mono_ms: Some(15_000),
            received: seen(15_000),
            ..a
        };
        assert!(!b.stepped_since(&a), "monotonic_ms is immune to steps");
        assert!(Instant { mono_ms: None, ..b }.stepped_since(&a));
    }

    #[test]
    fn resets_give_no_fraction() {
        let mut h = TargetHistory::default();
        run(&mut h, env(0.0, Some(0), "b", vec![agent(10, 1, 0)]));
        let d = run(&mut h, env(60.0, Some(60_000), "b", vec![agent(10, 1, 0)]));
        assert_eq!(d.agents[0].cpu_fraction(), Some(0.0));
        let d = run(
            &mut h,
            env(120.0, Some(120_000), "b", vec![agent(10, 2, 0)]),
        );
        assert_eq!(
            d.agents[0].status,
            AgentStatus::Reset(ResetReason::PidReused)
        );
        let d = run(&mut h, env(180.0, Some(180_000), "b", vec![agent(5, 2, 0)]));
        // Ticks going down is a fact; that it resets the reading is the
        // reading's verdict, for either counter.
        assert_eq!(
            d.agents[0].status.reading(true),
            Reading::Reset(ResetReason::CounterWentDown)
        );
        assert_eq!(
            d.agents[0].status.reading(false),
            Reading::Reset(ResetReason::CounterWentDown)
        );
        let d = run(&mut h, env(240.0, Some(1_000), "b2", vec![agent(6, 2, 0)]));
        assert_eq!(d.agents[0].status, AgentStatus::Reset(ResetReason::Reboot));
        let d = run(&mut h, env(240.0, Some(1_000), "b2", vec![agent(6, 2, 0)]));
        assert_eq!(
            d.agents[0].status,
            AgentStatus::Reset(ResetReason::ClockStill)
        );
        assert_eq!(d.clock_advanced, Some(false));
    }

    #[test]
    fn duplicates_count_once_and_gone_agents_are_forgotten() {
        let mut h = TargetHistory::default();
        let d = run(
            &mut h,
            env(0.0, None, "b", vec![agent(1, 1, 0), agent(2, 1, 0)]),
        );
        assert_eq!(d.agents.len(), 1);
        run(&mut h, env(15.0, None, "b", vec![]));
        assert!(h.agents.is_empty());
    }

    #[test]
    fn error_window_gives_a_rate_and_restarts_on_reset() {
        let mut w = CounterWindow::default();
        assert_eq!(w.push(0.0, 10.0, 300.0), Growth::Unknown);
        let g = w.push(60.0, 70.0, 300.0);
        assert_eq!(
            g,
            Growth::Known {
                increase: 60.0,
                span_s: 60.0
            }
        );
        assert_eq!(g.per_second_over(300.0), Some(0.2));
        assert_eq!(w.push(120.0, 5.0, 300.0), Growth::Unknown);
        for i in 1..20 {
            w.push(
                120.0 + 60.0 * f64::from(i),
                5.0 + 60.0 * f64::from(i),
                300.0,
            );
        }
        assert!(
            w.points.len() <= 7,
            "old points are dropped: {}",
            w.points.len()
        );
    }

    #[test]
    fn an_agent_map_finds_each_id_keeps_the_later_of_two_and_costs_no_more_than_its_values() {
        let id = |job: i64| AgentId {
            job_id: job,
            run_id: Some(job * 10),
            pid: None,
            start_ticks: None,
        };
        let mut m = AgentMap::from_unsorted(vec![
            (id(3), "c"),
            (id(1), "a"),
            (id(2), "b"),
            (id(1), "a2"),
        ]);
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&id(1)), Some(&"a2"), "the later of two");
        assert_eq!(m.get(&id(2)), Some(&"b"));
        assert_eq!(m.get(&id(4)), None);
        let ids: Vec<i64> = m.iter().map(|(k, _)| k.job_id).collect();
        assert_eq!(ids, [1, 2, 3], "sorted");
        assert_eq!(m.remove(&id(2)), Some("b"));
        assert_eq!(m.remove(&id(2)), None, "taken once");
        assert_eq!(m.get(&id(2)), None);
        assert_eq!(m.len(), 2);
        // Saved as the sorted list of pairs the hash map was saved as.
        #[derive(Serialize, Deserialize)]
        struct Held {
            #[serde(with = "as_pairs")]
            m: AgentMap<u32>,
        }
        let held = Held {
            m: [(id(2), 20), (id(1), 10)].into_iter().collect(),
        };
        let json = serde_json::to_value(&held).unwrap();
        assert_eq!(json["m"][0][0]["job_id"], 1);
        assert_eq!(json["m"][1][1], 20);
        let back: Held = serde_json::from_value(json).unwrap();
        assert_eq!(back.m, held.m);
        // The entry's `Option` is free where the value has a niche.
        assert_eq!(
            std::mem::size_of::<Option<Baseline>>(),
            std::mem::size_of::<Baseline>()
        );
        assert_eq!(
            std::mem::size_of::<Option<CounterWindow>>(),
            std::mem::size_of::<CounterWindow>()
        );
    }

    #[test]
    fn windows_by_name_are_saved_as_the_map_they_were() {
        let mut w = CounterWindows::default();
        w.get_or_insert("git").push(0.0, 1.0, 60.0);
        w.get_or_insert("db").push(0.0, 2.0, 60.0);
        w.get_or_insert("git").push(10.0, 3.0, 60.0);
        assert_eq!(w.len(), 2, "a name is kept once");
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "git": {"points": [[0.0, 1.0], [10.0, 3.0]]},
                "db": {"points": [[0.0, 2.0]]},
            })
        );
        let back: CounterWindows = serde_json::from_value(json).unwrap();
        assert_eq!(back.len(), 2);
        w.retain(|n| n == "db");
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            serde_json::json!({"db": {"points": [[0.0, 2.0]]}})
        );
    }

    #[test]
    fn a_window_polled_often_keeps_a_few_points_and_its_rate() {
        // A 5m window polled every second for an hour: a counter growing
        // 2 a second.
        let mut w = CounterWindow::default();
        let mut last = Growth::Unknown;
        for i in 0..3600 {
            let t = f64::from(i);
            last = w.push(t, 2.0 * t, 300.0);
        }
        let most = (WINDOW_STEPS as usize) + 2;
        assert!(w.points.len() <= most, "{} points", w.points.len());
        assert!(
            w.points.capacity() <= most + 1,
            "capacity {}",
            w.points.capacity()
        );
        assert_eq!(
            w.points.back(),
            Some(&(3599.0, 7198.0)),
            "the newest is kept"
        );
        let Growth::Known { increase, span_s } = last else {
            panic!("a rate after an hour: {last:?}");
        };
        // The base is at or before the window's start, at most a step and
        // a poll earlier.
        assert!(
            (300.0..=300.0 + 300.0 / WINDOW_STEPS + 1.0).contains(&span_s),
            "span {span_s}"
        );
        assert_eq!(increase, 2.0 * span_s);
        assert_eq!(last.per_second_over(300.0), Some(2.0));
    }

    proptest! {
        #[test]
        fn fractions_are_never_negative(a in any::<u32>(), b in any::<u32>(), s1 in any::<u32>(), s2 in any::<u32>(), dt in -100i64..100) {
            let mut h = TargetHistory::default();
            run(&mut h, env(0.0, Some(1_000_000), "b", vec![agent(u64::from(a), u64::from(s1 % 3), 0)]));
            let d = run(&mut h, env(dt as f64, Some((1_000_000 + dt * 1000) as u64), "b", vec![agent(u64::from(b), u64::from(s2 % 3), 0)]));
            if let Some(f) = d.agents[0].cpu_fraction() {
                prop_assert!(f >= 0.0 && f.is_finite());
            }
        }
    }
}
