//! Dataplane tokens on the ADS and SDS ports, checked with an independent client (envoy-types'
//! generated gRPC client over TLS): no token, a malformed one, one for another dataplane or mesh,
//! an expired one get no resource, never a private key; revoking a token or deleting its key
//! closes the open stream.

use std::time::Duration;

use kuma_ca::{DataplaneClaims, SigningKey, TokenTimes};
use kuma_model::{ResourceKey, ResourceType, SecretSpec, Spec};
use kuma_store::ResourceStore;
use kuma_test_support::free_port;
use kuma_xds::{issue_dataplane_token, signing_key_secret_name, TokenRequest, XdsType};
use tonic::Code;

use crate::ads_client::{SotwClient, CDS};
use crate::harness::{backend_dataplane, Harness};
use crate::mtls::must_enable_mtls;

const DAY: Duration = Duration::from_secs(24 * 3600);
/// A revoked token's stream must be closed within this.
const CLOSE: Duration = Duration::from_secs(5);

async fn token(h: &Harness, mesh: &str, name: &str) -> String {
    let request =
        TokenRequest { mesh: mesh.into(), name: name.into(), valid_for: DAY, ..Default::default() };
    issue_dataplane_token(h.store.as_ref(), &request).await.expect("a token")
}

/// The default mesh's signing key 1, read back from its Secret.
async fn signing_key(h: &Harness) -> SigningKey {
    let key =
        ResourceKey::new(ResourceType::Secret, "default", &signing_key_secret_name("default", 1));
    let secret = h.store.get(&key).await.unwrap();
    SigningKey::from_pem("1", &secret.spec.as_secret().unwrap().text().unwrap()).unwrap()
}

async fn must_be_refused(client: &mut SotwClient, code: Code, says: &str) {
    client.request(CDS, &[], "", "").await;
    let status = client.must_fail().await;
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(says), "{:?} should say {says:?}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_gives_nothing_without_a_valid_token_for_the_dataplane() {
    let (h, ca, _) = Harness::start_secure().await;
    h.apply(&backend_dataplane("default", free_port(), free_port())).await;
    let port = h.xds_port;
    let node = "default.backend-1";

    let mut none = SotwClient::connect_secure(port, &ca, None, node, false).await;
    must_be_refused(&mut none, Code::Unauthenticated, "no dataplane token").await;

    let mut garbage = SotwClient::connect_secure(port, &ca, Some("not.a.jwt"), node, false).await;
    must_be_refused(&mut garbage, Code::Unauthenticated, "malformed").await;

    let other = token(&h, "default", "web-1").await;
    let mut wrong_name = SotwClient::connect_secure(port, &ca, Some(&other), node, false).await;
    must_be_refused(&mut wrong_name, Code::PermissionDenied, "not \"backend-1\"").await;

    h.apply("type: Mesh\nname: other").await;
    kuma_xds::ensure_signing_keys(h.store.as_ref()).await.unwrap();
    let other_mesh = token(&h, "other", "backend-1").await;
    let mut wrong_mesh =
        SotwClient::connect_secure(port, &ca, Some(&other_mesh), node, false).await;
    must_be_refused(&mut wrong_mesh, Code::PermissionDenied, "for mesh \"other\"").await;

    let key = signing_key(&h).await;
    let mut claims = DataplaneClaims {
        mesh: "default".into(),
        name: "backend-1".into(),
        tags: Default::default(),
        times: TokenTimes::starting(chrono::Utc::now().timestamp() - 7200, Duration::from_secs(60)),
    };
    let expired = key.sign(&claims).unwrap();
    let mut late = SotwClient::connect_secure(port, &ca, Some(&expired), node, false).await;
    must_be_refused(&mut late, Code::Unauthenticated, "expired").await;

    // Claims for another mesh signed with this mesh's key: the scope check refuses them.
    claims.mesh = "other".into();
    claims.times = TokenTimes::starting(chrono::Utc::now().timestamp(), DAY);
    let forged = key.sign(&claims).unwrap();
    let mut misnamed = SotwClient::connect_secure(port, &ca, Some(&forged), node, false).await;
    must_be_refused(&mut misnamed, Code::PermissionDenied, "mesh \"other\"").await;

    let good = token(&h, "default", "backend-1").await;
    let mut allowed = SotwClient::connect_secure(port, &ca, Some(&good), node, false).await;
    allowed.request(CDS, &[], "", "").await;
    let response = allowed.must_recv().await;
    assert_eq!(response.type_url, CDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_never_hands_out_a_key_without_the_dataplanes_own_token() {
    let (h, ca, sds_port) = Harness::start_secure().await;
    must_enable_mtls(&h, None).await;
    h.apply(&backend_dataplane("default", free_port(), free_port())).await;
    let node = "default.backend-1";
    let secrets = ["identity_cert:secret:default", "mesh_ca:secret:default"];
    let secret_type = XdsType::Secret.type_url();

    for (token, code) in [
        (None, Code::Unauthenticated),
        (Some(token(&h, "default", "web-1").await), Code::PermissionDenied),
    ] {
        let mut client =
            SotwClient::connect_secure(sds_port, &ca, token.as_deref(), node, true).await;
        client.request(&secret_type, &secrets, "", "").await;
        let status = client.must_fail().await;
        assert_eq!(status.code(), code, "{status:?}");
    }

    let good = token(&h, "default", "backend-1").await;
    let mut client = SotwClient::connect_secure(sds_port, &ca, Some(&good), node, true).await;
    client.request(&secret_type, &secrets, "", "").await;
    let response = client.must_recv().await;
    assert_eq!(response.resources.len(), 2, "the dataplane's own token gets its identity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_closes_its_open_stream_within_seconds() {
    let (h, ca, _) = Harness::start_secure().await;
    h.apply(&backend_dataplane("default", free_port(), free_port())).await;
    let good = token(&h, "default", "backend-1").await;
    let mut client =
        SotwClient::connect_secure(h.xds_port, &ca, Some(&good), "default.backend-1", false).await;
    client.request(CDS, &[], "", "").await;
    client.must_recv().await;

    let claims: DataplaneClaims = kuma_ca::verify(
        &good,
        &signing_key(&h).await.verifying_key().unwrap(),
        "default",
        chrono::Utc::now().timestamp(),
    )
    .unwrap();
    let revocations = format!("some-other-id,{}\n", claims.times.jti);
    let key =
        ResourceKey::new(ResourceType::Secret, "default", "dataplane-token-revocations-default");
    let started = std::time::Instant::now();
    h.store
        .create(key, Spec::Secret(SecretSpec::from_bytes(revocations.as_bytes())))
        .await
        .unwrap();
    let status = tokio::time::timeout(CLOSE, client.must_fail()).await.expect("closed in time");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("revoked"), "{status:?}");
    eprintln!("revoked token's stream closed after {:?}", started.elapsed());

    let mut again =
        SotwClient::connect_secure(h.xds_port, &ca, Some(&good), "default.backend-1", false).await;
    must_be_refused(&mut again, Code::Unauthenticated, "revoked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_keeps_old_tokens_until_it_is_deleted_which_closes_their_streams() {
    let (h, ca, _) = Harness::start_secure().await;
    h.apply(&backend_dataplane("default", free_port(), free_port())).await;
    let node = "default.backend-1";
    let old = token(&h, "default", "backend-1").await;
    assert_eq!(kuma_xds::rotate_signing_key(h.store.as_ref(), "default").await.unwrap(), 2);
    let new = token(&h, "default", "backend-1").await;
    assert_eq!(kuma_ca::token_kid(&new).unwrap(), "2", "new tokens use the newest key");

    let mut on_old = SotwClient::connect_secure(h.xds_port, &ca, Some(&old), node, false).await;
    on_old.request(CDS, &[], "", "").await;
    on_old.must_recv().await;

    let key =
        ResourceKey::new(ResourceType::Secret, "default", &signing_key_secret_name("default", 1));
    h.store.delete(&key, None).await.unwrap();
    let status = tokio::time::timeout(CLOSE, on_old.must_fail()).await.expect("closed in time");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("key \"1\""), "{status:?}");

    let mut on_new = SotwClient::connect_secure(h.xds_port, &ca, Some(&new), node, false).await;
    on_new.request(CDS, &[], "", "").await;
    assert_eq!(on_new.must_recv().await.type_url, CDS);
}
