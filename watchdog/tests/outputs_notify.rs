//! Notification sinks against a real HTTP receiver on 127.0.0.1:0 that
//! records what it gets, fails on demand and answers slowly: deliveries,
//! retries, the rate limit, isolation between sinks, shutdown, and the
//! Alertmanager protocol. Every event is either delivered or comes back as
//! a `dropped` line, and the tests count both.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edges::dur::Dur;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use shared_schema::{AlertEvent, AlertLine, Severity, Timestamp};
use tokio::sync::mpsc;
use watchdog::exporter::Exporter;
use watchdog::notify::alertmanager::{AlertmanagerConfig, Heartbeat};
use watchdog::notify::webhook::WebhookConfig;
use watchdog::notify::{Notifier, NotifyConfig};

const DEADLINE: Duration = Duration::from_secs(10);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: String,
    body: Value,
}

#[derive(Debug, Default)]
struct State {
    requests: Mutex<Vec<Received>>,
    /// Every request is counted here, including failed ones.
    attempts: AtomicUsize,
    fail_next: AtomicUsize,
    /// Answer this many requests with 429 and `Retry-After: 1`.
    throttle_next: AtomicUsize,
    /// When each request arrived.
    arrivals: Mutex<Vec<Instant>>,
    always_fail: AtomicBool,
    delay_ms: AtomicU64,
}

/// A tiny HTTP receiver: answers 200 (or 500 on demand), optionally late,
/// and records the JSON bodies it accepted.
#[derive(Debug, Clone)]
struct Receiver {
    base: String,
    state: Arc<State>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(req, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::SeqCst)
    }

    fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    fn throttle_next(&self, n: usize) {
        self.state.throttle_next.store(n, Ordering::SeqCst);
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.state.arrivals.lock().unwrap().clone()
    }

    fn always_fail(&self) {
        self.state.always_fail.store(true, Ordering::SeqCst);
    }

    fn answer_after(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn handle(req: Request<hyper::body::Incoming>, state: &State) -> Response<Full<Bytes>> {
    // The Alertmanager sink's lookup before a first post (`GET
    // /api/v2/alerts`): no alert is active here. Not a delivery, so not
    // counted.
    if req.method() == hyper::Method::GET {
        return Response::new(Full::new(Bytes::from_static(b"[]")));
    }
    state.attempts.fetch_add(1, Ordering::SeqCst);
    state.arrivals.lock().unwrap().push(Instant::now());
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let failing = state.always_fail.load(Ordering::SeqCst)
        || state
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let mut resp = Response::new(Full::new(Bytes::new()));
    let throttled = state
        .throttle_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if throttled {
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
        return resp;
    }
    if failing {
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return resp;
    }
    state.requests.lock().unwrap().push(Received {
        path,
        content_type,
        body: serde_json::from_slice(&body).unwrap(),
    });
    resp
}

/// Waits for `cond` with a deadline; panics naming `what`.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Receives exactly `n` dropped lines (with a deadline).
async fn dropped_lines(rx: &mut mpsc::UnboundedReceiver<AlertLine>, n: usize) -> Vec<AlertLine> {
    let mut out = Vec::new();
    while out.len() < n {
        let line = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} dropped lines came back", out.len()))
            .unwrap();
        out.push(line);
    }
    out
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn line(event: AlertEvent, job: u32) -> AlertLine {
    AlertLine {
        ts: ts("2020-01-02T10:10:00Z"),
        event,
        rule: "stuck_agent".into(),
        severity: Severity::Warning,
        target: "orch-1".into(),
        key: format!("stuck_agent|orch-1|job={job}"),
        labels: [
            ("agent", "dev".to_owned()),
            ("job_id", job.to_string()),
            ("pid", String::new()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        summary: format!("agent dev (job {job}) is idle"),
        value: Some(0.003),
        threshold: Some(0.02),
        since: ts("2020-01-02T10:00:00Z"),
        diagnosis: None,
        sink: None,
    }
}

fn webhook(url: String) -> WebhookConfig {
    let mut cfg = WebhookConfig::new(url);
    cfg.delivery.timeout = Dur::secs(5);
    cfg.delivery.backoff = Dur(Duration::from_millis(5));
    cfg.delivery.backoff_max = Dur(Duration::from_millis(20));
    cfg
}

fn start(config: NotifyConfig) -> (Notifier, Exporter, mpsc::UnboundedReceiver<AlertLine>) {
    let exporter = Exporter::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let notifier = Notifier::start(&config, exporter.clone(), tx).unwrap();
    (notifier, exporter, rx)
}

fn webhooks(hooks: Vec<WebhookConfig>) -> NotifyConfig {
    NotifyConfig {
        webhook: hooks,
        ..NotifyConfig::default()
    }
}

/// `watchdog_notifications_total{sink,outcome}` as scraped.
fn counted(exporter: &Exporter, sink: &str, outcome: &str) -> f64 {
    let sink_label = format!("sink=\"{sink}\"");
    let outcome_label = format!("outcome=\"{outcome}\"");
    exporter
        .encode()
        .lines()
        .find(|l| {
            l.starts_with("watchdog_notifications_total{")
                && l.contains(&sink_label)
                && l.contains(&outcome_label)
        })
        .map_or(0.0, |l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
}

#[tokio::test]
async fn a_webhook_gets_every_event_as_one_json_line() {
    let rx_server = Receiver::start().await;
    let (notifier, exporter, mut dropped) = start(webhooks(vec![webhook(rx_server.url("/hook"))]));
    let events = [
        line(AlertEvent::Firing, 7),
        line(AlertEvent::Repeat, 7),
        line(AlertEvent::Resolved, 7),
    ];
    for e in &events {
        notifier.publish(e);
    }
    notifier.publish(&line(AlertEvent::Firing, 8).dropped("elsewhere", ts("2020-01-02T10:11:00Z")));
    wait_for("3 deliveries", || rx_server.requests().len() == 3).await;
    let got = rx_server.requests();
    for (req, want) in got.iter().zip(&events) {
        assert_eq!(req.path, "/hook");
        assert_eq!(req.content_type, "application/json");
        let back: AlertLine = serde_json::from_value(req.body.clone()).unwrap();
        assert_eq!(&back, want);
    }
    wait_for("delivered counted", || {
        counted(&exporter, "webhook[0]", "delivered") == 3.0
    })
    .await;
    notifier.shutdown(Duration::from_secs(1)).await;
    assert!(dropped.try_recv().is_err(), "nothing dropped");
    assert_eq!(rx_server.attempts(), 3, "dropped lines are not notified");
}

#[tokio::test]
async fn a_batching_webhook_posts_arrays() {
    let rx_server = Receiver::start().await;
    let mut cfg = webhook(rx_server.url("/"));
    cfg.batch = Some(4);
    let (notifier, _exporter, _dropped) = start(webhooks(vec![cfg]));
    // Published without yielding, so all six wait in the queue together.
    for job in 0..6 {
        notifier.publish(&line(AlertEvent::Firing, job));
    }
    wait_for("two batches", || rx_server.requests().len() == 2).await;
    let sizes: Vec<usize> = rx_server
        .requests()
        .iter()
        .map(|r| r.body.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [4, 2]);
    let first: Vec<AlertLine> =
        serde_json::from_value(rx_server.requests()[0].body.clone()).unwrap();
    assert_eq!(first[0].key, "stuck_agent|orch-1|job=0");
}

#[tokio::test]
async fn failures_are_retried_with_backoff_until_delivered() {
    let rx_server = Receiver::start().await;
    rx_server.fail_next(2);
    let mut cfg = webhook(rx_server.url("/"));
    cfg.delivery.max_retries = 3;
    let (notifier, exporter, mut dropped) = start(webhooks(vec![cfg]));
    notifier.publish(&line(AlertEvent::Firing, 7));
    wait_for("delivery after retries", || rx_server.requests().len() == 1).await;
    assert_eq!(rx_server.attempts(), 3);
    assert_eq!(counted(&exporter, "webhook[0]", "retried"), 2.0);
    wait_for("delivered counted", || {
        counted(&exporter, "webhook[0]", "delivered") == 1.0
    })
    .await;
    notifier.shutdown(Duration::from_secs(1)).await;
    assert!(dropped.try_recv().is_err());
}

#[tokio::test]
async fn an_event_still_failing_after_its_retries_comes_back_dropped() {
    let rx_server = Receiver::start().await;
    rx_server.always_fail();
    let mut cfg = webhook(rx_server.url("/"));
    cfg.delivery.max_retries = 2;
    let (notifier, exporter, mut dropped) = start(webhooks(vec![cfg]));
    let event = line(AlertEvent::Firing, 7);
    notifier.publish(&event);
    let back = dropped_lines(&mut dropped, 1).await;
    assert_eq!(back[0].event, AlertEvent::Dropped);
    assert_eq!(back[0].sink.as_deref(), Some("webhook[0]"));
    assert_eq!(back[0].key, event.key);
    assert_eq!(back[0].labels, event.labels);
    assert_eq!(rx_server.attempts(), 3, "one try and two retries");
    assert_eq!(counted(&exporter, "webhook[0]", "dropped"), 1.0);
    assert_eq!(counted(&exporter, "webhook[0]", "delivered"), 0.0);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    // A receiver that is not there at all: connection refused is retried,
    // so use a 4xx from a path-less server instead: a plain TCP listener
    // that answers 400.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = StatusCode::BAD_REQUEST;
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let (notifier, _exporter, mut dropped) = start(webhooks(vec![webhook(url)]));
    notifier.publish(&line(AlertEvent::Firing, 7));
    dropped_lines(&mut dropped, 1).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_rate_limit_holds_and_the_excess_is_dropped() {
    let rx_server = Receiver::start().await;
    let mut cfg = webhook(rx_server.url("/"));
    // A burst of 3, then one every 20 s: the test never sees a refill.
    cfg.delivery.rate = Some("3/min".parse().unwrap());
    let (notifier, exporter, mut dropped) = start(webhooks(vec![cfg]));
    for job in 0..10 {
        notifier.publish(&line(AlertEvent::Firing, job));
    }
    let back = dropped_lines(&mut dropped, 7).await;
    wait_for("3 deliveries", || rx_server.requests().len() == 3).await;
    notifier.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        rx_server.attempts(),
        3,
        "never more requests than the quota"
    );
    assert!(dropped.try_recv().is_err(), "exactly 7 dropped");
    assert!(back.iter().all(|l| l.sink.as_deref() == Some("webhook[0]")));
    assert_eq!(counted(&exporter, "webhook[0]", "delivered"), 3.0);
    assert_eq!(counted(&exporter, "webhook[0]", "dropped"), 7.0);
}

#[tokio::test]
async fn a_full_queue_drops_at_once_and_publish_never_waits() {
    let rx_server = Receiver::start().await;
    rx_server.answer_after(Duration::from_millis(200));
    let mut cfg = webhook(rx_server.url("/"));
    cfg.delivery.queue = 2;
    let (notifier, exporter, mut dropped) = start(webhooks(vec![cfg]));
    let started = Instant::now();
    // Published without yielding: the worker has not taken anything yet.
    for job in 0..10 {
        notifier.publish(&line(AlertEvent::Firing, job));
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "publish waited"
    );
    let back = dropped_lines(&mut dropped, 8).await;
    let keys: Vec<&str> = back.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(
        keys[0], "stuck_agent|orch-1|job=2",
        "the overflow is dropped, in order"
    );
    wait_for("the 2 queued are delivered", || {
        rx_server.requests().len() == 2
    })
    .await;
    wait_for("counted", || {
        counted(&exporter, "webhook[0]", "delivered") == 2.0
    })
    .await;
    assert_eq!(counted(&exporter, "webhook[0]", "dropped"), 8.0);
    assert!(dropped.try_recv().is_err());
}

#[tokio::test]
async fn a_dead_sink_delays_nothing_else() {
    let slow = Receiver::start().await;
    slow.answer_after(Duration::from_secs(30));
    let fast = Receiver::start().await;
    let mut dead = webhook(slow.url("/"));
    dead.delivery.timeout = Dur::secs(60);
    let mut live = webhook(fast.url("/"));
    live.name = Some("chat".into());
    let (notifier, exporter, _dropped) = start(webhooks(vec![dead, live]));
    let started = Instant::now();
    for job in 0..3 {
        notifier.publish(&line(AlertEvent::Firing, job));
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "publish waited"
    );
    wait_for("the live sink gets all 3", || fast.requests().len() == 3).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the live sink was held up by the dead one"
    );
    assert_eq!(slow.requests().len(), 0, "the dead one is still stuck");
    assert_eq!(counted(&exporter, "chat", "delivered"), 3.0);
}

#[tokio::test]
async fn shutdown_flushes_what_it_can_and_drops_the_rest() {
    // Fast receiver: everything queued goes out before the deadline.
    let fast = Receiver::start().await;
    let (notifier, _exporter, mut dropped) = start(webhooks(vec![webhook(fast.url("/"))]));
    for job in 0..5 {
        notifier.publish(&line(AlertEvent::Firing, job));
    }
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(fast.requests().len(), 5);
    assert!(dropped.try_recv().is_err());

    // Stuck receiver: the one in flight and the queued ones come back.
    let stuck = Receiver::start().await;
    stuck.answer_after(Duration::from_secs(30));
    let mut cfg = webhook(stuck.url("/"));
    cfg.delivery.timeout = Dur::secs(60);
    let (notifier, exporter, mut dropped) = start(webhooks(vec![cfg]));
    for job in 0..4 {
        notifier.publish(&line(AlertEvent::Firing, job));
    }
    wait_for("the first request in flight", || stuck.attempts() == 1).await;
    let started = Instant::now();
    notifier.shutdown(Duration::from_millis(200)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown overran its deadline"
    );
    let back = dropped_lines(&mut dropped, 4).await;
    let mut keys: Vec<String> = back.into_iter().map(|l| l.key).collect();
    keys.sort();
    let mut want: Vec<String> = (0..4)
        .map(|j| format!("stuck_agent|orch-1|job={j}"))
        .collect();
    want.sort();
    assert_eq!(keys, want, "every event delivered or dropped, none twice");
    assert_eq!(counted(&exporter, "webhook[0]", "dropped"), 4.0);
}

fn alertmanager(urls: Vec<String>, resend: Duration) -> NotifyConfig {
    let mut cfg = AlertmanagerConfig::new(urls);
    cfg.resend_interval = Dur(resend);
    cfg.timeout = Dur(Duration::from_secs(2));
    cfg.max_retries = 1;
    cfg.backoff = Dur(Duration::from_millis(5));
    cfg.backoff_max = Dur(Duration::from_millis(10));
    cfg.generator_url = Some("http://watchdog.example:9465/metrics".into());
    NotifyConfig {
        alertmanager: Some(cfg),
        ..NotifyConfig::default()
    }
}

/// Every alert the Alertmanager received, flattened, in order.
fn am_alerts(am: &Receiver) -> Vec<Value> {
    am.requests()
        .into_iter()
        .inspect(|r| assert_eq!(r.path, "/api/v2/alerts"))
        .flat_map(|r| r.body.as_array().unwrap().clone())
        .collect()
}

fn alertname_of(alert: &Value) -> &str {
    alert["labels"]["alertname"].as_str().unwrap()
}

fn job_of(alert: &Value) -> &str {
    alert["labels"]["job_id"].as_str().unwrap_or("")
}

#[tokio::test]
async fn alertmanager_gets_labels_annotations_and_times_right() {
    let am = Receiver::start().await;
    let resend = Duration::from_secs(60);
    let (notifier, exporter, _dropped) = start(alertmanager(vec![am.base.clone()], resend));
    let firing = line(AlertEvent::Firing, 7);
    let before = Timestamp::now();
    notifier.publish(&firing);
    wait_for("the firing alert", || am_alerts(&am).len() == 1).await;
    let after = Timestamp::now();
    let alert = &am_alerts(&am)[0];
    let labels: BTreeMap<String, String> = serde_json::from_value(alert["labels"].clone()).unwrap();
    let want: BTreeMap<String, String> = [
        ("alertname", "stuck_agent"),
        ("severity", "warning"),
        ("target", "orch-1"),
        ("agent", "dev"),
        ("job_id", "7"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(
        labels, want,
        "identifying labels only; the empty pid is left out"
    );
    assert_eq!(alert["annotations"]["summary"], "agent dev (job 7) is idle");
    assert_eq!(alert["annotations"]["value"], "0.003");
    assert_eq!(alert["startsAt"], "2020-01-02T10:00:00.000Z");
    assert_eq!(
        alert["generatorURL"],
        "http://watchdog.example:9465/metrics"
    );
    let ends_at = ts(alert["endsAt"].as_str().unwrap());
    let horizon = 4.0 * resend.as_secs_f64();
    assert!(
        ends_at.seconds_since(&before) >= horizon - 0.01,
        "{ends_at} vs {before}"
    );
    assert!(
        ends_at.seconds_since(&after) <= horizon + 0.01,
        "{ends_at} vs {after}"
    );

    let mut resolved = line(AlertEvent::Resolved, 7);
    resolved.ts = ts("2020-01-02T10:20:00.250Z");
    notifier.publish(&resolved);
    wait_for("the resolved alert", || am_alerts(&am).len() == 2).await;
    let alert = &am_alerts(&am)[1];
    assert_eq!(alert["labels"]["alertname"], "stuck_agent");
    assert_eq!(
        alert["endsAt"], "2020-01-02T10:20:00.250Z",
        "endsAt = resolution time"
    );
    assert_eq!(alert["startsAt"], "2020-01-02T10:00:00.000Z");
    wait_for("counted", || {
        counted(&exporter, "alertmanager[0]", "delivered") == 2.0
    })
    .await;
}

#[tokio::test]
async fn alertmanager_resends_firing_alerts_and_forgets_resolved_ones() {
    let am = Receiver::start().await;
    let (notifier, _exporter, _dropped) = start(alertmanager(
        vec![am.base.clone()],
        Duration::from_millis(100),
    ));
    notifier.publish(&line(AlertEvent::Firing, 7));
    notifier.publish(&line(AlertEvent::Firing, 8));
    wait_for("two re-sends of job 7", || {
        am_alerts(&am).iter().filter(|a| job_of(a) == "7").count() >= 3
    })
    .await;
    notifier.publish(&line(AlertEvent::Resolved, 7));
    wait_for("the resolution", || {
        am_alerts(&am)
            .iter()
            .any(|a| job_of(a) == "7" && a["endsAt"] == "2020-01-02T10:10:00.000Z")
    })
    .await;
    let seen = am_alerts(&am).len();
    wait_for("two more re-sends of job 8", || {
        am_alerts(&am)[seen..]
            .iter()
            .filter(|a| job_of(a) == "8")
            .count()
            >= 2
    })
    .await;
    assert!(
        am_alerts(&am)[seen..].iter().all(|a| job_of(a) == "8"),
        "a resolved alert is not re-sent"
    );
    // Every re-send pushes endsAt ahead again.
    let ends: Vec<Timestamp> = am_alerts(&am)
        .iter()
        .filter(|a| job_of(a) == "8")
        .map(|a| ts(a["endsAt"].as_str().unwrap()))
        .collect();
    assert!(ends.windows(2).all(|w| w[0] <= w[1]), "{ends:?}");
}

#[tokio::test]
async fn sync_firing_pushes_the_whole_set_at_once() {
    let am = Receiver::start().await;
    let (notifier, _exporter, _dropped) = start(alertmanager(
        vec![am.base.clone()],
        Duration::from_secs(3600),
    ));
    notifier.sync_firing(&[
        Arc::new(line(AlertEvent::Firing, 1)),
        Arc::new(line(AlertEvent::Repeat, 2)),
    ]);
    wait_for("the synced alerts", || am_alerts(&am).len() == 2).await;
    let mut jobs: Vec<String> = am_alerts(&am)
        .iter()
        .map(|a| job_of(a).to_owned())
        .collect();
    jobs.sort();
    assert_eq!(jobs, ["1", "2"]);
}

#[tokio::test]
async fn one_dead_alertmanager_does_not_block_its_peer() {
    let live = Receiver::start().await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead); // connection refused from now on
    let (notifier, exporter, mut dropped) = start(alertmanager(
        vec![dead_url, live.base.clone()],
        Duration::from_secs(3600),
    ));
    notifier.publish(&line(AlertEvent::Firing, 7));
    wait_for("the live peer gets it", || am_alerts(&live).len() == 1).await;
    let back = dropped_lines(&mut dropped, 1).await;
    assert_eq!(back[0].sink.as_deref(), Some("alertmanager[0]"));
    assert_eq!(counted(&exporter, "alertmanager[0]", "dropped"), 1.0);
    wait_for("counted", || {
        counted(&exporter, "alertmanager[1]", "delivered") == 1.0
    })
    .await;
    assert!(dropped.try_recv().is_err());
}

#[tokio::test]
async fn the_heartbeat_always_fires() {
    let am = Receiver::start().await;
    let mut config = alertmanager(vec![am.base.clone()], Duration::from_secs(3600));
    if let Some(cfg) = config.alertmanager.as_mut() {
        cfg.heartbeat = Heartbeat::Every(Duration::from_millis(50));
    }
    let (_notifier, _exporter, _dropped) = start(config);
    wait_for("three heartbeats", || {
        am_alerts(&am)
            .iter()
            .filter(|a| alertname_of(a) == "WatchdogHeartbeat")
            .count()
            >= 3
    })
    .await;
    let alerts = am_alerts(&am);
    let beat = &alerts[0];
    assert_eq!(beat["labels"]["severity"], "none");
    let starts = ts(beat["startsAt"].as_str().unwrap());
    let ends = ts(beat["endsAt"].as_str().unwrap());
    assert!(ends > starts);
    assert!(
        ends.seconds_since(&Timestamp::now()) <= 0.2 + 0.05,
        "expires soon without refresh"
    );
}

#[tokio::test]
async fn a_resolution_that_failed_still_reaches_alertmanager() {
    let am = Receiver::start().await;
    let (notifier, exporter, _dropped) = start(alertmanager(
        vec![am.base.clone()],
        Duration::from_millis(100),
    ));
    notifier.publish(&line(AlertEvent::Firing, 7));
    wait_for("the firing alert", || am_alerts(&am).len() == 1).await;
    // The first try and its one retry fail, whichever send they hit.
    am.fail_next(2);
    let mut resolved = line(AlertEvent::Resolved, 7);
    resolved.ts = ts("2020-01-02T10:30:00Z");
    notifier.publish(&resolved);
    wait_for("the resolution", || {
        am_alerts(&am)
            .iter()
            .any(|a| a["endsAt"] == "2020-01-02T10:30:00.000Z")
    })
    .await;
    // Each event was either delivered or reported dropped, never both lost.
    let accounted = || {
        counted(&exporter, "alertmanager[0]", "delivered")
            + counted(&exporter, "alertmanager[0]", "dropped")
    };
    wait_for("both events accounted for", || accounted() == 2.0).await;
}

#[tokio::test]
async fn an_alert_that_left_the_synced_set_is_no_longer_resent() {
    let am = Receiver::start().await;
    let (notifier, _exporter, _dropped) = start(alertmanager(
        vec![am.base.clone()],
        Duration::from_millis(50),
    ));
    notifier.publish(&line(AlertEvent::Firing, 7));
    notifier.publish(&line(AlertEvent::Firing, 8));
    wait_for("both firing", || am_alerts(&am).len() >= 2).await;
    // Job 7's resolution never reached the sink (say, a full queue); the
    // next sync carries the truth.
    notifier.sync_firing(&[Arc::new(line(AlertEvent::Firing, 8))]);
    let has_7 = |r: &Received| r.body.as_array().unwrap().iter().any(|a| job_of(a) == "7");
    let mut first_clean = None;
    wait_for("three re-sends without job 7", || {
        let reqs = am.requests();
        let start = *first_clean.get_or_insert(reqs.len());
        match reqs[start..].iter().position(|r| !has_7(r)) {
            Some(i) => reqs.len() >= start + i + 3,
            None => false,
        }
    })
    .await;
    let reqs = am.requests();
    let start = first_clean.unwrap_or(0);
    let clean = reqs[start..].iter().position(|r| !has_7(r)).unwrap() + start;
    assert!(reqs[clean..].iter().all(|r| !has_7(r)), "job 7 came back");
    assert!(reqs[clean..].iter().all(|r| r
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|a| job_of(a) == "8")));
}

/// Issue 15 item 13: absurd durations (a resend interval or a shutdown
/// deadline past what an `Instant` holds) neither panic the sink nor the
/// shutdown; what was queued is delivered.
#[tokio::test]
async fn huge_durations_never_overflow_an_instant() {
    let am = Receiver::start().await;
    let hook = Receiver::start().await;
    let mut config = alertmanager(vec![am.base.clone()], Duration::MAX);
    config.webhook = vec![webhook(hook.url("/"))];
    let (notifier, _exporter, mut dropped) = start(config);
    notifier.publish(&line(AlertEvent::Firing, 1));
    wait_for("the webhook delivery", || hook.requests().len() == 1).await;
    wait_for("the alertmanager delivery", || !am_alerts(&am).is_empty()).await;
    notifier.shutdown(Duration::MAX).await;
    assert!(dropped.try_recv().is_err(), "nothing was dropped");
}

#[tokio::test]
async fn a_diagnosis_reaches_the_webhook_and_alertmanager_as_an_annotation() {
    let sentence = "cat (pid 4242) is blocked reading stdin (pipe)";
    let mut firing = line(AlertEvent::Firing, 7);
    watchdog::diagnose::complete(&mut firing, sentence.to_owned());
    assert_eq!(
        firing.summary,
        format!("agent dev (job 7) is idle: {sentence}")
    );

    let hook = Receiver::start().await;
    let (notifier, _exporter, _dropped) = start(webhooks(vec![webhook(hook.url("/hook"))]));
    notifier.publish(&firing);
    wait_for("the webhook delivery", || hook.requests().len() == 1).await;
    let body = &hook.requests()[0].body;
    assert_eq!(body["diagnosis"], sentence);
    assert_eq!(body["summary"], firing.summary.as_str());
    notifier.shutdown(Duration::from_secs(1)).await;

    let am = Receiver::start().await;
    let (notifier, _exporter, _dropped) =
        start(alertmanager(vec![am.base.clone()], Duration::from_secs(60)));
    notifier.publish(&firing);
    wait_for("the firing alert", || am_alerts(&am).len() == 1).await;
    let alert = &am_alerts(&am)[0];
    assert_eq!(alert["annotations"]["diagnosis"], sentence);
    assert_eq!(alert["annotations"]["summary"], firing.summary.as_str());
    // A line without one has no such annotation (not an empty one).
    notifier.publish(&line(AlertEvent::Firing, 8));
    wait_for("the second alert", || am_alerts(&am).len() == 2).await;
    assert!(am_alerts(&am)[1]["annotations"].get("diagnosis").is_none());
    notifier.shutdown(Duration::from_secs(1)).await;
}

/// Slack's documented shape of an incoming-webhook message: `text` and/or
/// `blocks` (at most 50), sections with a text object of at most 3000
/// characters, context blocks with 1-10 text elements.
fn check_slack_message(body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("not an object")?;
    let allowed = [
        "text",
        "blocks",
        "attachments",
        "thread_ts",
        "mrkdwn",
        "username",
        "icon_emoji",
        "icon_url",
        "channel",
    ];
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown key {k}"));
    }
    let text_ok = obj
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    let blocks = obj.get("blocks").and_then(Value::as_array);
    if !text_ok && blocks.is_none() {
        return Err("needs text or blocks".into());
    }
    let text_object = |t: &Value| -> Result<(), String> {
        let kind = t["type"].as_str().ok_or("text object without type")?;
        if !["mrkdwn", "plain_text"].contains(&kind) {
            return Err(format!("text type {kind}"));
        }
        let text = t["text"].as_str().ok_or("text object without text")?;
        if text.is_empty() || text.chars().count() > 3000 {
            return Err(format!("text of {} characters", text.chars().count()));
        }
        Ok(())
    };
    for block in blocks.into_iter().flatten() {
        match block["type"].as_str() {
            Some("section") => text_object(&block["text"])?,
            Some("context") => {
                let els = block["elements"]
                    .as_array()
                    .ok_or("context without elements")?;
                if els.is_empty() || els.len() > 10 {
                    return Err(format!("context with {} elements", els.len()));
                }
                for e in els {
                    text_object(e)?;
                }
            }
            other => return Err(format!("block type {other:?}")),
        }
    }
    if blocks.is_some_and(|b| b.len() > 50) {
        return Err("more than 50 blocks".into());
    }
    Ok(())
}

/// PagerDuty Events API v2's documented shape of an event.
fn check_pagerduty_event(body: &Value) -> Result<(), String> {
    let key = body["routing_key"].as_str().ok_or("routing_key")?;
    if key.is_empty() {
        return Err("empty routing_key".into());
    }
    let action = body["event_action"].as_str().ok_or("event_action")?;
    let dedup = body["dedup_key"].as_str().ok_or("dedup_key")?;
    if dedup.is_empty() || dedup.len() > 255 {
        return Err(format!("dedup_key of {} bytes", dedup.len()));
    }
    match action {
        "trigger" => {
            let p = body["payload"]
                .as_object()
                .ok_or("trigger without payload")?;
            let summary = p
                .get("summary")
                .and_then(Value::as_str)
                .ok_or("payload.summary")?;
            if summary.is_empty() || summary.chars().count() > 1024 {
                return Err("payload.summary length".into());
            }
            if p.get("source")
                .and_then(Value::as_str)
                .map_or(true, str::is_empty)
            {
                return Err("payload.source".into());
            }
            let sev = p
                .get("severity")
                .and_then(Value::as_str)
                .ok_or("payload.severity")?;
            if !["critical", "error", "warning", "info"].contains(&sev) {
                return Err(format!("payload.severity {sev}"));
            }
            if let Some(ts) = p.get("timestamp") {
                Timestamp::parse(ts.as_str().ok_or("payload.timestamp")?)
                    .map_err(|e| e.to_string())?;
            }
            if p.get("custom_details").is_some_and(|d| !d.is_object()) {
                return Err("payload.custom_details".into());
            }
        }
        "acknowledge" | "resolve" => {}
        other => return Err(format!("event_action {other}")),
    }
    Ok(())
}

fn receivers(slack_url: String, pd_url: String) -> NotifyConfig {
    let fast =
        |t: &str| format!("{t}timeout = \"5s\"\nbackoff = \"5ms\"\nbackoff_max = \"20ms\"\n");
    let text = format!(
        "[[slack]]\nurl = {slack_url:?}\n{}[[pagerduty]]\nrouting_key = \"R0UT1NGKEY0123456789abcdefABCDEF\"\nurl = {pd_url:?}\n{}",
        fast(""),
        fast("")
    );
    let cfg: NotifyConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    cfg
}

#[tokio::test]
async fn slack_and_pagerduty_get_their_own_documented_bodies() {
    let slack = Receiver::start().await;
    let pd = Receiver::start().await;
    let (notifier, exporter, mut dropped) = start(receivers(
        slack.url("/services/T000/B000/x"),
        pd.url("/v2/enqueue"),
    ));
    let mut hostile = line(AlertEvent::Firing, 7);
    hostile.summary = "agent <!channel> & co (job 7) used 0.0% CPU".into();
    let events = [
        hostile,
        line(AlertEvent::Repeat, 7),
        line(AlertEvent::Resolved, 7),
    ];
    for e in &events {
        notifier.publish(e);
    }
    wait_for("3 slack messages", || slack.requests().len() == 3).await;
    wait_for("3 pagerduty events", || pd.requests().len() == 3).await;

    for r in slack.requests() {
        assert_eq!(r.content_type, "application/json");
        check_slack_message(&r.body).unwrap_or_else(|e| panic!("slack body {}: {e}", r.body));
    }
    let first = slack.requests()[0].body.to_string();
    assert!(!first.contains("<!channel>"), "escaped: {first}");
    let texts: Vec<String> = slack
        .requests()
        .iter()
        .map(|r| r.body["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        texts[0].starts_with("FIRING stuck_agent (warning) on orch-1: agent &lt;!channel&gt;"),
        "{texts:?}"
    );
    assert!(texts[1].starts_with("STILL FIRING"), "{texts:?}");
    assert!(texts[2].starts_with("RESOLVED"), "{texts:?}");

    let got: Vec<Value> = pd.requests().into_iter().map(|r| r.body).collect();
    for e in &got {
        check_pagerduty_event(e).unwrap_or_else(|err| panic!("pagerduty body {e}: {err}"));
    }
    let actions: Vec<&str> = got
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "trigger", "resolve"]);
    let keys: Vec<&str> = got
        .iter()
        .map(|e| e["dedup_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["stuck_agent|orch-1|job=7"; 3]);
    assert_eq!(
        got[0]["payload"]["custom_details"]["key"],
        "stuck_agent|orch-1|job=7"
    );

    // A sink counts a delivery once it has read the answer, just after
    // the fake server recorded the request.
    wait_for("3 deliveries counted per sink", || {
        counted(&exporter, "slack[0]", "delivered") >= 3.0
            && counted(&exporter, "pagerduty[0]", "delivered") >= 3.0
    })
    .await;
    assert_eq!(counted(&exporter, "slack[0]", "delivered"), 3.0);
    assert_eq!(counted(&exporter, "pagerduty[0]", "delivered"), 3.0);
    notifier.shutdown(Duration::from_secs(1)).await;
    assert!(dropped.try_recv().is_err(), "nothing dropped");
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_delivered() {
    let slack = Receiver::start().await;
    let pd = Receiver::start().await;
    pd.throttle_next(1);
    let (notifier, _exporter, mut dropped) =
        start(receivers(slack.url("/hook"), pd.url("/v2/enqueue")));
    notifier.publish(&line(AlertEvent::Firing, 9));
    wait_for("the event after the 429", || pd.requests().len() == 1).await;
    let at = pd.arrivals();
    assert_eq!(at.len(), 2, "one 429, one accepted");
    let waited = at[1] - at[0];
    // The sink's own backoff is at most 20 ms here: only Retry-After explains a second.
    assert!(
        waited >= Duration::from_millis(990),
        "retried after {waited:?}, not after Retry-After: 1"
    );
    assert_eq!(pd.requests()[0].body["event_action"], "trigger");
    notifier.shutdown(Duration::from_secs(1)).await;
    assert!(dropped.try_recv().is_err(), "nothing dropped");
}

/// The storm of the fleet issue: the model API is down and every agent
/// hangs at once. With grouping on, each sink gets one message per group.
#[tokio::test]
async fn a_storm_of_ten_thousand_alerts_is_one_message_per_group() {
    let hook = Receiver::start().await;
    let slack = Receiver::start().await;
    let pd = Receiver::start().await;
    let grouped = "group_by = [\"rule\"]\ngroup_wait = \"300ms\"\ngroup_interval = \"300ms\"\n";
    let text = format!(
        "[[webhook]]\nurl = {:?}\n{grouped}[[slack]]\nurl = {:?}\n{grouped}[[pagerduty]]\nrouting_key = \"R0UT1NGKEY\"\nurl = {:?}\n{grouped}",
        hook.url("/hook"),
        slack.url("/slack"),
        pd.url("/v2/enqueue"),
    );
    let config: NotifyConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    let (notifier, exporter, mut dropped) = start(config);
    for job in 0..10_000 {
        notifier.publish(&line(AlertEvent::Firing, job));
    }
    wait_for("one grouped webhook message", || hook.requests().len() == 1).await;
    wait_for("one slack message", || slack.requests().len() == 1).await;
    wait_for("one pagerduty event", || pd.requests().len() == 1).await;
    let body = &hook.requests()[0].body;
    assert_eq!(body["group_key"], "rule=stuck_agent");
    assert_eq!(body["firing"], 10_000);
    assert_eq!(body["alerts"].as_array().unwrap().len(), 100);
    assert_eq!(body["truncated"], 9_900);
    let s = &slack.requests()[0].body;
    check_slack_message(s).unwrap_or_else(|e| panic!("slack body {s}: {e}"));
    assert_eq!(s["text"], "FIRING 10000 firing, 0 resolved: stuck_agent");
    let p = &pd.requests()[0].body;
    check_pagerduty_event(p).unwrap_or_else(|e| panic!("pagerduty body {p}: {e}"));
    assert_eq!(p["event_action"], "trigger");
    assert_eq!(p["dedup_key"], "group|rule=stuck_agent");
    wait_for("10000 counted as delivered", || {
        counted(&exporter, "webhook[0]", "delivered") == 10_000.0
    })
    .await;

    for job in 0..10_000 {
        notifier.publish(&line(AlertEvent::Resolved, job));
    }
    wait_for("the resolving webhook message", || {
        hook.requests().len() == 2
    })
    .await;
    wait_for("the resolving pagerduty event", || pd.requests().len() == 2).await;
    let body = &hook.requests()[1].body;
    assert_eq!(
        (body["firing"].as_u64(), body["resolved"].as_u64()),
        (Some(0), Some(10_000))
    );
    let p = &pd.requests()[1].body;
    assert_eq!(
        (p["event_action"].as_str(), p["dedup_key"].as_str()),
        (Some("resolve"), Some("group|rule=stuck_agent"))
    );
    notifier.shutdown(Duration::from_secs(1)).await;
    assert!(dropped.try_recv().is_err(), "nothing dropped");
    assert_eq!(hook.requests().len(), 2, "no message per alert");
}

#[tokio::test]
async fn grouped_events_still_queued_at_shutdown_go_out() {
    let hook = Receiver::start().await;
    let mut cfg = webhook(hook.url("/hook"));
    cfg.grouping.group_wait = Some(Dur::secs(3600));
    let (notifier, _exporter, mut dropped) = start(webhooks(vec![cfg]));
    notifier.publish(&line(AlertEvent::Firing, 1));
    notifier.publish(&line(AlertEvent::Firing, 2));
    notifier.shutdown(Duration::from_secs(5)).await;
    let got = hook.requests();
    assert_eq!(got.len(), 1, "one message for the group");
    assert_eq!(got[0].body["firing"], 2);
    assert!(dropped.try_recv().is_err(), "nothing dropped");
}

/// Issue 24: every SIGHUP builds a new notifier, and its Alertmanager sink
/// used to re-post the whole firing set and the heartbeat at once (218
/// posts after 700 signals). Twenty reloads that change nothing post
/// nothing; an alert Alertmanager does not have yet still goes at once.
#[tokio::test]
async fn reloads_that_change_nothing_repost_nothing_to_alertmanager() {
    let am = Receiver::start().await;
    let mut config = alertmanager(vec![am.base.clone()], Duration::from_secs(3600));
    if let Some(cfg) = config.alertmanager.as_mut() {
        cfg.heartbeat = Heartbeat::Every(Duration::from_secs(3600));
    }
    let (first, exporter, _dropped) = start(config.clone());
    let firing = [
        Arc::new(line(AlertEvent::Firing, 7)),
        Arc::new(line(AlertEvent::Firing, 8)),
    ];
    first.sync_firing(&firing);
    wait_for("the set and the heartbeat, noted as accepted", || {
        let alerts = am_alerts(&am);
        ["7", "8"]
            .iter()
            .all(|j| alerts.iter().any(|a| job_of(a) == *j))
            && alerts
                .iter()
                .any(|a| alertname_of(a) == "WatchdogHeartbeat")
            // The receiver has a post before the sink has its answer; a
            // reload in between would rightly post again.
            && counted(&exporter, "alertmanager[0]", "resent") == alerts.len() as f64
    })
    .await;
    let before = am.attempts();
    // As `run` reloads: a new notifier, synced with the engine's firing
    // set; the ones it replaced are still draining meanwhile.
    let mut current = first;
    let mut retiring = Vec::new();
    for _ in 0..20 {
        let (tx, _rx) = mpsc::unbounded_channel();
        let next = Notifier::start(&config, exporter.clone(), tx).unwrap();
        next.sync_firing(&firing);
        retiring.push(std::mem::replace(&mut current, next));
        tokio::task::yield_now().await;
    }
    // A new alert still goes at once (with the set it joins); it is also
    // the barrier: the sinks before it had their turn.
    let mut more = firing.to_vec();
    more.push(Arc::new(line(AlertEvent::Firing, 9)));
    current.sync_firing(&more);
    wait_for("job 9", || am_alerts(&am).iter().any(|a| job_of(a) == "9")).await;
    assert_eq!(
        am.attempts(),
        before + 1,
        "one post for job 9, none for the reloads: {:#?}",
        am.requests()[before..]
            .iter()
            .map(|r| r.body.clone())
            .collect::<Vec<_>>()
    );
    for old in retiring {
        old.shutdown(Duration::from_secs(2)).await;
    }
    let last = am.requests().pop().unwrap().body;
    assert!(
        !last
            .as_array()
            .unwrap()
            .iter()
            .any(|a| alertname_of(a) == "WatchdogHeartbeat"),
        "the heartbeat keeps its hourly rhythm: {last}"
    );
}
