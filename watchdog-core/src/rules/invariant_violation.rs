//! `invariant_violation`: the reconciler's last tick reports broken
//! invariants; one alert per invariant, so two different breakages page
//! separately and one breakage found on many subjects pages once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared_schema::{InvariantViolation, Section, Severity};

use super::{labels, Ctx, Outcome, PerAgent, Rule, Verdict};
use crate::alerts::Finding;

#[cfg(test)]
mod tests;

/// `[rules.invariant_violation]` has no keys of its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {}

impl Rule for Settings {
    const NAME: &'static str = "invariant_violation";
    const SEVERITY: Severity = Severity::Critical;
    type State = ();

    fn evaluate(&self, ctx: &Ctx<'_>, _: &mut (), _: &PerAgent<Self>) -> Outcome {
        let Some(env) = ctx.section(Section::Reconciler) else {
            return Outcome::Unknown;
        };
        // No reconciler table: nothing reports violations, so none holds.
        let Some(rec) = &env.reconciler else {
            return Outcome::clear();
        };
        let mut by_invariant: BTreeMap<String, Vec<&InvariantViolation>> = BTreeMap::new();
        for v in &rec.invariant_violations {
            by_invariant
                .entry(v.invariant.to_string())
                .or_default()
                .push(v);
        }
        let out = by_invariant
            .into_iter()
            .map(|(id, vs)| {
                let first = vs[0];
                let about = first
                    .subject
                    .as_deref()
                    .map_or_else(String::new, |s| format!(" ({s})"));
                let more = if vs.len() > 1 {
                    format!(" and {} more", vs.len() - 1)
                } else {
                    String::new()
                };
                let summary = format!(
                    "invariant {id} violated on {}: {}{about}{more}",
                    ctx.target, first.message
                );
                (
                    format!("invariant={id}"),
                    Verdict::Firing(Finding {
                        labels: labels([("invariant", id)]),
                        summary,
                        value: Some(vs.len() as f64),
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
