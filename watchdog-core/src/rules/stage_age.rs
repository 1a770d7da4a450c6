//! `stage_age`: a task that has sat in one stage longer than `max` (or its
//! stage's override in `per_stage`, e.g. `review = "4h"`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{labels, parse, to_table, Common, Ctx, Outcome, Rule, Verdict};
use crate::alerts::Finding;
use crate::dur::{human_secs, Dur};

/// The rule's name.
pub const NAME: &str = "stage_age";

/// `[rules.stage_age]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The longest acceptable time in any stage.
    pub max: Dur,
    /// Per-stage overrides of `max`.
    pub per_stage: BTreeMap<String, Dur>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max: Dur::secs(3600),
            per_stage: BTreeMap::new(),
        }
    }
}

/// The rule.
#[derive(Debug)]
pub struct StageAge {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Warning, Dur::secs(0)))?;
    Ok(Box::new(StageAge { common, settings }))
}

impl Rule for StageAge {
    fn name(&self) -> &'static str {
        NAME
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn own_settings(&self) -> toml::Table {
        to_table(&self.settings)
    }

    fn evaluate(&self, ctx: &Ctx<'_>) -> Outcome {
        let Some(env) = ctx.section("stages") else {
            return Outcome::Unknown;
        };
        let mut out = Vec::new();
        for s in &env.stages {
            let task = s
                .task_id
                .map_or_else(|| "none".to_owned(), |t| t.to_string());
            let subject = format!("task={task}|stage={}", s.stage);
            let max = self
                .settings
                .per_stage
                .get(&s.stage)
                .copied()
                .unwrap_or(self.settings.max);
            match s.age_in_stage_s {
                None => out.push((subject, Verdict::Unknown)),
                Some(age) if age > max.as_secs_f64() => {
                    let mut l = labels([("task_id", task.clone()), ("stage", s.stage.clone())]);
                    if let Some(w) = &s.work_item {
                        l.insert("work_item".into(), w.clone());
                    }
                    if let Some(r) = &s.repo {
                        l.insert("repo".into(), r.clone());
                    }
                    let what = s
                        .work_item
                        .as_deref()
                        .map_or_else(|| format!("task {task}"), |w| format!("task {task} ({w})"));
                    out.push((
                        subject,
                        Verdict::Firing(Finding {
                            labels: l,
                            summary: format!(
                                "{what} has been in stage {} for {} (max {max})",
                                s.stage,
                                human_secs(age)
                            ),
                            value: Some(age),
                            threshold: Some(max.as_secs_f64()),
                            already_held_s: None,
                        }),
                    ));
                }
                Some(_) => {}
            }
        }
        Outcome::Subjects(out)
    }
}
