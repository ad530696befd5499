//! The Dataplane resource: what a `kuma-dp` advertises (inbounds, gateway) and consumes
//! (outbounds). Both the seeds' `interface` form and the later `address/port/servicePort` form are
//! accepted and echoed back as written.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mesh::MetricsBackend;
use crate::tags::Tags;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneSpec {
    #[serde(default)]
    pub networking: Networking,
    /// Per-dataplane override of the mesh's metrics backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsBackend>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    /// The dataplane's IP (new form); inbounds without their own address use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<Inbound>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<Outbound>,
    /// Gateway mode: used instead of inbounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparent_proxying: Option<TransparentProxying>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inbound {
    /// Seeds' form: `DATAPLANE_IP:DATAPLANE_PORT:SERVICE_PORT` (IPv6: `[::1]:7070:6060`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outbound {
    /// Seeds' form: `[IP]:PORT`; an empty IP means 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransparentProxying {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port: Option<u32>,
}

/// An inbound with both forms resolved: where Envoy listens and where the workload is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundInterface {
    pub dataplane_ip: IpAddr,
    pub dataplane_port: u16,
    pub workload_port: u16,
}

/// An outbound with both forms resolved: where Envoy listens for the local workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundInterface {
    pub ip: IpAddr,
    pub port: u16,
}

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn parse_port(s: &str) -> Result<u16, String> {
    // Digits only, as Kuma's `[0-9]{1,5}`: Rust's own parse also takes a sign (`+80`).
    let n: u32 = s
        .parse()
        .ok()
        .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("port {s:?} is not a number"))?;
    match u16::try_from(n) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(format!("port {n} is out of range 1-65535")),
    }
}

/// Splits `IP:rest`, where an IPv6 IP is written in brackets.
fn split_ip(s: &str) -> Result<(Option<IpAddr>, &str), String> {
    if let Some(stripped) = s.strip_prefix('[') {
        let end = stripped.find(']').ok_or("an IPv6 address must be closed with ']'")?;
        let ip: IpAddr = stripped[..end]
            .parse()
            .map_err(|_| format!("{:?} is not an IP address", &stripped[..end]))?;
        let rest = stripped[end + 1..].strip_prefix(':').ok_or("a port must follow the address")?;
        return Ok((Some(ip), rest));
    }
    let (ip, rest) = s.split_once(':').ok_or("a port must follow the address")?;
    if ip.is_empty() {
        return Ok((None, rest));
    }
    let ip: IpAddr = ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?;
    Ok((Some(ip), rest))
}

/// Parses an inbound `interface`: `DATAPLANE_IP:DATAPLANE_PORT:SERVICE_PORT`.
pub fn parse_inbound_interface(s: &str) -> Result<InboundInterface, String> {
    let shape = "expected DATAPLANE_IP:DATAPLANE_PORT:SERVICE_PORT, e.g. 127.0.0.1:9000:6379";
    let (ip, rest) = split_ip(s).map_err(|e| format!("{e}; {shape}"))?;
    let ip = ip.ok_or_else(|| format!("the dataplane IP is missing; {shape}"))?;
    let (dp, svc) = rest.split_once(':').ok_or_else(|| format!("a port is missing; {shape}"))?;
    Ok(InboundInterface {
        dataplane_ip: ip,
        dataplane_port: parse_port(dp)?,
        workload_port: parse_port(svc)?,
    })
}

/// Parses an outbound `interface`: `[IP]:PORT`, the IP defaulting to 127.0.0.1.
pub fn parse_outbound_interface(s: &str) -> Result<OutboundInterface, String> {
    let shape = "expected [IP]:PORT, e.g. :10000 or 127.0.0.1:10000";
    let (ip, port) = split_ip(s).map_err(|e| format!("{e}; {shape}"))?;
    if port.contains(':') {
        return Err(format!("too many ':'; {shape}"));
    }
    Ok(OutboundInterface { ip: ip.unwrap_or(LOCALHOST), port: parse_port(port)? })
}

fn port16(p: Option<u32>) -> Option<u16> {
    p.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)
}

impl Inbound {
    /// Resolves either form; `None` when the inbound is invalid (validation explains why).
    pub fn resolve(&self, networking_address: Option<&str>) -> Option<InboundInterface> {
        if let Some(interface) = &self.interface {
            return parse_inbound_interface(interface).ok();
        }
        let address = self.address.as_deref().or(networking_address)?;
        let port = port16(self.port)?;
        Some(InboundInterface {
            dataplane_ip: address.parse().ok()?,
            dataplane_port: port,
            workload_port: match self.service_port {
                Some(p) => port16(Some(p))?,
                None => port,
            },
        })
    }
}

impl Outbound {
    /// Resolves either form; `None` when the outbound is invalid.
    pub fn resolve(&self) -> Option<OutboundInterface> {
        if let Some(interface) = &self.interface {
            return parse_outbound_interface(interface).ok();
        }
        let ip = match &self.address {
            Some(a) => a.parse().ok()?,
            None => LOCALHOST,
        };
        Some(OutboundInterface { ip, port: port16(self.port)? })
    }

    /// The service this outbound reaches: `service`, or the service tag of `tags`.
    pub fn service_name(&self) -> Option<&str> {
        self.service.as_deref().or_else(|| self.tags.as_ref().and_then(Tags::service))
    }
}

impl DataplaneSpec {
    /// Tags of every inbound (or of the gateway), in order.
    pub fn tag_sets(&self) -> Vec<&Tags> {
        let mut sets: Vec<&Tags> = self.networking.inbound.iter().map(|i| &i.tags).collect();
        if let Some(gw) = &self.networking.gateway {
            sets.push(&gw.tags);
        }
        sets
    }

    /// Every tag key with all of its values over the inbounds, sorted and deduplicated.
    pub fn merged_tags(&self) -> std::collections::BTreeMap<&str, Vec<&str>> {
        let mut merged: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for tags in self.tag_sets() {
            for (k, v) in tags.iter() {
                let values = merged.entry(k).or_default();
                if !values.contains(&v) {
                    values.push(v);
                }
            }
        }
        for values in merged.values_mut() {
            values.sort_unstable();
        }
        merged
    }

    /// True when some inbound (or the gateway) carries every `key=value` pair given.
    pub fn matches_tags(&self, wanted: &[(String, String)]) -> bool {
        self.tag_sets()
            .iter()
            .any(|tags| wanted.iter().all(|(k, v)| tags.get(k) == Some(v.as_str())))
    }

    /// The first service tag value, `unknown` when there is none.
    pub fn first_service(&self) -> &str {
        self.tag_sets().iter().find_map(|t| t.service()).unwrap_or("unknown")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_interface_parses_ipv4_and_ipv6() {
        let v4 = parse_inbound_interface("127.0.0.1:9000:6379").unwrap();
        assert_eq!((v4.dataplane_port, v4.workload_port), (9000, 6379));
        let v6 = parse_inbound_interface("[::1]:7070:6060").unwrap();
        assert_eq!(v6.dataplane_ip, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn inbound_interface_rejects_bad_shapes() {
        for bad in [
            "",
            "127.0.0.1:9000",
            ":9000:6379",
            "127.0.0.1:0:6379",
            "localhost:1:2",
            "1.2.3.4:1:70000",
        ] {
            assert!(parse_inbound_interface(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn outbound_interface_defaults_to_localhost() {
        let o = parse_outbound_interface(":10000").unwrap();
        assert_eq!(o, OutboundInterface { ip: LOCALHOST, port: 10000 });
        assert!(parse_outbound_interface("10000").is_err());
        assert!(parse_outbound_interface(":1:2").is_err());
    }

    #[test]
    fn new_form_inbound_falls_back_to_networking_address_and_port() {
        let inbound = Inbound { port: Some(8080), ..Default::default() };
        let resolved = inbound.resolve(Some("10.0.0.1")).unwrap();
        assert_eq!((resolved.dataplane_port, resolved.workload_port), (8080, 8080));
    }
}
