//! One emitter to poll ([`Target`]) and the one check of every URL the
//! watchdog calls: targets, webhooks, Slack, PagerDuty and Alertmanager.
//!
//! A leaf: it knows TLS settings and the edge crate, nothing of the config
//! file, the targets files or the sinks, so all of them build on it
//! without importing each other.

use std::fmt;
use std::path::PathBuf;

use reqwest::Url;

use crate::tls::TlsConfig;

/// A URL the watchdog will not call ([`check_url`]). Every variant holds
/// the URL as shown in errors ([`redact`]ed), never as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// It does not parse.
    #[error("{shown:?} is not a URL: {error}")]
    NotAUrl {
        /// The URL, redacted.
        shown: String,
        /// The parser's error (kept as a field: the message quotes it).
        error: <Url as std::str::FromStr>::Err,
    },
    /// Its scheme is not http or https.
    #[error("{shown:?}: scheme {scheme:?} is not http or https")]
    Scheme {
        /// The URL, redacted.
        shown: String,
        /// The scheme.
        scheme: String,
    },
    /// It has no host.
    #[error("{shown:?} has no host")]
    NoHost {
        /// The URL, redacted.
        shown: String,
    },
    /// Its port is 0.
    #[error("{shown:?}: port must be 1-65535")]
    PortZero {
        /// The URL, redacted.
        shown: String,
    },
}

/// A target that cannot be polled ([`Target::new`], [`Target::with_tls`]),
/// the key named; never the secret. As with the config's errors, a cause
/// is a field, not a [`std::error::Error::source`]: the message quotes it.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `url` is not one to poll.
    #[error("key `url`: {error}")]
    Url {
        /// Why.
        error: UrlError,
    },
    /// The name holds a `|`.
    #[error("target name {name:?} may not contain `|` (it separates the parts of alert keys)")]
    NameWithPipe {
        /// The name.
        name: String,
    },
    /// `token_file` cannot be read.
    #[error("key `token_file`: {error}")]
    TokenFile {
        /// Why (it names the file).
        error: edges::token_file::TokenFileError,
    },
    /// `tls_config` cannot be used.
    #[error("tls_config: {error}")]
    Tls {
        /// Which key, and why. Boxed: rustls' errors are large, and
        /// every `Result` of a target would carry the size.
        error: Box<crate::tls::ClientTlsError>,
    },
}

/// One emitter to poll.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name in alerts and gauges.
    pub name: String,
    /// The URL polled (the emitter's `/metrics`).
    pub url: String,
    /// Where the bearer token comes from.
    pub token_file: Option<PathBuf>,
    /// The token itself (never printed).
    pub token: Option<String>,
    /// `tls_config`, relative paths already anchored; none: system roots.
    pub tls: Option<TlsConfig>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("url", &redact_userinfo(&self.url))
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl Target {
    /// The target at `url` (checked, `/metrics` added to a bare base), named
    /// `name` or by its `host:port`, its token read from `token_file` now.
    /// Errors name the key (`url`, `token_file`) and never the secret.
    pub fn new(
        name: Option<String>,
        url: &str,
        token_file: Option<PathBuf>,
    ) -> Result<Self, TargetError> {
        let url = poll_url(url).map_err(|error| TargetError::Url { error })?;
        let name = match name {
            Some(n) if !n.trim().is_empty() => n,
            _ => derived_name(&url),
        };
        if name.contains('|') {
            return Err(TargetError::NameWithPipe { name });
        }
        let token = match &token_file {
            // The one reader of both binaries: trimmed, capped, regular files only.
            Some(path) => Some(
                edges::token_file::read(path).map_err(|error| TargetError::TokenFile { error })?,
            ),
            None => None,
        };
        Ok(Self {
            name,
            url,
            token_file,
            token,
            tls: None,
        })
    }

    /// The same target with `tls_config` set, its files checked now.
    pub fn with_tls(mut self, tls: Option<TlsConfig>) -> Result<Self, TargetError> {
        if let Some(t) = &tls {
            t.rustls().map_err(|error| TargetError::Tls {
                error: Box::new(error),
            })?;
        }
        self.tls = tls;
        Ok(self)
    }
}

/// Checks a URL the watchdog will call: it parses, is http or https, has a
/// host and a port in 1-65535. Errors show it as [`redact`] does, so
/// neither a password nor (with `path_is_secret`, a webhook's) the path
/// that holds a chat service's token ever reaches a log.
pub fn check_url(url: &str, path_is_secret: bool) -> Result<Url, UrlError> {
    let shown = redact(url, path_is_secret);
    let parsed = match Url::parse(url) {
        Ok(u) => u,
        Err(error) => return Err(UrlError::NotAUrl { shown, error }),
    };
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(UrlError::Scheme {
                shown,
                scheme: other.to_owned(),
            })
        }
    }
    if parsed.host_str().map_or(true, str::is_empty) {
        return Err(UrlError::NoHost { shown });
    }
    if parsed.port() == Some(0) {
        return Err(UrlError::PortZero { shown });
    }
    Ok(parsed)
}

/// The URL to poll: the emitter's base (`http://host:9464`, `/metrics` is
/// added) or any explicit path (used as is), checked by [`check_url`].
pub fn poll_url(url: &str) -> Result<String, UrlError> {
    let url = url.trim();
    check_url(url, false)?;
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    if path.is_empty() || path == "/" {
        Ok(format!("{}/metrics", url.trim_end_matches('/')))
    } else {
        Ok(url.to_owned())
    }
}

/// `host:port` of a URL, the name of a target that has none.
pub fn derived_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_owned()
}

/// `url` for an error, a log line or `--print-config`: the one redaction
/// of `edges` (user info and query masked; with `path_is_secret` the path
/// too, where chat services put their tokens).
pub fn redact(url: &str, path_is_secret: bool) -> String {
    if path_is_secret {
        edges::redact::url_and_path(url)
    } else {
        edges::redact::url(url)
    }
}

/// A URL with any `user:password@` (and query) masked: a target's URL as
/// every error, log line and `--print-config` shows it.
pub fn redact_userinfo(url: &str) -> String {
    redact(url, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_token_file_is_an_error_not_an_oom() {
        let err = Target::new(None, "http://h:1", Some("/dev/zero".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("token_file") && err.contains("/dev/zero"),
            "{err}"
        );
    }

    #[test]
    fn urls_are_checked_and_errors_never_show_the_password() {
        for (url, why) in [
            ("http://u:hunter2@h:99999/metrics", "invalid port number"),
            ("http://u:hunter2@h:0/metrics", "port must be 1-65535"),
            ("http://u:hunter2@/metrics", "empty host"),
            (
                "ftp://u:hunter2@h:1/metrics",
                "scheme \"ftp\" is not http or https",
            ),
            ("unix:/run/x.sock", "scheme \"unix\""),
            ("not a url", "is not a URL"),
        ] {
            let err = poll_url(url).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains(why), "{url}: {err}");
        }
        assert_eq!(poll_url("http://h:1").unwrap(), "http://h:1/metrics");
        assert_eq!(poll_url(" https://h:1/ ").unwrap(), "https://h:1/metrics");
        assert_eq!(poll_url("http://h:1/m").unwrap(), "http://h:1/m");
    }

    #[test]
    fn a_webhooks_path_is_its_secret() {
        let err = check_url("ftp://chat.example/hook/s3cret", true).unwrap_err();
        assert!(
            matches!(&err, UrlError::Scheme { scheme, .. } if scheme == "ftp"),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("scheme") && !err.contains("s3cret"), "{err}");
        let url = check_url("https://chat.example/hook/s3cret", true).unwrap();
        assert_eq!(url.path(), "/hook/s3cret");
        assert!(!redact("https://chat.example/hook/s3cret", true).contains("s3cret"));
    }

    #[test]
    fn names_derive_from_host_port_and_may_not_split_keys() {
        assert_eq!(
            redact_userinfo("http://u:p@h:1/metrics"),
            "http://***@h:1/metrics"
        );
        assert_eq!(derived_name("http://u:p@h:1/metrics"), "h:1");
        let t = Target::new(Some(" ".into()), "http://u:p@h:1", None).unwrap();
        assert_eq!(t.name, "h:1");
        assert!(!format!("{t:?}").contains(":p@"), "{t:?}");
        let err = Target::new(Some("a|b".into()), "http://h:1", None).unwrap_err();
        assert!(
            matches!(&err, TargetError::NameWithPipe { name } if name == "a|b"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "target name \"a|b\" may not contain `|` (it separates the parts of alert keys)"
        );
        let err = Target::new(None, "http://u:hunter2@h:0", None).unwrap_err();
        assert!(
            matches!(
                &err,
                TargetError::Url {
                    error: UrlError::PortZero { .. }
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "key `url`: \"http://***@h:0\": port must be 1-65535"
        );
        assert!(std::error::Error::source(&err).is_none());
    }
}
