//! `error_rate`: a subsystem's error count grows faster than `max_per_min`
//! over `window`. Counts are cumulative in the envelope; the rate comes from
//! the rule's own window per subsystem, and a count that went down (table truncated)
//! restarts it instead of reading as a negative rate.

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::{labels, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::delta::CounterWindows;
use crate::dur::Dur;
use crate::error::SettingError;

#[cfg(test)]
mod tests;

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

impl Rule for Settings {
    const NAME: &'static str = "error_rate";
    const SEVERITY: Severity = Severity::Warning;
    /// A window of counts per subsystem.
    type State = CounterWindows;

    fn check(&self) -> Result<(), SettingError> {
        if self.window.0.is_zero() {
            return Err(SettingError::key("window", "must be longer than 0s"));
        }
        Ok(())
    }

    fn evaluate(&self, ctx: &Ctx<'_>, windows: &mut Self::State, _: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Errors) else {
            return Outcome::Unknown;
        };
        let Some(errors) = &env.errors else {
            return Outcome::clear();
        };
        let window = self.window.as_secs_f64();
        let mut out = Vec::new();
        let mut seen: Vec<&String> = Vec::with_capacity(errors.by_subsystem.len());
        for s in &errors.by_subsystem {
            let Some(total) = s.total else { continue };
            if seen.contains(&&s.subsystem) {
                continue; // a duplicate row: the first one speaks for it
            }
            seen.push(&s.subsystem);
            let growth =
                windows
                    .get_or_insert(&s.subsystem)
                    .push(ctx.clock_s, total as f64, window);
            let subject = format!("subsystem={}", s.subsystem);
            match growth.per_second_over(window) {
                None => out.push((subject, Verdict::Unknown)),
                Some(per_s) if per_s * 60.0 > self.max_per_min => out.push((
                    subject,
                    Verdict::Firing(Finding {
                        labels: labels([("subsystem", s.subsystem.clone())]),
                        summary: format!(
                            "subsystem {} on {} logged {:.1} errors/min over {} (max {})",
                            s.subsystem,
                            ctx.target,
                            per_s * 60.0,
                            self.window,
                            self.max_per_min
                        ),
                        value: Some((per_s * 60.0 * 1000.0).round() / 1000.0),
                        threshold: Some(self.max_per_min),
                        already_held_s: None,
                        ..Finding::default()
                    }),
                )),
                Some(_) => {}
            }
        }
        windows.retain(|k| seen.iter().any(|s| s.as_str() == k));
        Outcome::Subjects(out)
    }
}
