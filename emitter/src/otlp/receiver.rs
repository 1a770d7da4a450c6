//! The OTLP/HTTP endpoints: `POST /v1/logs`, `/v1/metrics`, `/v1/traces`
//! and `GET /stats`, answered as the OTLP specification says.
//!
//! Order of checks: path (404), method (405), bearer token (401), media
//! type (415), content encoding (415), declared length (413), then the body
//! is read against three limits: its own size (413), a deadline for the
//! whole body (408, so a client that never finishes frees its slot), and
//! the bytes all requests may hold at once (429 with `Retry-After`).
//! Decoding runs on the blocking pool, a few at a time; past that the
//! client is told to come back (503 with `Retry-After`). Records that
//! belong to no running job are counted, dropped, and reported back as a
//! partial success.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edges::serve::{Body, Peer};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::decode::{self, DecodeError, Format, Signal};
use super::map::{JobAttr, Record};
use super::store::{Stats, Unattributed};
use super::{OtlpOptions, Telemetry};

/// How long a client waits for a decoding slot before it is told to retry.
const DECODE_WAIT: Duration = Duration::from_secs(2);
/// What `Retry-After` says when the receiver is overloaded, in seconds.
const RETRY_AFTER_S: u64 = 1;
/// How often the count of records for no running job is logged, at most.
const UNATTRIBUTED_LOG_EVERY: Duration = Duration::from_secs(60);

/// Answers by status, for `GET /stats`.
#[derive(Debug, Default)]
struct Answers {
    ok: AtomicU64,
    partial: AtomicU64,
    bad_request: AtomicU64,
    unauthorized: AtomicU64,
    too_large: AtomicU64,
    unsupported: AtomicU64,
    timed_out: AtomicU64,
    overloaded: AtomicU64,
}

/// The body of `GET /stats`.
#[derive(Debug, Serialize)]
struct StatsBody {
    records: Stats,
    requests: RequestCounts,
    approx_store_bytes: usize,
}

#[derive(Debug, Serialize)]
struct RequestCounts {
    ok: u64,
    partial_success: u64,
    bad_request_400: u64,
    unauthorized_401: u64,
    timed_out_408: u64,
    too_large_413: u64,
    unsupported_415: u64,
    overloaded_429_503: u64,
}

/// Everything the endpoints share.
pub(crate) struct Receiver {
    telemetry: Arc<Telemetry>,
    token: Option<Vec<u8>>,
    options: OtlpOptions,
    server_port: u16,
    in_flight: Arc<Semaphore>,
    decoding: Arc<Semaphore>,
    answers: Answers,
    started: Instant,
    /// Milliseconds after `started` of the last "no running job" log line.
    logged_at: AtomicU64,
    logged_total: AtomicU64,
}

impl Receiver {
    pub(crate) fn new(telemetry: Arc<Telemetry>, options: OtlpOptions, server_port: u16) -> Self {
        Self {
            telemetry,
            token: options.token.as_ref().map(|t| t.as_bytes().to_vec()),
            in_flight: Arc::new(Semaphore::new(
                options.in_flight_bytes.min(Semaphore::MAX_PERMITS),
            )),
            decoding: Arc::new(Semaphore::new(options.max_decoding.max(1))),
            options,
            server_port,
            answers: Answers::default(),
            started: Instant::now(),
            logged_at: AtomicU64::new(0),
            logged_total: AtomicU64::new(0),
        }
    }

    pub(crate) async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        let signal = Signal::from_path(path);
        if signal.is_none() && path != "/stats" {
            return text(
                StatusCode::NOT_FOUND,
                "not found; OTLP/HTTP is served at POST /v1/logs, /v1/metrics and /v1/traces\n",
            );
        }
        let (want, allow) = if signal.is_some() {
            (Method::POST, "POST")
        } else {
            (Method::GET, "GET")
        };
        if req.method() != want {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return resp;
        }
        let format = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(Format::from_content_type);
        if !self.authorised(&req) {
            self.answers.unauthorized.fetch_add(1, Ordering::Relaxed);
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                format.unwrap_or(Format::Json),
                decode::UNAUTHENTICATED,
                "missing or wrong bearer token (OTEL_EXPORTER_OTLP_HEADERS=\"Authorization=Bearer <token>\")",
            );
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
        let Some(signal) = signal else {
            return self.stats();
        };
        let Some(format) = format else {
            self.answers.unsupported.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Format::Json,
                decode::UNIMPLEMENTED,
                "Content-Type must be application/x-protobuf or application/json",
            );
        };
        let gzip = match req
            .headers()
            .get(CONTENT_ENCODING)
            .map(HeaderValue::as_bytes)
        {
            None => false,
            Some(e) if e.eq_ignore_ascii_case(b"identity") => false,
            Some(e) if e.eq_ignore_ascii_case(b"gzip") => true,
            Some(_) => {
                self.answers.unsupported.fetch_add(1, Ordering::Relaxed);
                return error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format,
                    decode::UNIMPLEMENTED,
                    "Content-Encoding must be gzip or identity",
                );
            }
        };
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        match self.read_body(req, format).await {
            Ok((body, _permit)) => self.export(signal, format, body, gzip, peer).await,
            Err(resp) => resp,
        }
    }

    fn authorised(&self, req: &Request<Incoming>) -> bool {
        let Some(want) = &self.token else {
            return true;
        };
        req.headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|given| bool::from(given.ct_eq(want)))
    }

    /// The whole body, within the size cap, the deadline and the shared budget.
    async fn read_body(
        &self,
        req: Request<Incoming>,
        format: Format,
    ) -> Result<(Vec<u8>, tokio::sync::OwnedSemaphorePermit), Response<Body>> {
        let cap = self.options.max_body;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap as u64) {
            return Err(self.too_large(format, cap));
        }
        let mut permit = match Arc::clone(&self.in_flight).try_acquire_many_owned(0) {
            Ok(p) => p,
            Err(_) => return Err(self.overloaded(StatusCode::SERVICE_UNAVAILABLE, format)),
        };
        let mut body = req.into_body();
        let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize).min(cap));
        let deadline = tokio::time::Instant::now() + self.options.body_timeout;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    self.answers.timed_out.fetch_add(1, Ordering::Relaxed);
                    return Err(error(
                        StatusCode::REQUEST_TIMEOUT,
                        format,
                        decode::UNAVAILABLE,
                        &format!(
                            "the body did not arrive within {} ms",
                            self.options.body_timeout.as_millis()
                        ),
                    ));
                }
                Ok(None) => break,
                Ok(Some(Err(err))) => {
                    self.answers.bad_request.fetch_add(1, Ordering::Relaxed);
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format,
                        decode::INVALID_ARGUMENT,
                        &format!("reading the body failed: {err}"),
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if buf.len() + data.len() > cap {
                return Err(self.too_large(format, cap));
            }
            // Bytes held by all requests at once are bounded too.
            let more = u32::try_from(data.len()).unwrap_or(u32::MAX);
            match Arc::clone(&self.in_flight).try_acquire_many_owned(more) {
                Ok(p) => permit.merge(p),
                Err(_) => return Err(self.overloaded(StatusCode::TOO_MANY_REQUESTS, format)),
            }
            buf.extend_from_slice(&data);
        }
        Ok((buf, permit))
    }

    async fn export(
        &self,
        signal: Signal,
        format: Format,
        body: Vec<u8>,
        gzip: bool,
        peer: Option<std::net::SocketAddr>,
    ) -> Response<Body> {
        let Ok(Ok(_slot)) =
            tokio::time::timeout(DECODE_WAIT, Arc::clone(&self.decoding).acquire_owned()).await
        else {
            return self.overloaded(StatusCode::SERVICE_UNAVAILABLE, format);
        };
        let max_decoded = self.options.max_decoded;
        let decoded = tokio::task::spawn_blocking(move || {
            let body = if gzip {
                decode::gunzip(&body, max_decoded)?
            } else {
                body
            };
            decode::records(signal, format, &body)
        })
        .await;
        drop(_slot);
        let records = match decoded {
            Ok(Ok(records)) => records,
            Ok(Err(DecodeError::TooLarge(cap))) => return self.too_large(format, cap),
            Ok(Err(DecodeError::Bad(why))) => {
                self.answers.bad_request.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(signal = signal.name(), error = %why, "undecodable OTLP body");
                return error(
                    StatusCode::BAD_REQUEST,
                    format,
                    decode::INVALID_ARGUMENT,
                    &why,
                );
            }
            Err(err) => {
                tracing::error!(error = %err, "OTLP decoding task failed");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format,
                    decode::UNAVAILABLE,
                    "decoding failed",
                );
            }
        };
        let rejected = self.attribute(&records, peer).await;
        let (status_counter, message) = if rejected.total() > 0 {
            (&self.answers.partial, rejected.message())
        } else {
            (&self.answers.ok, String::new())
        };
        status_counter.fetch_add(1, Ordering::Relaxed);
        self.log_unattributed();
        respond(
            StatusCode::OK,
            format,
            decode::answer(signal, format, rejected.total(), &message),
        )
    }

    /// Adds the records to their jobs; what was rejected, and why.
    async fn attribute(&self, records: &[Record], peer: Option<std::net::SocketAddr>) -> Rejected {
        let mut rejected = Rejected::default();
        if records.is_empty() {
            return rejected;
        }
        let named: Vec<i64> = {
            let mut ids: Vec<i64> = records
                .iter()
                .filter_map(|r| match r.job {
                    JobAttr::Id(id) => Some(id),
                    _ => None,
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            // Asking to re-read for every id of a hostile batch would not help.
            ids.truncate(64);
            ids
        };
        let running = self.telemetry.attributor.running(&named).await;
        let by_attr = |r: &Record| match r.job {
            JobAttr::Id(id) if running.contains_key(&id) => Some(id),
            _ => None,
        };
        let needs_socket = records.iter().any(|r| by_attr(r).is_none());
        let by_socket = match (needs_socket, peer) {
            (true, Some(peer)) => {
                self.telemetry
                    .attributor
                    .job_of_peer(peer, self.server_port)
                    .await
            }
            _ => None,
        };
        let now = shared_schema::Timestamp::now();
        let mut groups: Vec<(i64, Vec<&Record>)> = Vec::new();
        for r in records {
            let Some(job) = by_attr(r).or(by_socket) else {
                if matches!(r.job, JobAttr::Absent) {
                    rejected.no_job += 1;
                } else {
                    rejected.unknown_job += 1;
                }
                continue;
            };
            match groups.iter_mut().find(|(j, _)| *j == job) {
                Some((_, g)) => g.push(r),
                None => groups.push((job, vec![r])),
            }
        }
        let store = &self.telemetry.store;
        for (job, group) in groups {
            rejected.dropped += store.add(job, group, now);
        }
        store.unattributed(Unattributed::UnknownJob, rejected.unknown_job);
        store.unattributed(Unattributed::NoJob, rejected.no_job);
        rejected
    }

    fn log_unattributed(&self) {
        let stats = self.telemetry.store.stats();
        let total = stats.unknown_job + stats.no_job;
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.logged_at.load(Ordering::Relaxed);
        let due =
            last == 0 || now_ms.saturating_sub(last) >= UNATTRIBUTED_LOG_EVERY.as_millis() as u64;
        if total > self.logged_total.load(Ordering::Relaxed)
            && due
            && self
                .logged_at
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.logged_total.store(total, Ordering::Relaxed);
            tracing::warn!(
                unknown_job = stats.unknown_job,
                no_job = stats.no_job,
                "OTLP records that belong to no running job were dropped (totals so far; see GET /stats on the OTLP listener)"
            );
        }
    }

    fn stats(&self) -> Response<Body> {
        let a = &self.answers;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let body = StatsBody {
            records: self.telemetry.store.stats(),
            requests: RequestCounts {
                ok: get(&a.ok),
                partial_success: get(&a.partial),
                bad_request_400: get(&a.bad_request),
                unauthorized_401: get(&a.unauthorized),
                timed_out_408: get(&a.timed_out),
                too_large_413: get(&a.too_large),
                unsupported_415: get(&a.unsupported),
                overloaded_429_503: get(&a.overloaded),
            },
            approx_store_bytes: self.telemetry.store.approx_bytes(),
        };
        respond(
            StatusCode::OK,
            Format::Json,
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        )
    }

    fn too_large(&self, format: Format, cap: usize) -> Response<Body> {
        self.answers.too_large.fetch_add(1, Ordering::Relaxed);
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format,
            decode::RESOURCE_EXHAUSTED,
            &format!("the body is larger than {cap} bytes"),
        )
    }

    fn overloaded(&self, status: StatusCode, format: Format) -> Response<Body> {
        self.answers.overloaded.fetch_add(1, Ordering::Relaxed);
        let mut resp = error(
            status,
            format,
            decode::UNAVAILABLE,
            "the receiver is busy; retry later",
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        resp
    }
}

/// Records not counted, by reason.
#[derive(Debug, Default)]
struct Rejected {
    unknown_job: u64,
    no_job: u64,
    dropped: u64,
}

impl Rejected {
    fn total(&self) -> u64 {
        self.unknown_job + self.no_job + self.dropped
    }

    fn message(&self) -> String {
        let mut parts = Vec::new();
        if self.unknown_job > 0 {
            parts.push(format!(
                "{} records name an orchestrator.job_id that is not running",
                self.unknown_job
            ));
        }
        if self.no_job > 0 {
            parts.push(format!(
                "{} records have no orchestrator.job_id and come from no running agent's process",
                self.no_job
            ));
        }
        if self.dropped > 0 {
            parts.push(format!(
                "{} records dropped past the receiver's memory caps",
                self.dropped
            ));
        }
        parts.join("; ")
    }
}

fn respond(status: StatusCode, format: Format, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}

fn error(status: StatusCode, format: Format, code: i32, message: &str) -> Response<Body> {
    respond(status, format, decode::status(format, code, message))
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
