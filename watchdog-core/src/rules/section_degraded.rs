//! `section_degraded`: a section of the envelope is listed in `degraded`
//! (its collection failed, or the reader could not read it), one alert per
//! section. While it lasts, the rules that need the section sit it out.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{labels, parse, to_table, Common, Ctx, Outcome, Rule, Verdict};
use crate::alerts::Finding;
use crate::dur::Dur;

/// The rule's name.
pub const NAME: &str = "section_degraded";

/// `[rules.section_degraded]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

/// The rule.
#[derive(Debug)]
pub struct SectionDegraded {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings) = parse(table, Common::defaults(Severity::Warning, Dur::secs(60)))?;
    Ok(Box::new(SectionDegraded { common, settings }))
}

impl Rule for SectionDegraded {
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
                    }),
                )
            })
            .collect();
        Outcome::Subjects(out)
    }
}
