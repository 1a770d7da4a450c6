//! The cost of TLS per poll (issue 20): one `GET /metrics` of a realistic
//! envelope (10 and 100 agents) from an in-process server behind the
//! emitter's own listener (`edges::serve::serve_guarded` with a
//! `--web.config.file`), over plain HTTP and HTTPS, with the connection
//! kept alive or a new one per poll, and with a client certificate.
//!
//! The client runs on this thread alone (a current-thread runtime; IP
//! literal URLs, so no resolver thread), so this thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) is the client's CPU per poll; the server
//! runs on its own thread and is not counted. Wall p50/p99 include the
//! server.
//!
//! ```sh
//! cargo bench -p watchdog --bench tls_poll     # TLS_POLL_REPS=300 by default
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use watchdog::config::Target;
use watchdog::poll::Poller;
use watchdog::tls::TlsConfig;

mod common;

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate,
/// and two web configs: TLS only, and TLS requiring a client certificate.
fn pki(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "bench CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    for (name, sans) in [("server", "127.0.0.1"), ("client", "watchdog")] {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![sans.to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    std::fs::write(
        dir.join("tls.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("mtls.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    )
    .unwrap();
}

/// Serves `body` on 127.0.0.1:0 through the emitter's listener on a
/// thread of its own; `web`: the web config file, none: plain HTTP.
fn server(body: Bytes, web: Option<&Path>) -> SocketAddr {
    let web = web.map(|p| edges::web_config::WebConfig::load(p).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let guard = edges::serve::Guard {
                web,
                defer_auth: false,
            };
            let service = move |_req| {
                let body = body.clone();
                async move {
                    hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .unwrap()
                }
            };
            edges::serve::serve_guarded(
                listener,
                service,
                edges::serve::Limits::default(),
                guard,
                std::future::pending(),
            )
            .await
            .unwrap();
        });
    });
    addr
}

/// How the client connects.
#[derive(Clone, Copy, PartialEq)]
enum Conn {
    /// The watchdog's own poller: no idle pool, a new connection per poll
    /// (rustls may resume the session).
    Poller,
    /// A pooled client: one connection kept alive across polls.
    KeepAlive,
    /// A new client per poll: a full handshake, no resumption.
    Fresh,
}

struct Case {
    name: &'static str,
    https: bool,
    client_cert: bool,
    conn: Conn,
}

const CASES: [Case; 7] = [
    Case {
        name: "http, keep-alive",
        https: false,
        client_cert: false,
        conn: Conn::KeepAlive,
    },
    Case {
        name: "http, new conn (watchdog)",
        https: false,
        client_cert: false,
        conn: Conn::Poller,
    },
    Case {
        name: "https, keep-alive",
        https: true,
        client_cert: false,
        conn: Conn::KeepAlive,
    },
    Case {
        name: "https, new conn (watchdog)",
        https: true,
        client_cert: false,
        conn: Conn::Poller,
    },
    Case {
        name: "https, full handshake",
        https: true,
        client_cert: false,
        conn: Conn::Fresh,
    },
    Case {
        name: "https+client cert, new conn (watchdog)",
        https: true,
        client_cert: true,
        conn: Conn::Poller,
    },
    Case {
        name: "https+client cert, full handshake",
        https: true,
        client_cert: true,
        conn: Conn::Fresh,
    },
];

fn tls(dir: &Path, client_cert: bool) -> TlsConfig {
    let d = |f: &str| dir.join(f).display().to_string();
    let mut text = format!("ca_file = {:?}\n", d("ca.crt"));
    if client_cert {
        text.push_str(&format!(
            "cert_file = {:?}\nkey_file = {:?}\n",
            d("client.crt"),
            d("client.key")
        ));
    }
    toml::from_str(&text).unwrap()
}

fn pooled(tls: Option<&TlsConfig>) -> reqwest::Client {
    watchdog::tls::client_builder(tls, "bench")
        .unwrap()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> usize {
    let resp = client.get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.bytes().await.unwrap().len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let reps: usize = std::env::var("TLS_POLL_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
        .max(10);
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:<40} {:>7} {:>9} {:>14} {:>11} {:>11}",
        "case", "agents", "bytes", "client CPU/poll", "wall p50", "wall p99"
    );
    for agents in [10, 100] {
        let body = Bytes::from(serde_json::to_vec(&common::envelope(agents, 60, 5)).unwrap());
        let plain = server(body.clone(), None);
        let tls_addr = server(body.clone(), Some(&dir.path().join("tls.yml")));
        let mtls_addr = server(body.clone(), Some(&dir.path().join("mtls.yml")));
        for case in &CASES {
            let (scheme, addr) = match (case.https, case.client_cert) {
                (false, _) => ("http", plain),
                (true, false) => ("https", tls_addr),
                (true, true) => ("https", mtls_addr),
            };
            let url = format!("{scheme}://{addr}/metrics");
            let tls = case.https.then(|| tls(dir.path(), case.client_cert));
            let target = Target {
                name: "bench".into(),
                url: url.clone(),
                token_file: None,
                token: None,
                tls: tls.clone(),
            };
            let poller = Poller::new(&target, Duration::from_secs(5)).unwrap();
            let keep = pooled(tls.as_ref());
            let mut walls = Vec::with_capacity(reps);
            let mut cpu = Duration::ZERO;
            let mut bytes = 0;
            // Warm-up: the first connection, the session cache.
            for _ in 0..5 {
                rt.block_on(async {
                    match case.conn {
                        Conn::Poller => drop(poller.fetch().await.unwrap()),
                        Conn::KeepAlive => drop(get(&keep, &url).await),
                        Conn::Fresh => drop(get(&pooled(tls.as_ref()), &url).await),
                    }
                });
            }
            for _ in 0..reps {
                // A fresh client is built outside the measurement: its cost
                // is a reload's, not a poll's.
                let fresh = (case.conn == Conn::Fresh).then(|| pooled(tls.as_ref()));
                let (c0, t0) = (thread_cpu(), Instant::now());
                bytes = rt.block_on(async {
                    match case.conn {
                        Conn::Poller => poller.fetch().await.unwrap().len(),
                        Conn::KeepAlive => get(&keep, &url).await,
                        Conn::Fresh => get(fresh.as_ref().unwrap(), &url).await,
                    }
                });
                walls.push(t0.elapsed());
                cpu += thread_cpu() - c0;
                drop(fresh);
            }
            walls.sort();
            println!(
                "{:<40} {:>7} {:>9} {:>11.0} µs {:>8.0} µs {:>8.0} µs",
                case.name,
                agents,
                bytes,
                cpu.as_secs_f64() * 1e6 / reps as f64,
                percentile(&walls, 0.5).as_secs_f64() * 1e6,
                percentile(&walls, 0.99).as_secs_f64() * 1e6,
            );
        }
    }
}
