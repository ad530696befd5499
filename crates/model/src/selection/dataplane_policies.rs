//! `DataplanePolicies`: for one dataplane, the policy of each type chosen for each inbound,
//! outbound and for the dataplane as a whole. The xDS generators and the `/policies` endpoint
//! both read it, so what the API shows is what Envoy gets.

use serde_json::{json, Map, Value};

use super::select::{
    select_for_dataplane, select_for_inbound, select_for_outbound, Candidate, Selected,
};
use crate::dataplane::DataplaneSpec;
use crate::policy::{
    HealthCheckSpec, ProxyTemplateSpec, TrafficLogSpec, TrafficPermissionSpec, TrafficRouteSpec,
    TrafficTraceSpec,
};
use crate::resource::Resource;
use crate::spec::Spec;
use crate::tags::Tags;

/// Every policy of a mesh, by type.
#[derive(Debug, Default)]
pub struct MeshPolicies<'a> {
    pub traffic_permissions: Vec<Candidate<'a, TrafficPermissionSpec>>,
    pub traffic_routes: Vec<Candidate<'a, TrafficRouteSpec>>,
    pub traffic_logs: Vec<Candidate<'a, TrafficLogSpec>>,
    pub health_checks: Vec<Candidate<'a, HealthCheckSpec>>,
    pub traffic_traces: Vec<Candidate<'a, TrafficTraceSpec>>,
    pub proxy_templates: Vec<Candidate<'a, ProxyTemplateSpec>>,
}

impl<'a> MeshPolicies<'a> {
    /// Sorts `resources` by type; what is not a policy is ignored.
    pub fn from_resources(resources: impl IntoIterator<Item = &'a Resource>) -> MeshPolicies<'a> {
        let mut out = MeshPolicies::default();
        for r in resources {
            let (name, creation_time) = (r.key.name.as_str(), r.creation_time);
            macro_rules! push {
                ($list:ident, $spec:expr) => {
                    out.$list.push(Candidate { name, creation_time, spec: $spec })
                };
            }
            match &r.spec {
                Spec::TrafficPermission(s) => push!(traffic_permissions, s),
                Spec::TrafficRoute(s) => push!(traffic_routes, s),
                Spec::TrafficLog(s) => push!(traffic_logs, s),
                Spec::HealthCheck(s) => push!(health_checks, s),
                Spec::TrafficTrace(s) => push!(traffic_traces, s),
                Spec::ProxyTemplate(s) => push!(proxy_templates, s),
                Spec::Mesh(_)
                | Spec::Dataplane(_)
                | Spec::DataplaneInsight(_)
                | Spec::Secret(_)
                | Spec::GlobalSecret(_) => {}
            }
        }
        out
    }
}

/// The policies of one inbound (`networking.inbound[index]`).
#[derive(Debug)]
pub struct InboundPolicies<'a> {
    pub index: usize,
    pub tags: &'a Tags,
    pub traffic_permission: Option<Selected<'a, TrafficPermissionSpec>>,
}

/// The policies of one outbound (`networking.outbound[index]`) to `service`.
#[derive(Debug)]
pub struct OutboundPolicies<'a> {
    pub index: usize,
    pub service: &'a str,
    pub traffic_route: Option<Selected<'a, TrafficRouteSpec>>,
    pub traffic_log: Option<Selected<'a, TrafficLogSpec>>,
    pub health_check: Option<Selected<'a, HealthCheckSpec>>,
}

/// Every policy chosen for one dataplane.
#[derive(Debug)]
pub struct DataplanePolicies<'a> {
    pub inbounds: Vec<InboundPolicies<'a>>,
    pub outbounds: Vec<OutboundPolicies<'a>>,
    pub traffic_trace: Option<Selected<'a, TrafficTraceSpec>>,
    pub proxy_template: Option<Selected<'a, ProxyTemplateSpec>>,
}

impl<'a> DataplanePolicies<'a> {
    /// Applies Kuma's selection rules to `dataplane` with the mesh's `policies`.
    pub fn select(dataplane: &'a DataplaneSpec, policies: &MeshPolicies<'a>) -> Self {
        let tag_sets = dataplane.tag_sets();
        let inbounds = dataplane
            .networking
            .inbound
            .iter()
            .enumerate()
            .map(|(index, inbound)| InboundPolicies {
                index,
                tags: &inbound.tags,
                traffic_permission: select_for_inbound(
                    &policies.traffic_permissions,
                    &inbound.tags,
                ),
            })
            .collect();
        let outbounds = dataplane
            .networking
            .outbound
            .iter()
            .enumerate()
            .filter_map(|(index, outbound)| {
                let service = outbound.service_name()?;
                Some(OutboundPolicies {
                    index,
                    service,
                    traffic_route: select_for_outbound(
                        &policies.traffic_routes,
                        &tag_sets,
                        service,
                    ),
                    traffic_log: select_for_outbound(&policies.traffic_logs, &tag_sets, service),
                    health_check: select_for_outbound(&policies.health_checks, &tag_sets, service),
                })
            })
            .collect();
        DataplanePolicies {
            inbounds,
            outbounds,
            traffic_trace: select_for_dataplane(&policies.traffic_traces, &tag_sets),
            proxy_template: select_for_dataplane(&policies.proxy_templates, &tag_sets),
        }
    }

    /// The REST form of `GET /meshes/{mesh}/dataplanes/{name}/policies`.
    pub fn to_json(&self, mesh: &str, name: &str, dataplane: &DataplaneSpec) -> Value {
        let address = dataplane.networking.address.as_deref();
        let inbounds: Vec<Value> = self
            .inbounds
            .iter()
            .map(|i| {
                let inbound = &dataplane.networking.inbound[i.index];
                let interface = inbound.resolve(address).map(|r| {
                    let ip = match r.dataplane_ip {
                        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                        v4 => v4.to_string(),
                    };
                    format!("{ip}:{}:{}", r.dataplane_port, r.workload_port)
                });
                let mut policies = Map::new();
                entry(&mut policies, "TrafficPermission", &i.traffic_permission);
                json!({
                    "interface": interface,
                    "tags": i.tags,
                    "policies": policies,
                })
            })
            .collect();
        let outbounds: Vec<Value> = self
            .outbounds
            .iter()
            .map(|o| {
                let outbound = &dataplane.networking.outbound[o.index];
                let interface = outbound.resolve().map(|r| format!("{}:{}", r.ip, r.port));
                let mut policies = Map::new();
                entry(&mut policies, "TrafficRoute", &o.traffic_route);
                entry(&mut policies, "TrafficLog", &o.traffic_log);
                entry(&mut policies, "HealthCheck", &o.health_check);
                json!({
                    "interface": interface,
                    "service": o.service,
                    "policies": policies,
                })
            })
            .collect();
        let mut policies = Map::new();
        entry(&mut policies, "TrafficTrace", &self.traffic_trace);
        entry(&mut policies, "ProxyTemplate", &self.proxy_template);
        json!({
            "type": "DataplanePolicies",
            "mesh": mesh,
            "name": name,
            "policies": policies,
            "inbounds": inbounds,
            "outbounds": outbounds,
        })
    }
}

fn entry<T>(map: &mut Map<String, Value>, kind: &str, selected: &Option<Selected<'_, T>>) {
    if let Some(s) = selected {
        map.insert(
            kind.to_string(),
            json!({
                "name": s.policy.name,
                "rank": {"total": s.rank.total(), "exact": s.rank.exact, "wildcard": s.rank.wildcard},
                "reason": s.reason,
                "otherMatches": s.others,
            }),
        );
    }
}
