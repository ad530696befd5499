//! Process-level tools that drive real `kuma-cp` processes over 127.0.0.1 (DESIGN.md section 6,
//! levels 4 and 6): the benchmarks run by `make bench` (`xds-load` on one kuma-cp or across a
//! Raft cluster, `raft-bench`, `large-state`) and the chaos tests of the Raft store. No control-plane crate depends on this one, and it talks to
//! kuma-cp only through its public ports (HTTP API, ADS, diagnostics), as users and Envoys do.

mod bench_api;
mod bench_cluster;
pub mod chaos;
mod error;
mod kuma_cp_process;
mod large_state;
mod percentiles;
mod proc_stats;
pub mod scrape;
mod simulated_envoy;
mod xds_load;

pub use bench_api::BenchApi;
pub use bench_cluster::{BenchCluster, BenchClusterConfig};
pub use error::LoadError;
pub use kuma_cp_process::{CpPorts, KumaCpProcess, KumaCpProcessConfig};
pub use large_state::{
    growth_verdict, Figure, LargeState, LargeStateConfig, LargeStateReport, MESHES,
};
pub use percentiles::Percentiles;
pub use simulated_envoy::{SimulatedEnvoy, StreamEvent, StreamEventKind};
pub use xds_load::{
    PeerFigures, Targets, XdsLoad, XdsLoadConfig, XdsLoadReport, MAX_DATAPLANES, MAX_PEERS,
    MAX_ROUNDS,
};
