//! Network readers over TCP (FEIG ISC.LR/MR speak ISO-Host on port 10001).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::TransportError;

/// The `tcp` transport's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// `host:port` of the reader, e.g. `"10.1.2.3:10001"`.
    pub addr: String,
    /// How long to wait for the connection, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    3000
}

/// Connects, with `TCP_NODELAY` (a request is one small frame; Nagle would hold it back).
pub async fn open(config: &TcpConfig) -> Result<TcpStream, TransportError> {
    let error = |source: std::io::Error| TransportError::Tcp {
        addr: config.addr.clone(),
        source,
    };
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let stream = tokio::time::timeout(timeout, TcpStream::connect(config.addr.as_str()))
        .await
        .map_err(|_| {
            error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?} (connect_timeout_ms)"),
            ))
        })?
        .map_err(error)?;
    stream.set_nodelay(true).map_err(error)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connects_to_a_loopback_reader_and_carries_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 2];
            sock.read_exact(&mut buf).await.unwrap();
            buf
        });
        let mut stream = open(&TcpConfig {
            addr,
            connect_timeout_ms: 1000,
        })
        .await
        .unwrap();
        stream.write_all(&[0x05, 0xFF]).await.unwrap();
        assert_eq!(server.await.unwrap(), [0x05, 0xFF]);
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = open(&TcpConfig {
            addr: addr.clone(),
            connect_timeout_ms: 1000,
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
