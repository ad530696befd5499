//! Validation: every violation is collected with its field path, in Kuma's path syntax
//! (`networking.inbound[0].tags["service"]`), so one 400 response tells the user everything.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::dataplane::{parse_inbound_interface, parse_outbound_interface, DataplaneSpec};
use crate::duration::parse_duration;
use crate::insight::DataplaneInsightSpec;
use crate::mesh::{CaDataSource, MeshSpec};
use crate::parse::ResourceInput;
use crate::policy::{
    HealthCheckSpec, ProxyTemplateSpec, Selector, TrafficLogSpec, TrafficPermissionSpec,
    TrafficRouteSpec, TrafficTraceSpec, PROFILES,
};
use crate::resource::ResourceKey;
use crate::tags::{Tags, SERVICE_TAG, SERVICE_TAG_LEGACY};

/// One broken rule: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every violation found in one resource.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub violations: Vec<Violation>,
}

impl ValidationError {
    pub fn new(violations: Vec<Violation>) -> ValidationError {
        ValidationError { violations }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("resource is not valid")?;
        for v in &self.violations {
            write!(f, "; {}: {}", v.field, v.message)?;
        }
        Ok(())
    }
}

/// What validation may look at beyond the resource itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct ValidationContext<'a> {
    /// The mesh the resource belongs to, when it exists; backend references are checked against it.
    pub mesh: Option<&'a MeshSpec>,
}

/// Validates a submitted resource: its name and mesh, then its spec.
pub fn validate(input: &ResourceInput, ctx: &ValidationContext<'_>) -> Result<(), ValidationError> {
    let mut report = Report::default();
    report.violations.extend(validate_meta(&input.key));
    input.spec.validate_into(ctx, &mut report);
    if report.violations.is_empty() {
        Ok(())
    } else {
        Err(ValidationError::new(report.violations))
    }
}

const NAME_MAX: usize = 253;

fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("cannot be empty".into());
    }
    if name.len() > NAME_MAX {
        return Some(format!("must be at most {NAME_MAX} characters long"));
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    (!ok).then(|| {
        format!("{name:?} is invalid: use only lower case letters, digits, '-', '_' and '.'")
    })
}

/// Checks the name and mesh of a key.
pub fn validate_meta(key: &ResourceKey) -> Vec<Violation> {
    let mut violations = Vec::new();
    if let Some(problem) = name_problem(&key.name) {
        violations.push(Violation::new("name", problem));
    }
    if let Some(problem) = key.mesh.as_deref().and_then(name_problem) {
        violations.push(Violation::new("mesh", problem));
    }
    violations
}

/// A field path in Kuma's syntax.
#[derive(Clone, Debug, Default)]
pub(crate) struct Path(String);

impl Path {
    pub fn root() -> Path {
        Path::default()
    }

    pub fn field(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, k: &str) -> Path {
        Path(format!("{}[{k:?}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects violations.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn add(&mut self, path: &Path, message: impl Into<String>) {
        self.violations
            .push(Violation::new(path.0.clone(), message));
    }

    fn port(&mut self, path: &Path, port: Option<u32>, required: bool) {
        match port {
            None if required => self.add(path, "port is required"),
            Some(p) if !(1..=65535).contains(&p) => {
                self.add(path, format!("port {p} is out of range 1-65535"))
            }
            _ => {}
        }
    }

    fn ip(&mut self, path: &Path, address: Option<&str>) {
        if let Some(a) = address {
            if a.parse::<IpAddr>().is_err() {
                self.add(
                    path,
                    format!("{a:?} is not a valid IP address (host names are not allowed)"),
                );
            }
        }
    }

    fn positive_duration(&mut self, path: &Path, value: Option<&str>) {
        match value {
            None => self.add(path, "has to be set"),
            Some(v) => match parse_duration(v) {
                Err(e) => self.add(path, e.to_string()),
                Ok(d) if d.is_zero() => self.add(path, "has to be greater than 0"),
                Ok(_) => {}
            },
        }
    }

    fn positive(&mut self, path: &Path, value: Option<u32>) {
        match value {
            None => self.add(path, "has to be set"),
            Some(0) => self.add(path, "has to be greater than 0"),
            Some(_) => {}
        }
    }

    fn unique_names<'n>(&mut self, base: &Path, names: impl Iterator<Item = &'n str>) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.enumerate() {
            let path = base.index(i).field("name");
            if name.is_empty() {
                self.add(&path, "cannot be empty");
            } else if let Some(first) = seen.get(name) {
                self.add(
                    &path,
                    format!("{name:?} is already used by {}", base.index(*first)),
                );
            } else {
                seen.insert(name, i);
            }
        }
    }

    fn reference(&mut self, path: &Path, name: Option<&str>, known: &[&str], what: &str) {
        if let Some(name) = name {
            if !known.contains(&name) {
                let choices = if known.is_empty() {
                    "none are defined".into()
                } else {
                    known.join(", ")
                };
                self.add(
                    path,
                    format!("{what} {name:?} is not defined; defined: {choices}"),
                );
            }
        }
    }
}

/// Rules a spec type applies to itself.
pub(crate) trait Validate {
    fn validate(&self, ctx: &ValidationContext<'_>, report: &mut Report);
}

// ---------------------------------------------------------------------------------------------
// Tags and selectors

const KNOWN_PROTOCOLS: &[&str] = &["http", "http2", "grpc", "tcp", "kafka"];

fn valid_tag_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'))
}

fn valid_tag_value(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

fn tag_charset_rules(report: &mut Report, path: &Path, tags: &Tags, allow_wildcard: bool) {
    for (k, v) in tags.iter() {
        let p = path.key(k);
        if !valid_tag_key(k) {
            report.add(
                &p,
                "tag name must consist of letters, digits and '.', '-', '_', ':', '/'",
            );
        }
        if v.is_empty() {
            report.add(&p, "tag value cannot be empty");
        } else if !(valid_tag_value(v) || (allow_wildcard && v == "*")) {
            let also = if allow_wildcard { ", or be '*'" } else { "" };
            report.add(
                &p,
                format!("tag value must consist of letters, digits and '.', '-', '_', ':'{also}"),
            );
        }
        if (k == "protocol" || k == "kuma.io/protocol") && v != "*" && !KNOWN_PROTOCOLS.contains(&v)
        {
            report.add(
                &p,
                format!(
                    "protocol {v:?} is unknown; use one of {}",
                    KNOWN_PROTOCOLS.join(", ")
                ),
            );
        }
    }
    if let (Some(a), Some(b)) = (tags.get(SERVICE_TAG_LEGACY), tags.get(SERVICE_TAG)) {
        if a != b {
            report.add(
                &path.key(SERVICE_TAG),
                format!("must equal tags[\"service\"] ({a:?}) when both are set"),
            );
        }
    }
}

fn dataplane_tags(report: &mut Report, path: &Path, tags: &Tags) {
    if tags.service().is_none() {
        report.add(&path.key(SERVICE_TAG_LEGACY), "tag has to exist");
    }
    tag_charset_rules(report, path, tags, false);
}

#[derive(Clone, Copy)]
struct SelectorRules {
    /// Each selector must carry the service tag.
    require_service: bool,
    /// The service tag is the only one allowed (selectors matched against a service name only).
    only_service: bool,
}

const SOURCES: SelectorRules = SelectorRules {
    require_service: true,
    only_service: false,
};
const SERVICE_ONLY: SelectorRules = SelectorRules {
    require_service: true,
    only_service: true,
};

fn selectors(report: &mut Report, path: &Path, selectors: &[Selector], rules: SelectorRules) {
    if selectors.is_empty() {
        report.add(path, "must have at least one element");
    }
    for (i, selector) in selectors.iter().enumerate() {
        let p = path.index(i).field("match");
        let tags = &selector.match_tags;
        if tags.is_empty() {
            report.add(&p, "must have at least one tag");
            continue;
        }
        if rules.require_service && tags.service().is_none() {
            report.add(
                &p.key(SERVICE_TAG_LEGACY),
                "mandatory tag \"service\" is missing",
            );
        }
        if rules.only_service {
            for (k, _) in tags
                .iter()
                .filter(|(k, _)| *k != SERVICE_TAG && *k != SERVICE_TAG_LEGACY)
            {
                report.add(&p.key(k), "only the \"service\" tag is allowed here");
            }
        }
        tag_charset_rules(report, &p, tags, true);
    }
}

// ---------------------------------------------------------------------------------------------
// Dataplane

impl Validate for DataplaneSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        let net = Path::root().field("networking");
        let n = &self.networking;
        let legacy = n.inbound.iter().any(|i| i.interface.is_some())
            || n.outbound.iter().any(|o| o.interface.is_some());

        if n.inbound.is_empty() && n.gateway.is_none() {
            report.add(
                &net,
                "has to contain at least one inbound interface or gateway",
            );
        }
        if !n.inbound.is_empty() && n.gateway.is_some() {
            report.add(
                &net.field("gateway"),
                "cannot be defined both with inbounds",
            );
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
                    report.add(
                        &p.field("address"),
                        "has to be set here or in networking.address",
                    );
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
                    report.add(
                        &p,
                        "interface cannot be combined with port or address; use one form",
                    );
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
                report.add(
                    &Path::root().field("metrics").field("type"),
                    "has to be prometheus",
                );
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

// ---------------------------------------------------------------------------------------------
// Policies

fn backend_names(mesh: &MeshSpec, logging: bool) -> Vec<&str> {
    if logging {
        mesh.logging
            .iter()
            .flat_map(|l| &l.backends)
            .map(|b| b.name.as_str())
            .collect()
    } else {
        mesh.tracing
            .iter()
            .flat_map(|t| &t.backends)
            .map(|b| b.name.as_str())
            .collect()
    }
}

impl Validate for TrafficPermissionSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        // Sources are identified by their certificate, which carries only the service.
        selectors(
            report,
            &Path::root().field("sources"),
            &self.sources,
            SERVICE_ONLY,
        );
        selectors(
            report,
            &Path::root().field("destinations"),
            &self.destinations,
            SOURCES,
        );
    }
}

impl Validate for TrafficRouteSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        selectors(
            report,
            &Path::root().field("sources"),
            &self.sources,
            SOURCES,
        );
        selectors(
            report,
            &Path::root().field("destinations"),
            &self.destinations,
            SERVICE_ONLY,
        );
        let conf = Path::root().field("conf");
        if self.conf.is_empty() {
            report.add(&conf, "must have at least one element");
        } else if self.conf.iter().all(|c| c.weight == 0) {
            report.add(&conf, "the weights must add up to more than 0");
        }
        for (i, entry) in self.conf.iter().enumerate() {
            let p = conf.index(i).field("destination");
            if entry.destination.is_empty() {
                report.add(&p, "has to have at least one tag");
                continue;
            }
            if entry.destination.service().is_none() {
                report.add(
                    &p.key(SERVICE_TAG_LEGACY),
                    "mandatory tag \"service\" is missing",
                );
            }
            tag_charset_rules(report, &p, &entry.destination, false);
        }
    }
}

impl Validate for TrafficLogSpec {
    fn validate(&self, ctx: &ValidationContext<'_>, report: &mut Report) {
        selectors(
            report,
            &Path::root().field("sources"),
            &self.sources,
            SOURCES,
        );
        selectors(
            report,
            &Path::root().field("destinations"),
            &self.destinations,
            SERVICE_ONLY,
        );
        if let (Some(mesh), Some(conf)) = (ctx.mesh, &self.conf) {
            let known = backend_names(mesh, true);
            let path = Path::root().field("conf").field("backend");
            report.reference(&path, conf.backend.as_deref(), &known, "logging backend");
        }
    }
}

impl Validate for TrafficTraceSpec {
    fn validate(&self, ctx: &ValidationContext<'_>, report: &mut Report) {
        selectors(
            report,
            &Path::root().field("selectors"),
            &self.selectors,
            SOURCES,
        );
        if let (Some(mesh), Some(conf)) = (ctx.mesh, &self.conf) {
            let known = backend_names(mesh, false);
            let path = Path::root().field("conf").field("backend");
            report.reference(&path, conf.backend.as_deref(), &known, "tracing backend");
        }
    }
}

impl Validate for ProxyTemplateSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        selectors(
            report,
            &Path::root().field("selectors"),
            &self.selectors,
            SOURCES,
        );
        let conf = Path::root().field("conf");
        for (i, import) in self.conf.imports.iter().enumerate() {
            if !PROFILES.contains(&import.as_str()) {
                report.add(
                    &conf.field("imports").index(i),
                    format!(
                        "profile {import:?} not found; available profiles: {}",
                        PROFILES.join(", ")
                    ),
                );
            }
        }
        let resources = conf.field("resources");
        report.unique_names(
            &resources,
            self.conf.resources.iter().map(|r| r.name.as_str()),
        );
        for (i, resource) in self.conf.resources.iter().enumerate() {
            let p = resources.index(i);
            if resource.version.is_empty() {
                report.add(&p.field("version"), "cannot be empty");
            }
            if resource.resource.trim().is_empty() {
                report.add(&p.field("resource"), "cannot be empty");
                continue;
            }
            match serde_yaml::from_str::<serde_json::Value>(&resource.resource) {
                Ok(serde_json::Value::Object(object)) => {
                    if !object.get("@type").is_some_and(|t| t.is_string()) {
                        report.add(
                            &p.field("resource"),
                            "native Envoy resource must name its type with \"@type\"",
                        );
                    }
                }
                Ok(_) => report.add(
                    &p.field("resource"),
                    "native Envoy resource must be an object",
                ),
                Err(e) => report.add(
                    &p.field("resource"),
                    format!("native Envoy resource is not valid YAML: {e}"),
                ),
            }
        }
    }
}

impl Validate for HealthCheckSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        selectors(
            report,
            &Path::root().field("sources"),
            &self.sources,
            SOURCES,
        );
        selectors(
            report,
            &Path::root().field("destinations"),
            &self.destinations,
            SERVICE_ONLY,
        );
        let conf = Path::root().field("conf");
        if self.conf.active_checks.is_none() && self.conf.passive_checks.is_none() {
            report.add(
                &conf,
                "has to have at least one of activeChecks or passiveChecks",
            );
        }
        if let Some(active) = &self.conf.active_checks {
            let p = conf.field("activeChecks");
            report.positive_duration(&p.field("interval"), active.interval.as_deref());
            report.positive_duration(&p.field("timeout"), active.timeout.as_deref());
            report.positive(&p.field("unhealthyThreshold"), active.unhealthy_threshold);
            report.positive(&p.field("healthyThreshold"), active.healthy_threshold);
        }
        if let Some(passive) = &self.conf.passive_checks {
            let p = conf.field("passiveChecks");
            report.positive(&p.field("unhealthyThreshold"), passive.unhealthy_threshold);
            report.positive_duration(
                &p.field("penaltyInterval"),
                passive.penalty_interval.as_deref(),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mesh

fn data_source(report: &mut Report, path: &Path, source: Option<&CaDataSource>) {
    match source {
        None => report.add(path, "has to be set"),
        Some(s) => {
            let set = [s.secret.is_some(), s.file.is_some(), s.inline.is_some()];
            if set.iter().filter(|x| **x).count() != 1 {
                report.add(path, "has to set exactly one of secret, file or inline");
            }
        }
    }
}

fn host_port(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} has to be in HOST:PORT format"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{address:?} has no host; expected HOST:PORT"));
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(()),
        _ => Err(format!(
            "{address:?} has no valid port; expected HOST:PORT with a port in 1-65535"
        )),
    }
}

/// Checks an `http(s)://host:port/...` URL; Envoy's zipkin collector needs an explicit port.
fn url_with_port(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} has to be an http:// or https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    host_port(authority).map_err(|_| {
        format!("{url:?} has to include a host and a port, e.g. http://zipkin:9411/api/v2/spans")
    })
}

fn prometheus_conf(report: &mut Report, path: &Path, conf: &crate::mesh::PrometheusConf) {
    report.port(&path.field("port"), conf.port, false);
    if let Some(p) = &conf.path {
        if !p.starts_with('/') {
            report.add(&path.field("path"), "has to start with '/'");
        }
    }
}

impl Validate for MeshSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        let root = Path::root();
        if let Some(mtls) = &self.mtls {
            let p = root.field("mtls");
            if (mtls.enabled.is_some() || mtls.ca.is_some())
                && (mtls.enabled_backend.is_some() || !mtls.backends.is_empty())
            {
                report.add(
                    &p,
                    "cannot mix enabled/ca (Kuma 0.4 form) with enabledBackend/backends",
                );
            }
            if let Some(ca) = &mtls.ca {
                if ca.builtin.is_some() == ca.provided.is_some() {
                    report.add(
                        &p.field("ca"),
                        "has to set exactly one of builtin or provided",
                    );
                }
            }
            let backends = p.field("backends");
            report.unique_names(&backends, mtls.backends.iter().map(|b| b.name.as_str()));
            for (i, backend) in mtls.backends.iter().enumerate() {
                let bp = backends.index(i);
                let conf = backend.conf.clone().unwrap_or_default();
                match backend.kind.as_str() {
                    "builtin" => {
                        if let Some(ca_cert) = &conf.ca_cert {
                            if ca_cert.rsa_bits.is_some_and(|b| b < 2048) {
                                report.add(
                                    &bp.field("conf").field("caCert").field("RSAbits"),
                                    "has to be at least 2048",
                                );
                            }
                            if ca_cert.expiration.is_some() {
                                report.positive_duration(
                                    &bp.field("conf").field("caCert").field("expiration"),
                                    ca_cert.expiration.as_deref(),
                                );
                            }
                        }
                        if conf.cert.is_some() || conf.key.is_some() {
                            report.add(
                                &bp.field("conf"),
                                "cert and key are set only for a provided CA",
                            );
                        }
                    }
                    "provided" => {
                        data_source(report, &bp.field("conf").field("cert"), conf.cert.as_ref());
                        data_source(report, &bp.field("conf").field("key"), conf.key.as_ref());
                    }
                    other => report.add(
                        &bp.field("type"),
                        format!("{other:?} is unknown; has to be one of builtin, provided"),
                    ),
                }
                if let Some(expiration) = backend
                    .dp_cert
                    .as_ref()
                    .and_then(|d| d.rotation.as_ref())
                    .and_then(|r| r.expiration.as_deref())
                {
                    report.positive_duration(
                        &bp.field("dpCert").field("rotation").field("expiration"),
                        Some(expiration),
                    );
                }
            }
            let names: Vec<&str> = mtls.backends.iter().map(|b| b.name.as_str()).collect();
            report.reference(
                &p.field("enabledBackend"),
                mtls.enabled_backend.as_deref(),
                &names,
                "CA backend",
            );
        }

        if let Some(logging) = &self.logging {
            let p = root.field("logging");
            let backends = p.field("backends");
            report.unique_names(&backends, logging.backends.iter().map(|b| b.name.as_str()));
            for (i, backend) in logging.backends.iter().enumerate() {
                let bp = backends.index(i);
                let forms = [
                    backend.kind.is_some(),
                    backend.file.is_some(),
                    backend.tcp.is_some(),
                ];
                if forms.iter().filter(|x| **x).count() > 1
                    || (backend.kind.is_none() && backend.conf.is_some())
                {
                    report.add(&bp, "use either type + conf, or one of file / tcp");
                    continue;
                }
                let conf = backend
                    .conf
                    .as_ref()
                    .or(backend.file.as_ref())
                    .or(backend.tcp.as_ref());
                match backend.backend_type() {
                    Some("file") => {
                        if conf
                            .and_then(|c| c.path.as_deref())
                            .is_none_or(str::is_empty)
                        {
                            report.add(
                                &bp.field(if backend.file.is_some() {
                                    "file"
                                } else {
                                    "conf"
                                })
                                .field("path"),
                                "has to be set",
                            );
                        }
                    }
                    Some("tcp") => {
                        let field = bp
                            .field(if backend.tcp.is_some() { "tcp" } else { "conf" })
                            .field("address");
                        match conf.and_then(|c| c.address.as_deref()) {
                            None => report.add(&field, "has to be set"),
                            Some(a) => {
                                if let Err(e) = host_port(a) {
                                    report.add(&field, e);
                                }
                            }
                        }
                    }
                    Some(other) => report.add(
                        &bp.field("type"),
                        format!("{other:?} is unknown; has to be one of file, tcp"),
                    ),
                    None => report.add(&bp.field("type"), "has to be set to file or tcp"),
                }
            }
            let names: Vec<&str> = logging.backends.iter().map(|b| b.name.as_str()).collect();
            report.reference(
                &p.field("defaultBackend"),
                logging.default_backend.as_deref(),
                &names,
                "logging backend",
            );
        }

        if let Some(tracing) = &self.tracing {
            let p = root.field("tracing");
            let backends = p.field("backends");
            report.unique_names(&backends, tracing.backends.iter().map(|b| b.name.as_str()));
            for (i, backend) in tracing.backends.iter().enumerate() {
                let bp = backends.index(i);
                if let Some(sampling) = backend.sampling {
                    if !(0.0..=100.0).contains(&sampling) {
                        report.add(&bp.field("sampling"), "has to be in the range 0-100");
                    }
                }
                if backend.kind.is_some() && backend.zipkin.is_some() {
                    report.add(&bp, "use either type + conf, or zipkin");
                    continue;
                }
                let (conf_field, conf) = match (&backend.kind, &backend.zipkin) {
                    (Some(kind), _) if kind != "zipkin" => {
                        report.add(
                            &bp.field("type"),
                            format!("{kind:?} is unknown; has to be zipkin"),
                        );
                        continue;
                    }
                    (Some(_), _) => ("conf", backend.conf.as_ref()),
                    (None, Some(z)) => ("zipkin", Some(z)),
                    (None, None) => {
                        report.add(&bp.field("type"), "has to be set to zipkin");
                        continue;
                    }
                };
                let cp = bp.field(conf_field);
                match conf.and_then(|c| c.url.as_deref()) {
                    None => report.add(&cp.field("url"), "has to be set"),
                    Some(url) => {
                        if let Err(e) = url_with_port(url) {
                            report.add(&cp.field("url"), e);
                        }
                    }
                }
                if let Some(api) = conf.and_then(|c| c.api_version.as_deref()) {
                    if !["httpJsonV1", "httpJson", "httpProto"].contains(&api) {
                        report.add(&cp.field("apiVersion"), format!("{api:?} is unknown; has to be one of httpJsonV1, httpJson, httpProto"));
                    }
                }
            }
            let names: Vec<&str> = tracing.backends.iter().map(|b| b.name.as_str()).collect();
            report.reference(
                &p.field("defaultBackend"),
                tracing.default_backend.as_deref(),
                &names,
                "tracing backend",
            );
        }

        if let Some(metrics) = &self.metrics {
            let p = root.field("metrics");
            if metrics.prometheus.is_some()
                && (metrics.enabled_backend.is_some() || !metrics.backends.is_empty())
            {
                report.add(
                    &p,
                    "cannot mix prometheus (Kuma 0.4 form) with enabledBackend/backends",
                );
            }
            if let Some(prometheus) = &metrics.prometheus {
                prometheus_conf(report, &p.field("prometheus"), prometheus);
            }
            let backends = p.field("backends");
            report.unique_names(&backends, metrics.backends.iter().map(|b| b.name.as_str()));
            for (i, backend) in metrics.backends.iter().enumerate() {
                let bp = backends.index(i);
                if backend.kind != "prometheus" {
                    report.add(
                        &bp.field("type"),
                        format!("{:?} is unknown; has to be prometheus", backend.kind),
                    );
                }
                if let Some(conf) = &backend.conf {
                    prometheus_conf(report, &bp.field("conf"), conf);
                }
            }
            let names: Vec<&str> = metrics.backends.iter().map(|b| b.name.as_str()).collect();
            report.reference(
                &p.field("enabledBackend"),
                metrics.enabled_backend.as_deref(),
                &names,
                "metrics backend",
            );
        }
    }
}
