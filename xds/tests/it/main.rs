//! kuma-xds integration tests: generator golden files, ADS protocol conformance with an
//! independent client, and real Envoy processes fed by an in-process xDS server.

mod ads_client;
mod bootstrap;
mod bootstrap_properties;
mod envoy;
mod golden;
mod harness;
mod identity;
mod mads;
mod metrics;
mod mtls;
mod permissions;
mod protocol;
mod sds;
mod service_account;
mod trace;
mod traffic_policies;
