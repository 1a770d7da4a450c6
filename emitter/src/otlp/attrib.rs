//! Which running job a record belongs to (CONTRACT.md section 1, "Agent
//! telemetry over OTLP"): (1) its `orchestrator.job_id` when that names a
//! running job, else (2) the job whose process tree holds the client end of
//! the loopback connection it came over.
//!
//! The running jobs (id and pid) come from the same [`Source`] as the
//! envelope: every snapshot hands them over ([`Attributor::note`]), and the
//! receiver reads them itself when they are older than [`RUNNING_MAX_AGE`]
//! or when a record names a job it does not know yet (a job that has just
//! started), at most every [`MISS_REFRESH`]. Socket maps are rebuilt on a
//! miss, at most every [`MISS_REFRESH`] too, so neither a flood of unknown
//! job ids nor a flood of connections from strangers costs more than ten
//! reads a second.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shared_schema::{Agent, Timestamp};

use super::socket;
use super::store::Store;
use crate::Source;

/// Running jobs older than this are read again before use.
pub const RUNNING_MAX_AGE: Duration = Duration::from_secs(1);
/// A miss (unknown job id, unknown socket) reads again at most this often.
pub const MISS_REFRESH: Duration = Duration::from_millis(100);

/// Running job ids and their pids.
pub type Running = Arc<HashMap<i64, Option<i64>>>;

/// Finds the job of a record.
pub struct Attributor {
    source: Arc<dyn Source>,
    proc_root: PathBuf,
    store: Arc<Store>,
    running: Mutex<(Option<Instant>, Running)>,
    refreshing: tokio::sync::Mutex<()>,
    sockets: tokio::sync::Mutex<(Option<Instant>, HashMap<u64, i64>)>,
}

impl std::fmt::Debug for Attributor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attributor")
            .field("proc_root", &self.proc_root)
            .finish_non_exhaustive()
    }
}

impl Attributor {
    /// Attribution against the running jobs of `source` and the processes
    /// under `proc_root`; jobs that stop running are dropped from `store`.
    pub fn new(source: Arc<dyn Source>, proc_root: PathBuf, store: Arc<Store>) -> Self {
        Self {
            source,
            proc_root,
            store,
            running: Mutex::new((None, Arc::new(HashMap::new()))),
            refreshing: tokio::sync::Mutex::new(()),
            sockets: tokio::sync::Mutex::new((None, HashMap::new())),
        }
    }

    /// Takes the running jobs a snapshot has just read.
    ///
    /// `read_at` is when the snapshot's session started reading them.
    pub fn note(&self, read_at: Instant, agents: &[Agent]) {
        let jobs: HashMap<i64, Option<i64>> = agents.iter().map(|a| (a.job_id, a.pid)).collect();
        self.set_at(read_at, jobs);
    }

    fn set_at(&self, read_at: Instant, jobs: HashMap<i64, Option<i64>>) {
        let ids: HashSet<i64> = jobs.keys().copied().collect();
        {
            let mut guard = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            // An older read finishing late must not replace a newer one.
            if guard.0.is_some_and(|at| at > read_at) {
                return;
            }
            *guard = (Some(read_at), Arc::new(jobs));
        }
        self.store.retain(&ids);
    }

    fn current(&self) -> (Option<Instant>, Running) {
        let guard = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        (guard.0, Arc::clone(&guard.1))
    }

    /// The running jobs, read again when stale or when `wanted` is missing.
    pub async fn running(&self, wanted: &[i64]) -> Running {
        self.running_within(RUNNING_MAX_AGE, wanted).await
    }

    /// Reads the jobs again when they are older than `max_age`, or when one
    /// of `wanted` is missing: then once they are [`MISS_REFRESH`] old, so a
    /// job that started a moment ago is always found and a flood of unknown
    /// ids costs at most ten reads a second.
    async fn running_within(&self, max_age: Duration, wanted: &[i64]) -> Running {
        let asked = Instant::now();
        let (at, jobs) = self.current();
        let missing = wanted.iter().any(|j| !jobs.contains_key(j));
        let age = at.map(|at| at.elapsed());
        if age.is_some_and(|age| age <= max_age) && !missing {
            return jobs;
        }
        let _one = self.refreshing.lock().await;
        // A read that started after we asked already answers us.
        let (at, jobs) = self.current();
        if at.is_some_and(|at| at >= asked) {
            return jobs;
        }
        if let Some(age) = at.map(|at| at.elapsed()) {
            if age <= max_age && missing && age < MISS_REFRESH {
                tokio::time::sleep(MISS_REFRESH - age).await;
            }
        }
        let source = Arc::clone(&self.source);
        let started = Instant::now();
        let read = tokio::task::spawn_blocking(move || {
            source.session().agents(&Timestamp::now()).map(|agents| {
                agents
                    .into_iter()
                    .map(|a| (a.job_id, a.pid))
                    .collect::<HashMap<_, _>>()
            })
        })
        .await;
        match read {
            Ok(Ok(jobs)) => self.set_at(started, jobs),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "OTLP receiver cannot read the running jobs; keeping the last ones");
                // Not again at once: the state is unavailable, not new.
                let mut guard = self.running.lock().unwrap_or_else(PoisonError::into_inner);
                guard.0 = Some(started);
            }
            Err(err) => tracing::error!(error = %err, "reading the running jobs failed"),
        }
        self.current().1
    }

    /// The running job whose tree holds the client end of a loopback
    /// connection from `peer` to our `server_port`.
    pub async fn job_of_peer(&self, peer: SocketAddr, server_port: u16) -> Option<i64> {
        if !peer.ip().to_canonical().is_loopback() {
            return None;
        }
        let asked = Instant::now();
        let root = self.proc_root.clone();
        let inode =
            tokio::task::spawn_blocking(move || socket::client_inode(&root, peer, server_port))
                .await
                .ok()
                .flatten()?;
        let mut running = self.running(&[]).await;
        let mut sockets = self.sockets.lock().await;
        let known = sockets.1.get(&inode).copied();
        // A map built after we asked already covers our connection.
        let fresh = sockets.0.is_some_and(|at| at >= asked);
        if known.is_none() && !fresh {
            if let Some(age) = sockets.0.map(|at| at.elapsed()) {
                if age < MISS_REFRESH {
                    tokio::time::sleep(MISS_REFRESH - age).await;
                }
            }
            // The sender may be an agent that has just started.
            running = self.running_within(MISS_REFRESH, &[]).await;
            let agents: Vec<(i64, i64)> = running
                .iter()
                .filter_map(|(&job, &pid)| pid.filter(|p| *p > 0).map(|p| (job, p)))
                .collect();
            let root = self.proc_root.clone();
            let started = Instant::now();
            let map = tokio::task::spawn_blocking(move || socket::held_sockets(&root, &agents))
                .await
                .unwrap_or_default();
            *sockets = (Some(started), map);
        }
        let job = sockets.1.get(&inode).copied()?;
        running.contains_key(&job).then_some(job)
    }
}
