//! TLS for the API (`[api.tls]`): rustls on ring with a certificate chain and key from PEM
//! files, served by axum through a [`Listener`] whose handshakes run on tasks of their
//! own, so a slow or silent client never holds up the next one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// `[api.tls]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTlsConfig {
    /// PEM file with the certificate chain (the server's certificate first).
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiTlsError {
    /// A file could not be read or parsed.
    #[error("api.tls.{key} {}: {problem}", path.display())]
    File {
        /// `cert_file` or `key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the pair (the key does not match the certificate, …).
    #[error("api.tls: the certificate and key were refused: {0}")]
    Config(#[source] rustls::Error),
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Loads the certificate chain and key.
pub fn acceptor(config: &ApiTlsConfig) -> Result<TlsAcceptor, ApiTlsError> {
    let file = |key, path: &PathBuf, problem: String| ApiTlsError::File {
        key,
        path: path.clone(),
        problem,
    };
    let cert_pem = std::fs::read(&config.cert_file)
        .map_err(|e| file("cert_file", &config.cert_file, e.to_string()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| file("cert_file", &config.cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(file(
            "cert_file",
            &config.cert_file,
            "holds no PEM certificate".into(),
        ));
    }
    let key_pem = std::fs::read(&config.key_file)
        .map_err(|e| file("key_file", &config.key_file, e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| file("key_file", &config.key_file, e.to_string()))?
        .ok_or_else(|| {
            file(
                "key_file",
                &config.key_file,
                "holds no PEM private key".into(),
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ApiTlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(ApiTlsError::Config)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// A listener handing axum connections whose TLS handshake is done.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` until `stop` fires; each handshake on a task of its own.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor, stop: CancellationToken) -> Self {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (done, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of file descriptors and the like: pause, as axum does.
                            tracing::warn!(%error, "API accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = done.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "API TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "API TLS handshake timed out"),
                    }
                });
            }
        });
        Self { ready, local }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // Stopped: axum's graceful shutdown ends the server; nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
