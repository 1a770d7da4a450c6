//! One poll of one target: GET with a timeout and a bearer token, the body
//! read chunk by chunk under a 32 MiB cap (a larger or endless body is a
//! failed poll, never an out-of-memory), then handed to the one reader
//! (`shared_schema::read_envelope`), whose list caps bound what the body
//! costs once read.
//!
//! The request asks for gzip (`Accept-Encoding: gzip`) and a gzip answer is
//! decoded here with flate2, not by reqwest's `gzip` feature (it would pull
//! async-compression), under the same cap applied to the DECODED size: a
//! gzip bomb is a failed poll with its reason, never an out-of-memory.

use std::time::{Duration, Instant};

use std::io::Read as _;

use bytes::Bytes;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING};
use shared_schema::Timestamp;

use crate::engine::Observation;
use crate::target::{redact_userinfo, Target};
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
        let client = Self::client(target.tls.as_ref(), &target.name, timeout)?;
        Ok(Self::with_client(target, client, timeout))
    }

    /// A poller for a bare URL (https with the system's roots).
    pub fn for_url(url: &str, token: Option<String>, timeout: Duration) -> anyhow::Result<Self> {
        Self::build(url, token, timeout, None, url)
    }

    /// A poller for `target` on `client` (from [`Poller::client`] with
    /// the target's `tls_config` and `timeout`), which targets of the same
    /// `tls_config` share: a client is about 3 KiB, and 1,000 targets of
    /// one fleet need only one.
    pub fn with_client(target: &Target, client: reqwest::Client, timeout: Duration) -> Self {
        Self {
            client,
            url: target.url.clone(),
            token: target.token.clone(),
            timeout,
            keep_body: true,
        }
    }

    /// The HTTP client a poller with this `tls_config` and `timeout` uses.
    /// It keeps no idle connection, so one client serves any number of
    /// targets without holding a socket per target between polls.
    pub fn client(
        tls: Option<&TlsConfig>,
        who: &str,
        timeout: Duration,
    ) -> anyhow::Result<reqwest::Client> {
        Ok(crate::tls::client_builder(tls, who)
            .map_err(|e| anyhow::anyhow!("tls_config: {e}"))?
            .timeout(timeout)
            .connect_timeout(timeout)
            // One request per interval gains nothing from keep-alive, and a
            // pooled connection the emitter closed while idle (it does after
            // a few seconds) would race into a spurious failed poll.
            .pool_max_idle_per_host(0)
            .build()?)
    }

    fn build(
        url: &str,
        token: Option<String>,
        timeout: Duration,
        tls: Option<&TlsConfig>,
        who: &str,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: Self::client(tls, who, timeout)?,
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
        let mut req = self.client.get(&self.url).header(ACCEPT_ENCODING, "gzip");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await.map_err(describe)?;
        let status = resp.status();
        if status.as_u16() >= 400 {
            return Err(format!("HTTP {status}"));
        }
        let encoding = Encoding::of(resp.headers().get(CONTENT_ENCODING))?;
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
        decode(encoding, body, BODY_CAP).map(Bytes::from)
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

/// How a body came: the only codings asked for are gzip and none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// No `Content-Encoding`, or `identity`.
    Identity,
    /// `Content-Encoding: gzip` (or its alias `x-gzip`).
    Gzip,
}

impl Encoding {
    /// The coding of a `Content-Encoding` header; `Err` for one not asked for.
    pub(crate) fn of(header: Option<&reqwest::header::HeaderValue>) -> Result<Self, String> {
        let Some(value) = header else {
            return Ok(Self::Identity);
        };
        let value = value.to_str().unwrap_or("").trim();
        if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
            Ok(Self::Gzip)
        } else if value.is_empty() || value.eq_ignore_ascii_case("identity") {
            Ok(Self::Identity)
        } else {
            let shown: String = value.chars().take(40).collect();
            Err(format!("unsupported Content-Encoding {shown:?}"))
        }
    }
}

/// The body as sent before its coding, at most `cap` bytes once decoded.
/// The reader is bounded by `cap + 1` so a bomb stops at the cap instead
/// of inflating to its full size.
pub(crate) fn decode(encoding: Encoding, body: Vec<u8>, cap: usize) -> Result<Vec<u8>, String> {
    if encoding == Encoding::Identity {
        return Ok(body);
    }
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    // A gzip body rarely inflates less than 3x; start there, capped.
    let mut out = Vec::with_capacity(body.len().saturating_mul(3).min(cap));
    flate2::read::GzDecoder::new(body.as_slice())
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip body undecodable: {e}"))?;
    if out.len() > cap {
        return Err(format!("gzip body larger than {} once decoded", size(cap)));
    }
    Ok(out)
}

fn size(cap: usize) -> String {
    if cap >= 1 << 20 && cap % (1 << 20) == 0 {
        format!("{} MiB", cap >> 20)
    } else {
        format!("{cap} bytes")
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = enc.write_all(data);
        enc.finish().unwrap_or_default()
    }

    #[test]
    fn identity_is_passed_through_untouched() {
        let body = b"{\"schema_version\":1}".to_vec();
        assert_eq!(decode(Encoding::Identity, body.clone(), 4), Ok(body));
    }

    #[test]
    fn gzip_decodes_to_the_original() {
        let body = br#"{"agents":[1,2,3]}"#.repeat(100);
        assert_eq!(decode(Encoding::Gzip, gzip(&body), BODY_CAP), Ok(body));
    }

    #[test]
    fn decoded_size_exactly_at_the_cap_is_accepted_one_more_is_not() {
        let body = vec![b'a'; 1000];
        assert_eq!(
            decode(Encoding::Gzip, gzip(&body), 1000).map(|b| b.len()),
            Ok(1000)
        );
        assert_eq!(
            decode(Encoding::Gzip, gzip(&body), 999),
            Err("gzip body larger than 999 bytes once decoded".to_owned())
        );
    }

    #[test]
    fn a_bomb_fails_at_the_cap_without_inflating_fully() {
        // 8 MiB of zeros compress to a few KiB: eight times a 1 MiB cap.
        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 << 10, "bomb is {} bytes", bomb.len());
        assert_eq!(
            decode(Encoding::Gzip, bomb, 1 << 20),
            Err("gzip body larger than 1 MiB once decoded".to_owned())
        );
    }

    #[test]
    fn garbage_and_truncated_gzip_are_failed_polls_with_a_reason() {
        let err = decode(Encoding::Gzip, b"not gzip at all".to_vec(), BODY_CAP);
        assert!(
            err.as_ref()
                .is_err_and(|e| e.starts_with("gzip body undecodable")),
            "{err:?}"
        );
        let mut cut = gzip(&b"x".repeat(10_000));
        cut.truncate(cut.len() / 2);
        let err = decode(Encoding::Gzip, cut, BODY_CAP);
        assert!(
            err.as_ref()
                .is_err_and(|e| e.starts_with("gzip body undecodable")),
            "{err:?}"
        );
    }

    #[test]
    fn content_encoding_header_is_read_case_blind_and_others_refused() {
        use reqwest::header::HeaderValue;
        assert_eq!(Encoding::of(None), Ok(Encoding::Identity));
        assert_eq!(
            Encoding::of(Some(&HeaderValue::from_static("GZIP"))),
            Ok(Encoding::Gzip)
        );
        assert_eq!(
            Encoding::of(Some(&HeaderValue::from_static("identity"))),
            Ok(Encoding::Identity)
        );
        assert_eq!(
            Encoding::of(Some(&HeaderValue::from_static("br"))),
            Err("unsupported Content-Encoding \"br\"".to_owned())
        );
    }
}
