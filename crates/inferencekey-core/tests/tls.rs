//! HTTPS through the client's TLS stack (rustls with the ring provider and the platform
//! verifier): an unknown certificate authority is refused, and one named by
//! `SSL_CERT_FILE` is trusted.

// Setting environment variables is unsafe in edition 2024 because another thread may
// read them at the same time; this test binary holds a single test, so none does.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use inferencekey_core::{ErrorKind, ManagementClient};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const SERVER_CERT: &[u8] = include_bytes!("fixtures/test-server.pem");
const SERVER_KEY: &[u8] = include_bytes!("fixtures/test-server.key");
const CA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-ca.pem");

/// A one-request-per-connection HTTPS server answering every request with `[]`.
fn serve_tls() -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(SERVER_CERT)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            if head.is_empty() {
                continue;
            }
            let _ = tls.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]",
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    addr
}

fn client(addr: SocketAddr) -> ManagementClient {
    ManagementClient::builder()
        .base_url(format!("https://{addr}"))
        .project("orbit")
        .sdk_token(format!("ik_sdk_0123abcd_{}", "a1".repeat(32)))
        .options(inferencekey_core::ClientOptions {
            max_retries: 0,
            ..Default::default()
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn unknown_authority_is_refused_and_ssl_cert_file_is_honoured() {
    unsafe { std::env::remove_var("SSL_CERT_DIR") };
    unsafe { std::env::remove_var("SSL_CERT_FILE") };
    let addr = serve_tls();
    let e = client(addr).list(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Api);
    assert!(e.message().to_lowercase().contains("certificate"), "{e}");

    unsafe { std::env::set_var("SSL_CERT_FILE", CA_FILE) };
    let list = client(addr).list(None).await.unwrap();
    assert!(list.is_empty());
}
