//! `stuck_agent`: an agent that has run long enough and, over its whole
//! `for` window, used almost no CPU, did (almost) no I/O and, when it
//! reports telemetry, completed no model request and no tool call. The one
//! alert an orchestrator cannot raise itself: a hung agent looks "running"
//! in its own tables.
//!
//! The rule owns idleness: the delta engine reports neutral facts per agent
//! (ticks, Δt, I/O bytes, why a delta could not be taken) and this rule
//! keeps, per agent identity, the samples of the last `for` and an idle
//! timer. Why a window and not the last delta (CONTRACT.md section 3, page
//! 3): an agent CLI blocked on a model reply keeps its event loop ticking
//! (Claude Code 2.1: 0 to 12 ticks and about 90 bytes every 2 s), so one
//! poll in a few reads as busy and any I/O at all as work. Over the window
//! the ticks average out below `cpu_floor`, and I/O counts only above
//! `io_floor` bytes per minute.
//!
//! The condition of one poll is "the window is idle". When it turns idle
//! the idle span is dated back to the window's start (the whole window was
//! judged), so an agent that hangs fires `for` after it last did something;
//! while it stays idle the span grows by each Δt. The timer and the window
//! restart (and the rule says "false") when the process behind the pid
//! changed, its counters went down or the host rebooted. The first sample,
//! a delta with an unknown counter, or an emitter clock that did not
//! advance is "not enough data". `per_agent` overrides any key (and `for`)
//! by agent name. A gone or zombie process is never stuck (it is
//! `agent_gone`'s).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use shared_schema::{Activity, Agent, Section, Severity, Timestamp};

use super::{agent_phrase, agent_subject, AgentFigures, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::delta::{AgentId, AgentMap, AgentStatus, Reading, ResetReason};
use crate::dur::{human_secs, Dur};
use crate::error::SettingError;

#[cfg(test)]
mod tests;

/// The default `io_floor`, bytes per minute. Measured on real CLIs hung on
/// a model call (docs/RELIABILITY.md, "Real agent CLIs"): Claude Code 2.1
/// moves 0.6 to 4.5 KB a minute, Codex CLI 0.171 42 to 166 KB (it keeps
/// writing its own logs while it waits); a Claude Code loop moves
/// 19.5 MB. 512 KiB is three times the hung Codex and 38 times below the
/// loop. (It was 64 KiB, which a hung Codex exceeded: `stuck_agent` never
/// fired on it under the defaults.)
pub const IO_FLOOR: f64 = 524_288.0;

/// At most this many samples are kept per agent: past it the two adjacent
/// ones that span the least time are merged, so a long `for` at a short
/// interval costs bounded memory (12 bytes a sample: 10,000 agents x 16
/// samples is 1.9 MB). A 10m window at a 2 s interval then judges CPU and
/// I/O in buckets of about 40 s, which moves its far edge by at most that
/// much; reported requests and tool calls are timed apart, to the poll.
const MAX_SAMPLES: usize = 16;

/// `[rules.stuck_agent]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Below this CPU fraction (CPU seconds per second, over the window) the agent is idle.
    pub cpu_floor: f64,
    /// I/O (`io_rchar + io_wchar`) up to this many bytes per minute, over
    /// the window, does not count as work.
    pub io_floor: f64,
    /// Agents younger than this are never stuck.
    pub min_runtime: Dur,
    /// Prefer `tree_cpu_ticks` (the whole process tree) over `cpu_ticks`.
    pub use_tree: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cpu_floor: 0.02,
            io_floor: IO_FLOOR,
            min_runtime: Dur::secs(120),
            use_tree: true,
        }
    }
}

impl Rule for Settings {
    const NAME: &'static str = "stuck_agent";
    const SEVERITY: Severity = Severity::Warning;
    const FOR: Dur = Dur::secs(600);
    const PER_AGENT: bool = true;
    const FIGURES: bool = true;
    const DIAGNOSE: bool = true;
    type State = Idle;

    fn check(&self) -> Result<(), SettingError> {
        if !(self.cpu_floor.is_finite() && self.cpu_floor >= 0.0) {
            return Err(SettingError::key(
                "cpu_floor",
                "must be a non-negative number",
            ));
        }
        if !(self.io_floor.is_finite() && self.io_floor >= 0.0) {
            return Err(SettingError::key(
                "io_floor",
                "must be a non-negative number (bytes per minute)",
            ));
        }
        Ok(())
    }

    fn evaluate(&self, ctx: &Ctx<'_>, idle: &mut Self::State, per: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Agents) else {
            return Outcome::Unknown;
        };
        let mut out = Vec::new();
        let mut next: Vec<(AgentId, IdleTimer)> = Vec::with_capacity(ctx.deltas.agents.len());
        for fact in &ctx.deltas.agents {
            let agent = fact.agent;
            let settings = per.get(self, agent);
            let window_s = per.for_by_name(agent.agent.as_deref()).as_secs_f64();
            let reading = fact.status.reading(settings.use_tree);
            let mut timer = idle
                .by_agent
                .remove(&fact.id)
                .filter(|_| fact.status != AgentStatus::First)
                .unwrap_or_default();
            let judged = timer.advance(
                reading,
                agent,
                env.generated_at,
                settings,
                window_s,
                fact.status == AgentStatus::First,
            );
            // A process that is gone or a zombie is not stuck: it is
            // `agent_gone`'s, whose summary says which (a zombie's counters
            // stand still and would read as 0% CPU here).
            let gone = matches!(super::agent_gone::gone(agent), Some(Some(_)));
            let verdict = match (reading, agent.runtime_s) {
                _ if gone => None,
                (_, None) | (Reading::Missing, _) => Some(Verdict::Unknown),
                (_, Some(r)) if r < settings.min_runtime.as_secs_f64() => None,
                // The emitter's clock stood still: nothing was measured, so
                // nothing is known (the idle timer restarts all the same).
                (Reading::Reset(ResetReason::ClockStill), _) => Some(Verdict::Unknown),
                // Another process, or another boot: the old one is not stuck.
                (Reading::Reset(_), _) => None,
                (Reading::Fraction { .. }, Some(_)) => judged.filter(|j| j.idle).map(|j| {
                    Verdict::Firing(finding(agent, per, &timer, &j, settings, env.generated_at))
                }),
            };
            next.push((fact.id, timer));
            if let Some(v) = verdict {
                out.push((agent_subject(agent), v));
            }
        }
        // Agents that left the envelope are forgotten.
        idle.by_agent = AgentMap::from_unsorted(next);
        Outcome::Subjects(out)
    }

    // The idle time only: the CPU fraction the outputs show is the delta's
    // (`AgentFact::cpu_fraction`), set once by the engine.
    fn figures(&self, idle: &Self::State, id: &AgentId, out: &mut AgentFigures) {
        if let Some(t) = idle.by_agent.get(id) {
            out.idle_s = t.idle_s;
        }
    }
}

fn finding(
    agent: &Agent,
    per: &PerAgent<Settings>,
    timer: &IdleTimer,
    j: &Judged,
    settings: &Settings,
    now: Timestamp,
) -> Finding {
    let mean = timer.mean_fraction().unwrap_or(j.cpu);
    let io = match j.io_per_min {
        None => String::new(),
        Some(b) if b <= 0.0 => " and did no I/O".to_owned(),
        Some(b) => format!(" and did only {} of I/O a minute", bytes(b)),
    };
    let told = match agent.activity.as_ref().and_then(last_progress_at) {
        Some(at) => format!(
            "; its last model reply or tool result was {} ago",
            human_secs(now.seconds_since(&at))
        ),
        None if agent.activity.is_some() => {
            "; it has reported no model reply or tool result".into()
        }
        None => String::new(),
    };
    Finding {
        summary: format!(
            "{} used {:.1}% CPU{io} for {}{told}",
            agent_phrase(agent),
            mean * 100.0,
            human_secs(timer.idle_s.unwrap_or(0.0))
        ),
        value: Some(round(mean)),
        threshold: Some(settings.cpu_floor),
        // The idle span began at the window's start, before this poll.
        already_held_s: timer.idle_s,
        ..per.about(agent)
    }
}

/// `2.7 KiB`, `512 B`.
fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// The newest completed request or tool call the agent reported.
fn last_progress_at(a: &Activity) -> Option<Timestamp> {
    match (a.last_api_at, a.last_tool_at) {
        (Some(x), Some(y)) => Some(if x > y { x } else { y }),
        (x, y) => x.or(y),
    }
}

/// Each agent's idle timer, by identity (a reused pid is another agent).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Idle {
    #[serde(with = "crate::delta::as_pairs")]
    by_agent: AgentMap<IdleTimer>,
}

/// One delta of one agent, as the window keeps it (`f32`: a window of a
/// few dozen sums needs no more, and 10,000 agents keep one each). 12
/// bytes: an unknown I/O is NaN rather than an `Option` (16 bytes a sample,
/// 16 samples an agent); the state file still says `null`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds it spans.
    pub dt_s: f32,
    /// CPU seconds used in it.
    pub cpu_s: f32,
    /// Bytes of I/O in it; NaN when not known (see [`Sample::io`]).
    #[serde(with = "nan_is_null")]
    io: f32,
}

impl Sample {
    /// A sample of `dt_s` seconds with `cpu_s` CPU seconds and `io` bytes.
    pub fn new(dt_s: f32, cpu_s: f32, io: Option<f32>) -> Self {
        Self {
            dt_s,
            cpu_s,
            io: io.unwrap_or(f32::NAN),
        }
    }

    /// Bytes of I/O in it; `None` when not known.
    pub fn io(&self) -> Option<f32> {
        (!self.io.is_nan()).then_some(self.io)
    }

    fn merge(self, later: Self) -> Self {
        // NaN + anything is NaN: unknown stays unknown.
        Self {
            dt_s: self.dt_s + later.dt_s,
            cpu_s: self.cpu_s + later.cpu_s,
            io: self.io + later.io,
        }
    }
}

impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        // Two unknown I/O figures are the same (NaN is unequal to itself).
        self.dt_s == other.dt_s && self.cpu_s == other.cpu_s && self.io() == other.io()
    }
}

/// [`Sample`]'s I/O in the state file: `null` when unknown, as when it was
/// an `Option`.
mod nan_is_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(io: &f32, s: S) -> Result<S::Ok, S::Error> {
        (!io.is_nan()).then_some(*io).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
    }
}

/// How long one agent has been idle, and the window it is judged over.
/// The keys after `idle_cpu_s` are new in page 3; a state file without them
/// restores with an empty window (judged over the samples that follow). A
/// `fraction` key of older files is ignored: the outputs' fraction is the
/// delta's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IdleTimer {
    /// Seconds idle so far; `Some(0)` when busy; `None` when not running
    /// (first sample, after a reset).
    pub idle_s: Option<f64>,
    /// CPU seconds used over the idle span.
    pub idle_cpu_s: f64,
    /// The samples of the last `for`, oldest first.
    #[serde(default)]
    pub window: VecDeque<Sample>,
    /// `api_requests` and `tool_calls` as last seen.
    #[serde(default)]
    pub counts: Option<(u64, u64)>,
    /// Seconds since those counts last grew (kept apart from the samples,
    /// whose merged buckets would blur when that was).
    #[serde(default)]
    pub since_progress_s: Option<f64>,
}

/// The verdict on one agent's window after a delta.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Judged {
    idle: bool,
    /// CPU fraction over the window.
    cpu: f64,
    /// I/O bytes per minute over the window; `None` when not known.
    io_per_min: Option<f64>,
}

impl IdleTimer {
    /// Takes one more reading in; judges the window when it was a delta.
    fn advance(
        &mut self,
        reading: Reading,
        agent: &Agent,
        now: Timestamp,
        s: &Settings,
        window_s: f64,
        first: bool,
    ) -> Option<Judged> {
        let counts = agent
            .activity
            .as_ref()
            .map(|a| (a.api_requests, a.tool_calls));
        match reading {
            // Unknown counters: the timer neither restarts nor advances,
            // and the activity seen so far waits for the next delta.
            Reading::Missing => {
                if first {
                    self.counts = counts;
                }
                None
            }
            Reading::Reset(_) => {
                *self = Self {
                    counts,
                    ..Self::default()
                };
                None
            }
            Reading::Fraction {
                fraction,
                dt_s,
                io_bytes,
                ..
            } => {
                // Growth of a counter that went down (an emitter restart) is unknown, not progress.
                let progress = matches!((self.counts, counts),
                    (Some((r0, t0)), Some((r1, t1))) if r1 > r0 || t1 > t0);
                self.counts = counts;
                self.since_progress_s = if progress {
                    Some(0.0)
                } else {
                    self.since_progress_s.map(|x| x + dt_s)
                };
                self.push(Sample::new(
                    dt_s as f32,
                    (fraction * dt_s) as f32,
                    io_bytes.map(|b| b as f32),
                ));
                self.trim(window_s);
                // For a `for` of 0s, the last delta is the window.
                let j = self.judge(s, agent.activity.as_ref(), now, window_s.max(dt_s));
                if j.idle {
                    match self.idle_s {
                        Some(x) if x > 0.0 => {
                            self.idle_s = Some(x + dt_s);
                            self.idle_cpu_s += fraction * dt_s;
                        }
                        // Just turned idle: the whole window was judged idle.
                        _ => {
                            self.idle_s = Some(self.span());
                            self.idle_cpu_s = self.window.iter().map(|x| f64::from(x.cpu_s)).sum();
                        }
                    }
                } else {
                    self.idle_s = Some(0.0);
                    self.idle_cpu_s = 0.0;
                }
                Some(j)
            }
        }
    }

    fn push(&mut self, sample: Sample) {
        // Merged before the push, so the deque never holds (nor allocates
        // room for) more than MAX_SAMPLES.
        if self.window.len() >= MAX_SAMPLES {
            // The adjacent pair spanning the least time: the window keeps
            // an even resolution and its total is unchanged.
            let i = (0..self.window.len() - 1)
                .min_by(|&a, &b| {
                    let da = self.window[a].dt_s + self.window[a + 1].dt_s;
                    let db = self.window[b].dt_s + self.window[b + 1].dt_s;
                    da.total_cmp(&db)
                })
                .unwrap_or(0);
            if let Some(later) = self.window.remove(i + 1) {
                self.window[i] = self.window[i].merge(later);
            }
        }
        self.window.push_back(sample);
    }

    /// Drops the samples the window no longer needs: it keeps covering at
    /// least `window_s` once the history is that long.
    fn trim(&mut self, window_s: f64) {
        let mut total = self.span();
        while self.window.len() > 1 {
            let oldest = f64::from(self.window[0].dt_s);
            if total - oldest < window_s {
                break;
            }
            total -= oldest;
            self.window.pop_front();
        }
    }

    /// Seconds the window spans.
    fn span(&self) -> f64 {
        self.window.iter().map(|x| f64::from(x.dt_s)).sum()
    }

    fn judge(
        &self,
        s: &Settings,
        activity: Option<&Activity>,
        now: Timestamp,
        window_s: f64,
    ) -> Judged {
        let span = self.span();
        let cpu_s: f64 = self.window.iter().map(|x| f64::from(x.cpu_s)).sum();
        let cpu = if span > 0.0 { cpu_s / span } else { 0.0 };
        let (io, io_span) = self
            .window
            .iter()
            .filter_map(|x| x.io().map(|b| (f64::from(b), f64::from(x.dt_s))))
            .fold((None::<f64>, 0.0), |(sum, t), (b, dt)| {
                (Some(sum.unwrap_or(0.0) + b), t + dt)
            });
        let io_per_min = io.map(|b| {
            if io_span > 0.0 {
                b / io_span * 60.0
            } else {
                0.0
            }
        });
        // A completed request or tool call reported within the last `for`
        // (to the poll: the samples' span may exceed it by a merged bucket).
        let reported = self.since_progress_s.is_some_and(|x| x < window_s)
            || activity
                .and_then(last_progress_at)
                .is_some_and(|at| now.seconds_since(&at) <= window_s);
        Judged {
            idle: cpu < s.cpu_floor && io_per_min.map_or(true, |r| r <= s.io_floor) && !reported,
            cpu,
            io_per_min,
        }
    }

    /// The mean CPU fraction over the idle span.
    fn mean_fraction(&self) -> Option<f64> {
        match self.idle_s {
            Some(s) if s > 0.0 => Some(self.idle_cpu_s / s),
            _ => None,
        }
    }
}

/// Keeps the log readable: a fraction to 6 decimals.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
