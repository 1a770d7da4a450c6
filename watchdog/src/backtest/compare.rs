//! The comparison of two lists of alerts (config A's and B's), and the
//! figures of one: pure functions over [`Fired`] lists.
//!
//! Alerts are matched by `key`; a key that fired several times is matched
//! alert by alert in time order, two alerts being the same when their
//! spans (`since` to the end) overlap: one long alert of A against two
//! short ones of B is one shared alert and one that only B fires.

use std::collections::BTreeMap;

use super::episodes::Fired;

/// How B differs from A on one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Only B fires it.
    Added,
    /// Only A fires it.
    Removed,
    /// Both fire it; B earlier.
    Earlier,
    /// Both fire it; B later.
    Later,
    /// Both fire it at the same time.
    Same,
}

impl Change {
    /// The word in the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Earlier => "earlier",
            Self::Later => "later",
            Self::Same => "same",
        }
    }
}

/// One alert of the report: A's, B's or both (indices into their lists).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Index into A's alerts.
    pub a: Option<usize>,
    /// Index into B's alerts.
    pub b: Option<usize>,
    /// How B differs (`None` without B).
    pub change: Option<Change>,
    /// B's firing time minus A's, seconds (negative: B fires earlier).
    pub shift_s: Option<f64>,
}

fn overlap(x: &Fired, y: &Fired) -> bool {
    x.since <= y.end && y.since <= x.end
}

/// The alerts of A alone, each as a pair without B.
pub fn alone(a: &[Fired]) -> Vec<Pair> {
    (0..a.len())
        .map(|i| Pair {
            a: Some(i),
            b: None,
            change: None,
            shift_s: None,
        })
        .collect()
}

/// Matches A's alerts with B's; every alert of either is in exactly one
/// pair. Ordered by rule, then the earlier firing time of the pair, then key.
pub fn pair(a: &[Fired], b: &[Fired]) -> Vec<Pair> {
    let mut by_key: BTreeMap<&str, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, f) in a.iter().enumerate() {
        by_key.entry(&f.key).or_default().0.push(i);
    }
    for (i, f) in b.iter().enumerate() {
        by_key.entry(&f.key).or_default().1.push(i);
    }
    let mut out: Vec<((&str, shared_schema::Timestamp, &str), Pair)> = Vec::new();
    for (_, (mut xa, mut xb)) in by_key {
        xa.sort_by_key(|&i| a[i].firing);
        xb.sort_by_key(|&i| b[i].firing);
        let (mut i, mut j) = (0, 0);
        while i < xa.len() || j < xb.len() {
            let p = match (xa.get(i), xb.get(j)) {
                (Some(&ia), Some(&ib)) if overlap(&a[ia], &b[ib]) => {
                    i += 1;
                    j += 1;
                    let shift = b[ib].firing.seconds_since(&a[ia].firing);
                    let change = if shift < 0.0 {
                        Change::Earlier
                    } else if shift > 0.0 {
                        Change::Later
                    } else {
                        Change::Same
                    };
                    Pair {
                        a: Some(ia),
                        b: Some(ib),
                        change: Some(change),
                        shift_s: Some(shift),
                    }
                }
                // Not overlapping: the one that ends first stands alone.
                (Some(&ia), Some(&ib)) if a[ia].end < b[ib].since => {
                    i += 1;
                    removed(ia)
                }
                (_, Some(&ib)) => {
                    j += 1;
                    added(ib)
                }
                (Some(&ia), None) => {
                    i += 1;
                    removed(ia)
                }
                (None, None) => break,
            };
            // Sorted by the side that fires first.
            let f = match (p.a.map(|i| &a[i]), p.b.map(|i| &b[i])) {
                (Some(x), Some(y)) if y.firing < x.firing => y,
                (Some(x), _) => x,
                (None, Some(y)) => y,
                (None, None) => continue,
            };
            out.push(((f.rule.as_str(), f.firing, f.key.as_str()), p));
        }
    }
    out.sort_by_key(|(x, _)| *x);
    out.into_iter().map(|(_, p)| p).collect()
}

fn added(ib: usize) -> Pair {
    Pair {
        a: None,
        b: Some(ib),
        change: Some(Change::Added),
        shift_s: None,
    }
}

fn removed(ia: usize) -> Pair {
    Pair {
        a: Some(ia),
        b: None,
        change: Some(Change::Removed),
        shift_s: None,
    }
}

/// Minimum, median and maximum of some seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The smallest.
    pub min: f64,
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Self {
            min: values[0],
            median,
            max: values[n - 1],
        })
    }
}

/// The figures of one config's alerts (of one rule, or all).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    /// Alerts that fired.
    pub fired: usize,
    /// Of those, still firing when the records end.
    pub still_firing: usize,
    /// Of those, resolved within `for` of firing.
    pub flaps: usize,
    /// Time spent firing, all alerts together, seconds.
    pub firing_s: f64,
    /// How long one alert fired.
    pub duration: Option<Spread>,
    /// Detection delay (`since` to `firing`).
    pub delay: Option<Spread>,
}

/// The figures of `alerts`.
pub fn stats<'a>(alerts: impl IntoIterator<Item = &'a Fired>) -> Stats {
    let mut s = Stats::default();
    let (mut durations, mut delays) = (Vec::new(), Vec::new());
    for f in alerts {
        s.fired += 1;
        s.still_firing += usize::from(f.resolved.is_none());
        s.flaps += usize::from(f.flap);
        s.firing_s += f.duration_s();
        durations.push(f.duration_s());
        delays.push(f.delay_s());
    }
    s.duration = Spread::of(durations);
    s.delay = Spread::of(delays);
    s
}

/// How B differs from A over some pairs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diff {
    /// Alerts only B fires.
    pub added: usize,
    /// Alerts only A fires.
    pub removed: usize,
    /// Alerts both fire.
    pub both: usize,
    /// Of those, B fires earlier.
    pub earlier: usize,
    /// Of those, B fires later.
    pub later: usize,
    /// Of the added ones, flaps.
    pub added_flaps: usize,
    /// B's firing time minus A's over the shared alerts, seconds.
    pub shift: Option<Spread>,
}

impl Diff {
    /// Whether anything differs: added, removed, or fired at another time.
    pub fn any(&self) -> bool {
        self.added + self.removed + self.earlier + self.later > 0
    }
}

/// The differences over `pairs` (B's alerts in `b`, for the flaps).
pub fn diff<'a>(pairs: impl IntoIterator<Item = &'a Pair>, b: &[Fired]) -> Diff {
    let mut d = Diff::default();
    let mut shifts = Vec::new();
    for p in pairs {
        match p.change {
            Some(Change::Added) => {
                d.added += 1;
                d.added_flaps += usize::from(p.b.is_some_and(|i| b[i].flap));
            }
            Some(Change::Removed) => d.removed += 1,
            Some(c) => {
                d.both += 1;
                d.earlier += usize::from(c == Change::Earlier);
                d.later += usize::from(c == Change::Later);
                shifts.extend(p.shift_s);
            }
            None => {}
        }
    }
    d.shift = Spread::of(shifts);
    d
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::episodes::tests::{line, t};
    use super::super::episodes::Tracker;
    use super::*;
    use shared_schema::AlertEvent::{Firing, Resolved};

    /// (key, since, firing, resolved or None) to a list, `for` = 300 s.
    fn fired(spec: &[(&str, f64, f64, Option<f64>)]) -> Vec<Fired> {
        let mut tr = Tracker::default();
        for &(key, since, firing, resolved) in spec {
            tr.line(&line(Firing, key, firing, since));
            if let Some(r) = resolved {
                tr.line(&line(Resolved, key, r, since));
            }
        }
        tr.finish(|_| t(10_000.0), |_| 300.0)
    }

    const K7: &str = "stuck_agent|orch|job=7";
    const K8: &str = "stuck_agent|orch|job=8";
    const K9: &str = "stuck_agent|orch|job=9";

    /// The story: B (`for` 5m instead of 10m) fires the shared
    /// alert 5 minutes earlier, adds one that flaps, and A's alert on
    /// another key is removed.
    #[test]
    fn shared_alerts_are_matched_by_key_and_the_rest_added_or_removed() {
        let a = fired(&[(K7, 0.0, 600.0, Some(2000.0)), (K9, 100.0, 700.0, None)]);
        let b = fired(&[
            (K7, 0.0, 300.0, Some(2000.0)),
            (K8, 1000.0, 1300.0, Some(1500.0)),
        ]);
        let pairs = pair(&a, &b);
        let got: Vec<_> = pairs
            .iter()
            .map(|p| (p.change.unwrap(), p.shift_s))
            .collect();
        assert_eq!(
            got,
            [
                (Change::Earlier, Some(-300.0)),
                (Change::Removed, None),
                (Change::Added, None),
            ]
        );
        let d = diff(&pairs, &b);
        assert_eq!(
            (d.added, d.removed, d.both, d.earlier, d.later),
            (1, 1, 1, 1, 0)
        );
        assert_eq!(d.added_flaps, 1, "fired 200 s, for 300 s");
        assert_eq!(d.shift.unwrap().median, -300.0);
        assert!(d.any());
        let sa = stats(&a);
        assert_eq!((sa.fired, sa.still_firing, sa.flaps), (2, 1, 0));
        assert_eq!(sa.firing_s, 1400.0 + 9300.0);
        assert_eq!(
            sa.delay.unwrap(),
            Spread {
                min: 600.0,
                median: 600.0,
                max: 600.0
            }
        );
    }

    /// One long alert of A against two short ones of B on the same key:
    /// the first overlapping pair is shared, the second is added; alerts
    /// that do not overlap in time are never matched.
    #[test]
    fn repeated_firings_of_one_key_pair_in_time_order_by_overlap() {
        let a = fired(&[
            (K7, 0.0, 600.0, Some(5000.0)),
            (K7, 8000.0, 8600.0, Some(9000.0)),
        ]);
        let b = fired(&[
            (K7, 0.0, 300.0, Some(1000.0)),
            (K7, 1200.0, 1500.0, Some(5000.0)),
            (K7, 6000.0, 6300.0, Some(6500.0)),
        ]);
        let pairs = pair(&a, &b);
        let got: Vec<_> = pairs
            .iter()
            .map(|p| (p.a, p.b, p.change.unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (Some(0), Some(0), Change::Earlier),
                (None, Some(1), Change::Added),
                (None, Some(2), Change::Added),
                (Some(1), None, Change::Removed),
            ]
        );
        // Identical lists: nothing differs.
        let same = pair(&a, &a);
        assert!(same.iter().all(|p| p.change == Some(Change::Same)));
        assert!(!diff(&same, &a).any());
    }

    #[test]
    fn medians_of_even_and_odd_counts() {
        assert_eq!(Spread::of(vec![]), None);
        assert_eq!(Spread::of(vec![3.0, 1.0, 2.0]).unwrap().median, 2.0);
        let s = Spread::of(vec![4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 4.0));
    }
}
