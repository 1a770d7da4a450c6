//! One envelope: the clocks, then every section collected on its own.
//!
//! This is the blocking part of a request (SQLite and `/proc`), so the HTTP
//! layer runs it on the blocking pool; `emitter snapshot` calls it directly.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use shared_schema::{Envelope, SECTIONS};

use crate::clock::Clock;
use crate::net_wait::NetWatch;
use crate::procfs::ProcCache;
use crate::sections::{agents, cost, errors, queue, reconciler, stages};
use crate::Source;

/// Takes snapshots of one source.
#[derive(Clone)]
pub struct Snapshotter {
    source: Arc<dyn Source>,
    proc_root: PathBuf,
    /// What was learnt of `/proc`, kept between snapshots.
    procs: Arc<Mutex<ProcCache>>,
    /// The netlink socket and socket holders of `net_wait`.
    net: Arc<Mutex<NetWatch>>,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter")
            .field("proc_root", &self.proc_root)
            .finish_non_exhaustive()
    }
}

impl Snapshotter {
    /// Snapshots of `source`, with process figures from `proc_root` (normally `/proc`).
    pub fn new(source: Arc<dyn Source>, proc_root: impl Into<PathBuf>) -> Self {
        let proc_root = proc_root.into();
        Self {
            source,
            procs: Arc::new(Mutex::new(ProcCache::new(&proc_root))),
            net: Arc::new(Mutex::new(NetWatch::new(&proc_root))),
            proc_root,
        }
    }

    /// Finds descendants the given way instead of the kernel's best
    /// (benchmarks measure the fallback on a kernel with `children` files).
    pub fn with_proc_walk(self, walk: crate::procfs::Walk) -> Self {
        *self.procs.lock().unwrap_or_else(PoisonError::into_inner) =
            ProcCache::with_walk(&self.proc_root, walk);
        self
    }

    /// Reads `net_wait` (the default) or leaves it `null` (benchmarks
    /// measure its cost).
    pub fn with_net_wait(self, on: bool) -> Self {
        self.net
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_enabled(on);
        self
    }

    /// One envelope; never fails, failed sections are listed in `degraded`.
    pub fn take(&self) -> Envelope {
        let clock = Clock::now(&self.proc_root);
        let now = clock.generated_at;
        let mut env = Envelope::new(now);
        env.monotonic_ms = clock.monotonic_ms;
        env.boot_id = clock.boot_id;
        env.host = clock.host;
        env.clk_tck = clock.clk_tck;
        let mut session = self.source.session();
        let session = &mut *session;
        stages::collect(session, &now, &mut env);
        queue::collect(session, &mut env);
        {
            let mut procs = self.procs.lock().unwrap_or_else(PoisonError::into_inner);
            let mut net = self.net.lock().unwrap_or_else(PoisonError::into_inner);
            agents::collect(session, &now, &mut procs, &mut net, &mut env);
        }
        cost::collect(session, &mut env);
        reconciler::collect(session, &mut env);
        errors::collect(session, &mut env);
        env
    }

    /// One envelope as the JSON body.
    pub fn body(&self) -> Bytes {
        to_body(&self.take())
    }
}

/// The body served when taking the snapshot itself failed (a panic in a
/// source): still a valid envelope, with every section degraded.
pub fn failed_body() -> Bytes {
    let mut env = Envelope::new(shared_schema::Timestamp::now());
    for section in SECTIONS {
        env.mark_degraded(section);
    }
    to_body(&env)
}

fn to_body(env: &Envelope) -> Bytes {
    match serde_json::to_vec(env) {
        Ok(body) => Bytes::from(body),
        Err(err) => {
            // Only reachable through a broken Serialize impl; say so and stay valid.
            tracing::error!(error = %err, "cannot serialise the envelope");
            let mut fallback = Envelope::new(env.generated_at);
            for section in SECTIONS {
                fallback.mark_degraded(section);
            }
            Bytes::from(serde_json::to_vec(&fallback).unwrap_or_default())
        }
    }
}
