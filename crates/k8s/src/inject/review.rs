//! `review`: one `AdmissionReview` from the apiserver in, its answer out, as JSON bytes.
//!
//! The answer is written here rather than with kube-core's `AdmissionResponse`, whose `patch`
//! (a `Vec<u8>`) serializes as an array of numbers where the apiserver expects base64.

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use super::{inject, InjectorConfig};

/// The path the apiserver POSTs pod admission reviews to.
pub const ADMISSION_PATH: &str = "/inject-sidecar";

const V1: &str = "admission.k8s.io/v1";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    #[serde(default)]
    api_version: Option<String>,
    request: Option<Request>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    #[serde(default)]
    kind: Option<Kind>,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    object: Option<Value>,
}

#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    group: String,
    kind: String,
}

/// What the webhook answers.
enum Verdict {
    Patch(json_patch::Patch),
    Allow,
    Deny { code: u16, message: String },
}

/// Answers the `AdmissionReview` in `body` (what the apiserver POSTs to [`ADMISSION_PATH`]):
/// allowed with a JSON patch when the pod gets a sidecar, allowed as is when it does not,
/// denied with a message when the pod is refused or the request cannot be read. Never panics on
/// bad input. `namespace_of` looks up the pod's namespace (its labels are not in the request),
/// e.g. from a [`NamespaceCache`](super::NamespaceCache).
pub fn review(
    body: &[u8],
    namespace_of: impl Fn(&str) -> Option<Namespace>,
    config: &InjectorConfig,
) -> Vec<u8> {
    let (api_version, uid, verdict) = match serde_json::from_slice::<Review>(body) {
        Ok(Review { api_version, request: Some(mut request) }) => {
            let uid = std::mem::take(&mut request.uid);
            (api_version, uid, decide(request, namespace_of, config))
        }
        Ok(Review { api_version, request: None }) => {
            let message = "the AdmissionReview has no request: send what the apiserver sends";
            (api_version, String::new(), Verdict::Deny { code: 400, message: message.into() })
        }
        Err(e) => {
            // Answer under the request's uid if it can be found, so the apiserver can match it.
            let raw: Option<Value> = serde_json::from_slice(body).ok();
            let field = |pointer: &str| {
                raw.as_ref()
                    .and_then(|v| v.pointer(pointer))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let message = format!("the injector cannot read this AdmissionReview: {e}");
            (
                field("/apiVersion"),
                field("/request/uid").unwrap_or_default(),
                Verdict::Deny { code: 400, message },
            )
        }
    };
    answer(api_version.as_deref(), &uid, verdict)
}

fn decide(
    request: Request,
    namespace_of: impl Fn(&str) -> Option<Namespace>,
    config: &InjectorConfig,
) -> Verdict {
    let is_pod = request.kind.as_ref().is_some_and(|k| k.group.is_empty() && k.kind == "Pod");
    let is_create = request.operation.as_deref() == Some("CREATE");
    let is_subresource = request.sub_resource.as_deref().is_some_and(|s| !s.is_empty());
    if !is_pod || !is_create || is_subresource {
        return Verdict::Allow;
    }
    let pod: Pod = match request.object.map(serde_json::from_value) {
        Some(Ok(pod)) => pod,
        Some(Err(e)) => {
            let message = format!("the injector cannot read the pod in this AdmissionReview: {e}");
            return Verdict::Deny { code: 400, message };
        }
        None => {
            let message = "the AdmissionReview of a pod CREATE carries no object";
            return Verdict::Deny { code: 400, message: message.into() };
        }
    };
    let Some(ns) = request.namespace.or_else(|| pod.metadata.namespace.clone()) else {
        let message = "the AdmissionReview of a pod CREATE names no namespace";
        return Verdict::Deny { code: 400, message: message.into() };
    };
    let name = pod.metadata.name.clone().filter(|n| !n.is_empty());
    let name = name.or_else(|| pod.metadata.generate_name.as_ref().map(|g| format!("{g}*")));
    let name = name.unwrap_or_default();
    let Some(namespace) = namespace_of(&ns) else {
        // The cache lags behind the apiserver just after a namespace is made; whoever creates
        // the pod (a ReplicaSet, kubectl) tries again.
        let message = format!(
            "the sidecar injector does not know namespace {ns} yet (it was probably just \
             created): create the pod again in a moment"
        );
        warn!(namespace = %ns, pod = %name, "pod refused: namespace not in the injector's cache");
        return Verdict::Deny { code: 503, message };
    };
    match inject(&pod, &namespace, config) {
        Ok(Some(patch)) => {
            info!(namespace = %ns, pod = %name, "sidecar injected");
            Verdict::Patch(patch)
        }
        Ok(None) => {
            debug!(namespace = %ns, pod = %name, "pod left without a sidecar");
            Verdict::Allow
        }
        Err(e) => {
            warn!(namespace = %ns, pod = %name, error = %e, "pod refused");
            Verdict::Deny { code: 403, message: e.to_string() }
        }
    }
}

fn answer(api_version: Option<&str>, uid: &str, verdict: Verdict) -> Vec<u8> {
    let response = match verdict {
        Verdict::Patch(patch) => {
            let patch = serde_json::to_vec(&patch).expect("a JSON patch serializes");
            json!({
                "uid": uid,
                "allowed": true,
                "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch),
            })
        }
        Verdict::Allow => json!({"uid": uid, "allowed": true}),
        Verdict::Deny { code, message } => json!({
            "uid": uid,
            "allowed": false,
            "status": {"status": "Failure", "code": code, "message": message},
        }),
    };
    // The apiserver wants its own version back; v1 is all the webhook is registered for.
    let api_version = api_version.filter(|v| v.starts_with("admission.k8s.io/")).unwrap_or(V1);
    let review =
        json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response});
    serde_json::to_vec(&review).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(body: &[u8]) -> Value {
        let namespace = |_: &str| Some(Namespace::default());
        let out = review(body, namespace, &InjectorConfig::default());
        serde_json::from_slice(&out).expect("the answer is JSON")
    }

    #[test]
    fn undecodable_input_is_denied_with_a_message_and_never_panics() {
        for body in [&b""[..], b"{", b"[]", b"null", b"{\"request\": 7}", b"\xff\xfe"] {
            let v = verdict(body);
            assert_eq!(v["response"]["allowed"], false, "{v}");
            let message = v["response"]["status"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("AdmissionReview"), "{message}");
        }
    }

    #[test]
    fn a_bad_pod_is_denied_under_the_requests_uid() {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "operation": "CREATE", "namespace": "demo",
                        "object": {"spec": {"containers": "not a list"}}},
        });
        let v = verdict(body.to_string().as_bytes());
        assert_eq!(v["response"]["uid"], "u-1");
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 400);
    }

    #[test]
    fn other_kinds_operations_and_subresources_pass_untouched() {
        let request = |kind: &str, op: &str, sub: &str| {
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": kind},
                    "operation": op, "subResource": sub, "namespace": "demo", "object": {}}})
        };
        for body in [
            request("Service", "CREATE", ""),
            request("Pod", "UPDATE", ""),
            request("Pod", "CREATE", "binding"),
        ] {
            let v = verdict(body.to_string().as_bytes());
            assert_eq!(v["response"], json!({"uid": "u", "allowed": true}), "{body}");
        }
    }
}
