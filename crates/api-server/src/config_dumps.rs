//! `GET /meshes/{mesh}/dataplanes/{name}/xds`: the Envoy config a control plane generated for a
//! connected dataplane, as Envoy's config dump. Only the peer holding the dataplane's xDS stream
//! has it; which peer that is and how to reach it is kuma-cp's business, behind [`ConfigDumps`]
//! (this crate knows neither xDS nor the peers). A config dump shows the whole mesh as one
//! dataplane sees it, so it is for admins only, as Kuma's `viewConfigDump` access is by default.

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kuma_model::rest::ErrorBody;
use kuma_model::{ResourceKey, ResourceType};
use serde_json::Value;

use crate::access::{Identity, Role, ADMIN_GROUP};
use crate::error::{ApiError, Op};
use crate::server::State;

/// The header a peer sets on a request it forwards: its instance id. A forwarded request is
/// answered from the receiving peer's own streams only, so forwarding never loops.
pub const FORWARDED_FROM: &str = "x-kuma-forwarded-from";

/// Marks a request that came in over TLS (set by the HTTPS listener).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OverTls;

/// What a config dump is asked for with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpRequest {
    pub mesh: String,
    pub name: String,
    /// The caller's `Authorization` header, to forward with: a peer asked on the caller's behalf
    /// checks the same credentials.
    pub authorization: Option<String>,
    /// Whether the caller reached this peer over TLS: its credentials must not then travel on
    /// in clear text.
    pub over_tls: bool,
    /// The peer that forwarded this request, if one did: answer from this peer's own streams.
    pub forwarded_from: Option<String>,
}

/// Why there is no config dump.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// No control plane holds a stream of the dataplane.
    #[error("dataplane {mesh}/{name} is not connected to any control plane; start its kuma-dp, or check `kumactl inspect dataplanes` for its status")]
    NotConnected { mesh: String, name: String },
    /// A forwarded request reached a peer that holds no stream of the dataplane (any more).
    #[error("dataplane {mesh}/{name} is not connected to control plane {instance_id}")]
    NotConnectedHere { mesh: String, name: String, instance_id: String },
    /// The peer holding the stream could not be asked.
    #[error("dataplane {mesh}/{name} is connected to control plane {peer}, which could not be asked ({reason}); retry, or ask {peer} directly")]
    PeerUnavailable { mesh: String, name: String, peer: String, reason: String },
    /// The peer holding the stream answered the forwarded request with an error.
    #[error("control plane {peer}, which holds the stream of dataplane {mesh}/{name}, answered {status}: {details}")]
    PeerAnswered { mesh: String, name: String, peer: String, status: u16, details: String },
    /// Something on this side failed; logged, never shown.
    #[error("{0}")]
    Internal(String),
}

impl DumpError {
    /// The HTTP status the API answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            DumpError::NotConnected { .. } | DumpError::NotConnectedHere { .. } => {
                StatusCode::NOT_FOUND
            }
            DumpError::PeerUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            DumpError::PeerAnswered { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            DumpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether asking again may succeed (the holding peer may answer, or the dataplane connect).
    pub fn is_retryable(&self) -> bool {
        matches!(self, DumpError::PeerUnavailable { .. })
            || matches!(self, DumpError::PeerAnswered { status, .. } if (502..=504).contains(status))
    }

    /// The error body a peer answered with, as the details of [`DumpError::PeerAnswered`].
    pub fn details_of(body: &str) -> String {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(error) if !error.details.is_empty() => error.details,
            Ok(error) => error.title,
            Err(_) => body.trim().chars().take(200).collect(),
        }
    }
}

/// Where config dumps come from: kuma-cp answers from its own xDS streams and forwards to the
/// peer that holds the stream.
#[async_trait::async_trait]
pub trait ConfigDumps: Send + Sync {
    /// The config dump of `request.mesh`/`request.name`, whose Dataplane exists.
    async fn config_dump(&self, request: DumpRequest) -> Result<Value, DumpError>;
}

pub(crate) async fn get(
    state: State,
    Path((mesh, name)): Path<(String, String)>,
    identity: Option<Extension<Identity>>,
    over_tls: Option<Extension<OverTls>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = identity.map(|Extension(i)| i);
    if who.as_ref().is_none_or(|i| i.role != Role::Admin) {
        let user = who.map_or("this client".to_string(), |i| i.name);
        tracing::warn!(target: "audit", identity = %user, %mesh, dataplane = %name, "refused: config dumps are for admins");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            Op::Get,
            format!(
                "{user} may not see dataplanes' Envoy config: a config dump needs a user in group \
                 {ADMIN_GROUP}"
            ),
        ));
    }
    let key = ResourceKey::new(ResourceType::Dataplane, &mesh, &name);
    state.store.get(&key).await.map_err(|e| ApiError::store(Op::Get, e, false))?;
    let Some(dumps) = &state.config_dumps else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            Op::Get,
            "this API server serves no dataplanes, so it has no config dumps",
        ));
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let request = DumpRequest {
        mesh,
        name,
        authorization: text(header::AUTHORIZATION.as_str()),
        over_tls: over_tls.is_some(),
        forwarded_from: text(FORWARDED_FROM),
    };
    match dumps.config_dump(request).await {
        Ok(dump) => Ok(Json(dump).into_response()),
        Err(DumpError::Internal(reason)) => {
            tracing::error!(%reason, "config dump failed");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, Op::Get, "Internal Server Error"))
        }
        Err(e) => Err(ApiError::new(e.status(), Op::Get, e.to_string())),
    }
}
