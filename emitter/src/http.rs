//! The HTTP face of the emitter: one route, host protection, one snapshot per flight.
//!
//! Order of checks for every request: rate limit (cheapest, and it bounds
//! token guessing), route (404), method (405), bearer token (401), the
//! kill-switch, then the snapshot. Requests that arrive while a snapshot is
//! being taken share it instead of starting their own, so N concurrent
//! scrapes cost one pass over SQLite and `/proc`; the envelope's
//! `generated_at` says when it was taken. With `reuse_snapshot` set, a
//! snapshot younger than that is served again (off by default: every
//! response is then at least as fresh as its request's arrival minus one
//! snapshot's duration).

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use crate::killswitch;
use crate::snapshot::{failed_body, Snapshotter};

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";

/// How the server protects its host.
#[derive(Clone)]
pub struct ServeOptions {
    /// Requests need `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Requests per second over all clients; none when unset.
    pub rate_limit: Option<NonZeroU32>,
    /// A client must send its request head within this time.
    pub header_read_timeout: Duration,
    /// A request that takes longer gets 503.
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait in the listen queue.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Where process figures come from (tests point it at a fake tree).
    pub proc_root: PathBuf,
    /// Serve a snapshot again while it is younger than this (zero: never).
    pub reuse_snapshot: Duration,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ServeOptions")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("rate_limit", &self.rate_limit)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("proc_root", &self.proc_root)
            .field("reuse_snapshot", &self.reuse_snapshot)
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            token: None,
            rate_limit: None,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(10),
            proc_root: PathBuf::from("/proc"),
            reuse_snapshot: Duration::ZERO,
        }
    }
}

/// Parses `--rate-limit`: `N/s` (or a bare `N`), N > 0.
pub fn parse_rate_limit(text: &str) -> Result<NonZeroU32, String> {
    let t = text.trim();
    let n = t.strip_suffix("/s").unwrap_or(t).trim();
    n.parse::<NonZeroU32>()
        .map_err(|_| format!("expected N/s with N a positive integer, got {text:?}"))
}

/// Parses `--reuse-snapshot`: a duration such as `250ms` or `1s` (`0` turns it off).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected e.g. 250ms or 1s, got {text:?}"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("expected e.g. 250ms or 1s, got {text:?}")),
    }
}

/// Reads the bearer token: the file's content less its trailing newline.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        return Err(format!("token file {} is empty", path.display()));
    }
    Ok(token.to_owned())
}

type Body = Full<Bytes>;

/// Everything a request needs, shared by all connections.
pub(crate) struct App {
    snapshotter: Arc<Snapshotter>,
    token: Option<Vec<u8>>,
    limiter: Option<DefaultDirectRateLimiter>,
    request_timeout: Duration,
    flight: Mutex<Option<Arc<OnceCell<Bytes>>>>,
    reuse_snapshot: Duration,
    /// The last body and when its snapshot started, for `reuse_snapshot`.
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl App {
    pub(crate) fn new(snapshotter: Snapshotter, options: &ServeOptions) -> Self {
        Self {
            snapshotter: Arc::new(snapshotter),
            token: options.token.as_ref().map(|t| t.as_bytes().to_vec()),
            limiter: options
                .rate_limit
                .map(|n| RateLimiter::direct(Quota::per_second(n))),
            request_timeout: options.request_timeout,
            flight: Mutex::new(None),
            reuse_snapshot: options.reuse_snapshot,
            last: Mutex::new(None),
        }
    }

    /// Answers one request; never an error (hyper would drop the connection).
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let timeout = self.request_timeout;
        let response = match tokio::time::timeout(timeout, self.route(&req)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
                plain(StatusCode::SERVICE_UNAVAILABLE, "snapshot timed out\n")
            }
        };
        Ok(response)
    }

    async fn route(&self, req: &Request<Incoming>) -> Response<Body> {
        if let Some(limiter) = &self.limiter {
            if let Err(not_until) = limiter.check() {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let mut resp = plain(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
                return resp;
            }
        }
        if req.uri().path() != METRICS_PATH {
            return plain(StatusCode::NOT_FOUND, "not found; try GET /metrics\n");
        }
        if req.method() != Method::GET {
            let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return resp;
        }
        if !self.authorised(req) {
            let mut resp = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
        let body = if killswitch::enabled() {
            self.shared_snapshot().await
        } else {
            Bytes::from(shared_schema::disabled_body())
        };
        json(body)
    }

    fn authorised(&self, req: &Request<Incoming>) -> bool {
        let Some(want) = &self.token else {
            return true;
        };
        let Some(given) = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        // Constant time over the content; only the length can leak.
        bool::from(given.ct_eq(want.as_slice()))
    }

    /// Joins the snapshot in flight, or starts one on the blocking pool.
    async fn shared_snapshot(&self) -> Bytes {
        if !self.reuse_snapshot.is_zero() {
            let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((started, body)) = last.as_ref() {
                if started.elapsed() < self.reuse_snapshot {
                    return body.clone();
                }
            }
        }
        let cell = self
            .flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        cell.get_or_init(|| async {
            let snapshotter = Arc::clone(&self.snapshotter);
            let started = Instant::now();
            let body = tokio::task::spawn_blocking(move || snapshotter.body()).await;
            // This flight has landed: the next request takes a fresh snapshot.
            let mut flight = self.flight.lock().unwrap_or_else(PoisonError::into_inner);
            if flight.as_ref().is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                *flight = None;
            }
            drop(flight);
            match body {
                Ok(body) => {
                    if !self.reuse_snapshot.is_zero() {
                        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some((started, body.clone()));
                    }
                    body
                }
                Err(err) => {
                    tracing::error!(error = %err, "snapshot task failed");
                    failed_body()
                }
            }
        })
        .await
        .clone()
    }
}

/// Whole seconds for `Retry-After`, at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.as_secs() == 0))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_forms() {
        assert_eq!(parse_rate_limit("10/s").map(NonZeroU32::get), Ok(10));
        assert_eq!(parse_rate_limit(" 5 ").map(NonZeroU32::get), Ok(5));
        assert!(parse_rate_limit("0/s").is_err());
        assert!(parse_rate_limit("10/m").is_err());
        assert!(parse_rate_limit("x").is_err());
    }

    #[test]
    fn reuse_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn token_file_loses_only_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, " s3cret \r\n").expect("write");
        assert_eq!(read_token_file(&path).as_deref(), Ok(" s3cret "));
        std::fs::write(&path, "\n").expect("write");
        assert!(read_token_file(&path).is_err());
        assert!(read_token_file(&dir.path().join("absent")).is_err());
    }
}
