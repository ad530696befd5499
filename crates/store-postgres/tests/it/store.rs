//! What the conformance suite leaves out about this store's reads.

use kuma_model::ResourceType;
use kuma_store::{ListQuery, ResourceStore};

use crate::support::{must_create_mesh, must_migrated_store, route, route_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_page_size_lists_everything_in_one_page() {
    let (_server, _, store) = must_migrated_store().await;
    must_create_mesh(&store, "default").await;
    for name in ["a", "b"] {
        store.create(route_key("default", name), route()).await.unwrap();
    }
    let query = ListQuery::new(ResourceType::TrafficRoute, Some("default"), usize::MAX);
    let page = store.list(&query).await.unwrap();
    assert_eq!((page.items.len(), page.total, page.next), (2, 2, None));
}
