//! `tls_config` of every URL the watchdog calls (targets, up-close fetches,
//! webhooks, Alertmanager), with Prometheus' key names and meanings, and
//! the one place that turns it into an HTTP client.
//!
//! ```toml
//! tls_config = { ca_file = "ca.crt", cert_file = "watchdog.crt", key_file = "watchdog.key", server_name = "orch-1.internal", insecure_skip_verify = false }
//! ```
//!
//! - `ca_file`: the CAs the server's certificate must chain to; unset, the
//!   system's roots (read once per process, from where OpenSSL would look).
//! - `cert_file` + `key_file`: a client certificate, for a server that asks
//!   for one (`client_auth_type` of exporter-toolkit); one without the
//!   other is an error.
//! - `server_name`: the name the server's certificate is checked against,
//!   instead of the URL's host (for an address-only URL, or a certificate
//!   issued for another name). The TLS SNI still carries the URL's host.
//! - `insecure_skip_verify`: no check of the server's certificate at all
//!   (still encrypted, no longer authenticated); warned about whenever a
//!   client is built with it.
//!
//! rustls with the *ring* provider: no OpenSSL. Every file is read when the
//! client is built (at start, at a reload), so a bad file is an error at
//! start naming its key; a certificate error during a poll is a failed poll
//! (`target_down`, the reason in its summary), never a crash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

/// Why a `tls_config` gives no client ([`TlsConfig::rustls`]), the key and
/// the file named. Not [`edges::web_config::TlsError`]: that is the
/// server's side, with exporter-toolkit's key names.
///
/// `Clone` because the settings without a `tls_config` are built once and
/// that outcome, an error too, goes to every client built after: the
/// causes that are not `Clone` themselves are held in an [`Arc`]. As with
/// the config's errors, a cause is a field, not a
/// [`std::error::Error::source`]: the message quotes it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientTlsError {
    /// A certificate file (`ca_file`, `cert_file`) cannot be read as PEM.
    #[error("key `{key}`: {}: {error}", .file.display())]
    ReadCerts {
        /// `ca_file` or `cert_file`.
        key: &'static str,
        /// The file, anchored.
        file: PathBuf,
        /// Why.
        error: Arc<pem::Error>,
    },
    /// A certificate file holds no certificate.
    #[error("key `{key}`: {}: no PEM certificate in it", .file.display())]
    NoCerts {
        /// `ca_file` or `cert_file`.
        key: &'static str,
        /// The file.
        file: PathBuf,
    },
    /// A certificate of `ca_file` is not a usable trust anchor.
    #[error("key `ca_file`: {}: bad certificate: {error}", .file.display())]
    BadCa {
        /// The file.
        file: PathBuf,
        /// rustls' error.
        error: rustls::Error,
    },
    /// The server certificate verifier cannot be built from the roots
    /// (`ca_file`'s, or the system's when it is unset).
    #[error("key `ca_file`: {error}")]
    Verifier {
        /// rustls' error.
        error: VerifierBuilderError,
    },
    /// `server_name` is not a DNS name or an IP address.
    #[error("key `server_name`: {name:?} is not a host name: {error}")]
    ServerName {
        /// The name, as written.
        name: String,
        /// Why.
        error: Arc<InvalidDnsNameError>,
    },
    /// rustls refuses its own default protocol versions with the provider.
    #[error("TLS: {error}")]
    Versions {
        /// rustls' error.
        error: rustls::Error,
    },
    /// `cert_file` without `key_file`.
    #[error("key `key_file` is missing (cert_file is set)")]
    NoKeyFile,
    /// `key_file` without `cert_file`.
    #[error("key `cert_file` is missing (key_file is set)")]
    NoCertFile,
    /// `key_file` holds no private key that can be used.
    #[error("key `key_file`: {}: no usable private key: {error}", .file.display())]
    Key {
        /// The file.
        file: PathBuf,
        /// Why.
        error: Arc<pem::Error>,
    },
    /// The client certificate and the key do not belong together.
    #[error("keys `cert_file`/`key_file`: {} and {} do not make a usable pair: {error}", .cert_file.display(), .key_file.display())]
    Pair {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
        /// rustls' error.
        error: rustls::Error,
    },
}

/// `tls_*` labels of a `file_sd` group that make no `tls_config`
/// ([`from_labels`]); the files they name are checked later, as
/// [`ClientTlsError`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsLabelError {
    /// `tls_insecure_skip_verify` is neither `true` nor `false`.
    #[error("label `tls_insecure_skip_verify` is {value:?}, not true or false")]
    InsecureSkipVerify {
        /// The label's value.
        value: String,
    },
}

/// `tls_config = { ... }` (Prometheus' `tls_config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates (PEM) the server's certificate must chain to; unset: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must be valid for, instead of the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Do not check the server's certificate at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    /// The same with relative paths taken from `base` (the directory of
    /// the file that names them).
    pub fn anchored(mut self, base: &Path) -> Self {
        for p in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file]
            .into_iter()
            .flatten()
        {
            *p = base.join(&*p);
        }
        self
    }

    /// The rustls settings: every file read and checked now. Errors name
    /// the key and the file.
    pub fn rustls(&self) -> Result<ClientConfig, ClientTlsError> {
        let provider = edges::web_config::provider();
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            Arc::new(NoVerification(Arc::clone(&provider)))
        } else {
            let roots = match &self.ca_file {
                Some(path) => {
                    let mut roots = RootCertStore::empty();
                    for cert in read_certs("ca_file", path)? {
                        roots.add(cert).map_err(|error| ClientTlsError::BadCa {
                            file: path.clone(),
                            error,
                        })?;
                    }
                    Arc::new(roots)
                }
                None => system_roots(),
            };
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|error| ClientTlsError::Verifier { error })?;
            match &self.server_name {
                Some(name) => {
                    let name = ServerName::try_from(name.clone()).map_err(|error| {
                        ClientTlsError::ServerName {
                            name: name.clone(),
                            error: Arc::new(error),
                        }
                    })?;
                    Arc::new(Named {
                        inner: webpki,
                        name,
                    })
                }
                None => webpki,
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| ClientTlsError::Versions { error })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(ClientTlsError::NoKeyFile),
            (None, Some(_)) => return Err(ClientTlsError::NoCertFile),
            (Some(cert), Some(key)) => {
                let certs = read_certs("cert_file", cert)?;
                let der =
                    PrivateKeyDer::from_pem_file(key).map_err(|error| ClientTlsError::Key {
                        file: key.clone(),
                        error: Arc::new(error),
                    })?;
                builder
                    .with_client_auth_cert(certs, der)
                    .map_err(|error| ClientTlsError::Pair {
                        cert_file: cert.clone(),
                        key_file: key.clone(),
                        error,
                    })?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The `tls_*` labels of a `file_sd` group as a `tls_config` (none when
/// the group has none), paths taken from `dir`.
pub fn from_labels(
    labels: &std::collections::BTreeMap<String, String>,
    dir: &Path,
) -> Result<Option<TlsConfig>, TlsLabelError> {
    let get = |k: &str| labels.get(k).cloned();
    let insecure = match labels.get("tls_insecure_skip_verify").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(TlsLabelError::InsecureSkipVerify {
                value: other.to_owned(),
            })
        }
    };
    let t = TlsConfig {
        ca_file: get("tls_ca_file").map(PathBuf::from),
        cert_file: get("tls_cert_file").map(PathBuf::from),
        key_file: get("tls_key_file").map(PathBuf::from),
        server_name: get("tls_server_name"),
        insecure_skip_verify: insecure,
    };
    Ok((t != TlsConfig::default()).then(|| t.anchored(dir)))
}

/// A client builder speaking TLS as `tls` says (system roots, no client
/// certificate when `None`). `what` names the URL's owner in the warning
/// `insecure_skip_verify` gets.
pub fn client_builder(
    tls: Option<&TlsConfig>,
    what: &str,
) -> Result<reqwest::ClientBuilder, ClientTlsError> {
    let config = match tls {
        Some(t) => {
            if t.insecure_skip_verify {
                tracing::warn!(
                    who = what,
                    "tls_config.insecure_skip_verify = true: the server's certificate is NOT checked; anyone on the path can pose as it"
                );
            }
            t.rustls()?
        }
        None => default_config()?,
    };
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .user_agent(concat!("watchdog/", env!("CARGO_PKG_VERSION"))))
}

/// The settings without a `tls_config`, built once.
fn default_config() -> Result<ClientConfig, ClientTlsError> {
    static DEFAULT: OnceLock<Result<ClientConfig, ClientTlsError>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| TlsConfig::default().rustls())
        .clone()
}

/// The system's roots, read once: a few hundred certificates parsed per
/// client would cost milliseconds at every reload.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::warn!(error = %err, "reading the system's CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system CA certificates");
        if added == 0 {
            tracing::warn!(
                "no system CA certificates found: https URLs without tls_config.ca_file will fail"
            );
        }
        Arc::new(roots)
    }))
}

fn read_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|error| ClientTlsError::ReadCerts {
            key,
            file: path.to_owned(),
            error: Arc::new(error),
        })?;
    if certs.is_empty() {
        return Err(ClientTlsError::NoCerts {
            key,
            file: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Checks the certificate against `server_name` instead of the URL's host.
#[derive(Debug)]
struct Named {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for Named {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate, for any name, from anyone.
/// The handshake's signatures are still checked (the peer holds the key of
/// the certificate it shows), which buys nothing against an impostor.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_taken_from_the_files_directory() {
        let t = TlsConfig {
            ca_file: Some("ca.crt".into()),
            cert_file: Some("/abs/c.crt".into()),
            ..TlsConfig::default()
        }
        .anchored(Path::new("/etc/watchdog"));
        assert_eq!(t.ca_file.unwrap(), Path::new("/etc/watchdog/ca.crt"));
        assert_eq!(t.cert_file.unwrap(), Path::new("/abs/c.crt"));
    }

    #[test]
    fn bad_settings_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        for (t, want) in [
            (
                TlsConfig {
                    ca_file: Some(dir.path().join("missing.crt")),
                    ..TlsConfig::default()
                },
                "missing.crt",
            ),
            (
                TlsConfig {
                    ca_file: Some(junk.clone()),
                    ..TlsConfig::default()
                },
                "ca_file",
            ),
            (
                TlsConfig {
                    cert_file: Some(junk.clone()),
                    ..TlsConfig::default()
                },
                "key_file",
            ),
            (
                TlsConfig {
                    server_name: Some("not a name!".into()),
                    ..TlsConfig::default()
                },
                "server_name",
            ),
        ] {
            let e = t.rustls().unwrap_err().to_string();
            assert!(e.contains(want), "{t:?}: {e}");
        }
        assert!(TlsConfig::default().rustls().is_ok());
    }

    #[test]
    fn a_bad_insecure_label_says_which_label_and_value() {
        let labels = [("tls_insecure_skip_verify".to_owned(), "yes".to_owned())].into();
        let e = from_labels(&labels, Path::new("/etc")).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"label `tls_insecure_skip_verify` is "yes", not true or false"#
        );
    }
}
