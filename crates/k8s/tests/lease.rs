//! Leader election and replica liveness with Leases, against a real kube-apiserver: one leader
//! at a time, a handover at once when the leader stops, a takeover once a killed leader's Lease
//! expires, and replicas' own Leases that say which are alive.

use std::time::{Duration, Instant};

use kuma_k8s::lease::{self, Timing};
use kuma_test_support::KubeApiServer;
use tokio::sync::watch;

const NAMESPACE: &str = "kuma-system";

/// Short leases so the test takes seconds; the same code runs with the 6 s default.
const TIMING: Timing =
    Timing { lease_duration: Duration::from_secs(2), renew_every: Duration::from_millis(500) };

/// An elector in a runtime of its own, so dropping the runtime is a kill (no handover).
struct Replica {
    runtime: Option<tokio::runtime::Runtime>,
    leading: watch::Receiver<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Replica {
    fn start(server: &KubeApiServer, identity: &str) -> Replica {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let kubeconfig = server.kubeconfig().to_path_buf();
        let identity = identity.to_string();
        let leading = runtime.block_on(async move {
            let client = kuma_k8s::client_from_kubeconfig(&kubeconfig).await.unwrap();
            lease::heartbeat(
                client.clone(),
                NAMESPACE,
                &identity,
                "127.0.0.1:5678",
                TIMING,
                std::future::pending(),
            );
            lease::elect(client, NAMESPACE, &identity, TIMING, async move {
                let _ = stopped.await;
            })
        });
        Replica { runtime: Some(runtime), leading, stop: Some(stop) }
    }

    fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    /// Stops electing: a leader hands the Lease back.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Gone at once, without a word: its runtime and every task in it are dropped.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Waits until exactly one of `replicas` leads; returns its index and how long it took.
fn one_leader(replicas: &[&Replica], within: Duration) -> (usize, Duration) {
    let start = Instant::now();
    loop {
        let leaders: Vec<usize> = (0..replicas.len()).filter(|i| replicas[*i].leads()).collect();
        assert!(leaders.len() <= 1, "two replicas lead at once: {leaders:?}");
        if let [one] = leaders[..] {
            return (one, start.elapsed());
        }
        assert!(start.elapsed() < within, "no replica leads after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_replica_leads_a_stopped_leader_hands_over_and_a_killed_ones_lease_expires() {
    let server = KubeApiServer::must_start();
    server.must_create_namespace(NAMESPACE, &[]);
    let mut replicas = vec![
        Replica::start(&server, "replica-a"),
        Replica::start(&server, "replica-b"),
        Replica::start(&server, "replica-c"),
    ];
    let all: Vec<&Replica> = replicas.iter().collect();
    let (first, _) = one_leader(&all, Duration::from_secs(10));
    // Stay single-leader for a few renewals.
    let steady = Instant::now();
    while steady.elapsed() < TIMING.lease_duration * 2 {
        let leaders = replicas.iter().filter(|r| r.leads()).count();
        assert_eq!(leaders, 1, "exactly one leader while nothing changes");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A leader that stops hands the Lease back: another takes it within a renewal or two,
    // without waiting for the Lease to expire.
    replicas[first].stop();
    let rest: Vec<(usize, &Replica)> =
        replicas.iter().enumerate().filter(|(i, _)| *i != first).collect();
    let refs: Vec<&Replica> = rest.iter().map(|(_, r)| *r).collect();
    let (second, handover) = one_leader(&refs, Duration::from_secs(10));
    assert!(handover < TIMING.lease_duration + TIMING.renew_every, "handover took {handover:?}");
    let second = rest[second].0;

    // A killed leader says nothing: the last replica takes over once its Lease expires.
    replicas[second].kill();
    let last = (0..3).find(|i| *i != first && *i != second).unwrap();
    let (_, takeover) = one_leader(&[&replicas[last]], Duration::from_secs(10));
    assert!(takeover >= TIMING.lease_duration / 2, "took over a live Lease after {takeover:?}");
    eprintln!("handover after a stop: {handover:?}; takeover after a kill: {takeover:?}");

    // The replicas' own Leases: the killed one drops out once its Lease expires.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let killed = ["replica-a", "replica-b", "replica-c"][second];
    runtime.block_on(async {
        let client = kuma_k8s::client_from_kubeconfig(server.kubeconfig()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let live =
                lease::live_instances(client.clone(), NAMESPACE, Duration::ZERO).await.unwrap();
            let names: Vec<&str> = live.iter().map(|i| i.identity.as_str()).collect();
            if !names.contains(&killed) && names.len() == 2 {
                assert!(live.iter().all(|i| i.xds_address.as_deref() == Some("127.0.0.1:5678")));
                break;
            }
            assert!(Instant::now() < deadline, "live replicas: {names:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    for replica in &mut replicas {
        replica.kill();
    }
}
