//! A sequence of arbitrary bodies through the watchdog's engine (tolerant
//! read, deltas, every default rule, alert state), as a poll loop would feed
//! them.
//!
//! Input: chunks separated by the byte 0xFF (never in UTF-8 JSON); the first
//! byte of a chunk is the seconds since the previous poll on the watchdog's
//! clock, the rest is the body. Checked after every observation:
//! - no panic;
//! - a CPU fraction, when there is one, is finite and never negative; an
//!   idle time is never negative;
//! - the alert state machine is consistent: a key fires at most once until
//!   it resolves, and never resolves or repeats without having fired;
//! - the state (`state_file` body) saves and restores.
#![no_main]

use std::collections::BTreeSet;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shared_schema::{AlertEvent, Timestamp};
use watchdog::engine::{Engine, Observation};
use watchdog::rules::RuleSet;

fuzz_target!(|data: &[u8]| {
    let Some(mut now) = Timestamp::from_unix_ms(1_795_345_200_000) else {
        return;
    };
    // Two engines: defaults, and `for` treated as met (`watchdog check`), so
    // that short inputs reach firing too.
    let mut engines = [
        Engine::new(RuleSet::defaults(), Duration::from_secs(3600)),
        Engine::new(RuleSet::defaults(), Duration::from_secs(3600)).with_for_met(),
    ];
    let mut firing: [BTreeSet<String>; 2] = Default::default();
    for chunk in data.split(|&b| b == 0xFF).take(16) {
        let (step, body) = match chunk.split_first() {
            Some((s, rest)) => (*s, rest),
            None => (15, chunk),
        };
        now = now.plus_seconds(f64::from(step));
        let obs = if body.is_empty() {
            Observation::failed(now, "connection refused")
        } else {
            Observation::from_body(now, body)
        };
        for (engine, firing) in engines.iter_mut().zip(firing.iter_mut()) {
            let eval = engine.observe("orch", &obs);
            for a in &eval.agents {
                if let Some(f) = a.cpu_fraction {
                    assert!(f.is_finite() && f >= 0.0, "cpu fraction {f} for {a:?}");
                }
                if let Some(idle) = a.idle_s {
                    assert!(idle >= 0.0, "idle {idle} for {a:?}");
                }
            }
            for line in eval.lines() {
                match line.event {
                    AlertEvent::Firing => assert!(
                        firing.insert(line.key.clone()),
                        "{} fired twice without resolving",
                        line.key
                    ),
                    AlertEvent::Resolved => assert!(
                        firing.remove(&line.key),
                        "{} resolved without firing",
                        line.key
                    ),
                    AlertEvent::Repeat => assert!(
                        firing.contains(&line.key),
                        "{} repeated without firing",
                        line.key
                    ),
                    _ => {}
                }
                let _ = line.to_json_line();
            }
        }
    }
    for engine in &engines {
        let saved = engine.save();
        let mut fresh = Engine::new(RuleSet::defaults(), Duration::from_secs(3600));
        if let Err(e) = fresh.restore(&saved) {
            panic!(
                "state does not restore: {e}\n{}",
                String::from_utf8_lossy(&saved)
            );
        }
    }
});
