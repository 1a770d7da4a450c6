//! The one accept-and-drain loop of both HTTP servers (the emitter's and the
//! watchdog's), so that backoff, connection caps, timeouts, TLS, basic auth
//! and shutdown behave alike and are tested once.
//!
//! - A semaphore caps open connections; further clients wait in the
//!   kernel's listen backlog instead of costing memory here.
//! - Under pressure (every slot taken) the oldest connection that has not
//!   sent a request yet is let go to make room: silent or slow clients
//!   cannot hold the slots for the whole header timeout while a client
//!   that asks (a poll holding the token) waits behind them. Connections
//!   that have asked once (keep-alive clients) are never let go this way.
//! - A failed `accept` (out of file descriptors, ...) is logged and backed
//!   off, never fatal and never a busy loop.
//! - With a web config ([`crate::web_config`]), the TLS handshake gets
//!   [`Limits::header_read_timeout`] too, then the client the same to send
//!   its request head, and the handler [`Limits::request_timeout`] to
//!   answer (then 503). A handshake that fails (plain HTTP to the TLS port,
//!   garbage) closes that connection only.
//! - Basic auth (`basic_auth_users`) is checked before the handler: 401,
//!   unless [`Guard::defer_auth`] lets the handler decide (the emitter also
//!   takes a bearer token); a verified user is put in the request's
//!   extensions as [`Authenticated`].
//! - `HEAD` is answered wherever `GET` is (RFC 9110 section 9.3.2): the
//!   handler sees a `GET`, the client gets its head without the body.
//! - On shutdown the listener closes at once, every connection is told to
//!   finish its request in flight and close (no more keep-alive), and after
//!   [`Limits::grace`] whatever is still open is dropped: [`serve`] returns
//!   no matter what a handler does, so a wedged handler never keeps the
//!   process alive.
//!
//! The handler sees the client's address as a [`Peer`] in the request's
//! extensions.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::web_config::{BasicAuth, WebConfig};

/// The response body both servers use: small, whole, in memory.
pub type Body = Full<Bytes>;

/// The client's address, put into every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// How a server protects its host and how long it drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// A client must send its request head within this time.
    pub header_read_timeout: Duration,
    /// A handler that takes longer is abandoned and the client gets 503.
    pub request_timeout: Duration,
    /// How long shutdown waits for requests in flight before dropping them.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
        }
    }
}

/// TLS and basic auth on a listener, from `--web.config.file`.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The web config; none: plain HTTP, no basic auth.
    pub web: Option<WebConfig>,
    /// Basic auth that does not verify is passed on, without
    /// [`Authenticated`], for the handler to decide (it has another way in,
    /// such as the emitter's bearer token); otherwise it is a 401 here.
    pub defer_auth: bool,
}

/// The user whose basic auth verified, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub String);

/// How long to wait after a failed `accept` before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A connection that has not sent a request yet, and can be let go
/// under pressure.
#[derive(Debug, Default)]
struct Fresh {
    asked: AtomicBool,
    evict: Notify,
}

impl Fresh {
    fn has_asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }

    /// Completes once the accept loop lets this connection go, unless it
    /// has asked by then.
    async fn evicted(&self) {
        loop {
            self.evict.notified().await;
            if !self.has_asked() {
                return;
            }
        }
    }
}

/// The connections that have not asked yet, oldest first (weakly held:
/// a closed one is skipped).
#[derive(Debug, Default)]
struct Silent(VecDeque<Weak<Fresh>>);

impl Silent {
    fn push(&mut self, fresh: &Arc<Fresh>, cap: usize) {
        let gone = |w: &Weak<Fresh>| !w.upgrade().is_some_and(|f| !f.has_asked());
        while self.0.front().is_some_and(gone) {
            self.0.pop_front();
        }
        if self.0.len() > cap.saturating_mul(4) {
            self.0.retain(|w| !gone(w));
        }
        self.0.push_back(Arc::downgrade(fresh));
    }

    /// Lets the oldest silent connection go; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some(w) = self.0.pop_front() {
            if let Some(f) = w.upgrade() {
                if !f.has_asked() {
                    f.evict.notify_one();
                    return true;
                }
            }
        }
        false
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then drains
/// (see the module docs). Returns once every connection is closed or the
/// grace period is over, whichever comes first.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    service: F,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve_guarded(listener, service, limits, Guard::default(), shutdown).await
}

/// [`serve`] with TLS and basic auth from `guard`.
pub async fn serve_guarded<F, Fut>(
    listener: TcpListener,
    service: F,
    limits: Limits,
    guard: Guard,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let service = Arc::new(service);
    let guard = Arc::new(guard);
    let (stop_tx, stop_rx) = watch::channel(false);
    let cap = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(cap));
    let mut silent = Silent::default();
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        // A free slot first when there is one; with none, the next client
        // is accepted, the oldest silent connection let go to make room, and
        // the client served once a slot frees: further clients queue in the
        // kernel, and silent ones cannot hold the queue still.
        let free = Arc::clone(&permits).try_acquire_owned().ok();
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Without it a TLS handshake's flights wait out Nagle against the
        // client's delayed ACK: about 40 ms of wall time on every new
        // HTTPS connection (docs/PERFORMANCE.md, "TLS per poll").
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let permit = match free.or_else(|| Arc::clone(&permits).try_acquire_owned().ok()) {
            Some(permit) => permit,
            None => {
                if silent.evict_oldest() {
                    tracing::debug!("every connection slot taken; let go of the oldest silent one");
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let fresh = Arc::new(Fresh::default());
        silent.push(&fresh, cap);
        conns.spawn(connection(
            stream,
            peer,
            Arc::clone(&service),
            limits,
            Arc::clone(&guard),
            stop_rx.clone(),
            (permit, fresh),
        ));
    }

    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(
        connections = conns.len(),
        "shutting down; finishing requests in flight"
    );
    let drained = tokio::time::timeout(limits.grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_ok() {
        tracing::info!("all connections closed");
    } else {
        tracing::warn!(
            open = conns.len(),
            grace_ms = u64::try_from(limits.grace.as_millis()).unwrap_or(u64::MAX),
            "connections still open after the grace period; dropping them"
        );
        // Not awaited: a task stuck in blocking code would never report back.
        conns.abort_all();
    }
    Ok(())
}

/// Serves one connection until it closes, or until shutdown asks it to
/// finish its request in flight; TLS first when the guard says so.
async fn connection<F, Fut>(
    stream: TcpStream,
    peer: SocketAddr,
    service: Arc<F>,
    limits: Limits,
    guard: Arc<Guard>,
    mut stop: watch::Receiver<bool>,
    (permit, fresh): (OwnedSemaphorePermit, Arc<Fresh>),
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let _permit = permit;
    let Some(tls) = guard.web.as_ref().and_then(WebConfig::tls) else {
        return drive(stream, peer, service, limits, guard, stop, fresh).await;
    };
    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
    let stream = tokio::select! {
        accepted = tokio::time::timeout(limits.header_read_timeout, accept) => match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = fresh.evicted() => return,
        _ = stop.wait_for(|stopping| *stopping) => return,
    };
    drive(stream, peer, service, limits, guard, stop, fresh).await;
}

/// HTTP/1.1 on an established (plain or TLS) stream.
async fn drive<F, Fut, IO>(
    io: IO,
    peer: SocketAddr,
    service: Arc<F>,
    limits: Limits,
    guard: Arc<Guard>,
    mut stop: watch::Receiver<bool>,
    fresh: Arc<Fresh>,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request_timeout = limits.request_timeout;
    let asked = Arc::clone(&fresh);
    let handler = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        asked.asked.store(true, Ordering::Relaxed);
        req.extensions_mut().insert(Peer(peer));
        let service = Arc::clone(&service);
        let guard = Arc::clone(&guard);
        async move {
            let answer = tokio::time::timeout(request_timeout, async {
                let head = req.method() == Method::HEAD;
                if head {
                    // hyper remembers the method it read and leaves the body out.
                    *req.method_mut() = Method::GET;
                }
                let mut resp = match admit(&guard, &mut req).await {
                    Some(refused) => refused,
                    None => service(req).await,
                };
                if resp.headers().get(ALLOW).is_some_and(|v| v == "GET") {
                    resp.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                }
                if let Some(web) = &guard.web {
                    for (name, value) in web.headers().iter() {
                        resp.headers_mut().insert(name.clone(), value.clone());
                    }
                }
                resp
            });
            let response = answer.await.unwrap_or_else(|_| {
                tracing::warn!(
                    %peer,
                    timeout_ms = u64::try_from(request_timeout.as_millis()).unwrap_or(u64::MAX),
                    "request timed out"
                );
                timed_out()
            });
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), handler);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = fresh.evicted() => return,
        () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
            // Finish the request in flight, then close instead of keeping alive.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// Basic auth: `None` lets the request on (with [`Authenticated`] when it
/// verified), `Some` is the 401 to send.
async fn admit(guard: &Guard, req: &mut Request<Incoming>) -> Option<Response<Body>> {
    let web = guard.web.as_ref()?;
    let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    match web.check_basic(header).await {
        BasicAuth::NotConfigured => None,
        BasicAuth::Verified(user) => {
            req.extensions_mut().insert(Authenticated(user));
            None
        }
        BasicAuth::Refused if guard.defer_auth => None,
        BasicAuth::Refused => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"unauthorized\n")));
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Some(resp)
        }
    }
}

fn timed_out() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"request timed out\n")));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc, oneshot};

    fn ok(text: &'static str) -> Response<Body> {
        Response::new(Full::new(Bytes::from_static(text.as_bytes())))
    }

    /// Sends one request on a new connection and returns the raw response.
    async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    struct Running {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start<F, Fut>(service: F, limits: Limits) -> Running
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, service, limits, async move {
            let _ = rx.await;
        }));
        Running {
            addr,
            stop: Some(tx),
            task,
        }
    }

    #[tokio::test]
    async fn answers_and_hands_the_peer_to_the_handler() {
        let server = start(
            |req: Request<Incoming>| async move {
                let peer = req.extensions().get::<Peer>().map(|p| p.0.ip().to_string());
                Response::new(Full::new(Bytes::from(peer.unwrap_or_default())))
            },
            Limits::default(),
        )
        .await;
        let resp = get(server.addr, "/").await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("127.0.0.1"), "{resp}");
    }

    #[tokio::test]
    async fn a_slow_handler_gets_503_after_the_request_timeout() {
        let limits = Limits {
            request_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        let server = start(
            |_req: Request<Incoming>| async { std::future::pending::<Response<Body>>().await },
            limits,
        )
        .await;
        let resp = get(server.addr, "/").await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
        assert!(resp.ends_with("request timed out\n"), "{resp}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drain_finishes_the_request_in_flight_and_refuses_new_ones() {
        let (entered_tx, mut entered_rx) = mpsc::unbounded_channel::<()>();
        let (release_tx, release_rx) = watch::channel(false);
        let service = move |_req: Request<Incoming>| {
            let entered = entered_tx.clone();
            let mut release = release_rx.clone();
            async move {
                let _ = entered.send(());
                let _ = release.wait_for(|r| *r).await;
                ok("finished")
            }
        };
        let mut server = start(service, Limits::default()).await;
        let addr = server.addr;
        let in_flight = tokio::spawn(get(addr, "/slow"));
        entered_rx.recv().await.unwrap();
        let _ = server.stop.take().unwrap().send(());
        // The listener closes: a new client is refused (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still accepting after shutdown");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !server.task.is_finished(),
            "waits for the request in flight"
        );
        release_tx.send(true).unwrap();
        let resp = in_flight.await.unwrap().unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("finished"), "{resp}");
        tokio::time::timeout(Duration::from_secs(10), server.task)
            .await
            .expect("serve returns once drained")
            .unwrap()
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn returns_after_the_grace_period_with_a_handler_that_never_completes() {
        let (entered_tx, mut entered_rx) = mpsc::unbounded_channel::<()>();
        let service = move |_req: Request<Incoming>| {
            let entered = entered_tx.clone();
            async move {
                let _ = entered.send(());
                std::future::pending::<Response<Body>>().await
            }
        };
        let limits = Limits {
            request_timeout: Duration::from_secs(3600),
            grace: Duration::from_millis(200),
            ..Limits::default()
        };
        let mut server = start(service, limits).await;
        let in_flight = tokio::spawn(get(server.addr, "/wedged"));
        entered_rx.recv().await.unwrap();
        let _ = server.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), server.task)
            .await
            .expect("serve returns although a handler never completes")
            .unwrap()
            .unwrap();
        // The wedged client sees its connection closed, not an answer.
        let resp = tokio::time::timeout(Duration::from_secs(10), in_flight)
            .await
            .expect("the client is let go")
            .unwrap();
        assert!(!resp.is_ok_and(|r| r.contains("200")));
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_in_the_backlog() {
        let (entered_tx, mut entered_rx) = mpsc::unbounded_channel::<()>();
        let (release_tx, release_rx) = watch::channel(false);
        let service = move |_req: Request<Incoming>| {
            let entered = entered_tx.clone();
            let mut release = release_rx.clone();
            async move {
                let _ = entered.send(());
                let _ = release.wait_for(|r| *r).await;
                ok("done")
            }
        };
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let server = start(service, limits).await;
        let first = tokio::spawn(get(server.addr, "/1"));
        entered_rx.recv().await.unwrap();
        let second = tokio::spawn(get(server.addr, "/2"));
        // The second is connected (backlog) but not served while the first holds the slot.
        let early = tokio::time::timeout(Duration::from_millis(200), entered_rx.recv()).await;
        assert!(
            early.is_err(),
            "a second connection was served past the cap"
        );
        release_tx.send(true).unwrap();
        assert!(first.await.unwrap().unwrap().starts_with("HTTP/1.1 200"));
        assert!(second.await.unwrap().unwrap().starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn head_is_answered_wherever_get_is_without_the_body() {
        let server = start(
            |req: Request<Incoming>| async move {
                if req.uri().path() == "/other" {
                    let mut resp = ok("no");
                    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                    resp.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static("GET"));
                    return resp;
                }
                // The handler sees GET.
                ok(if req.method() == Method::GET {
                    "twelve bytes"
                } else {
                    "?"
                })
            },
            Limits::default(),
        )
        .await;
        let resp = raw(
            server.addr,
            b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.to_ascii_lowercase().contains("content-length: 12"),
            "{resp}"
        );
        assert!(resp.ends_with("\r\n\r\n"), "no body: {resp}");
        let resp = raw(
            server.addr,
            b"POST /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(
            resp.to_ascii_lowercase().contains("allow: get, head"),
            "{resp}"
        );
    }

    async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Issue 24: silent connections used to hold every slot for the whole
    /// header timeout, and a client that asks waited behind them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_connections_cannot_hold_the_slots_from_a_client_that_asks() {
        let limits = Limits {
            max_connections: 4,
            // Far longer than the wait below: only letting silent ones go
            // can explain an answer.
            header_read_timeout: Duration::from_secs(600),
            ..Limits::default()
        };
        let server = start(|_req: Request<Incoming>| async { ok("served") }, limits).await;
        let mut silent = Vec::new();
        for _ in 0..64 {
            silent.push(TcpStream::connect(server.addr).await.unwrap());
        }
        let answered = tokio::time::timeout(Duration::from_secs(60), get(server.addr, "/")).await;
        let resp = answered
            .expect("answered behind 64 silent connections")
            .unwrap();
        assert!(resp.ends_with("served"), "{resp}");
        drop(silent);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_has_asked_is_never_let_go_for_a_silent_one() {
        let limits = Limits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(600),
            ..Limits::default()
        };
        let server = start(|_req: Request<Incoming>| async { ok("served") }, limits).await;
        // A keep-alive client asks once and keeps its connection.
        let mut kept = TcpStream::connect(server.addr).await.unwrap();
        let ask = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        kept.write_all(ask).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = kept.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("served"));
        // A silent newcomer waits; it does not push the active client out.
        let _silent = TcpStream::connect(server.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        kept.write_all(ask).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), kept.read(&mut buf))
            .await
            .expect("the kept connection still answers")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("served"));
    }

    mod tls {
        use super::*;
        use crate::web_config::WebConfig;
        use std::path::Path;
        use tokio_rustls::rustls;

        struct Pki {
            ca: rcgen::Issuer<'static, rcgen::KeyPair>,
            ca_pem: String,
        }

        impl Pki {
            fn new() -> Self {
                let key = rcgen::KeyPair::generate().unwrap();
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                let cert = params.self_signed(&key).unwrap();
                Self {
                    ca_pem: cert.pem(),
                    ca: rcgen::Issuer::new(params, key),
                }
            }

            fn leaf(&self, name: &str) -> (String, String) {
                let key = rcgen::KeyPair::generate().unwrap();
                let cert = rcgen::CertificateParams::new(vec![name.into()])
                    .unwrap()
                    .signed_by(&key, &self.ca)
                    .unwrap();
                (cert.pem(), key.serialize_pem())
            }
        }

        fn client(pki: &Pki, cert: Option<(String, String)>) -> tokio_rustls::TlsConnector {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let b = rustls::ClientConfig::builder_with_provider(crate::web_config::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
            let config = match cert {
                Some((c, k)) => b
                    .with_client_auth_cert(
                        rustls::pki_types::CertificateDer::pem_slice_iter(c.as_bytes())
                            .map(Result::unwrap)
                            .collect(),
                        rustls::pki_types::PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
                    )
                    .unwrap(),
                None => b.with_no_client_auth(),
            };
            tokio_rustls::TlsConnector::from(Arc::new(config))
        }
        use rustls::pki_types::pem::PemObject;

        async fn get_tls(
            addr: SocketAddr,
            connector: &tokio_rustls::TlsConnector,
            auth: Option<&str>,
        ) -> std::io::Result<String> {
            let tcp = TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await?;
            let auth = auth
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            tls.write_all(
                format!("GET / HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
            )
            .await?;
            let mut out = Vec::new();
            tls.read_to_end(&mut out).await?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        }

        fn web(dir: &Path, pki: &Pki, extra: &str) -> WebConfig {
            let (cert, key) = pki.leaf("localhost");
            std::fs::write(dir.join("s.crt"), cert).unwrap();
            std::fs::write(dir.join("s.key"), key).unwrap();
            std::fs::write(dir.join("ca.crt"), &pki.ca_pem).unwrap();
            let p = dir.join("web.yml");
            std::fs::write(
                &p,
                format!("tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n{extra}"),
            )
            .unwrap();
            WebConfig::load(&p).unwrap()
        }

        async fn start_guarded(guard: Guard) -> Running {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = oneshot::channel::<()>();
            let limits = Limits {
                header_read_timeout: Duration::from_secs(2),
                ..Limits::default()
            };
            let service = |req: Request<Incoming>| async move {
                let who = req.extensions().get::<Authenticated>().map(|a| a.0.clone());
                Response::new(Full::new(Bytes::from(format!(
                    "hello {}",
                    who.unwrap_or_default()
                ))))
            };
            let task = tokio::spawn(serve_guarded(
                listener,
                service,
                limits,
                guard,
                async move {
                    let _ = rx.await;
                },
            ));
            Running {
                addr,
                stop: Some(tx),
                task,
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn client_certificates_are_required_and_bad_handshakes_close_only_themselves() {
            let dir = tempfile::tempdir().unwrap();
            let pki = Pki::new();
            let w = web(
                dir.path(),
                &pki,
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
            );
            let server = start_guarded(Guard {
                web: Some(w),
                defer_auth: false,
            })
            .await;
            let with_cert = client(&pki, Some(pki.leaf("watchdog")));
            let resp = get_tls(server.addr, &with_cert, None).await.unwrap();
            assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
            // No client certificate: refused in the handshake.
            let without = client(&pki, None);
            assert!(get_tls(server.addr, &without, None)
                .await
                .map_or(true, |r| !r.contains("200")));
            // Someone else's CA: refused too.
            let other = Pki::new();
            let foreign = client(&pki, Some(other.leaf("watchdog")));
            assert!(get_tls(server.addr, &foreign, None)
                .await
                .map_or(true, |r| !r.contains("200")));
            // Plain HTTP to the TLS port, garbage, and a silent client: each
            // ends its own connection, within the handshake's bound.
            for bytes in [
                b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".as_slice(),
                b"\x16\x03\x01\xff\xffgarbage garbage garbage".as_slice(),
                b"".as_slice(),
            ] {
                let got =
                    tokio::time::timeout(Duration::from_secs(20), raw(server.addr, bytes)).await;
                let got = got.expect("a bad handshake is closed within its bound");
                assert!(!got.contains("HTTP/1.1 200"), "{got}");
            }
            let resp = get_tls(server.addr, &with_cert, None).await.unwrap();
            assert!(resp.starts_with("HTTP/1.1 200"), "still serving: {resp}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn basic_auth_is_a_401_at_the_edge_unless_deferred() {
            let dir = tempfile::tempdir().unwrap();
            let pki = Pki::new();
            let hash = bcrypt::hash("pw", 4).unwrap();
            let w = web(
                dir.path(),
                &pki,
                &format!("basic_auth_users:\n  prom: {hash}\n"),
            );
            let connector = client(&pki, None);
            let strict = start_guarded(Guard {
                web: Some(w.clone()),
                defer_auth: false,
            })
            .await;
            let resp = get_tls(strict.addr, &connector, None).await.unwrap();
            assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
            assert!(resp.contains("www-authenticate: Basic"), "{resp}");
            // "prom:pw"
            let resp = get_tls(strict.addr, &connector, Some("Basic cHJvbTpwdw=="))
                .await
                .unwrap();
            assert!(resp.ends_with("hello prom"), "{resp}");
            let deferred = start_guarded(Guard {
                web: Some(w),
                defer_auth: true,
            })
            .await;
            let resp = get_tls(deferred.addr, &connector, Some("Bearer t"))
                .await
                .unwrap();
            assert!(
                resp.starts_with("HTTP/1.1 200") && resp.ends_with("hello "),
                "{resp}"
            );
        }
    }
}
