//! Service-account tokens checked against a fake reviewer (the real TokenReview is tested against
//! a real API server in kuma-k8s), and the signing-key Secret names.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// Knows a fixed set of tokens; counts the questions; can be switched off like an unreachable
/// API server.
#[derive(Default)]
struct FakeReviewer {
    known: HashMap<String, ServiceAccountIdentity>,
    calls: AtomicUsize,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl TokenReviewer for FakeReviewer {
    async fn review(&self, token: &str) -> Result<ServiceAccountIdentity, AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(AuthError::ReviewUnavailable { reason: "connection refused".into() });
        }
        self.known.get(token).cloned().ok_or_else(|| AuthError::InvalidServiceAccountToken {
            reason: "the API server did not authenticate it".into(),
        })
    }
}

fn account(namespace: &str, pod: Option<&str>) -> ServiceAccountIdentity {
    ServiceAccountIdentity {
        namespace: namespace.into(),
        service_account: "default".into(),
        pod_name: pod.map(str::to_string),
    }
}

fn reviewer() -> Arc<FakeReviewer> {
    let known = [
        ("demo-token", account("demo", None)),
        ("web-0-token", account("demo", Some("web-0"))),
        ("other-token", account("other", None)),
    ];
    Arc::new(FakeReviewer {
        known: known.into_iter().map(|(t, a)| (t.to_string(), a)).collect(),
        ..FakeReviewer::default()
    })
}

fn auth(reviewer: &Arc<FakeReviewer>) -> DataplaneAuth {
    DataplaneAuth::new(DpAuthType::ServiceAccountToken).with_reviewer(reviewer.clone())
}

async fn check(auth: &DataplaneAuth, token: Option<&str>, name: &str) -> Result<(), AuthError> {
    auth.check(token, "default", name, &BTreeMap::new()).await.map(|_| ())
}

#[tokio::test]
async fn a_token_of_the_dataplanes_namespace_is_accepted() {
    let reviewer = reviewer();
    let auth = auth(&reviewer);
    let identity = auth.check(Some("demo-token"), "default", "web-1.demo", &BTreeMap::new()).await;
    assert_eq!(identity, Ok(Some(DataplaneIdentity::ServiceAccount(account("demo", None)))));
    // A pod name may hold dots; the namespace is what follows the last one.
    check(&auth, Some("demo-token"), "web.v2.demo").await.expect("accepted");
    // The mesh is the pod's choice (its labels), not the token's.
    auth.check(Some("demo-token"), "other-mesh", "web-1.demo", &BTreeMap::new())
        .await
        .expect("any mesh");
}

#[tokio::test]
async fn a_token_of_another_namespace_is_a_permission_error_that_names_both() {
    let auth = auth(&reviewer());
    let e = check(&auth, Some("other-token"), "web-1.demo").await.unwrap_err();
    assert!(e.is_permission() && !e.is_retryable(), "{e:?}");
    assert_eq!(e.to_status().code(), tonic::Code::PermissionDenied);
    let message = e.to_string();
    assert!(message.contains("\"other\"") && message.contains("\"demo\""), "{message}");
    assert_eq!(message.lines().count(), 1);
}

#[tokio::test]
async fn a_pod_bound_token_serves_only_its_own_pod() {
    let auth = auth(&reviewer());
    check(&auth, Some("web-0-token"), "web-0.demo").await.expect("its own pod");
    let e = check(&auth, Some("web-0-token"), "web-1.demo").await.unwrap_err();
    assert!(
        matches!(&e, AuthError::WrongPod { bound, pod, .. } if bound == "web-0" && pod == "web-1")
    );
    assert_eq!(e.to_status().code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn a_name_that_is_not_pod_dot_namespace_is_refused_with_the_expected_shape() {
    let auth = auth(&reviewer());
    for name in ["web-1", "web-1.", ".demo"] {
        let e = check(&auth, Some("demo-token"), name).await.unwrap_err();
        assert!(matches!(e, AuthError::NotAPodName { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains("<pod>.<namespace>"), "{e}");
    }
}

#[tokio::test]
async fn no_token_or_an_unknown_one_is_unauthenticated() {
    let auth = auth(&reviewer());
    for token in [None, Some(""), Some("  ")] {
        let e = check(&auth, token, "web-1.demo").await.unwrap_err();
        assert_eq!(e, AuthError::MissingServiceAccountToken);
        assert_eq!(e.to_status().code(), tonic::Code::Unauthenticated);
    }
    let e = check(&auth, Some("forged"), "web-1.demo").await.unwrap_err();
    assert!(matches!(e, AuthError::InvalidServiceAccountToken { .. }), "{e:?}");
    assert_eq!(e.to_status().code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn an_unreachable_api_server_is_retryable_not_a_refusal_and_is_not_remembered() {
    let reviewer = reviewer();
    let auth = auth(&reviewer);
    reviewer.down.store(true, Ordering::SeqCst);
    let e = check(&auth, Some("demo-token"), "web-1.demo").await.unwrap_err();
    assert!(e.is_retryable() && !e.is_permission(), "{e:?}");
    assert_eq!(e.to_status().code(), tonic::Code::Unavailable);
    reviewer.down.store(false, Ordering::SeqCst);
    check(&auth, Some("demo-token"), "web-1.demo").await.expect("asked again once it is back");
}

#[tokio::test]
async fn without_a_reviewer_service_account_tokens_are_unavailable() {
    let auth = DataplaneAuth::new(DpAuthType::ServiceAccountToken);
    let e = check(&auth, Some("demo-token"), "web-1.demo").await.unwrap_err();
    assert_eq!(e, AuthError::NoReviewer);
    assert_eq!(e.to_status().code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn a_positive_review_is_reused_until_it_is_stale_and_refusals_are_not_kept() {
    let reviewer = reviewer();
    let ttl = Duration::from_millis(200);
    let auth = auth(&reviewer).with_review_cache(ttl, 100);
    check(&auth, Some("demo-token"), "web-1.demo").await.unwrap();
    check(&auth, Some("demo-token"), "web-2.demo").await.unwrap();
    // The cached identity still goes through the name rule.
    check(&auth, Some("demo-token"), "web-1.elsewhere").await.unwrap_err();
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 1, "one review for three checks");

    check(&auth, Some("forged"), "web-1.demo").await.unwrap_err();
    check(&auth, Some("forged"), "web-1.demo").await.unwrap_err();
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 3, "a refusal is asked again");

    // Once stale, the API server is asked again: poll until the review is older than its TTL.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while reviewer.calls.load(Ordering::SeqCst) == 3 {
        assert!(tokio::time::Instant::now() < deadline, "the review never went stale");
        tokio::time::sleep(ttl / 4).await;
        check(&auth, Some("demo-token"), "web-1.demo").await.unwrap();
    }
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn the_review_cache_holds_at_most_its_capacity() {
    let mut known = HashMap::new();
    for i in 0..10 {
        known.insert(format!("token-{i}"), account("demo", None));
    }
    let reviewer = Arc::new(FakeReviewer { known, ..FakeReviewer::default() });
    let auth = auth(&reviewer).with_review_cache(Duration::from_secs(60), 3);
    for i in 0..10 {
        check(&auth, Some(&format!("token-{i}")), "web-1.demo").await.unwrap();
    }
    assert_eq!(auth.reviews.len(), 3);
    check(&auth, Some("token-9"), "web-1.demo").await.unwrap();
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 10, "the newest is still cached");
    check(&auth, Some("token-0"), "web-1.demo").await.unwrap();
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 11, "the oldest was dropped");
}

#[tokio::test]
async fn dataplane_tokens_never_reach_the_reviewer() {
    let reviewer = reviewer();
    let auth = DataplaneAuth::new(DpAuthType::DpToken).with_reviewer(reviewer.clone());
    let e = check(&auth, Some("demo-token"), "web-1.demo").await.unwrap_err();
    assert!(matches!(e, AuthError::Token(_)), "{e:?}");
    assert_eq!(reviewer.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn signing_key_secrets_carry_the_mesh_before_the_key_id() {
    assert_eq!(signing_key_secret_name("default", 1), "dataplane-token-signing-key-default-1");
    assert_eq!(signing_key_kid("default", "dataplane-token-signing-key-default-12"), Some("12"));
    assert_eq!(signing_key_kid("a", "dataplane-token-signing-key-a-b-1"), Some("b-1"));
    assert_eq!(signing_key_kid("a-b", "dataplane-token-signing-key-a-b-1"), Some("1"));
    for other in [
        "dataplane-token-signing-key-1",
        "dataplane-token-signing-key-default-",
        "dataplane-token-signing-key-defaultx-1",
        "dataplane-token-revocations-default",
    ] {
        assert_eq!(signing_key_kid("default", other), None, "{other}");
    }
}

#[test]
fn the_auth_type_has_kumas_names() {
    for (kind, name) in [
        (DpAuthType::DpToken, "\"dpToken\""),
        (DpAuthType::ServiceAccountToken, "\"serviceAccountToken\""),
        (DpAuthType::None, "\"none\""),
    ] {
        assert_eq!(serde_json::to_string(&kind).unwrap(), name);
        assert_eq!(serde_json::from_str::<DpAuthType>(name).unwrap(), kind);
    }
}
