//! kuma-prometheus-sd integration tests: the binary against real kuma-cp peers, real kuma-dp and
//! Envoy, and a real Prometheus reading its file.

mod cli;
mod prometheus;
