//! Handlers for `/meshes`, `/meshes/{mesh}/{collection}[/{name}]` and `/{collection}`.

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kuma_model::rest::ResourceList;
use kuma_model::{
    parse_resource, validate, ParseError, Resource, ResourceInput, ResourceKey, ResourceType,
    ValidationContext, Version, Violation,
};
use kuma_store::{ListPage, ListQuery, ResourceStore, StoreError};

use crate::access::{Identity, Role, ADMIN_GROUP};
use crate::error::{ApiError, Op};
use crate::overview;
use crate::query::ListParams;
use crate::server::State;

/// A collection segment is a registered type's path, or `dataplanes+insights`.
use kuma_model::rest::DATAPLANES_WITH_INSIGHTS as OVERVIEW;

fn mesh_scoped_type(collection: &str, op: Op) -> Result<ResourceType, ApiError> {
    match ResourceType::from_path(collection) {
        Some(t) if t.is_mesh_scoped() => Ok(t),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            op,
            format!("unknown resource collection {collection:?}; see /openapi.json for the paths"),
        )),
    }
}

/// A global type other than Mesh (whose routes are `/meshes`): `GlobalSecret`.
fn global_type(collection: &str, op: Op) -> Result<ResourceType, ApiError> {
    match ResourceType::from_path(collection) {
        Some(t) if !t.is_mesh_scoped() && t != ResourceType::Mesh => Ok(t),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            op,
            format!("unknown resource collection {collection:?}; see /openapi.json for the paths"),
        )),
    }
}

fn with_etag(mut response: Response, version: &Version) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", version.0)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// What an `If-Match` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IfMatch {
    /// `If-Match: *`: the resource must exist, whatever its version.
    Exists,
    /// `If-Match: "v"` (or bare `v`): the resource must be at this version.
    Version(Version),
}

fn if_match(headers: &HeaderMap) -> Option<IfMatch> {
    let raw = headers.get(header::IF_MATCH)?.to_str().ok()?.trim();
    if raw == "*" {
        return Some(IfMatch::Exists);
    }
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    Some(IfMatch::Version(Version(raw.trim_matches('"').to_string())))
}

/// True when the body stream stopped because it passed the size limit.
fn is_length_limit(e: axum::Error) -> bool {
    let inner = e.into_inner();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Reads

async fn get_one(state: &State, key: ResourceKey) -> Result<Response, ApiError> {
    let resource = state.store.get(&key).await.map_err(|e| ApiError::store(Op::Get, e, false))?;
    Ok(with_etag(Json(resource.to_rest_json()).into_response(), &resource.version))
}

pub(crate) async fn list(
    state: &State,
    resource_type: ResourceType,
    mesh: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
    identity: Option<&Identity>,
) -> Result<Json<ResourceList>, ApiError> {
    let params = ListParams::parse(uri)?;
    if !params.tags.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Op::List,
            "tag filters apply to dataplanes+insights only",
        )
        .with_cause("tag", "remove it, or list /meshes/{mesh}/dataplanes+insights instead"));
    }
    if params.include_data {
        secret_contents_allowed(resource_type, mesh, uri, identity)?;
    }
    let query = ListQuery {
        resource_type,
        mesh: mesh.map(str::to_string),
        size: params.size,
        offset: params.offset.clone(),
    };
    let page = list_page(state.store.as_ref(), &query).await?;
    let rest_form = |resource: &Resource| {
        let with_data = params.include_data.then(|| resource.to_rest_json_with_secret_data());
        with_data.flatten().unwrap_or_else(|| resource.to_rest_json())
    };
    if params.include_data {
        let identity = identity.map_or("", |i| i.name.as_str());
        tracing::info!(target: "audit", %identity, resource_type = %resource_type.name(), mesh = mesh.unwrap_or_default(), path = %uri.path(), count = page.items.len(), "read secret contents");
    }
    Ok(Json(ResourceList {
        total: page.total as u64,
        items: page.items.iter().map(rest_form).collect(),
        next: page
            .next
            .map(|offset| params.next_url(&state.config.public_url, uri, headers, &offset)),
    }))
}

/// `include=data` is the one read of secret contents: for backups and moving between stores
/// (`kumactl export --include-secrets`). Only secret lists have it, and only admins get it.
fn secret_contents_allowed(
    resource_type: ResourceType,
    mesh: Option<&str>,
    uri: &Uri,
    identity: Option<&Identity>,
) -> Result<(), ApiError> {
    if !matches!(resource_type, ResourceType::Secret | ResourceType::GlobalSecret) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, Op::List, "Invalid include")
            .with_cause(
                "include",
                format!(
                    "only secrets and global-secrets include data, not {}",
                    resource_type.descriptor().path
                ),
            ));
    }
    match identity {
        Some(identity) if identity.role == Role::Admin => Ok(()),
        _ => {
            let user = identity.map_or("this client", |i| i.name.as_str());
            tracing::warn!(target: "audit", identity = %user, resource_type = %resource_type.name(), mesh = mesh.unwrap_or_default(), path = %uri.path(), "refused: secret contents are for admins");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                Op::List,
                format!(
                    "{user} may not read secret contents: include=data needs a user in group \
                     {ADMIN_GROUP}"
                ),
            ))
        }
    }
}

/// One page from the store; an offset the store refuses is the client's mistake (400).
pub(crate) async fn list_page(
    store: &dyn ResourceStore,
    query: &ListQuery,
) -> Result<ListPage, ApiError> {
    store.list(query).await.map_err(|e| match e {
        StoreError::Invalid { reason } => {
            ApiError::new(StatusCode::BAD_REQUEST, Op::List, "Invalid offset")
                .with_cause("offset", reason)
        }
        other => ApiError::store(Op::List, other, false),
    })
}

pub(crate) async fn list_meshes(
    state: State,
    uri: Uri,
    headers: HeaderMap,
    identity: Option<Extension<Identity>>,
) -> Result<Json<ResourceList>, ApiError> {
    let identity = identity.map(|Extension(i)| i);
    list(&state, ResourceType::Mesh, None, &uri, &headers, identity.as_ref()).await
}

pub(crate) async fn get_mesh(state: State, Path(name): Path<String>) -> Result<Response, ApiError> {
    get_one(&state, ResourceKey::mesh(&name)).await
}

pub(crate) async fn list_in_mesh(
    state: State,
    Path((mesh, collection)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    identity: Option<Extension<Identity>>,
) -> Result<Response, ApiError> {
    if collection == OVERVIEW {
        return overview::list(&state, Some(&mesh), &uri, &headers)
            .await
            .map(IntoResponse::into_response);
    }
    let t = mesh_scoped_type(&collection, Op::List)?;
    let identity = identity.map(|Extension(i)| i);
    Ok(list(&state, t, Some(&mesh), &uri, &headers, identity.as_ref()).await?.into_response())
}

pub(crate) async fn list_across_meshes(
    state: State,
    Path(collection): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    identity: Option<Extension<Identity>>,
) -> Result<Json<ResourceList>, ApiError> {
    let t = match global_type(&collection, Op::List) {
        Ok(t) => t,
        Err(_) => mesh_scoped_type(&collection, Op::List)?,
    };
    let identity = identity.map(|Extension(i)| i);
    list(&state, t, None, &uri, &headers, identity.as_ref()).await
}

pub(crate) async fn get_global(
    state: State,
    Path((collection, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let t = global_type(&collection, Op::Get)?;
    get_one(&state, ResourceKey::new(t, "", &name)).await
}

pub(crate) async fn put_global(
    state: State,
    Path((collection, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let t = global_type(&collection, Op::Put)?;
    put(state, ResourceKey::new(t, "", &name), headers, body).await
}

pub(crate) async fn delete_global(
    state: State,
    Path((collection, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let t = global_type(&collection, Op::Delete)?;
    delete(state, ResourceKey::new(t, "", &name), headers).await
}

pub(crate) async fn get_in_mesh(
    state: State,
    Path((mesh, collection, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    if collection == OVERVIEW {
        return overview::get(&state, &mesh, &name).await;
    }
    let t = mesh_scoped_type(&collection, Op::Get)?;
    get_one(&state, ResourceKey::new(t, &mesh, &name)).await
}

// ---------------------------------------------------------------------------------------------
// Writes

/// Reads the body within the size limit: 413 past it.
async fn read_body(state: &State, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let details = format!("could not read the request body: {e}");
        if is_length_limit(e) {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Op::Put,
                format!("the request body is larger than {limit} bytes (apiServer.maxBodyBytes)"),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, Op::Put, details)
        }
    })
}

/// Parses the body as JSON, or as YAML when the client says so.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let yaml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"));
    let parsed = if yaml {
        serde_yaml::from_slice(body).map_err(|e| format!("the body is not valid YAML: {e}"))
    } else {
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))
    };
    parsed.map_err(|details| ApiError::new(StatusCode::BAD_REQUEST, Op::Put, details))
}

/// The mesh a resource is written into, or `None` when it does not exist. This peer's copy may
/// lag a mesh created through another peer a moment ago: a miss is checked again once the copy
/// holds every write acknowledged before (`sync`), so a write right after its mesh's creation
/// through another peer is not refused.
async fn existing_mesh(state: &State, mesh: &str) -> Result<Option<Resource>, ApiError> {
    let key = ResourceKey::mesh(mesh);
    match state.store.get(&key).await {
        Ok(resource) => return Ok(Some(resource)),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(ApiError::store(Op::Put, e, false)),
    }
    state.store.sync().await.map_err(|e| ApiError::store(Op::Put, e, false))?;
    match state.store.get(&key).await {
        Ok(resource) => Ok(Some(resource)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(ApiError::store(Op::Put, e, false)),
    }
}

async fn put(
    state: State,
    url_key: ResourceKey,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if state.config.read_only {
        return Err(ApiError::read_only(Op::Put, state.read_only_reason.as_deref()));
    }
    let bytes = read_body(&state, body).await?;
    let value = parse_body(&headers, &bytes)?;
    let input = match parse_resource(value) {
        Ok(input) => input,
        Err(ParseError::Syntax(details)) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, Op::Put, details))
        }
        Err(ParseError::Invalid(e)) => return Err(ApiError::validation(Op::Put, e)),
    };

    let mut violations = url_mismatches(&url_key, &input);
    let mesh = match &input.key.mesh {
        Some(mesh) => existing_mesh(&state, mesh).await?,
        None => None,
    };
    let ctx = ValidationContext { mesh: mesh.as_ref().and_then(|m| m.spec.as_mesh()) };
    if let Err(e) = validate(&input, &ctx) {
        violations.extend(e.violations);
    }
    if let Some(extra) = &state.extra_validation {
        violations.extend(extra(&input.spec));
    }
    if !violations.is_empty() {
        return Err(ApiError::invalid(Op::Put, violations));
    }
    if let (Some(name), None) = (&input.key.mesh, &mesh) {
        return Err(ApiError::store(
            Op::Put,
            StoreError::MeshNotFound { mesh: name.clone() },
            false,
        ));
    }

    let precondition = if_match(&headers);
    let ResourceInput { key, spec } = input;
    let store = &state.store;
    let (status, resource) = match &precondition {
        Some(IfMatch::Version(version)) => (StatusCode::OK, store.update(key, spec, version).await),
        Some(IfMatch::Exists) | None => match store.get(&key).await {
            Ok(current) => (StatusCode::OK, store.update(key, spec, &current.version).await),
            Err(StoreError::NotFound { key }) if precondition.is_some() => {
                return Err(ApiError::store(Op::Put, StoreError::NotFound { key }, true));
            }
            Err(StoreError::NotFound { .. }) => match store.create(key.clone(), spec.clone()).await
            {
                // Created by another writer between our read and our create (the leader making a
                // new mesh's signing key while a restore writes the one it saved): a PUT without
                // If-Match replaces whatever is there, so write once more on what is there now.
                Err(StoreError::AlreadyExists { key: taken }) if precondition.is_none() => {
                    match store.get(&key).await {
                        Ok(current) => {
                            (StatusCode::OK, store.update(key, spec, &current.version).await)
                        }
                        // Taken in another mesh (a store whose names are unique per type).
                        Err(StoreError::NotFound { .. }) => {
                            let taken = StoreError::AlreadyExists { key: taken };
                            return Err(ApiError::store(Op::Put, taken, false));
                        }
                        Err(e) => return Err(ApiError::store(Op::Put, e, false)),
                    }
                }
                created => (StatusCode::CREATED, created),
            },
            Err(e) => return Err(ApiError::store(Op::Put, e, false)),
        },
    };
    // Only an explicit version makes a conflict the client's stale precondition (412); otherwise
    // another request won a race between our read and write (409).
    let stale = matches!(precondition, Some(IfMatch::Version(_)));
    let resource = resource.map_err(|e| ApiError::store(Op::Put, e, stale))?;
    tracing::info!(resource = %resource.key, version = %resource.version, created = status == StatusCode::CREATED, "resource written");
    Ok(with_etag(status.into_response(), &resource.version))
}

/// The URL names the resource; the body must agree with it.
fn url_mismatches(url: &ResourceKey, input: &ResourceInput) -> Vec<Violation> {
    let body = &input.key;
    let mut violations = Vec::new();
    if url.resource_type != body.resource_type {
        violations.push(Violation::new(
            "type",
            format!(
                "{:?} does not match the URL, which is for {}",
                body.resource_type.name(),
                url.resource_type.name()
            ),
        ));
    }
    if url.name != body.name {
        violations.push(Violation::new(
            "name",
            format!("{:?} does not match {:?} from the URL", body.name, url.name),
        ));
    }
    if url.resource_type.is_mesh_scoped()
        && body.resource_type.is_mesh_scoped()
        && url.mesh != body.mesh
    {
        violations.push(Violation::new(
            "mesh",
            format!(
                "{:?} does not match {:?} from the URL",
                body.mesh.as_deref().unwrap_or_default(),
                url.mesh.as_deref().unwrap_or_default()
            ),
        ));
    }
    violations
}

pub(crate) async fn put_mesh(
    state: State,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    put(state, ResourceKey::mesh(&name), headers, body).await
}

pub(crate) async fn put_in_mesh(
    state: State,
    Path((mesh, collection, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if collection == OVERVIEW {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Op::Put,
            "dataplanes+insights is read-only; PUT the Dataplane instead",
        ));
    }
    let t = mesh_scoped_type(&collection, Op::Put)?;
    put(state, ResourceKey::new(t, &mesh, &name), headers, body).await
}

async fn delete(state: State, key: ResourceKey, headers: HeaderMap) -> Result<Response, ApiError> {
    if state.config.read_only {
        return Err(ApiError::read_only(Op::Delete, state.read_only_reason.as_deref()));
    }
    let precondition = if_match(&headers);
    let expected = match &precondition {
        Some(IfMatch::Version(version)) => Some(version),
        _ => None,
    };
    state
        .store
        .delete(&key, expected)
        .await
        .map_err(|e| ApiError::store(Op::Delete, e, precondition.is_some()))?;
    tracing::info!(resource = %key, "resource deleted");
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn delete_mesh(
    state: State,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete(state, ResourceKey::mesh(&name), headers).await
}

pub(crate) async fn delete_in_mesh(
    state: State,
    Path((mesh, collection, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if collection == OVERVIEW {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Op::Delete,
            "dataplanes+insights is read-only; DELETE the Dataplane instead",
        ));
    }
    let t = mesh_scoped_type(&collection, Op::Delete)?;
    delete(state, ResourceKey::new(t, &mesh, &name), headers).await
}
