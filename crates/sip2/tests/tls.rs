//! SIP2 over TLS against the ACS simulator behind a rustls acceptor with a self-signed
//! certificate made in the test: trusted by pin or by CA file; a wrong pin is refused.

use std::sync::Arc;

use rfidgw_sip2::acs_sim::AcsSimulator;
use rfidgw_sip2::client::{Connector, Sip2Error};
use rfidgw_sip2::dialect::Sip2PeerConfig;
use rfidgw_sip2::tls::{TlsConfig, TlsError, certificate_sha256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

struct Server {
    addr: String,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

async fn tls_sim() -> Server {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_der = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sim = AcsSimulator::demo();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let sim = sim.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    sim.serve(tls).await;
                }
            });
        }
    });
    Server {
        addr,
        cert_der,
        cert_pem: certified.cert.pem(),
    }
}

fn config(server: &Server, tls: TlsConfig) -> Sip2PeerConfig {
    let mut c = Sip2PeerConfig::new(&server.addr, "demo", "demo");
    c.institution = "DEMO".into();
    c.tls = Some(tls);
    c
}

#[tokio::test]
async fn a_pinned_certificate_is_trusted_and_the_session_works() {
    let server = tls_sim().await;
    let tls = TlsConfig {
        ca_file: None,
        pin_sha256: Some(certificate_sha256(&server.cert_der)),
        server_name: Some("localhost".into()),
    };
    let connector = Connector::new(config(&server, tls)).unwrap();
    let (mut session, status) = connector.connect(None).await.unwrap();
    assert!(status.online_status);
    let info = session
        .transact(connector.requests().item_information("I0004"))
        .await
        .unwrap();
    assert_eq!(info.fixed.get(..2), Some("04"));
}

#[tokio::test]
async fn a_ca_file_is_trusted_and_the_server_name_is_checked() {
    let server = tls_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();
    let good = TlsConfig {
        ca_file: Some(ca.clone()),
        pin_sha256: None,
        server_name: Some("localhost".into()),
    };
    let (_, status) = Connector::new(config(&server, good))
        .unwrap()
        .connect(None)
        .await
        .unwrap();
    assert!(status.online_status);

    let wrong_name = TlsConfig {
        ca_file: Some(ca),
        pin_sha256: None,
        server_name: Some("ils.example.org".into()),
    };
    let err = Connector::new(config(&server, wrong_name))
        .unwrap()
        .connect(None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Sip2Error::Tls(TlsError::Handshake(_))),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_that_does_not_match_the_pin_is_refused() {
    let server = tls_sim().await;
    let tls = TlsConfig {
        ca_file: None,
        pin_sha256: Some("00".repeat(32)),
        server_name: Some("localhost".into()),
    };
    let err = Connector::new(config(&server, tls))
        .unwrap()
        .connect(None)
        .await
        .unwrap_err();
    let text = rfidgw_sip2::client::error_chain(&err);
    assert!(text.contains("pin_sha256"), "{text}");
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_config_error_naming_the_file() {
    let server = tls_sim().await;
    let tls = TlsConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        pin_sha256: None,
        server_name: None,
    };
    let err = Connector::new(config(&server, tls)).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
