//! The watchdog's own HTTP endpoint: `GET /metrics` (Prometheus text),
//! `GET /healthz` (200 while the poll loops run and the evaluation loop
//! turns), and for people and scripts `GET /` (the status page) and
//! `GET /api/v1/alerts` ([`crate::web`]); loopback by default.
//!
//! Small on purpose: four routes, GET (and so HEAD) only, no body read. The accept loop is
//! the one both servers share, [`edges::serve`]: a slow client gets a
//! header-read timeout, connections are capped, an error on one connection
//! never reaches the server, and shutdown stops accepting, lets open
//! requests finish and gives up on stragglers after [`DRAIN_TIMEOUT`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edges::serve::{Guard, Limits};
use edges::web_config::WebConfig;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::exporter::Exporter;
use crate::web::{self, Board};

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

/// Whether the poll loops are running and the evaluation loop still turns;
/// `/healthz` answers 200 only while both hold.
///
/// The loop calls [`Health::beat`] on every turn (at least once per
/// interval). With a limit set by [`Health::set_max_age`], a last beat older
/// than that (3 intervals, at least 2 s, in `run`) makes `/healthz` say 503: a loop stuck
/// on I/O is not healthy just because the HTTP server still answers.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<HealthInner>);

#[derive(Debug, Default)]
struct HealthInner {
    running: AtomicBool,
    beat: Mutex<Liveness>,
}

#[derive(Debug, Default)]
struct Liveness {
    last: Option<Instant>,
    max_age: Option<Duration>,
}

impl Health {
    /// Sets whether the loops run.
    pub fn set(&self, running: bool) {
        self.0.running.store(running, Ordering::Relaxed);
    }

    /// Whether the loops run.
    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::Relaxed)
    }

    /// The evaluation loop turned just now.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    /// The evaluation loop turned at `at`.
    pub fn beat_at(&self, at: Instant) {
        self.liveness().last = Some(at);
    }

    /// How old the last beat may be before `/healthz` fails (counted from
    /// now when nothing has beaten yet).
    pub fn set_max_age(&self, max_age: Duration) {
        let mut l = self.liveness();
        l.max_age = Some(max_age);
        l.last.get_or_insert_with(Instant::now);
    }

    /// Running, and the last beat young enough, at `now`.
    pub fn is_healthy_at(&self, now: Instant) -> bool {
        if !self.is_running() {
            return false;
        }
        let l = self.liveness();
        match (l.max_age, l.last) {
            (Some(max), Some(last)) => now.saturating_duration_since(last) <= max,
            _ => true,
        }
    }

    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        // A panic elsewhere must not take /healthz down with it.
        self.0
            .beat
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`
/// completes; `/` and `/api/v1/alerts` show an empty board.
pub async fn serve(
    listener: TcpListener,
    exporter: Exporter,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_board(listener, exporter, health, Board::default(), shutdown).await
}

/// Serves every route on `listener` until `shutdown` completes; the page
/// and the API render from `board`.
pub async fn serve_with_board(
    listener: TcpListener,
    exporter: Exporter,
    health: Health,
    board: Board,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_guarded(listener, exporter, health, board, None, shutdown).await
}

/// [`serve_with_board`] with TLS and basic auth from `web_config_file`
/// (every route, `/healthz` too, as exporter-toolkit does).
pub async fn serve_guarded(
    listener: TcpListener,
    exporter: Exporter,
    health: Health,
    board: Board,
    web: Option<WebConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Limits {
        max_connections: MAX_CONNECTIONS,
        header_read_timeout: HEADER_READ_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        grace: DRAIN_TIMEOUT,
    };
    let service =
        move |req: Request<Incoming>| std::future::ready(respond(&req, &exporter, &health, &board));
    let guard = Guard {
        web,
        defer_auth: false,
    };
    edges::serve::serve_guarded(listener, service, limits, guard, shutdown).await
}

/// Routes one request; never fails.
fn respond(
    req: &Request<Incoming>,
    exporter: &Exporter,
    health: &Health,
    board: &Board,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/" | "/api/v1/alerts");
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
        // Rendered from a snapshot of the board: never waits for a poll.
        "/" => {
            let page = web::status::render(&board.snapshot(), shared_schema::Timestamp::now());
            body(page, "text/html; charset=utf-8")
        }
        "/api/v1/alerts" => body(web::api::render(&board.snapshot()), "application/json"),
        _ if health.is_healthy_at(Instant::now()) => text(StatusCode::OK, "ok"),
        _ if health.is_running() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "evaluation loop stuck\n")
        }
        _ => text(StatusCode::SERVICE_UNAVAILABLE, "not running\n"),
    }
}

fn body(text: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A status page must never be a stale copy from some cache.
    resp.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_fails_when_the_loop_stops_beating() {
        let h = Health::default();
        let t0 = Instant::now();
        assert!(!h.is_healthy_at(t0), "not running yet");
        h.set(true);
        assert!(h.is_healthy_at(t0), "no limit set: running is enough");
        h.set_max_age(Duration::from_secs(3));
        let beat = Instant::now();
        h.beat_at(beat);
        assert!(h.is_healthy_at(beat + Duration::from_secs(3)));
        assert!(
            !h.is_healthy_at(beat + Duration::from_secs(4)),
            "stuck loop"
        );
        h.set(false);
        assert!(!h.is_healthy_at(beat));
    }
}
