//! The native Slack and PagerDuty sinks end to end over HTTPS (issue 20):
//! a local receiver (rustls, a certificate made here) checks every body
//! against Slack's incoming-webhook and PagerDuty Events API v2's
//! documented schemas and records what it got. The real emitter and
//! watchdog, an idle agent: its `stuck_agent` trigger, a repeat and a
//! resolve reach both sinks, PagerDuty's with one `dedup_key`; a 429 with
//! `Retry-After: 2` is honoured and nothing is dropped; the secrets never
//! show in the alert log, the stderr or any page of the watchdog.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::agents::AgentKind;
use e2e::lab::Lab;
use e2e::stack::{logged_head, tail, Emitter, Watchdog};
use e2e::{bins, net};
use serde_json::{json, Value};
use shared_schema::AlertEvent;

const ROUTING_KEY: &str = "R0utingKeyS3cretR0utingKeyS3cret";
const SLACK_PATH: &str = "/services/T0SECRETT/B0SECRETB/XslackSecretPathX";

/// Writes `ca.crt`, and returns the server's certificate chain and key for
/// `127.0.0.1`, signed by that CA.
fn pki(dir: &Path) -> (Vec<rustls::pki_types::CertificateDer<'static>>, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "notify test CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (vec![leaf.der().clone()], key.serialize_der())
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    path: String,
    body: Value,
    status: u16,
}

/// What the receiver records: every request, and every schema violation.
#[derive(Debug, Default)]
struct Record {
    got: Vec<Got>,
    errors: Vec<String>,
    /// Triggers still to refuse with 429.
    throttle_triggers: u32,
}

/// A local HTTPS receiver on 127.0.0.1:0 speaking just enough HTTP/1.1
/// (keep-alive, `Content-Length` bodies) for reqwest.
struct Receiver {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

impl Receiver {
    fn start(dir: &Path, throttle_triggers: u32) -> Self {
        let (chain, key) = pki(dir);
        // *ring*, as the binaries use (edges::web_config::provider); rustls
        // deprecates it only for lacking post-quantum key exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()))
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record {
            throttle_triggers,
            ..Record::default()
        }));
        let shared = Arc::clone(&record);
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (config, record) = (Arc::clone(&config), Arc::clone(&shared));
                std::thread::spawn(move || serve(tcp, config, &record));
            }
        });
        Self { addr, record }
    }

    fn got(&self) -> Vec<Got> {
        self.record.lock().unwrap().got.clone()
    }

    fn errors(&self) -> Vec<String> {
        self.record.lock().unwrap().errors.clone()
    }
}

/// One connection: requests until the peer closes (or the handshake fails).
fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, record: &Mutex<Record>) {
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut stream = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let at = Instant::now();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let (status, extra, answer) = answer(record, at, &path, &body);
        let reason = match status {
            200 => "OK",
            202 => "Accepted",
            429 => "Too Many Requests",
            _ => "Bad Request",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n{extra}\r\n",
            answer.len()
        );
        let out = stream.get_mut();
        if out.write_all(head.as_bytes()).is_err()
            || out.write_all(answer.as_bytes()).is_err()
            || out.flush().is_err()
        {
            return;
        }
    }
}

/// Checks and records one request; what to answer (status, extra header
/// lines, body), as the real services do.
fn answer(record: &Mutex<Record>, at: Instant, path: &str, body: &[u8]) -> (u16, String, String) {
    let mut record = record.lock().unwrap();
    let parsed: Result<Value, String> =
        serde_json::from_slice(body).map_err(|e| format!("{path}: not JSON: {e}"));
    let checked = parsed.and_then(|v| {
        let verdict = if path == SLACK_PATH {
            check_slack(&v)
        } else if path == "/v2/enqueue" {
            check_pagerduty(&v)
        } else {
            Err(format!("unexpected path {path:?}"))
        };
        verdict.map(|()| v).map_err(|e| format!("{path}: {e}"))
    });
    let (status, extra, reply, body) = match checked {
        Err(e) => {
            record.errors.push(e.clone());
            (400, String::new(), e, Value::Null)
        }
        Ok(v) if path == SLACK_PATH => (200, String::new(), "ok".to_owned(), v),
        Ok(v) => {
            if v["event_action"] == "trigger" && record.throttle_triggers > 0 {
                record.throttle_triggers -= 1;
                let reply = json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly."});
                (429, "Retry-After: 2\r\n".to_owned(), reply.to_string(), v)
            } else {
                let reply = json!({"status": "success", "message": "Event processed", "dedup_key": v["dedup_key"]});
                (202, String::new(), reply.to_string(), v)
            }
        }
    };
    record.got.push(Got {
        at,
        path: path.to_owned(),
        body,
        status,
    });
    let content_type = if status == 200 {
        "text/html"
    } else {
        "application/json"
    };
    (
        status,
        format!("{extra}Content-Type: {content_type}\r\n"),
        reply,
    )
}

fn string<'a>(v: &'a Value, what: &str) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| format!("{what} is not a string: {v}"))
}

/// A Slack text object `{type: mrkdwn|plain_text, text}`, `text` at most
/// `max` characters.
fn check_text(v: &Value, what: &str, max: usize) -> Result<(), String> {
    let kind = string(&v["type"], &format!("{what}.type"))?;
    if kind != "mrkdwn" && kind != "plain_text" {
        return Err(format!("{what}.type {kind:?}"));
    }
    let text = string(&v["text"], &format!("{what}.text"))?;
    if text.is_empty() || text.chars().count() > max {
        return Err(format!("{what}.text has {} chars", text.chars().count()));
    }
    Ok(())
}

/// Slack incoming webhook: `text` and/or `blocks`
/// (api.slack.com/reference/block-kit/blocks).
fn check_slack(v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("body is not an object")?;
    if !obj.contains_key("text") && !obj.contains_key("blocks") {
        return Err("neither text nor blocks".into());
    }
    if let Some(text) = obj.get("text") {
        if string(text, "text")?.is_empty() {
            return Err("empty text".into());
        }
    }
    let Some(blocks) = obj.get("blocks") else {
        return Ok(());
    };
    let blocks = blocks.as_array().ok_or("blocks is not an array")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err(format!("{} blocks", blocks.len()));
    }
    for (i, block) in blocks.iter().enumerate() {
        let what = format!("blocks[{i}]");
        match string(&block["type"], &format!("{what}.type"))? {
            "section" => check_text(&block["text"], &format!("{what}.text"), 3000)?,
            "header" => {
                check_text(&block["text"], &format!("{what}.text"), 150)?;
                if block["text"]["type"] != "plain_text" {
                    return Err(format!("{what}: a header's text must be plain_text"));
                }
            }
            "context" => {
                let elements = block["elements"]
                    .as_array()
                    .ok_or(format!("{what}.elements is not an array"))?;
                if elements.is_empty() || elements.len() > 10 {
                    return Err(format!("{what}: {} elements", elements.len()));
                }
                for (j, e) in elements.iter().enumerate() {
                    check_text(e, &format!("{what}.elements[{j}]"), 3000)?;
                }
            }
            "divider" => {}
            other => return Err(format!("{what}.type {other:?} is not a block type")),
        }
    }
    Ok(())
}

/// PagerDuty Events API v2 (developer.pagerduty.com, "Send an Alert Event").
fn check_pagerduty(v: &Value) -> Result<(), String> {
    if string(&v["routing_key"], "routing_key")? != ROUTING_KEY {
        return Err("wrong routing_key".into());
    }
    let action = string(&v["event_action"], "event_action")?;
    let dedup = string(&v["dedup_key"], "dedup_key")?;
    if dedup.is_empty() || dedup.len() > 255 {
        return Err(format!("dedup_key of {} bytes", dedup.len()));
    }
    match action {
        "trigger" => {
            let p = &v["payload"];
            let summary = string(&p["summary"], "payload.summary")?;
            if summary.is_empty() || summary.chars().count() > 1024 {
                return Err(format!(
                    "payload.summary of {} chars",
                    summary.chars().count()
                ));
            }
            if string(&p["source"], "payload.source")?.is_empty() {
                return Err("empty payload.source".into());
            }
            let severity = string(&p["severity"], "payload.severity")?;
            if !["critical", "error", "warning", "info"].contains(&severity) {
                return Err(format!("payload.severity {severity:?}"));
            }
            if !p["custom_details"].is_null() && !p["custom_details"].is_object() {
                return Err("payload.custom_details is not an object".into());
            }
            Ok(())
        }
        "acknowledge" | "resolve" => Ok(()),
        other => Err(format!("event_action {other:?}")),
    }
}

#[test]
fn slack_and_pagerduty_get_trigger_repeat_and_resolve_over_https() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let lab = Lab::start(&[AgentKind::Idle], None).unwrap();
    let dir = lab.dir().to_owned();
    let receiver = Receiver::start(&dir, 1);
    let emitter = Emitter::start(&emitter_bin, &lab.db, &dir).unwrap();

    let slack_url = format!("https://{}{SLACK_PATH}", receiver.addr);
    std::fs::write(dir.join("slack-url"), format!("{slack_url}\n")).unwrap();
    std::fs::write(dir.join("pd-key"), format!("{ROUTING_KEY}\n")).unwrap();
    let d = |f: &str| dir.join(f).display().to_string();
    let (slack_file, key_file, ca) = (d("slack-url"), d("pd-key"), d("ca.crt"));
    let pd_url = format!("https://{}/v2/enqueue", receiver.addr);
    let emitter_url = emitter.url();
    let watchdog = Watchdog::start_with(
        &watchdog_bin,
        &dir,
        |listen, alert_log| {
            format!(
                r#"{head}
[rules.stuck_agent]
for = "3s"
min_runtime = "1s"
cpu_floor = 0.02
use_tree = true

[notify]
repeat_interval = "4s"

[[notify.slack]]
name = "ops-slack"
url_file = {slack_file:?}
tls_config = {{ ca_file = {ca:?} }}
backoff = "100ms"

[[notify.pagerduty]]
name = "ops-pd"
url = "{pd_url}"
routing_key_file = {key_file:?}
tls_config = {{ ca_file = {ca:?} }}
backoff = "100ms"
"#,
                head = logged_head(listen, alert_log, "e2e", &emitter_url),
            )
        },
        None,
    )
    .unwrap();

    let is_stuck = |l: &shared_schema::AlertLine| l.rule == "stuck_agent";
    let fired = watchdog
        .wait_line("stuck_agent firing", Duration::from_secs(60), |l| {
            is_stuck(l) && l.event == AlertEvent::Firing
        })
        .unwrap();
    watchdog
        .wait_line("a repeat", Duration::from_secs(30), |l| {
            is_stuck(l) && l.event == AlertEvent::Repeat
        })
        .unwrap();
    // The repeat delivered to both, then wake the agent: resolved.
    let pd_triggers_ok = |got: &[Got]| {
        got.iter()
            .filter(|g| g.path == "/v2/enqueue" && g.status == 202)
            .filter(|g| g.body["event_action"] == "trigger")
            .count()
    };
    net::wait_for(
        "two accepted PagerDuty triggers (firing, repeat)",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || match pd_triggers_ok(&receiver.got()) {
            n if n >= 2 => Ok(()),
            n => Err(format!(
                "{n}: {:?}\n{}",
                receiver.got(),
                tail(&watchdog.log)
            )),
        },
    )
    .unwrap();
    lab.agent(AgentKind::Idle).0.wake().unwrap();
    watchdog
        .wait_line("stuck_agent resolved", Duration::from_secs(30), |l| {
            is_stuck(l) && l.event == AlertEvent::Resolved && l.key == fired.key
        })
        .unwrap();
    let delivered = |got: &[Got]| {
        let pd = got
            .iter()
            .any(|g| g.path == "/v2/enqueue" && g.body["event_action"] == "resolve");
        let slack = got.iter().any(|g| {
            g.path == SLACK_PATH
                && g.body["text"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("RESOLVED")
        });
        pd && slack
    };
    net::wait_for(
        "the resolve at both receivers",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let got = receiver.got();
            if delivered(&got) {
                Ok(())
            } else {
                Err(format!("{got:?}\n{}", tail(&watchdog.log)))
            }
        },
    )
    .unwrap();

    let got = receiver.got();
    assert!(receiver.errors().is_empty(), "{:?}", receiver.errors());

    // PagerDuty: the 429, its retry no earlier than Retry-After, then the
    // repeat and the resolve, all under one dedup_key.
    let pd: Vec<&Got> = got.iter().filter(|g| g.path == "/v2/enqueue").collect();
    assert!(pd.len() >= 4, "{pd:?}");
    assert_eq!(pd[0].status, 429, "{pd:?}");
    assert_eq!(pd[1].status, 202, "{pd:?}");
    assert_eq!(pd[0].body, pd[1].body, "the retry is the same event");
    let waited = pd[1].at - pd[0].at;
    assert!(
        waited >= Duration::from_secs(2),
        "retried {waited:?} after a 429 with Retry-After: 2"
    );
    let key = pd[0].body["dedup_key"].as_str().unwrap();
    assert_eq!(key, fired.key);
    for g in &pd {
        assert_eq!(g.body["dedup_key"], key, "{g:?}");
    }
    let actions: Vec<&str> = pd
        .iter()
        .filter(|g| g.status == 202)
        .map(|g| g.body["event_action"].as_str().unwrap())
        .collect();
    assert!(actions.len() >= 3, "{actions:?}");
    assert_eq!(actions.last(), Some(&"resolve"), "{actions:?}");
    assert!(actions[..actions.len() - 1].iter().all(|a| *a == "trigger"));
    assert_eq!(pd[1].body["payload"]["class"], "stuck_agent");
    assert_eq!(pd[1].body["payload"]["severity"], "warning");
    assert_eq!(pd[1].body["payload"]["source"], "e2e");

    // Slack: a firing, a repeat and a resolve, each naming the alert.
    let slack: Vec<&str> = got
        .iter()
        .filter(|g| g.path == SLACK_PATH)
        .map(|g| g.body["text"].as_str().unwrap())
        .collect();
    for word in [
        "FIRING stuck_agent",
        "STILL FIRING stuck_agent",
        "RESOLVED stuck_agent",
    ] {
        assert!(
            slack
                .iter()
                .any(|t| t.starts_with(word) && t.contains("on e2e")),
            "no {word:?} in {slack:?}"
        );
    }
    assert!(slack[0].starts_with("FIRING stuck_agent"), "{slack:?}");
    assert!(slack.last().unwrap().starts_with("RESOLVED"), "{slack:?}");

    // Nothing dropped, by the alert lines or the counters.
    let lines = watchdog.lines();
    assert!(
        !lines.iter().any(|l| l.event == AlertEvent::Dropped),
        "{lines:?}"
    );
    let metrics = watchdog.scrape().unwrap();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("watchdog_notifications_total")
                && l.contains("dropped")
                && !l.ends_with(" 0")),
        "{metrics}"
    );

    // The secrets are nowhere the operator or a scraper looks.
    let base = format!("http://{}", watchdog.addr);
    let mut places = vec![
        (
            "alert log",
            std::fs::read_to_string(&watchdog.alert_log).unwrap(),
        ),
        ("stderr", std::fs::read_to_string(&watchdog.log).unwrap()),
        ("/metrics", metrics),
    ];
    for page in ["/", "/api/v1/alerts"] {
        let (status, body) = net::get(&format!("{base}{page}")).unwrap();
        assert_eq!(status, 200, "{page}: {body}");
        places.push((page, body));
    }
    for (place, text) in &places {
        for secret in [ROUTING_KEY, SLACK_PATH, "T0SECRETT", "XslackSecretPathX"] {
            assert!(!text.contains(secret), "{secret:?} shows in the {place}");
        }
    }
}
