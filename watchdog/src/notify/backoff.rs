//! Capped exponential backoff with full jitter, for retrying a sink.
//!
//! Full jitter (a uniform wait in `[0, min(cap, base * 2^attempt)]`) keeps
//! many watchdogs that lost the same receiver from retrying in lockstep.
//! The randomness is passed in, so the bounds are unit-tested exactly
//! (tokio-console's backoff once used `max` where `min` was meant).

use std::time::Duration;

/// Retry waits: `base` doubles per attempt up to `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry.
    pub base: Duration,
    /// No wait is ever longer.
    pub cap: Duration,
}

impl Backoff {
    /// The longest wait before retry number `attempt` (0 for the first retry):
    /// `min(cap, base * 2^attempt)`, without overflow.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt);
        factor
            .and_then(|f| self.base.checked_mul(f))
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The wait for `attempt` given `unit`, a uniform draw from `[0, 1]`.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        self.ceiling(attempt).mul_f64(unit)
    }

    /// The wait for `attempt`, with fresh randomness.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
    };

    #[test]
    fn the_ceiling_doubles_until_the_cap() {
        let ceilings: Vec<u128> = (0..8).map(|a| B.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(B.ceiling(u32::MAX), B.cap, "no overflow at huge attempts");
    }

    #[test]
    fn the_jitter_spans_zero_to_the_ceiling() {
        assert_eq!(B.delay_with(3, 0.0), Duration::ZERO);
        assert_eq!(B.delay_with(3, 1.0), Duration::from_millis(800));
        assert_eq!(B.delay_with(3, 0.5), Duration::from_millis(400));
        assert_eq!(B.delay_with(3, 7.0), Duration::from_millis(800), "clamped");
        assert_eq!(B.delay_with(3, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn a_base_above_the_cap_is_capped() {
        let b = Backoff {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(0), Duration::from_secs(1));
    }

    proptest! {
        #[test]
        fn never_exceeds_the_cap_and_never_shrinks(base_ms in 0u64..10_000, cap_ms in 0u64..100_000, attempt in 0u32..100, unit in any::<f64>()) {
            let b = Backoff { base: Duration::from_millis(base_ms), cap: Duration::from_millis(cap_ms) };
            prop_assert!(b.delay_with(attempt, unit) <= b.cap);
            prop_assert!(b.delay_with(attempt, unit) <= b.ceiling(attempt));
            prop_assert!(b.ceiling(attempt) <= b.ceiling(attempt + 1));
            prop_assert!(b.delay(attempt) <= b.ceiling(attempt));
        }
    }
}
