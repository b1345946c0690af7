//! TLS towards the ACS (PROTOCOLS.md §1.10): rustls on ring, trusting a CA file, a pinned
//! certificate (SHA-256 of its DER bytes), or both.
//!
//! SIP2 has no TLS of its own and carries passwords in clear; sites put stunnel in front of
//! the ACS, or the ACS speaks TLS itself (FOLIO, Ceridwen). There is no silent fallback to
//! plain text: a failed handshake is an error.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// TLS settings for one SIP2 peer (`[ils.sip2.tls]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server certificate's DER bytes, hex (colons and case ignored).
    #[serde(default)]
    pub pin_sha256: Option<String>,
    /// Name to check the certificate against and send as SNI (default: the host of `addr`).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Why TLS could not be set up or the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Neither a CA file nor a pin was configured.
    #[error("ils.sip2.tls needs ca_file or pin_sha256 (there is no system trust store here)")]
    NoTrust,
    /// The CA file could not be read.
    #[error("cannot read ils.sip2.tls.ca_file {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("ils.sip2.tls.ca_file {path} holds no usable certificate")]
    CaEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The pin is not 64 hex digits.
    #[error("ils.sip2.tls.pin_sha256 must be 64 hex digits (SHA-256 of the certificate DER)")]
    Pin,
    /// The server name is not a DNS name or IP address.
    #[error("TLS server name {0:?} is not a DNS name or IP address")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("TLS configuration rejected")]
    Config(#[source] rustls::Error),
    /// The handshake failed (certificate not trusted, pin mismatch, protocol error).
    #[error("TLS handshake with the SIP2 server failed")]
    Handshake(#[source] std::io::Error),
}

/// Parses a hex SHA-256 pin.
fn parse_pin(pin: &str) -> Result<[u8; 32], TlsError> {
    let digits: Vec<u8> = pin.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
    if digits.len() != 64 {
        return Err(TlsError::Pin);
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = (char::from(pair[0])).to_digit(16).ok_or(TlsError::Pin)?;
        let lo = (char::from(pair[1])).to_digit(16).ok_or(TlsError::Pin)?;
        *slot = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

/// SHA-256 of a certificate's DER bytes, as lowercase hex (what `pin_sha256` expects).
pub fn certificate_sha256(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    /// Also checks the chain and name when a CA file is given.
    inner: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(inner) = &self.inner {
            inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match ils.sip2.tls.pin_sha256".into(),
            ))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A ready TLS client for one peer.
#[derive(Clone)]
pub struct Sip2Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Sip2Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sip2Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Sip2Tls {
    /// Builds the client from config; `default_host` is the host part of the peer address.
    pub fn new(config: &TlsConfig, default_host: &str) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &config.ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| TlsError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.map_err(|source| TlsError::CaFile {
                        path: path.clone(),
                        source,
                    })?;
                    // A certificate rustls cannot use is skipped; none at all is an error.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TlsError::CaEmpty { path: path.clone() });
                }
                Some(Arc::new(roots))
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?;
        let client = match (&config.pin_sha256, roots) {
            (None, None) => return Err(TlsError::NoTrust),
            (None, Some(roots)) => builder.with_root_certificates(roots).with_no_client_auth(),
            (Some(pin), roots) => {
                let inner: Option<Arc<dyn ServerCertVerifier>> = match roots {
                    None => None,
                    Some(roots) => Some(
                        rustls::client::WebPkiServerVerifier::builder_with_provider(
                            roots,
                            provider.clone(),
                        )
                        .build()
                        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?,
                    ),
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                        pin: parse_pin(pin)?,
                        inner,
                        provider,
                    }))
                    .with_no_client_auth()
            }
        };
        let name = config
            .server_name
            .clone()
            .unwrap_or_else(|| default_host.to_owned());
        let server_name =
            ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// Runs the handshake over an open stream.
    pub async fn connect<S>(&self, stream: S) -> Result<TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.connector
            .connect(self.server_name.clone(), stream)
            .await
            .map_err(TlsError::Handshake)
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_read_with_colons_and_either_case() {
        let hex = "AB:".repeat(31) + "ab";
        assert_eq!(parse_pin(&hex).unwrap(), [0xAB; 32]);
        assert!(matches!(parse_pin("abc"), Err(TlsError::Pin)));
    }

    #[test]
    fn tls_without_any_trust_anchor_is_refused() {
        let cfg = TlsConfig {
            ca_file: None,
            pin_sha256: None,
            server_name: None,
        };
        assert!(matches!(
            Sip2Tls::new(&cfg, "localhost"),
            Err(TlsError::NoTrust)
        ));
    }

    #[test]
    fn the_host_is_taken_from_the_address() {
        assert_eq!(host_of("127.0.0.1:6001"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6001"), "::1");
        assert_eq!(host_of("ils.example.org:6001"), "ils.example.org");
    }
}
