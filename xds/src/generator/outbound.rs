//! Per outbound interface: listener `outbound:<ip>:<port>` proxying TCP to an EDS cluster named
//! after the service, whose endpoints are the service's inbounds across the mesh.

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::util::pack_any;
use kuma_model::selection::DataplanePolicies;

use super::envoy::{eds_cluster, listener, socket_address, stat_prefix, tcp_proxy, TCP_PROXY};
use super::{tls, MeshContext, Proxy};
use crate::names;
use crate::snapshot::ResourceSet;
use crate::xds_type::XdsType;

pub fn generate(
    proxy: &Proxy<'_>,
    mesh: &MeshContext,
    _policies: &DataplanePolicies<'_>,
    out: &mut ResourceSet,
) {
    for outbound in &proxy.spec.networking.outbound {
        let (Some(interface), Some(service)) = (outbound.resolve(), outbound.service_name()) else {
            continue;
        };
        let cluster = names::service_cluster(service);
        let mut service_cluster = eds_cluster(&cluster);
        if mesh.mtls() {
            service_cluster.transport_socket = Some(tls::upstream_tls(proxy.mesh, service));
        }
        out.add(XdsType::Cluster, &cluster, pack_any(service_cluster));
        out.add(XdsType::Endpoint, &cluster, mesh.assignment(service));
        let name = names::outbound_listener(interface.ip, interface.port);
        out.add(
            XdsType::Listener,
            &name,
            pack_any(listener(
                &name,
                socket_address(interface.ip, interface.port),
                TrafficDirection::Outbound,
                vec![(TCP_PROXY, tcp_proxy(&stat_prefix(&cluster), &cluster))],
            )),
        );
    }
}
