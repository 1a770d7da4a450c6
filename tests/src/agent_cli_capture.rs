//! A stand-in OTLP/HTTP collector that keeps exactly what an agent CLI
//! POSTs (path, content type, encoding, raw body) and answers the way a
//! collector does (200 with an empty `Export*ServiceResponse`). The
//! fixtures under `tests/fixtures/otlp/` were captured with it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::fake_model_http::{Handler, LoopbackServer, Recorded, Reply};

/// A running capture sink.
#[derive(Debug)]
pub struct OtlpSink {
    server: LoopbackServer,
}

impl OtlpSink {
    /// Listens on 127.0.0.1:0.
    pub fn start() -> std::io::Result<Self> {
        let handler: Handler = Arc::new(|req: &Recorded| {
            let json = req
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json"));
            if json {
                Reply::json(200, &serde_json::json!({}))
            } else {
                Reply::Full {
                    status: 200,
                    headers: vec![("content-type".into(), "application/x-protobuf".into())],
                    body: Vec::new(),
                }
            }
        });
        Ok(Self {
            server: LoopbackServer::start("otlp-sink", handler)?,
        })
    }

    /// `http://127.0.0.1:<port>`: the agent's `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.server.base_url()
    }

    /// Every POST so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// The POSTs to one signal's path (`/v1/logs`, `/v1/metrics`, `/v1/traces`).
    pub fn posts(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }

    /// Writes each POST as `NN-<signal>.<pb|json>` (the body exactly as
    /// sent) plus `index.json` (path, content type, encoding, size, offset
    /// from the first POST) into `dir`.
    pub fn write_fixtures(&self, dir: &Path) -> anyhow::Result<usize> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let requests = self.requests();
        let first = requests.first().map(|r| r.at);
        let mut index = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let signal = r.path().trim_start_matches("/v1/").replace('/', "_");
            let ct = r.header("content-type").unwrap_or("");
            let ext = if ct.starts_with("application/json") {
                "json"
            } else {
                "pb"
            };
            let gz = r.header("content-encoding") == Some("gzip");
            let name = format!("{i:02}-{signal}.{ext}{}", if gz { ".gz" } else { "" });
            std::fs::write(dir.join(&name), &r.body).with_context(|| format!("writing {name}"))?;
            index.push(serde_json::json!({
                "file": name,
                "method": r.method,
                "path": r.uri,
                "content_type": ct,
                "content_encoding": r.header("content-encoding"),
                "user_agent": r.header("user-agent"),
                "bytes": r.body.len(),
                "after_first_s": first.map(|f| (r.at - f).as_secs_f64()),
            }));
        }
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_string_pretty(&index)? + "\n",
        )?;
        Ok(requests.len())
    }
}
