//! HealthCheck's active checks as Envoy's TCP health checking of a cluster's endpoints: an
//! endpoint that fails `unhealthyThreshold` connects in a row stops receiving traffic until it
//! passes `healthyThreshold` again.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::health_check::{HealthChecker, TcpHealthCheck};
use envoy_types::pb::envoy::config::core::v3::HealthCheck;
use envoy_types::pb::google::protobuf::UInt32Value;
use kuma_model::parse_duration;
use kuma_model::policy::HealthCheckSpec;

use super::envoy::pb_duration;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;

fn duration(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(|t| parse_duration(t).ok()).filter(|d| !d.is_zero()).unwrap_or(default)
}

/// The cluster's `health_checks`: one TCP connect check when the policy has active checks.
pub fn active_checks(policy: &HealthCheckSpec) -> Vec<HealthCheck> {
    let Some(active) = &policy.conf.active_checks else { return Vec::new() };
    let interval = pb_duration(duration(active.interval.as_deref(), DEFAULT_INTERVAL));
    vec![HealthCheck {
        interval: Some(interval),
        // Envoy checks a cluster that has carried no traffic yet only once a minute by default;
        // an instance must be caught at the configured interval whether or not it was used.
        no_traffic_interval: Some(interval),
        timeout: Some(pb_duration(duration(active.timeout.as_deref(), DEFAULT_TIMEOUT))),
        unhealthy_threshold: Some(UInt32Value {
            value: active.unhealthy_threshold.unwrap_or(DEFAULT_UNHEALTHY_THRESHOLD),
        }),
        healthy_threshold: Some(UInt32Value {
            value: active.healthy_threshold.unwrap_or(DEFAULT_HEALTHY_THRESHOLD),
        }),
        // An empty TCP check is a connect check: the endpoint accepts connections or not.
        health_checker: Some(HealthChecker::TcpHealthCheck(TcpHealthCheck::default())),
        ..Default::default()
    }]
}
