//! Who a Kubernetes service-account token belongs to, by asking the API server (a TokenReview,
//! `authentication.k8s.io/v1`): the namespace and account, and the pod when the token is bound to
//! one. The control plane checks the tokens kuma-dp sends with this (dpServer.auth.type
//! `serviceAccountToken`); it needs RBAC permission to create `tokenreviews`.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use kube::api::PostParams;
use kube::Api;

/// The `user.extra` key under which the API server names the pod a bound token belongs to.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// How a service account's user name starts: `system:serviceaccount:<namespace>:<name>`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// What the API server said about a genuine service-account token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewedToken {
    pub namespace: String,
    pub service_account: String,
    /// The pod a bound (projected) token belongs to; `None` for a token of the account alone.
    pub pod_name: Option<String>,
}

/// Why a token was not taken as a service account's.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The API server does not authenticate the token (forged, expired, its account or pod
    /// deleted).
    #[error("the API server did not authenticate the token: {reason}")]
    Unauthenticated { reason: String },
    /// A genuine token of something that is not a service account (a user, a node).
    #[error(
        "the token belongs to {username:?}, not to a service account \
         (system:serviceaccount:<namespace>:<name>)"
    )]
    NotAServiceAccount { username: String },
    /// The API server could not be asked, or refused to answer.
    #[error("could not ask the API server to review the token: {}", describe(.0))]
    Api(kube::Error),
}

impl ReviewError {
    /// True when asking again later may give an answer: the API server was unreachable, busy or
    /// failing. A refused token, or a control plane without permission to review, is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReviewError::Api(kube::Error::Api(status)) => status.code == 429 || status.code >= 500,
            ReviewError::Api(_) => true,
            _ => false,
        }
    }
}

/// kube's own messages carry a Debug dump; one line with the API server's words instead.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

/// Reviews `token` with the API server `client` talks to (default audiences).
pub async fn review(client: &kube::Client, token: &str) -> Result<ReviewedToken, ReviewError> {
    let request = TokenReview {
        spec: TokenReviewSpec { token: Some(token.to_string()), audiences: None },
        ..TokenReview::default()
    };
    let api: Api<TokenReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &request).await.map_err(ReviewError::Api)?;
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        let reason = status.error.filter(|e| !e.is_empty());
        return Err(ReviewError::Unauthenticated {
            reason: reason.unwrap_or_else(|| "it is not valid".to_string()),
        });
    }
    reviewed(status.user.unwrap_or_default())
}

/// The account and pod of an authenticated user.
fn reviewed(user: UserInfo) -> Result<ReviewedToken, ReviewError> {
    let username = user.username.unwrap_or_default();
    let account = username.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX).and_then(|rest| {
        let (namespace, name) = rest.split_once(':')?;
        let valid = !namespace.is_empty() && !name.is_empty() && !name.contains(':');
        valid.then(|| (namespace.to_string(), name.to_string()))
    });
    let Some((namespace, service_account)) = account else {
        return Err(ReviewError::NotAServiceAccount { username });
    };
    let pod_name = user
        .extra
        .and_then(|mut extra| extra.remove(POD_NAME_EXTRA))
        .and_then(|values| values.into_iter().next())
        .filter(|pod| !pod.is_empty());
    Ok(ReviewedToken { namespace, service_account, pod_name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(username: &str, pod: Option<&str>) -> UserInfo {
        UserInfo {
            username: Some(username.to_string()),
            extra: pod.map(|p| [(POD_NAME_EXTRA.to_string(), vec![p.to_string()])].into()),
            ..UserInfo::default()
        }
    }

    #[test]
    fn a_service_account_user_gives_namespace_account_and_pod() {
        let bound = reviewed(user("system:serviceaccount:demo:web", Some("web-0"))).unwrap();
        let expected = ReviewedToken {
            namespace: "demo".into(),
            service_account: "web".into(),
            pod_name: Some("web-0".into()),
        };
        assert_eq!(bound, expected);
        let unbound = reviewed(user("system:serviceaccount:demo:web", None)).unwrap();
        assert_eq!(unbound.pod_name, None);
    }

    #[test]
    fn other_user_names_are_not_service_accounts() {
        for name in [
            "admin",
            "system:node:worker-1",
            "system:serviceaccount:demo",
            "system:serviceaccount::web",
            "system:serviceaccount:demo:",
            "system:serviceaccount:demo:web:extra",
            "",
        ] {
            let error = reviewed(user(name, None)).unwrap_err();
            assert!(matches!(error, ReviewError::NotAServiceAccount { .. }), "{name}: {error}");
            assert!(!error.is_retryable());
        }
    }
}
