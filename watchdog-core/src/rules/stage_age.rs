//! `stage_age`: a task that has sat in one stage longer than `max` (or its
//! stage's override in `per_stage`, e.g. `review = "4h"`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared_schema::{Labels, Section, Severity};

use super::{Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::dur::{human_secs, Dur};

#[cfg(test)]
mod tests;

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

impl Rule for Settings {
    const NAME: &'static str = "stage_age";
    const SEVERITY: Severity = Severity::Warning;
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Stages) else {
            return Outcome::Unknown;
        };
        let mut out = Vec::new();
        for s in &env.stages {
            let task = s
                .task_id
                .map_or_else(|| "none".to_owned(), |t| t.to_string());
            let subject = format!("task={task}|stage={}", s.stage);
            let max = self.per_stage.get(&s.stage).copied().unwrap_or(self.max);
            match s.age_in_stage_s {
                None => out.push((subject, Verdict::Unknown)),
                Some(age) if age > max.as_secs_f64() => {
                    let l: Labels = [
                        Some(("task_id", task.clone())),
                        Some(("stage", s.stage.clone())),
                        s.work_item.clone().map(|w| ("work_item", w)),
                        s.repo.clone().map(|r| ("repo", r)),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
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
                            ..Finding::default()
                        }),
                    ));
                }
                Some(_) => {}
            }
        }
        Outcome::Subjects(out)
    }
}
