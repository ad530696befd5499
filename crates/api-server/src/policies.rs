//! `GET /meshes/{mesh}/dataplanes/{name}/policies`: which policy of each type applies to each
//! inbound, outbound and to the dataplane as a whole, with its rank and why it was chosen. The
//! selection is the model's, the same the xDS generators use.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kuma_model::selection::{DataplanePolicies, MeshPolicies};
use kuma_model::{ResourceKey, ResourceType};

use crate::error::{ApiError, Op};
use crate::server::State;

pub(crate) async fn get(
    state: State,
    Path((mesh, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let store = state.store.as_ref();
    let dataplane = store
        .get(&ResourceKey::new(ResourceType::Dataplane, &mesh, &name))
        .await
        .map_err(|e| ApiError::store(Op::Get, e, false))?;
    let Some(spec) = dataplane.spec.as_dataplane() else {
        return Err(ApiError::store(
            Op::Get,
            kuma_store::StoreError::NotFound { key: dataplane.key.clone() },
            false,
        ));
    };
    let mut policies = Vec::new();
    for t in ResourceType::descriptors().iter().filter(|d| d.is_policy) {
        let mut of_type = kuma_store::list_all(store, t.resource_type, Some(&mesh))
            .await
            .map_err(|e| ApiError::store(Op::Get, e, false))?;
        policies.append(&mut of_type);
    }
    let selected = DataplanePolicies::select(spec, &MeshPolicies::from_resources(&policies));
    Ok(Json(selected.to_json(&mesh, &name, spec)).into_response())
}
