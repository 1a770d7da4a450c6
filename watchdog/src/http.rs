//! The watchdog's own HTTP endpoint: `GET /metrics` (Prometheus text) and
//! `GET /healthz` (200 while the poll loops run), loopback by default.
//!
//! Small on purpose: two routes, GET only, no body read. The accept loop is
//! the one both servers share, [`edges::serve`]: a slow client gets a
//! header-read timeout, connections are capped, an error on one connection
//! never reaches the server, and shutdown stops accepting, lets open
//! requests finish and gives up on stragglers after [`DRAIN_TIMEOUT`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edges::serve::Limits;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::exporter::Exporter;

/// How long a client may take to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take before it gets 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
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
    let limits = Limits {
        max_connections: MAX_CONNECTIONS,
        header_read_timeout: HEADER_READ_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        grace: DRAIN_TIMEOUT,
    };
    let service =
        move |req: Request<Incoming>| std::future::ready(respond(&req, &exporter, &health));
    edges::serve::serve(listener, service, limits, shutdown).await
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
