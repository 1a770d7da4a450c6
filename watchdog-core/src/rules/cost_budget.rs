//! `cost_budget`: total spend above `max_usd`, or spend growing faster than
//! `max_usd_per_hour` over `window`. Off unless one of the two is set.
//!
//! The total is `cost.aggregate.cost_usd` (the orchestrator's database)
//! plus, for each running run whose database cost is still null (the
//! aggregate counts it as 0), what the agent itself reported over OTLP
//! (page 3, [`super::spend`]); the summary says how much of it came from
//! telemetry.

use serde::{Deserialize, Serialize};
use shared_schema::{Section, Severity};

use super::{labels, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;
use crate::delta::CounterWindow;
use crate::dur::Dur;
use crate::error::SettingError;

#[cfg(test)]
mod tests;

/// `[rules.cost_budget]`'s own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Most acceptable total spend (`cost.aggregate.cost_usd`); unset: no limit.
    pub max_usd: Option<f64>,
    /// Most acceptable burn rate; unset: no limit.
    pub max_usd_per_hour: Option<f64>,
    /// The window the burn rate is taken over (added key; default 15m).
    pub window: Dur,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_usd: None,
            max_usd_per_hour: None,
            window: Dur::secs(900),
        }
    }
}

impl Rule for Settings {
    const NAME: &'static str = "cost_budget";
    const SEVERITY: Severity = Severity::Warning;
    /// The aggregate cost over the window.
    type State = CounterWindow;

    fn check(&self) -> Result<(), SettingError> {
        if self.window.0.is_zero() {
            return Err(SettingError::key("window", "must be longer than 0s"));
        }
        Ok(())
    }

    fn evaluate(&self, ctx: &Ctx<'_>, spent: &mut Self::State, _: &PerAgent<Self>) -> Outcome {
        let Settings {
            max_usd,
            max_usd_per_hour,
            window,
        } = self;
        if max_usd.is_none() && max_usd_per_hour.is_none() {
            return Outcome::clear();
        }
        let Some(env) = ctx.section(Section::Cost) else {
            return Outcome::Unknown;
        };
        let Some(db) = env
            .cost
            .as_ref()
            .and_then(|c| c.aggregate.as_ref())
            .and_then(|a| a.cost_usd)
        else {
            return Outcome::Unknown;
        };
        let (live, runs) = super::spend::telemetry_not_in_db(env);
        let total = db + live;
        let source = match runs {
            0 => String::new(),
            1 => format!("; ${live:.2} of it from the telemetry of 1 running run"),
            n => format!("; ${live:.2} of it from the telemetry of {n} running runs"),
        };
        let growth = spent.push(ctx.clock_s, total, window.as_secs_f64());
        let mut out = Vec::new();
        if let Some(max) = *max_usd {
            if total > max {
                out.push((
                    "budget=total".to_owned(),
                    Verdict::Firing(Finding {
                        labels: labels([("budget", "total".to_owned())]),
                        summary: format!(
                            "{} has spent ${total:.2} (budget ${max:.2}{source})",
                            ctx.target
                        ),
                        value: Some(total),
                        threshold: Some(max),
                        already_held_s: None,
                        ..Finding::default()
                    }),
                ));
            }
        }
        if let Some(max) = *max_usd_per_hour {
            let per_h = growth
                .per_second_over(window.as_secs_f64())
                .map(|per_s| per_s * 3600.0);
            match per_h {
                None => out.push(("budget=per_hour".to_owned(), Verdict::Unknown)),
                Some(rate) if rate > max => out.push((
                    "budget=per_hour".to_owned(),
                    Verdict::Firing(Finding {
                        labels: labels([("budget", "per_hour".to_owned())]),
                        summary: format!(
                            "{} burns ${rate:.2}/h over {window} (budget ${max:.2}/h{source})",
                            ctx.target
                        ),
                        value: Some((rate * 1000.0).round() / 1000.0),
                        threshold: Some(max),
                        already_held_s: None,
                        ..Finding::default()
                    }),
                )),
                Some(_) => {}
            }
        }
        Outcome::Subjects(out)
    }
}
