//! # emitter: the orchestrator side of the metrics contract
//!
//! Serves one JSON envelope (CONTRACT.md section 1) on `GET /metrics`, built
//! from an orchestrator's SQLite state (section 2, opened read-only) and one
//! pass over `/proc`. Every section is collected on its own: a failure
//! degrades that section only, and the response is still 200.
//!
//! [`serve`] takes a bound listener and a shutdown future so that the binary
//! binds the real address and tests bind `127.0.0.1:0`.

pub mod clock;
pub mod http;
pub mod killswitch;
pub mod procfs;
pub mod sections;
pub mod snapshot;
pub mod source;
pub mod sql;
pub mod sqlite;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use http::{parse_rate_limit, read_token_file, ServeOptions};
pub use snapshot::Snapshotter;
pub use source::{SectionError, SectionResult, Session, Source};
pub use sqlite::SqliteSource;

/// Serves `GET /metrics` on `listener` until `shutdown` completes, then
/// stops accepting and lets in-flight requests finish (up to
/// `options.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn Source>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let snapshotter = Snapshotter::new(source, options.proc_root.clone());
    let app = Arc::new(http::App::new(snapshotter, &options));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting: excess clients queue in the kernel.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = Arc::clone(&app);
        let service = service_fn(move |req| Arc::clone(&app).handle(req));
        let conn = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down; finishing in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!(grace_ms = options.shutdown_grace.as_millis() as u64, "gave up waiting for connections");
        }
    }
    Ok(())
}
