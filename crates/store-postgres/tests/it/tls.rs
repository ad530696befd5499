//! TLS towards the database: each mode against servers with certificates from rcgen.

use std::path::Path;

use kuma_store_postgres::{PostgresConfig, PostgresError, PostgresStore, TlsMode};
use kuma_test_support::PgServer;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

use crate::support::config_for;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn must_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

/// A server certificate from `ca` for `sans` (DNS names or IP addresses); (cert PEM, key PEM).
fn must_server_cert(ca: &Ca, sans: &[&str]) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans
        .iter()
        .map(|san| match san.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*san).try_into().unwrap()),
        })
        .collect();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn must_tls_server(cert: (String, String)) -> PgServer {
    tokio::task::spawn_blocking(move || PgServer::must_start_with_tls(&cert.0, &cert.1))
        .await
        .unwrap()
}

fn with_tls(server: &PgServer, mode: TlsMode, ca: Option<&Path>) -> PostgresConfig {
    let mut config = config_for(server);
    config.tls.mode = mode;
    config.tls.ca_path = ca.map(Path::to_path_buf);
    config
}

/// Migrates (once) and connects; `Ok` when the store's connection works, and whether it is
/// encrypted as `pg_stat_ssl` sees it.
async fn try_store(server: &PgServer, config: &PostgresConfig) -> Result<bool, PostgresError> {
    kuma_store_postgres::migrate_up(config).await?;
    let store = PostgresStore::connect(config).await?;
    store.ping().await.map_err(PostgresError::from)?;
    let encrypted = server.must_psql(
        "kuma",
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'kuma-cp'",
    );
    Ok(encrypted == "t")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tls_mode_connects_to_a_server_whose_certificate_names_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = must_ca("kuma test CA");
    let other_ca = must_ca("another CA");
    let ca_file = dir.path().join("ca.pem");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    std::fs::write(&other_file, &other_ca.pem).unwrap();
    let server = must_tls_server(must_server_cert(&ca, &["127.0.0.1"])).await;

    for (mode, ca) in [
        (TlsMode::Require, None),
        (TlsMode::VerifyCa, Some(ca_file.as_path())),
        (TlsMode::VerifyFull, Some(ca_file.as_path())),
    ] {
        let encrypted = try_store(&server, &with_tls(&server, mode, ca)).await;
        assert_eq!(encrypted, Ok(true), "{mode}");
    }
    // Last: connections of the stores above may still be closing, and they all use TLS.
    assert_eq!(try_store(&server, &with_tls(&server, TlsMode::Disable, None)).await, Ok(false));
    for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
        let config = with_tls(&server, mode, Some(&other_file));
        let err = PostgresStore::connect(&config).await.unwrap_err();
        assert!(err.to_string().contains("certificate"), "{mode}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_accepts_a_certificate_for_another_name_and_verify_full_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = must_ca("kuma test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let server = must_tls_server(must_server_cert(&ca, &["db.invalid"])).await;

    let verify_ca = with_tls(&server, TlsMode::VerifyCa, Some(&ca_file));
    assert_eq!(try_store(&server, &verify_ca).await, Ok(true));
    let verify_full = with_tls(&server, TlsMode::VerifyFull, Some(&ca_file));
    let err = PostgresStore::connect(&verify_full).await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_tls_error_naming_it() {
    let config = PostgresConfig {
        tls: kuma_store_postgres::TlsConfig {
            mode: TlsMode::VerifyFull,
            ca_path: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = PostgresStore::connect(&config).await.unwrap_err();
    assert!(matches!(err, PostgresError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_client_certificate_is_presented_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = must_ca("kuma test CA");
    let client_ca = must_ca("client CA");
    let (server_cert, server_key) = must_server_cert(&ca, &["127.0.0.1"]);
    let server = tokio::task::spawn_blocking({
        let client_ca = client_ca.pem.clone();
        move || PgServer::must_start_with_client_ca(&server_cert, &server_key, &client_ca)
    })
    .await
    .unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "kuma-cp-client");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &client_ca.issuer).unwrap();
    let (cert_file, key_file) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    let mut config = with_tls(&server, TlsMode::Require, None);
    config.tls.cert_path = Some(cert_file);
    config.tls.key_path = Some(key_file);
    kuma_store_postgres::migrate_up(&config).await.unwrap();
    let store = PostgresStore::connect(&config).await.unwrap();
    store.ping().await.unwrap();
    let dn = server.must_psql(
        "kuma",
        "SELECT string_agg(DISTINCT s.client_dn, ',') FROM pg_stat_ssl s \
         JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'kuma-cp'",
    );
    assert_eq!(dn, "/CN=kuma-cp-client");
    drop(store);
}
