//! TLS for the face (PROTOCOLS.md §1.10): rustls on ring, a certificate chain and its key
//! from PEM files. Kiosks that speak TLS themselves (PyPI `sip2`, Ceridwen) connect
//! directly; others keep using stunnel on their side.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// `[sip2_server.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM file with the certificate chain (server certificate first).
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// A file could not be read.
    #[error("cannot read sip2_server.tls.{key} {path}")]
    Read {
        /// `cert_file` or `key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("sip2_server.tls.cert_file {0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("sip2_server.tls.key_file {0} holds no PEM private key")]
    NoKey(PathBuf),
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("sip2_server.tls: certificate and key rejected")]
    Config(#[source] rustls::Error),
}

/// A ready TLS acceptor.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Loads the certificate chain and key.
    pub fn new(config: &ServerTlsConfig) -> Result<Self, ServerTlsError> {
        let read = |key, path: &PathBuf| {
            std::fs::read(path).map_err(|source| ServerTlsError::Read {
                key,
                path: path.clone(),
                source,
            })
        };
        let cert_pem = read("cert_file", &config.cert_file)?;
        let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|source| ServerTlsError::Read {
                key: "cert_file",
                path: config.cert_file.clone(),
                source,
            })?;
        if certs.is_empty() {
            return Err(ServerTlsError::NoCertificate(config.cert_file.clone()));
        }
        let key_pem = read("key_file", &config.key_file)?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|source| ServerTlsError::Read {
                key: "key_file",
                path: config.key_file.clone(),
                source,
            })?
            .ok_or_else(|| ServerTlsError::NoKey(config.key_file.clone()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ServerTlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(ServerTlsError::Config)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// The acceptor.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}
