//! `stuck_agent` on agents as they really run (page 3): a CLI blocked on a
//! model reply whose event loop keeps ticking, I/O below `io_floor`, and
//! telemetry that says it is (not) working. The page-1 and page-2 cases
//! (`sleep`, `cat` on a pipe, resets, gaps, restore) are in `tests/page1.rs`.

use shared_schema::{AlertEvent, Envelope};

use super::*;
use crate::rules::test_kit::{activity, agent, at, drive, engine, env, of_rule, t0};

/// The page-1 cases, on the calm envelope of `test_kit::calm_env`.
mod page1;

/// Claude Code 2.1 hung on its model call, polled every 2 s: 0 to 12 ticks
/// a poll (1% of a CPU on average, up to 6% in one poll) and about 90
/// bytes of `rchar + wchar` a poll.
const TICKS: [u64; 10] = [0, 12, 0, 0, 2, 0, 0, 0, 6, 0];

fn hung_cli(s: f64) -> Envelope {
    let i = (s / 2.0).round() as usize;
    let ticks: u64 = (0..i).map(|k| TICKS[k % TICKS.len()]).sum();
    let mut e = env(s);
    e.agents = vec![agent(600.0 + s, 5000 + ticks, 1_000_000 + 90 * i as u64)];
    e
}

#[test]
fn a_cli_ticking_on_a_hung_model_call_fires_after_for_over_the_window() {
    let mut en = engine("");
    let lines = drive(&mut en, 0.0, 700.0, 2.0, hung_cli);
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    let l = stuck[0];
    assert_eq!(l.event, AlertEvent::Firing);
    // Within `for` (10m) and two intervals of the hang (at 0 s).
    assert!((600.0..=604.0).contains(&at(l)), "fired at {}", at(l));
    assert_eq!(l.since, t0());
    assert!(
        l.summary.starts_with("agent dev (job 7, pid 1234) used 1.0% CPU and did only 2.6 KiB of I/O a minute for 10m"),
        "{}",
        l.summary
    );
}

#[test]
fn the_same_cli_judged_poll_by_poll_would_never_fire() {
    // for = 0s is the page-1 rule's view: each poll on its own. The 12-tick
    // polls are above the floor, so the idle span keeps restarting.
    let mut en = engine("[stuck_agent]\nfor = \"0s\"\n");
    let lines = drive(&mut en, 0.0, 60.0, 2.0, hung_cli);
    let events: Vec<AlertEvent> = of_rule(&lines, "stuck_agent")
        .iter()
        .map(|l| l.event)
        .collect();
    assert!(events.contains(&AlertEvent::Resolved), "{events:?}");
}

#[test]
fn io_counts_only_above_io_floor() {
    // 0 ticks; 480 KiB a minute is below the default floor (512 KiB) ...
    let io_per_min = |per_min: u64| {
        move |s: f64| {
            let mut e = env(s);
            e.agents = vec![agent(600.0 + s, 0, (s as u64 / 15) * per_min / 4)];
            e
        }
    };
    let mut en = engine("");
    let lines = drive(&mut en, 0.0, 615.0, 15.0, io_per_min(480 * 1024));
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{lines:?}");
    assert!(
        stuck[0]
            .summary
            .contains("did only 480.0 KiB of I/O a minute"),
        "{}",
        stuck[0].summary
    );
    // ... 600 KiB a minute is work.
    let mut en = engine("");
    let lines = drive(&mut en, 0.0, 1800.0, 15.0, io_per_min(600 * 1024));
    assert!(of_rule(&lines, "stuck_agent").is_empty(), "{lines:?}");
    // io_floor = 0 is the page-1 rule: any growth is work.
    let mut en = engine("[stuck_agent]\nper_agent = { dev = { io_floor = 0 } }\n");
    let lines = drive(&mut en, 0.0, 1800.0, 2.0, hung_cli);
    assert!(of_rule(&lines, "stuck_agent").is_empty(), "{lines:?}");
}

/// No CPU, no I/O, but the agent reports completed requests or tool calls.
#[test]
fn a_completed_request_or_tool_call_inside_the_window_is_not_stuck() {
    for (requests_every, tools_every) in [(Some(240.0), None), (None, Some(300.0))] {
        let mut en = engine("");
        let lines = drive(&mut en, 0.0, 3600.0, 15.0, |s| {
            let mut e = env(s);
            let mut a = agent(600.0 + s, 0, 0);
            let n = |every: Option<f64>| every.map_or(0, |e| (s / e) as u64);
            a.activity = Some(activity(n(requests_every), n(tools_every)));
            e.agents = vec![a];
            e
        });
        assert!(
            of_rule(&lines, "stuck_agent").is_empty(),
            "{requests_every:?} {tools_every:?}: {lines:?}"
        );
    }
}

#[test]
fn a_reply_reported_at_300s_keeps_the_agent_off_until_it_leaves_the_window() {
    let mut en = engine("");
    let lines = drive(&mut en, 0.0, 1200.0, 15.0, |s| {
        let mut e = env(s);
        let mut a = agent(600.0 + s, 0, 0);
        let mut act = activity(3, 2);
        act.last_api_at = Some(t0().plus_seconds(300.0));
        act.last_tool_at = Some(t0().plus_seconds(120.0));
        a.activity = Some(act);
        e.agents = vec![a];
        e
    });
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{lines:?}");
    assert!(
        (900.0..=915.0).contains(&at(stuck[0])),
        "fired at {}",
        at(stuck[0])
    );
    assert!(
        stuck[0]
            .summary
            .ends_with("; its last model reply or tool result was 10m 15s ago"),
        "{}",
        stuck[0].summary
    );
}

#[test]
fn an_agent_that_worked_and_then_hung_fires_about_for_after_it_stopped() {
    let mut en = engine("");
    let lines = drive(&mut en, 0.0, 1200.0, 15.0, |s| {
        let mut e = env(s);
        // 50% of a CPU until 300 s, then nothing.
        let ticks = (s.min(300.0) * 50.0) as u64;
        e.agents = vec![agent(600.0 + s, ticks, 0)];
        e
    });
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{lines:?}");
    // The busy 300 s must have left the window (but for the last 24 s, 2%
    // of 10m): between 876 and 900 plus an interval.
    let t = at(stuck[0]);
    assert!((870.0..=915.0).contains(&t), "fired at {t}");
    assert!(stuck[0].summary.contains("for 10m"), "{}", stuck[0].summary);
}

#[test]
fn a_short_burst_inside_a_long_idle_window_does_not_resolve() {
    let mut en = engine("");
    let idle = |s: f64| {
        let mut e = env(s);
        e.agents = vec![agent(600.0 + s, 100 + (s / 10.0) as u64, 0)];
        e
    };
    let lines = drive(&mut en, 0.0, 630.0, 15.0, idle);
    assert_eq!(of_rule(&lines, "stuck_agent").len(), 1);
    // 15 s at 20% of a CPU: 3 CPU-seconds, 0.5% of the window.
    let lines = drive(&mut en, 645.0, 645.0, 15.0, |s| {
        let mut e = idle(s);
        e.agents[0].cpu_ticks = Some(100 + (s / 10.0) as u64 + 300);
        e.agents[0].tree_cpu_ticks = e.agents[0].cpu_ticks;
        e
    });
    assert!(of_rule(&lines, "stuck_agent").is_empty(), "{lines:?}");
    // A minute at 50%: 30 CPU-seconds, 5% of the window: busy.
    let lines = drive(&mut en, 660.0, 720.0, 15.0, |s| {
        let mut e = idle(s);
        e.agents[0].cpu_ticks = Some(100 + (s / 10.0) as u64 + 300 + ((s - 645.0) * 50.0) as u64);
        e.agents[0].tree_cpu_ticks = e.agents[0].cpu_ticks;
        e
    });
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{lines:?}");
    assert_eq!(stuck[0].event, AlertEvent::Resolved);
}

#[test]
fn per_agent_for_sets_the_window() {
    let mut en = engine("[stuck_agent]\nper_agent = { dev = { for = \"2m\" } }\n");
    let lines = drive(&mut en, 0.0, 200.0, 2.0, hung_cli);
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{lines:?}");
    assert!(
        (120.0..=124.0).contains(&at(stuck[0])),
        "fired at {}",
        at(stuck[0])
    );
}

#[test]
fn the_window_survives_a_restart_and_an_old_state_file_still_restores() {
    let mut straight = engine("");
    let want = drive(&mut straight, 0.0, 700.0, 2.0, hung_cli);
    let want: Vec<f64> = of_rule(&want, "stuck_agent")
        .iter()
        .map(|l| at(l))
        .collect();

    let mut en = engine("");
    drive(&mut en, 0.0, 300.0, 2.0, hung_cli);
    let saved = en.save();
    let mut again = engine("");
    again.restore(&saved).unwrap();
    let lines = drive(&mut again, 302.0, 700.0, 2.0, hung_cli);
    let got: Vec<f64> = of_rule(&lines, "stuck_agent")
        .iter()
        .map(|l| at(l))
        .collect();
    assert_eq!(got, want);

    // A page-2 state file has no `window` or `counts` in the timers.
    let mut v: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("window");
                m.remove("counts");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    let old = serde_json::to_vec(&v).unwrap();
    assert!(!String::from_utf8_lossy(&old).contains("\"window\""));
    let mut older = engine("");
    older.restore(&old).unwrap();
    let ev = older.observe(
        crate::rules::test_kit::T,
        &crate::rules::test_kit::obs(hung_cli(302.0)),
    );
    assert_eq!(ev.agents[0].idle_s.map(f64::round), Some(302.0));
}

#[test]
fn the_window_keeps_at_most_max_samples_and_its_total() {
    let mut t = IdleTimer::default();
    for i in 0..1000 {
        t.push(Sample::new(2.0, 0.01 * (i % 3) as f32, Some(90.0)));
        t.trim(3600.0);
    }
    assert!(t.window.len() <= MAX_SAMPLES, "{}", t.window.len());
    assert!(
        t.window.capacity() <= MAX_SAMPLES,
        "{}",
        t.window.capacity()
    );
    assert!((t.span() - 2000.0).abs() < 1e-6, "{}", t.span());
    let io: f64 = t.window.iter().filter_map(Sample::io).map(f64::from).sum();
    assert!((io - 90_000.0).abs() < 1e-3, "{io}");
}

#[test]
fn io_floor_must_be_a_non_negative_number() {
    let s = Settings {
        io_floor: -1.0,
        ..Settings::default()
    };
    assert!(s.check().unwrap_err().to_string().contains("io_floor"));
}

#[test]
fn the_last_counted_reply_dates_the_hang_to_the_poll_even_with_merged_buckets() {
    // 2 s polls for 15 minutes: the window holds merged buckets of ~20 s,
    // yet the agent fires within `for` plus two intervals of its last reply.
    let mut en = engine("");
    let lines = drive(&mut en, 0.0, 900.0, 2.0, |s| {
        let mut e = hung_cli(s);
        // A model reply every 10 s until 100 s; no timestamps, counts only.
        e.agents[0].activity = Some(activity((s.min(100.0) / 10.0) as u64, 0));
        e
    });
    let stuck = of_rule(&lines, "stuck_agent");
    assert_eq!(stuck.len(), 1, "{lines:?}");
    let t = at(stuck[0]);
    assert!((700.0..=704.0).contains(&t), "fired at {t}");
}

proptest::proptest! {
    /// Any readings (counters up or down, activity coming and going, any
    /// step): no panic, idle time never negative, the window bounded.
    #[test]
    fn any_readings_keep_the_window_bounded_and_idle_time_non_negative(
        polls in proptest::collection::vec(
            (0u64..50, 0u64..100_000, proptest::option::of((0u64..5, 0u64..5)), -5i64..40),
            1..120,
        )
    ) {
        let mut en = engine("[stuck_agent]\nfor = \"1m\"\nmin_runtime = \"0s\"\n");
        let (mut s, mut ticks, mut io) = (0.0, 0u64, 0u64);
        for (dt, dio, act, step) in polls {
            s += step as f64;
            ticks += dt;
            io += dio;
            let mut e = env(s);
            let mut a = agent(600.0 + s, ticks, io);
            a.activity = act.map(|(r, t)| activity(r, t));
            e.agents = vec![a];
            let ev = en.observe(crate::rules::test_kit::T, &crate::rules::test_kit::obs(e));
            for x in &ev.agents {
                if let Some(i) = x.idle_s {
                    proptest::prop_assert!(i >= 0.0 && i.is_finite());
                }
            }
        }
        let saved: serde_json::Value = serde_json::from_slice(&en.save()).unwrap();
        let text = saved.to_string();
        proptest::prop_assert!(text.matches("dt_s").count() <= MAX_SAMPLES, "{}", text);
    }
}

#[test]
fn a_window_sample_is_12_bytes_and_saves_an_unknown_io_as_null() {
    // The memory bound in MAX_SAMPLES's doc: 10,000 agents x 16 x 12 bytes.
    assert_eq!(std::mem::size_of::<Sample>(), 12);
    let unknown = Sample::new(2.0, 0.5, None);
    let json = serde_json::to_value(unknown).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"dt_s": 2.0, "cpu_s": 0.5, "io": null})
    );
    let back: Sample = serde_json::from_value(json).unwrap();
    assert_eq!(back, unknown);
    assert_eq!(back.io(), None);
    let known = Sample::new(2.0, 0.5, Some(90.0));
    assert_eq!(serde_json::to_value(known).unwrap()["io"], 90.0);
    // Merged with an unknown, a known figure is unknown.
    assert_eq!(known.merge(unknown).io(), None);
    assert_eq!(known.merge(known).io(), Some(180.0));
}

/// The fraction the outputs show has one owner, the delta: the same with
/// the rule on, off, or judging the process alone (`use_tree = false`).
#[test]
fn the_outputs_fraction_is_the_deltas_whatever_the_rule_says() {
    use crate::rules::test_kit::{obs, T};
    let shown = |toml_text: &str| {
        let mut en = engine(toml_text);
        let mut last = None;
        for s in [0.0, 10.0, 20.0] {
            let mut e = env(s);
            // Own process 1 tick a second, the tree 5: 1% and 5% at 100 ticks/s.
            let mut a = agent(600.0 + s, s as u64, 1000);
            a.tree_cpu_ticks = Some(5 * s as u64);
            e.agents = vec![a];
            last = en.observe(T, &obs(e)).agents[0].cpu_fraction;
        }
        last
    };
    assert_eq!(shown(""), Some(0.05));
    assert_eq!(shown("[stuck_agent]\nenabled = false\n"), Some(0.05));
    assert_eq!(shown("[stuck_agent]\nuse_tree = false\n"), Some(0.05));
}
