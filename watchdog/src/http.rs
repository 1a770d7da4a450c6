//! The watchdog's own HTTP endpoint: `GET /metrics` (Prometheus text) and
//! `GET /healthz` (200 while the poll loops run), loopback by default.
//!
//! STUB: filled in by the outputs work (issue 5).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::exporter::Exporter;

/// Whether the poll loops are running; `/healthz` answers 200 only while true.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    /// Sets whether the loops run.
    pub fn set(&self, running: bool) {
        self.0.store(running, Ordering::Relaxed);
    }

    /// Whether the loops run.
    pub fn is_running(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    exporter: Exporter,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (listener, exporter, health);
    shutdown.await;
    Ok(())
}
