//! Per inbound interface: listener `inbound:<ip>:<port>` proxying TCP to `localhost:<servicePort>`;
//! with mTLS on, behind the RBAC filter of its TrafficPermission and requiring a mesh certificate.
//! An inbound tagged `protocol: http` gets an HTTP connection manager instead, traced when a
//! TrafficTrace selects the dataplane.

use std::net::{IpAddr, Ipv4Addr};

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::util::pack_any;
use kuma_model::selection::DataplanePolicies;

use super::envoy::{listener, socket_address, stat_prefix, static_cluster, tcp_proxy, TCP_PROXY};
use super::rbac::{rbac_filter, RBAC};
use super::trace::{self, ZipkinBackend};
use super::{http, tls, MeshContext, Proxy};
use crate::names;
use crate::snapshot::ResourceSet;
use crate::xds_type::XdsType;

/// The workload listens on the loopback of the dataplane's host.
const WORKLOAD_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn generate(
    proxy: &Proxy<'_>,
    mesh: &MeshContext,
    policies: &DataplanePolicies<'_>,
    zipkin: Option<&ZipkinBackend>,
    out: &mut ResourceSet,
) {
    let address = proxy.spec.networking.address.as_deref();
    for (index, inbound) in proxy.spec.networking.inbound.iter().enumerate() {
        // Stored dataplanes were validated; an inbound that does not resolve cannot be served.
        let Some(interface) = inbound.resolve(address) else { continue };
        let cluster = names::local_cluster(interface.workload_port);
        out.add(
            XdsType::Cluster,
            &cluster,
            pack_any(static_cluster(&cluster, &[(WORKLOAD_IP, interface.workload_port)])),
        );
        let name = names::inbound_listener(interface.dataplane_ip, interface.dataplane_port);
        let mut filters = Vec::new();
        if mesh.mtls() {
            // TrafficPermission is enforced with mTLS only, as in Kuma 0.x; first in the chain.
            let permission = policies
                .inbounds
                .iter()
                .find(|i| i.index == index)
                .and_then(|i| i.traffic_permission.as_ref());
            filters.push((RBAC, rbac_filter(proxy.mesh, &stat_prefix(&name), permission)));
        }
        if http::is_http(&inbound.tags) {
            let manager = http::connection_manager(
                &stat_prefix(&cluster),
                &format!("inbound:{}", inbound.tags.service().unwrap_or_default()),
                &[(cluster.as_str(), 1)],
                zipkin.map(trace::tracing),
                None,
            );
            filters.push((http::HTTP_CONNECTION_MANAGER, manager));
        } else {
            filters.push((TCP_PROXY, tcp_proxy(&stat_prefix(&cluster), &cluster)));
        }
        let mut inbound_listener = listener(
            &name,
            socket_address(interface.dataplane_ip, interface.dataplane_port),
            TrafficDirection::Inbound,
            filters,
        );
        if mesh.mtls() {
            inbound_listener.filter_chains[0].transport_socket =
                Some(tls::downstream_tls(proxy.mesh));
        }
        out.add(XdsType::Listener, &name, pack_any(inbound_listener));
    }
}
