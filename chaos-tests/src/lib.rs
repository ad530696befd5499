//! Process-level tools that drive real `kuma-cp` processes over 127.0.0.1 (DESIGN.md section 6,
//! levels 4 and 6): today the xDS load benchmark (`xds-load`, run by `make bench`); the chaos
//! tests of the Raft issue join it. No control-plane crate depends on this one, and it talks to
//! kuma-cp only through its public ports (HTTP API, ADS, diagnostics), as users and Envoys do.

pub mod chaos;
mod error;
mod kuma_cp_process;
mod percentiles;
mod simulated_envoy;
mod xds_load;

pub use error::LoadError;
pub use kuma_cp_process::{CpPorts, KumaCpProcess, KumaCpProcessConfig};
pub use percentiles::Percentiles;
pub use simulated_envoy::{SimulatedEnvoy, StreamEvent, StreamEventKind};
pub use xds_load::{Targets, XdsLoad, XdsLoadConfig, XdsLoadReport, MAX_DATAPLANES, MAX_ROUNDS};
