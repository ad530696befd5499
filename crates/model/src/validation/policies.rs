//! Rules of the policies: selectors, `conf`, and references to the mesh's backends.

use super::tags::{selectors, tag_charset_rules, OPTIONAL, SERVICE_ONLY, SOURCES};
use super::{Path, Report, Validate, ValidationContext};
use crate::mesh::MeshSpec;
use crate::policy::{
    HealthCheckSpec, ProxyTemplateSpec, Selector, TrafficLogSpec, TrafficPermissionSpec,
    TrafficRouteSpec, TrafficTraceSpec, PROFILES,
};
use crate::tags::SERVICE_TAG_LEGACY;

fn backend_names(mesh: &MeshSpec, logging: bool) -> Vec<&str> {
    if logging {
        mesh.logging.iter().flat_map(|l| &l.backends).map(|b| b.name.as_str()).collect()
    } else {
        mesh.tracing.iter().flat_map(|t| &t.backends).map(|b| b.name.as_str()).collect()
    }
}

/// Selectors of a policy on connections to a service (TrafficRoute, TrafficLog, HealthCheck):
/// sources select dataplanes by any tags; destinations name the service only.
fn connection_selectors(report: &mut Report, sources: &[Selector], destinations: &[Selector]) {
    selectors(report, &Path::root().field("sources"), sources, SOURCES);
    selectors(report, &Path::root().field("destinations"), destinations, SERVICE_ONLY);
}

impl Validate for TrafficPermissionSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        // Sources are identified by their certificate, which carries only the service.
        selectors(report, &Path::root().field("sources"), &self.sources, SERVICE_ONLY);
        selectors(report, &Path::root().field("destinations"), &self.destinations, SOURCES);
    }
}

impl Validate for TrafficRouteSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        connection_selectors(report, &self.sources, &self.destinations);
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
                report.add(&p.key(SERVICE_TAG_LEGACY), "mandatory tag \"service\" is missing");
            }
            tag_charset_rules(report, &p, &entry.destination, false);
        }
    }
}

impl Validate for TrafficLogSpec {
    fn validate(&self, ctx: &ValidationContext<'_>, report: &mut Report) {
        connection_selectors(report, &self.sources, &self.destinations);
        if let (Some(mesh), Some(conf)) = (ctx.mesh, &self.conf) {
            let known = backend_names(mesh, true);
            let path = Path::root().field("conf").field("backend");
            report.reference(&path, conf.backend.as_deref(), &known, "logging backend");
        }
    }
}

impl Validate for TrafficTraceSpec {
    fn validate(&self, ctx: &ValidationContext<'_>, report: &mut Report) {
        selectors(report, &Path::root().field("selectors"), &self.selectors, SOURCES);
        if let (Some(mesh), Some(conf)) = (ctx.mesh, &self.conf) {
            let known = backend_names(mesh, false);
            let path = Path::root().field("conf").field("backend");
            report.reference(&path, conf.backend.as_deref(), &known, "tracing backend");
        }
    }
}

impl Validate for ProxyTemplateSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        selectors(report, &Path::root().field("selectors"), &self.selectors, OPTIONAL);
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
        report.unique_names(&resources, self.conf.resources.iter().map(|r| r.name.as_str()));
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
                Ok(_) => {
                    report.add(&p.field("resource"), "native Envoy resource must be an object")
                }
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
        connection_selectors(report, &self.sources, &self.destinations);
        let conf = Path::root().field("conf");
        if self.conf.active_checks.is_none() && self.conf.passive_checks.is_none() {
            report.add(&conf, "has to have at least one of activeChecks or passiveChecks");
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
