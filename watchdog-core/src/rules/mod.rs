//! The rules of CONTRACT.md section 3: one file each, one [`Rule`] trait,
//! registered in [`ALL`]. Adding a rule is one new file plus one line there.
//!
//! A rule looks at one evaluated poll ([`Ctx`]) and says, per subject, that
//! its condition holds (with value, threshold, summary, labels) or that it
//! cannot tell; every subject it does not list is "condition false". When it
//! cannot tell anything at all (target down, section degraded) it returns
//! [`Outcome::Unknown`], and every alert of the rule sits out the gap.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shared_schema::{Agent, Envelope, Severity};

use crate::alerts::Finding;
use crate::delta::{DeltaConfig, Deltas};
use crate::dur::Dur;
use crate::view::PollOutcome;

pub mod agent_runtime;
pub mod breaker_open;
pub mod cost_budget;
pub mod error_rate;
pub mod invariant_violation;
pub mod queue_depth;
pub mod queue_stalled;
pub mod reconciler_backlog;
pub mod reconciler_slow;
pub mod schema_incompatible;
pub mod section_degraded;
pub mod stage_age;
pub mod stuck_agent;
pub mod target_down;
pub mod target_stale;

/// Builds a rule from its `[rules.NAME]` table (absent: all defaults).
pub type Builder = fn(Option<&toml::Table>) -> Result<Box<dyn Rule>, String>;

/// Every rule, by its stable name.
pub const ALL: &[(&str, Builder)] = &[
    (stuck_agent::NAME, stuck_agent::build),
    (agent_runtime::NAME, agent_runtime::build),
    (stage_age::NAME, stage_age::build),
    (queue_depth::NAME, queue_depth::build),
    (queue_stalled::NAME, queue_stalled::build),
    (breaker_open::NAME, breaker_open::build),
    (invariant_violation::NAME, invariant_violation::build),
    (reconciler_slow::NAME, reconciler_slow::build),
    (reconciler_backlog::NAME, reconciler_backlog::build),
    (error_rate::NAME, error_rate::build),
    (cost_budget::NAME, cost_budget::build),
    (target_down::NAME, target_down::build),
    (target_stale::NAME, target_stale::build),
    (schema_incompatible::NAME, schema_incompatible::build),
    (section_degraded::NAME, section_degraded::build),
];

/// Which clock an alert's `ts`/`since` are written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The envelope's `generated_at` (the watchdog's when there is no envelope).
    Emitter,
    /// The watchdog's own: for alerts about the target itself.
    Watchdog,
}

/// One evaluated poll of one target, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The target's name.
    pub target: &'a str,
    /// How the poll ended.
    pub outcome: &'a PollOutcome,
    /// The envelope, when read.
    pub envelope: Option<&'a Envelope>,
    /// What the delta engine derived from it.
    pub deltas: &'a Deltas,
}

impl<'a> Ctx<'a> {
    /// The envelope when `section` of it can be trusted: read and not degraded.
    pub fn section(&self, section: &str) -> Option<&'a Envelope> {
        self.envelope.filter(|e| !e.is_degraded(section))
    }
}

/// A rule's verdict on one subject whose condition is not plainly false.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The condition holds.
    Firing(Finding),
    /// Not enough data for this subject (first sample, missing field).
    Unknown,
}

/// What a rule says about one poll.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing can be told (target down, section degraded or unknown).
    Unknown,
    /// Per subject (`job=7|run=42|pid=1234`, or `""` for the target as a
    /// whole); subjects not listed are "condition false".
    Subjects(Vec<(String, Verdict)>),
}

impl Outcome {
    /// No subject's condition holds.
    pub fn clear() -> Self {
        Self::Subjects(Vec::new())
    }

    /// The target-wide condition holds.
    pub fn firing(finding: Finding) -> Self {
        Self::Subjects(vec![(String::new(), Verdict::Firing(finding))])
    }
}

/// One rule of section 3.
pub trait Rule: Send + Sync + std::fmt::Debug {
    /// The stable name (`stuck_agent`).
    fn name(&self) -> &'static str;
    /// `enabled`, `severity`, `for`, `keep_firing_for`.
    fn common(&self) -> &Common;
    /// The rule's own keys with their effective values, for `--print-config`.
    fn own_settings(&self) -> toml::Table;
    /// Evaluates one poll.
    fn evaluate(&self, ctx: &Ctx<'_>) -> Outcome;
    /// The clock of this rule's `ts`/`since`.
    fn clock(&self) -> Clock {
        Clock::Emitter
    }
    /// Tells the delta engine what this rule needs of it.
    fn tune(&self, delta: &mut DeltaConfig) {
        let _ = delta;
    }
}

/// The keys every rule has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Common {
    /// Whether the rule is evaluated at all.
    pub enabled: bool,
    /// The severity of its alerts.
    pub severity: Severity,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Dur,
    /// How long the condition must be false before a firing alert resolves.
    pub keep_firing_for: Dur,
}

impl Common {
    /// A rule's defaults.
    pub const fn defaults(severity: Severity, for_: Dur) -> Self {
        Self {
            enabled: true,
            severity,
            for_,
            keep_firing_for: Dur::secs(0),
        }
    }
}

/// Reads a `[rules.NAME]` table: the common keys over `defaults`, the rest
/// into the rule's own `T` (which rejects unknown keys and defaults the rest).
pub fn parse<T: DeserializeOwned + Default>(
    table: Option<&toml::Table>,
    mut common: Common,
) -> Result<(Common, T), String> {
    let Some(table) = table else {
        return Ok((common, T::default()));
    };
    let mut rest = table.clone();
    if let Some(v) = rest.remove("enabled") {
        common.enabled = v.try_into().map_err(|e| format!("key `enabled`: {e}"))?;
    }
    if let Some(v) = rest.remove("severity") {
        common.severity = v.try_into().map_err(|_| {
            "key `severity`: expected \"info\", \"warning\" or \"critical\"".to_owned()
        })?;
    }
    if let Some(v) = rest.remove("for") {
        common.for_ = v.try_into().map_err(|e| format!("key `for`: {e}"))?;
    }
    if let Some(v) = rest.remove("keep_firing_for") {
        common.keep_firing_for = v
            .try_into()
            .map_err(|e| format!("key `keep_firing_for`: {e}"))?;
    }
    let own: T = toml::Value::Table(rest)
        .try_into()
        .map_err(|e| e.to_string().trim().to_owned())?;
    Ok((common, own))
}

/// A rule's own settings as a TOML table.
pub fn to_table<T: Serialize>(own: &T) -> toml::Table {
    match toml::Value::try_from(own) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// The subject key and labels of one agent: identity only, never values.
pub fn agent_subject(a: &Agent) -> String {
    fn opt(v: Option<i64>) -> String {
        v.map_or_else(|| "none".to_owned(), |v| v.to_string())
    }
    format!("job={}|run={}|pid={}", a.job_id, opt(a.run_id), opt(a.pid))
}

/// The labels of one agent.
pub fn agent_labels(a: &Agent) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    if let Some(name) = &a.agent {
        l.insert("agent".into(), name.clone());
    }
    l.insert("job_id".into(), a.job_id.to_string());
    if let Some(run) = a.run_id {
        l.insert("run_id".into(), run.to_string());
    }
    if let Some(pid) = a.pid {
        l.insert("pid".into(), pid.to_string());
    }
    if let Some(repo) = &a.repo {
        l.insert("repo".into(), repo.clone());
    }
    l
}

/// How a summary names an agent: `agent dev (job 7, pid 1234)`.
pub fn agent_phrase(a: &Agent) -> String {
    let name = a.agent.as_deref().unwrap_or("?");
    match a.pid {
        Some(pid) => format!("agent {name} (job {}, pid {pid})", a.job_id),
        None => format!("agent {name} (job {})", a.job_id),
    }
}

/// Labels from pairs.
pub fn labels<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A finding without labels.
pub fn finding(summary: String, value: Option<f64>, threshold: Option<f64>) -> Finding {
    Finding {
        labels: BTreeMap::new(),
        summary,
        value,
        threshold,
        already_held_s: None,
    }
}

/// The built rule set of one config.
#[derive(Debug)]
pub struct RuleSet {
    /// Every rule, enabled or not, in [`ALL`] order.
    pub rules: Vec<Box<dyn Rule>>,
    /// What the delta engine needs.
    pub delta: DeltaConfig,
}

impl RuleSet {
    /// Builds every rule from `[rules.*]`; an unknown rule name is an error.
    pub fn build(tables: &BTreeMap<String, toml::Table>) -> Result<Self, String> {
        for name in tables.keys() {
            if !ALL.iter().any(|(n, _)| n == name) {
                let known: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown rule `{name}` in [rules.{name}] (known rules: {})",
                    known.join(", ")
                ));
            }
        }
        let mut rules = Vec::with_capacity(ALL.len());
        for (name, build) in ALL {
            let rule = build(tables.get(*name)).map_err(|e| format!("[rules.{name}]: {e}"))?;
            rules.push(rule);
        }
        let mut delta = DeltaConfig::default();
        for r in &rules {
            r.tune(&mut delta);
        }
        Ok(Self { rules, delta })
    }

    /// Every rule at its defaults.
    pub fn defaults() -> Self {
        // The defaults are valid by construction; an empty table cannot fail.
        Self::build(&BTreeMap::new()).unwrap_or(Self {
            rules: Vec::new(),
            delta: DeltaConfig::default(),
        })
    }

    /// The rule named `name`.
    pub fn get(&self, name: &str) -> Option<&dyn Rule> {
        self.rules
            .iter()
            .find(|r| r.name() == name)
            .map(|r| r.as_ref())
    }

    /// `[rules.*]` with every effective value.
    pub fn to_table(&self) -> toml::Table {
        let mut out = toml::Table::new();
        for r in &self.rules {
            let mut t = to_table(r.common());
            t.extend(r.own_settings());
            out.insert(r.name().to_owned(), toml::Value::Table(t));
        }
        out
    }
}

#[cfg(test)]
mod tests;
