//! Who may do what on the API. Every request is given an [`Identity`]: from a user token
//! (`Authorization: Bearer`, checked by the [`UserTokens`] kuma-cp supplies), from a client
//! certificate presented over HTTPS (its common name and organizations), as `localhost` when it
//! comes from this host and loopback counts as admin, or none. Reads need an identity, except the
//! index, the OpenAPI document and the control plane's CA certificate; writes, token issuing and
//! reading secret contents (`include=data`, checked by its route) need the `admin` role. Every write that succeeds and every refusal is audit-logged once.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kuma_listener::ConnectionInfo;

use crate::error::{ApiError, Op};

/// The group whose members are `admin`.
pub const ADMIN_GROUP: &str = "mesh-system:admin";

/// What an identity may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything, secrets and token issuing included; the only role that may read secret
    /// contents (`?include=data` on a secret list, for backups).
    Admin,
    /// Reads, but never secret contents.
    Viewer,
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
    pub role: Role,
}

impl Identity {
    /// An identity whose role follows its groups.
    pub fn new(name: impl Into<String>, groups: Vec<String>) -> Identity {
        let role = if groups.iter().any(|g| g == ADMIN_GROUP) { Role::Admin } else { Role::Viewer };
        Identity { name: name.into(), groups, role }
    }

    fn localhost() -> Identity {
        Identity { name: "localhost".to_string(), groups: Vec::new(), role: Role::Admin }
    }
}

/// Checks user tokens; kuma-cp supplies it, since the signing keys are in its store.
#[async_trait::async_trait]
pub trait UserTokens: Send + Sync {
    /// The identity a token proves, or why it proves nothing (a message for the client).
    async fn authenticate(&self, token: &str) -> Result<Identity, String>;
}

/// Whether a request came from this host (loopback). A request without a known connection (a
/// router driven in-process without one) is not.
pub fn is_from_loopback(request: &axum::extract::Request) -> bool {
    peer_of(request).is_some_and(|peer| peer.ip().is_loopback())
}

fn peer_of(request: &axum::extract::Request) -> Option<SocketAddr> {
    request.extensions().get::<ConnectionInfo>().map(|info| info.peer)
}

/// Paths anyone may read: what a client needs before it has credentials. (`/tokens/admin`
/// answers only its own host, whatever the credentials: it is how the first operator gets in.)
fn is_public(method: &Method, path: &str) -> bool {
    method == Method::GET
        && matches!(path, "/" | "/openapi.json" | "/control-plane/ca" | "/tokens/admin")
}

/// The identity of a client certificate: its common name, and its organizations as groups.
fn certificate_identity(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(Identity::new(name, groups))
}

fn refuse(status: StatusCode, details: &str) -> Response {
    ApiError::new(status, Op::Other, details).into_response()
}

/// What the access check needs to know.
#[derive(Clone, Default)]
pub(crate) struct Access {
    pub localhost_is_admin: bool,
    pub user_tokens: Option<Arc<dyn UserTokens>>,
}

/// The access check and the audit log, around every route.
pub(crate) async fn authorize(
    axum::extract::State(state): axum::extract::State<Access>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let peer = peer_of(&request).map(|p| p.to_string()).unwrap_or_default();
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let certificate = request
        .extensions()
        .get::<ConnectionInfo>()
        .and_then(|info| info.client_certificate.as_deref())
        .and_then(certificate_identity);

    let identity = match (bearer, certificate) {
        (Some(token), _) => match &state.user_tokens {
            Some(tokens) => match tokens.authenticate(&token).await {
                Ok(identity) => Some(identity),
                Err(reason) => {
                    tracing::warn!(target: "audit", %method, %path, %peer, reason = %reason, "refused: the user token proves nothing");
                    return refuse(
                        StatusCode::UNAUTHORIZED,
                        &format!("the user token is not valid: {reason}"),
                    );
                }
            },
            None => {
                return refuse(StatusCode::UNAUTHORIZED, "this API does not take user tokens");
            }
        },
        (None, Some(identity)) => Some(identity),
        (None, None) if state.localhost_is_admin && is_from_loopback(&request) => {
            Some(Identity::localhost())
        }
        (None, None) => None,
    };

    let writes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let Some(identity) = identity else {
        if is_public(&method, &path) {
            return next.run(request).await;
        }
        tracing::warn!(target: "audit", %method, %path, %peer, "refused: no credentials");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this request needs credentials: a user token (Authorization: Bearer, kumactl config \
             control-planes add --auth-type tokens --auth-conf token=...) or a client certificate",
        );
    };
    if writes && identity.role != Role::Admin {
        tracing::warn!(target: "audit", identity = %identity.name, %method, %path, %peer, "refused: not an admin");
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "{} may only read: changing the mesh needs a user in group {ADMIN_GROUP}",
                identity.name
            ),
        );
    }
    request.extensions_mut().insert(identity.clone());
    let response = next.run(request).await;
    let status = response.status();
    if writes && status.is_success() {
        tracing::info!(target: "audit", identity = %identity.name, %method, %path, %peer, status = status.as_u16(), "changed");
    } else if writes && (status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED) {
        tracing::warn!(target: "audit", identity = %identity.name, %method, %path, %peer, status = status.as_u16(), "refused");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_group_makes_an_admin_and_anything_else_a_viewer() {
        assert_eq!(Identity::new("a", vec![ADMIN_GROUP.into()]).role, Role::Admin);
        assert_eq!(Identity::new("v", vec!["mesh-system:viewer".into()]).role, Role::Viewer);
        assert_eq!(Identity::new("n", vec![]).role, Role::Viewer);
    }
}
