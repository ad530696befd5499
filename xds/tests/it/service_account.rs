//! Kubernetes service-account tokens (dpServer.auth.type `serviceAccountToken`) on the bootstrap,
//! ADS and SDS ports, with a fake reviewer standing in for the API server's TokenReview (the real
//! one is tested against a real kube-apiserver in kuma-k8s): dataplane `<pod>.<namespace>` is
//! served with a token of its namespace (and of its pod, when bound), refused with 403 /
//! PERMISSION_DENIED otherwise, and told to retry (503 / UNAVAILABLE) when the API server cannot
//! be asked; a token reviewed once is not reviewed again for every stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kuma_store::ResourceStore;
use kuma_test_support::{free_port, http_request};
use kuma_xds::{
    AuthError, BootstrapServer, BootstrapServerConfig, DataplaneAuth, DpAuthType,
    ServiceAccountIdentity, SinglePeer, TokenReviewer, XdsType,
};
use tonic::Code;

use crate::ads_client::{SotwClient, CDS};
use crate::harness::Harness;

/// Knows a fixed set of tokens, counts the reviews of each, and can be switched off like an
/// unreachable API server.
#[derive(Default)]
struct FakeReviewer {
    reviews: Mutex<HashMap<String, usize>>,
    down: AtomicBool,
}

impl FakeReviewer {
    fn reviews_of(&self, token: &str) -> usize {
        self.reviews.lock().unwrap().get(token).copied().unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl TokenReviewer for FakeReviewer {
    async fn review(&self, token: &str) -> Result<ServiceAccountIdentity, AuthError> {
        *self.reviews.lock().unwrap().entry(token.to_string()).or_default() += 1;
        if self.down.load(Ordering::SeqCst) {
            return Err(AuthError::ReviewUnavailable { reason: "connection refused".into() });
        }
        let (namespace, pod) = match token {
            "demo-token" | "demo-token-2" => ("demo", None),
            "web-0-token" => ("demo", Some("web-0")),
            "other-token" => ("other", None),
            _ => {
                return Err(AuthError::InvalidServiceAccountToken {
                    reason: "the API server did not authenticate it".into(),
                })
            }
        };
        Ok(ServiceAccountIdentity {
            namespace: namespace.into(),
            service_account: "default".into(),
            pod_name: pod.map(str::to_string),
        })
    }
}

fn kubernetes_auth(reviewer: &Arc<FakeReviewer>) -> DataplaneAuth {
    DataplaneAuth::new(DpAuthType::ServiceAccountToken).with_reviewer(reviewer.clone())
}

/// Dataplane `<pod>.demo` of mesh default, as the Pod controller names it.
fn pod_dataplane(pod: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {pod}.demo\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {}\n    servicePort: {}\n    tags:\n      kuma.io/service: web_demo_svc_80\n",
        free_port(),
        free_port()
    )
}

async fn must_be_refused(client: &mut SotwClient, type_url: &str, code: Code, says: &str) {
    client.request(type_url, &[], "", "").await;
    let status = client.must_fail().await;
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(says), "{:?} should say {says:?}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_and_sds_serve_a_pod_only_with_a_token_of_its_namespace_and_pod() {
    let reviewer = Arc::new(FakeReviewer::default());
    let (h, ca, sds_port) = Harness::start_secure_with(kubernetes_auth(&reviewer)).await;
    h.apply(&pod_dataplane("web-0")).await;
    let node = "default.web-0.demo";
    let connect = |token: Option<&'static str>, sds: bool| {
        let ca = ca.clone();
        let port = if sds { sds_port } else { h.xds_port };
        async move { SotwClient::connect_secure(port, &ca, token, node, sds).await }
    };

    for token in ["demo-token", "web-0-token"] {
        let mut allowed = connect(Some(token), false).await;
        allowed.request(CDS, &[], "", "").await;
        assert_eq!(allowed.must_recv().await.type_url, CDS, "{token}");
    }

    let mut none = connect(None, false).await;
    must_be_refused(&mut none, CDS, Code::Unauthenticated, "no service-account token").await;
    let mut forged = connect(Some("forged"), false).await;
    must_be_refused(&mut forged, CDS, Code::Unauthenticated, "not valid").await;
    let mut elsewhere = connect(Some("other-token"), false).await;
    must_be_refused(&mut elsewhere, CDS, Code::PermissionDenied, "namespace \"other\"").await;
    let secret = XdsType::Secret.type_url();
    let mut sds_elsewhere = connect(Some("other-token"), true).await;
    must_be_refused(&mut sds_elsewhere, &secret, Code::PermissionDenied, "\"other\"").await;

    h.apply(&pod_dataplane("web-1")).await;
    let mut other_pod = SotwClient::connect_secure(
        h.xds_port,
        &ca,
        Some("web-0-token"),
        "default.web-1.demo",
        false,
    )
    .await;
    must_be_refused(&mut other_pod, CDS, Code::PermissionDenied, "bound to pod \"web-0\"").await;

    reviewer.down.store(true, Ordering::SeqCst);
    let mut unreviewed = connect(Some("forged-while-down"), false).await;
    must_be_refused(&mut unreviewed, CDS, Code::Unavailable, "retry").await;
    // A token reviewed before the API server went away still opens streams.
    let mut cached = connect(Some("demo-token"), false).await;
    cached.request(CDS, &[], "", "").await;
    assert_eq!(cached.must_recv().await.type_url, CDS);
    assert_eq!(reviewer.reviews_of("demo-token"), 1, "one review for both streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_server_answers_403_for_another_namespace_and_503_while_it_cannot_ask() {
    let reviewer = Arc::new(FakeReviewer::default());
    let h = Harness::start().await;
    h.apply(&pod_dataplane("web-0")).await;
    let store: Arc<dyn ResourceStore> = h.store.clone();
    let peers = Arc::new(SinglePeer { host: String::new(), port: h.xds_port });
    let auth = Arc::new(kubernetes_auth(&reviewer));
    let server = BootstrapServer::new(store, BootstrapServerConfig::default().params, peers, auth);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(server.serve(listener, std::future::pending()));
    let post = |name: &str, token: &str| {
        let body = format!(r#"{{"mesh":"default","name":"{name}","dataplaneToken":"{token}"}}"#);
        let reply = http_request(port, "POST", "/bootstrap", Some(&body)).unwrap();
        (reply.status, reply.body)
    };

    let (status, body) = tokio::task::block_in_place(|| post("web-0.demo", "web-0-token"));
    assert_eq!(status, 200, "{body}");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&body).unwrap();
    let metadata = &yaml["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"];
    assert_eq!(metadata[0]["value"], "web-0-token", "Envoy sends the pod's token on ADS");

    for (name, token, expected, says) in [
        ("web-0.demo", "other-token", 403, "namespace \"other\""),
        ("web-1.demo", "web-0-token", 403, "bound to pod \"web-0\""),
        ("web-0", "demo-token", 403, "<pod>.<namespace>"),
        ("web-0.demo", "forged", 401, "not valid"),
        ("web-0.demo", "", 401, "no service-account token"),
    ] {
        let (status, body) = tokio::task::block_in_place(|| post(name, token));
        assert_eq!(status, expected, "{name} with {token:?}: {body}");
        let details: serde_json::Value = serde_json::from_str(&body).unwrap();
        let details = details["details"].as_str().unwrap_or_default();
        assert!(details.contains(says), "{name} with {token:?}: {body}");
    }

    // A token not reviewed before: the API server must be asked.
    reviewer.down.store(true, Ordering::SeqCst);
    let (status, body) = tokio::task::block_in_place(|| post("web-0.demo", "demo-token-2"));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("retry in a moment"), "{body}");
    reviewer.down.store(false, Ordering::SeqCst);
    let (status, body) = tokio::task::block_in_place(|| post("web-0.demo", "demo-token-2"));
    assert_eq!(status, 200, "asked again once the API server is back: {body}");
    assert_eq!(reviewer.reviews_of("web-0-token"), 1, "reviewed once for two requests");
    assert_eq!(reviewer.reviews_of("demo-token-2"), 2, "the failed review was not kept");
}
