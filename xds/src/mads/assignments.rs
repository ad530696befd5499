//! What MADS hands out: one [`MonitoringAssignment`] per dataplane whose Envoy serves metrics
//! (its mesh, or its own `metrics` section, enables a prometheus backend), kept from the store's
//! Meshes and Dataplanes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use kuma_model::{DataplaneSpec, MeshSpec, Resource, ResourceKey, ResourceType};

use super::proto::{v1alpha1, MonitoringAssignment, Target};
use crate::generator::metrics::prometheus_endpoint;

/// The Meshes and Dataplanes MADS needs, as the store has them.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    meshes: HashMap<String, MeshSpec>,
    /// By (mesh, name), so assignments come out in a stable order.
    dataplanes: BTreeMap<(String, String), DataplaneSpec>,
}

impl Inventory {
    /// Takes in one change; `false` when it is of a type MADS ignores.
    pub fn apply(&mut self, key: &ResourceKey, resource: Option<&Resource>) -> bool {
        match key.resource_type {
            ResourceType::Mesh => {
                match resource.and_then(|r| r.spec.as_mesh()) {
                    Some(spec) => self.meshes.insert(key.name.clone(), spec.clone()),
                    None => self.meshes.remove(&key.name),
                };
                true
            }
            ResourceType::Dataplane => {
                let id = (key.mesh.clone().unwrap_or_default(), key.name.clone());
                match resource.and_then(|r| r.spec.as_dataplane()) {
                    Some(spec) => self.dataplanes.insert(id, spec.clone()),
                    None => self.dataplanes.remove(&id),
                };
                true
            }
            _ => false,
        }
    }

    /// Every assignment, ordered by mesh and dataplane name.
    pub fn assignments(&self) -> Vec<MonitoringAssignment> {
        self.dataplanes
            .iter()
            .filter_map(|((mesh, name), dataplane)| {
                let mesh_spec = self.meshes.get(mesh)?;
                assignment(mesh, name, mesh_spec, dataplane)
            })
            .collect()
    }
}

/// The assignment of one dataplane, when its Envoy serves metrics.
pub fn assignment(
    mesh: &str,
    name: &str,
    mesh_spec: &MeshSpec,
    dataplane: &DataplaneSpec,
) -> Option<MonitoringAssignment> {
    let endpoint = prometheus_endpoint(mesh_spec, dataplane)?;
    let mut labels = BTreeMap::new();
    for (key, values) in dataplane.merged_tags() {
        // One value is the common case; every value of a tag is also in the plural label, as
        // `,v1,v2,`, so a query can match any one of them.
        labels.insert(sanitize_label(key), values.first().copied().unwrap_or_default().to_string());
        labels.insert(sanitize_label(&format!("{key}s")), format!(",{},", values.join(",")));
    }
    Some(MonitoringAssignment {
        mesh: mesh.to_string(),
        service: dataplane.first_service().to_string(),
        targets: vec![Target {
            name: name.to_string(),
            scheme: "http".to_string(),
            address: address(endpoint.ip, endpoint.port),
            metrics_path: endpoint.path,
            labels,
        }],
        labels: BTreeMap::new(),
    })
}

/// The same assignment in the v1alpha1 shape: the target only `__address__`, everything else
/// (tags, `mesh`, `dataplane`, `job`, `instance`, `__scheme__`, `__metrics_path__`) in the
/// assignment's labels.
pub fn as_v1alpha1(assignment: &MonitoringAssignment) -> Vec<v1alpha1::MonitoringAssignment> {
    assignment
        .targets
        .iter()
        .map(|target| {
            let mut labels = target.labels.clone();
            labels.extend(assignment.labels.clone());
            for (key, value) in [
                ("__scheme__", &target.scheme),
                ("__metrics_path__", &target.metrics_path),
                ("job", &assignment.service),
                ("instance", &target.name),
                ("mesh", &assignment.mesh),
                ("dataplane", &target.name),
            ] {
                labels.insert(key.to_string(), value.clone());
            }
            v1alpha1::MonitoringAssignment {
                name: format!("/meshes/{}/dataplanes/{}", assignment.mesh, target.name),
                targets: vec![v1alpha1::Target {
                    labels: BTreeMap::from([("__address__".to_string(), target.address.clone())]),
                }],
                labels,
            }
        })
        .collect()
}

fn address(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// A tag key as a Prometheus label name: every character but `[a-zA-Z0-9_]` becomes `_`, and a
/// leading digit gets a `_` before it (`kuma.io/service` is `kuma_io_service`).
pub fn sanitize_label(key: &str) -> String {
    let mut name: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuma_model::parse_resource;

    fn dataplane(yaml: &str) -> DataplaneSpec {
        let input = parse_resource(serde_yaml::from_str(yaml).unwrap()).unwrap();
        input.spec.as_dataplane().unwrap().clone()
    }

    const WEB: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.7\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n      version: v1\n  - port: 8081\n    tags:\n      kuma.io/service: web-admin\n      version: v1\n";

    #[test]
    fn a_dataplane_in_a_mesh_with_prometheus_gets_one_target_with_its_tags_as_labels() {
        let mesh: MeshSpec =
            serde_yaml::from_str("metrics:\n  prometheus:\n    port: 1234\n").unwrap();
        let a = assignment("default", "web-1", &mesh, &dataplane(WEB)).unwrap();
        assert_eq!((a.mesh.as_str(), a.service.as_str()), ("default", "web"));
        let target = &a.targets[0];
        assert_eq!(target.address, "10.0.0.7:1234");
        assert_eq!(target.metrics_path, "/metrics");
        assert_eq!(target.labels["kuma_io_service"], "web");
        assert_eq!(target.labels["kuma_io_services"], ",web,web-admin,");
        assert_eq!(target.labels["version"], "v1");
    }

    #[test]
    fn the_v1alpha1_shape_keeps_only_the_address_on_the_target() {
        let mesh: MeshSpec = serde_yaml::from_str("metrics:\n  prometheus: {}\n").unwrap();
        let a = assignment("default", "web-1", &mesh, &dataplane(WEB)).unwrap();
        let legacy = &as_v1alpha1(&a)[0];
        assert_eq!(legacy.name, "/meshes/default/dataplanes/web-1");
        assert_eq!(legacy.targets[0].labels["__address__"], "10.0.0.7:5670");
        assert_eq!(legacy.targets[0].labels.len(), 1);
        assert_eq!(legacy.labels["job"], "web");
        assert_eq!(legacy.labels["dataplane"], "web-1");
        assert_eq!(legacy.labels["mesh"], "default");
        assert_eq!(legacy.labels["__metrics_path__"], "/metrics");
        assert_eq!(legacy.labels["kuma_io_service"], "web");
    }

    #[test]
    fn without_prometheus_there_is_no_assignment() {
        assert!(assignment("default", "web-1", &MeshSpec::default(), &dataplane(WEB)).is_none());
    }

    #[test]
    fn label_names_are_sanitized_for_prometheus() {
        assert_eq!(sanitize_label("kuma.io/zone"), "kuma_io_zone");
        assert_eq!(sanitize_label("1st"), "_1st");
        assert_eq!(sanitize_label("ok_name9"), "ok_name9");
    }
}
