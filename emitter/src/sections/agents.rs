//! Section `agents`: one entry per running job, with its process figures.
//!
//! The session gives the jobs; `/proc` is read here through the process
//! table kept across snapshots, each process once for all agents, and only
//! when at least one agent has a pid. [`read`] is the from-scratch query
//! the incremental source is tested against.

use std::path::Path;

use rusqlite::Connection;
use shared_schema::{Agent, Envelope, Timestamp};

use crate::net_wait::NetWatch;
use crate::procfs::ProcCache;
use crate::sql::{int, seconds_since, text};
use crate::{SectionResult, Session};

/// Fills `env.agents`, or leaves `[]` and marks it degraded.
pub(crate) fn collect(
    session: &mut dyn Session,
    now: &Timestamp,
    procs: &mut ProcCache,
    net: &mut NetWatch,
    env: &mut Envelope,
) {
    let mut agents = match session.agents(now) {
        Ok(agents) => agents,
        Err(err) => return super::degrade(env, "agents", &err),
    };
    let trees = fill_from(&mut agents, procs);
    fill_net_wait(&mut agents, &trees, net);
    env.agents = agents;
}

/// Sets every agent's `/proc` fields (and `net_wait`) from fresh tables
/// over `proc_root`.
pub fn fill_proc(agents: &mut [Agent], proc_root: &Path) {
    let trees = fill_from(agents, &mut ProcCache::new(proc_root));
    fill_net_wait(agents, &trees, &mut NetWatch::new(proc_root));
}

/// Sets every agent's `net_wait` from one dump of the host's TCP sockets;
/// `trees` are the agents' process trees as [`fill_from`] gives them.
pub fn fill_net_wait(agents: &mut [Agent], trees: &[Vec<i64>], net: &mut NetWatch) {
    for (agent, wait) in agents.iter_mut().zip(net.waits(trees)) {
        agent.net_wait = wait;
    }
}

/// Sets every agent's `/proc` fields, each process read once; returns
/// each agent's process tree (its pid first; empty when not alive).
pub fn fill_from(agents: &mut [Agent], procs: &mut ProcCache) -> Vec<Vec<i64>> {
    let pids: Vec<Option<i64>> = agents.iter().map(|a| a.pid).collect();
    let mut trees = Vec::with_capacity(agents.len());
    for (agent, p) in agents.iter_mut().zip(procs.agents(&pids)) {
        let Some(p) = p else {
            trees.push(Vec::new());
            continue;
        };
        trees.push(p.tree);
        agent.cpu_ticks = p.cpu_ticks;
        agent.start_ticks = p.start_ticks;
        agent.tree_cpu_ticks = p.tree_cpu_ticks;
        agent.io_rchar = p.io_rchar;
        agent.io_wchar = p.io_wchar;
        agent.state = p.state;
        agent.alive = p.alive;
        agent.wchan = p.wchan;
        if agent.runtime_s.is_none() {
            // `started_at` is NULL or unreadable: the process's own age
            // (its starttime on the boot clock) still lets idleness be judged.
            agent.runtime_s = agent.start_ticks.and_then(|s| procs.age_s(s));
        }
    }
    trees
}

/// Jobs with status `running`, each with its newest run, oldest job first.
pub fn read(conn: &Connection, now: &Timestamp) -> SectionResult<Vec<Agent>> {
    // One grouped pass over agent_runs instead of a lookup per job: the
    // database is read-only, so we cannot rely on an index on job_id.
    let mut stmt = conn.prepare_cached(
        "SELECT j.id, j.agent, j.repo, j.pid, j.started_at, j.model, j.effort, r.run_id
         FROM jobs AS j
         LEFT JOIN (SELECT job_id, MAX(id) AS run_id FROM agent_runs GROUP BY job_id) AS r
           ON r.job_id = j.id
         WHERE j.status = 'running'
         ORDER BY j.id",
    )?;
    let rows = stmt.query_map([], |row| {
        let started = text(row, 4)?;
        Ok(Agent {
            job_id: row.get(0)?,
            agent: text(row, 1)?,
            repo: text(row, 2)?,
            pid: int(row, 3)?,
            runtime_s: seconds_since(started.as_deref(), now),
            model: text(row, 5)?,
            effort: text(row, 6)?,
            run_id: int(row, 7)?,
            ..Agent::default()
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
