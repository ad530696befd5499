//! kuma-cp's metrics recorder: the libraries record through the `metrics` facade, this module
//! installs the Prometheus recorder once per process and renders its text on the diagnostics
//! port (`GET /metrics`).
//!
//! The recorder must be in place before the store, the Raft node and the xDS server make their
//! handles (a handle made before it records nothing): `kuma-cp run` installs it first thing.
//! Histograms get buckets suited to what they measure; anything without its own buckets is
//! rendered as a summary.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// The content type of Prometheus' text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are folded into their buckets between scrapes, so a control
/// plane that nobody scrapes does not hold every sample.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Each histogram and its buckets: milliseconds for Kuma's xDS timings (as Kuma records them),
/// seconds for the others, counts for batch sizes.
const BUCKETS: &[(&str, &[f64])] = &[
    // From a store change seen by this peer to Envoy's ACK: the debounce, generation, the send
    // and Envoy applying it; up to a loaded fleet's seconds, finely around the 0.1-1 s that a
    // fleet's p99 falls in (BENCHMARKS.md), so a quantile read off the buckets is close.
    (
        "xds_delivery",
        &[
            1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 600.0,
            700.0, 800.0, 1000.0, 1250.0, 1500.0, 2000.0, 3000.0, 5000.0, 10000.0, 30000.0,
        ],
    ),
    // One dataplane's config: sub-millisecond to tens of milliseconds (an identity certificate).
    ("xds_generation", &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0]),
    // A replica read takes microseconds; a replicated write a commit (one or more fsyncs).
    (
        "store",
        &[
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0, 2.5, 5.0,
        ],
    ),
    (
        "api_server_http_request_duration_seconds",
        &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
    ),
    // A synced RocksDB write: tens of microseconds on a fast SSD to tens of milliseconds on a
    // spinning or throttled disk.
    (
        "raft_fsync_duration_seconds",
        &[
            0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
            0.512, 1.0,
        ],
    ),
    // Writes per Raft command: one when writes come one at a time, up to the coalescer's 512.
    ("raft_write_batch_size", &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the Prometheus recorder for this process (once; later calls return the first
/// result). `Err` when another recorder is already installed.
pub fn install() -> Result<&'static PrometheusHandle, &'static str> {
    HANDLE.get_or_init(|| build().map_err(|e| e.to_string())).as_ref().map_err(String::as_str)
}

fn build() -> Result<PrometheusHandle, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in BUCKETS {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)?;
    }
    let handle = builder.install_recorder()?;
    describe();
    let upkeep = handle.clone();
    // A thread of its own: the recorder may be installed before any runtime exists.
    let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
        std::thread::sleep(UPKEEP_EVERY);
        upkeep.run_upkeep();
    });
    Ok(handle)
}

/// The Prometheus text of every series recorded so far.
pub fn render() -> Result<String, &'static str> {
    install().map(PrometheusHandle::render)
}

/// The help text of each series.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "xds_streams_active",
        "xDS streams connected to this peer, by API (ads, delta_ads, sds, delta_sds)"
    );
    describe_counter!(
        "xds_requests_received",
        "Answers from Envoy to this peer's responses, by type_url and confirmation (ACK or NACK)"
    );
    describe_counter!("xds_responses_sent", "xDS responses sent, by type_url");
    describe_histogram!(
        "xds_generation",
        "Time to generate one dataplane's config, in milliseconds"
    );
    describe_histogram!("xds_delivery", "Time from this peer seeing a store change to Envoy's ACK of the response carrying it, by type_url, in milliseconds");
    describe_histogram!("store", "Store operation latency in seconds, by operation and store_type");
    describe_histogram!("api_server_http_request_duration_seconds", "HTTP API requests by handler (the route template), method and code, with their latency in seconds");
    describe_gauge!("raft_term", "This peer's current Raft term");
    describe_gauge!(
        "raft_state",
        "1 for the Raft role this peer is in (state label), 0 for the others"
    );
    describe_gauge!("raft_commit_index", "The highest log index this peer knows committed");
    describe_gauge!("raft_applied_index", "The highest log index applied to this peer's state");
    describe_gauge!("raft_last_log_index", "The last index in this peer's Raft log");
    describe_counter!(
        "raft_leader_changes_total",
        "Changes of the leader this peer knows, since it started"
    );
    describe_counter!(
        "raft_forwarded_writes_total",
        "Writes this peer forwarded to the leader and the leader committed"
    );
    describe_histogram!(
        "raft_write_batch_size",
        "Writes carried by one Raft command (gathered while the previous one commits)"
    );
    describe_counter!(
        "raft_snapshots_total",
        "Raft snapshots this peer stored, built or installed"
    );
    describe_counter!(
        "raft_early_appends_total",
        "New entries this leader sent a follower while writing them itself, by outcome (appended, refused, failed)"
    );
    describe_gauge!(
        "raft_snapshot_size_bytes",
        "The size of the latest Raft snapshot this peer stored"
    );
    describe_histogram!(
        "raft_fsync_duration_seconds",
        "Synced RocksDB writes of the Raft log and vote, in seconds"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_list_rises() {
        for (name, buckets) in BUCKETS {
            assert!(!buckets.is_empty(), "{name} has no buckets");
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name}'s buckets do not rise");
        }
    }

    #[test]
    fn a_recorded_histogram_renders_with_its_own_buckets() {
        let handle = install().expect("the first recorder of this test process");
        metrics::histogram!("raft_fsync_duration_seconds").record(0.003);
        metrics::counter!("raft_forwarded_writes_total").increment(2);
        let text = handle.render();
        assert!(
            text.contains("raft_fsync_duration_seconds_bucket{le=\"0.004\"} 1"),
            "no fsync bucket in:\n{text}"
        );
        assert!(text.contains("raft_fsync_duration_seconds_count 1"), "{text}");
        assert!(text.contains("raft_forwarded_writes_total 2"), "{text}");
        assert!(text.contains("# HELP raft_forwarded_writes_total"), "{text}");
    }
}
