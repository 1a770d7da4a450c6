//! A small loopback HTTP/1.1 server for the fake model APIs and the OTLP
//! capture sink: every request is recorded whole (so a test, or a person
//! finding out what a CLI calls, can read exactly what came in), and the
//! answer is decided by a handler that may stream with pauses or never
//! answer at all (a model call that hangs).
//!
//! It runs its own single-threaded tokio runtime on a background thread,
//! so blocking tests and the demo can use it without an async context.
//! Dropping the server stops the runtime, which closes every connection,
//! held ones included.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Channel, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::fake_model::{Script, Usage};

/// The largest request body kept (bigger ones are cut, and marked so).
const BODY_CAP: usize = 16 << 20;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Arrival order, from 0.
    pub seq: usize,
    /// When it arrived, on the test's monotonic clock.
    pub at: Instant,
    /// When it arrived, wall clock.
    pub wall: SystemTime,
    /// The client's address (its ephemeral port names its socket).
    pub peer: SocketAddr,
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// Every header, in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body (cut at 16 MiB).
    pub body: Bytes,
}

impl Recorded {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or(&self.uri)
    }

    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A whole body at once.
    Full {
        /// HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Headers at once, then each chunk after its pause; the body ends
    /// after the last chunk unless `hold` is set (then the stream stays
    /// open, silent, until the server stops).
    Stream {
        /// HTTP status.
        status: u16,
        /// Extra headers (`content-type` among them).
        headers: Vec<(String, String)>,
        /// (pause before, bytes).
        chunks: Vec<(Duration, Vec<u8>)>,
        /// Keep the response open after the last chunk.
        hold: bool,
    },
    /// Read the request, then never send a byte back: the connection
    /// stays open until the server stops.
    Hang,
}

impl Reply {
    /// A JSON body.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// A 200 `text/event-stream` of `chunks`, ended, with `id_header`
    /// naming request `id`: how both fake model APIs stream an answer.
    pub fn event_stream(id_header: &str, id: u64, chunks: Vec<(Duration, Vec<u8>)>) -> Self {
        Reply::Stream {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-cache".into()),
                (id_header.into(), format!("req_fake{id:08}")),
            ],
            chunks,
            hold: false,
        }
    }
}

/// One server-sent event: `event: name`, `data: <json>`.
pub fn sse_event(name: &str, data: &serde_json::Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// Decides the reply to a request.
pub type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A running loopback server.
pub struct LoopbackServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    held: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LoopbackServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LoopbackServer {
    /// Binds 127.0.0.1:0 and serves `handler` until dropped.
    pub fn start(name: &str, handler: Handler) -> std::io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let state = Shared {
            log: Arc::clone(&log),
            held: Arc::clone(&held),
            handler,
        };
        let thread = std::thread::Builder::new()
            .name(format!("{name}-server"))
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = accept_loop(listener, state) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here drops every connection task.
            })?;
        Ok(Self {
            addr,
            log,
            held,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Serves one fake model API: `route` answers each request from
    /// `script` with `usage`, numbering ids from 1 (how both fakes start).
    pub fn start_scripted(
        name: &str,
        script: Script,
        usage: Usage,
        route: fn(&Recorded, &Script, Usage, &AtomicU64) -> Reply,
    ) -> std::io::Result<Self> {
        let ids = Arc::new(AtomicU64::new(1));
        let handler: Handler = Arc::new(move |req: &Recorded| route(req, &script, usage, &ids));
        Self::start(name, handler)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// How many requests are being held unanswered ([`Reply::Hang`]) or
    /// held open after their last chunk right now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// The port (what an agent's `net_wait.remote` names).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The `POST path` requests so far.
    pub fn posts_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path() == path)
            .collect()
    }

    /// Waits (every 50 ms, up to `timeout`) until `n` requests are held
    /// unanswered: the agent has made the call a test hangs.
    pub fn wait_held(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        crate::net::wait_for(
            "the model request to be held",
            timeout,
            Duration::from_millis(50),
            || {
                let held = self.held();
                (held == n)
                    .then_some(())
                    .ok_or(format!("{held} held, not {n}"))
            },
        )
    }
}

/// Makes a fake API (a struct with a `server: LoopbackServer` field) read
/// as its server (`port`, `requests`, `held`, `wait_held`, ...), so the
/// fakes do not each forward those calls.
#[macro_export]
macro_rules! reads_as_its_server {
    ($fake:ty) => {
        impl std::ops::Deref for $fake {
            type Target = $crate::fake_model_http::LoopbackServer;
            fn deref(&self) -> &Self::Target {
                &self.server
            }
        }
    };
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Vec<Recorded>>>,
    held: Arc<AtomicUsize>,
    handler: Handler,
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Shared) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(req, peer, state).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Body = http_body_util::Either<Full<Bytes>, Channel<Bytes>>;

/// Counts a held request for as long as it lives.
struct HeldGuard(Arc<AtomicUsize>);

impl HeldGuard {
    fn new(held: &Arc<AtomicUsize>) -> Self {
        held.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(held))
    }
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(req: Request<Incoming>, peer: SocketAddr, state: Shared) -> Response<Body> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match http_body_util::Limited::new(req.into_body(), BODY_CAP)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::from_static(b"<body unreadable or over the cap>"),
    };
    let recorded = {
        let mut log = match state.log.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        let r = Recorded {
            seq: log.len(),
            at: Instant::now(),
            wall: SystemTime::now(),
            peer,
            method,
            uri,
            headers,
            body,
        };
        log.push(r.clone());
        r
    };
    match (state.handler)(&recorded) {
        Reply::Full {
            status,
            headers,
            body,
        } => build(
            status,
            &headers,
            http_body_util::Either::Left(Full::new(body.into())),
        ),
        Reply::Stream {
            status,
            headers,
            chunks,
            hold,
        } => {
            let (mut tx, body) = Channel::<Bytes>::new(4);
            let held = Arc::clone(&state.held);
            tokio::spawn(async move {
                for (pause, bytes) in chunks {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    if tx.send(Frame::data(Bytes::from(bytes))).await.is_err() {
                        return;
                    }
                }
                if hold {
                    let _guard = HeldGuard::new(&held);
                    // Until the client goes away (an empty frame no longer
                    // fits) or the server stops.
                    loop {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if tx.try_send(Frame::data(Bytes::new())).is_err() {
                            break;
                        }
                    }
                }
            });
            build(status, &headers, http_body_util::Either::Right(body))
        }
        Reply::Hang => {
            let _guard = HeldGuard::new(&state.held);
            std::future::pending::<()>().await;
            unreachable_reply()
        }
    }
}

fn unreachable_reply() -> Response<Body> {
    build(
        500,
        &[],
        http_body_util::Either::Left(Full::new(Bytes::new())),
    )
}

fn build(status: u16, headers: &[(String, String)], body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}
