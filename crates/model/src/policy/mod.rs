//! The policies of Kuma's source/destination generation and their selectors.

mod health_check;
mod proxy_template;
mod selector;
mod traffic_log;
mod traffic_permission;
mod traffic_route;
mod traffic_trace;

pub use health_check::{ActiveChecks, HealthCheckConf, HealthCheckSpec, PassiveChecks};
pub use proxy_template::{
    ProxyTemplateConf, ProxyTemplateRawResource, ProxyTemplateSpec, PROFILES,
};
pub use selector::Selector;
pub use traffic_log::{TrafficLogConf, TrafficLogSpec};
pub use traffic_permission::TrafficPermissionSpec;
pub use traffic_route::{TrafficRouteSpec, WeightedDestination};
pub use traffic_trace::{TrafficTraceConf, TrafficTraceSpec};
