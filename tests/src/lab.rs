//! A lab: a temporary directory with a state database, real agent
//! processes recorded as running jobs, and optionally the simulated
//! orchestrator keeping the database changing. Everything stops on drop.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::agents::{Agent, AgentKind};
use crate::orchestrator::{Orchestrator, Script};
use crate::statedb::{self, RunningJob};

/// The agents, their rows, the database and the directory holding them.
#[derive(Debug)]
pub struct Lab {
    // Field order is drop order: stop writing, then the agents, then the files.
    sim: Option<Orchestrator>,
    /// The agents with their rows, in the order they were asked for.
    pub agents: Vec<(Agent, RunningJob)>,
    /// The state database.
    pub db: PathBuf,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Creates the database and starts one agent per `kinds` entry; with
    /// `script`, also the simulated orchestrator.
    pub fn start(kinds: &[AgentKind], script: Option<Script>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("agent-watchdog-")
            .tempdir()?;
        let db = dir.path().join("state.db");
        let conn = statedb::create(&db).context("creating the state database")?;
        let agents_dir = dir.path().join("agents");
        std::fs::create_dir_all(&agents_dir)?;
        let mut agents = Vec::new();
        for &kind in kinds {
            let agent = Agent::spawn(kind, &agents_dir)?;
            let job =
                statedb::insert_running_job(&conn, kind.name(), agent.pid(), "app", "implement")?;
            agents.push((agent, job));
        }
        drop(conn);
        let sim = script.map(|s| {
            Orchestrator::start(
                db.clone(),
                agents.iter().map(|(_, j)| j.run_id).collect(),
                s,
            )
        });
        Ok(Self {
            sim,
            agents,
            db,
            dir,
        })
    }

    /// The temporary directory (database, configs, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The first agent of `kind`.
    pub fn agent(&self, kind: AgentKind) -> &(Agent, RunningJob) {
        self.agents
            .iter()
            .find(|(a, _)| a.kind == kind)
            .unwrap_or_else(|| panic!("the lab has no {} agent", kind.name()))
    }

    /// Keeps the directory on disk after drop; returns its path.
    pub fn keep(self) -> PathBuf {
        let Self {
            sim,
            agents,
            db: _,
            dir,
        } = self;
        drop(sim);
        drop(agents);
        dir.keep()
    }
}

/// One idle real process (`sleep 600`) recorded as a running job named
/// `name` (repo `app`, stage `review`) in a new state database: the whole
/// lab of the browser tests.
#[derive(Debug)]
pub struct OneAgent {
    /// The temporary directory holding the database.
    pub dir: tempfile::TempDir,
    /// The state database.
    pub db: PathBuf,
    /// A writer connection.
    pub conn: rusqlite::Connection,
    /// The agent process (killed on drop).
    pub agent: crate::procs::Proc,
    /// Its rows.
    pub job: RunningJob,
}

impl OneAgent {
    /// Creates the database and starts the agent.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("state.db");
        let conn = statedb::create(&db)?;
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("600").stdin(std::process::Stdio::null());
        let agent = crate::procs::Proc::spawn("agent", &mut cmd)?;
        let job = statedb::insert_running_job(&conn, name, agent.pid(), "app", "review")?;
        Ok(Self {
            dir,
            db,
            conn,
            agent,
            job,
        })
    }
}
