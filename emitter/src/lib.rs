//! # emitter: the orchestrator side of the metrics contract
//!
//! Serves one JSON envelope (CONTRACT.md section 1) on `GET /metrics`, built
//! from an orchestrator's SQLite state (section 2, opened read-only) and one
//! pass over `/proc`. Every section is collected on its own: a failure
//! degrades that section only, and the response is still 200.
//! `GET /agents/{job_id}` shows one running agent's process tree up close
//! (section 1, "One agent up close"), read on demand. With `--otlp-listen`,
//! [`otlp`] receives the agents' own telemetry into `agents[i].activity`.
//!
//! [`serve`] takes a bound listener and a shutdown future so that the binary
//! binds the real address and tests bind `127.0.0.1:0`; [`run`] gives it a
//! runtime that never waits on a wedged snapshot at exit.

pub mod clock;
pub mod http;
pub mod killswitch;
pub mod net_wait;
pub mod otlp;
pub mod procfs;
pub mod sections;
pub mod snapshot;
pub mod source;
pub mod sql;
pub mod sqlite;
pub mod up_close;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use http::ServeOptions;
pub use snapshot::Snapshotter;
pub use source::{SectionError, SectionResult, Session, Source};
pub use sqlite::SqliteSource;

/// How long [`run`] waits, after its future is done, for blocking tasks
/// (snapshots, up-close reads) before leaving them behind.
pub const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(250);

/// Serves `GET /metrics` and `GET /agents/{job_id}` on `listener` until
/// `shutdown` completes, then stops accepting and lets in-flight requests
/// finish for up to `options.shutdown_grace`; returns after that whatever
/// a request is doing.
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn Source>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // Beyond loopback without a token, anyone who reaches the port would
    // see file paths and peer addresses: the up-close view is then refused.
    let local = listener.local_addr().ok();
    // A poll of this emitter is never an agent's net_wait.
    let _own = local.map(net_wait::own_listener);
    let basic = options
        .web_config
        .as_ref()
        .is_some_and(edges::web_config::WebConfig::has_users);
    let exposed = options.token.is_none() && !basic && !local.is_some_and(|a| a.ip().is_loopback());
    if exposed {
        tracing::warn!(
            listen = ?local,
            "listening beyond loopback without --token-file: GET /agents/{{job_id}} answers 403 (it shows file paths and peer addresses)"
        );
    }
    let app = Arc::new(http::App::new(source, &options, exposed));
    // With a token too, a failed basic auth goes on to the token check
    // (401 there, before the rate limit); without one it is a 401 at the edge.
    let guard = edges::serve::Guard {
        defer_auth: options.token.is_some(),
        web: options.web_config.clone(),
    };
    edges::serve::serve_guarded(
        listener,
        move |req| Arc::clone(&app).handle(req),
        options.limits(),
        guard,
        shutdown,
    )
    .await
}

/// Runs `future` (normally one [`serve`]) on a new multi-thread runtime and
/// returns its output. A blocking task that never returns (a snapshot stuck
/// in an open or a read) is left behind after [`RUNTIME_SHUTDOWN`] instead
/// of being waited for, so SIGTERM always ends the process within the grace
/// period.
pub fn run<T>(future: impl Future<Output = T>) -> std::io::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Snapshots are shared per flight, so few blocking threads are ever busy.
        .max_blocking_threads(4)
        .build()?;
    let out = runtime.block_on(future);
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    Ok(out)
}
