//! The up-close fetch: `GET {base}/agents/{job_id}` on a target's emitter
//! (CONTRACT.md section 1, "One agent up close"), the raw material of a
//! diagnosis.
//!
//! A diagnosis is a bonus on an alert line, never a reason to hold it up
//! (section 3): the whole exchange is bounded by one deadline (2 s), the
//! body by a cap (1 MiB), and every failure (404 from an emitter older than
//! page 2 or for a job no longer running, a refused connection, a timeout,
//! a body that is not an `AgentView`) is `None`, logged at debug.
//!
//! The base is the target's URL with its last path segment `metrics`
//! replaced: `http://h:9464/metrics` asks `http://h:9464/agents/7`, and
//! `https://h/orch-1/metrics` asks `https://h/orch-1/agents/7`. A URL that
//! does not end in `/metrics` gets `agents/7` appended to its path. Query
//! and fragment belong to `/metrics` and are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;

use crate::target::Target;
use crate::tls::TlsConfig;
use shared_schema::{AgentView, SCHEMA_VERSION};

/// The bound on one fetch, connect to last byte.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// The largest body accepted; a real tree's view is a few KiB.
pub const BODY_CAP: usize = 1024 * 1024;

/// Fetches up-close views; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct UpClose {
    client: reqwest::Client,
    deadline: Duration,
    /// One client per `tls_config` met, built on first use.
    by_tls: Arc<Mutex<HashMap<TlsConfig, reqwest::Client>>>,
}

impl std::fmt::Debug for UpClose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpClose")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl UpClose {
    /// A fetcher with the contract's 2 s deadline.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_deadline(DEADLINE)
    }

    /// A fetcher bounded by `deadline` (tests, and a shorter poll interval).
    pub fn with_deadline(deadline: Duration) -> anyhow::Result<Self> {
        let client = Self::client(None, deadline)?;
        Ok(Self {
            client,
            deadline,
            by_tls: Arc::default(),
        })
    }

    fn client(tls: Option<&TlsConfig>, deadline: Duration) -> anyhow::Result<reqwest::Client> {
        Ok(crate::tls::client_builder(tls, "up-close")
            .map_err(|e| anyhow::anyhow!("tls_config: {e}"))?
            .timeout(deadline)
            .connect_timeout(deadline)
            // Asked once per firing alert: nothing to gain from an idle
            // connection the emitter may close under us.
            .pool_max_idle_per_host(0)
            .build()?)
    }

    /// The fetcher for `target`: its `tls_config` (client certificate, CA)
    /// is the poll's. A client that cannot be built (its files changed
    /// since the config was checked) leaves the default one, whose fetch
    /// then fails like any other.
    pub fn for_target(&self, target: &Target) -> Self {
        let Some(tls) = &target.tls else {
            return self.clone();
        };
        let mut by_tls = self.by_tls.lock().unwrap_or_else(|p| p.into_inner());
        let client = match by_tls.get(tls) {
            Some(c) => c.clone(),
            None => match Self::client(Some(tls), self.deadline) {
                Ok(c) => {
                    by_tls.insert(tls.clone(), c.clone());
                    c
                }
                Err(e) => {
                    tracing::debug!(target = %target.name, error = %e, "no up-close client");
                    return self.clone();
                }
            },
        };
        Self {
            client,
            deadline: self.deadline,
            by_tls: Arc::clone(&self.by_tls),
        }
    }

    /// The bound on one fetch.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The view of `job_id` from the emitter whose `/metrics` is at
    /// `metrics_url`, with the target's bearer `token`; `None` on any failure.
    pub async fn fetch(
        &self,
        metrics_url: &str,
        token: Option<&str>,
        job_id: i64,
    ) -> Option<AgentView> {
        let Some(url) = agents_url(metrics_url, job_id) else {
            tracing::debug!(job_id, "no up-close view: target URL unusable");
            return None;
        };
        // The client's timeout covers the body too; this one bounds the
        // whole exchange, whatever the server does.
        let fetched = match tokio::time::timeout(self.deadline, self.get(&url, token)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(self.deadline)
            )),
        };
        match fetched.and_then(|body| parse(&body, job_id)) {
            Ok(view) => Some(view),
            Err(reason) => {
                tracing::debug!(job_id, url = %redacted(&url), reason, "no up-close view");
                None
            }
        }
    }

    async fn get(&self, url: &Url, token: Option<&str>) -> Result<Vec<u8>, String> {
        let mut req = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT_ENCODING, "gzip");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await.map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let encoding =
            crate::poll::Encoding::of(resp.headers().get(reqwest::header::CONTENT_ENCODING))?;
        if resp.content_length().is_some_and(|n| n > BODY_CAP as u64) {
            return Err(format!("body larger than {BODY_CAP} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if body.len() + chunk.len() > BODY_CAP {
                return Err(format!("body larger than {BODY_CAP} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        // The same cap on the decoded view as on what came over the wire.
        crate::poll::decode(encoding, body, BODY_CAP)
    }
}

/// The body as a view of `job_id`, or why not.
fn parse(body: &[u8], job_id: i64) -> Result<AgentView, String> {
    let view: AgentView = serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"))?;
    if view.schema_version > SCHEMA_VERSION {
        return Err(format!("schema_version {} is newer", view.schema_version));
    }
    if view.job_id != job_id {
        return Err(format!("body is about job {}", view.job_id));
    }
    Ok(view)
}

/// `{base}/agents/{job_id}` for the target whose `/metrics` is `metrics_url`.
pub fn agents_url(metrics_url: &str, job_id: i64) -> Option<Url> {
    let mut url = Url::parse(metrics_url).ok()?;
    if url.cannot_be_a_base() {
        return None;
    }
    let path = url.path();
    let base = path.strip_suffix("metrics").filter(|p| p.ends_with('/'));
    let base = match base {
        Some(base) => base.to_owned(),
        None if path.ends_with('/') => path.to_owned(),
        None => format!("{path}/"),
    };
    url.set_path(&format!("{base}agents/{job_id}"));
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

/// The URL without user and password, for logs.
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn base_is_the_metrics_url_with_metrics_replaced() {
        let cases = [
            (
                "http://127.0.0.1:9464/metrics",
                "http://127.0.0.1:9464/agents/7",
            ),
            (
                "https://h/orch-1/metrics?x=1#f",
                "https://h/orch-1/agents/7",
            ),
            ("http://h:1/", "http://h:1/agents/7"),
            ("http://h:1", "http://h:1/agents/7"),
            ("http://h:1/api", "http://h:1/api/agents/7"),
            ("http://h:1/mymetrics", "http://h:1/mymetrics/agents/7"),
        ];
        for (from, want) in cases {
            assert_eq!(
                agents_url(from, 7).map(|u| u.to_string()).as_deref(),
                Some(want),
                "{from}"
            );
        }
        assert_eq!(agents_url("not a url", 7), None);
        assert_eq!(agents_url("mailto:a@b", 7), None);
    }

    #[test]
    fn logs_never_hold_the_password() {
        let url = Url::parse("http://u:secret@h:1/agents/7").unwrap();
        assert_eq!(redacted(&url), "http://h:1/agents/7");
    }

    /// What the stub answers.
    #[derive(Clone)]
    enum Reply {
        Status(u16, String),
        Never,
    }

    /// A one-route HTTP server on port 0; records each request head.
    async fn serve(reply: Reply) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let reply = reply.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    match reply {
                        Reply::Status(code, body) => {
                            let resp = format!(
                                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = conn.write_all(resp.as_bytes()).await;
                        }
                        Reply::Never => {
                            // Hold the connection open, never answer.
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/metrics"), heads)
    }

    fn recorded(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../watchdog-core/tests/fixtures/agent_view/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn ok_body_is_the_view_asked_with_the_token() {
        let body = recorded("wait_child");
        let job_id = serde_json::from_str::<AgentView>(&body).unwrap().job_id;
        let (url, heads) = serve(Reply::Status(200, body)).await;
        let view = UpClose::new()
            .unwrap()
            .fetch(&url, Some("s3cret"), job_id)
            .await
            .expect("a view");
        assert_eq!(view.job_id, job_id);
        assert_eq!(view.processes[0].comm.as_deref(), Some("sh"));
        let heads = heads.lock().unwrap();
        assert!(
            heads[0].starts_with(&format!("GET /agents/{job_id} HTTP/1.1\r\n")),
            "{}",
            heads[0]
        );
        assert!(
            heads[0]
                .to_ascii_lowercase()
                .contains("authorization: bearer s3cret\r\n"),
            "{}",
            heads[0]
        );
    }

    #[tokio::test]
    async fn not_found_is_none() {
        let (url, heads) =
            serve(Reply::Status(404, r#"{"error":"no running job 7"}"#.into())).await;
        assert!(UpClose::new().unwrap().fetch(&url, None, 7).await.is_none());
        assert_eq!(heads.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bad_body_and_other_jobs_body_are_none() {
        let (url, _) = serve(Reply::Status(200, "{\"schema_version\":1".into())).await;
        assert!(UpClose::new().unwrap().fetch(&url, None, 7).await.is_none());
        let body = recorded("wait_child");
        let (url, _) = serve(Reply::Status(200, body)).await;
        assert!(UpClose::new()
            .unwrap()
            .fetch(&url, None, 999_999)
            .await
            .is_none());
    }

    #[tokio::test]
    async fn body_over_the_cap_is_none() {
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(BODY_CAP));
        let (url, _) = serve(Reply::Status(200, big)).await;
        assert!(UpClose::new().unwrap().fetch(&url, None, 7).await.is_none());
    }

    #[tokio::test]
    async fn refused_connection_is_none() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/metrics");
        assert!(UpClose::new().unwrap().fetch(&url, None, 7).await.is_none());
    }

    #[tokio::test]
    async fn a_server_that_never_answers_gives_none_at_the_deadline() {
        let (url, heads) = serve(Reply::Never).await;
        let started = Instant::now();
        let got = UpClose::new().unwrap().fetch(&url, None, 7).await;
        let took = started.elapsed();
        println!("a silent server: None after {took:?}");
        assert!(got.is_none());
        // The request reached the server, so the deadline (not a refused
        // connection) ended it, and it did end: bounded, not hanging.
        assert_eq!(heads.lock().unwrap().len(), 1);
        assert!(took >= DEADLINE - Duration::from_millis(100), "{took:?}");
        assert!(took < DEADLINE + Duration::from_secs(2), "{took:?}");
    }
}
