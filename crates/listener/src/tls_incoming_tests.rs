//! Tests of `TlsIncoming` and `TcpIncoming`.

use super::*;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_client_that_never_handshakes_does_not_hold_up_the_next_one() {
    let ca = kuma_ca::ControlPlaneCa::generate().unwrap();
    let issued = ca.issue_server(&["localhost".to_string()]).unwrap();
    let cert = ServerCert::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = TlsIncoming::new(
        listener,
        tls_server_config(cert.clone(), &[]),
        ConnectionLimit { total: 10, per_ip: 10 },
    );

    // Before a certificate is set, handshakes fail; the server keeps accepting.
    let silent = TcpStream::connect(addr).await.unwrap();
    cert.set_pem(&issued.cert_pem, &issued.key_pem).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        tls.flush().await.unwrap();
    });
    let (mut server_side, _) =
        tokio::time::timeout(Duration::from_secs(5), axum::serve::Listener::accept(&mut incoming))
            .await
            .expect("the second client is served while the first never handshakes");
    let mut buf = [0u8; 4];
    server_side.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    client.await.unwrap();
    drop(silent);
}

#[tokio::test]
async fn past_the_connection_limit_a_client_waits_until_another_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = TcpIncoming::new(listener, ConnectionLimit { total: 2, per_ip: 2 });
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    let (first, _) = axum::serve::Listener::accept(&mut incoming).await;
    let (second, _) = axum::serve::Listener::accept(&mut incoming).await;
    let _c = TcpStream::connect(addr).await.unwrap();
    let waited = tokio::time::timeout(
        Duration::from_millis(300),
        axum::serve::Listener::accept(&mut incoming),
    )
    .await;
    assert!(waited.is_err(), "a third connection is not taken while two are open");
    drop(first);
    let third =
        tokio::time::timeout(Duration::from_secs(5), axum::serve::Listener::accept(&mut incoming))
            .await;
    assert!(third.is_ok(), "closing one lets the waiting client in");
    drop(second);
}

#[tokio::test]
async fn one_address_past_its_share_is_closed_while_another_address_is_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut incoming = TcpIncoming::new(listener, ConnectionLimit { total: 10, per_ip: 2 });
    let from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap()
    };
    let mut kept = Vec::new();
    for _ in 0..2 {
        let _client = from([127, 0, 0, 2]).await;
        kept.push((_client, axum::serve::Listener::accept(&mut incoming).await));
    }
    let mut third = from([127, 0, 0, 2]).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the third connection is closed: {read:?}");
    let _other = from([127, 0, 0, 3]).await;
    let served =
        tokio::time::timeout(Duration::from_secs(5), axum::serve::Listener::accept(&mut incoming))
            .await;
    assert!(served.is_ok(), "another address is served");
}
