use async_trait::async_trait;
use kuma_model::{Resource, ResourceKey, ResourceType, Spec, Version};

use crate::{Revision, StoreError, WatchStream};

/// What to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub resource_type: ResourceType,
    /// Only this mesh; `None` lists across meshes (ignored for Mesh itself).
    pub mesh: Option<String>,
    /// Page size; at least 1.
    pub size: usize,
    /// The `next` token of the previous page; `None` for the first page.
    pub offset: Option<String>,
}

impl ListQuery {
    /// The first page of `resource_type` in `mesh` (or across meshes), `size` items long.
    pub fn new(resource_type: ResourceType, mesh: Option<&str>, size: usize) -> ListQuery {
        ListQuery { resource_type, mesh: mesh.map(str::to_string), size, offset: None }
    }
}

/// One page of a list, ordered by mesh, then name.
#[derive(Clone, Debug, PartialEq)]
pub struct ListPage {
    pub items: Vec<Resource>,
    /// How many resources match the query over all pages.
    pub total: usize,
    /// The offset of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// How unique a resource's name must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameScope {
    /// `(type, mesh, name)` is the key: two meshes may each hold a resource of one name.
    #[default]
    PerMesh,
    /// A name is unique within its type across all meshes, as on Kubernetes, where a policy is a
    /// cluster-scoped object and a Secret lives in one namespace: creating a name that another
    /// mesh holds is `AlreadyExists`.
    PerType,
}

/// The contract every backend implements; `conformance` tests it.
///
/// - Keys are `(type, mesh, name)`; a mesh-scoped resource can only be created in an existing mesh.
///   A backend with [`NameScope::PerType`] also refuses a name another mesh holds.
/// - `version` changes on every write; `update` and `delete` compare-and-set on it.
/// - Deleting a Mesh deletes everything in it; deleting a Dataplane deletes its DataplaneInsight.
/// - `watch` yields every change after a revision, in order, so consumers are pushed, not polling.
#[async_trait]
pub trait ResourceStore: Send + Sync + 'static {
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError>;

    /// Whether names are unique per mesh (the default) or per type.
    fn name_scope(&self) -> NameScope {
        NameScope::PerMesh
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError>;

    /// Creates a resource; fails with `AlreadyExists` if the key is taken.
    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError>;

    /// Replaces a resource's spec if its version is still `expected`.
    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError>;

    /// Deletes a resource (and what it owns); with `expected`, only if its version still matches.
    async fn delete(&self, key: &ResourceKey, expected: Option<&Version>)
        -> Result<(), StoreError>;

    /// The revision of the latest write.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Changes after `from` (or from now on, when `None`).
    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError>;

    /// Waits until `get` and `list` on this store reflect every write acknowledged anywhere
    /// before the call. A replicated store asks its leader (a read index) and waits for its
    /// replica to catch up; a store with one copy has nothing to wait for.
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Every resource of `resource_type` (in `mesh`, or across meshes), following the pages to the end.
pub async fn list_all(
    store: &dyn ResourceStore,
    resource_type: ResourceType,
    mesh: Option<&str>,
) -> Result<Vec<Resource>, StoreError> {
    let mut query = ListQuery::new(resource_type, mesh, 1000);
    let mut all = Vec::new();
    loop {
        let page = store.list(&query).await?;
        all.extend(page.items);
        match page.next {
            Some(next) => query.offset = Some(next),
            None => return Ok(all),
        }
    }
}

/// Checks that a key fits its spec and scope; every backend calls it before writing.
pub fn check_key(key: &ResourceKey, spec: &Spec) -> Result<(), StoreError> {
    if key.resource_type != spec.resource_type() {
        return Err(StoreError::Invalid {
            reason: format!("key {key} does not match a {} spec", spec.resource_type()),
        });
    }
    if key.resource_type.is_mesh_scoped() != key.mesh.is_some() {
        return Err(StoreError::Invalid { reason: format!("key {key} has the wrong scope") });
    }
    Ok(())
}
