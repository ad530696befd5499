//! `dataplanes+insights`: each Dataplane joined with its DataplaneInsight, filterable by tags.

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kuma_model::rest::{dataplane_overview, ResourceList};
use kuma_model::{Resource, ResourceKey, ResourceType};
use kuma_store::{ListQuery, ResourceStore, StoreError};
use serde_json::Value;

use crate::error::{ApiError, Op};
use crate::query::ListParams;
use crate::resources::list_page;
use crate::server::State;

/// The insight of a dataplane, if it ever connected.
async fn insight_of(
    store: &dyn ResourceStore,
    dataplane: &Resource,
    op: Op,
) -> Result<Option<Resource>, ApiError> {
    let mesh = dataplane.key.mesh.as_deref().unwrap_or_default();
    let key = ResourceKey::new(ResourceType::DataplaneInsight, mesh, &dataplane.key.name);
    match store.get(&key).await {
        Ok(insight) => Ok(Some(insight)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(ApiError::store(op, e, false)),
    }
}

async fn overviews(store: &dyn ResourceStore, page: &[&Resource]) -> Result<Vec<Value>, ApiError> {
    let mut items = Vec::with_capacity(page.len());
    for dataplane in page {
        items.push(dataplane_overview(
            dataplane,
            insight_of(store, dataplane, Op::List).await?.as_ref(),
        ));
    }
    Ok(items)
}

/// The overview page. Without a tag filter it is the store's page of dataplanes. With one,
/// filtering needs every dataplane's tags (as in Kuma, the filter runs after loading), so the page
/// is cut after filtering and its offset is the `mesh/name` of the last item served, which stays
/// valid across deletions. Either way only the page's insights are read.
pub(crate) async fn list(
    state: &State,
    mesh: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Json<ResourceList>, ApiError> {
    let params = ListParams::parse(uri)?;
    if params.include_data {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, Op::List, "Invalid include")
            .with_cause("include", "only secrets and global-secrets include data"));
    }
    let store = state.store.as_ref();
    if params.tags.is_empty() {
        let query = ListQuery {
            resource_type: ResourceType::Dataplane,
            mesh: mesh.map(str::to_string),
            size: params.size,
            offset: params.offset.clone(),
        };
        let page = list_page(store, &query).await?;
        let items: Vec<&Resource> = page.items.iter().collect();
        return Ok(Json(ResourceList {
            total: page.total as u64,
            items: overviews(store, &items).await?,
            next: page
                .next
                .map(|offset| params.next_url(&state.config.public_url, uri, headers, &offset)),
        }));
    }

    let dataplanes = kuma_store::list_all(store, ResourceType::Dataplane, mesh)
        .await
        .map_err(|e| ApiError::store(Op::List, e, false))?;
    let matching: Vec<&Resource> = dataplanes
        .iter()
        .filter(|dp| dp.spec.as_dataplane().is_some_and(|spec| spec.matches_tags(&params.tags)))
        .collect();
    let after = match params.offset.as_deref() {
        None => None,
        Some(offset) => Some(offset.split_once('/').ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, Op::List, "Invalid offset")
                .with_cause("offset", format!("{offset:?} is not an offset this API issued"))
        })?),
    };
    let position = |dp: &Resource| (dp.key.mesh.clone().unwrap_or_default(), dp.key.name.clone());
    let rest: Vec<&Resource> = matching
        .iter()
        .copied()
        .filter(|dp| after.is_none_or(|(m, n)| position(dp) > (m.to_string(), n.to_string())))
        .collect();
    let page = &rest[..rest.len().min(params.size)];
    let next = (rest.len() > params.size).then(|| {
        let (m, n) = position(page[page.len() - 1]);
        params.next_url(&state.config.public_url, uri, headers, &format!("{m}/{n}"))
    });
    Ok(Json(ResourceList {
        total: matching.len() as u64,
        items: overviews(store, page).await?,
        next,
    }))
}

pub(crate) async fn get(state: &State, mesh: &str, name: &str) -> Result<Response, ApiError> {
    let dataplane = state
        .store
        .get(&ResourceKey::new(ResourceType::Dataplane, mesh, name))
        .await
        .map_err(|e| ApiError::store(Op::Get, e, false))?;
    let insight = insight_of(state.store.as_ref(), &dataplane, Op::Get).await?;
    Ok(Json(dataplane_overview(&dataplane, insight.as_ref())).into_response())
}

pub(crate) async fn list_across_meshes(
    state: State,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<ResourceList>, ApiError> {
    list(&state, None, &uri, &headers).await
}
