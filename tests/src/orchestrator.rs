//! A simulated orchestrator: keeps the state database changing the way a
//! real one does, one step per second. Tasks move through stages, jobs are
//! queued and finished, running agents accrue cost and tokens, the
//! reconciler ticks (with an invariant violation for a while), subsystems
//! log errors, and the worker's circuit breaker opens for a while.
//!
//! It never touches the `running` jobs of the real agent processes: those
//! are what the watchdog's stuck_agent rule looks at.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use crate::statedb;

/// When the scripted incidents happen, in ticks (seconds) from the start.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    /// The reconciler reports an invariant violation during `[at, at + len)`.
    pub violation: Option<(u64, u64)>,
    /// The breaker is open during `[at, at + len)`.
    pub breaker: Option<(u64, u64)>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            violation: Some((40, 15)),
            breaker: Some((70, 15)),
        }
    }
}

/// A running simulation; stopped (and joined) on drop.
#[derive(Debug)]
pub struct Orchestrator {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Orchestrator {
    /// Starts stepping `db` every second. `agent_runs` are the run ids of
    /// the real running agents, whose costs grow.
    pub fn start(db: PathBuf, agent_runs: Vec<i64>, script: Script) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let conn = match statedb::open(&db) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("orchestrator: cannot open {}: {e}", db.display());
                    return;
                }
            };
            let mut sim = Sim {
                conn,
                agent_runs,
                script,
                tick: 0,
                rng: std::cell::Cell::new(0x9e37_79b9_7f4a_7c15),
            };
            let start = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if let Err(e) = sim.step() {
                    eprintln!("orchestrator: step {} failed: {e}", sim.tick);
                }
                sim.tick += 1;
                // Sleep to the next whole second since start, in short
                // slices so a stop request is seen quickly.
                let next = start + Duration::from_secs(sim.tick);
                while Instant::now() < next && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Sim {
    conn: Connection,
    agent_runs: Vec<i64>,
    script: Script,
    tick: u64,
    rng: std::cell::Cell<u64>,
}

const STAGES: [&str; 4] = ["plan", "implement", "review", "done"];
const REPOS: [&str; 3] = ["app", "api", "infra"];

impl Sim {
    /// xorshift64: deterministic, good enough for a demo.
    fn rand(&self, n: u64) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x % n.max(1)
    }

    fn within(&self, window: Option<(u64, u64)>) -> bool {
        window.is_some_and(|(at, len)| self.tick >= at && self.tick < at + len)
    }

    fn step(&mut self) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let t = self.tick;

        // New work every 4 s: a task in `plan` and a queued job for it.
        if t % 4 == 0 {
            let repo = REPOS[self.rand(3) as usize];
            tx.execute(
                "INSERT INTO tasks (work_item_id, repo, stage, stage_entered_at) VALUES (?1, ?2, 'plan', datetime('now'))",
                params![format!("WI-{}", 100 + t), repo],
            )?;
            let task = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO jobs (task_id, agent, repo, status, attempts, created_at)
                 VALUES (?1, 'dev', ?2, 'queued', 0, datetime('now'))",
                params![task, repo],
            )?;
        }
        // Every 3 s the oldest task not done moves one stage on.
        if t % 3 == 1 {
            let row: Option<(i64, String)> = tx
                .query_row(
                    "SELECT id, stage FROM tasks WHERE stage IN ('plan','implement','review')
                     AND work_item_id NOT LIKE 'WI-agent-%' ORDER BY stage_entered_at, id LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok();
            if let Some((id, stage)) = row {
                let next = STAGES
                    .iter()
                    .position(|s| *s == stage)
                    .map_or("done", |i| STAGES[(i + 1).min(3)]);
                tx.execute(
                    "UPDATE tasks SET stage = ?2, stage_entered_at = datetime('now') WHERE id = ?1",
                    params![id, next],
                )?;
            }
        }
        // The worker drains the queue (not while the breaker is open):
        // a job is done, or fails and is retried.
        let breaker_open = self.within(self.script.breaker);
        if !breaker_open && t % 5 == 2 {
            let job: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT id, attempts FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok();
            if let Some((id, attempts)) = job {
                let fails = self.rand(4) == 0 && attempts < 2;
                if fails {
                    tx.execute(
                        "UPDATE jobs SET attempts = attempts + 1 WHERE id = ?1",
                        params![id],
                    )?;
                    tx.execute(
                        "INSERT INTO error_events (subsystem, message, created_at) VALUES ('worker', ?1, datetime('now'))",
                        params![format!("job {id} failed, retrying")],
                    )?;
                } else {
                    tx.execute(
                        "UPDATE jobs SET status = 'done', attempts = attempts + 1, started_at = datetime('now', '-30 seconds'),
                         finished_at = datetime('now') WHERE id = ?1",
                        params![id],
                    )?;
                    tx.execute(
                        "INSERT INTO agent_runs (job_id, agent, cost_usd, input_tokens, output_tokens,
                           cache_read_tokens, cache_creation_tokens, started_at, finished_at)
                         VALUES (?1, 'dev', ?2, 12000, 800, 30000, 1500, datetime('now', '-30 seconds'), datetime('now'))",
                        params![id, 0.05 + self.rand(10) as f64 / 100.0],
                    )?;
                }
            }
        }
        // Running agents accrue cost and tokens.
        for run in self.agent_runs.clone() {
            let input = 200 + self.rand(800) as i64;
            tx.execute(
                "UPDATE agent_runs SET cost_usd = cost_usd + ?2, input_tokens = input_tokens + ?3,
                   output_tokens = output_tokens + ?4, cache_read_tokens = cache_read_tokens + ?5
                 WHERE id = ?1",
                params![run, input as f64 * 3e-6, input, input / 10, input * 2],
            )?;
        }
        // A git error now and then.
        if self.rand(7) == 0 {
            tx.execute(
                "INSERT INTO error_events (subsystem, message, created_at) VALUES ('git', 'push rejected', datetime('now'))",
                [],
            )?;
        }
        // The breaker.
        let (state, failures, opened) = if breaker_open {
            ("open", "5", Some(()))
        } else {
            ("closed", "0", None)
        };
        tx.execute(
            "INSERT INTO worker_state (key, value) VALUES ('breaker_state', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![state],
        )?;
        tx.execute(
            "INSERT INTO worker_state (key, value) VALUES ('breaker_failures', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![failures],
        )?;
        if opened.is_some() {
            tx.execute(
                "INSERT INTO worker_state (key, value) VALUES ('breaker_opened_at', datetime('now'))
                 ON CONFLICT(key) DO NOTHING",
                [],
            )?;
        } else {
            tx.execute(
                "DELETE FROM worker_state WHERE key = 'breaker_opened_at'",
                [],
            )?;
        }
        // The reconciler ticks.
        let violations = if self.within(self.script.violation) {
            r#"[{"invariant":3,"message":"task 2 is in review but its job is still running","subject":"task:2"}]"#
        } else {
            "[]"
        };
        let actions = self.rand(4) as i64;
        tx.execute(
            "INSERT INTO reconciler_ticks (at, wall_clock_ms, events_drained, actions_emitted, actions_by_type,
               side_effects_attempted, side_effects_succeeded, side_effects_failed, pending_event_count,
               invariant_violations)
             VALUES (datetime('now'), ?1, ?2, ?3, ?4, ?3, ?3, 0, ?5, ?6)",
            params![
                20.0 + self.rand(80) as f64,
                self.rand(6) as i64,
                actions,
                format!(r#"{{"start_job":{actions}}}"#),
                self.rand(8) as i64,
                violations
            ],
        )?;
        tx.commit()
    }
}
