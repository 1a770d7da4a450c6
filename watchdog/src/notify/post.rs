//! One JSON POST with retries: what the HTTP sinks share.
//!
//! Retried: connection errors, timeouts, 408, 429 and 5xx, with capped
//! exponential backoff and full jitter. Not retried: other 4xx, which will
//! not get better by asking again. Errors never carry the URL, which may
//! hold a token.

use std::time::Duration;

use bytes::Bytes;
use governor::DefaultDirectRateLimiter;
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};

use super::backoff::Backoff;
use super::delivery::MAX_RETRY_AFTER;
use crate::exporter::Exporter;

/// Why a POST was given up.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The receiver answered with an error status.
    #[error("HTTP {0}")]
    Status(StatusCode),
    /// No answer: connect, timeout, broken connection.
    #[error("{0}")]
    Transport(String),
}

impl PostError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Status(s) => {
                s.is_server_error()
                    || *s == StatusCode::TOO_MANY_REQUESTS
                    || *s == StatusCode::REQUEST_TIMEOUT
            }
            Self::Transport(_) => true,
        }
    }
}

/// Posts JSON bodies for one sink.
#[derive(Debug, Clone)]
pub struct Poster {
    client: reqwest::Client,
    max_retries: u32,
    backoff: Backoff,
    sink: String,
    exporter: Exporter,
}

impl Poster {
    /// A client with `timeout` per request, counting retries as `sink`.
    pub fn new(
        sink: &str,
        timeout: Duration,
        max_retries: u32,
        backoff: Backoff,
        exporter: Exporter,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("watchdog/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            max_retries,
            backoff,
            sink: sink.to_owned(),
            exporter,
        })
    }

    /// POSTs `body` as `application/json` until it is accepted (2xx), a
    /// permanent error, or the retries are spent. Retries wait for
    /// `limiter` too, so they never break a rate limit.
    pub async fn post_json(
        &self,
        url: &Url,
        body: Bytes,
        limiter: Option<&DefaultDirectRateLimiter>,
    ) -> Result<(), PostError> {
        let mut attempt = 0;
        loop {
            let sent = self
                .client
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let (err, asked) = match sent {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => (PostError::Status(resp.status()), retry_after(&resp)),
                Err(e) => (PostError::Transport(e.without_url().to_string()), None),
            };
            if !err.is_retryable() || attempt >= self.max_retries {
                return Err(err);
            }
            // A receiver that says when to come back (Slack, PagerDuty and
            // Alertmanager behind a proxy do, on 429 and 503) is believed,
            // up to a bound: past it a late page is worse than a `dropped`.
            if asked.is_some_and(|d| d > MAX_RETRY_AFTER) {
                return Err(err);
            }
            let wait = self.backoff.delay(attempt).max(asked.unwrap_or_default());
            attempt += 1;
            self.exporter.notification(&self.sink, "retried");
            tracing::debug!(sink = %self.sink, attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying");
            tokio::time::sleep(wait).await;
            if let Some(limiter) = limiter {
                limiter.until_ready().await;
            }
        }
    }
}

/// `Retry-After` in seconds (RFC 9110 `delay-seconds`); the HTTP-date form
/// is rare from these receivers and read as absent (plain backoff).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}
