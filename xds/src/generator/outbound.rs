//! Per outbound interface: listener `outbound:<ip>:<port>` proxying TCP to the service's EDS
//! cluster, whose endpoints are the service's inbounds across the mesh. The outbound's policies
//! shape it: a TrafficRoute splits the traffic over weighted clusters `<service>-_<i>_`, each
//! holding only the endpoints with the tags of its destination; a HealthCheck adds active TCP
//! checks to every cluster; a TrafficLog adds an access log. An outbound whose instances are all
//! tagged `protocol: http` gets an HTTP connection manager (traced under a TrafficTrace) instead
//! of a TCP proxy.

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::util::pack_any;
use kuma_model::policy::{HealthCheckSpec, TrafficRouteSpec};
use kuma_model::selection::{DataplanePolicies, OutboundPolicies};
use kuma_model::Tags;

use super::envoy::{
    eds_cluster, listener, load_assignment, socket_address, stat_prefix, TCP_PROXY,
};
use super::trace::{self, ZipkinBackend};
use super::{access_log, health_check, http, tls, MeshContext, Proxy};
use crate::names;
use crate::snapshot::ResourceSet;
use crate::xds_type::XdsType;

/// One cluster the outbound sends to, with its share of the traffic.
struct Target<'a> {
    cluster: String,
    /// The service whose instances the cluster holds.
    service: &'a str,
    /// Only instances with these tags (a TrafficRoute destination); `None`: every instance.
    subset: Option<&'a Tags>,
    weight: u32,
}

fn targets<'a>(service: &'a str, route: Option<&'a TrafficRouteSpec>) -> Vec<Target<'a>> {
    let split: Vec<Target<'a>> = route
        .map(|r| r.conf.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.weight > 0)
        .map(|(i, entry)| Target {
            cluster: names::split_cluster(service, i),
            service: entry.destination.service().unwrap_or(service),
            subset: Some(&entry.destination),
            weight: entry.weight,
        })
        .collect();
    if split.is_empty() {
        return vec![Target {
            cluster: names::service_cluster(service),
            service,
            subset: None,
            weight: 1,
        }];
    }
    split
}

/// Whether an instance's tags carry every tag of a route destination (the service tag under
/// either spelling).
fn in_subset(subset: &Tags, tags: &Tags) -> bool {
    subset.iter().all(|(k, v)| {
        if k == kuma_model::SERVICE_TAG || k == kuma_model::SERVICE_TAG_LEGACY {
            tags.service() == Some(v)
        } else {
            tags.get(k) == Some(v)
        }
    })
}

/// An outbound speaks HTTP when every instance it may reach is tagged `protocol: http`.
fn speaks_http(mesh: &MeshContext, targets: &[Target<'_>]) -> bool {
    let mut any = false;
    for target in targets {
        for endpoint in mesh.endpoints(target.service) {
            if target.subset.is_some_and(|s| !in_subset(s, &endpoint.tags)) {
                continue;
            }
            if !http::is_http(&endpoint.tags) {
                return false;
            }
            any = true;
        }
    }
    any
}

pub fn generate(
    proxy: &Proxy<'_>,
    mesh: &MeshContext,
    policies: &DataplanePolicies<'_>,
    zipkin: Option<&ZipkinBackend>,
    out: &mut ResourceSet,
) {
    for (index, outbound) in proxy.spec.networking.outbound.iter().enumerate() {
        let (Some(interface), Some(service)) = (outbound.resolve(), outbound.service_name()) else {
            continue;
        };
        let chosen: Option<&OutboundPolicies<'_>> =
            policies.outbounds.iter().find(|o| o.index == index);
        let route = chosen.and_then(|o| o.traffic_route.as_ref()).map(|s| s.policy.spec);
        let check: Option<&HealthCheckSpec> =
            chosen.and_then(|o| o.health_check.as_ref()).map(|s| s.policy.spec);
        let targets = targets(service, route);
        for target in &targets {
            let mut cluster = eds_cluster(&target.cluster);
            if mesh.mtls() {
                cluster.transport_socket = Some(tls::upstream_tls(proxy.mesh, target.service));
            }
            if let Some(check) = check {
                cluster.health_checks = health_check::active_checks(check);
            }
            out.add(XdsType::Cluster, &target.cluster, pack_any(cluster));
            match target.subset {
                // The shared, pre-encoded assignment of the whole service.
                None => {
                    out.reaches(target.service);
                    out.add_shared(
                        XdsType::Endpoint,
                        &target.cluster,
                        mesh.assignment(target.service),
                    );
                }
                Some(subset) => {
                    out.reaches_subset(target.service);
                    let endpoints: Vec<_> = mesh
                        .endpoints(target.service)
                        .iter()
                        .filter(|e| in_subset(subset, &e.tags))
                        .map(|e| (e.address, e.port))
                        .collect();
                    let assignment = pack_any(load_assignment(&target.cluster, &endpoints));
                    out.add(XdsType::Endpoint, &target.cluster, assignment);
                }
            }
        }
        let weighted: Vec<(&str, u32)> =
            targets.iter().map(|t| (t.cluster.as_str(), t.weight)).collect();
        let log = chosen
            .and_then(|o| o.traffic_log.as_ref())
            .and_then(|selected| access_log::for_outbound(proxy, mesh, service, selected));
        let name = names::outbound_listener(interface.ip, interface.port);
        let filter = if speaks_http(mesh, &targets) {
            let manager = http::connection_manager(
                &stat_prefix(service),
                &format!("outbound:{service}"),
                &weighted,
                zipkin.map(trace::tracing),
                log,
            );
            (http::HTTP_CONNECTION_MANAGER, manager)
        } else {
            (TCP_PROXY, super::envoy::tcp_proxy_to(&stat_prefix(service), &weighted, log))
        };
        out.add(
            XdsType::Listener,
            &name,
            pack_any(listener(
                &name,
                socket_address(interface.ip, interface.port),
                TrafficDirection::Outbound,
                vec![filter],
            )),
        );
    }
}
