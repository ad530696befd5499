//! `kuma_k8s::token_review` against a real kube-apiserver: tokens minted with the TokenRequest
//! API for a ServiceAccount, and one bound to a Pod, come back with their namespace, account and
//! pod; a garbage token, a user's token and the token of a deleted account are refused.

use std::time::{Duration, Instant};

use kuma_k8s::token_review::{review, ReviewError, ReviewedToken};
use kuma_test_support::KubeApiServer;
use serde_json::{json, Value};

/// How long the API server may take to notice a deleted ServiceAccount (its lookups go through
/// an informer).
const NOTICE_DELETION: Duration = Duration::from_secs(30);

/// One admin request that must succeed; its answer as JSON.
fn must(server: &KubeApiServer, method: &str, path: &str, body: Value) -> Value {
    let body = body.to_string();
    let body = if method == "DELETE" && body == "null" { None } else { Some(body.as_str()) };
    let reply = server.request(method, path, body).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!((200..300).contains(&reply.status), "{method} {path}: {} {}", reply.status, reply.body);
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", reply.body))
}

/// A token of `demo/web` from the TokenRequest API, bound to `pod` (name, uid) when given.
fn must_mint(server: &KubeApiServer, pod: Option<(&str, &str)>) -> String {
    let mut spec = json!({"expirationSeconds": 3600});
    if let Some((name, uid)) = pod {
        spec["boundObjectRef"] =
            json!({"kind": "Pod", "apiVersion": "v1", "name": name, "uid": uid});
    }
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let answer = must(server, "POST", "/api/v1/namespaces/demo/serviceaccounts/web/token", request);
    answer["status"]["token"].as_str().expect("a token").to_string()
}

/// A kube client for the test apiserver, from the kubeconfig it writes.
async fn client(server: &KubeApiServer) -> kube::Client {
    kuma_k8s::client_from_kubeconfig(server.kubeconfig())
        .await
        .expect("a client for the test apiserver")
}

#[test]
fn service_account_tokens_are_reviewed_by_the_api_server() {
    let server = KubeApiServer::must_start();
    must(&server, "POST", "/api/v1/namespaces", json!({"metadata": {"name": "demo"}}));
    let account = json!({"metadata": {"name": "web"}});
    must(&server, "POST", "/api/v1/namespaces/demo/serviceaccounts", account);
    let pod = json!({"metadata": {"name": "web-0"}, "spec": {"serviceAccountName": "web",
        "containers": [{"name": "app", "image": "app"}]}});
    let pod = must(&server, "POST", "/api/v1/namespaces/demo/pods", pod);
    let uid = pod["metadata"]["uid"].as_str().expect("a uid").to_string();
    let unbound = must_mint(&server, None);
    let bound = must_mint(&server, Some(("web-0", &uid)));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = client(&server).await;
        let started = Instant::now();
        let reviewed = review(&client, &unbound).await.expect("a genuine token");
        let cold = started.elapsed();
        let web = |pod_name: Option<&str>| ReviewedToken {
            namespace: "demo".into(),
            service_account: "web".into(),
            pod_name: pod_name.map(str::to_string),
        };
        assert_eq!(reviewed, web(None));
        assert_eq!(review(&client, &bound).await.expect("a bound token"), web(Some("web-0")));

        let mut warm: Vec<Duration> = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            review(&client, &bound).await.expect("still genuine");
            warm.push(started.elapsed());
        }
        warm.sort();
        eprintln!(
            "TokenReview latency: first {cold:?}, then median {:?}, p90 {:?} (of 50)",
            warm[25], warm[45]
        );

        let garbage = review(&client, "not-a-token").await.unwrap_err();
        assert!(matches!(garbage, ReviewError::Unauthenticated { .. }), "{garbage}");
        assert!(!garbage.is_retryable());
        // Flip one character of the signature: signed by nobody.
        let mut forged = unbound.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let error = review(&client, &forged).await.unwrap_err();
        assert!(matches!(error, ReviewError::Unauthenticated { .. }), "{error}");
        let admin = review(&client, server.token()).await.unwrap_err();
        assert!(
            matches!(&admin, ReviewError::NotAServiceAccount { username } if username == "admin"),
            "{admin}"
        );

        must(&server, "DELETE", "/api/v1/namespaces/demo/serviceaccounts/web", Value::Null);
        let deleted = Instant::now();
        let deadline = deleted + NOTICE_DELETION;
        let refused = loop {
            match review(&client, &unbound).await {
                Err(error) => break error,
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Ok(_) => panic!("a deleted account's token was still accepted"),
            }
        };
        assert!(matches!(refused, ReviewError::Unauthenticated { .. }), "{refused}");
        eprintln!("deleted account's token refused after {:?}: {refused}", deleted.elapsed());
        let refused = review(&client, &bound).await.unwrap_err();
        assert!(matches!(refused, ReviewError::Unauthenticated { .. }), "{refused}");
    });
}
