//! The rules of CONTRACT.md section 3: one file each.
//!
//! A rule is its settings type (the `[rules.NAME]` keys it owns, with their
//! defaults) plus an [`Rule::evaluate`]. Everything else comes from one
//! generic wrapper, [`Configured`]: the name, the common keys (`enabled`,
//! `severity`, `for`, `keep_firing_for`), `per_agent` for the rules that opt
//! in, parsing through serde and printing for `--print-config`.
//!
//! A `[rules.NAME]` table comes in as a serde tree ([`Value`]), not as
//! TOML, so that the core stays format-neutral: the binary reads TOML and
//! converts it, tests and other callers write the same tree in JSON.
//!
//! **Adding a rule is one new file (its `Settings` and `impl Rule`) and one
//! line in [`ALL`]** (plus its `pub mod` line). No other list names the
//! rules: the engine, `--print-config`, the config parser and the checks of
//! the tests take them from `ALL`; those checks then ask for what only a
//! person can write: the rule's row in README.md and its `[rules.NAME]`
//! section, with its defaults, in the example configs.
//!
//! A rule looks at one evaluated poll ([`Ctx`]) and says, per subject, that
//! its condition holds (with value, threshold, summary, labels) or that it
//! cannot tell; every subject it does not list is "condition false". When it
//! cannot tell anything at all (target down, section degraded) it returns
//! [`Outcome::Unknown`], and every alert of the rule sits out the gap.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::de::value::MapDeserializer;
use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use shared_schema::{Agent, Envelope, Labels, Section, Severity};

use crate::alerts::Finding;
use crate::delta::{AgentId, Deltas};
use crate::dur::Dur;
use crate::error::{RuleConfigError, SettingError};
use crate::view::PollOutcome;

pub mod agent_api_errors;
pub mod agent_gone;
pub mod agent_looping;
pub mod agent_no_pid;
pub mod agent_runtime;
pub mod breaker_open;
pub mod cost_budget;
pub mod error_rate;
pub mod invariant_violation;
pub mod queue_depth;
pub mod queue_stalled;
pub mod reconciler_backlog;
pub mod reconciler_slow;
pub mod run_cost;
pub mod schema_incompatible;
pub mod section_degraded;
pub mod spend;
pub mod stage_age;
pub mod stuck_agent;
pub mod target_down;
pub mod target_stale;

/// THE registry: every rule, in the order alerts and `--print-config` list them.
pub const ALL: &[Entry] = &[
    entry::<stuck_agent::Settings>(),
    entry::<agent_runtime::Settings>(),
    entry::<agent_gone::Settings>(),
    entry::<agent_no_pid::Settings>(),
    entry::<agent_looping::Settings>(),
    entry::<agent_api_errors::Settings>(),
    entry::<stage_age::Settings>(),
    entry::<queue_depth::Settings>(),
    entry::<queue_stalled::Settings>(),
    entry::<breaker_open::Settings>(),
    entry::<invariant_violation::Settings>(),
    entry::<reconciler_slow::Settings>(),
    entry::<reconciler_backlog::Settings>(),
    entry::<error_rate::Settings>(),
    entry::<cost_budget::Settings>(),
    entry::<run_cost::Settings>(),
    entry::<target_down::Settings>(),
    entry::<target_stale::Settings>(),
    entry::<schema_incompatible::Settings>(),
    entry::<section_degraded::Settings>(),
];

/// The names of every rule, in registry order.
pub fn names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|e| e.name)
}

/// One line of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The stable name (`stuck_agent`).
    pub name: &'static str,
    /// Whether the rule takes `per_agent`.
    pub per_agent: bool,
    /// Builds the rule from its `[rules.NAME]` table (absent: all defaults).
    pub build: Builder,
}

/// Builds a rule from its `[rules.NAME]` table (as a serde tree).
pub type Builder = fn(Option<&Value>) -> Result<Box<dyn DynRule>, SettingError>;

/// The registry line of rule `R`.
pub const fn entry<R: Rule>() -> Entry {
    Entry {
        name: R::NAME,
        per_agent: R::PER_AGENT,
        build: build::<R>,
    }
}

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
    pub deltas: &'a Deltas<'a>,
    /// The target's running clock, seconds (for rate windows).
    pub clock_s: f64,
}

impl<'a> Ctx<'a> {
    /// The envelope when `section` of it can be trusted: read and not degraded.
    pub fn section(&self, section: Section) -> Option<&'a Envelope> {
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

/// Figures a rule knows of one agent, for the gauges and the status page.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AgentFigures {
    /// CPU fraction over the last delta: the engine sets it from
    /// [`crate::delta::AgentFact::cpu_fraction`], its one owner; rules leave it.
    pub cpu_fraction: Option<f64>,
    /// Seconds idle so far.
    pub idle_s: Option<f64>,
}

/// One rule of section 3: its settings type (serde, with defaults) and its
/// evaluation. Name, common keys and `per_agent` come from [`Configured`].
pub trait Rule:
    Default + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The stable name (`stuck_agent`).
    const NAME: &'static str;
    /// The default `severity`.
    const SEVERITY: Severity;
    /// The default `for`.
    const FOR: Dur = Dur::secs(0);
    /// Whether `per_agent` overrides apply (CONTRACT.md section 3).
    const PER_AGENT: bool = false;
    /// The clock of this rule's `ts`/`since`.
    const CLOCK: Clock = Clock::Emitter;
    /// Whether [`Rule::figures`] says anything (skips a pass over the agents).
    const FIGURES: bool = false;
    /// Whether this rule's alerts are about one agent's process, so that a
    /// `firing` or `repeat` line wants a diagnosis from `GET
    /// /agents/{job_id}` (the alert's `job_id` label names the job).
    const DIAGNOSE: bool = false;
    /// What the rule remembers of one target between polls (kept in the state file).
    type State: Default + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Checks values serde cannot (ranges); the message names the key.
    fn check(&self) -> Result<(), SettingError> {
        Ok(())
    }

    /// Evaluates one poll; `per` gives the settings for one agent's name.
    fn evaluate(&self, ctx: &Ctx<'_>, state: &mut Self::State, per: &PerAgent<Self>) -> Outcome;

    /// What this rule knows of one agent (for the outputs).
    fn figures(&self, state: &Self::State, id: &AgentId, out: &mut AgentFigures) {
        let _ = (state, id, out);
    }
}

/// The keys every rule has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// One agent name's overrides.
#[derive(Debug, Clone)]
struct Override<R> {
    /// The rule's settings with the overrides applied.
    settings: R,
    /// `for` for this agent, when overridden.
    for_: Option<Dur>,
    /// The override as written, for `--print-config`.
    written: Map<String, Value>,
}

/// The `per_agent` overrides of one rule.
#[derive(Debug, Clone)]
pub struct PerAgent<R> {
    by_name: BTreeMap<String, Override<R>>,
    /// The rule's own `for`: a rule that judges over its `for` window
    /// (`stuck_agent`) asks [`PerAgent::for_by_name`].
    base_for: Dur,
}

impl<R> Default for PerAgent<R> {
    fn default() -> Self {
        Self {
            by_name: BTreeMap::new(),
            base_for: Dur::secs(0),
        }
    }
}

impl<R> PerAgent<R> {
    /// The settings for `agent`: its name's overrides, else `base`.
    pub fn get<'a>(&'a self, base: &'a R, agent: &Agent) -> &'a R {
        self.get_by_name(base, agent.agent.as_deref())
    }

    /// The settings for agents named `name`: its overrides, else `base`.
    pub fn get_by_name<'a>(&'a self, base: &'a R, name: Option<&str>) -> &'a R {
        name.and_then(|n| self.by_name.get(n))
            .map_or(base, |o| &o.settings)
    }

    /// Every agent name's settings (to tell whether any override turns a rule on).
    pub fn all(&self) -> impl Iterator<Item = &R> {
        self.by_name.values().map(|o| &o.settings)
    }

    /// The `for` override of an agent name.
    fn for_of(&self, name: &str) -> Option<Dur> {
        self.by_name.get(name).and_then(|o| o.for_)
    }

    /// A finding about `agent`, nothing measured yet: its labels, its job
    /// and the `for` of its name's override. The rule resolves them here,
    /// once, as it makes the finding; the engine reads them from the
    /// finding and never looks for the agent in the labels.
    pub fn about(&self, agent: &Agent) -> Finding {
        self.about_job(agent.job_id, agent.agent.as_deref(), agent_labels(agent))
    }

    /// [`PerAgent::about`] for a run known by its job and agent name.
    pub fn about_job(&self, job_id: i64, name: Option<&str>, labels: Labels) -> Finding {
        Finding {
            labels,
            job_id: Some(job_id),
            for_: name.and_then(|n| self.for_of(n)),
            ..Finding::default()
        }
    }

    /// The `for` in force for agents named `name`: its override, else the rule's.
    pub fn for_by_name(&self, name: Option<&str>) -> Dur {
        name.and_then(|n| self.for_of(n)).unwrap_or(self.base_for)
    }
}

/// A rule with its configuration: the one generic wrapper.
#[derive(Debug, Clone)]
pub struct Configured<R: Rule> {
    common: Common,
    settings: R,
    per_agent: PerAgent<R>,
}

/// A configured rule, whatever its settings type (what the engine holds).
pub trait DynRule: Send + Sync + Debug {
    /// The stable name.
    fn name(&self) -> &'static str;
    /// `enabled`, `severity`, `for`, `keep_firing_for`.
    fn common(&self) -> &Common;
    /// The clock of this rule's `ts`/`since`.
    fn clock(&self) -> Clock;
    /// Whether its `firing`/`repeat` lines want a diagnosis ([`Rule::DIAGNOSE`]).
    fn diagnose(&self) -> bool;
    /// Evaluates one poll against this target's state of the rule.
    fn evaluate(&self, ctx: &Ctx<'_>, state: &mut RuleStates) -> Outcome;
    /// What this rule knows of each agent (`ids[i]` fills `out[i]`): one
    /// call per rule and poll, not one per agent.
    fn figures(&self, state: &RuleStates, ids: &[AgentId], out: &mut [AgentFigures]);
    /// Every key with its effective value, for `--print-config`.
    fn to_value(&self) -> Map<String, Value>;
}

impl<R: Rule> DynRule for Configured<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn clock(&self) -> Clock {
        R::CLOCK
    }

    fn diagnose(&self) -> bool {
        R::DIAGNOSE
    }

    fn evaluate(&self, ctx: &Ctx<'_>, states: &mut RuleStates) -> Outcome {
        if std::mem::size_of::<R::State>() == 0 {
            // A rule with no state (`()`, 14 of the 20) keeps no entry
            // per target: 32 bytes of each target's list apiece.
            let mut nothing = R::State::default();
            return self.settings.evaluate(ctx, &mut nothing, &self.per_agent);
        }
        let state = states.get_mut::<R::State>(R::NAME);
        self.settings.evaluate(ctx, state, &self.per_agent)
    }

    fn figures(&self, states: &RuleStates, ids: &[AgentId], out: &mut [AgentFigures]) {
        if !R::FIGURES {
            return;
        }
        if let Some(state) = states.get::<R::State>(R::NAME) {
            for (id, o) in ids.iter().zip(out.iter_mut()) {
                self.settings.figures(state, id, o);
            }
        }
    }

    fn to_value(&self) -> Map<String, Value> {
        let mut out = object(&self.common);
        out.extend(object(&self.settings));
        if R::PER_AGENT {
            let per: Map<String, Value> = self
                .per_agent
                .by_name
                .iter()
                .map(|(k, o)| (k.clone(), Value::Object(o.written.clone())))
                .collect();
            out.insert("per_agent".into(), Value::Object(per));
        }
        out
    }
}

fn object<T: Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The keys every rule has, as written in its table (absent: the rule's default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonKeys {
    #[serde(default, deserialize_with = "written")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "severity")]
    severity: Option<Severity>,
    #[serde(default, rename = "for", deserialize_with = "written")]
    for_: Option<Dur>,
    #[serde(default, deserialize_with = "written")]
    keep_firing_for: Option<Dur>,
}

impl CommonKeys {
    /// The keys as written over the rule's defaults.
    fn over(self, defaults: Common) -> Common {
        Common {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            severity: self.severity.unwrap_or(defaults.severity),
            for_: self.for_.unwrap_or(defaults.for_),
            keep_firing_for: self.keep_firing_for.unwrap_or(defaults.keep_firing_for),
        }
    }
}

/// The keys of one `per_agent.NAME` table that are not the rule's own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentKeys {
    #[serde(default, rename = "for", deserialize_with = "written")]
    for_: Option<Dur>,
}

/// A key that is written has a value: `null` is not "absent" (a serde tree
/// may hold one), it is a wrong value.
fn written<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// [`written`] for `severity`, in the config's words rather than serde's.
fn severity<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Severity>, D::Error> {
    Severity::deserialize(d)
        .map(Some)
        .map_err(|_| de::Error::custom("expected \"info\", \"warning\" or \"critical\""))
}

/// The keys `T`'s derived `Deserialize` takes (serde hands them to
/// `deserialize_struct`), in the order its fields are declared, which is
/// the order their errors are reported: the struct is the one list of its
/// keys.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that only notes the fields it is asked for.
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only its fields were wanted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // It always fails: the fields are what it leaves behind.
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// Splits `table` once: the entries of `T`'s keys ([`field_names`], in
/// that order) deserialize into `T`, an error naming its key under
/// `prefix`; the rest is returned.
fn split<T: DeserializeOwned>(
    mut table: Map<String, Value>,
    prefix: &str,
) -> Result<(T, Map<String, Value>), SettingError> {
    let taken: Vec<(String, Value)> = field_names::<T>()
        .iter()
        .filter_map(|&k| table.remove(k).map(|v| (k.to_owned(), v)))
        .collect();
    let typed = serde_path_to_error::deserialize(MapDeserializer::new(taken.into_iter())).map_err(
        |e: serde_path_to_error::Error<serde_json::Error>| {
            SettingError::key(format!("{prefix}{}", e.path()), e.into_inner().to_string())
        },
    )?;
    Ok((typed, table))
}

/// Builds rule `R` from its `[rules.NAME]` table: the common keys over the
/// rule's defaults, `per_agent` where the rule takes it, the rest into `R`
/// (which rejects unknown keys). Errors name the key.
fn build<R: Rule>(table: Option<&Value>) -> Result<Box<dyn DynRule>, SettingError> {
    let table = match table {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(SettingError::NotATable),
    };
    let (keys, mut rest) = split::<CommonKeys>(table, "")?;
    let common = keys.over(Common::defaults(R::SEVERITY, R::FOR));
    let per_agent_table = if R::PER_AGENT {
        rest.remove("per_agent")
    } else {
        None
    };
    let settings: R = own(Value::Object(rest.clone()))?;
    settings.check()?;

    let mut per_agent = PerAgent {
        base_for: common.for_,
        ..PerAgent::default()
    };
    match per_agent_table {
        None => {}
        Some(Value::Object(names)) => {
            for (name, v) in names {
                let Value::Object(mut written) = v else {
                    return Err(SettingError::PerAgent {
                        agent: name,
                        problem: Box::new(SettingError::NotATable),
                    });
                };
                let (AgentKeys { for_ }, over) =
                    split::<AgentKeys>(written.clone(), &format!("per_agent.{name}."))?;
                let mut merged = rest.clone();
                merged.extend(over);
                let of_agent = |problem| SettingError::PerAgent {
                    agent: name.clone(),
                    problem: Box::new(problem),
                };
                let settings: R = own(Value::Object(merged)).map_err(of_agent)?;
                settings.check().map_err(of_agent)?;
                written.retain(|_, v| !v.is_null());
                per_agent.by_name.insert(
                    name,
                    Override {
                        settings,
                        for_,
                        written,
                    },
                );
            }
        }
        Some(_) => return Err(SettingError::PerAgentNotATable),
    }
    Ok(Box::new(Configured {
        common,
        settings,
        per_agent,
    }))
}

fn own<R: DeserializeOwned>(v: Value) -> Result<R, SettingError> {
    serde_json::from_value(v).map_err(|e| {
        // serde says "unknown field `x`"; the config calls them keys.
        SettingError::Settings(e.to_string().replace("unknown field", "unknown key"))
    })
}

/// Each rule's state of one target, by rule name. Kept typed while the
/// watchdog runs; as JSON in the state file (restored lazily, on the first
/// evaluation after a restart, by the rule that owns it).
#[derive(Debug, Default)]
pub struct RuleStates {
    /// In the order the rules first ran; a list sized to the rules, not a
    /// map (a target's two B-tree nodes were a kilobyte).
    live: Vec<(&'static str, Box<dyn AnyState>)>,
    saved: BTreeMap<String, Value>,
}

/// A rule's state, type-erased.
trait AnyState: Any + Debug + Send + Sync {
    fn to_json(&self) -> Value;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Debug + Send + Sync + Serialize> AnyState for T {
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl RuleStates {
    fn get_mut<S>(&mut self, name: &'static str) -> &mut S
    where
        S: Default + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let fresh = |saved: &mut BTreeMap<String, Value>| -> Box<dyn AnyState> {
            let s: S = saved
                .remove(name)
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            Box::new(s)
        };
        let at = match self.live.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                self.live.reserve_exact(1);
                self.live.push((name, fresh(&mut self.saved)));
                self.live.len() - 1
            }
        };
        let slot = &mut self.live[at].1;
        if !slot.as_any().is::<S>() {
            *slot = Box::new(S::default());
        }
        match slot.as_any_mut().downcast_mut::<S>() {
            Some(s) => s,
            None => unreachable!("the slot was just set to this type"),
        }
    }

    fn get<S: 'static>(&self, name: &str) -> Option<&S> {
        let (_, state) = self.live.iter().find(|(n, _)| *n == name)?;
        state.as_any().downcast_ref::<S>()
    }
}

impl Serialize for RuleStates {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut all: BTreeMap<&str, Value> = self
            .saved
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        for (k, v) in &self.live {
            all.insert(*k, v.to_json());
        }
        all.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RuleStates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut saved = BTreeMap::<String, Value>::deserialize(d)?;
        // Earlier files wrote `null` for each rule with no state; a `null`
        // restores as a fresh state anyway, so it is not kept.
        saved.retain(|_, v| !v.is_null());
        Ok(Self {
            live: Vec::new(),
            saved,
        })
    }
}

/// The subject key and labels of one agent: identity only, never values.
pub fn agent_subject(a: &Agent) -> String {
    use std::fmt::Write;
    // Written into one buffer: this runs for every agent with a finding on
    // every poll, and the two temporary strings per call showed in profiles.
    fn opt(out: &mut String, v: Option<i64>) {
        match v {
            Some(v) => {
                let _ = write!(out, "{v}");
            }
            None => out.push_str("none"),
        }
    }
    let mut out = String::with_capacity(40);
    let _ = write!(out, "job={}|run=", a.job_id);
    opt(&mut out, a.run_id);
    out.push_str("|pid=");
    opt(&mut out, a.pid);
    out
}

/// The labels of one agent.
pub fn agent_labels(a: &Agent) -> Labels {
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
    l.into()
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
pub fn labels<const N: usize>(pairs: [(&str, String); N]) -> Labels {
    pairs.into_iter().collect()
}

/// A finding without labels.
pub fn finding(summary: String, value: Option<f64>, threshold: Option<f64>) -> Finding {
    Finding {
        summary,
        value,
        threshold,
        ..Finding::default()
    }
}

/// The built rule set of one config.
#[derive(Debug)]
pub struct RuleSet {
    /// Every rule, enabled or not, in [`ALL`] order.
    pub rules: Vec<Box<dyn DynRule>>,
}

impl RuleSet {
    /// Builds every rule from its `[rules.NAME]` table (as a serde tree: the
    /// binary reads TOML, the core does not care); an unknown rule name is an error.
    pub fn build(tables: &BTreeMap<String, Value>) -> Result<Self, RuleConfigError> {
        for name in tables.keys() {
            if !names().any(|n| n == name) {
                return Err(RuleConfigError::UnknownRule {
                    name: name.clone(),
                    known: names().collect(),
                });
            }
        }
        let mut rules = Vec::with_capacity(ALL.len());
        for e in ALL {
            let rule = (e.build)(tables.get(e.name)).map_err(|problem| RuleConfigError::Rule {
                rule: e.name,
                problem,
            })?;
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Every rule at its defaults.
    pub fn defaults() -> Self {
        // The defaults are valid by construction; an empty table cannot fail.
        Self::build(&BTreeMap::new()).unwrap_or(Self { rules: Vec::new() })
    }

    /// The rule named `name`.
    pub fn get(&self, name: &str) -> Option<&dyn DynRule> {
        self.rules
            .iter()
            .find(|r| r.name() == name)
            .map(|r| r.as_ref())
    }

    /// `[rules.*]` with every effective value.
    pub fn to_value(&self) -> Map<String, Value> {
        self.rules
            .iter()
            .map(|r| (r.name().to_owned(), Value::Object(r.to_value())))
            .collect()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod test_kit;
