//! `section_degraded`: a section of the envelope is listed in `degraded`
//! (its collection failed, or the reader could not read it), one alert per
//! section. While it lasts, the rules that need the section sit it out.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{labels, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::dur::Dur;

#[cfg(test)]
mod tests;

/// `[rules.section_degraded]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

impl Rule for Settings {
    const NAME: &'static str = "section_degraded";
    const SEVERITY: Severity = Severity::Warning;
    const FOR: Dur = Dur::secs(60);
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.envelope else {
            return Outcome::Unknown;
        };
        let out = env
            .degraded
            .iter()
            .map(|section| {
                (
                    format!("section={section}"),
                    Verdict::Firing(Finding {
                        labels: labels([("section", section.clone())]),
                        summary: format!(
                            "section {section} of target {} is degraded (its collection failed)",
                            ctx.target
                        ),
                        value: None,
                        threshold: None,
                        already_held_s: None,
                        ..Finding::default()
                    }),
                )
            })
            .collect();
        Outcome::Subjects(out)
    }
}
