//! The agents' own telemetry: an OTLP/HTTP receiver (`--otlp-listen`) whose
//! records become `agents[i].activity` (CONTRACT.md section 1, "activity"
//! and "Agent telemetry over OTLP").
//!
//! - [`decode`]: bodies in (protobuf, OTLP/JSON, gzip) and answers out.
//! - [`map`]: what a record means (the mapping table of docs/REFERENCE.md).
//! - [`attrib`] and [`socket`]: which running job a record belongs to.
//! - [`store`]: the bounded per-job counters.
//! - [`source`]: the envelope's side, a [`Source`] whose agents carry them.
//!
//! The receiver runs on a thread and runtime of its own ([`spawn`]), so a
//! flood of telemetry competes with `GET /metrics` for CPU only through the
//! kernel's scheduler, never for the envelope's worker or blocking threads;
//! the two meet at one mutex held for a few additions or copies.
//! OTLP/gRPC is not served: agents export over HTTP
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` or `http/json`).

pub mod attrib;
pub mod decode;
pub mod map;
mod receiver;
pub mod socket;
pub mod source;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edges::serve::Limits;

use crate::Source;

pub use source::WithActivity;
pub use store::Store;

/// Limits of the receiver.
#[derive(Clone)]
pub struct OtlpOptions {
    /// Requests need `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Largest body on the wire.
    pub max_body: usize,
    /// Largest body after gzip.
    pub max_decoded: usize,
    /// The whole body must arrive within this.
    pub body_timeout: Duration,
    /// The request head must arrive within this.
    pub header_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen queue.
    pub max_connections: usize,
    /// Body bytes all requests may hold at once.
    pub in_flight_bytes: usize,
    /// Bodies decoded at once.
    pub max_decoding: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for OtlpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpOptions")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("max_body", &self.max_body)
            .field("max_decoded", &self.max_decoded)
            .field("body_timeout", &self.body_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_connections", &self.max_connections)
            .field("in_flight_bytes", &self.in_flight_bytes)
            .field("max_decoding", &self.max_decoding)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl Default for OtlpOptions {
    fn default() -> Self {
        Self {
            token: None,
            max_body: 4 << 20,
            max_decoded: 16 << 20,
            body_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(5),
            max_connections: 64,
            in_flight_bytes: 64 << 20,
            max_decoding: 2,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// What the receiver and the envelope share: the store and the attribution.
#[derive(Debug)]
pub struct Telemetry {
    /// The per-job counters.
    pub store: Arc<Store>,
    /// The running jobs and their sockets.
    pub attributor: attrib::Attributor,
}

impl Telemetry {
    /// Telemetry for the running jobs of `source`, processes under `proc_root`.
    pub fn new(source: Arc<dyn Source>, proc_root: impl Into<PathBuf>) -> Arc<Self> {
        let store = Arc::new(Store::new());
        Arc::new(Self {
            attributor: attrib::Attributor::new(source, proc_root.into(), Arc::clone(&store)),
            store,
        })
    }
}

/// Serves the receiver on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    options: OtlpOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let port = local.port();
    // An agent's export to this listener is not a model call waiting for a reply.
    let _own = crate::net_wait::own_listener(local);
    let limits = Limits {
        max_connections: options.max_connections,
        header_read_timeout: options.header_read_timeout,
        // The body deadline answers first (408); this only catches the rest.
        request_timeout: options.body_timeout + Duration::from_secs(20),
        grace: options.shutdown_grace,
    };
    let receiver = Arc::new(receiver::Receiver::new(telemetry, options, port));
    edges::serve::serve(
        listener,
        move |req| Arc::clone(&receiver).handle(req),
        limits,
        shutdown,
    )
    .await
}

/// A receiver running on its own thread; stops when dropped or [`stop`](Self::stop)ped.
#[derive(Debug)]
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    /// The address it listens on.
    pub local_addr: std::net::SocketAddr,
}

impl Running {
    /// Stops accepting, drains within the grace period, joins the thread.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the OTLP receiver thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts the receiver on `listener` on a thread with its own runtime: one
/// worker for the connections, two blocking threads for decoding and
/// `/proc` reads.
pub fn spawn(
    listener: std::net::TcpListener,
    telemetry: Arc<Telemetry>,
    options: OtlpOptions,
) -> std::io::Result<Running> {
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(options.max_decoding.max(1) + 1)
        .thread_name("otlp")
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("otlp-receiver".to_owned())
        .spawn(move || {
            let grace = options.shutdown_grace;
            let result = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                serve(listener, telemetry, options, async move {
                    let _ = stopped.await;
                })
                .await
            });
            runtime.shutdown_timeout(grace);
            result
        })?;
    Ok(Running {
        stop: Some(stop),
        thread: Some(thread),
        local_addr,
    })
}
