//! The standalone SDS server: gRPC over TLS, serving a dataplane's identity and mesh CA.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type as SecretType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use kuma_ca::{certificate_uris, ControlPlaneCa};
use kuma_listener::ServerCert;
use kuma_test_support::free_port;
use kuma_xds::XdsType;
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::harness::{backend_dataplane, Harness};
use crate::mtls::must_enable_mtls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_over_tls_serves_the_identity_and_mesh_ca_of_a_dataplane() {
    let ca = ControlPlaneCa::generate().unwrap();
    let cert = ca.issue_server(&["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let tls = ServerCert::new();
    tls.set_pem(&cert.cert_pem, &cert.key_pem).unwrap();
    let (h, sds_port) = Harness::start_with_sds(tls).await;
    must_enable_mtls(&h, None).await;
    h.apply(&backend_dataplane("default", free_port(), free_port())).await;

    let channel = Channel::from_shared(format!("https://localhost:{sds_port}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca.cert_pem()))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection to the SDS port");
    let mut client = SecretDiscoveryServiceClient::new(channel);
    let request = DiscoveryRequest {
        node: Some(Node { id: "default.backend-1".into(), ..Default::default() }),
        type_url: XdsType::Secret.type_url(),
        resource_names: vec![
            "identity_cert:secret:default".into(),
            "mesh_ca:secret:default".into(),
        ],
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(request).await.unwrap();
    let mut responses = client
        .stream_secrets(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let response = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("a response in time")
        .unwrap()
        .expect("a response");
    let secrets: Vec<Secret> = response
        .resources
        .iter()
        .map(|any| Secret::decode(any.value.as_slice()).unwrap())
        .collect();
    let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["identity_cert:secret:default", "mesh_ca:secret:default"]);
    let Some(SecretType::TlsCertificate(identity)) = &secrets[0].r#type else {
        panic!("{:?}", secrets[0].name)
    };
    let chain = match identity.certificate_chain.as_ref().and_then(|d| d.specifier.as_ref()) {
        Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
            pem,
        )) => pem.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(certificate_uris(&chain).unwrap().0, ["spiffe://default/backend"]);
    drop(tx);
}
