//! The leader lease and the instance registry, with two stores standing for two kuma-cp.

use std::time::Duration;

use kuma_store_postgres::{current_leader, LeaderLock, PostgresStore, LEADER_LOCK_NAME};

use crate::support::{must_eventually, must_migrated_store};

async fn must_become_leader(lock: &LeaderLock, within: Duration) {
    must_eventually(within, "the lock is acquired", || async {
        if lock.is_leader() {
            Ok(())
        } else {
            Err(format!("{} is not the leader", lock.holder()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_moves_to_the_other_instance_within_seconds_when_its_holder_dies() {
    let (_server, config, a) = must_migrated_store().await;
    let b = PostgresStore::connect(&config).await.unwrap();
    let on_a = LeaderLock::start(&a, "cp-a");
    must_become_leader(&on_a, Duration::from_secs(5)).await;
    let on_b = LeaderLock::start(&b, "cp-b");
    let mut b_leads = on_b.subscribe();
    // Over several renewals, A keeps it and B never holds it.
    for _ in 0..3 {
        let changed = tokio::time::timeout(Duration::from_millis(1100), b_leads.changed()).await;
        assert!(changed.is_err() && !on_b.is_leader(), "B took a held lock");
        assert!(on_a.is_leader());
        assert_eq!(current_leader(&a, LEADER_LOCK_NAME).await.unwrap().as_deref(), Some("cp-a"));
    }
    // A dies without releasing: B takes over once the 5 s lease runs out.
    let died = tokio::time::Instant::now();
    drop(on_a);
    drop(a);
    must_become_leader(&on_b, Duration::from_secs(10)).await;
    // The lease (5 s from A's last renewal) plus B's next try (every second), with slack for a
    // loaded machine.
    let took = died.elapsed();
    assert!(took <= Duration::from_secs(8), "the lock moved after {took:?}");
    assert_eq!(current_leader(&b, LEADER_LOCK_NAME).await.unwrap().as_deref(), Some("cp-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lock_moves_at_the_next_try() {
    let (_server, config, a) = must_migrated_store().await;
    let b = PostgresStore::connect(&config).await.unwrap();
    let on_a = LeaderLock::start(&a, "cp-a");
    must_become_leader(&on_a, Duration::from_secs(5)).await;
    let on_b = LeaderLock::start(&b, "cp-b");
    on_a.release().await.unwrap();
    must_become_leader(&on_b, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_cannot_renew_reports_the_lock_lost_within_the_lease_and_takes_it_back() {
    let (mut server, _, store) = must_migrated_store().await;
    let lock = LeaderLock::start(&store, "cp-a");
    must_become_leader(&lock, Duration::from_secs(5)).await;
    let mut leads = lock.subscribe();
    let stopped = tokio::time::Instant::now();
    tokio::task::block_in_place(|| server.stop());
    tokio::time::timeout(Duration::from_secs(7), leads.wait_for(|leader| !leader))
        .await
        .expect("the lock is reported lost")
        .unwrap();
    let lost_after = stopped.elapsed();
    assert!(lost_after <= Duration::from_secs(5), "reported lost only after {lost_after:?}");
    tokio::task::block_in_place(|| server.must_start_again());
    must_become_leader(&lock, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_heartbeat_their_rows_and_are_listed() {
    let (_server, config, a) = must_migrated_store().await;
    let b = PostgresStore::connect(&config).await.unwrap();
    let _beat_a = a.register_instance("cp-a", "10.0.0.1:5681", "10.0.0.1:5678");
    let beat_b = b.register_instance("cp-b", "10.0.0.2:5681", "10.0.0.2:5678");
    let listed = must_eventually(Duration::from_secs(5), "both are listed", || async {
        let instances = a.instances().await.map_err(|e| e.to_string())?;
        match instances.len() {
            2 => Ok(instances),
            n => Err(format!("{n} instances listed")),
        }
    })
    .await;
    assert_eq!(listed[0].id, "cp-a");
    assert_eq!(
        (listed[1].api_address.as_str(), listed[1].xds_address.as_str()),
        ("10.0.0.2:5681", "10.0.0.2:5678")
    );
    assert!(listed.iter().all(|i| i.alive && i.last_seen >= i.started_at));
    // Heartbeats advance last_seen.
    let first_seen = listed[1].last_seen;
    must_eventually(Duration::from_secs(5), "cp-b heartbeats again", || async {
        let instances = b.instances().await.map_err(|e| e.to_string())?;
        match instances.iter().find(|i| i.id == "cp-b") {
            Some(i) if i.last_seen > first_seen => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // cp-b restarts under the same id: its row says when it started again.
    drop(beat_b);
    let first_start = listed[1].started_at;
    let _beat_b = b.register_instance("cp-b", "10.0.0.2:5681", "10.0.0.2:5678");
    must_eventually(Duration::from_secs(5), "cp-b's start is renewed", || async {
        let instances = b.instances().await.map_err(|e| e.to_string())?;
        match instances.iter().find(|i| i.id == "cp-b") {
            Some(i) if i.started_at > first_start => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}
