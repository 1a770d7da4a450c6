//! The HTTP face of the emitter: `GET /metrics` (the envelope) and
//! `GET /agents/{job_id}` (one agent up close), host protection, one
//! snapshot per flight. The accept loop itself is [`edges::serve`].
//!
//! Order of checks for every request: the bearer token first (401), so a
//! client without it is answered from a bucket of its own and can never use
//! up the rate limit of the clients that hold it (CONTRACT.md section 5);
//! then the rate limit of authorised clients (429), the route (404), the
//! method (405), the kill-switch and the work. Without `--token-file` every
//! client is authorised and there is one bucket, as before.
//!
//! The unauthorised bucket is one for all clients without the token, not
//! one per client address: its only job is to bound what they cost (each
//! gets nothing but 401 or 429), and a map keyed by address would be memory
//! that a client with many addresses grows. The authorised budget is the
//! one that matters, and nothing without the token can touch it.
//!
//! `GET /agents/{job_id}` answers 403 when the server listens beyond
//! loopback without a token (it shows file paths and peer addresses), and
//! 404 while the kill-switch is off, like a job that is not running.
//!
//! Requests that arrive while a snapshot is being taken share it instead of
//! starting their own, so N concurrent scrapes cost one pass over SQLite
//! and `/proc`; the envelope's `generated_at` says when it was taken. With
//! `reuse_snapshot` set, a snapshot younger than that is served again (off
//! by default: every response is then at least as fresh as its request's
//! arrival minus one snapshot's duration).
//!
//! `GET /metrics` and `GET /agents/{job_id}` are gzipped (fast level) when
//! the request's `Accept-Encoding` allows it and the body is worth it
//! (at least [`GZIP_MIN`] bytes), with `Vary: Accept-Encoding`; otherwise
//! the answer is as before. Compression runs on the blocking pool, so a
//! 5 MB envelope never stalls the accept loop.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edges::rate::Rate;
use edges::serve::{Body, Limits};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE,
    RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tokio::sync::{watch, OnceCell, Semaphore};

use crate::killswitch;
use crate::snapshot::{failed_body, Snapshotter};
use crate::up_close::{self, Lookup};
use crate::Source;

/// The envelope's path.
pub const METRICS_PATH: &str = "/metrics";
/// The prefix of the up-close view's path, `/agents/{job_id}`.
pub const AGENTS_PREFIX: &str = "/agents/";

/// How the server protects its host.
#[derive(Clone)]
pub struct ServeOptions {
    /// Requests need `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Requests of authorised clients over all of them; none when unset.
    /// Clients without the token get a bucket of their own, a quarter of it.
    pub rate_limit: Option<Rate>,
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
    /// `--web.config.file`: TLS, and basic auth that admits like the token.
    pub web_config: Option<edges::web_config::WebConfig>,
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
            .field("web_config", &self.web_config)
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            token: None,
            rate_limit: None,
            header_read_timeout: limits.header_read_timeout,
            request_timeout: limits.request_timeout,
            max_connections: limits.max_connections,
            shutdown_grace: limits.grace,
            proc_root: PathBuf::from("/proc"),
            reuse_snapshot: Duration::ZERO,
            web_config: None,
        }
    }
}

impl ServeOptions {
    /// The accept loop's share of the options.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
            grace: self.shutdown_grace,
        }
    }
}

/// The budget of clients without the token, out of the authorised `rate`:
/// a quarter (at least 1) over the same period. Small enough that a flood
/// of bad tokens costs little, large enough that a misconfigured client
/// still sees its 401s.
pub fn unauthorised_rate(rate: Rate) -> Rate {
    let quarter = rate.count().div_ceil(4).max(1);
    Rate {
        count: NonZeroU32::new(quarter).unwrap_or(NonZeroU32::MIN),
        per: rate.per,
    }
}

fn limiter(rate: Rate) -> DefaultDirectRateLimiter {
    let quota = Quota::with_period(rate.interval()).map_or_else(
        || Quota::per_second(rate.count),
        |q| q.allow_burst(rate.count),
    );
    RateLimiter::direct(quota)
}

/// Who may ask, and how often: token first, then the authorised budget.
struct Gate {
    token: Option<Vec<u8>>,
    authorised: Option<DefaultDirectRateLimiter>,
    unauthorised: Option<DefaultDirectRateLimiter>,
}

impl Gate {
    fn new(options: &ServeOptions) -> Self {
        let token = options.token.as_ref().map(|t| t.as_bytes().to_vec());
        let unauthorised = match (&token, options.rate_limit) {
            (Some(_), Some(rate)) => Some(limiter(unauthorised_rate(rate))),
            _ => None,
        };
        Self {
            token,
            authorised: options.rate_limit.map(limiter),
            unauthorised,
        }
    }

    /// Why a request may not go on, if it may not.
    fn admit(&self, req: &Request<Incoming>) -> Result<(), Refusal> {
        if let Some(want) = &self.token {
            // Basic auth that verified at the edge (edges::serve) admits too.
            let basic = req
                .extensions()
                .get::<edges::serve::Authenticated>()
                .is_some();
            if !basic && !bearer_matches(req, want) {
                // Spends the unauthorised bucket only: never the budget of token holders.
                if let Some(limiter) = &self.unauthorised {
                    check(limiter)?;
                }
                return Err(Refusal::Unauthorised);
            }
        }
        if let Some(limiter) = &self.authorised {
            check(limiter)?;
        }
        Ok(())
    }
}

/// Why the gate turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No or a wrong bearer token: 401.
    Unauthorised,
    /// Over the budget: 429, retry after this long.
    TooMany(Duration),
}

impl Refusal {
    fn response(self) -> Response<Body> {
        match self {
            Self::Unauthorised => {
                let mut resp = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                resp
            }
            Self::TooMany(wait) => {
                let mut resp = plain(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
                resp
            }
        }
    }
}

fn bearer_matches(req: &Request<Incoming>, want: &[u8]) -> bool {
    let Some(given) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    // Constant time over the content; only the length can leak.
    bool::from(given.ct_eq(want))
}

fn check(limiter: &DefaultDirectRateLimiter) -> Result<(), Refusal> {
    limiter.check().map_err(|not_until| {
        Refusal::TooMany(not_until.wait_time_from(DefaultClock::default().now()))
    })
}

/// Everything a request needs, shared by all connections.
pub(crate) struct App {
    snapshotter: Arc<Snapshotter>,
    source: Arc<dyn Source>,
    proc_root: PathBuf,
    gate: Gate,
    /// Listening beyond loopback without a token: the up-close view is refused.
    exposed: bool,
    /// Whether the 403 of an exposed up-close view has been explained in the log.
    exposed_logged: AtomicBool,
    flight: Mutex<Option<Arc<OnceCell<Bytes>>>>,
    reuse_snapshot: Duration,
    /// The last body and when its snapshot started, for `reuse_snapshot`.
    last: Mutex<Option<(Instant, Bytes)>>,
    /// Up-close reads in flight, by job: concurrent requests share one.
    up_close_flights: Arc<Mutex<HashMap<i64, Flight>>>,
    /// Up-close reads of distinct jobs running at once, at most.
    up_close_permits: Arc<Semaphore>,
}

/// Up-close reads (of distinct jobs) running at once at most: each holds
/// a blocking thread and takes the source's lock, and `/metrics` must not
/// wait behind a flood of them. More get 503 with `Retry-After: 1`. Eight,
/// not fewer: when several agents hang at once the watchdog asks for each
/// one's view within its 2 s diagnosis deadline, and a 503 there is a lost
/// diagnosis.
pub const UP_CLOSE_READS: usize = 8;

/// One up-close read in flight.
#[derive(Clone)]
struct Flight {
    result: watch::Receiver<Option<Lookup>>,
    /// Requests waiting for it.
    waiters: Arc<AtomicUsize>,
    /// Set when the last of them went away: the read stops early.
    stop: Arc<AtomicBool>,
}

/// One request waiting for a flight; when the last one is dropped before
/// the answer (the client closed its connection), the read is stopped.
struct Waiting {
    flights: Arc<Mutex<HashMap<i64, Flight>>>,
    flight: Flight,
    answered: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let _map = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if self.flight.waiters.fetch_sub(1, Ordering::AcqRel) == 1 && !self.answered {
            self.flight.stop.store(true, Ordering::Release);
        }
    }
}

impl App {
    pub(crate) fn new(source: Arc<dyn Source>, options: &ServeOptions, exposed: bool) -> Self {
        Self {
            snapshotter: Arc::new(Snapshotter::new(
                Arc::clone(&source),
                options.proc_root.clone(),
            )),
            source,
            proc_root: options.proc_root.clone(),
            gate: Gate::new(options),
            exposed,
            exposed_logged: AtomicBool::new(false),
            flight: Mutex::new(None),
            reuse_snapshot: options.reuse_snapshot,
            last: Mutex::new(None),
            up_close_flights: Arc::new(Mutex::new(HashMap::new())),
            up_close_permits: Arc::new(Semaphore::new(UP_CLOSE_READS)),
        }
    }

    /// Answers one request; never an error (the accept loop adds the timeout).
    pub(crate) async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if let Err(refusal) = self.gate.admit(&req) {
            return refusal.response();
        }
        let path = req.uri().path();
        let job = path.strip_prefix(AGENTS_PREFIX);
        if path != METRICS_PATH && job.is_none() {
            return plain(
                StatusCode::NOT_FOUND,
                "not found; try GET /metrics or GET /agents/{job_id}\n",
            );
        }
        if req.method() != Method::GET {
            let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return resp;
        }
        let gzip = accepts_gzip(req.headers().get_all(ACCEPT_ENCODING));
        let resp = match job {
            Some(job) => self.up_close(job).await,
            None if killswitch::enabled() => json(StatusCode::OK, self.shared_snapshot().await),
            None => json(StatusCode::OK, Bytes::from(shared_schema::disabled_body())),
        };
        // Both bodies vary with the header, gzipped or not, for caches.
        let mut resp = if gzip { gzipped(resp).await } else { resp };
        resp.headers_mut()
            .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        resp
    }

    /// `GET /agents/{job_id}`.
    async fn up_close(&self, job: &str) -> Response<Body> {
        if self.exposed {
            if !self.exposed_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "GET /agents/{{job_id}} refused with 403: it shows file paths and peer addresses, and this emitter listens beyond loopback without --token-file"
                );
            }
            return json_error(
                StatusCode::FORBIDDEN,
                "GET /agents/{job_id} shows file paths and peer addresses: this emitter listens beyond loopback without --token-file",
            );
        }
        let Ok(job_id) = job.parse::<i64>() else {
            return json_error(StatusCode::NOT_FOUND, &format!("no running job {job:?}"));
        };
        if !killswitch::enabled() {
            return json_error(
                StatusCode::NOT_FOUND,
                "the emitter is switched off (ORCH_METRICS_ENABLED)",
            );
        }
        let Some(mut waiting) = self.join_or_start(job_id) else {
            let mut resp = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many up-close views being read at once; retry",
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        };
        let mut result = waiting.flight.result.clone();
        let looked = result
            .wait_for(Option::is_some)
            .await
            .map(|v| v.clone())
            .ok()
            .flatten();
        waiting.answered = true;
        drop(waiting);
        match looked.ok_or("the read ended without an answer") {
            Ok(Lookup::View(view)) => match serde_json::to_vec(&view) {
                Ok(body) => json(StatusCode::OK, Bytes::from(body)),
                Err(err) => {
                    tracing::error!(error = %err, "cannot serialise the up-close view");
                    json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot serialise the view",
                    )
                }
            },
            Ok(Lookup::NotRunning) => json_error(
                StatusCode::NOT_FOUND,
                &format!("no running job with id {job_id}"),
            ),
            Ok(Lookup::Unavailable(why)) => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot read the running jobs: {why}"),
            ),
            Err(err) => {
                tracing::error!(error = %err, "up-close task failed");
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "reading the process tree failed",
                )
            }
        }
    }

    /// Joins the up-close read of `job_id` in flight, or starts one on the
    /// blocking pool; `None` when [`UP_CLOSE_READS`] are running already.
    fn join_or_start(&self, job_id: i64) -> Option<Waiting> {
        let mut map = self
            .up_close_flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let running = map
            .get(&job_id)
            .filter(|f| !f.stop.load(Ordering::Acquire))
            .cloned();
        let flight = match running {
            Some(flight) => flight,
            None => {
                let permit = Arc::clone(&self.up_close_permits)
                    .try_acquire_owned()
                    .ok()?;
                let (tx, rx) = watch::channel(None);
                let flight = Flight {
                    result: rx,
                    waiters: Arc::new(AtomicUsize::new(0)),
                    stop: Arc::new(AtomicBool::new(false)),
                };
                map.insert(job_id, flight.clone());
                let source = Arc::clone(&self.source);
                let root = self.proc_root.clone();
                let stop = Arc::clone(&flight.stop);
                let flights = Arc::clone(&self.up_close_flights);
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let looked = up_close::look_until(&*source, &root, job_id, &|| {
                        stop.load(Ordering::Acquire)
                    });
                    let mut map = flights.lock().unwrap_or_else(PoisonError::into_inner);
                    if map
                        .get(&job_id)
                        .is_some_and(|f| Arc::ptr_eq(&f.stop, &stop))
                    {
                        map.remove(&job_id);
                    }
                    drop(map);
                    let _ = tx.send(Some(looked));
                });
                flight
            }
        };
        flight.waiters.fetch_add(1, Ordering::AcqRel);
        Some(Waiting {
            flights: Arc::clone(&self.up_close_flights),
            flight,
            answered: false,
        })
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

/// Bodies smaller than this stay plain: gzip's header and the CPU would
/// buy nothing for an error line or a small view.
pub const GZIP_MIN: usize = 1024;

/// The compression level: 1 (fast). Measured on the 10,000-agent envelope
/// (docs/PERFORMANCE.md "gzip"): level 1 is 24x smaller for 6.9 ms of CPU;
/// level 2 is 16 % smaller still but costs 3.5x the CPU (24 ms).
pub const GZIP_LEVEL: u32 = 1;

/// Whether an `Accept-Encoding` list allows gzip: `gzip` (or `x-gzip`, or
/// `*`) with a q-value above zero. An explicit `gzip;q=0` refuses it even
/// when `*` allows everything.
pub fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    let mut gzip = None;
    let mut star = None;
    for value in values {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
                })
                .next_back()
                .map_or(Some(1.0), |v| v.parse::<f32>().ok());
            // An unreadable q-value is taken as a refusal: never guess yes.
            let allowed = q.is_some_and(|q| q > 0.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(allowed);
            } else if coding == "*" {
                star = Some(allowed);
            }
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// `body` gzipped at [`GZIP_LEVEL`].
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::new(GZIP_LEVEL),
    );
    enc.write_all(body)?;
    enc.finish()
}

/// `resp` with its body gzipped, when it is large enough; as it was else
/// (and when compressing failed, which only a bug could make happen).
async fn gzipped(resp: Response<Body>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    // The bodies here are all `Full`: collecting is a move, never a wait.
    let Ok(collected) = http_body_util::BodyExt::collect(body).await;
    let plain = collected.to_bytes();
    if plain.len() < GZIP_MIN {
        return Response::from_parts(parts, Full::new(plain));
    }
    let keep = plain.clone();
    match tokio::task::spawn_blocking(move || gzip(&plain)).await {
        Ok(Ok(zipped)) => {
            parts
                .headers
                .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            Response::from_parts(parts, Full::new(Bytes::from(zipped)))
        }
        _ => {
            tracing::error!("gzip of a response failed; sending it plain");
            Response::from_parts(parts, Full::new(keep))
        }
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

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A one-line JSON error: `{"error":"why"}`.
fn json_error(status: StatusCode, why: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": why }).to_string();
    json(status, Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn unauthorised_clients_get_a_quarter_at_least_one() -> Result<(), String> {
        assert_eq!(unauthorised_rate("20/s".parse()?).to_string(), "5/s");
        assert_eq!(unauthorised_rate("1/s".parse()?).to_string(), "1/s");
        assert_eq!(unauthorised_rate("10/min".parse()?).to_string(), "3/min");
        Ok(())
    }

    fn accepts(values: &[&'static str]) -> bool {
        let values: Vec<HeaderValue> = values.iter().map(|v| HeaderValue::from_static(v)).collect();
        accepts_gzip(&values)
    }

    #[test]
    fn accept_encoding_q_values_decide_gzip() {
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["deflate, GZIP;q=0.5"]));
        assert!(accepts(&["br", "gzip"]));
        assert!(accepts(&["*"]));
        assert!(accepts(&["x-gzip"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip; q=0.000"]));
        assert!(!accepts(&["*, gzip;q=0"]));
        assert!(!accepts(&["gzip;q=bad"]));
        assert!(!accepts(&["gzipped"]));
    }

    #[test]
    fn gzip_round_trips() -> std::io::Result<()> {
        use std::io::Read as _;
        let body = br#"{"agents":[{"job_id":1}]}"#.repeat(200);
        let zipped = gzip(&body)?;
        assert!(zipped.len() * 8 < body.len(), "{} bytes", zipped.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(zipped.as_slice()).read_to_end(&mut back)?;
        assert_eq!(back, body);
        Ok(())
    }

    #[test]
    fn a_huge_rate_still_builds_a_limiter() -> Result<(), String> {
        let l = limiter(format!("{}/s", u32::MAX).parse()?);
        assert!(l.check().is_ok());
        Ok(())
    }
}
