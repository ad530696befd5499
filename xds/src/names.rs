//! Names of generated Envoy resources, as Kuma spells them, so Envoy's admin output reads the same.

use std::net::IpAddr;

/// Cluster of the local workload behind an inbound: `localhost:<servicePort>`.
pub fn local_cluster(workload_port: u16) -> String {
    format!("localhost:{workload_port}")
}

/// Listener of an inbound interface: `inbound:<ip>:<port>`.
pub fn inbound_listener(ip: IpAddr, port: u16) -> String {
    format!("inbound:{}:{port}", host(ip))
}

/// Listener of an outbound interface: `outbound:<ip>:<port>`.
pub fn outbound_listener(ip: IpAddr, port: u16) -> String {
    format!("outbound:{}:{port}", host(ip))
}

/// Cluster (and its endpoint assignment) of a destination service: the service name.
pub fn service_cluster(service: &str) -> String {
    service.to_string()
}

/// Cluster of the `index`-th destination of a TrafficRoute split: `<service>-_<index>_`.
pub fn split_cluster(service: &str, index: usize) -> String {
    format!("{service}-_{index}_")
}

/// IPv6 in brackets, as in a URL authority.
fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}
