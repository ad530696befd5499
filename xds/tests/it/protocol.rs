//! ADS protocol conformance, checked with an independent client: what is sent, when, and what is
//! never sent.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use kuma_model::ResourceType;
use kuma_test_support::try_poll_until;

use crate::ads_client::{names, DeltaClient, SotwClient, CDS, EDS, LDS};
use crate::harness::{backend_dataplane, redis_dataplane, Harness};

const REDIS_DP: u16 = 41000;
const REDIS: u16 = 41001;
const OUTBOUND: u16 = 41010;
const BACKEND_DP: u16 = 41020;

async fn seeded() -> Harness {
    let h = Harness::start().await;
    h.apply(&redis_dataplane("redis-1", REDIS_DP, REDIS)).await;
    h.apply(&backend_dataplane("default", OUTBOUND, BACKEND_DP)).await;
    h
}

/// Opens backend-1's stream and ACKs CDS, EDS and LDS; returns the client.
async fn configured_backend(h: &Harness) -> SotwClient {
    let mut c = SotwClient::connect(h.xds_port, "default.backend-1").await;
    c.request(CDS, &[], "", "").await;
    let cds = c.must_recv().await;
    c.ack(&cds, &[]).await;
    c.request(EDS, &["redis"], "", "").await;
    let eds = c.must_recv().await;
    c.ack(&eds, &["redis"]).await;
    c.request(LDS, &[], "", "").await;
    let lds = c.must_recv().await;
    c.ack(&lds, &[]).await;
    c.must_stay_silent("every type is acknowledged").await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_request_gets_the_full_state_and_an_ack_gets_no_reply() {
    let h = seeded().await;
    let mut c = SotwClient::connect(h.xds_port, "default.backend-1").await;
    c.request(CDS, &[], "", "").await;
    let cds = c.must_recv().await;
    assert_eq!(names(&cds), ["localhost:41021", "redis"]);
    assert!(!cds.version_info.is_empty() && !cds.nonce.is_empty());
    c.ack(&cds, &[]).await;
    c.must_stay_silent("an ACK is never answered").await;
    c.request(LDS, &[], "", "").await;
    let lds = c.must_recv().await;
    assert_eq!(names(&lds), ["inbound:127.0.0.1:41020", "outbound:127.0.0.1:41010"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eds_answers_only_the_subscribed_names_that_exist() {
    let h = seeded().await;
    let mut c = SotwClient::connect(h.xds_port, "default.backend-1").await;
    c.request(EDS, &["redis", "not-a-cluster"], "", "").await;
    let eds = c.must_recv().await;
    assert_eq!(names(&eds), ["redis"]);
    c.request(EDS, &["not-a-cluster"], &eds.version_info, &eds.nonce).await;
    let narrowed = c.must_recv().await;
    assert!(names(&narrowed).is_empty(), "unsubscribed names are not sent: {narrowed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_is_an_empty_first_list_or_a_star_and_explicit_names_filter_cds() {
    let h = seeded().await;
    let mut star = SotwClient::connect(h.xds_port, "default.backend-1").await;
    star.request(CDS, &["*"], "", "").await;
    assert_eq!(names(&star.must_recv().await), ["localhost:41021", "redis"]);

    let mut explicit = SotwClient::connect(h.xds_port, "default.backend-1").await;
    explicit.request(CDS, &["redis"], "", "").await;
    let only = explicit.must_recv().await;
    assert_eq!(names(&only), ["redis"]);
    // After naming resources, an empty list unsubscribes from everything.
    explicit.request(CDS, &[], &only.version_info, &only.nonce).await;
    assert!(names(&explicit.must_recv().await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_nonces_are_ignored() {
    let h = seeded().await;
    let mut c = configured_backend(&h).await;
    // A second redis adds an endpoint: only EDS changes.
    h.apply(&redis_dataplane("redis-2", REDIS_DP + 2, REDIS)).await;
    let update = c.must_recv().await;
    assert_eq!(update.type_url, EDS, "only the endpoints changed");
    c.request(EDS, &["redis", "other"], "", "not-the-latest-nonce").await;
    c.must_stay_silent("a request with a stale nonce is not answered").await;
    c.ack(&update, &["redis"]).await;
    c.must_stay_silent("an ACK is never answered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_dataplanes_and_other_meshes_or_unrelated_changes_send_nothing() {
    let h = seeded().await;
    let mut c = configured_backend(&h).await;

    h.apply("type: Mesh\nname: other\n").await;
    h.apply(&redis_dataplane("redis-1", REDIS_DP, REDIS).replace("mesh: default", "mesh: other"))
        .await;
    h.apply("type: TrafficLog\nmesh: other\nname: all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n").await;
    c.must_stay_silent("a change in another mesh").await;

    h.apply("type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:41030:41031\n    tags:\n      service: web\n").await;
    c.must_stay_silent("a dataplane no one calls changes no other config").await;

    h.apply(&redis_dataplane("redis-2", REDIS_DP + 2, REDIS)).await;
    let added = c.must_recv().await;
    assert_eq!(added.type_url, EDS);
    c.ack(&added, &["redis"]).await;
    c.must_stay_silent("only EDS changed").await;

    h.delete(ResourceType::Dataplane, "default", "redis-2").await;
    let removed = c.must_recv().await;
    assert_eq!(removed.type_url, EDS);
    assert_eq!(removed.version_info, {
        // Same content as before redis-2 came: same version.
        let mut fresh = SotwClient::connect(h.xds_port, "default.backend-1").await;
        fresh.request(EDS, &["redis"], "", "").await;
        fresh.must_recv().await.version_info
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_change_sends_only_the_assignment_that_changed() {
    let h = seeded().await;
    h.apply("type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:41030:41031\n    tags:\n      service: web\n").await;
    h.apply("type: Dataplane\nmesh: default\nname: client-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:41040:41041\n    tags:\n      service: client\n  outbound:\n  - interface: :41042\n    service: redis\n  - interface: :41043\n    service: web\n").await;
    let mut c = SotwClient::connect(h.xds_port, "default.client-1").await;
    c.request(CDS, &[], "", "").await;
    let cds = c.must_recv().await;
    c.ack(&cds, &[]).await;
    c.request(EDS, &["redis", "web"], "", "").await;
    let eds = c.must_recv().await;
    assert_eq!(names(&eds), ["redis", "web"], "the first answer holds every name asked for");
    c.ack(&eds, &["redis", "web"]).await;

    h.apply(&redis_dataplane("redis-2", REDIS_DP + 2, REDIS)).await;
    let update = c.must_recv().await;
    assert_eq!(update.type_url, EDS);
    assert_eq!(names(&update), ["redis"], "web's assignment did not change: not sent again");
    assert_ne!(update.version_info, eds.version_info);
    c.ack(&update, &["redis", "web"]).await;
    c.must_stay_silent("only redis changed").await;

    // A client that changes what it asks for gets everything it asks for again.
    c.request(EDS, &["web"], &update.version_info, &update.nonce).await;
    assert_eq!(names(&c.must_recv().await), ["web"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_gets_a_full_answer_with_the_same_version() {
    let h = seeded().await;
    let version = {
        let mut first = SotwClient::connect(h.xds_port, "default.backend-1").await;
        first.request(CDS, &[], "", "").await;
        first.must_recv().await.version_info
    };
    let mut again = SotwClient::connect(h.xds_port, "default.backend-1").await;
    again.request(CDS, &[], &version, "").await;
    let answer = again.must_recv().await;
    assert_eq!(answer.version_info, version, "content-derived versions are stable");
    assert_eq!(names(&answer), ["localhost:41021", "redis"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_is_counted_and_the_rejected_config_is_not_sent_again() {
    let h = seeded().await;
    let mut c = SotwClient::connect(h.xds_port, "default.backend-1").await;
    c.request(CDS, &[], "", "").await;
    let cds = c.must_recv().await;
    c.nack(&cds, &[], "").await;
    // Longer than the 500ms backoff: the rejected version is never re-sent, backoff or not.
    c.must_stay_silent("a rejected config is not sent again").await;
    c.must_stay_silent("a rejected config is not sent again, even after the backoff").await;
    let rejected = try_poll_until(Duration::from_secs(5), || {
        let insight = futures::executor::block_on(h.insight("default", "backend-1"));
        match insight.as_ref().and_then(|i| i.subscriptions.last()) {
            Some(s) if s.status.cds.responses_rejected == 1 => Ok(s.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .expect("the NACK shows in the DataplaneInsight");
    assert_eq!(rejected.status.cds.responses_sent, 1);
    assert_eq!(rejected.status.total.responses_rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_nack_a_newer_config_waits_for_the_backoff() {
    let h = seeded().await;
    let mut c = SotwClient::connect(h.xds_port, "default.backend-1").await;
    c.request(CDS, &[], "", "").await;
    let cds = c.must_recv().await;
    c.nack(&cds, &[], "").await;
    let nacked_at = tokio::time::Instant::now();
    h.apply(&backend_dataplane("default", OUTBOUND, BACKEND_DP).replace(
        "    service: redis\n",
        "    service: redis\n  - interface: :41011\n    service: web\n",
    ))
    .await;
    let newer = c.must_recv().await;
    assert_eq!(newer.type_url, CDS);
    assert_ne!(newer.version_info, cds.version_info);
    assert!(
        nacked_at.elapsed() >= Duration::from_millis(450),
        "a newer config came {:?} after the NACK, within the 500ms backoff",
        nacked_at.elapsed()
    );
    c.ack(&newer, &[]).await;
    c.must_stay_silent("an ACK is never answered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_that_is_not_mesh_dot_name_is_refused() {
    let h = seeded().await;
    let mut c = SotwClient::connect(h.xds_port, "nodot").await;
    c.request(CDS, &[], "", "").await;
    let status = c.must_fail().await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("<mesh>.<name>"), "{}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_one_subscription_of_the_insight_marked_disconnected_when_it_ends() {
    let h = seeded().await;
    let c = configured_backend(&h).await;
    let online = try_poll_until(Duration::from_secs(5), || {
        let insight = futures::executor::block_on(h.insight("default", "backend-1"));
        match insight {
            Some(i)
                if i.is_online() && i.subscriptions[0].status.total.responses_acknowledged == 3 =>
            {
                Ok(i)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .expect("the stream's ACKs are written");
    let sub = &online.subscriptions[0];
    assert_eq!(sub.control_plane_instance_id, "test-cp");
    assert_eq!((sub.status.cds.responses_sent, sub.status.eds.responses_sent), (1, 1));
    assert_eq!(sub.status.lds.responses_acknowledged, 1);
    drop(c);
    try_poll_until(Duration::from_secs(5), || {
        let insight = futures::executor::block_on(h.insight("default", "backend-1"));
        match insight {
            Some(i) if !i.is_online() && i.subscriptions[0].disconnect_time.is_some() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .expect("the closed stream is written as disconnected");
}

fn delta_request(type_url: &str, subscribe: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_sends_what_changed_and_removes_what_is_gone() {
    let h = seeded().await;
    let mut c = DeltaClient::connect(h.xds_port, "default.backend-1").await;
    c.send(delta_request(CDS, &[])).await;
    let first = c.must_recv().await;
    let mut got: Vec<&str> = first.resources.iter().map(|r| r.name.as_str()).collect();
    got.sort();
    assert_eq!(got, ["localhost:41021", "redis"]);
    assert!(first.resources.iter().all(|r| !r.version.is_empty()));
    c.ack(&first).await;
    c.must_stay_silent("an ACK is never answered").await;

    // The outbound goes: its cluster is removed, the local one is not re-sent.
    h.apply(
        &backend_dataplane("default", OUTBOUND, BACKEND_DP)
            .replace("  outbound:\n  - interface: :41010\n    service: redis\n", ""),
    )
    .await;
    let change = c.must_recv().await;
    assert!(change.resources.is_empty(), "nothing new: {change:?}");
    assert_eq!(change.removed_resources, ["redis"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_reconnect_sends_only_what_differs_from_initial_resource_versions() {
    let h = seeded().await;
    let versions: HashMap<String, String> = {
        let mut c = DeltaClient::connect(h.xds_port, "default.backend-1").await;
        c.send(delta_request(CDS, &[])).await;
        c.must_recv().await.resources.into_iter().map(|r| (r.name, r.version)).collect()
    };
    let mut held = versions.clone();
    held.insert("redis".into(), "outdated".into());
    held.insert("gone".into(), "1".into());
    let mut c = DeltaClient::connect(h.xds_port, "default.backend-1").await;
    c.send(DeltaDiscoveryRequest { initial_resource_versions: held, ..delta_request(CDS, &[]) })
        .await;
    let answer = c.must_recv().await;
    let sent: Vec<&str> = answer.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(sent, ["redis"], "only the outdated resource is sent");
    assert_eq!(answer.removed_resources, ["gone"]);

    // An explicit subscription to a name that does not exist is answered as removed.
    let mut e = DeltaClient::connect(h.xds_port, "default.backend-1").await;
    e.send(delta_request(EDS, &["redis", "missing"])).await;
    let eds = e.must_recv().await;
    assert_eq!(eds.resources.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["redis"]);
    assert_eq!(eds.removed_resources, ["missing"]);
}
