//! One poll of one target: GET with a timeout and a bearer token, the body
//! read chunk by chunk under a 32 MiB cap (a larger or endless body is a
//! failed poll, never an out-of-memory), then handed to the one reader
//! (`shared_schema::read_envelope`), whose list caps bound what the body
//! costs once read.

use std::time::{Duration, Instant};

use bytes::Bytes;
use shared_schema::Timestamp;

use crate::config::{redact_userinfo, Target};
use crate::engine::Observation;
use crate::tls::TlsConfig;

/// The largest body accepted.
pub const BODY_CAP: usize = 32 * 1024 * 1024;

/// Polls one target.
#[derive(Clone)]
pub struct Poller {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    timeout: Duration,
    keep_body: bool,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("url", &redact_userinfo(&self.url))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What one poll brought back.
#[derive(Debug)]
pub struct Polled {
    /// The observation for the engine.
    pub observation: Observation,
    /// The raw body, when one was read (for `--record`).
    pub body: Option<Bytes>,
    /// How long the request and read took.
    pub duration: Duration,
}

impl Poller {
    /// A poller for `target` with request timeout `timeout`.
    pub fn new(target: &Target, timeout: Duration) -> anyhow::Result<Self> {
        Self::build(
            &target.url,
            target.token.clone(),
            timeout,
            target.tls.as_ref(),
            &target.name,
        )
    }

    /// A poller for a bare URL (https with the system's roots).
    pub fn for_url(url: &str, token: Option<String>, timeout: Duration) -> anyhow::Result<Self> {
        Self::build(url, token, timeout, None, url)
    }

    fn build(
        url: &str,
        token: Option<String>,
        timeout: Duration,
        tls: Option<&TlsConfig>,
        who: &str,
    ) -> anyhow::Result<Self> {
        let client = crate::tls::client_builder(tls, who)
            .map_err(|e| anyhow::anyhow!("tls_config: {e}"))?
            .timeout(timeout)
            .connect_timeout(timeout)
            // One request per interval gains nothing from keep-alive, and a
            // pooled connection the emitter closed while idle (it does after
            // a few seconds) would race into a spurious failed poll.
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Self {
            client,
            url: url.to_owned(),
            token,
            timeout,
            keep_body: true,
        })
    }

    /// Whether [`Polled::body`] keeps the raw body (only `--record` needs
    /// it). Without it a poll in flight holds only the envelope: when 100
    /// targets answer in the same instant and wait for the evaluation loop,
    /// the bodies were a few MiB of the watchdog's peak.
    pub fn keeping_body(mut self, keep: bool) -> Self {
        self.keep_body = keep;
        self
    }

    /// Fetches the body: `Err` carries the reason in words (never the token).
    pub async fn fetch(&self) -> Result<Bytes, String> {
        // The client's timeout covers the body too; this outer one is a
        // belt-and-braces bound on the whole exchange.
        match tokio::time::timeout(
            self.timeout + Duration::from_millis(250),
            self.fetch_inner(),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timed out after {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }

    async fn fetch_inner(&self) -> Result<Bytes, String> {
        let mut req = self.client.get(&self.url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await.map_err(describe)?;
        let status = resp.status();
        if status.as_u16() >= 400 {
            return Err(format!("HTTP {status}"));
        }
        if resp.content_length().is_some_and(|n| n > BODY_CAP as u64) {
            return Err(format!("body larger than {} MiB", BODY_CAP >> 20));
        }
        // Sized from the announced length (already capped) so a large body
        // is not copied through doubling reallocations: the peak stays near
        // one body.
        let announced = resp.content_length().map_or(0, |n| n as usize);
        let mut body = Vec::with_capacity(announced.min(BODY_CAP));
        while let Some(chunk) = resp.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > BODY_CAP {
                return Err(format!("body larger than {} MiB", BODY_CAP >> 20));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    /// One poll, read into an observation stamped with the watchdog's clock.
    pub async fn poll(&self) -> Polled {
        let started = Instant::now();
        let fetched = self.fetch().await;
        let now = Timestamp::now();
        let (observation, body) = match fetched {
            Ok(body) => (
                Observation::from_body(now, &body),
                self.keep_body.then_some(body),
            ),
            Err(reason) => (Observation::failed(now, reason), None),
        };
        Polled {
            observation,
            body,
            duration: started.elapsed(),
        }
    }
}

/// A reqwest error in words, without the URL (it is logged with its own
/// field): the root cause included, so a certificate problem reads as one
/// ("invalid peer certificate: UnknownIssuer", "certificate expired",
/// "certificate not valid for name ...").
pub(crate) fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "body read failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut msg = format!("{kind}: {e}");
    // The root cause ("Connection refused") is what an operator needs.
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
        source = cause.source();
    }
    if msg.len() > 300 {
        let mut end = 300;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
    }
    msg
}
