//! `--web.config.file`: TLS and basic auth on both listeners, in the
//! Prometheus exporter-toolkit format, so an operator's existing file works
//! unchanged:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # default NoClientCert
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12                             # or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                         # bcrypt hashes
//! ```
//!
//! The meanings are exporter-toolkit's: without `cert_file`/`key_file` the
//! listener stays plain HTTP (basic auth still applies); relative paths are
//! taken from the web config file's directory; `client_ca_file` needs a
//! `client_auth_type` that uses it, and the verifying types need a CA.
//! Unknown keys, bad certificates and bad hashes are errors at start naming
//! the file and the key.
//!
//! Rotation: every new connection looks at the files' metadata (a `stat`
//! each, no read) and rebuilds the TLS settings only when one changed, as
//! exporter-toolkit re-reads them per handshake. A rebuild that fails (a
//! certificate half written) keeps the previous settings and says so.
//!
//! Basic auth costs a bcrypt (tens of milliseconds) only the first time a
//! pair of credentials is seen: results are cached under a SHA-256 of user,
//! hash and password (never the password itself), bounded, so a scrape every
//! 15 s costs a hash lookup. An unknown user is checked against a dummy hash
//! so that timing does not tell which users exist.
//!
//! YAML is read by `serde-saphyr`: maintained, pure Rust and panic-free by
//! design (`serde_yaml` is archived; its forks `serde_yaml_ng` and
//! `serde_norway` still wrap the C-translated `unsafe-libyaml`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use serde::Deserialize;

/// A web config that cannot be used: what went wrong, naming the file and
/// the key, in the `file: key: problem` form the messages have always had
/// (users and tests match on them).
///
/// An underlying error (`error`) is kept typed, but it is not returned by
/// [`std::error::Error::source`]: the message already quotes it, and an
/// `anyhow` report (`{:#}` in the watchdog, `{:?}` on the emitter's exit)
/// would print it a second time.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The web config file cannot be read.
    #[error("{}: cannot read the web config file: {error}", .file.display())]
    Read {
        /// The web config file.
        file: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not YAML of the exporter-toolkit shape: bad syntax, an
    /// unknown key, a value of the wrong type (the message names the key).
    #[error("{}: {error}", .file.display())]
    Parse {
        /// The web config file.
        file: PathBuf,
        /// The YAML parser's error.
        error: Box<serde_saphyr::Error>,
    },
    /// `tls_server_config` cannot be used.
    #[error("{}: tls_server_config: {error}", .file.display())]
    Tls {
        /// The web config file.
        file: PathBuf,
        /// Which key, and why (boxed: rustls' errors are large).
        error: Box<TlsError>,
    },
    /// A `basic_auth_users` user name holds a `:`, which basic auth cannot carry.
    #[error("{}: basic_auth_users: user {user:?} may not contain `:`", .file.display())]
    UserWithColon {
        /// The web config file.
        file: PathBuf,
        /// The user.
        user: String,
    },
    /// A `basic_auth_users` entry is not a bcrypt hash.
    #[error("{}: basic_auth_users.{user}: not a bcrypt hash ({error})", .file.display())]
    NotBcrypt {
        /// The web config file.
        file: PathBuf,
        /// The user of the entry.
        user: String,
        /// Why the hash does not parse.
        error: bcrypt::BcryptError,
    },
    /// A key of `http_server_config.headers` is not a header name.
    #[error("{}: http_server_config.headers: {name:?} is not a header name", .file.display())]
    HeaderName {
        /// The web config file.
        file: PathBuf,
        /// The key, as written.
        name: String,
    },
    /// A value of `http_server_config.headers` is not a header value.
    #[error("{}: http_server_config.headers.{name}: not a header value", .file.display())]
    HeaderValue {
        /// The web config file.
        file: PathBuf,
        /// The header whose value it is.
        name: String,
    },
}

/// What is wrong with `tls_server_config` (the key named first; the file is
/// named by [`WebConfigError::Tls`]). Causes are fields, not sources, as in
/// [`WebConfigError`].
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `client_auth_type` is none of exporter-toolkit's names.
    #[error("client_auth_type: {value:?} is not one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert")]
    ClientAuthType {
        /// The value, as written.
        value: String,
    },
    /// Client certificates are asked for without a server certificate.
    #[error("cert_file and key_file are needed for client certificates")]
    ClientAuthWithoutCert,
    /// `cert_file` without `key_file`.
    #[error("key_file is missing (cert_file is set)")]
    NoKeyFile,
    /// `key_file` without `cert_file`.
    #[error("cert_file is missing (key_file is set)")]
    NoCertFile,
    /// `min_version` or `max_version` is not a TLS version.
    #[error("{key}: {value:?} is not one of TLS10, TLS11, TLS12, TLS13")]
    Version {
        /// `min_version` or `max_version`.
        key: &'static str,
        /// The value, as written.
        value: String,
    },
    /// No version is left between `min_version` and `max_version`.
    #[error("min_version is above max_version")]
    MinAboveMax,
    /// rustls refuses the versions.
    #[error("min_version: {error}")]
    Versions {
        /// rustls' error.
        error: rustls::Error,
    },
    /// A certificate file (`cert_file`, `client_ca_file`) cannot be read as PEM.
    #[error("{key}: {}: {error}", .file.display())]
    ReadCerts {
        /// `cert_file` or `client_ca_file`.
        key: &'static str,
        /// The file, anchored at the web config file's directory.
        file: PathBuf,
        /// Why.
        error: rustls::pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{key}: {}: no PEM certificate in it", .file.display())]
    NoCerts {
        /// `cert_file` or `client_ca_file`.
        key: &'static str,
        /// The file.
        file: PathBuf,
    },
    /// `key_file` holds no private key that can be used.
    #[error("key_file: {}: no usable private key: {error}", .file.display())]
    Key {
        /// The file.
        file: PathBuf,
        /// Why.
        error: rustls::pki_types::pem::Error,
    },
    /// `client_ca_file` without a `client_auth_type` that uses it.
    #[error("client_ca_file is set but client_auth_type is NoClientCert: set client_auth_type (e.g. RequireAndVerifyClientCert)")]
    CaWithoutClientAuth,
    /// A certificate of `client_ca_file` is not a usable CA.
    #[error("client_ca_file: {}: bad certificate: {error}", .file.display())]
    BadCa {
        /// The file.
        file: PathBuf,
        /// rustls' error.
        error: rustls::Error,
    },
    /// A verifying `client_auth_type` without `client_ca_file`.
    #[error("client_auth_type {auth:?} needs client_ca_file")]
    NeedsCa {
        /// The type.
        auth: ClientAuth,
    },
    /// The client certificate verifier cannot be built from `client_ca_file`.
    #[error("client_ca_file: {error}")]
    Verifier {
        /// rustls' error.
        error: rustls::server::VerifierBuilderError,
    },
    /// The certificate and the key do not belong together.
    #[error("cert_file/key_file: {} and {} do not make a usable pair: {error}", .cert_file.display(), .key_file.display())]
    Pair {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
        /// rustls' error.
        error: rustls::Error,
    },
}

/// The file, as written (exporter-toolkit's key names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<FileTls>,
    #[serde(default)]
    http_server_config: Option<FileHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    /// rustls always picks by its own (server) order; accepted for old files.
    #[serde(default)]
    prefer_server_cipher_order: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    /// Accepted for old files: both listeners speak HTTP/1.1 only.
    #[serde(default)]
    http2: Option<bool>,
    /// Added to every response.
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// Who may connect with a client certificate (exporter-toolkit's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for.
    NoClientCert,
    /// One is asked for, not required, not verified.
    RequestClientCert,
    /// One is required, not verified.
    RequireAnyClientCert,
    /// One is asked for; when given, it must verify against `client_ca_file`.
    VerifyClientCertIfGiven,
    /// One is required and must verify against `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "" | "NoClientCert" => Self::NoClientCert,
            "RequestClientCert" => Self::RequestClientCert,
            "RequireAnyClientCert" => Self::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => Self::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => Self::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            Self::VerifyClientCertIfGiven | Self::RequireAndVerifyClientCert
        )
    }
}

/// The settings of one reading of the file.
struct Settings {
    tls: Option<Arc<ServerConfig>>,
    users: Arc<BTreeMap<String, String>>,
    headers: Arc<Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>>,
    /// The files whose change means a rebuild, with what they looked like.
    watched: Vec<(PathBuf, Option<Stamp>)>,
}

/// What a file looked like: enough to see an in-place write or a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// A loaded `--web.config.file`, re-read when it or a file it names
/// changes. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct WebConfig {
    path: PathBuf,
    current: Arc<Mutex<Settings>>,
    verified: Arc<Mutex<HashMap<[u8; 32], bool>>>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.settings();
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &s.tls.is_some())
            .field("users", &s.users.len())
            .finish_non_exhaustive()
    }
}

/// Entries of the verified-credentials cache at most; past it, it starts over.
const CACHE_CAP: usize = 1024;

/// What the `Authorization: Basic` header of a request proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BasicAuth {
    /// No basic auth is configured.
    NotConfigured,
    /// The user and password match.
    Verified(String),
    /// None given, or not these.
    Refused,
}

impl WebConfig {
    /// Reads and checks `path`; every problem names the file and the key.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let settings = read(path)?;
        Ok(Self {
            path: path.to_owned(),
            current: Arc::new(Mutex::new(settings)),
            verified: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.settings().tls.is_some()
    }

    /// Whether requests need basic auth.
    pub fn has_users(&self) -> bool {
        !self.settings().users.is_empty()
    }

    /// The TLS settings for a new connection, rebuilt first when a file
    /// changed (a failed rebuild keeps the previous ones); `None`: plain HTTP.
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.refresh();
        self.settings().tls.clone()
    }

    /// `http_server_config.headers`, for every response.
    pub fn headers(&self) -> Arc<Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>> {
        Arc::clone(&self.settings().headers)
    }

    /// Re-reads the settings when a watched file changed.
    pub fn refresh(&self) {
        let changed = {
            let s = self.settings();
            s.watched.iter().any(|(p, was)| stamp(p) != *was)
        };
        if !changed {
            return;
        }
        match read(&self.path) {
            Ok(fresh) => {
                tracing::info!(file = %self.path.display(), tls = fresh.tls.is_some(), "web config or a certificate changed; reloaded");
                *self.settings() = fresh;
                self.cache().clear();
            }
            Err(err) => {
                // Keep serving with what worked; remember the new stamps so
                // one bad write is logged once, not at every connection.
                tracing::error!(error = %err, "web config or a certificate changed but cannot be used; keeping the previous settings");
                let mut s = self.settings();
                for (p, was) in &mut s.watched {
                    *was = stamp(p);
                }
            }
        }
    }

    /// Checks the value of an `Authorization` header against
    /// `basic_auth_users`; a bcrypt only the first time a pair is seen.
    pub async fn check_basic(&self, header: Option<&[u8]>) -> BasicAuth {
        let users = Arc::clone(&self.settings().users);
        if users.is_empty() {
            return BasicAuth::NotConfigured;
        }
        let Some((user, password)) = header.and_then(parse_basic) else {
            return BasicAuth::Refused;
        };
        // An unknown user costs the same bcrypt as a known one.
        let hash = users.get(&user).cloned();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let key = cache_key(&user, &hash, &password);
        let cached = self.cache().get(&key).copied();
        let ok = match cached {
            Some(ok) => ok,
            None => {
                let ok = tokio::task::spawn_blocking(move || {
                    bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                let mut cache = self.cache();
                if cache.len() >= CACHE_CAP {
                    cache.clear();
                }
                cache.insert(key, ok);
                ok
            }
        };
        if ok && known {
            BasicAuth::Verified(user)
        } else {
            BasicAuth::Refused
        }
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<[u8; 32], bool>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A valid bcrypt hash of nothing anyone types, for unknown users.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let (scheme, rest) = header.split_at(header.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64_decode(rest.trim_ascii())?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Standard base64 with padding (RFC 4648 section 4), as browsers and
/// Prometheus send it.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if input.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    for chunk in input.chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { value(*c)? };
            n = (n << 6) | v;
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

fn read(path: &Path) -> Result<Settings, WebConfigError> {
    let file = || path.to_owned();
    let text = std::fs::read_to_string(path).map_err(|error| WebConfigError::Read {
        file: file(),
        error,
    })?;
    let parsed: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|error| WebConfigError::Parse {
            file: file(),
            error: Box::new(error),
        })?
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut watched = vec![(path.to_owned(), stamp(path))];

    let tls = match parsed.tls_server_config {
        Some(t) => build_tls(&t, dir, &mut watched).map_err(|error| WebConfigError::Tls {
            file: file(),
            error: Box::new(error),
        })?,
        None => None,
    };
    let users = parsed.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        if user.contains(':') {
            return Err(WebConfigError::UserWithColon {
                file: file(),
                user: user.clone(),
            });
        }
        hash.parse::<bcrypt::HashParts>()
            .map_err(|error| WebConfigError::NotBcrypt {
                file: file(),
                user: user.clone(),
                error,
            })?;
    }
    let mut headers = Vec::new();
    if let Some(http) = parsed.http_server_config {
        if http.http2 == Some(true) {
            tracing::debug!(file = %path.display(), "http_server_config.http2: this listener speaks HTTP/1.1 only");
        }
        for (name, value) in http.headers.unwrap_or_default() {
            let Ok(n) = hyper::header::HeaderName::from_bytes(name.as_bytes()) else {
                return Err(WebConfigError::HeaderName { file: file(), name });
            };
            let Ok(v) = hyper::header::HeaderValue::from_str(&value) else {
                return Err(WebConfigError::HeaderValue { file: file(), name });
            };
            headers.push((n, v));
        }
    }
    Ok(Settings {
        tls,
        users: Arc::new(users),
        headers: Arc::new(headers),
        watched,
    })
}

fn version(
    key: &'static str,
    text: &str,
) -> Result<&'static rustls::SupportedProtocolVersion, TlsError> {
    match text {
        // rustls has no TLS 1.0/1.1: a floor below 1.2 is 1.2.
        "TLS10" | "TLS11" | "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        other => Err(TlsError::Version {
            key,
            value: other.to_owned(),
        }),
    }
}

fn build_tls(
    t: &FileTls,
    dir: &Path,
    watched: &mut Vec<(PathBuf, Option<Stamp>)>,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let auth = match &t.client_auth_type {
        Some(text) => ClientAuth::parse(text).ok_or_else(|| TlsError::ClientAuthType {
            value: text.clone(),
        })?,
        None => ClientAuth::NoClientCert,
    };
    let (cert_file, key_file) = match (&t.cert_file, &t.key_file) {
        (None, None) => {
            if t.client_ca_file.is_some() || auth != ClientAuth::NoClientCert {
                return Err(TlsError::ClientAuthWithoutCert);
            }
            return Ok(None);
        }
        (Some(_), None) => return Err(TlsError::NoKeyFile),
        (None, Some(_)) => return Err(TlsError::NoCertFile),
        (Some(c), Some(k)) => (dir.join(c), dir.join(k)),
    };
    let min = version("min_version", t.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = version("max_version", t.max_version.as_deref().unwrap_or("TLS13"))?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| {
                (u16::from(min.version)..=u16::from(max.version)).contains(&u16::from(v.version))
            })
            .collect();
    if versions.is_empty() {
        return Err(TlsError::MinAboveMax);
    }
    watched.push((cert_file.clone(), stamp(&cert_file)));
    watched.push((key_file.clone(), stamp(&key_file)));
    let certs = read_certs("cert_file", &cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|error| TlsError::Key {
        file: key_file.clone(),
        error,
    })?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|error| TlsError::Versions { error })?;

    let ca = match &t.client_ca_file {
        Some(ca) => {
            if auth == ClientAuth::NoClientCert {
                return Err(TlsError::CaWithoutClientAuth);
            }
            let path = dir.join(ca);
            watched.push((path.clone(), stamp(&path)));
            let mut roots = RootCertStore::empty();
            for cert in read_certs("client_ca_file", &path)? {
                roots.add(cert).map_err(|error| TlsError::BadCa {
                    file: path.clone(),
                    error,
                })?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let builder = match (auth, ca) {
        (ClientAuth::NoClientCert, _) => builder.with_no_client_auth(),
        (a, None) if a.verifies() => {
            return Err(TlsError::NeedsCa { auth: a });
        }
        (ClientAuth::VerifyClientCertIfGiven, Some(roots)) => {
            let v = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .allow_unauthenticated()
                .build()
                .map_err(|error| TlsError::Verifier { error })?;
            builder.with_client_cert_verifier(v)
        }
        (ClientAuth::RequireAndVerifyClientCert, Some(roots)) => {
            let v = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|error| TlsError::Verifier { error })?;
            builder.with_client_cert_verifier(v)
        }
        (a, _) => builder.with_client_cert_verifier(Arc::new(AnyClientCert {
            mandatory: a == ClientAuth::RequireAnyClientCert,
            algorithms: provider.signature_verification_algorithms,
        })),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|error| TlsError::Pair {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            error,
        })?;
    config.ignore_client_order = t.prefer_server_cipher_order.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The one crypto provider of both binaries, server and client side:
/// *ring*, which builds with a C compiler alone (aws-lc-rs also needs cmake
/// and nasm). rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange; X25519 and the NIST curves remain.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsError::ReadCerts {
            key,
            file: path.to_owned(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts {
            key,
            file: path.to_owned(),
        });
    }
    Ok(certs)
}

/// `RequestClientCert` / `RequireAnyClientCert`: a certificate is asked for
/// (and with `mandatory`, required) but whoever signed it is not checked;
/// its signature over the handshake still is, so the client holds its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        p
    }

    fn self_signed(dir: &Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        write(dir, "s.crt", &cert.pem());
        write(dir, "s.key", &key.serialize_pem());
    }

    #[test]
    fn the_exporter_toolkit_example_reads_with_paths_from_the_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let hash = bcrypt::hash("pw", 4).unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            &format!(
                "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n  client_auth_type: RequireAnyClientCert\n  min_version: TLS13\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: {hash}\n"
            ),
        );
        let w = WebConfig::load(&p).unwrap();
        assert!(w.is_tls() && w.has_users());
        assert_eq!(w.headers()[0].0.as_str(), "x-frame-options");
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        for (text, want) in [
            ("tls_server_config:\n  cert_fil: s.crt\n", "cert_fil"),
            ("tls_server_confg: {}\n", "tls_server_confg"),
            ("tls_server_config:\n  cert_file: s.crt\n", "key_file"),
            (
                "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n  client_auth_type: RequireAndVerifyClientCert\n",
                "needs client_ca_file",
            ),
            (
                "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n  client_ca_file: s.crt\n",
                "client_auth_type",
            ),
            (
                "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n  min_version: TLS14\n",
                "min_version",
            ),
            (
                "tls_server_config:\n  cert_file: nope.crt\n  key_file: s.key\n",
                "nope.crt",
            ),
            (
                "tls_server_config:\n  cert_file: s.key\n  key_file: s.key\n",
                "cert_file",
            ),
            ("basic_auth_users:\n  bob: plaintext\n", "basic_auth_users.bob"),
        ] {
            let p = write(dir.path(), "web.yml", text);
            let e = WebConfig::load(&p).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains(&p.display().to_string()),
                "{text}: {e}"
            );
        }
        let e = WebConfig::load(&dir.path().join("missing.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.yml"), "{e}");
    }

    /// Issue 23: what went wrong is a variant, its cause kept typed but not
    /// as a source (the message quotes it once); the text is unchanged.
    #[test]
    fn web_config_errors_say_what_went_wrong_in_their_variant() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let missing = dir.path().join("missing.yml");
        match WebConfig::load(&missing) {
            Err(e @ WebConfigError::Read { .. }) => {
                assert!(std::error::Error::source(&e).is_none());
                let WebConfigError::Read { file, error } = &e else {
                    unreachable!()
                };
                assert_eq!(file, &missing);
                assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
                assert_eq!(
                    e.to_string(),
                    format!(
                        "{}: cannot read the web config file: {error}",
                        missing.display()
                    )
                );
            }
            other => panic!("{other:?}"),
        }
        let p = write(
            dir.path(),
            "web.yml",
            "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n  min_version: TLS14\n",
        );
        let e = WebConfig::load(&p).unwrap_err();
        assert!(
            matches!(
                &e,
                WebConfigError::Tls {
                    error,
                    ..
                } if matches!(**error, TlsError::Version { key: "min_version", .. })
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{}: tls_server_config: min_version: \"TLS14\" is not one of TLS10, TLS11, TLS12, TLS13",
                p.display()
            )
        );
        let p = write(
            dir.path(),
            "web.yml",
            "basic_auth_users:\n  bob: plaintext\n",
        );
        match WebConfig::load(&p) {
            Err(WebConfigError::NotBcrypt { user, .. }) => assert_eq!(user, "bob"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn basic_auth_verifies_once_per_pair_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  alice: {hash}\n"),
        );
        let w = WebConfig::load(&p).unwrap();
        assert!(!w.is_tls(), "no certificate: plain HTTP with basic auth");
        // "alice:s3cret"
        let good = b"Basic YWxpY2U6czNjcmV0".as_slice();
        assert_eq!(
            w.check_basic(Some(good)).await,
            BasicAuth::Verified("alice".into())
        );
        assert_eq!(w.cache().len(), 1);
        assert_eq!(
            w.check_basic(Some(good)).await,
            BasicAuth::Verified("alice".into())
        );
        assert_eq!(w.cache().len(), 1, "the second check is a cache hit");
        // "alice:wrong", "mallory:s3cret", none, a bearer token
        for bad in [
            Some(b"Basic YWxpY2U6d3Jvbmc=".as_slice()),
            Some(b"Basic bWFsbG9yeTpzM2NyZXQ=".as_slice()),
            None,
            Some(b"Bearer abc".as_slice()),
        ] {
            assert_eq!(w.check_basic(bad).await, BasicAuth::Refused, "{bad:?}");
        }
    }

    #[test]
    fn base64_decodes_what_clients_send() {
        assert_eq!(base64_decode(b"YWxpY2U6czNjcmV0").unwrap(), b"alice:s3cret");
        assert_eq!(base64_decode(b"YQ==").unwrap(), b"a");
        assert_eq!(base64_decode(b"YWI=").unwrap(), b"ab");
        assert!(base64_decode(b"YQ=").is_none());
        assert!(base64_decode(b"Y!==").is_none());
    }

    #[test]
    fn a_changed_certificate_is_picked_up_and_a_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let p = write(
            dir.path(),
            "web.yml",
            "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n",
        );
        let w = WebConfig::load(&p).unwrap();
        let first = w.tls().unwrap();
        assert!(Arc::ptr_eq(&first, &w.tls().unwrap()), "unchanged: reused");
        // A rename into place, as cert managers do.
        let next = tempfile::tempdir().unwrap();
        self_signed(next.path());
        std::fs::rename(next.path().join("s.crt"), dir.path().join("s.crt")).unwrap();
        std::fs::rename(next.path().join("s.key"), dir.path().join("s.key")).unwrap();
        let second = w.tls().unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "rebuilt after the rename");
        write(dir.path(), "s.crt", "half written");
        let third = w.tls().unwrap();
        assert!(Arc::ptr_eq(&second, &third), "a broken file keeps the old");
    }
}
