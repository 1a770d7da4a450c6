//! The one accept-and-drain loop of both HTTP servers (the emitter's and the
//! watchdog's), so that backoff, connection caps, timeouts and shutdown
//! behave alike and are tested once.
//!
//! - A semaphore caps open connections; further clients wait in the
//!   kernel's listen backlog instead of costing memory here.
//! - A failed `accept` (out of file descriptors, ...) is logged and backed
//!   off, never fatal and never a busy loop.
//! - A client gets [`Limits::header_read_timeout`] to send its request head
//!   and the handler [`Limits::request_timeout`] to answer (then 503).
//! - On shutdown the listener closes at once, every connection is told to
//!   finish its request in flight and close (no more keep-alive), and after
//!   [`Limits::grace`] whatever is still open is dropped: [`serve`] returns
//!   no matter what a handler does, so a wedged handler never keeps the
//!   process alive.
//!
//! The handler sees the client's address as a [`Peer`] in the request's
//! extensions.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

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

/// How long to wait after a failed `accept` before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    let service = Arc::new(service);
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        // Wait for a free slot before accepting: excess clients queue in the kernel.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
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
        conns.spawn(connection(
            stream,
            peer,
            Arc::clone(&service),
            limits,
            stop_rx.clone(),
            permit,
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
/// finish its request in flight.
async fn connection<F, Fut>(
    stream: TcpStream,
    peer: SocketAddr,
    service: Arc<F>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let _permit = permit;
    let request_timeout = limits.request_timeout;
    let handler = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        let answer = tokio::time::timeout(request_timeout, service(req));
        async move {
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
    let conn = builder.serve_connection(TokioIo::new(stream), handler);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
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
}
