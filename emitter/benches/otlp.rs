//! The OTLP receiver: records per second per core (decode, map and count,
//! one thread), memory per job, and `GET /metrics` latency at 100 running
//! agents with and without a telemetry flood on the receiver.
//!
//! `cargo bench -p emitter --bench otlp` (a plain binary: it prints one
//! line per figure). `OTLP_BENCH_SECONDS` sets each phase's length (3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emitter::otlp::decode::{self, Format, Signal};
use emitter::otlp::{OtlpOptions, Store, Telemetry, WithActivity};
use emitter::{ServeOptions, Source, SqliteSource};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/otlp_fixtures/captured/claude-code/loop-json/05-logs.json"
);

fn seconds() -> Duration {
    Duration::from_secs_f64(
        std::env::var("OTLP_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    )
}

/// A real Claude Code batch (the tool loop), re-encoded as protobuf, with
/// its job id set to `job`.
fn batch(job: i64) -> (Vec<u8>, Vec<u8>, usize) {
    let text = std::fs::read_to_string(FIXTURE).unwrap().replace(
        "\"stringValue\":\"42\"",
        &format!("\"stringValue\":\"{job}\""),
    );
    let req: ExportLogsServiceRequest = serde_json::from_str(&text).unwrap();
    let n = decode::records(Signal::Logs, Format::Json, text.as_bytes())
        .unwrap()
        .len();
    (req.encode_to_vec(), text.into_bytes(), n)
}

fn throughput() {
    let (pb, json, n) = batch(1);
    let store = Store::new();
    for (name, format, body) in [
        ("protobuf", Format::Protobuf, &pb),
        ("json", Format::Json, &json),
    ] {
        let until = Instant::now() + seconds();
        let started = Instant::now();
        let mut records = 0u64;
        while Instant::now() < until {
            let recs = decode::records(Signal::Logs, format, body).unwrap();
            store.add(1, &recs, shared_schema::Timestamp::now());
            records += recs.len() as u64;
        }
        let rate = records as f64 / started.elapsed().as_secs_f64();
        println!(
            "otlp {name}: {rate:.0} records/s on one core (decode + map + count; batches of {n} records, {} bytes)",
            body.len()
        );
    }
}

fn memory_per_job() {
    let store = Store::new();
    let (pb, _, _) = batch(1);
    let recs = decode::records(Signal::Logs, Format::Protobuf, &pb).unwrap();
    for job in 0..1000 {
        store.add(job, &recs, shared_schema::Timestamp::now());
    }
    println!(
        "otlp store: {} bytes per job (1,000 jobs after a Claude Code batch; per-job cap {} series, {} span ids)",
        store.approx_bytes() / 1000,
        emitter::otlp::store::MAX_SERIES_PER_JOB,
        emitter::otlp::store::SPAN_RING
    );
}

const SCHEMA: &str = shared_schema::state::REQUIRED_TABLES_SQL;

fn get(stream: &mut TcpStream, path: &str) -> usize {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: b\r\n\r\n").unwrap();
    read_response(stream)
}

/// Reads one response with Content-Length; returns the body length.
fn read_response(stream: &mut TcpStream) -> usize {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    len
}

fn latencies(addr: SocketAddr) -> (f64, f64, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut samples = Vec::new();
    let until = Instant::now() + seconds();
    let mut size = 0;
    while Instant::now() < until {
        let t = Instant::now();
        size = get(&mut stream, "/metrics");
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    let q = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    (q(0.5), q(0.99), size)
}

fn metrics_under_flood() {
    let agents = 100;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orch.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let me = std::process::id();
    for job in 1..=agents {
        conn.execute(
            "INSERT INTO jobs (id, agent, status, attempts, pid, started_at) VALUES (?1, 'dev', 'running', 1, ?2, datetime('now'))",
            rusqlite::params![job, me],
        )
        .unwrap();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let inner: Arc<dyn Source> = Arc::new(SqliteSource::new(&db));
    let telemetry = Telemetry::new(Arc::clone(&inner), "/proc");
    let otlp = emitter::otlp::spawn(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        Arc::clone(&telemetry),
        OtlpOptions::default(),
    )
    .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let source = WithActivity::new(inner, Arc::clone(&telemetry));
    let _server = runtime.spawn(emitter::serve(
        listener,
        Arc::new(source),
        ServeOptions::default(),
        std::future::pending::<()>(),
    ));
    let (p50, p99, size) = latencies(addr);
    println!("GET /metrics at {agents} agents, no telemetry: p50 {p50:.2} ms, p99 {p99:.2} ms ({size} bytes)");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let floods: Vec<_> = (0..2)
        .map(|i| {
            let (stop, sent, to) = (Arc::clone(&stop), Arc::clone(&sent), otlp.local_addr);
            std::thread::spawn(move || {
                let (pb, _, n) = batch(1 + i);
                let mut s = TcpStream::connect(to).unwrap();
                s.set_nodelay(true).unwrap();
                let mut request = format!(
                    "POST /v1/logs HTTP/1.1\r\nHost: b\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
                    pb.len()
                )
                .into_bytes();
                request.extend_from_slice(&pb);
                while !stop.load(Ordering::Relaxed) {
                    // One write: head and body apart would wait on delayed ACKs.
                    s.write_all(&request).unwrap();
                    read_response(&mut s);
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    let (p50, p99, size) = latencies(addr);
    let rate = sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for f in floods {
        f.join().unwrap();
    }
    println!(
        "GET /metrics at {agents} agents, under a flood of {rate:.0} records/s (2 senders): p50 {p50:.2} ms, p99 {p99:.2} ms ({size} bytes, activity on 2 agents)"
    );
    drop(otlp);
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    throughput();
    memory_per_job();
    metrics_under_flood();
}
