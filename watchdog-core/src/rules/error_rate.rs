//! `error_rate`: a subsystem's error count grows faster than `max_per_min`
//! over `window`. Counts are cumulative in the envelope; the rate comes from
//! the delta engine's window, and a count that went down (table truncated)
//! restarts it instead of reading as a negative rate.

use serde::{Deserialize, Serialize};
use shared_schema::Severity;

use super::{labels, parse, to_table, Common, Ctx, Outcome, Rule, Verdict};
use crate::alerts::Finding;
use crate::delta::DeltaConfig;
use crate::dur::Dur;

/// The rule's name.
pub const NAME: &str = "error_rate";

/// `[rules.error_rate]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Most acceptable error events per minute.
    pub max_per_min: f64,
    /// The window the rate is taken over.
    pub window: Dur,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_per_min: 10.0,
            window: Dur::secs(300),
        }
    }
}

/// The rule.
#[derive(Debug)]
pub struct ErrorRate {
    common: Common,
    settings: Settings,
}

/// Builds the rule from its table.
pub fn build(table: Option<&toml::Table>) -> Result<Box<dyn Rule>, String> {
    let (common, settings): (Common, Settings) =
        parse(table, Common::defaults(Severity::Warning, Dur::secs(0)))?;
    if settings.window.0.is_zero() {
        return Err("key `window`: must be longer than 0s".into());
    }
    Ok(Box::new(ErrorRate { common, settings }))
}

impl Rule for ErrorRate {
    fn name(&self) -> &'static str {
        NAME
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn own_settings(&self) -> toml::Table {
        to_table(&self.settings)
    }

    fn tune(&self, delta: &mut DeltaConfig) {
        delta.error_window_s = self.settings.window.as_secs_f64();
    }

    fn evaluate(&self, ctx: &Ctx<'_>) -> Outcome {
        let Some(env) = ctx.section("errors") else {
            return Outcome::Unknown;
        };
        if env.errors.is_none() {
            return Outcome::clear();
        }
        let window = self.settings.window.as_secs_f64();
        let mut out = Vec::new();
        for s in &ctx.deltas.errors {
            let subject = format!("subsystem={}", s.subsystem);
            match s.growth.per_second_over(window) {
                None => out.push((subject, Verdict::Unknown)),
                Some(per_s) if per_s * 60.0 > self.settings.max_per_min => out.push((
                    subject,
                    Verdict::Firing(Finding {
                        labels: labels([("subsystem", s.subsystem.clone())]),
                        summary: format!(
                            "subsystem {} on {} logged {:.1} errors/min over {} (max {})",
                            s.subsystem,
                            ctx.target,
                            per_s * 60.0,
                            self.settings.window,
                            self.settings.max_per_min
                        ),
                        value: Some((per_s * 60.0 * 1000.0).round() / 1000.0),
                        threshold: Some(self.settings.max_per_min),
                        already_held_s: None,
                    }),
                )),
                Some(_) => {}
            }
        }
        Outcome::Subjects(out)
    }
}
