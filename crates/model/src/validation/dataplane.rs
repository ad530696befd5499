//! Rules of Dataplane and DataplaneInsight.

use std::collections::HashMap;
use std::net::IpAddr;

use super::mesh::prometheus_conf;
use super::tags::{dataplane_tags, tag_charset_rules, valid_tag_value};
use super::{Path, Report, Validate, ValidationContext};
use crate::dataplane::{parse_inbound_interface, parse_outbound_interface, DataplaneSpec};
use crate::insight::DataplaneInsightSpec;

impl Validate for DataplaneSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        let net = Path::root().field("networking");
        let n = &self.networking;
        let legacy = n.inbound.iter().any(|i| i.interface.is_some())
            || n.outbound.iter().any(|o| o.interface.is_some());

        if n.inbound.is_empty() && n.gateway.is_none() {
            report.add(&net, "has to contain at least one inbound interface or gateway");
        }
        if !n.inbound.is_empty() && n.gateway.is_some() {
            report.add(&net.field("gateway"), "cannot be defined both with inbounds");
        }
        report.ip(&net.field("address"), n.address.as_deref());
        if legacy && n.address.is_some() {
            report.add(&net.field("address"), "cannot be combined with the interface form of inbounds and outbounds; use one form");
        }

        // Every listener address must be unique: (ip, port) -> where it was first used.
        let mut listeners: HashMap<(IpAddr, u16), Path> = HashMap::new();
        let mut claim = |report: &mut Report, path: &Path, ip: IpAddr, port: u16| {
            if let Some(first) = listeners.get(&(ip, port)) {
                report.add(path, format!("{ip}:{port} is already used by {first}"));
            } else {
                listeners.insert((ip, port), path.clone());
            }
        };

        for (i, inbound) in n.inbound.iter().enumerate() {
            let p = net.field("inbound").index(i);
            if let Some(interface) = &inbound.interface {
                if inbound.port.is_some()
                    || inbound.service_port.is_some()
                    || inbound.address.is_some()
                {
                    report.add(&p, "interface cannot be combined with port, servicePort or address; use one form");
                }
                match parse_inbound_interface(interface) {
                    Err(e) => report.add(&p.field("interface"), format!("invalid format: {e}")),
                    Ok(parsed) => {
                        if parsed.dataplane_ip.is_loopback()
                            && parsed.dataplane_port == parsed.workload_port
                        {
                            report.add(&p.field("interface"), "the dataplane port and the service port cannot be the same on a loopback address");
                        }
                        claim(report, &p, parsed.dataplane_ip, parsed.dataplane_port);
                    }
                }
            } else {
                report.port(&p.field("port"), inbound.port, true);
                report.port(&p.field("servicePort"), inbound.service_port, false);
                report.ip(&p.field("address"), inbound.address.as_deref());
                if inbound.address.is_none() && n.address.is_none() {
                    report.add(&p.field("address"), "has to be set here or in networking.address");
                }
                if let Some(resolved) = inbound.resolve(n.address.as_deref()) {
                    claim(report, &p, resolved.dataplane_ip, resolved.dataplane_port);
                }
            }
            dataplane_tags(report, &p.field("tags"), &inbound.tags);
        }
        if let Some(gateway) = &n.gateway {
            dataplane_tags(report, &net.field("gateway").field("tags"), &gateway.tags);
        }
        for (i, outbound) in n.outbound.iter().enumerate() {
            let p = net.field("outbound").index(i);
            if let Some(interface) = &outbound.interface {
                if outbound.port.is_some() || outbound.address.is_some() {
                    report
                        .add(&p, "interface cannot be combined with port or address; use one form");
                }
                match parse_outbound_interface(interface) {
                    Err(e) => report.add(&p.field("interface"), format!("invalid format: {e}")),
                    Ok(parsed) => claim(report, &p, parsed.ip, parsed.port),
                }
            } else {
                report.port(&p.field("port"), outbound.port, true);
                report.ip(&p.field("address"), outbound.address.as_deref());
                if let Some(resolved) = outbound.resolve() {
                    claim(report, &p, resolved.ip, resolved.port);
                }
            }
            match outbound.service_name() {
                None => report.add(&p.field("service"), "cannot be empty"),
                Some(s) if !valid_tag_value(s) || s.is_empty() => report.add(
                    &p.field("service"),
                    "must consist of letters, digits and '.', '-', '_', ':'",
                ),
                Some(_) => {}
            }
            if let Some(tags) = &outbound.tags {
                tag_charset_rules(report, &p.field("tags"), tags, false);
            }
        }
        if let Some(tp) = &n.transparent_proxying {
            report.port(
                &net.field("transparentProxying").field("redirectPort"),
                tp.redirect_port,
                false,
            );
        }
        if let Some(metrics) = &self.metrics {
            if metrics.kind != "prometheus" {
                report.add(&Path::root().field("metrics").field("type"), "has to be prometheus");
            }
            if let Some(conf) = &metrics.conf {
                prometheus_conf(report, &Path::root().field("metrics").field("conf"), conf);
            }
        }
    }
}

impl Validate for DataplaneInsightSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        for (i, s) in self.subscriptions.iter().enumerate() {
            let p = Path::root().field("subscriptions").index(i);
            if s.id.is_empty() {
                report.add(&p.field("id"), "cannot be empty");
            }
            if let (Some(connect), Some(disconnect)) = (s.connect_time, s.disconnect_time) {
                if disconnect < connect {
                    report.add(&p.field("disconnectTime"), "cannot be before connectTime");
                }
            }
        }
    }
}

impl Validate for crate::secret::GlobalSecretSpec {
    fn validate(&self, ctx: &ValidationContext<'_>, report: &mut Report) {
        self.0.validate(ctx, report);
    }
}

impl Validate for crate::secret::SecretSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        let p = Path::root().field("data");
        if self.data.trim().is_empty() {
            report.add(&p, "cannot be empty");
        } else if self.bytes().is_none() {
            report.add(&p, "has to be base64-encoded bytes");
        }
    }
}
