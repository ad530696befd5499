//! `kuma-prometheus-sd`: turns the dataplanes the control plane knows into a Prometheus
//! `file_sd` file. Not built yet: it says so and exits non-zero.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "kuma-prometheus-sd {}: not built yet in this version; scrape kuma-cp's dataplanes by hand",
        kuma_build_info::VERSION
    );
    ExitCode::FAILURE
}
