//! The watchdog's own HTTP endpoint: `GET /metrics` (Prometheus text) and
//! `GET /healthz` (200 while the poll loops run), loopback by default.
//!
//! Small on purpose: two routes, GET only, no body read. A slow client gets
//! a header-read timeout, connections are capped by a semaphore, and an
//! error on one connection is logged and never reaches the server. Shutdown
//! stops accepting, lets open requests finish (keep-alive is turned off) and
//! gives up on stragglers after [`DRAIN_TIMEOUT`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::exporter::Exporter;

/// How long a client may take to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Open connections at most; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// The Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let exporter = exporter.clone();
        let health = health.clone();
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let resp = respond(&req, &exporter, &health);
                async move { Ok::<_, Infallible>(resp) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "metrics connection ended with an error");
            }
        });
    }

    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "metrics connections still open at shutdown; closing them"
        );
        conns.abort_all();
    }
    Ok(())
}

/// Routes one request; never fails.
fn respond(req: &Request<Incoming>, exporter: &Exporter, health: &Health) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    match path {
        "/metrics" => {
            let mut resp = Response::new(Full::new(Bytes::from(exporter.encode())));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            resp
        }
        _ if health.is_running() => text(StatusCode::OK, "ok"),
        _ => text(StatusCode::SERVICE_UNAVAILABLE, "not running\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
